//! One twin's diff through the ledger: owned keys, removals of keys the ledger owned, `ignore` and
//! `sensitive` paths, and the views (`base`, `target`) the 412 rule compares.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::FieldDiff;
use super::ledger::{self, Entry, Fields, IdentityField, Ledger};
use super::patch::{self, merge_patch};
use super::secret::DigestKey;
use super::values::{OwnedValues, TwinPatch};
use crate::model::{JsonMap, LEDGER_TAG, ObservedTwin, PropertyPath, Section, TwinSpec};

/// What one twin's diff found.
// Built once per twin and matched at once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Outcome {
    Unchanged,
    /// Declared fields or keys that other owners manage (without `--force-conflicts`).
    Conflict(Vec<Managed>),
    /// The reserved tag holds no ledger this twinops can write: something else (`None`), or a
    /// ledger of a newer form (its version).
    Unwritable(Option<u64>),
    Changed(Box<TwinChange>),
}

/// A declared field or key and the owner that manages it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    /// `tags.KEY`, `desired.KEY`, or an identity field (`status`).
    pub path: String,
    pub owner: String,
}

pub(super) struct TwinChange {
    pub base: OwnedValues,
    pub target: OwnedValues,
    pub patch: TwinPatch,
    pub diff: Vec<FieldDiff>,
    /// Fields and keys this owner starts to manage (`status`, `tags.K`, …).
    pub adopted: Vec<String>,
    /// Identity fields this owner no longer declares: released, left as they are.
    pub released: Vec<IdentityField>,
    /// Fields and keys taken from other owners (`--force-conflicts`).
    pub forced: Vec<Managed>,
    /// The key of the digests in `base`, `target` and `diff`.
    pub key: DigestKey,
}

/// One declared twin to diff.
pub(super) struct Twin<'a> {
    pub owner: &'a str,
    pub spec: &'a TwinSpec,
    /// The spec's sections, parsed once for everything that reads them.
    pub tags: JsonMap,
    pub desired: JsonMap,
    /// The twin's ledger, read once for everything that reads it.
    pub ledger: &'a ledger::Found,
    /// The identity fields declared for this twin's identity (kept in its ledger).
    pub fields: BTreeSet<IdentityField>,
    pub seen: &'a ObservedTwin,
    /// `--force-conflicts`: take what other owners manage.
    pub force: bool,
    /// The key of the digests of sensitive values.
    pub key: DigestKey,
}

/// How a sensitive value appears in plans: a keyed digest that still shows whether it changed.
pub fn sensitive_digest(key: &DigestKey, v: &Value) -> Value {
    Value::String(format!("(sensitive) {}", key.digest(v)))
}

/// Whether a plan value is a sensitive digest.
pub fn is_sensitive_digest(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("(sensitive) "))
}

/// The owned values of one twin as the 412 rule compares them: `{"tags": {K: v|null}, "desired": {…}}`
/// over fixed keys, with ignored paths removed and sensitive values replaced by digests.
#[derive(Debug, Clone)]
pub struct TwinView {
    tags: BTreeSet<String>,
    desired: BTreeSet<String>,
    ignore: Vec<PropertyPath>,
    sensitive: Vec<PropertyPath>,
    /// The owners whose ledger entries the view holds (the ledger tag is projected onto them).
    owners: Vec<String>,
    /// The key of the digests of sensitive values.
    key: DigestKey,
}

impl TwinView {
    /// The view over the keys a plan's `base` names, with the change's `ignore`/`sensitive` paths.
    pub fn from_plan(
        base: &OwnedValues,
        ignore: &[PropertyPath],
        sensitive: &[PropertyPath],
        key: DigestKey,
    ) -> TwinView {
        TwinView {
            tags: base.tags.keys().cloned().collect(),
            desired: base.desired.keys().cloned().collect(),
            ignore: ignore.to_vec(),
            sensitive: sensitive.to_vec(),
            owners: base
                .tags
                .get(LEDGER_TAG)
                .map(ledger::projected_owners)
                .unwrap_or_default(),
            key,
        }
    }

