//! Drift (SPEC §8): classifies differences between the manifests and the hub.
//!
//! - changed in hub: an owned key differs, a declared identity is missing, or a conflict (exit 2);
//! - not yet acknowledged: an owned desired key the device has not reported back (informational);
//! - also written by a configuration: an applied automatic configuration writes an owned desired key.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Plan, Targets};
use crate::model::{
    Address, Fleet, JsonMap, Observed, ObservedConfiguration, ObservedTwin, TwinAddress, TwinSpec,
};

/// One drifted item: an identity, a twin or (SPEC §16) a managed object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    #[serde(flatten)]
    pub address: Address,
    /// `changed_in_hub`, `not_acknowledged` or `configuration`.
    pub class: Class,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    ChangedInHub,
    /// Owned by this manifest set's ledger, but no manifest declares it any more (`--prune`
    /// deletes it).
    NoLongerDeclared,
    /// The device answered an owned desired value with a Plug and Play rejection (`ac` >= 400).
    RejectedByDevice,
    /// Not acknowledged `--stale-after` after the key last changed: drift.
    Stale,
    NotAcknowledged,
    Configuration,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::ChangedInHub,
        Class::NoLongerDeclared,
        Class::RejectedByDevice,
        Class::Stale,
        Class::NotAcknowledged,
        Class::Configuration,
    ];

    /// The key of the report's `counts` (the class as JSON writes it).
    pub fn key(self) -> &'static str {
        match self {
            Class::ChangedInHub => "changed_in_hub",
            Class::NoLongerDeclared => "no_longer_declared",
            Class::RejectedByDevice => "rejected_by_device",
            Class::Stale => "stale",
            Class::NotAcknowledged => "not_acknowledged",
            Class::Configuration => "configuration",
        }
    }

    /// Whether an item of this class is drift (exit 2); the others are told, not failed on.
    pub fn is_drift(self) -> bool {
        matches!(
            self,
            Class::ChangedInHub | Class::NoLongerDeclared | Class::RejectedByDevice | Class::Stale
        )
    }

    pub fn words(self) -> &'static str {
        match self {
            Class::ChangedInHub => "changed in hub",
            Class::NoLongerDeclared => "no longer declared",
            Class::RejectedByDevice => "rejected by the device",
            Class::Stale => "not acknowledged in time",
            Class::NotAcknowledged => "not yet acknowledged by the device",
            Class::Configuration => "also written by a configuration",
        }
    }
}

/// The drift report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub hub: String,
    pub owner: String,
    pub in_sync: bool,
    pub counts: BTreeMap<String, usize>,
    pub items: Vec<Item>,
}

/// What a device answered about one desired value (SPEC §11): the one classifier that `drift`,
/// `apply --wait` and rollout gates share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Reported equal to desired, or the Plug and Play form `{"value": v, "ac": 2xx, "av": n}`
    /// with `n >=` the desired `$version`.
    Acknowledged,
    /// The Plug and Play form with `ac >= 400` and `av >=` the desired `$version`; `ad` is the
    /// device's description, kept for the report.
    Rejected { ad: Option<String> },
    /// Nothing that answers this desired version yet.
    Pending,
}

/// Classifies `reported` against `desired` at desired `$version` `version`.
pub fn classify(desired: &Value, reported: Option<&Value>, version: i64) -> Ack {
    let Some(r) = reported else {
        return Ack::Pending;
    };
    if r == desired {
        return Ack::Acknowledged;
    }
    let (Some(ac), Some(av)) = (
        r.get("ac").and_then(Value::as_i64),
        r.get("av").and_then(Value::as_i64),
    ) else {
        return Ack::Pending;
    };
    if av < version {
        return Ack::Pending;
    }
    if ac >= 400 {
        return Ack::Rejected {
            ad: r.get("ad").and_then(Value::as_str).map(str::to_string),
        };
    }
    if (200..300).contains(&ac) && r.get("value") == Some(desired) {
        return Ack::Acknowledged;
    }
    Ack::Pending
}

/// One twin's answer from its keys' answers: rejected when any key is (the devices' texts joined),
/// else pending when any key is, else acknowledged.
pub fn twin_answer(keys: impl IntoIterator<Item = (String, Ack)>) -> Ack {
    let mut pending = false;
    let mut rejected = Vec::new();
    for (key, answer) in keys {
        match answer {
            Ack::Acknowledged => {}
            Ack::Pending => pending = true,
            Ack::Rejected { ad } => rejected.push(match ad {
                Some(ad) => format!("{key}: {ad}"),
                None => key,
            }),
        }
    }
    if !rejected.is_empty() {
        Ack::Rejected {
            ad: Some(rejected.join("; ")),
        }
    } else if pending {
        Ack::Pending
    } else {
        Ack::Acknowledged
    }
}

