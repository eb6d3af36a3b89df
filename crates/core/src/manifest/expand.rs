//! Expansion: resolved device declarations -> [`DeviceSpec`]s, one per ID of each range, with
//! `${device}`/`${module}` substituted and `${env:NAME}` values looked up (their paths made sensitive).
//!
//! Owns the rules that need the whole set or the final values: the identity count (checked before
//! anything is expanded), modules per device, IDs defined twice, twin sizes with the ledger, and parents.
//! A declaration's problems are reported once, at the declaration, not once per expanded ID.

use crate::plan::ledger::IdentityField;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::Sink;
use super::raw::Device;
use super::resolve::{Resolved, ResolvedModule, ResolvedTwin};
use super::secret::Lookup;
use super::twin::{self, Names};
use crate::model::{
    Content, DeviceId, DeviceSpec, JsonMap, Location, ModuleId, ModuleSpec, Section, TwinSpec,
};

/// One text per distinct twin section of the set: the devices of a range share their template's
/// values wherever `${device}` does not make them differ.
#[derive(Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn content(&mut self, map: &JsonMap) -> Content {
        let fresh = Content::new(map);
        let Some(text) = fresh.shared() else {
            return fresh;
        };
        if let Some(known) = self.0.get(&**text) {
            return Content::from_shared(known.clone());
        }
        self.0.insert(text.clone());
        fresh
    }
}

/// How declared values become a twin's sections: `${env:NAME}` looked up once per variable, and
/// equal sections held once.
struct Values<'l, 'e> {
    lookup: &'l mut Lookup<'e>,
    interner: Interner,
    /// The set has a `rollout` block: a wave's write adds its mark to each twin's ledger.
    rollout: bool,
}

/// IoT Hub's identities per hub (devices plus modules).
pub(super) const MAX_IDENTITIES: u64 = 1_000_000;
/// IoT Hub's modules per device.
pub(super) const MAX_MODULES: usize = twinops_iothub::ids::MAX_MODULES_PER_DEVICE;

/// Expands every declaration, or nothing when the set declares too many identities. With
/// `rollout` (the set has a `rollout` block) the tags must leave room for a rollout's mark too.
pub(super) fn expand(
    owner: &str,
    declarations: &[(&Device, Resolved)],
    lookup: &mut Lookup<'_>,
    rollout: bool,
    sink: &mut Sink,
) -> Vec<DeviceSpec> {
    if !identities_fit(declarations, sink) {
        return Vec::new();
    }
    let mut defined: HashMap<String, Location> = HashMap::new();
    let mut values = Values {
        lookup,
        interner: Interner::default(),
        rollout,
    };
    let mut devices = Vec::new();
    let mut parents = Vec::new();
    for (device, resolved) in declarations {
        let Some(pattern) = &device.pattern else {
            continue;
        };
        if resolved.modules.len() > MAX_MODULES {
            sink.error(
                &device.loc,
                format!(
                    "device `{}` has {} modules; IoT Hub allows at most {MAX_MODULES} per device",
                    twin::shorten(&device.written),
                    resolved.modules.len()
                ),
            );
        }
        // What the ledger adds to each twin's tags depends on its keys and identity fields, which
        // `${device}` does not change: counted once per declaration, not once per ID of a range.
        let rooms = Rooms::of(owner, resolved);
        for id in pattern.ids() {
            if let Some(first) = defined.get(&id) {
                let message = if pattern.is_range() {
                    format!(
                        "range `{}` expands to device `{id}`, which is already defined at {first}",
                        twin::shorten(&device.written)
                    )
                } else {
                    format!("device `{id}` is already defined at {first}")
                };
                sink.once(&device.loc, &format!("duplicate {first}"), message);
                continue;
            }
            defined.insert(id.clone(), device.loc.clone());
            if let Some(parent) = &resolved.parent {
                parents.push((devices.len(), parent.clone()));
            }
            if let Some(spec) = device_spec(id, device, resolved, &rooms, &mut values, sink) {
                devices.push(spec);
            }
        }
    }
    check_parents(&devices, &parents, &defined, sink);
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    devices
}

