//! `export`: manifests written from a live hub (to adopt an existing fleet). Devices, modules,
//! identity fields, tags and desired properties as they are; the owner from the ledgers where
//! present; never any key. An export into a directory whose manifests mark values sensitive,
//! ignored or taken from `${env:NAME}` keeps those markers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::connect::Connection;
use crate::hub::read;
use twinops_core::model::{
    AuthenticationType, DEFAULT_OWNER, DeviceId, EnvRef, JsonMap, LEDGER_TAG, ObservedAuth,
    ObservedDevice, ObservedTwin, Section, Targets, TwinAddress, TwinSpec,
};
use twinops_core::plan::ledger::{self, IdentityField};
use twinops_core::plan::scope_device;

/// What to export.
pub(crate) struct Request<'a> {
    /// A device query of the operator's (`--query`); every device without one.
    pub query: Option<&'a str>,
    pub targets: &'a [String],
    /// The directory written to, whose manifests' markers are kept.
    pub into: Option<&'a Path>,
    pub concurrency: usize,
    /// Also the hub's configurations and IoT Edge deployments (`--configurations`).
    pub configurations: bool,
    /// How to read the hub (`--read`, `--storage`).
    pub read: super::read::ReadChoice,
}

/// What export found that the operator should hear about.
pub(crate) enum Note {
    /// The manifests already in the directory do not load: their markers are not kept.
    MarkersNotKept { dir: PathBuf, problems: usize },
    /// Configurations or deployments no owner's label claims: not exported.
    UnlabelledObjects(usize),
}

/// The manifests of the hub, one document per owner.
pub(crate) struct Exported {
    pub groups: BTreeMap<String, Value>,
    pub notes: Vec<Note>,
}

pub(crate) async fn export(
    conn: &Connection,
    req: Request<'_>,
    reporter: &dyn twinops_core::report::Reporter,
) -> anyhow::Result<Exported> {
    let plan = read::custom(req.query).map_err(anyhow::Error::msg)?;
    // An operator's query selects twins the hub filters: only the API read can run it.
    let choice = if req.query.is_some() {
        super::read::ReadChoice::api()
    } else {
        req.read.clone()
    };
    let targets = Targets::new(req.targets);
    let (read, _) = super::read::read_into(
        conn,
        &choice,
        &plan,
        req.concurrency,
        reporter,
        || twinops_core::model::Observed {
            complete: plan.complete,
            ..Default::default()
        },
        // `--target` applies as the twins come: only those it selects are kept (a device any
        // pattern touches; its modules when the device itself or the module is selected).
        |o, x| {
            let selected = match &x {
                read::Observation::Device(d) => targets.touches(&d.id),
                read::Observation::Module(id, m) => targets.device(id) || targets.module(id, &m.id),
            };
            if selected {
                read::keep(o, x);
            }
            Ok(())
        },
    )
    .await
    .context("reading device and module twins")?;
    if let Some(pattern) = targets.unmatched(read.identities()) {
        bail!("--target `{pattern}` matches no identity in the hub");
    }
    let (markers, notes) = existing_markers(req.into);
    let split = Split::of(&read.devices);
    let mut groups: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for owner in split.owners() {
        let devs: Map<String, Value> = read
            .devices
            .iter()
            .filter_map(|(id, d)| Some((id.to_string(), split.device(owner, d, &markers)?)))
            .collect();
        if !devs.is_empty() {
            groups.insert(owner.to_string(), devs);
        }
    }
    let mut notes = notes;
    let mut objects = BTreeMap::new();
    if req.configurations {
        let hub_objects = conn
            .hub
            .objects()
            .await
            .context("reading the hub's configurations and deployments")?;
        let (by_owner, unlabelled) = super::export_objects::by_owner(&hub_objects);
        if unlabelled > 0 {
            notes.push(Note::UnlabelledObjects(unlabelled));
        }
        objects = by_owner;
    }
    let owners: std::collections::BTreeSet<String> =
        groups.keys().chain(objects.keys()).cloned().collect();
    Ok(Exported {
        groups: owners
            .into_iter()
            .map(|owner| {
                let mut doc = Map::new();
                doc.insert("owner".into(), json!(owner));
                if let Some(devs) = groups.remove(&owner) {
                    doc.insert("devices".into(), Value::Object(devs));
                }
                if let Some(b) = objects.remove(&owner) {
                    if !b.configurations.is_empty() {
                        doc.insert("configurations".into(), Value::Object(b.configurations));
                    }
                    if !b.deployments.is_empty() {
                        doc.insert("deployments".into(), Value::Object(b.deployments));
                    }
                }
                (owner, Value::Object(doc))
            })
            .collect(),
        notes,
    })
}

