//! The ownership ledger kept in the reserved tag `twinops` (SPEC §15): per owner, the identity
//! fields, twin keys and rollout mark it manages, so that several owners share a twin.
//!
//! ```json
//! {"version": 2, "owners": {
//!    "berlin-plant": {"fields": {"status": true}, "tags": {"site": true}, "desired": {"interval": true},
//!                     "rollout": {"id": "<64 hex>", "wave": 1, "desired": {"interval": true}}},
//!    "app-team": {"fields": {}, "tags": {}, "desired": {"telemetry": true}}}}
//! ```
//!
//! Objects, not arrays, because twin tags may not hold arrays on every hub; an owner's name is its
//! key with `.` written `%2E`, as tag keys may not hold `.` and owners never hold `%`.
//!
//! Earlier versions wrote one owner's ledger, `{"owner", "tags", "desired", "rollout"}` (form 1). It
//! is read as that owner's entry, which manages every identity field ([`Fields::Legacy`]: the old
//! single-owner model enforced them all), and is rewritten in form 2 on the next write of the
//! twin. An entry without `fields` reads as legacy too (a form-1 entry another owner converted). A
//! ledger whose `version` is newer than [`VERSION`] is [`Found::Newer`]: never written.
//!
//! Each owner writes only its own entry: [`write_patch`] computes the merge patch that puts the
//! entries of a [`project`]ion into the ledger as it is now, so a resend after a 412 recomputes it
//! against the twin re-read, and another owner's entry is never touched (unless a
//! `--force-conflicts` takes keys from it, which the projection then names).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::model::{Digest, JsonMap, LEDGER_TAG, Section};

/// The ledger form this twinops writes.
pub const VERSION: u64 = 2;

/// An identity field an owner can manage (SPEC §15): for a device each of these, for a module
/// `auth` only. Kept in its twin's ledger (the device twin's, the module twin's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityField {
    Status,
    StatusReason,
    Auth,
    Edge,
    Parent,
}

impl IdentityField {
    pub const ALL: [IdentityField; 5] = [
        IdentityField::Status,
        IdentityField::StatusReason,
        IdentityField::Auth,
        IdentityField::Edge,
        IdentityField::Parent,
    ];

    /// The name in manifests and in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityField::Status => "status",
            IdentityField::StatusReason => "statusReason",
            IdentityField::Auth => "auth",
            IdentityField::Edge => "edge",
            IdentityField::Parent => "parent",
        }
    }

    pub fn parse(text: &str) -> Option<IdentityField> {
        IdentityField::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

impl std::fmt::Display for IdentityField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity fields an entry manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// An entry of form 1 (or converted from one by another owner): its owner managed the whole
    /// identity, so every field counts as its own until it writes the entry in form 2.
    Legacy,
    Managed(BTreeSet<IdentityField>),
}

impl Fields {
    pub fn manages(&self, f: IdentityField) -> bool {
        match self {
            Fields::Legacy => true,
            Fields::Managed(s) => s.contains(&f),
        }
    }
}

impl Default for Fields {
    fn default() -> Fields {
        Fields::Managed(BTreeSet::new())
    }
}

/// What one owner manages on a twin (and on its identity).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub fields: Fields,
    pub tags: BTreeSet<String>,
    pub desired: BTreeSet<String>,
    /// The rollout that last wrote this twin's desired values for this owner, if one did.
    pub rollout: Option<Mark>,
}

