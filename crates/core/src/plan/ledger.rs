//! The ownership ledger kept in the reserved tag `twinops`:
//! `{"owner": "berlin-plant", "tags": {"site": true}, "desired": {"telemetryInterval": true}}`,
//! and, on a twin a rollout wrote, that rollout's mark (SPEC §11):
//! `"rollout": {"id": "<64 hex>", "wave": 1, "desired": {"telemetryInterval": true}}`.
//!
//! The hub holds it; there is no local state. Objects, not arrays, because twin tags may not hold
//! arrays on every hub. Ledgers written before rollouts existed have no `rollout` and read as before;
//! a `rollout` that is not a mark is ignored (the twin reads as not written by a rollout).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::model::{Digest, JsonMap, Section};

/// A parsed ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ledger {
    pub owner: String,
    pub tags: BTreeSet<String>,
    pub desired: BTreeSet<String>,
    /// The rollout that last wrote this twin's desired values, if one did.
    pub rollout: Option<Mark>,
}

/// What a rollout leaves in the ledger of each twin it writes: its ID, the wave the twin was in, and
/// the desired keys the write changed (the keys its gate waits for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub id: Digest,
    pub wave: usize,
    pub desired: BTreeSet<String>,
}

impl Mark {
    /// The mark's JSON, kept under `rollout` in the ledger.
    pub fn to_value(&self) -> Value {
        json!({"id": self.id, "wave": self.wave, "desired": keys_object(&self.desired)})
    }

    fn read(v: &Value) -> Option<Mark> {
        let m = v.as_object()?;
        Some(Mark {
            id: Digest::new(m.get("id")?.as_str()?).ok()?,
            wave: usize::try_from(m.get("wave")?.as_u64()?).ok()?,
            desired: keys(m.get("desired"))?,
        })
    }

    /// Bytes the mark adds to the ledger at most, with these desired keys, in the measure of
    /// `manifest::twin::size` (keys and strings, no JSON punctuation): `rollout`, `id` and its 64
    /// digits, `wave` and up to 10 digits, `desired` and each key with `true`.
    pub fn size_at_most<'a>(desired: impl IntoIterator<Item = &'a String>) -> usize {
        "rollout".len()
            + "id".len()
            + 64
            + "wave".len()
            + 10
            + "desired".len()
            + desired.into_iter().map(|k| k.len() + 4).sum::<usize>()
    }
}

fn keys_object(s: &BTreeSet<String>) -> Value {
    Value::Object(s.iter().map(|k| (k.clone(), Value::Bool(true))).collect())
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
            rollout: m.get("rollout").and_then(Mark::read),
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
            rollout: None,
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
        let mut v = json!({
            "owner": self.owner,
            "tags": keys_object(&self.tags),
            "desired": keys_object(&self.desired),
        });
        if let (Some(mark), Value::Object(m)) = (&self.rollout, &mut v) {
            m.insert("rollout".into(), mark.to_value());
        }
        v
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
    fn a_rollout_mark_round_trips_and_old_ledgers_read_without_one() {
        let mut l = Ledger::new("berlin", &map(json!({})), &map(json!({"interval": 1})));
        l.rollout = Some(Mark {
            id: Digest::new("ab".repeat(32)).unwrap(),
            wave: 2,
            desired: ["interval".to_string()].into(),
        });
        let tags = map(json!({"twinops": l.to_value()}));
        assert_eq!(read(&tags), Found::Ledger(l.clone()));
        let old =
            map(json!({"twinops": {"owner": "berlin", "tags": {}, "desired": {"interval": true}}}));
        let Found::Ledger(old) = read(&old) else {
            panic!("an old ledger reads");
        };
        assert_eq!(old.rollout, None);
        // A `rollout` that is not a mark leaves the ledger readable, without a mark.
        let junk =
            map(json!({"twinops": {"owner": "berlin", "tags": {}, "desired": {}, "rollout": "x"}}));
        assert!(matches!(
            read(&junk),
            Found::Ledger(Ledger { rollout: None, .. })
        ));
    }

    #[test]
    fn a_mark_never_exceeds_its_size_bound() {
        let keys: BTreeSet<String> = ["interval".to_string(), "mode".to_string()].into();
        let mark = Mark {
            id: Digest::new("f".repeat(64)).unwrap(),
            wave: usize::MAX,
            desired: keys.clone(),
        };
        let m = map(json!({"rollout": mark.to_value()}));
        assert!(twinops_iothub::twin_rules::size(&m) <= Mark::size_at_most(&keys));
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
