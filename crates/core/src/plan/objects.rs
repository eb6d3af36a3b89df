//! Managed hub objects in a plan (SPEC §16): the changes that bring the hub's ADM configurations
//! and IoT Edge deployments to the manifests, computed from the declared objects and those the hub
//! holds, through their owner labels.
//!
//! - An object is this owner's when its `twinops-owner` label names the owner; its declared name is
//!   its `twinops-name` label. Only such objects are updated or pruned.
//! - Content is immutable on IoT Hub, so the hub ID carries the content digest
//!   ([`crate::model::object_id`]): a content change is a **replacement**, the new object created
//!   first (the most recently created of two equal priorities wins) and the old one deleted only
//!   after the new one has been applied.
//! - The mutable fields (target, priority, labels, metrics) are updated in place under the
//!   object's etag.
//!
//! Pure: what the plan's previews and warnings need from the hub (counts, first devices) is asked
//! for by the operation and handed in ([`Preview`], [`ObjectWarning`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::FieldDiff;
use crate::model::{ConfigurationSpec, DeploymentSpec, Fleet, ObjectKind, ObservedObject};

/// The fields of an object that are written: all of them at creation, the mutable ones on update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectBody {
    pub target: String,
    pub priority: i64,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, String>,
}

/// What an object's target matches now, and what it would write on twins the same manifests
/// declare (filled in by the operation from the hub).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    /// Devices (or module twins) its target condition matches now.
    pub targeted: u64,
    /// The first of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first: Vec<String>,
}

/// One change of a managed object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectChange {
    Create {
        object: ObjectKind,
        name: String,
        id: String,
        #[serde(flatten)]
        body: ObjectBody,
        content: Value,
        /// The object of the same name this one replaces (deleted once this one is applied).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<String>,
        /// For a replacement: what the content changes, path by path
        /// ([`super::object_checks::written_paths`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        diff: Vec<FieldDiff>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preview: Option<Preview>,
    },
    Update {
        object: ObjectKind,
        name: String,
        id: String,
        /// The etag it was planned against (sent quoted).
        if_match: String,
        #[serde(flatten)]
        body: ObjectBody,
        diff: Vec<FieldDiff>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preview: Option<Preview>,
    },
    Delete {
        object: ObjectKind,
        name: String,
        id: String,
        if_match: String,
        /// The object that replaces it: deleted only after that one is applied.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaced_by: Option<String>,
    },
}

impl ObjectChange {
    pub fn object(&self) -> ObjectKind {
        match self {
            ObjectChange::Create { object, .. }
            | ObjectChange::Update { object, .. }
            | ObjectChange::Delete { object, .. } => *object,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            ObjectChange::Create { id, .. }
            | ObjectChange::Update { id, .. }
            | ObjectChange::Delete { id, .. } => id,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ObjectChange::Create { name, .. }
            | ObjectChange::Update { name, .. }
            | ObjectChange::Delete { name, .. } => name,
        }
    }

    pub fn preview_mut(&mut self) -> Option<&mut Option<Preview>> {
        match self {
            ObjectChange::Create { preview, .. } | ObjectChange::Update { preview, .. } => {
                Some(preview)
            }
            ObjectChange::Delete { .. } => None,
        }
    }

    /// The target condition it writes, for a create or an update.
    pub fn target(&self) -> Option<&str> {
        match self {
            ObjectChange::Create { body, .. } | ObjectChange::Update { body, .. } => {
                Some(&body.target)
            }
            ObjectChange::Delete { .. } => None,
        }
    }

    /// Whether this is a delete.
    pub fn object_delete(&self) -> bool {
        matches!(self, ObjectChange::Delete { .. })
    }

    /// A delete that only completes a replacement (not counted by `--max-deletes`).
    pub fn is_replacement_delete(&self) -> bool {
        matches!(
            self,
            ObjectChange::Delete {
                replaced_by: Some(_),
                ..
            }
        )
    }
}

/// A declared object whose name another owner's object holds, or whose ID an object no owner's
/// label claims already holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectConflict {
    pub object: ObjectKind,
    pub name: String,
    /// The hub ID the declared object would have.
    pub id: String,
    pub reason: String,
}

/// Something about managed objects that the operator should know before applying.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "warning", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectWarning {
    /// Two objects of equal priority target the same devices and write a path with different
    /// values: which one wins depends on which was created last.
    EqualPriority {
        object: ObjectKind,
        objects: [String; 2],
        priority: i64,
        paths: Vec<String>,
        /// Devices both target now.
        devices: u64,
    },
    /// A layered deployment's deletion or target change removes a module from devices.
    RemovesModule {
        deployment: String,
        module: String,
        devices: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        first: Vec<String>,
    },
    /// Devices that layered deployments target but no base deployment reaches any more.
    BaseMissing {
        layers: Vec<String>,
        devices: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        first: Vec<String>,
    },
}