/// How an export splits the hub between owners (SPEC §15): each owner a ledger names gets the
/// identity fields and twin keys its entry manages, with their values in the hub; a twin nobody
/// manages (no ledger: a hub that existed before twinops) goes whole to the adopting owner (the
/// hub's only owner, else `default`): every identity field as it is, every tag and desired key.
/// Another owner's keys never appear in an owner's manifests, and keys nobody manages on a twin
/// that owners share stay unmanaged.
struct Split {
    owners: BTreeSet<String>,
    adopter: String,
    /// The ledger of each twin that has one, read once.
    ledgers: BTreeMap<TwinAddress, ledger::Ledger>,
}

/// What one owner's manifest declares of one twin.
#[derive(Default)]
struct Share {
    fields: BTreeSet<IdentityField>,
    tags: JsonMap,
    desired: JsonMap,
}

impl Split {
    fn of(devices: &BTreeMap<DeviceId, ObservedDevice>) -> Split {
        let twins = devices.values().flat_map(|d| {
            std::iter::once((TwinAddress::device(d.id.clone()), &d.twin)).chain(
                d.modules
                    .iter()
                    .map(|(mid, m)| (TwinAddress::module(d.id.clone(), mid.clone()), &m.twin)),
            )
        });
        let mut owners = BTreeSet::new();
        let mut ledgers = BTreeMap::new();
        for (address, t) in twins {
            if let ledger::Found::Ledger(l) = ledger::read(&t.tags) {
                owners.extend(l.owners.keys().cloned());
                ledgers.insert(address, l);
            }
        }
        let adopter = match (owners.len(), owners.iter().next()) {
            (1, Some(o)) => o.clone(),
            _ => DEFAULT_OWNER.to_string(),
        };
        owners.insert(adopter.clone());
        Split {
            owners,
            adopter,
            ledgers,
        }
    }

    fn owners(&self) -> impl Iterator<Item = &str> {
        self.owners.iter().map(String::as_str)
    }