impl Entry {
    /// The entry of an owner managing these fields and the top-level keys of `tags` and `desired`.
    pub fn new(fields: BTreeSet<IdentityField>, tags: &JsonMap, desired: &JsonMap) -> Entry {
        Entry {
            fields: Fields::Managed(fields),
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

    fn keys_mut(&mut self, section: Section) -> &mut BTreeSet<String> {
        match section {
            Section::Tags => &mut self.tags,
            Section::Desired => &mut self.desired,
        }
    }

    /// Manages nothing (an emptied entry is removed).
    pub fn is_empty(&self) -> bool {
        self.fields == Fields::Managed(BTreeSet::new())
            && self.tags.is_empty()
            && self.desired.is_empty()
            && self.rollout.is_none()
    }

    /// Gives up a key (a `--force-conflicts` took it).
    pub fn remove_key(&mut self, section: Section, key: &str) {
        self.keys_mut(section).remove(key);
    }

    /// Gives up a field (a `--force-conflicts` took it); a legacy entry lists the others.
    pub fn remove_field(&mut self, f: IdentityField) {
        let mut set = match &self.fields {
            Fields::Legacy => IdentityField::ALL.into_iter().collect(),
            Fields::Managed(s) => s.clone(),
        };
        set.remove(&f);
        self.fields = Fields::Managed(set);
    }

    /// The entry as the ledger holds it.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        if let Fields::Managed(f) = &self.fields {
            m.insert(
                "fields".into(),
                keys_object(f.iter().map(|f| f.as_str().to_string())),
            );
        }
        m.insert("tags".into(), keys_object(self.tags.iter().cloned()));
        m.insert("desired".into(), keys_object(self.desired.iter().cloned()));
        if let Some(mark) = &self.rollout {
            m.insert("rollout".into(), mark.to_value());
        }
        Value::Object(m)
    }

    fn read(v: &Value) -> Option<Entry> {
        let m = v.as_object()?;
        let fields = match m.get("fields") {
            None => Fields::Legacy,
            some => Fields::Managed(
                keys(some)?
                    .iter()
                    .map(|f| IdentityField::parse(f))
                    .collect::<Option<_>>()?,
            ),
        };
        Some(Entry {
            fields,
            tags: keys(m.get("tags"))?,
            desired: keys(m.get("desired"))?,
            rollout: m.get("rollout").and_then(Mark::read),
        })
    }

    /// Whether this entry and `other` manage the same (a legacy entry's fields equal any), so that
    /// the ledger need not be written for it.
    pub fn same_as(&self, other: &Entry) -> bool {
        let fields = match (&self.fields, &other.fields) {
            (Fields::Legacy, _) | (_, Fields::Legacy) => true,
            (a, b) => a == b,
        };
        fields
            && self.tags == other.tags
            && self.desired == other.desired
            && self.rollout == other.rollout
    }
}

/// What a rollout leaves in the ledger entry of each twin it writes: its ID, the wave the twin was
/// in, and the desired keys the write changed (the keys its gate waits for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub id: Digest,
    pub wave: usize,
    pub desired: BTreeSet<String>,
}

impl Mark {
    /// The mark's JSON, kept under `rollout` in the entry.
    pub fn to_value(&self) -> Value {
        json!({"id": self.id, "wave": self.wave, "desired": keys_object(self.desired.iter().cloned())})
    }

    fn read(v: &Value) -> Option<Mark> {
        let m = v.as_object()?;
        Some(Mark {
            id: Digest::new(m.get("id")?.as_str()?).ok()?,
            wave: usize::try_from(m.get("wave")?.as_u64()?).ok()?,
            desired: keys(m.get("desired"))?,
        })
    }

    /// Bytes the mark adds to the ledger at most, with these desired keys, as compact JSON:
    /// `,"rollout":{"id":"<64>","wave":<up to 20 digits>,"desired":{"k":true,…}}`.
    pub fn size_at_most<'a>(desired: impl IntoIterator<Item = &'a String>) -> usize {
        let keys: usize = desired
            .into_iter()
            .map(|k| Value::String(k.clone()).to_string().len() + ":true,".len())
            .sum();
        r#","rollout":{"id":"","wave":,"desired":{}}"#.len() + 64 + 20 + keys
    }
}

fn keys_object(keys: impl Iterator<Item = String>) -> Value {
    Value::Object(keys.map(|k| (k, Value::Bool(true))).collect())
}

fn keys(v: Option<&Value>) -> Option<BTreeSet<String>> {
    match v {
        None | Some(Value::Null) => Some(BTreeSet::new()),
        Some(Value::Object(m)) => Some(m.keys().cloned().collect()),
        _ => None,
    }
}