impl std::fmt::Display for ObjectWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectWarning::EqualPriority {
                object,
                objects,
                priority,
                paths,
                devices,
            } => write!(
                f,
                "{object}s `{}` and `{}` both have priority {priority} and target {devices} device(s) in common with different values for {}: the one created last wins; give them different priorities",
                objects[0],
                objects[1],
                paths.join(", "),
                object = object.as_str()
            ),
            ObjectWarning::RemovesModule {
                deployment,
                module,
                devices,
                first,
            } => write!(
                f,
                "removing layered deployment `{deployment}` (or narrowing its target) removes module `{module}` from {devices} device(s){}",
                listed(first, *devices)
            ),
            ObjectWarning::BaseMissing {
                layers,
                devices,
                first,
            } => write!(
                f,
                "{devices} device(s) targeted by layered deployment(s) {} are reached by no base deployment any more{}; a layer applies only on top of a base",
                layers
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                listed(first, *devices)
            ),
        }
    }
}

fn listed(first: &[String], total: u64) -> String {
    if first.is_empty() {
        return String::new();
    }
    let more = total.saturating_sub(first.len() as u64);
    if more > 0 {
        format!(": {}, … and {more} more", first.join(", "))
    } else {
        format!(": {}", first.join(", "))
    }
}

/// An object by kind and hub ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    pub object: ObjectKind,
    pub id: String,
}

/// What the planner made of the managed objects: a plan's `objects`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectPlan {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ObjectChange>,
    /// Declared objects another owner holds: not touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ObjectConflict>,
    /// What to warn about (equal priorities, removed modules, missing bases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ObjectWarning>,
    /// This owner's objects no manifest declares (`--prune` deletes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_longer_declared: Vec<ObjectRef>,
}

impl ObjectPlan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.conflicts.is_empty()
            && self.warnings.is_empty()
            && self.no_longer_declared.is_empty()
    }
}

/// One declared object, either kind, as the planner compares it.
struct Declared {
    kind: ObjectKind,
    name: String,
    id: String,
    body: ObjectBody,
    content: Value,
}

fn declared(owner: &str, c: &ConfigurationSpec) -> Declared {
    Declared {
        kind: ObjectKind::Configuration,
        name: c.name.clone(),
        id: c.id(),
        body: ObjectBody {
            target: c.target.clone(),
            priority: c.priority,
            labels: c.labels(owner),
            metrics: c.metrics.clone(),
        },
        content: c.content(),
    }
}

fn declared_deployment(owner: &str, d: &DeploymentSpec) -> Declared {
    Declared {
        kind: ObjectKind::Deployment,
        name: d.name.clone(),
        id: d.id(),
        body: ObjectBody {
            target: d.target.clone(),
            priority: d.priority,
            labels: d.labels(owner),
            metrics: d.metrics.clone(),
        },
        content: d.content(),
    }
}

/// The field diff of an object's mutable fields.
fn body_diff(hub: &ObservedObject, want: &ObjectBody) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    let mut field = |path: &str, before: Value, after: Value| {
        if before != after {
            out.push(FieldDiff {
                path: path.into(),
                before: Some(before),
                after: Some(after),
            });
        }
    };
    field("target", json!(hub.target), json!(want.target));
    field("priority", json!(hub.priority), json!(want.priority));
    field("labels", json!(hub.labels), json!(want.labels));
    field("metrics", json!(hub.metrics), json!(want.metrics));
    out
}

/// What a replacement changes of the content, path by path.
fn content_diff(old: &Value, new: &Value) -> Vec<FieldDiff> {
    let (before, after) = (
        super::object_checks::written_paths(old),
        super::object_checks::written_paths(new),
    );
    let paths: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| FieldDiff {
            path: format!("content.{p}"),
            before: before.get(p).cloned(),
            after: after.get(p).cloned(),
        })
        .collect()
}

