//! Managed objects in a plan (SPEC §16): the hub's configurations and deployments read once, diffed
//! by the core, and checked against the hub before anything is written — the hub's caps, what each
//! object's target matches now, declared twin keys an object would also write (an error naming
//! both places), equal priorities that fight, and modules a layer's removal takes away.

use std::collections::BTreeSet;

use anyhow::bail;

use crate::hub::{Error, Hub};
use twinops_core::model::{
    ConfigurationContent, DeviceId, Fleet, MAX_HUB_OBJECTS, ObjectKind, ObservedObject,
};
use twinops_core::plan::object_checks::{self, Collection, Condition, Placed};
use twinops_core::plan::objects::{self, ObjectChange, ObjectPlan, ObjectWarning, Preview};

/// How many devices a preview or warning names.
const FIRST: usize = 5;

/// Whether a plan reads the hub's objects: when the manifests declare some, or `--prune` may
/// delete this owner's (a plan of twins alone costs no extra request).
pub(crate) fn wanted(fleet: &Fleet, prune: bool) -> bool {
    prune || !fleet.configurations.is_empty() || !fleet.deployments.is_empty()
}

/// The objects' part of a plan against the hub's objects (`observed`, one list), with previews
/// and warnings; an error (nothing written) when the hub's caps would be exceeded or an object
/// would write a key the manifests declare on a twin it targets.
pub(crate) async fn plan(
    hub: &Hub,
    fleet: &Fleet,
    observed: &[ObservedObject],
    prune: bool,
) -> anyhow::Result<ObjectPlan> {
    let mut p = objects::diff(fleet, observed, prune);
    check_caps(observed, &p.changes)?;
    check_own_twins(hub, fleet).await?;
    for c in &mut p.changes {
        let Some(target) = c.target().map(str::to_string) else {
            continue;
        };
        let preview = preview(hub, &target).await?;
        if let Some(slot) = c.preview_mut() {
            *slot = Some(preview);
        }
    }
    p.warnings = warnings(hub, fleet, observed, &p.changes).await?;
    Ok(p)
}

fn check_caps(observed: &[ObservedObject], changes: &[ObjectChange]) -> anyhow::Result<()> {
    for (kind, n) in objects::counts_after(observed, changes) {
        if n > MAX_HUB_OBJECTS {
            bail!(
                "the plan would leave {n} {}s on the hub (a replacement's old object counted until it is deleted); a hub holds at most {MAX_HUB_OBJECTS}; nothing was written",
                kind.as_str()
            );
        }
    }
    Ok(())
}

/// What a target condition matches now: one `COUNT()` and the first devices.
async fn preview(hub: &Hub, target: &str) -> Result<Preview, Error> {
    let c = Condition::of(target);
    let all = [c.text.as_str()];
    Ok(Preview {
        targeted: hub
            .query_count(&object_checks::sql(c.collection, &all, &[], true))
            .await?,
        first: hub
            .query_first(&object_checks::sql(c.collection, &all, &[], false), FIRST)
            .await?,
    })
}

/// An object that writes desired keys: where it is declared, its words, its target, the module
/// whose twins it writes (`None`: device twins), and the keys.
struct Writer {
    at: String,
    words: String,
    target: String,
    module: Option<String>,
    keys: BTreeSet<String>,
}