    /// The view of a twin's tags and desired.
    pub fn of(&self, tags: &JsonMap, desired: &JsonMap) -> OwnedValues {
        let owners: Vec<&str> = self.owners.iter().map(String::as_str).collect();
        let section = |keys: &BTreeSet<String>, src: &JsonMap, which: Section| {
            let mut m = JsonMap::new();
            for k in keys {
                let v = if which == Section::Tags && k == LEDGER_TAG {
                    ledger::project(src.get(k), &owners)
                } else {
                    src.get(k).cloned().unwrap_or(Value::Null)
                };
                m.insert(k.clone(), v);
            }
            for p in self.ignore.iter().filter(|p| p.section == which) {
                if m.get(&p.keys[0]).is_some_and(|v| !v.is_null()) {
                    if p.keys.len() == 1 {
                        m.insert(p.keys[0].clone(), Value::Null);
                    } else {
                        patch::set(&mut m, &p.keys, None);
                    }
                }
            }
            for p in self.sensitive.iter().filter(|p| p.section == which) {
                if let Some(v) = patch::get(&m, &p.keys).filter(|v| !v.is_null()) {
                    let d = sensitive_digest(&self.key, v);
                    patch::set(&mut m, &p.keys, Some(d));
                }
            }
            m
        };
        OwnedValues {
            tags: section(&self.tags, tags, Section::Tags),
            desired: section(&self.desired, desired, Section::Desired),
        }
    }
}

/// The view of an observed twin over the keys and paths of a plan change.
pub fn owned_view(
    base: &OwnedValues,
    ignore: &[PropertyPath],
    sensitive: &[PropertyPath],
    key: DigestKey,
    seen: &ObservedTwin,
) -> OwnedValues {
    TwinView::from_plan(base, ignore, sensitive, key).of(&seen.tags, &seen.desired)
}

fn diff_views(base: &OwnedValues, target: &OwnedValues) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    for section in [Section::Tags, Section::Desired] {
        let b = base.section(section);
        for (k, tv) in target.section(section) {
            let bv = b.get(k).unwrap_or(&Value::Null);
            if bv != tv {
                out.push(FieldDiff {
                    path: format!("{}.{k}", section.as_str()),
                    before: (!bv.is_null()).then(|| bv.clone()),
                    after: (!tv.is_null()).then(|| tv.clone()),
                });
            }
        }
    }
    out
}