/// Counts identities from range sizes and module counts, reporting the declaration that crosses the limit.
fn identities_fit(declarations: &[(&Device, Resolved)], sink: &mut Sink) -> bool {
    let mut total: u64 = 0;
    let mut crossed: Option<&Location> = None;
    for (device, resolved) in declarations {
        let Some(pattern) = &device.pattern else {
            continue;
        };
        let per_device = 1 + resolved.modules.len() as u64;
        total = total.saturating_add(pattern.len().saturating_mul(per_device));
        if total > MAX_IDENTITIES && crossed.is_none() {
            crossed = Some(&device.loc);
        }
    }
    if let Some(loc) = crossed {
        sink.error(
            loc,
            format!(
                "the manifest set declares {total} identities (devices plus modules, ranges counted); IoT Hub allows at most {MAX_IDENTITIES} per hub"
            ),
        );
        return false;
    }
    true
}

/// What this owner's ledger entry, and a rollout's mark, add to a twin's tags (SPEC §15, §11).
struct LedgerRoom {
    entry: usize,
    mark: usize,
}

impl LedgerRoom {
    /// From the twin's top-level keys (its sections' keys as written: substitution changes values,
    /// never keys) and the identity fields it manages.
    fn of(owner: &str, fields: &BTreeSet<IdentityField>, twin: &ResolvedTwin) -> LedgerRoom {
        let keys = |entries: &[super::yaml::Entry]| -> JsonMap {
            entries
                .iter()
                .map(|e| (e.key.clone(), serde_json::Value::Null))
                .collect()
        };
        let (tags, desired) = (keys(&twin.tags), keys(&twin.desired));
        LedgerRoom {
            entry: crate::plan::ledger::entry_size(owner, fields, &tags, &desired),
            mark: crate::plan::ledger::Mark::size_at_most(desired.keys()),
        }
    }
}

/// The ledger rooms of one declaration's device twin and of its module twins (in
/// `resolved.modules` order), the same for every ID it expands to.
struct Rooms {
    device: LedgerRoom,
    modules: Vec<LedgerRoom>,
}

impl Rooms {
    fn of(owner: &str, resolved: &Resolved) -> Rooms {
        let mut fields = BTreeSet::new();
        for (declared, f) in [
            (resolved.status.is_some(), IdentityField::Status),
            (
                resolved.status_reason.is_some(),
                IdentityField::StatusReason,
            ),
            (resolved.auth.is_some(), IdentityField::Auth),
            (resolved.edge.is_some(), IdentityField::Edge),
            (resolved.parent.is_some(), IdentityField::Parent),
        ] {
            if declared {
                fields.insert(f);
            }
        }
        Rooms {
            device: LedgerRoom::of(owner, &fields, &resolved.twin),
            modules: resolved
                .modules
                .values()
                .map(|m| {
                    let fields = m.auth.iter().map(|_| IdentityField::Auth).collect();
                    LedgerRoom::of(owner, &fields, &m.twin)
                })
                .collect(),
        }
    }
}

fn device_spec(
    id: String,
    device: &Device,
    resolved: &Resolved,
    rooms: &Rooms,
    values: &mut Values<'_, '_>,
    sink: &mut Sink,
) -> Option<DeviceSpec> {
    // IDs and parents are checked, and reported with their place, where they are written (`raw`,
    // `range`); an ID that fails here was reported there, so it is only left out.
    let checked = DeviceId::new(id.clone());
    let parent = match &resolved.parent {
        Some(p) => Some(DeviceId::new(p.value.clone()).ok()?),
        None => None,
    };
    let names = Names {
        device: &id,
        module: None,
    };
    let twin = twin_spec(
        &rooms.device,
        &resolved.twin,
        names,
        &format!("device `{id}`"),
        &device.loc,
        values,
        sink,
    );
    let modules = resolved
        .modules
        .iter()
        .zip(&rooms.modules)
        .filter_map(|((mid, m), room)| module_spec(&id, mid, m, room, values, sink))
        .collect();
    Some(DeviceSpec {
        status: resolved.status,
        status_reason: resolved.status_reason.clone(),
        auth: resolved.auth.clone(),
        edge: resolved.edge,
        parent,
        twin,
        modules,
        location: device.loc.clone(),
        id: checked.ok()?,
    })
}