/// An owner's name as a key of the ledger's `owners` (tag keys may not hold `.`).
pub fn owner_key(owner: &str) -> String {
    owner.replace('.', "%2E")
}

/// The owner a key of `owners` names.
pub fn key_owner(key: &str) -> String {
    key.replace("%2E", ".")
}

/// A parsed ledger: every owner's entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ledger {
    /// The form it was read in (1 or [`VERSION`]).
    pub version: u64,
    /// By owner name.
    pub owners: BTreeMap<String, Entry>,
}

/// What a twin's `twinops` tag says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No ledger: nobody manages anything on the twin yet.
    None,
    Ledger(Ledger),
    /// Something that is not a ledger sits in the reserved tag; it is treated like another owner.
    Malformed,
    /// A ledger of a form newer than this twinops knows: a conflict, never written.
    Newer(u64),
}

/// Reads the ledger from a twin's tags.
pub fn read(tags: &JsonMap) -> Found {
    match tags.get(LEDGER_TAG) {
        None => Found::None,
        Some(v) => read_value(v),
    }
}

/// Reads a ledger tag's value.
pub fn read_value(v: &Value) -> Found {
    let Value::Object(m) = v else {
        return Found::Malformed;
    };
    if let Some(version) = m.get("version") {
        return match version.as_u64() {
            Some(VERSION) => read_owners(m.get("owners")),
            Some(n) if n > VERSION => Found::Newer(n),
            _ => Found::Malformed,
        };
    }
    // Form 1: one owner's ledger.
    let Some(owner) = m.get("owner").and_then(Value::as_str) else {
        return Found::Malformed;
    };
    let mut entry_value = v.clone();
    if let Value::Object(e) = &mut entry_value {
        e.remove("owner");
    }
    match Entry::read(&entry_value) {
        Some(entry) => Found::Ledger(Ledger {
            version: 1,
            owners: [(owner.to_string(), entry)].into(),
        }),
        None => Found::Malformed,
    }
}

fn read_owners(owners: Option<&Value>) -> Found {
    let Some(Value::Object(owners)) = owners else {
        return Found::Malformed;
    };
    let mut out = BTreeMap::new();
    for (k, v) in owners {
        match Entry::read(v) {
            Some(e) => {
                out.insert(key_owner(k), e);
            }
            None => return Found::Malformed,
        }
    }
    Found::Ledger(Ledger {
        version: VERSION,
        owners: out,
    })
}

impl Ledger {
    pub fn entry(&self, owner: &str) -> Option<&Entry> {
        self.owners.get(owner)
    }

    /// The first owner other than `except` whose entry manages this key.
    pub fn manager_of_key(&self, section: Section, key: &str, except: &str) -> Option<&str> {
        self.owners
            .iter()
            .find(|(o, e)| o.as_str() != except && e.keys(section).contains(key))
            .map(|(o, _)| o.as_str())
    }

    /// The first owner other than `except` whose entry manages this identity field.
    pub fn manager_of_field(&self, f: IdentityField, except: &str) -> Option<&str> {
        self.owners
            .iter()
            .find(|(o, e)| o.as_str() != except && e.fields.manages(f))
            .map(|(o, _)| o.as_str())
    }

    /// Whether an owner other than `except` manages anything on the twin.
    pub fn others_manage_anything(&self, except: &str) -> bool {
        self.owners
            .iter()
            .any(|(o, e)| o.as_str() != except && !e.is_empty())
    }

    /// The ledger in form 2.
    pub fn to_value(&self) -> Value {
        let owners: Map<String, Value> = self
            .owners
            .iter()
            .map(|(o, e)| (owner_key(o), e.to_value()))
            .collect();
        json!({"version": VERSION, "owners": owners})
    }
}