/// A fight with yourself (SPEC §16): an object that writes a desired key the same manifests
/// declare on a twin it targets. An error naming both places.
async fn check_own_twins(hub: &Hub, fleet: &Fleet) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut writers: Vec<Writer> = Vec::new();
    for c in &fleet.configurations {
        let (module, keys) = match &c.content {
            ConfigurationContent::Device { desired } => (None, desired.keys().cloned().collect()),
            ConfigurationContent::Module { module, desired } => {
                (Some(module.clone()), desired.keys().cloned().collect())
            }
        };
        writers.push(Writer {
            at: c.location.to_string(),
            words: format!("configuration `{}`", c.name),
            target: c.target.clone(),
            module,
            keys,
        });
    }
    for d in &fleet.deployments {
        for (name, m) in &d.modules {
            writers.push(Writer {
                at: m.location.to_string(),
                words: format!("deployment `{}` (module `{name}`)", d.name),
                target: d.target.clone(),
                module: Some(name.clone()),
                keys: m.desired.keys().cloned().collect(),
            });
        }
    }
    for Writer {
        at,
        words,
        target,
        module,
        keys,
    } in writers
    {
        // The declared twins of the kind it writes that declare one of its keys.
        let mut candidates: Vec<(&DeviceId, String, Vec<String>)> = Vec::new();
        for d in &fleet.devices {
            let (twin, loc) = match &module {
                None => (Some(&d.twin), d.location.to_string()),
                Some(m) => match d.modules.iter().find(|x| x.id.as_str() == m) {
                    Some(x) => (Some(&x.twin), x.location.to_string()),
                    None => (None, String::new()),
                },
            };
            let Some(twin) = twin else { continue };
            let both: Vec<String> = twin
                .desired
                .to_map()
                .keys()
                .filter(|k| keys.contains(*k))
                .cloned()
                .collect();
            if !both.is_empty() {
                candidates.push((&d.id, loc, both));
            }
        }
        if candidates.is_empty() {
            continue;
        }
        let ids: Vec<&DeviceId> = candidates
            .iter()
            .map(|(id, _, _)| *id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let c = Condition::of(&target);
        // A deployment targets devices; its modules' twins are those of the devices it targets.
        let collection = if module.is_some() && c.collection == Collection::Modules {
            Collection::Modules
        } else {
            Collection::Devices
        };
        let of_module = match (collection, &module) {
            (Collection::Modules, Some(m)) => Some(format!("moduleId = '{m}'")),
            _ => None,
        };
        let hit = hub
            .devices_selected(&ids, |list| {
                let among = format!("deviceId IN [{list}]");
                let mut conds = vec![c.text.as_str(), among.as_str()];
                conds.extend(of_module.as_deref());
                object_checks::sql(collection, &conds, &[], false)
            })
            .await?;
        for (id, loc, both) in &candidates {
            if hit.contains(id.as_str()) {
                let twin = match &module {
                    Some(m) => format!("{id}/{m}"),
                    None => id.to_string(),
                };
                problems.push(format!(
                    "{at}: {words} writes desired.{} of twin `{twin}`, which it targets, and {loc} declares it there too; declare each key in one place",
                    both.join(", desired.")
                ));
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}\nnothing was written", problems.join("\n"));
    }
    Ok(())
}

/// Whether a hub object's deployment content is layered (its `$edgeAgent` content adds paths
/// under `properties.desired.` instead of setting `properties.desired` whole).
fn layered(content: &serde_json::Value) -> bool {
    content
        .pointer("/modulesContent/$edgeAgent")
        .and_then(serde_json::Value::as_object)
        .is_some_and(|m| !m.contains_key("properties.desired"))
}

/// The objects as they will stand after the plan (declared ones with their new targets, the hub's
/// others that stay), and as they stand now.
struct Standing<'a> {
    after: Vec<Placed<'a>>,
    before: Vec<Placed<'a>>,
}

fn standing<'a>(observed: &'a [ObservedObject], changes: &'a [ObjectChange]) -> Standing<'a> {
    let gone: BTreeSet<&str> = changes
        .iter()
        .filter(|c| matches!(c, ObjectChange::Delete { .. }))
        .map(ObjectChange::id)
        .collect();
    let place = |o: &'a ObservedObject| Placed {
        kind: o.kind,
        name: &o.id,
        priority: o.priority,
        layered: layered(&o.content),
        target: &o.target,
        content: &o.content,
    };
    let before: Vec<Placed<'a>> = observed.iter().map(place).collect();
    let mut after: Vec<Placed<'a>> = Vec::new();
    for o in observed.iter().filter(|o| !gone.contains(o.id.as_str())) {
        let mut p = place(o);
        if let Some(ObjectChange::Update { body, .. }) = changes
            .iter()
            .find(|c| matches!(c, ObjectChange::Update { .. }) && c.id() == o.id)
        {
            p.target = &body.target;
            p.priority = body.priority;
        }
        after.push(p);
    }
    for c in changes {
        if let ObjectChange::Create {
            object,
            id,
            body,
            content,
            ..
        } = c
        {
            after.push(Placed {
                kind: *object,
                name: id,
                priority: body.priority,
                layered: layered(content),
                target: &body.target,
                content,
            });
        }
    }
    Standing { after, before }
}