/// Whether `reported` acknowledges `desired` at desired `$version` `version` ([`classify`]).
pub fn acknowledged(desired: &Value, reported: Option<&Value>, version: i64) -> bool {
    classify(desired, reported, version) == Ack::Acknowledged
}

/// One declared desired key's answer, judged at the key's own `$lastUpdatedVersion` (SPEC §11).
struct KeyAnswer {
    path: String,
    version: i64,
    /// When the key last changed (Unix seconds), when the hub said.
    updated: Option<i64>,
    ack: Ack,
}

/// The declared desired keys (`want`, a spec's desired section) that hold the manifest's value,
/// each classified at its own version (a key someone else changed is not ours to judge).
fn answers(want: &JsonMap, seen: &ObservedTwin) -> Vec<KeyAnswer> {
    let mut out = Vec::new();
    for (k, v) in want {
        if seen.desired.get(k) != Some(v) {
            continue;
        }
        let version = seen.key_version(k);
        out.push(KeyAnswer {
            path: format!("desired.{k}"),
            version,
            updated: seen.desired_meta.get(k).and_then(|m| m.updated),
            ack: classify(v, seen.reported.get(k), version),
        });
    }
    out
}

/// The declared desired keys of a twin (`want`, its spec's desired section) that hold the
/// manifest's value and that its device has not acknowledged (pending or rejected) at their own
/// versions, with those values: what `apply --wait` waits for on a twin the run does not write.
/// `None` when every one is acknowledged.
pub fn unacknowledged(want: &JsonMap, seen: &ObservedTwin) -> Option<JsonMap> {
    let mut out = JsonMap::new();
    for a in answers(want, seen) {
        if a.ack != Ack::Acknowledged {
            let key = a.path.trim_start_matches("desired.");
            if let Some(v) = seen.desired.get(key) {
                out.insert(key.to_string(), v.clone());
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// `drift --stale-after`: a key still unacknowledged this long after it last changed is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    pub after: std::time::Duration,
    /// Now, as Unix seconds (the core reads no clock).
    pub now: i64,
}

impl Staleness {
    fn is_stale(&self, updated: Option<i64>) -> bool {
        let after = i64::try_from(self.after.as_secs()).unwrap_or(i64::MAX);
        updated.is_some_and(|u| self.now.saturating_sub(u) >= after)
    }
}

/// Builds the drift report from a plan (changed in hub, no longer declared, conflicts), the
/// observed twins (the device's answers) and the configurations that also write declared keys
/// (the plan's warnings): a writer of a key that differs from the manifest is drift, one of a key
/// that equals it is told.
pub fn report(
    plan: &Plan,
    fleet: &Fleet,
    observed: &Observed,
    targets: &Targets,
    stale: Option<Staleness>,
    hub_objects: &[crate::model::ObservedObject],
) -> Report {
    let mut items = planned(plan);
    items.extend(object_items(plan, &fleet.owner, hub_objects));
    for w in &plan.warnings {
        let class = if w.matches {
            Class::Configuration
        } else {
            Class::ChangedInHub
        };
        items.push(Item {
            address: w.address.clone().into(),
            class,
            detail: w.to_string(),
            keys: vec![w.path.clone()],
        });
    }
    for d in &fleet.devices {
        let Some(sd) = observed.devices.get(&d.id) else {
            continue;
        };
        if targets.device(&d.id) {
            let a = TwinAddress::device(d.id.clone());
            items.extend(twin_items(&a, &d.twin, &sd.twin, stale));
        }
        for m in &d.modules {
            if let Some(sm) = sd.modules.get(&m.id)
                && targets.module(&d.id, &m.id)
            {
                let a = TwinAddress::module(d.id.clone(), m.id.clone());
                items.extend(twin_items(&a, &m.twin, &sm.twin, stale));
            }
        }
    }
    items.sort_by(|a, b| (a.class, &a.address).cmp(&(b.class, &b.address)));
    let counts = Class::ALL
        .into_iter()
        .map(|c| {
            (
                c.key().to_string(),
                items.iter().filter(|i| i.class == c).count(),
            )
        })
        .collect();
    Report {
        format_version: super::FORMAT_VERSION,
        hub: plan.hub.clone(),
        owner: plan.owner.to_string(),
        in_sync: !items.iter().any(|i| i.class.is_drift()),
        counts,
        items,
    }
}

/// The managed objects' drift (SPEC §16): a declared object changed in the hub (its mutable fields,
/// or its content: a replacement), deleted, held by another owner, failing on edge agents, and
/// this owner's objects no manifest declares.
fn object_items(
    plan: &Plan,
    owner: &str,
    hub_objects: &[crate::model::ObservedObject],
) -> Vec<Item> {
    use super::objects::ObjectChange;
    use crate::model::{Address, ConfigurationId, ObjectKind};
    let address = |kind: ObjectKind, id: &str| -> Option<Address> {
        let id = ConfigurationId::new(id).ok()?;
        Some(match kind {
            ObjectKind::Configuration => Address::Configuration(id),
            ObjectKind::Deployment => Address::Deployment(id),
        })
    };
    let mut items = Vec::new();
    let mut push = |kind, id: &str, class, detail: String, keys: Vec<String>| {
        if let Some(address) = address(kind, id) {
            items.push(Item {
                address,
                class,
                detail,
                keys,
            });
        }
    };
    for c in &plan.objects.changes {
        let kind = c.object();
        match c {
            ObjectChange::Update { diff, .. } => push(
                kind,
                c.id(),
                Class::ChangedInHub,
                format!("{} `{}` was changed in the hub", kind.as_str(), c.name()),
                diff.iter().map(|d| d.path.clone()).collect(),
            ),
            ObjectChange::Create {
                replaces: Some(old),
                ..
            } => push(
                kind,
                old,
                Class::ChangedInHub,
                format!(
                    "{} `{}` in the hub has other content than the manifests (apply replaces it with `{}`)",
                    kind.as_str(),
                    c.name(),
                    c.id()
                ),
                Vec::new(),
            ),
            ObjectChange::Create { .. } => push(
                kind,
                c.id(),
                Class::ChangedInHub,
                format!("{} `{}` is missing from the hub", kind.as_str(), c.name()),
                Vec::new(),
            ),
            ObjectChange::Delete { .. } => {}
        }
    }
    for k in &plan.objects.conflicts {
        push(
            k.object,
            &k.id,
            Class::ChangedInHub,
            format!("conflict: {}", k.reason),
            Vec::new(),
        );
    }
    for r in &plan.objects.no_longer_declared {
        push(
            r.object,
            &r.id,
            Class::NoLongerDeclared,
            "owned, but no manifest declares it any more; apply --prune deletes it".into(),
            Vec::new(),
        );
    }
    for o in hub_objects.iter().filter(|o| o.owned_name(owner).is_some()) {
        let failed = o.counts.reported_failed.unwrap_or(0);
        if failed > 0 {
            push(
                o.kind,
                &o.id,
                Class::RejectedByDevice,
                format!("{failed} edge agent(s) report this deployment as failed"),
                Vec::new(),
            );
        }
    }
    items
}

/// What the plan says differs: its changes, the identities no manifest declares any more, and its
/// conflicts.
fn planned(plan: &Plan) -> Vec<Item> {
    let mut items = Vec::new();
    for c in &plan.changes {
        let detail = match c.kind() {
            super::Kind::CreateDevice => "device missing from the hub",
            super::Kind::CreateModule => "module missing from the hub",
            super::Kind::UpdateDevice | super::Kind::UpdateModule => {
                "identity differs from the manifest"
            }
            _ => "owned values differ from the manifest",
        };
        items.push(Item {
            address: c.address().into(),
            class: Class::ChangedInHub,
            detail: detail.to_string(),
            keys: c
                .shown_diff()
                .iter()
                .map(|d| d.path.clone())
                .filter(|p| p != crate::model::LEDGER_PATH)
                .collect(),
        });
    }
    for address in &plan.no_longer_declared {
        items.push(Item {
            address: address.clone().into(),
            class: Class::NoLongerDeclared,
            detail: "owned, but no manifest declares it any more; apply --prune deletes it".into(),
            keys: Vec::new(),
        });
    }
    for k in &plan.conflicts {
        items.push(Item {
            address: k.address.clone().into(),
            class: Class::ChangedInHub,
            detail: format!("conflict: {}", k.reason),
            keys: k.keys.clone(),
        });
    }
    items
}

/// One declared twin's items: what its device rejected, what it has not acknowledged yet, and
/// (with `--stale-after`) what it has not acknowledged in time; each key at its own version.
fn twin_items(
    address: &TwinAddress,
    spec: &TwinSpec,
    seen: &ObservedTwin,
    stale: Option<Staleness>,
) -> Vec<Item> {
    let item = |class, detail, keys| Item {
        address: address.clone().into(),
        class,
        detail,
        keys,
    };
    let answers = answers(&spec.desired.to_map(), seen);
    let mut rejected = Vec::new();
    let mut pending = Vec::new();
    let mut late = Vec::new();
    for a in &answers {
        match &a.ack {
            Ack::Acknowledged => {}
            Ack::Rejected { ad } => rejected.push((a, ad)),
            Ack::Pending if stale.is_some_and(|s| s.is_stale(a.updated)) => late.push(a),
            Ack::Pending => pending.push(a),
        }
    }
    let mut items = Vec::new();
    if !rejected.is_empty() {
        let ads: Vec<String> = rejected
            .iter()
            .map(|(a, ad)| match ad {
                Some(ad) => format!("{} at version {}: {ad}", a.path, a.version),
                None => format!("{} at version {}", a.path, a.version),
            })
            .collect();
        let detail = format!("rejected: {}", ads.join("; "));
        let keys = rejected.iter().map(|(a, _)| a.path.clone()).collect();
        items.push(item(Class::RejectedByDevice, detail, keys));
    }
    let versions = |list: &[&KeyAnswer]| {
        list.iter()
            .map(|a| format!("{} (version {})", a.path, a.version))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !late.is_empty() {
        let after = stale.map(|s| s.after).unwrap_or_default();
        let detail = format!(
            "not acknowledged {} after it changed: {}",
            twinops_iothub::duration::format(after),
            versions(&late)
        );
        let keys = late.iter().map(|a| a.path.clone()).collect();
        items.push(item(Class::Stale, detail, keys));
    }
    if !pending.is_empty() {
        let detail = format!("not reported back yet: {}", versions(&pending));
        let keys = pending.iter().map(|a| a.path.clone()).collect();
        items.push(item(Class::NotAcknowledged, detail, keys));
    }
    items
}

/// The top-level desired keys a configuration's content writes.
pub fn content_keys(content: &JsonMap) -> ObservedConfiguration {
    let mut c = ObservedConfiguration::default();
    let top = |path: &str, v: &Value| -> Vec<String> {
        // `properties.desired.a.b` -> a; `properties.desired` -> the object's keys.
        match path.strip_prefix("properties.desired") {
            Some("") => v
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
            Some(rest) => rest
                .strip_prefix('.')
                .and_then(|r| r.split('.').next())
                .map(|k| vec![k.to_string()])
                .unwrap_or_default(),
            None => Vec::new(),
        }
    };
    for (section, v) in content {
        let Some(m) = v.as_object() else { continue };
        match section.as_str() {
            "deviceContent" => {
                for (p, pv) in m {
                    c.device_keys.extend(top(p, pv));
                }
            }
            "moduleContent" => {
                for (p, pv) in m {
                    c.module_keys.extend(top(p, pv));
                }
            }
            "modulesContent" => {
                for (module, mv) in m {
                    if let Some(mm) = mv.as_object() {
                        let e = c.modules.entry(module.clone()).or_default();
                        for (p, pv) in mm {
                            e.extend(top(p, pv));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_or_plug_and_play_ack_counts_as_acknowledged() {
        assert!(acknowledged(&json!(5), Some(&json!(5)), 3));
        assert!(acknowledged(
            &json!(5),
            Some(&json!({"value": 5, "ac": 200, "av": 3})),
            3
        ));
        assert!(!acknowledged(
            &json!(5),
            Some(&json!({"value": 5, "ac": 200, "av": 2})),
            3
        ));
        assert!(!acknowledged(
            &json!(5),
            Some(&json!({"value": 5, "ac": 500, "av": 3})),
            3
        ));
        assert!(!acknowledged(&json!(5), None, 3));
    }

    #[test]
    fn a_plug_and_play_rejection_of_this_version_is_rejected_with_its_text() {
        let r = json!({"value": 4, "ac": 400, "ad": "out of range", "av": 3});
        assert_eq!(
            classify(&json!(5), Some(&r), 3),
            Ack::Rejected {
                ad: Some("out of range".into())
            }
        );
        // A rejection of an older version says nothing about this one.
        assert_eq!(classify(&json!(5), Some(&r), 4), Ack::Pending);
        let no_text = json!({"value": 4, "ac": 500, "av": 9});
        assert_eq!(
            classify(&json!(5), Some(&no_text), 3),
            Ack::Rejected { ad: None }
        );
        assert_eq!(classify(&json!(5), None, 3), Ack::Pending);
        assert_eq!(classify(&json!(5), Some(&json!(5)), 3), Ack::Acknowledged);
        // 2xx with another value is no acknowledgement of this one.
        let other = json!({"value": 4, "ac": 200, "av": 3});
        assert_eq!(classify(&json!(5), Some(&other), 3), Ack::Pending);
    }

    #[test]
    fn configuration_content_names_top_level_desired_keys() {
        let c = content_keys(
            json!({"deviceContent": {"properties.desired.settings.a": 1, "properties.desired": {"b": 1}}})
                .as_object()
                .unwrap_or(&JsonMap::new()),
        );
        assert_eq!(
            c.device_keys.into_iter().collect::<Vec<_>>(),
            vec!["b", "settings"]
        );
    }
}
