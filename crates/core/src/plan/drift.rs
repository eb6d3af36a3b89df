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
    NotAcknowledged,
    Configuration,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::ChangedInHub,
        Class::NoLongerDeclared,
        Class::RejectedByDevice,
        Class::NotAcknowledged,
        Class::Configuration,
    ];

    /// The key of the report's `counts` (the class as JSON writes it).
    pub fn key(self) -> &'static str {
        match self {
            Class::ChangedInHub => "changed_in_hub",
            Class::NoLongerDeclared => "no_longer_declared",
            Class::RejectedByDevice => "rejected_by_device",
            Class::NotAcknowledged => "not_acknowledged",
            Class::Configuration => "configuration",
        }
    }

    /// Whether an item of this class is drift (exit 2); the others are told, not failed on.
    pub fn is_drift(self) -> bool {
        matches!(
            self,
            Class::ChangedInHub | Class::NoLongerDeclared | Class::RejectedByDevice
        )
    }

    pub fn words(self) -> &'static str {
        match self {
            Class::ChangedInHub => "changed in hub",
            Class::NoLongerDeclared => "no longer declared",
            Class::RejectedByDevice => "rejected by the device",
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

/// Owned desired keys the device has not acknowledged, and those it rejected (with `ad`).
fn answers(spec: &TwinSpec, seen: &ObservedTwin) -> (Vec<String>, Vec<(String, Option<String>)>) {
    let mut pending = Vec::new();
    let mut rejected = Vec::new();
    for (k, v) in &spec.desired.to_map() {
        if seen.desired.get(k) != Some(v) {
            continue; // someone else's value now: not ours to judge
        }
        match classify(v, seen.reported.get(k), seen.desired_version) {
            Ack::Acknowledged => {}
            Ack::Pending => pending.push(format!("desired.{k}")),
            Ack::Rejected { ad } => rejected.push((format!("desired.{k}"), ad)),
        }
    }
    (pending, rejected)
}

/// Builds the drift report from a plan (changed in hub, no longer declared, conflicts), the
/// observed twins (the device's answers) and the configurations that also write declared keys
/// (the plan's warnings): a writer of a key that differs from the manifest is drift, one of a key
/// that equals it is told.
pub fn report(plan: &Plan, fleet: &Fleet, observed: &Observed, targets: &Targets) -> Report {
    let mut items = planned(plan);
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
            items.extend(twin_items(&a, &d.twin, &sd.twin));
        }
        for m in &d.modules {
            if let Some(sm) = sd.modules.get(&m.id)
                && targets.module(&d.id, &m.id)
            {
                let a = TwinAddress::module(d.id.clone(), m.id.clone());
                items.extend(twin_items(&a, &m.twin, &sm.twin));
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
                .filter(|p| p != "tags.twinops")
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

/// One declared twin's items: what its device rejected or has not acknowledged yet.
fn twin_items(address: &TwinAddress, spec: &TwinSpec, seen: &ObservedTwin) -> Vec<Item> {
    let item = |class, detail, keys| Item {
        address: address.clone().into(),
        class,
        detail,
        keys,
    };
    let mut items = Vec::new();
    let (unack, rejected) = answers(spec, seen);
    if !rejected.is_empty() {
        let ads: Vec<String> = rejected
            .iter()
            .map(|(k, ad)| match ad {
                Some(ad) => format!("{k}: {ad}"),
                None => k.clone(),
            })
            .collect();
        let detail = format!(
            "desired $version {} rejected ({})",
            seen.desired_version,
            ads.join("; ")
        );
        let keys = rejected.into_iter().map(|(k, _)| k).collect();
        items.push(item(Class::RejectedByDevice, detail, keys));
    }
    if !unack.is_empty() {
        let detail = format!(
            "desired $version {} not reported back",
            seen.desired_version
        );
        items.push(item(Class::NotAcknowledged, detail, unack));
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
