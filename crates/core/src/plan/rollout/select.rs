//! Which rollout a plan's rolled-out updates belong to (SPEC §11): a marked rollout they continue,
//! recognised by its ID in the twins' ledgers, or a new one; and each update's mark, stamped into
//! the ledger it writes.

use std::collections::BTreeMap;

use super::super::rollout;
use super::super::{Change, Plan, Seen, ledger, twin};
use super::Rollout;
use crate::model::{
    DeviceId, DeviceSpec, Digest, JsonMap, LEDGER_TAG, ObservedTwin, Owner, TwinAddress,
};

/// The waves of a plan's rolled-out twin updates, and each one's mark in its ledger. `first.tags` is
/// matched against each device's tags as they will be after apply: the declared tags over the
/// observed ones.
///
/// The hub remembers a rollout, not a local file: a twin written in a wave carries the rollout's ID
/// and wave in its ledger. A re-run of the same manifests no longer sees the written twins as
/// changes, so the rollout is recognised by its ID: the twins marked with it together with the twins
/// still to write must give that ID again (the same twins with the same target values). Then the
/// plan continues it, with the same waves and `written` set to the last wave a run wrote; otherwise
/// (a target value changed in git, or other twins) the changes start a new rollout of their own.
pub(crate) fn plan_rollout(
    plan: &mut Plan,
    spec: &crate::model::RolloutSpec,
    owner: &Owner,
    seen: &Seen,
    declared: &BTreeMap<&str, &DeviceSpec>,
    marks: &Marks,
) {
    let is_first = |device: &DeviceId| {
        let Some(first) = &spec.first else {
            return false;
        };
        let mut tags = seen
            .devices
            .get(device)
            .map(|o| o.first_tags.clone())
            .unwrap_or_default();
        if let Some(d) = declared.get(device.as_str()) {
            tags.extend(d.twin.tags.to_map());
        }
        rollout::matches_first(first, &tags)
    };
    choose_rollout(plan, spec, owner, marks, is_first);
}

/// The twins a rollout marked, by its ID: each twin's address, the [`rollout::target_digest`] of
/// the owned desired values it holds now (the targets it was written with) and its marked wave.
pub type Marks = BTreeMap<Digest, Vec<(TwinAddress, [u8; 32], usize)>>;

/// The rollout of the plan's rolled-out updates: the marked rollout they continue, if the marked
/// twins and the ones still to write give its ID again, else a new one over the changes; stamped
/// into the changes' ledgers.
fn choose_rollout(
    plan: &mut Plan,
    spec: &crate::model::RolloutSpec,
    owner: &Owner,
    marks: &Marks,
    is_first: impl Fn(&DeviceId) -> bool,
) {
    let changed: Vec<(TwinAddress, [u8; 32])> = plan
        .changes
        .iter()
        .filter_map(rollout::rolled_out)
        .map(|t| (t.address.clone(), rollout::target_digest(&t.target.desired)))
        .collect();
    if changed.is_empty() {
        return;
    }
    let candidates = |twins: &[(TwinAddress, [u8; 32])]| -> Vec<(TwinAddress, [u8; 32], bool)> {
        twins
            .iter()
            .map(|(a, d)| (a.clone(), *d, is_first(&a.device)))
            .collect()
    };
    let mut chosen = None;
    for (id, twins) in marks {
        let mut union: BTreeMap<TwinAddress, [u8; 32]> =
            twins.iter().map(|(a, d, _)| (a.clone(), *d)).collect();
        union.extend(changed.iter().cloned());
        let union: Vec<(TwinAddress, [u8; 32])> = union.into_iter().collect();
        let all = candidates(&union);
        if rollout::id(&as_candidates(&all)) == *id {
            let last = twins.iter().map(|(_, _, wave)| *wave).max();
            chosen = rollout::plan(spec, owner, &as_candidates(&all)).map(|mut r| {
                r.written = last;
                r
            });
            break;
        }
    }
    let rollout =
        chosen.or_else(|| rollout::plan(spec, owner, &as_candidates(&candidates(&changed))));
    if let Some(r) = &rollout {
        stamp(plan, r);
    }
    plan.rollout = rollout;
}

fn as_candidates(c: &[(TwinAddress, [u8; 32], bool)]) -> Vec<rollout::Candidate<'_>> {
    c.iter()
        .map(|(address, target, first)| rollout::Candidate {
            address,
            target: *target,
            first: *first,
        })
        .collect()
}

/// The rollout mark of one declared twin whose ledger (`ledger`, read from `seen`) is ours: the
/// rollout's ID, the [`rollout::target_digest`] of its owned desired values now, and its wave.
/// `want` is the spec's desired section.
pub fn mark_of(
    owner: &str,
    ledger: &ledger::Found,
    spec: &crate::model::TwinSpec,
    want: &JsonMap,
    seen: &ObservedTwin,
    key: super::super::secret::DigestKey,
) -> Option<(Digest, [u8; 32], usize)> {
    let ledger::Found::Ledger(l) = ledger else {
        return None;
    };
    let mark = l.entry(owner)?.rollout.clone()?;
    let desired = twin::declared_desired(spec, want, seen, key);
    Some((mark.id, rollout::target_digest(&desired), mark.wave))
}

/// Writes each rolled-out update's mark into the ledger entry it writes (`patch` and `target`), so
/// the hub remembers the rollout and the wave. The field diff shown stays the planned values'.
fn stamp(plan: &mut Plan, r: &Rollout) {
    let owner = plan.owner.to_string();
    for c in &mut plan.changes {
        let Change::UpdateTwin(t) = c else { continue };
        if t.patch.desired.is_empty() {
            continue;
        }
        let Some(wave) = r.wave_of(&t.address) else {
            continue;
        };
        let mark = ledger::Mark {
            id: r.id.clone(),
            wave,
            desired: rollout::gated_keys(t),
        };
        if let Some(target) = t.target.tags.get_mut(LEDGER_TAG) {
            ledger::mark_projection(target, &owner, &mark);
        }
        let patch = t.patch.tags.remove(LEDGER_TAG);
        t.patch
            .tags
            .insert(LEDGER_TAG.into(), ledger::mark_patch(patch, &owner, &mark));
    }
}