/// The part of a ledger value these owners' entries make up: `{"owners": {key: entry|null}}`. It
/// is what a twin change compares of the ledger (its `base` and `target`), so that another owner's
/// write of its own entry does not look like a change of ours. A ledger that this twinops cannot
/// write (malformed, newer) projects to a value no entry has, so any comparison with it differs.
pub fn project(v: Option<&Value>, owners: &[&str]) -> Value {
    let ledger = match v.map(read_value) {
        None => Ledger::default(),
        Some(Found::Ledger(l)) => l,
        Some(Found::None) => Ledger::default(),
        Some(Found::Malformed) => return json!({"unreadable": true}),
        Some(Found::Newer(n)) => return json!({"version": n}),
    };
    let entries: Map<String, Value> = owners
        .iter()
        .map(|o| {
            let e = ledger.owners.get(*o).map_or(Value::Null, Entry::to_value);
            (owner_key(o), e)
        })
        .collect();
    json!({"owners": entries})
}

/// The owners a projection names.
pub fn projected_owners(projection: &Value) -> Vec<String> {
    projection
        .get("owners")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(|k| key_owner(k)).collect())
        .unwrap_or_default()
}

/// The merge patch of the ledger tag that writes a projection's entries into the ledger `seen` (as
/// the twin holds it now), in form 2: a `null` entry is removed, the others are replaced whole, and
/// every other owner's entry is left as it is; a ledger left without entries is removed. `None`
/// when nothing changes.
pub fn write_patch(seen: Option<&Value>, target: &Value) -> Option<Value> {
    let mut ledger = match seen.map(read_value) {
        Some(Found::Ledger(l)) => l,
        _ => Ledger::default(),
    };
    if let Some(Value::Object(entries)) = target.get("owners") {
        for (k, v) in entries {
            let owner = key_owner(k);
            // `null` removes an entry; any other entry is kept, an empty one too (it says that
            // this owner declares the identity, which `--prune` needs).
            match Entry::read(v).filter(|_| !v.is_null()) {
                Some(e) => {
                    ledger.owners.insert(owner, e);
                }
                None => {
                    ledger.owners.remove(&owner);
                }
            }
        }
    }
    let new = (!ledger.owners.is_empty()).then(|| ledger.to_value());
    super::patch::merge_patch(seen, new.as_ref())
}

/// Puts `owner`'s rollout mark into its entry of a projection.
pub fn mark_projection(projection: &mut Value, owner: &str, mark: &Mark) {
    let key = owner_key(owner);
    if let Some(Value::Object(entries)) = projection.get_mut("owners") {
        let entry = entries
            .entry(key)
            .or_insert_with(|| Entry::default().to_value());
        if let Value::Object(e) = entry {
            e.insert("rollout".into(), mark.to_value());
        }
    }
}

/// Puts `owner`'s rollout mark into a ledger merge patch, or makes one that sets it. A patch that
/// rewrites the ledger (form 1 to 2, a new entry) holds the owner's whole entry, to which the mark
/// is added; a twin without a patch of its ledger holds a form-2 ledger with the owner's entry
/// already, into which `{"owners": {owner: {"rollout": mark}}}` merges.
pub fn mark_patch(patch: Option<Value>, owner: &str, mark: &Mark) -> Value {
    let mut p = match patch {
        Some(Value::Object(m)) => Value::Object(m),
        _ => json!({}),
    };
    p["owners"][owner_key(owner)]["rollout"] = mark.to_value();
    p
}