    /// What `owner` declares of the twin at `address`, `None` when nothing. `fields` are the
    /// identity fields the twin's identity has.
    fn share(
        &self,
        owner: &str,
        address: &TwinAddress,
        t: &ObservedTwin,
        fields: &[IdentityField],
    ) -> Option<Share> {
        let ledger = self.ledgers.get(address);
        let entry = ledger.and_then(|l| l.entry(owner));
        // A twin some owner manages is exported as its owners' entries say, so that an export of
        // what twinops manages plans as a no-op; only a twin nobody manages is adopted whole.
        let adopts = owner == self.adopter && ledger.is_none_or(|l| l.owners.is_empty());
        if entry.is_none() && !adopts {
            return None;
        }
        let mut share = Share::default();
        for f in fields {
            if adopts || entry.is_some_and(|e| e.fields.manages(*f)) {
                share.fields.insert(*f);
            }
        }
        for (section, values, out) in [
            (Section::Tags, &t.tags, &mut share.tags),
            (Section::Desired, &t.desired, &mut share.desired),
        ] {
            for (k, v) in values.iter().filter(|(k, _)| k.as_str() != LEDGER_TAG) {
                if adopts || entry.is_some_and(|e| e.keys(section).contains(k)) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Some(share)
    }

    /// One device as `owner`'s manifest writes it, with the modules it declares (system modules
    /// left out); `None` when it declares nothing of the device or its modules.
    fn device(
        &self,
        owner: &str,
        d: &ObservedDevice,
        markers: &BTreeMap<TwinAddress, Markers>,
    ) -> Option<Value> {
        let mut modules = Map::new();
        for (mid, m) in d.modules.iter().filter(|(mid, _)| !mid.is_system()) {
            let address = TwinAddress::module(d.id.clone(), mid.clone());
            let Some(share) = self.share(owner, &address, &m.twin, &[IdentityField::Auth]) else {
                continue;
            };
            let mut mm = Map::new();
            if share.fields.contains(&IdentityField::Auth)
                && let Some(a) = auth(&m.auth)
            {
                mm.insert("auth".into(), a);
            }
            twin_fields(&mut mm, share);
            mark(&mut mm, markers.get(&address));
            modules.insert(mid.to_string(), Value::Object(mm));
        }
        let address = TwinAddress::device(d.id.clone());
        let share = self.share(owner, &address, &d.twin, &IdentityField::ALL);
        if share.is_none() && modules.is_empty() {
            return None;
        }
        let mut dev = Map::new();
        if let Some(share) = share {
            identity_fields(&mut dev, d, &share.fields);
            twin_fields(&mut dev, share);
            mark(&mut dev, markers.get(&address));
        }
        if !modules.is_empty() {
            dev.insert("modules".into(), Value::Object(modules));
        }
        Some(Value::Object(dev))
    }
}

/// A device's identity fields as they are on the hub, those of `fields` that it has (a device
/// without a parent or a status reason declares none).
fn identity_fields(
    out: &mut Map<String, Value>,
    d: &ObservedDevice,
    fields: &BTreeSet<IdentityField>,
) {
    for f in fields {
        let v = match f {
            IdentityField::Status => Some(json!(d.status.as_str())),
            IdentityField::StatusReason => d
                .status_reason
                .as_ref()
                .filter(|r| !r.is_empty())
                .map(|r| json!(r)),
            IdentityField::Auth => auth(&d.auth),
            IdentityField::Edge => Some(json!(d.edge)),
            IdentityField::Parent => d
                .parent_scopes
                .first()
                .and_then(|s| scope_device(s))
                .map(|p| json!(p)),
        };
        if let Some(v) = v {
            out.insert(f.as_str().into(), v);
        }
    }
}

fn auth(a: &ObservedAuth) -> Option<Value> {
    match a.kind {
        AuthenticationType::SelfSigned => Some(json!({"x509": {
            "primary": a.primary_thumbprint,
            "secondary": a.secondary_thumbprint,
        }})),
        AuthenticationType::CertificateAuthority => Some(json!("ca")),
        AuthenticationType::Sas => Some(json!("sas")),
        AuthenticationType::None => None,
    }
}

fn twin_fields(out: &mut Map<String, Value>, share: Share) {
    if !share.tags.is_empty() {
        out.insert("tags".into(), escaped(Value::Object(share.tags)));
    }
    if !share.desired.is_empty() {
        out.insert("desired".into(), escaped(Value::Object(share.desired)));
    }
}

/// A hub value as manifests write it: `${` in a string becomes `$${`, so that a value which only
/// looks like `${device}` or `${env:NAME}` loads back as the same text, not as a substitution.
fn escaped(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains("${") => Value::String(s.replace("${", "$${")),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, escaped(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(escaped).collect()),
        other => other,
    }
}

/// What the manifests already in a directory declare for one twin beyond its values.
#[derive(Default)]
struct Markers {
    ignore: Vec<String>,
    /// Without the paths of `refs`, which a reference makes sensitive by itself.
    sensitive: Vec<String>,
    /// `${env:NAME}` references: exported as the reference, never as the hub's clear value.
    refs: Vec<EnvRef>,
}

impl Markers {
    fn of(t: &TwinSpec) -> Markers {
        Markers {
            ignore: t.ignore.iter().map(ToString::to_string).collect(),
            sensitive: t
                .sensitive
                .iter()
                .filter(|p| !t.refs.iter().any(|r| r.path == **p))
                .map(ToString::to_string)
                .collect(),
            refs: t.refs.clone(),
        }
    }
}

/// Puts a twin's markers into its exported manifest: references where the hub holds a value
/// (the reference stands for it), `ignore` and `sensitive`.
fn mark(out: &mut Map<String, Value>, markers: Option<&Markers>) {
    let Some(m) = markers else { return };
    for r in &m.refs {
        let section = match r.path.section {
            Section::Tags => "tags",
            Section::Desired => "desired",
        };
        if let Some(Value::Object(values)) = out.get_mut(section)
            && twinops_core::plan::patch::get(values, &r.path.keys).is_some()
        {
            twinops_core::plan::patch::set(values, &r.path.keys, Some(json!(r.written())));
        }
    }
    if !m.ignore.is_empty() {
        out.insert("ignore".into(), json!(m.ignore));
    }
    if !m.sensitive.is_empty() {
        out.insert("sensitive".into(), json!(m.sensitive));
    }
}

/// The `ignore` and `sensitive` paths and `${env:NAME}` references the manifests already in `dir`
/// declare, by twin: an export into a directory that has them keeps them, so re-exporting does
/// not drop what the operator marked, nor write a secret that the manifests take from the
/// environment into a file. Manifests that do not load are left alone (with a note).
fn existing_markers(dir: Option<&Path>) -> (BTreeMap<TwinAddress, Markers>, Vec<Note>) {
    let mut out = BTreeMap::new();
    let Some(dir) = dir.filter(|d| d.is_dir()) else {
        return (out, Vec::new());
    };
    let Ok(sources) = twinops_core::manifest::read(&[dir.to_path_buf()]) else {
        return (out, Vec::new());
    };
    if sources.is_empty() {
        return (out, Vec::new());
    }
    // Only the markers are read, so `${env:NAME}` values need not be set: each stands in as a
    // placeholder (its path is sensitive either way), and the values are dropped with the fleet.
    let stand_in = |_: &str| Some("(not read)".to_string());
    let fleet = match twinops_core::manifest::load(&sources, &stand_in) {
        Ok(f) => f,
        Err(e) => {
            let note = Note::MarkersNotKept {
                dir: dir.to_path_buf(),
                problems: e.0.len(),
            };
            return (out, vec![note]);
        }
    };
    for d in &fleet.devices {
        out.insert(TwinAddress::device(d.id.clone()), Markers::of(&d.twin));
        for m in &d.modules {
            let a = TwinAddress::module(d.id.clone(), m.id.clone());
            out.insert(a, Markers::of(&m.twin));
        }
    }
    (out, Vec::new())
}

/// A document as the YAML manifest export writes.
pub(crate) fn to_yaml(doc: &Value) -> anyhow::Result<String> {
    let body = serde_saphyr::to_string(doc).context("writing YAML")?;
    Ok(format!(
        "# exported by twinops from the hub; review before committing\n{body}"
    ))
}

/// Where each owner's document goes: `DIR/fleet.yaml` (one owner) or `DIR/OWNER/fleet.yaml`.
fn targets(dir: &Path, groups: &BTreeMap<String, Value>) -> Vec<(PathBuf, String)> {
    let single = groups.len() == 1;
    groups
        .keys()
        .map(|owner| {
            let d = if single {
                dir.to_path_buf()
            } else {
                dir.join(owner)
            };
            (d.join("fleet.yaml"), owner.clone())
        })
        .collect()
}

/// Writes each owner's document (see [`targets`]); the files written. Unless `force`, nothing is
/// written when a file would be overwritten: the error names every such file. With `force`, the
/// files written are replaced and nothing else in `dir` is touched.
pub(crate) fn write(
    dir: &Path,
    groups: &BTreeMap<String, Value>,
    force: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let targets = targets(dir, groups);
    if !force {
        let existing: Vec<String> = targets
            .iter()
            .filter(|(p, _)| p.exists())
            .map(|(p, _)| format!("`{}`", p.display()))
            .collect();
        if !existing.is_empty() {
            bail!(
                "export would overwrite {}: nothing was written (pass --force to overwrite the files export writes)",
                existing.join(", ")
            );
        }
    }
    // Every document is rendered before the first file is written.
    let mut docs = Vec::new();
    for (path, owner) in targets {
        docs.push((path, to_yaml(&groups[&owner])?));
    }
    let mut written = Vec::new();
    for (path, yaml) in docs {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating `{}`", parent.display()))?;
        }
        std::fs::write(&path, yaml).with_context(|| format!("writing `{}`", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