/// Diffs the declared objects against the hub's: creates, in-place updates, replacements and (with
/// `prune`) deletes of this owner's objects no manifest declares.
pub fn diff(fleet: &Fleet, hub: &[ObservedObject], prune: bool) -> ObjectPlan {
    let owner = fleet.owner.as_str();
    let wanted: Vec<Declared> = fleet
        .configurations
        .iter()
        .map(|c| declared(owner, c))
        .chain(
            fleet
                .deployments
                .iter()
                .map(|d| declared_deployment(owner, d)),
        )
        .collect();
    let mut plan = ObjectPlan::default();
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    let mut deletes = Vec::new();
    let names: BTreeSet<(ObjectKind, &str)> =
        wanted.iter().map(|d| (d.kind, d.name.as_str())).collect();
    for d in &wanted {
        let of_kind = hub.iter().filter(|o| o.kind == d.kind);
        let ours: Vec<&ObservedObject> = of_kind
            .clone()
            .filter(|o| o.owned_name(owner) == Some(d.name.as_str()))
            .collect();
        // Another owner's object under this name, or an unlabelled one holding the very ID.
        let held = of_kind.clone().find(|o| {
            let theirs = o.owner().is_some_and(|x| x != owner)
                && o.labels.get(crate::model::NAME_LABEL) == Some(&d.name);
            theirs || (o.id == d.id && o.owner().is_none())
        });
        if ours.is_empty()
            && let Some(o) = held
        {
            let reason = match o.owner() {
                Some(other) => format!(
                    "{} `{}` is managed by `{other}` ({})",
                    d.kind.as_str(),
                    d.name,
                    o.id
                ),
                None => format!(
                    "{} `{}` already exists and is labelled as no owner's; label it `twinops-owner: {owner}` to adopt it",
                    d.kind.as_str(),
                    o.id
                ),
            };
            plan.conflicts.push(ObjectConflict {
                object: d.kind,
                name: d.name.clone(),
                id: d.id.clone(),
                reason,
            });
            continue;
        }
        match ours.iter().find(|o| o.id == d.id) {
            Some(current) => {
                let diff = body_diff(current, &d.body);
                if !diff.is_empty() {
                    updates.push(ObjectChange::Update {
                        object: d.kind,
                        name: d.name.clone(),
                        id: d.id.clone(),
                        if_match: current.etag.clone(),
                        body: d.body.clone(),
                        diff,
                        preview: None,
                    });
                }
            }
            None => {
                let replaced = ours.first();
                creates.push(ObjectChange::Create {
                    object: d.kind,
                    name: d.name.clone(),
                    id: d.id.clone(),
                    body: d.body.clone(),
                    content: d.content.clone(),
                    replaces: replaced.map(|o| o.id.clone()),
                    diff: replaced.map_or_else(Vec::new, |o| {
                        let mut diff = content_diff(&o.content, &d.content);
                        diff.extend(body_diff(o, &d.body));
                        diff
                    }),
                    preview: None,
                });
            }
        }
        // Every other object of this name (the one replaced, leftovers of an interrupted
        // replacement) goes once the declared one is applied.
        for o in ours.iter().filter(|o| o.id != d.id) {
            deletes.push(ObjectChange::Delete {
                object: d.kind,
                name: d.name.clone(),
                id: o.id.clone(),
                if_match: o.etag.clone(),
                replaced_by: Some(d.id.clone()),
            });
        }
    }
    for o in hub {
        let Some(name) = o.owned_name(owner) else {
            continue;
        };
        if names.contains(&(o.kind, name)) {
            continue;
        }
        if prune {
            deletes.push(ObjectChange::Delete {
                object: o.kind,
                name: name.to_string(),
                id: o.id.clone(),
                if_match: o.etag.clone(),
                replaced_by: None,
            });
        } else {
            plan.no_longer_declared.push(ObjectRef {
                object: o.kind,
                id: o.id.clone(),
            });
        }
    }
    plan.changes.extend(creates);
    plan.changes.extend(updates);
    plan.changes.extend(deletes);
    plan
}