/// Compact JSON bytes that `owner`'s entry adds to the twin's tags at most, the ledger's own
/// wrapper included (`"twinops":{"version":2,"owners":{…}}`): what validation counts against the
/// 8 KB tag limit for one owner.
pub fn entry_size(
    owner: &str,
    fields: &BTreeSet<IdentityField>,
    tags: &JsonMap,
    desired: &JsonMap,
) -> usize {
    let entry = Entry::new(fields.clone(), tags, desired);
    let one = Ledger {
        version: VERSION,
        owners: [(owner.to_string(), entry)].into(),
    };
    let mut wrapped = JsonMap::new();
    wrapped.insert(LEDGER_TAG.into(), one.to_value());
    // Without the object's braces, with the `,` between it and the next tag.
    Value::Object(wrapped).to_string().len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> JsonMap {
        v.as_object().cloned().unwrap_or_default()
    }

    fn entry(fields: &[IdentityField], tags: &[&str], desired: &[&str]) -> Entry {
        Entry {
            fields: Fields::Managed(fields.iter().copied().collect()),
            tags: tags.iter().map(|k| k.to_string()).collect(),
            desired: desired.iter().map(|k| k.to_string()).collect(),
            rollout: None,
        }
    }

    #[test]
    fn a_ledger_of_two_owners_round_trips_through_tags() {
        let l = Ledger {
            version: VERSION,
            owners: [
                (
                    "berlin.plant".to_string(),
                    entry(&[IdentityField::Status], &["site"], &[]),
                ),
                ("app".to_string(), entry(&[], &[], &["telemetry"])),
            ]
            .into(),
        };
        let tags = map(json!({"twinops": l.to_value(), "other": 1}));
        assert_eq!(read(&tags), Found::Ledger(l.clone()));
        // An owner's `.` is written `%2E`: tag keys may not hold dots.
        assert!(l.to_value()["owners"].get("berlin%2Eplant").is_some());
        assert_eq!(
            l.manager_of_key(Section::Tags, "site", "app"),
            Some("berlin.plant")
        );
        assert_eq!(
            l.manager_of_key(Section::Tags, "site", "berlin.plant"),
            None
        );
        assert_eq!(
            l.manager_of_field(IdentityField::Status, "app"),
            Some("berlin.plant")
        );
        assert_eq!(l.manager_of_field(IdentityField::Edge, "app"), None);
    }

    #[test]
    fn a_form_1_ledger_reads_as_its_owners_entry_managing_every_field() {
        let old = map(
            json!({"twinops": {"owner": "berlin", "tags": {"site": true},
            "desired": {"interval": true}, "rollout": {"id": "ab".repeat(32), "wave": 2,
            "desired": {"interval": true}}}}),
        );
        let Found::Ledger(l) = read(&old) else {
            panic!("a form-1 ledger reads")
        };
        assert_eq!(l.version, 1);
        let e = l.entry("berlin").unwrap();
        assert_eq!(e.fields, Fields::Legacy);
        assert!(e.fields.manages(IdentityField::Auth));
        assert_eq!(e.rollout.as_ref().unwrap().wave, 2);
        // Its entry is the same as a form-2 entry naming any fields and the same keys.
        let now = entry(&[IdentityField::Status], &["site"], &["interval"]);
        assert!(e.same_as(&Entry {
            rollout: e.rollout.clone(),
            ..now
        }));
    }

    #[test]
    fn a_newer_ledger_is_never_read_as_ours_and_junk_is_malformed() {
        assert_eq!(
            read(&map(json!({"twinops": {"version": 3, "owners": {}}}))),
            Found::Newer(3)
        );
        assert_eq!(read(&map(json!({"site": 1}))), Found::None);
        assert_eq!(read(&map(json!({"twinops": "me"}))), Found::Malformed);
        assert_eq!(
            read(&map(json!({"twinops": {"owner": "x", "tags": ["a"]}}))),
            Found::Malformed
        );
        assert_eq!(
            read(&map(
                json!({"twinops": {"version": 2, "owners": {"a": {"fields": {"colour": true}}}}})
            )),
            Found::Malformed,
            "an unknown field name"
        );
        assert_eq!(
            project(Some(&json!({"version": 9})), &["a"]),
            json!({"version": 9})
        );
    }

    #[test]
    fn a_write_patch_touches_only_the_projected_entries_and_converts_form_1() {
        let two = json!({"version": 2, "owners": {
            "a": {"fields": {}, "tags": {"site": true}, "desired": {}},
            "b": {"fields": {}, "tags": {}, "desired": {"t": true}}}});
        let mut target = project(Some(&two), &["a"]);
        target["owners"]["a"] = entry(&[], &["site", "kind"], &[]).to_value();
        assert_eq!(
            write_patch(Some(&two), &target),
            Some(json!({"owners": {"a": {"tags": {"kind": true}}}})),
            "b's entry is not in the patch"
        );
        // The same intent against a ledger that b changed meanwhile: still only a's entry.
        let mut moved = two.clone();
        moved["owners"]["b"]["desired"]["u"] = json!(true);
        assert_eq!(
            write_patch(Some(&moved), &target),
            Some(json!({"owners": {"a": {"tags": {"kind": true}}}}))
        );
        // Form 1 is rewritten in form 2, keeping the first owner's entry when a second one writes.
        let one = json!({"owner": "a", "tags": {"site": true}, "desired": {}});
        let b = {
            let mut t = project(Some(&one), &["b"]);
            t["owners"]["b"] = entry(&[], &[], &["t"]).to_value();
            t
        };
        let p = write_patch(Some(&one), &b).unwrap();
        let mut after = one.clone();
        json_patch::merge(&mut after, &p);
        let Found::Ledger(l) = read_value(&after) else {
            panic!("{after}")
        };
        assert_eq!(l.version, 2);
        assert_eq!(l.entry("a").unwrap().fields, Fields::Legacy, "{after}");
        assert_eq!(l.entry("a").unwrap().tags.len(), 1);
        assert!(l.entry("b").is_some());
        // A null entry is removed; an emptied ledger goes away.
        let mut gone = project(Some(&two), &["a", "b"]);
        gone["owners"]["a"] = Value::Null;
        gone["owners"]["b"] = Value::Null;
        assert_eq!(write_patch(Some(&two), &gone), Some(Value::Null));
    }

    #[test]
    fn a_mark_never_exceeds_its_size_bound() {
        let keys: BTreeSet<String> = ["interval".to_string(), "mode".to_string()].into();
        let mark = Mark {
            id: Digest::new("f".repeat(64)).unwrap(),
            wave: usize::MAX,
            desired: keys.clone(),
        };
        let with = json!({"a": 1, "rollout": mark.to_value()})
            .to_string()
            .len();
        let without = json!({"a": 1}).to_string().len();
        assert!(with - without <= Mark::size_at_most(&keys));
    }

    #[test]
    fn three_owners_with_fifty_keys_of_24_characters_each_fit_in_8_kb_with_their_tags() {
        // Each owner manages 10 tags and 40 desired keys, 24 characters each, and every identity
        // field; the declared tags hold 12-character values.
        let key = |o: usize, i: usize| format!("o{o}-key-{i:02}-{}", "x".repeat(14));
        let mut tags = JsonMap::new();
        let mut ledger = Ledger {
            version: VERSION,
            owners: BTreeMap::new(),
        };
        for o in 0..3 {
            let t: Vec<String> = (0..10).map(|i| key(o, i)).collect();
            let d: Vec<String> = (10..50).map(|i| key(o, i)).collect();
            for k in &t {
                assert_eq!(k.len(), 24);
                tags.insert(k.clone(), json!("value-012345"));
            }
            let e = Entry {
                fields: Fields::Managed(IdentityField::ALL.into_iter().collect()),
                tags: t.into_iter().collect(),
                desired: d.into_iter().collect(),
                rollout: None,
            };
            ledger
                .owners
                .insert(format!("team-{o}-{}", "n".repeat(10)), e);
        }
        tags.insert(LEDGER_TAG.into(), ledger.to_value());
        let bytes = Value::Object(tags.clone()).to_string().len();
        assert!(bytes < 8 * 1024, "{bytes} bytes of tags");
        assert!(twinops_iothub::twin_rules::size(&tags) < 8 * 1024);
        eprintln!("3 owners × 50 keys of 24 characters: {bytes} bytes of tags, compact JSON");
    }

    #[test]
    fn an_entry_size_counts_what_its_ledger_adds_to_the_tags() {
        let fields: BTreeSet<IdentityField> = [IdentityField::Status].into();
        let tags = map(json!({"site": "b"}));
        let desired = map(json!({"interval": 1}));
        let n = entry_size("o", &fields, &tags, &desired);
        let mut with = tags.clone();
        with.insert(
            LEDGER_TAG.into(),
            Ledger {
                version: VERSION,
                owners: [("o".to_string(), Entry::new(fields.clone(), &tags, &desired))].into(),
            }
            .to_value(),
        );
        let grew = Value::Object(with).to_string().len() - Value::Object(tags).to_string().len();
        assert_eq!(n, grew);
    }
}