/// Equal priorities that fight, modules a layer's removal or narrowing takes away, and layers left
/// without a base (SPEC §16). Each costs a `COUNT()` (and a first page when it is a warning).
async fn warnings(
    hub: &Hub,
    fleet: &Fleet,
    observed: &[ObservedObject],
    changes: &[ObjectChange],
) -> anyhow::Result<Vec<ObjectWarning>> {
    let mut out = Vec::new();
    let declared: BTreeSet<String> = fleet
        .configurations
        .iter()
        .map(|c| c.id())
        .chain(fleet.deployments.iter().map(|d| d.id()))
        .collect();
    let s = standing(observed, changes);
    // Equal priorities: only pairs in which this plan's own objects take part.
    for (i, j, paths) in object_checks::equal_priority_pairs(&s.after) {
        let (a, b) = (&s.after[i], &s.after[j]);
        if !declared.contains(a.name) && !declared.contains(b.name) {
            continue;
        }
        let (ca, cb) = (Condition::of(a.target), Condition::of(b.target));
        let n = hub
            .query_count(&object_checks::sql(
                ca.collection,
                &[&ca.text, &cb.text],
                &[],
                true,
            ))
            .await?;
        if n > 0 {
            out.push(ObjectWarning::EqualPriority {
                object: a.kind,
                objects: [a.name.to_string(), b.name.to_string()],
                priority: a.priority,
                paths,
                devices: n,
            });
        }
    }
    // Layers removed (a prune delete) or narrowed (a target update): each module they provided,
    // on the devices no other deployment that stays provides it to.
    let deployments_after: Vec<&Placed<'_>> = s
        .after
        .iter()
        .filter(|p| p.kind == ObjectKind::Deployment)
        .collect();
    for old in s
        .before
        .iter()
        .filter(|p| p.kind == ObjectKind::Deployment && p.layered)
    {
        let removed = changes.iter().any(|c| {
            c.id() == old.name
                && matches!(
                    c,
                    ObjectChange::Delete {
                        replaced_by: None,
                        ..
                    }
                )
        });
        let narrowed = changes.iter().any(|c| {
            c.id() == old.name
                && matches!(c, ObjectChange::Update { body, .. } if body.target != old.target)
        });
        if !removed && !narrowed {
            continue;
        }
        let others: Vec<Placed<'_>> = deployments_after.iter().map(|p| (*p).clone()).collect();
        for (module, providers) in object_checks::removed_modules(old, &others) {
            let conds: Vec<String> = providers.iter().map(|t| Condition::of(t).text).collect();
            let providers: Vec<&str> = conds.iter().map(String::as_str).collect();
            let base = Condition::of(old.target).text;
            let count = object_checks::sql(Collection::Devices, &[&base], &providers, true);
            let devices = hub.query_count(&count).await?;
            if devices > 0 {
                let list = object_checks::sql(Collection::Devices, &[&base], &providers, false);
                out.push(ObjectWarning::RemovesModule {
                    deployment: old.name.to_string(),
                    module,
                    devices,
                    first: hub.query_first(&list, FIRST).await?,
                });
            }
        }
    }
    // Layers whose devices no base reaches any more, when this plan changes a base.
    let touches_base = changes.iter().any(|c| {
        c.object() == ObjectKind::Deployment
            && s.before.iter().any(|p| p.name == c.id() && !p.layered)
            && !matches!(
                c,
                ObjectChange::Delete {
                    replaced_by: Some(_),
                    ..
                }
            )
    });
    if touches_base {
        let missing = |set: &[Placed<'_>]| {
            let layers: Vec<String> = set
                .iter()
                .filter(|p| p.kind == ObjectKind::Deployment && p.layered)
                .map(|p| Condition::of(p.target).text)
                .collect();
            let bases: Vec<String> = set
                .iter()
                .filter(|p| p.kind == ObjectKind::Deployment && !p.layered)
                .map(|p| Condition::of(p.target).text)
                .collect();
            (layers, bases)
        };
        let (layers, bases_after) = missing(&s.after);
        if !layers.is_empty() {
            let any_layer = layers
                .iter()
                .map(|l| format!("({l})"))
                .collect::<Vec<_>>()
                .join(" OR ");
            let (_, bases_before) = missing(&s.before);
            let count = |bases: &[String]| {
                let none: Vec<&str> = bases.iter().map(String::as_str).collect();
                object_checks::sql(Collection::Devices, &[&any_layer], &none, true)
            };
            let after = hub.query_count(&count(&bases_after)).await?;
            let before = hub.query_count(&count(&bases_before)).await?;
            if after > before {
                let none: Vec<&str> = bases_after.iter().map(String::as_str).collect();
                let list = object_checks::sql(Collection::Devices, &[&any_layer], &none, false);
                out.push(ObjectWarning::BaseMissing {
                    layers: s
                        .after
                        .iter()
                        .filter(|p| p.kind == ObjectKind::Deployment && p.layered)
                        .map(|p| p.name.to_string())
                        .collect(),
                    devices: after,
                    first: hub.query_first(&list, FIRST).await?,
                });
            }
        }
    }
    Ok(out)
}
