//! One twin's diff through the ledger: owned keys, removals of keys the ledger owned, `ignore` and
//! `sensitive` paths, and the views (`base`, `target`) the 412 rule compares.

use std::collections::BTreeSet;

use serde_json::Value;

use super::FieldDiff;
use super::ledger::{self, Ledger};
use super::patch::{self, merge_patch};
use super::values::{OwnedValues, TwinPatch};
use crate::model::{JsonMap, LEDGER_TAG, ObservedTwin, PropertyPath, Section, TwinSpec};

// Built once per twin and matched at once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Outcome {
    Unchanged,
    /// The ledger names another owner (`Some`) or is not a ledger (`None`).
    OtherOwner(Option<String>),
    Changed(Box<TwinChange>),
}

pub(super) struct TwinChange {
    pub base: OwnedValues,
    pub target: OwnedValues,
    pub patch: TwinPatch,
    pub diff: Vec<FieldDiff>,
}

/// How a sensitive value appears in plans: a digest that still shows whether it changed.
pub fn sensitive_digest(v: &Value) -> Value {
    Value::String(format!(
        "(sensitive) sha256:{}",
        super::secret::sha256_hex(v)
    ))
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
}

impl TwinView {
    /// The view over the keys a plan's `base` names, with the change's `ignore`/`sensitive` paths.
    pub fn from_plan(
        base: &OwnedValues,
        ignore: &[PropertyPath],
        sensitive: &[PropertyPath],
    ) -> TwinView {
        TwinView {
            tags: base.tags.keys().cloned().collect(),
            desired: base.desired.keys().cloned().collect(),
            ignore: ignore.to_vec(),
            sensitive: sensitive.to_vec(),
        }
    }

    /// The view of a twin's tags and desired.
    pub fn of(&self, tags: &JsonMap, desired: &JsonMap) -> OwnedValues {
        let section = |keys: &BTreeSet<String>, src: &JsonMap, which: Section| {
            let mut m = JsonMap::new();
            for k in keys {
                m.insert(k.clone(), src.get(k).cloned().unwrap_or(Value::Null));
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
                    let d = sensitive_digest(v);
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
    seen: &ObservedTwin,
) -> OwnedValues {
    TwinView::from_plan(base, ignore, sensitive).of(&seen.tags, &seen.desired)
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
pub(super) fn content_view(content: &TwinPatch, sensitive: &[PropertyPath]) -> OwnedValues {
    let view = TwinView {
        tags: content.tags.keys().cloned().collect(),
        desired: content.desired.keys().cloned().collect(),
        ignore: Vec::new(),
        sensitive: sensitive.to_vec(),
    };
    view.of(&content.tags, &content.desired)
}

/// The owned desired values of a twin as the declaration sees them (the keys it declares, its
/// `ignore` and `sensitive` paths): for a twin at its target, what a plan's `target.desired` was
/// when it was written, without the keys that write removed.
pub(super) fn declared_desired(spec: &TwinSpec, seen: &ObservedTwin) -> JsonMap {
    let view = TwinView {
        tags: BTreeSet::new(),
        desired: spec.desired.to_map().keys().cloned().collect(),
        ignore: spec.ignore.clone(),
        sensitive: spec.sensitive.clone(),
    };
    view.of(&seen.tags, &seen.desired).desired
}

/// The twin content written when the identity is created.
pub(super) fn create_content(owner: &str, spec: &TwinSpec) -> TwinPatch {
    let mut tags = spec.tags.to_map();
    let desired = spec.desired.to_map();
    let ledger = Ledger::new(owner, &tags, &desired).to_value();
    tags.insert(LEDGER_TAG.into(), ledger);
    TwinPatch { tags, desired }
}

/// Diffs one existing twin against its spec.
pub(super) fn diff(owner: &str, spec: &TwinSpec, seen: &ObservedTwin, adopt: bool) -> Outcome {
    let prev = match ledger::read(&seen.tags) {
        ledger::Found::None => Ledger::default(),
        ledger::Found::Ledger(l) if l.owner == owner => l,
        ledger::Found::Ledger(l) => {
            if !adopt {
                return Outcome::OtherOwner(Some(l.owner));
            }
            Ledger::default()
        }
        ledger::Found::Malformed => {
            if !adopt {
                return Outcome::OtherOwner(None);
            }
            Ledger::default()
        }
    };
    // The declared sections are parsed here, for this twin only.
    let mut want_tags = spec.tags.to_map();
    let mut want_desired = spec.desired.to_map();
    let mut wanted_ledger = Ledger::new(owner, &want_tags, &want_desired);
    // The mark of the rollout that last wrote the twin stays until another rollout writes it: it is
    // the hub's memory of where that rollout is (SPEC §11), not something to tidy away.
    wanted_ledger.rollout = prev.rollout.clone();
    let mut tag_keys: BTreeSet<String> = want_tags.keys().cloned().collect();
    tag_keys.extend(prev.tags.iter().cloned());
    tag_keys.insert(LEDGER_TAG.to_string());
    let mut desired_keys: BTreeSet<String> = want_desired.keys().cloned().collect();
    desired_keys.extend(prev.desired.iter().cloned());

    want_tags.insert(LEDGER_TAG.into(), wanted_ledger.to_value());
    // Ignored paths keep whatever the hub holds.
    for p in &spec.ignore {
        let (want, seen_map) = match p.section {
            Section::Tags => (&mut want_tags, &seen.tags),
            Section::Desired => (&mut want_desired, &seen.desired),
        };
        if want.contains_key(&p.keys[0]) {
            patch::set(want, &p.keys, patch::get(seen_map, &p.keys).cloned());
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
    let tags_patch = section_patch(&tag_keys, &seen.tags, &want_tags);
    let desired_patch = section_patch(&desired_keys, &seen.desired, &want_desired);
    if tags_patch.is_empty() && desired_patch.is_empty() {
        return Outcome::Unchanged;
    }
    let view = TwinView {
        tags: tag_keys,
        desired: desired_keys,
        ignore: spec.ignore.clone(),
        sensitive: spec.sensitive.clone(),
    };
    let base = view.of(&seen.tags, &seen.desired);
    let target = view.of(&want_tags, &want_desired);
    Outcome::Changed(Box::new(TwinChange {
        diff: diff_views(&base, &target),
        base,
        target,
        patch: TwinPatch {
            tags: tags_patch,
            desired: desired_patch,
        },
    }))
}