/// How many objects of each kind the hub would hold after the plan: what the hub's caps (100
/// configurations, 100 deployments) are checked against before anything is written.
pub fn counts_after(
    hub: &[ObservedObject],
    changes: &[ObjectChange],
) -> BTreeMap<ObjectKind, usize> {
    let mut out: BTreeMap<ObjectKind, usize> = BTreeMap::new();
    for o in hub {
        *out.entry(o.kind).or_default() += 1;
    }
    for c in changes {
        let n = out.entry(c.object()).or_default();
        match c {
            // A replacement's create comes before its delete: both exist for a while.
            ObjectChange::Create { .. } => *n += 1,
            ObjectChange::Delete {
                replaced_by: None, ..
            } => *n = n.saturating_sub(1),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConfigurationContent, Location};
    use std::sync::Arc;

    fn loc() -> Location {
        Location {
            file: Arc::from("m.yaml"),
            line: 1,
            column: 1,
        }
    }

    fn config(name: &str, value: i64, priority: i64) -> ConfigurationSpec {
        ConfigurationSpec {
            name: name.into(),
            target: "tags.kind = 'thermostat'".into(),
            priority,
            labels: BTreeMap::new(),
            content: ConfigurationContent::Device {
                desired: json!({"interval": value}).as_object().cloned().unwrap(),
            },
            metrics: BTreeMap::new(),
            location: loc(),
        }
    }

    fn fleet(configurations: Vec<ConfigurationSpec>) -> Fleet {
        Fleet {
            owner: "platform".into(),
            devices: Vec::new(),
            digest: "0".repeat(64).as_str().into(),
            rollout: None,
            configurations,
            deployments: Vec::new(),
        }
    }

    /// The hub's form of a declared configuration, as this owner's.
    fn on_hub(c: &ConfigurationSpec, owner: &str) -> ObservedObject {
        ObservedObject {
            id: c.id(),
            kind: ObjectKind::Configuration,
            labels: c.labels(owner),
            target: c.target.clone(),
            priority: c.priority,
            metrics: c.metrics.clone(),
            content: c.content(),
            etag: "e1".into(),
            counts: Default::default(),
        }
    }

    fn actions(p: &ObjectPlan) -> Vec<String> {
        p.changes
            .iter()
            .map(|c| {
                let what = match c {
                    ObjectChange::Create {
                        replaces: Some(r), ..
                    } => format!("create (replaces {r})"),
                    ObjectChange::Create { .. } => "create".into(),
                    ObjectChange::Update { diff, .. } => format!(
                        "update {}",
                        diff.iter()
                            .map(|d| d.path.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    ObjectChange::Delete {
                        replaced_by: Some(n),
                        ..
                    } => format!("delete (for {n})"),
                    ObjectChange::Delete { .. } => "delete".into(),
                };
                format!("{what} {}", c.id())
            })
            .collect()
    }

    #[test]
    fn a_new_object_is_created_and_an_unchanged_one_is_left_alone() {
        let c = config("tele", 30, 10);
        let p = diff(&fleet(vec![c.clone()]), &[], false);
        assert_eq!(actions(&p), [format!("create {}", c.id())]);
        let p = diff(&fleet(vec![c.clone()]), &[on_hub(&c, "platform")], false);
        assert!(p.changes.is_empty(), "{p:?}");
    }

    #[test]
    fn mutable_fields_are_updated_in_place_under_the_etag() {
        let c = config("tele", 30, 10);
        let hub = on_hub(&c, "platform");
        let mut wanted = c.clone();
        wanted.priority = 20;
        wanted.target = "tags.kind = 'thermostat' AND tags.site = 'berlin'".into();
        let p = diff(&fleet(vec![wanted]), &[hub], false);
        assert_eq!(actions(&p), [format!("update target,priority {}", c.id())]);
        let ObjectChange::Update { if_match, .. } = &p.changes[0] else {
            panic!()
        };
        assert_eq!(if_match, "e1");
    }

    #[test]
    fn a_content_change_is_a_replacement_created_first_and_deleted_last() {
        let old = config("tele", 30, 10);
        let new = config("tele", 45, 10);
        let p = diff(
            &fleet(vec![new.clone()]),
            &[on_hub(&old, "platform")],
            false,
        );
        assert_eq!(
            actions(&p),
            [
                format!("create (replaces {}) {}", old.id(), new.id()),
                format!("delete (for {}) {}", new.id(), old.id()),
            ]
        );
        // The replaced object exists until the new one is applied: the cap counts both.
        let counts = counts_after(&[on_hub(&old, "platform")], &p.changes);
        assert_eq!(counts[&ObjectKind::Configuration], 2);
    }

    #[test]
    fn another_owners_object_is_a_conflict_and_never_touched() {
        let c = config("tele", 30, 10);
        let p = diff(&fleet(vec![c.clone()]), &[on_hub(&c, "app")], true);
        assert!(p.changes.is_empty(), "{p:?}");
        assert_eq!(p.conflicts.len(), 1);
        assert!(p.conflicts[0].reason.contains("managed by `app`"), "{p:?}");
        // An object nobody labelled that holds the very ID is not taken either.
        let mut bare = on_hub(&c, "x");
        bare.labels.clear();
        let p = diff(&fleet(vec![c]), &[bare], true);
        assert!(p.conflicts[0].reason.contains("no owner's"), "{p:?}");
    }

    #[test]
    fn undeclared_objects_of_this_owner_are_listed_and_pruned_only_when_asked() {
        let gone = config("gone", 1, 1);
        let hub = [
            on_hub(&gone, "platform"),
            on_hub(&config("theirs", 1, 1), "app"),
        ];
        let p = diff(&fleet(vec![]), &hub, false);
        assert!(p.changes.is_empty());
        assert_eq!(
            p.no_longer_declared,
            [ObjectRef {
                object: ObjectKind::Configuration,
                id: gone.id()
            }]
        );
        let p = diff(&fleet(vec![]), &hub, true);
        assert_eq!(actions(&p), [format!("delete {}", gone.id())]);
        assert_eq!(
            counts_after(&hub, &p.changes)[&ObjectKind::Configuration],
            1
        );
    }
}