fn module_spec(
    device: &str,
    id: &str,
    m: &ResolvedModule,
    room: &LedgerRoom,
    values: &mut Values<'_, '_>,
    sink: &mut Sink,
) -> Option<ModuleSpec> {
    let names = Names {
        device,
        module: Some(id),
    };
    let what = format!("module `{device}/{id}`");
    let checked = ModuleId::new(id);
    let twin = twin_spec(room, &m.twin, names, &what, &m.loc, values, sink);
    Some(ModuleSpec {
        id: checked.ok()?,
        managed_by: m.managed_by.clone(),
        auth: m.auth.clone(),
        twin,
        location: m.loc.clone(),
    })
}

fn twin_spec(
    room: &LedgerRoom,
    resolved: &ResolvedTwin,
    names: Names<'_>,
    what: &str,
    loc: &Location,
    values: &mut Values<'_, '_>,
    sink: &mut Sink,
) -> TwinSpec {
    let (tags, mut refs) =
        twin::twin_json(Section::Tags, &resolved.tags, names, values.lookup, sink);
    let (desired, desired_refs) = twin::twin_json(
        Section::Desired,
        &resolved.desired,
        names,
        values.lookup,
        sink,
    );
    refs.extend(desired_refs);
    let tags_size = twin::size(&tags);
    // This owner's ledger entry, as compact JSON (SPEC §15), with the identity fields it manages.
    let ledger = room.entry;
    let limit = twin::MAX_TAGS_BYTES;
    if tags_size > limit {
        sink.once(
            loc,
            "tags-size",
            format!("tags of {what} are {tags_size} bytes; IoT Hub allows at most {limit}"),
        );
    } else if tags_size + ledger > limit {
        sink.once(
            loc,
            "tags-size",
            format!(
                "tags of {what} are {} bytes with the twinops ledger ({ledger} of them); IoT Hub allows at most {limit}",
                tags_size + ledger
            ),
        );
    } else if values.rollout {
        // Each twin a wave writes carries the rollout's mark in its ledger (SPEC §11).
        let mark = room.mark;
        if tags_size + ledger + mark > limit {
            sink.once(
                loc,
                "tags-size",
                format!(
                    "tags of {what} are {} bytes with the twinops ledger and the rollout's mark ({mark} of them); IoT Hub allows at most {limit}",
                    tags_size + ledger + mark
                ),
            );
        }
    }
    let desired_size = twin::size(&desired);
    if desired_size > twin::MAX_DESIRED_BYTES {
        sink.once(
            loc,
            "desired-size",
            format!(
                "desired properties of {what} are {desired_size} bytes; IoT Hub allows at most {}",
                twin::MAX_DESIRED_BYTES
            ),
        );
    }
    // A referenced value is sensitive without being listed.
    let mut sensitive = resolved.sensitive.clone();
    for r in &refs {
        if !sensitive.contains(&r.path) {
            sensitive.push(r.path.clone());
        }
    }
    TwinSpec {
        tags: values.interner.content(&tags),
        desired: values.interner.content(&desired),
        ignore: resolved.ignore.clone(),
        sensitive,
        refs,
    }
}

fn check_parents(
    devices: &[DeviceSpec],
    parents: &[(usize, super::raw::Located<String>)],
    defined: &HashMap<String, Location>,
    sink: &mut Sink,
) {
    // A parent declared here must declare `edge: true`: a child relies on it, and a parent that
    // does not declare it could be created, or left, as no edge device.
    let edge: HashMap<&str, Option<bool>> =
        devices.iter().map(|d| (d.id.as_str(), d.edge)).collect();
    for (i, parent) in parents {
        let child = &devices[*i];
        if child.id == parent.value.as_str() {
            sink.once(
                &parent.loc,
                "own-parent",
                format!("device `{}` cannot be its own parent", child.id),
            );
            continue;
        }
        if edge
            .get(parent.value.as_str())
            .is_some_and(|e| *e != Some(true))
            && let Some(at) = defined.get(&parent.value)
        {
            sink.once(
                &parent.loc,
                "parent-not-edge",
                format!(
                    "parent `{}` (defined at {at}) is not an edge device; set `edge: true` on it or choose an edge parent",
                    parent.value
                ),
            );
        }
    }
}