/// The view of a create's twin content, sensitive values as digests.
pub(super) fn content_view(
    content: &TwinPatch,
    sensitive: &[PropertyPath],
    key: DigestKey,
) -> OwnedValues {
    let view = TwinView {
        tags: content.tags.keys().cloned().collect(),
        desired: content.desired.keys().cloned().collect(),
        ignore: Vec::new(),
        sensitive: sensitive.to_vec(),
        owners: content
            .tags
            .get(LEDGER_TAG)
            .map(|l| match ledger::read_value(l) {
                ledger::Found::Ledger(l) => l.owners.keys().cloned().collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default(),
        key,
    };
    view.of(&content.tags, &content.desired)
}

/// The owned desired values of a twin as the declaration sees them (the keys it declares, its
/// `ignore` and `sensitive` paths): for a twin at its target, what a plan's `target.desired` was
/// when it was written, without the keys that write removed. `want` is the spec's desired section.
pub(super) fn declared_desired(
    spec: &TwinSpec,
    want: &JsonMap,
    seen: &ObservedTwin,
    key: DigestKey,
) -> JsonMap {
    declared_view(spec, want, key)
        .of(&seen.tags, &seen.desired)
        .desired
}

/// The manifest's desired values (`want`, the spec's desired section) as [`declared_desired`]
/// sees a twin's: comparable with it.
pub(super) fn declared_desired_values(spec: &TwinSpec, want: &JsonMap, key: DigestKey) -> JsonMap {
    declared_view(spec, want, key)
        .of(&JsonMap::new(), want)
        .desired
}

fn declared_view(spec: &TwinSpec, desired: &JsonMap, key: DigestKey) -> TwinView {
    TwinView {
        tags: BTreeSet::new(),
        desired: desired.keys().cloned().collect(),
        ignore: spec.ignore.clone(),
        sensitive: spec.sensitive.clone(),
        owners: Vec::new(),
        key,
    }
}

/// The twin content written when the identity is created: the declared sections, and the ledger
/// with this owner's entry managing the declared fields and keys.
pub(super) fn create_content(
    owner: &str,
    fields: BTreeSet<IdentityField>,
    spec: &TwinSpec,
) -> TwinPatch {
    let mut tags = spec.tags.to_map();
    let desired = spec.desired.to_map();
    let ledger = Ledger {
        version: ledger::VERSION,
        owners: [(owner.to_string(), Entry::new(fields, &tags, &desired))].into(),
    };
    tags.insert(LEDGER_TAG.into(), ledger.to_value());
    TwinPatch { tags, desired }
}

/// An identity a create found existing (409): the patch that brings its twin's keys to the create's
/// content and puts the content's ledger entry into the ledger it holds, or the declared fields and
/// keys other owners manage there (a conflict). Empty when the twin is at the content already.
pub fn adopt_existing(content: &TwinPatch, seen: &ObservedTwin) -> Result<TwinPatch, Vec<Managed>> {
    let Some(ledger::Found::Ledger(ours)) = content.tags.get(LEDGER_TAG).map(ledger::read_value)
    else {
        return Ok(TwinPatch::default());
    };
    let theirs = match ledger::read(&seen.tags) {
        ledger::Found::Ledger(l) => l,
        ledger::Found::None => Ledger::default(),
        ledger::Found::Malformed | ledger::Found::Newer(_) => {
            return Err(vec![Managed {
                path: crate::model::LEDGER_PATH.into(),
                owner: "(unreadable ledger)".into(),
            }]);
        }
    };
    let mut conflicts = Vec::new();
    for (owner, entry) in &ours.owners {
        let mut managed = |path: String, other: Option<&str>| {
            if let Some(o) = other {
                conflicts.push(Managed {
                    path,
                    owner: o.to_string(),
                });
            }
        };
        if let Fields::Managed(fields) = &entry.fields {
            for f in fields {
                managed(f.as_str().into(), theirs.manager_of_field(*f, owner));
            }
        }
        for section in [Section::Tags, Section::Desired] {
            for k in entry.keys(section) {
                let path = format!("{}.{k}", section.as_str());
                managed(path, theirs.manager_of_key(section, k, owner));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let section = |seen_map: &JsonMap, want: &JsonMap| -> JsonMap {
        want.iter()
            .filter(|(k, _)| k.as_str() != LEDGER_TAG)
            .filter_map(|(k, v)| Some((k.clone(), merge_patch(seen_map.get(k), Some(v))?)))
            .collect()
    };
    let mut tags = section(&seen.tags, &content.tags);
    let desired = section(&seen.desired, &content.desired);
    let owners: Vec<&str> = ours.owners.keys().map(String::as_str).collect();
    let mut target = ledger::project(None, &owners);
    for (o, e) in &ours.owners {
        target["owners"][ledger::owner_key(o)] = e.to_value();
    }
    let same = owners
        .iter()
        .all(|o| theirs.entry(o).is_some_and(|e| Some(e) == ours.entry(o)));
    if (!same || !tags.is_empty() || !desired.is_empty())
        && let Some(p) = ledger::write_patch(seen.tags.get(LEDGER_TAG), &target)
    {
        tags.insert(LEDGER_TAG.into(), p);
    }
    Ok(TwinPatch { tags, desired })
}

/// The declared fields and keys that other owners manage.
fn managed_by_others(
    t: &Twin<'_>,
    ledger: &Ledger,
    tags: &JsonMap,
    desired: &JsonMap,
) -> Vec<Managed> {
    let mut out = Vec::new();
    for f in &t.fields {
        if let Some(o) = ledger.manager_of_field(*f, t.owner) {
            out.push(Managed {
                path: f.as_str().to_string(),
                owner: o.to_string(),
            });
        }
    }
    for (section, keys) in [(Section::Tags, tags), (Section::Desired, desired)] {
        for k in keys.keys() {
            if let Some(o) = ledger.manager_of_key(section, k, t.owner) {
                out.push(Managed {
                    path: format!("{}.{k}", section.as_str()),
                    owner: o.to_string(),
                });
            }
        }
    }
    out
}

/// The other owners' entries as a `--force-conflicts` leaves them: without what it takes.
fn taken(ledger: &Ledger, conflicts: &[Managed]) -> BTreeMap<String, Entry> {
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    for c in conflicts {
        let Some(e) = ledger.entry(&c.owner) else {
            continue;
        };
        let e = out.entry(c.owner.clone()).or_insert_with(|| e.clone());
        match c.path.split_once('.') {
            Some(("tags", k)) => e.remove_key(Section::Tags, k),
            Some(("desired", k)) => e.remove_key(Section::Desired, k),
            _ => {
                if let Some(f) = IdentityField::parse(&c.path) {
                    e.remove_field(f);
                }
            }
        }
    }
    out
}

/// Diffs one existing declared twin against its spec, through its ledger (SPEC §15).
pub(super) fn diff(t: &Twin<'_>) -> Outcome {
    let seen = t.seen;
    let empty = Ledger::default();
    let ledger = match t.ledger {
        ledger::Found::None => &empty,
        ledger::Found::Ledger(l) => l,
        ledger::Found::Newer(n) => return Outcome::Unwritable(Some(*n)),
        // Something else in the reserved tag: only `--force-conflicts` writes over it.
        ledger::Found::Malformed if t.force => &empty,
        ledger::Found::Malformed => return Outcome::Unwritable(None),
    };
    // The declared sections as parsed by the differ; copied only if an ignored path changes them.
    let mut want_tags = Cow::Borrowed(&t.tags);
    let mut want_desired = Cow::Borrowed(&t.desired);
    let conflicts = managed_by_others(t, ledger, &want_tags, &want_desired);
    if !conflicts.is_empty() && !t.force {
        return Outcome::Conflict(conflicts);
    }
    let others = taken(ledger, &conflicts);
    let prev = ledger.entry(t.owner);
    let mut wanted = Entry::new(t.fields.clone(), &want_tags, &want_desired);
    // The mark of the rollout that last wrote the twin stays until another rollout writes it: it is
    // the hub's memory of where that rollout is (SPEC §11), not something to tidy away.
    wanted.rollout = prev.and_then(|p| p.rollout.clone());
    let mut tag_keys: BTreeSet<String> = want_tags.keys().cloned().collect();
    let mut desired_keys: BTreeSet<String> = want_desired.keys().cloned().collect();
    if let Some(p) = prev {
        tag_keys.extend(p.tags.iter().cloned());
        desired_keys.extend(p.desired.iter().cloned());
    }
    // Ignored paths keep whatever the hub holds.
    for p in &t.spec.ignore {
        let (want, seen_map) = match p.section {
            Section::Tags => (&mut want_tags, &seen.tags),
            Section::Desired => (&mut want_desired, &seen.desired),
        };
        if want.contains_key(&p.keys[0]) {
            patch::set(
                want.to_mut(),
                &p.keys,
                patch::get(seen_map, &p.keys).cloned(),
            );
        }
    }
    let section_patch = |keys: &BTreeSet<String>, seen_map: &JsonMap, want: &JsonMap| {
        let mut out = JsonMap::new();
        for k in keys {
            if let Some(p) = merge_patch(seen_map.get(k), want.get(k)) {
                out.insert(k.clone(), p);
            }
        }
        out
    };
    let mut tags_patch = section_patch(&tag_keys, &seen.tags, &want_tags);
    let desired_patch = section_patch(&desired_keys, &seen.desired, &want_desired);
    // The ledger is written when this owner's entry changes, when a force takes from others,
    // and with any other write while it is in form 1 (it is rewritten in form 2 then).
    let entry_changed = prev.is_none_or(|p| !p.same_as(&wanted)) || !others.is_empty();
    let writes = !tags_patch.is_empty() || !desired_patch.is_empty();
    // Most twins of a plan are unchanged: nothing to write, and no ledger to project for them.
    if !entry_changed && !writes {
        return Outcome::Unchanged;
    }
    let mut owners: Vec<&str> = vec![t.owner];
    owners.extend(others.keys().map(String::as_str));
    let seen_ledger = seen.tags.get(LEDGER_TAG);
    let mut target_ledger = ledger::project(seen_ledger, &owners);
    target_ledger["owners"][ledger::owner_key(t.owner)] = wanted.to_value();
    for (o, e) in &others {
        target_ledger["owners"][ledger::owner_key(o)] = if e.is_empty() {
            Value::Null
        } else {
            e.to_value()
        };
    }
    if (entry_changed || (writes && ledger.version != ledger::VERSION))
        && let Some(p) = ledger::write_patch(seen_ledger, &target_ledger)
    {
        tags_patch.insert(LEDGER_TAG.into(), p);
    }
    if tags_patch.is_empty() && desired_patch.is_empty() {
        return Outcome::Unchanged;
    }
    tag_keys.insert(LEDGER_TAG.to_string());
    let view = TwinView {
        tags: tag_keys,
        desired: desired_keys,
        ignore: t.spec.ignore.clone(),
        sensitive: t.spec.sensitive.clone(),
        owners: owners.iter().map(|o| o.to_string()).collect(),
        key: t.key,
    };
    let base = view.of(&seen.tags, &seen.desired);
    let mut target = view.of(&want_tags, &want_desired);
    // The ledger part of the target is the projection itself: the entries wanted.
    target.tags.insert(LEDGER_TAG.into(), target_ledger);
    Outcome::Changed(Box::new(TwinChange {
        diff: diff_views(&base, &target),
        adopted: adopted(prev, &wanted),
        released: released(prev, &t.fields),
        forced: conflicts,
        key: t.key,
        base,
        target,
        patch: TwinPatch {
            tags: tags_patch,
            desired: desired_patch,
        },
    }))
}

/// The fields and keys `wanted` manages that `prev` did not.
fn adopted(prev: Option<&Entry>, wanted: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    if let Fields::Managed(fields) = &wanted.fields {
        for f in fields {
            if !prev.is_some_and(|p| p.fields.manages(*f)) {
                out.push(f.as_str().to_string());
            }
        }
    }
    for section in [Section::Tags, Section::Desired] {
        for k in wanted.keys(section) {
            if !prev.is_some_and(|p| p.keys(section).contains(k)) {
                out.push(format!("{}.{k}", section.as_str()));
            }
        }
    }
    out
}

/// The identity fields `prev` managed that are no longer declared.
fn released(prev: Option<&Entry>, declared: &BTreeSet<IdentityField>) -> Vec<IdentityField> {
    match prev.map(|p| &p.fields) {
        Some(Fields::Managed(fields)) => fields.difference(declared).copied().collect(),
        // A form-1 entry listed no fields: nothing is released by name.
        _ => Vec::new(),
    }
}

/// The change that gives up everything `owner` manages on a twin no manifest declares any more
/// while other owners manage something on it or its identity (`--prune`): its keys removed, its
/// ledger entry dropped, the identity kept. `None` when the twin holds no entry of `owner`.
pub(super) fn release(
    owner: &str,
    ledger: &ledger::Found,
    seen: &ObservedTwin,
    key: DigestKey,
) -> Option<TwinChange> {
    let ledger::Found::Ledger(ledger) = ledger else {
        return None;
    };
    let prev = ledger.entry(owner)?;
    let mut tags_patch = JsonMap::new();
    let mut desired_patch = JsonMap::new();
    for (keys, seen_map, out) in [
        (&prev.tags, &seen.tags, &mut tags_patch),
        (&prev.desired, &seen.desired, &mut desired_patch),
    ] {
        for k in keys.iter().filter(|k| seen_map.contains_key(*k)) {
            out.insert(k.clone(), Value::Null);
        }
    }
    let seen_ledger = seen.tags.get(LEDGER_TAG);
    let mut target_ledger = ledger::project(seen_ledger, &[owner]);
    target_ledger["owners"][ledger::owner_key(owner)] = Value::Null;
    if let Some(p) = ledger::write_patch(seen_ledger, &target_ledger) {
        tags_patch.insert(LEDGER_TAG.into(), p);
    }
    let mut tag_keys: BTreeSet<String> = prev.tags.clone();
    tag_keys.insert(LEDGER_TAG.to_string());
    let view = TwinView {
        tags: tag_keys,
        desired: prev.desired.clone(),
        ignore: Vec::new(),
        sensitive: Vec::new(),
        owners: vec![owner.to_string()],
        key,
    };
    let base = view.of(&seen.tags, &seen.desired);
    let mut target = view.of(&JsonMap::new(), &JsonMap::new());
    target.tags.insert(LEDGER_TAG.into(), target_ledger);
    let released = match &prev.fields {
        Fields::Managed(f) => f.iter().copied().collect(),
        Fields::Legacy => Vec::new(),
    };
    Some(TwinChange {
        diff: diff_views(&base, &target),
        adopted: Vec::new(),
        released,
        forced: Vec::new(),
        key,
        base,
        target,
        patch: TwinPatch {
            tags: tags_patch,
            desired: desired_patch,
        },
    })
}
