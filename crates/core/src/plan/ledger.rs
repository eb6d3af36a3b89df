//! The ownership ledger kept in the reserved tag `twinops`:
//! `{"owner": "berlin-plant", "tags": {"site": true}, "desired": {"telemetryInterval": true}}`.
//!
//! The hub holds it; there is no local state. Objects, not arrays, because twin tags may not hold
//! arrays on every hub.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::model::{JsonMap, Section};

/// A parsed ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ledger {
    pub owner: String,
    pub tags: BTreeSet<String>,
    pub desired: BTreeSet<String>,
}

/// What a twin's `twinops` tag says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No ledger: the twin is adopted on first apply.
    None,
    Ledger(Ledger),
    /// Something that is not a ledger sits in the reserved tag; it is treated like another owner.
    Malformed,
}

fn keys(v: Option<&Value>) -> Option<BTreeSet<String>> {
    match v {
        None | Some(Value::Null) => Some(BTreeSet::new()),
        Some(Value::Object(m)) => Some(m.keys().cloned().collect()),
        _ => None,
    }
}

/// Reads the ledger from a twin's tags.
pub fn read(tags: &JsonMap) -> Found {
    let Some(v) = tags.get(crate::model::LEDGER_TAG) else {
        return Found::None;
    };
    let Value::Object(m) = v else {
        return Found::Malformed;
    };
    let Some(owner) = m.get("owner").and_then(Value::as_str) else {
        return Found::Malformed;
    };
    match (keys(m.get("tags")), keys(m.get("desired"))) {
        (Some(tags), Some(desired)) => Found::Ledger(Ledger {
            owner: owner.to_string(),
            tags,
            desired,
        }),
        _ => Found::Malformed,
    }
}

impl Ledger {
    /// The ledger for `owner` owning the top-level keys of `tags` and `desired`.
    pub fn new(owner: &str, tags: &JsonMap, desired: &JsonMap) -> Ledger {
        Ledger {
            owner: owner.to_string(),
            tags: tags.keys().cloned().collect(),
            desired: desired.keys().cloned().collect(),
        }
    }

    pub fn keys(&self, section: Section) -> &BTreeSet<String> {
        match section {
            Section::Tags => &self.tags,
            Section::Desired => &self.desired,
        }
    }

    /// The JSON kept in the `twinops` tag.
    pub fn to_value(&self) -> Value {
        let obj = |s: &BTreeSet<String>| {
            Value::Object(s.iter().map(|k| (k.clone(), Value::Bool(true))).collect())
        };
        json!({"owner": self.owner, "tags": obj(&self.tags), "desired": obj(&self.desired)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> JsonMap {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn ledger_round_trips_through_tags() {
        let l = Ledger::new(
            "berlin",
            &map(json!({"site": "b"})),
            &map(json!({"telemetryInterval": 1})),
        );
        let tags = map(json!({"twinops": l.to_value(), "other": 1}));
        assert_eq!(read(&tags), Found::Ledger(l));
    }

    #[test]
    fn missing_ledger_is_none_and_junk_is_malformed() {
        assert_eq!(read(&map(json!({"site": 1}))), Found::None);
        assert_eq!(read(&map(json!({"twinops": "me"}))), Found::Malformed);
        assert_eq!(
            read(&map(json!({"twinops": {"owner": "x", "tags": ["a"]}}))),
            Found::Malformed
        );
    }
}
