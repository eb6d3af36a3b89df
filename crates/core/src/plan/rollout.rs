//! Rollout waves (SPEC §11), pure: which changes of a plan are rolled out, which wave each twin is in,
//! the rollout's ID, and the gate arithmetic that decides whether a written wave passed.
//!
//! Everything here is a function of its inputs, so a saved plan, a re-run and a resumed run agree on
//! the waves. It does no I/O and keeps no clock: the executor polls the hub, classifies each twin and
//! asks [`gate`]; whether the timeout has passed is its argument.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::change::{Change, UpdateTwin};
use crate::model::{Digest, Halt, JsonMap, OnHalt, Owner, RolloutSpec, Step, TwinAddress};

/// How many addresses the text and markdown renderings show per wave.
pub const SHOWN_PER_WAVE: usize = 5;

/// The rollout of a plan: its waves, in the order they are written, and the settings that gate them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Hex SHA-256 over the rolled-out twins and their target desired values ([`id`]).
    pub id: Digest,
    /// Non-empty waves only, numbered from 0 in the order they are written.
    pub waves: Vec<Wave>,
    /// Wait after a wave passes, before the next one is written.
    #[serde(rename = "bake_seconds", with = "seconds")]
    pub bake: Duration,
    /// How long a wave may take to pass its gate.
    #[serde(rename = "timeout_seconds", with = "seconds")]
    pub timeout: Duration,
    pub halt: Halt,
    pub on_halt: OnHalt,
    /// The last wave an earlier run wrote, as the twins' ledgers remember it, when this plan
    /// continues that rollout: apply re-checks this wave's gate before it writes the next one.
    /// Absent for a rollout no run has written yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<usize>,
}

impl Rollout {
    /// How many twins the rollout delivers.
    pub fn twin_count(&self) -> usize {
        self.waves.iter().map(|w| w.twins.len()).sum()
    }

    /// The wave a twin is in.
    pub fn wave_of(&self, address: &TwinAddress) -> Option<usize> {
        self.waves
            .iter()
            .find(|w| w.twins.contains(address))
            .map(|w| w.index)
    }
}

/// One wave: the twins written together, then gated together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// Position among the written waves, from 0 (empty waves are skipped and not numbered).
    pub index: usize,
    /// What made this wave: the `first` twins, or the step of `waves` it fills up to.
    pub step: WaveStep,
    /// `device` or `device/module`: the `first` twins sorted by address, the others in rollout order.
    pub twins: Vec<TwinAddress>,
}

/// The origin of a wave, written `first`, `5%`, `10` or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveStep {
    /// The twins of devices that `first.tags` selects.
    First,
    /// A step of `waves`: the wave holds the twins up to this cumulative size.
    Upto(Step),
}

impl fmt::Display for WaveStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveStep::First => f.write_str("first"),
            WaveStep::Upto(s) => write!(f, "{s}"),
        }
    }
}

impl Serialize for WaveStep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WaveStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WaveStep, D::Error> {
        let text = String::deserialize(d)?;
        let step = match text.as_str() {
            "first" => Some(WaveStep::First),
            "all" => Some(WaveStep::Upto(Step::All)),
            t if t.ends_with('%') => {
                crate::model::Share::parse(t).map(|s| WaveStep::Upto(Step::Share(s)))
            }
            t => t
                .parse()
                .ok()
                .filter(|c| *c >= 1)
                .map(|c| WaveStep::Upto(Step::Count(c))),
        };
        step.ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a wave step; expected first, a share such as 5%, a count such as 10, or all"
            ))
        })
    }
}

/// Durations in plan documents: seconds, as a number (like `estimated_apply_seconds`).
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::custom(format!("{secs} is not a number of seconds a wait can last"))
        })
    }
}

/// The twin update a rollout delivers, if this change is one: a twin update whose patch changes
/// owned desired values (with whatever tags it carries). Creates, identity updates, tag-only patches
/// and deletes are not gated.
pub fn rolled_out(change: &Change) -> Option<&UpdateTwin> {
    match change {
        Change::UpdateTwin(t) if !t.patch.desired.is_empty() => Some(t),
        _ => None,
    }
}

/// Whether a device's tags hold every tag of `first.tags` with an equal value.
pub fn matches_first(first: &JsonMap, device_tags: &JsonMap) -> bool {
    first.iter().all(|(k, v)| device_tags.get(k) == Some(v))
}

/// One twin a rollout delivers.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub address: &'a TwinAddress,
    /// [`target_digest`] of the owned desired values it targets (a plan `target.desired`, sensitive
    /// values as digests).
    pub target: [u8; 32],
    /// Whether its device matches `first.tags`.
    pub first: bool,
}

/// SHA-256 of a twin's target desired values as canonical JSON (object keys sorted), top-level
/// keys being removed left out: what a rollout's ID covers of one twin. Kept per twin instead of
/// the values, so a plan remembers the twins a rollout marked in 32 bytes each.
pub fn target_digest(desired: &JsonMap) -> [u8; 32] {
    let ends_with: JsonMap = desired
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Sha256::digest(crate::model::canonical_json(&Value::Object(ends_with)).as_bytes()).into()
}

/// The rollout of these twins under `spec`, or `None` when there is no twin to roll out.
///
/// Wave 0 is the `first` twins sorted by address; the others follow in the order of SHA-256 of
/// `owner/address`. The wave of step k holds the twins up to `step_k.upto(N)` cumulatively, N being
/// every candidate and the `first` twins counting towards the first step; empty waves are skipped.
/// The input order does not matter.
pub fn plan(spec: &RolloutSpec, owner: &Owner, candidates: &[Candidate<'_>]) -> Option<Rollout> {
    if candidates.is_empty() {
        return None;
    }
    let n = candidates.len();
    let (mut first, rest): (Vec<&Candidate<'_>>, Vec<&Candidate<'_>>) =
        candidates.iter().partition(|c| c.first);
    first.sort_by(|a, b| a.address.cmp(b.address));
    let mut rest: Vec<([u8; 32], &TwinAddress)> = rest
        .into_iter()
        .map(|c| (order_key(owner, c.address), c.address))
        .collect();
    rest.sort();

    let mut waves = Vec::new();
    if !first.is_empty() {
        waves.push(Wave {
            index: 0,
            step: WaveStep::First,
            twins: first.iter().map(|c| c.address.clone()).collect(),
        });
    }
    let mut placed = first.len();
    let mut rest = rest.into_iter().map(|(_, a)| a.clone());
    for &step in &spec.waves {
        let take = step.upto(n).saturating_sub(placed);
        let twins: Vec<TwinAddress> = rest.by_ref().take(take).collect();
        placed += twins.len();
        if !twins.is_empty() {
            waves.push(Wave {
                index: waves.len(),
                step: WaveStep::Upto(step),
                twins,
            });
        }
    }
    // The manifest loader makes the last step cover every twin; a spec built by hand may not.
    let left: Vec<TwinAddress> = rest.collect();
    if !left.is_empty() {
        waves.push(Wave {
            index: waves.len(),
            step: WaveStep::Upto(Step::All),
            twins: left,
        });
    }
    Some(Rollout {
        id: id(candidates),
        waves,
        bake: spec.bake,
        timeout: spec.timeout,
        halt: spec.halt,
        on_halt: spec.on_halt,
        written: None,
    })
}

/// SHA-256 of `owner/address`, the order of the twins outside `first`.
fn order_key(owner: &Owner, address: &TwinAddress) -> [u8; 32] {
    Sha256::digest(format!("{owner}/{address}").as_bytes()).into()
}

/// The rollout ID: hex SHA-256 over the twins sorted by address, each as `address`, 0, its
/// [`target_digest`], 0. The same twins with the same targets give the same ID on every run, in any
/// order, before and after they are written (a written twin's removed keys are gone, not `null`); a
/// changed target value gives another.
pub fn id(candidates: &[Candidate<'_>]) -> Digest {
    let mut sorted: Vec<&Candidate<'_>> = candidates.iter().collect();
    sorted.sort_by(|a, b| a.address.cmp(b.address));
    let mut hasher = Sha256::new();
    for c in sorted {
        hasher.update(c.address.to_string().as_bytes());
        hasher.update([0u8]);
        hasher.update(c.target);
        hasher.update([0u8]);
    }
    Digest::from_sha256(hasher.finalize().into())
}

/// A twin's answer is [`super::drift::Ack`] (the one classifier `drift`, `apply --wait` and the gate
/// share), made per twin by [`super::drift::twin_answer`].
pub use super::drift::Ack;

/// One twin's answer to a wave: each of `keys` (its changed desired keys) classified against what
/// the twin reports now ([`super::drift::classify`] at each key's own `$lastUpdatedVersion`, so a
/// later write of another key or of the ledger does not make an acknowledged key pending again). A key whose
/// desired value is gone, or differs from `expect` (someone else's value now), is not the wave's
/// to wait for; sensitive targets (digests) cannot be compared and are classified as they stand.
pub fn answer(keys: &BTreeSet<String>, expect: &JsonMap, seen: &crate::model::ObservedTwin) -> Ack {
    super::drift::twin_answer(keys.iter().filter_map(|k| {
        let now = seen.desired.get(k)?;
        if let Some(e) = expect.get(k)
            && !super::is_sensitive_digest(e)
            && e != now
        {
            return None;
        }
        Some((
            format!("desired.{k}"),
            super::drift::classify(now, seen.reported.get(k), seen.key_version(k)),
        ))
    }))
}

/// The desired keys a rolled-out update changes and waits for: those its patch sets to a value
/// (a key being removed has nothing to acknowledge).
pub fn gated_keys(u: &UpdateTwin) -> BTreeSet<String> {
    u.patch
        .desired
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.clone())
        .collect()
}

/// The update that writes a rolled-out twin back to its plan `base` values (`on_halt: revert`): `base`
/// and `target` swapped, so the 412 rule guards it the same way (a twin someone else changed since
/// the wave wrote it is a conflict, never overwritten), and the ledger goes back to what it was
/// (without this rollout's mark). `Err` names a sensitive value, whose old value a plan holds only
/// as a digest and so cannot write back.
pub fn revert(u: &UpdateTwin, if_match: crate::model::ETag) -> Result<UpdateTwin, String> {
    let section = |from: &JsonMap, to: &JsonMap, name: &str| -> Result<JsonMap, String> {
        let mut out = JsonMap::new();
        for (k, old) in to {
            let now = from.get(k).unwrap_or(&Value::Null);
            if now == old {
                continue;
            }
            if super::is_sensitive_digest(old) || contains_digest(old) {
                return Err(format!(
                    "{name}.{k} is sensitive: the plan holds only a digest of its old value"
                ));
            }
            let p = super::patch::merge_patch((!now.is_null()).then_some(now), Some(old))
                .unwrap_or(Value::Null);
            out.insert(k.clone(), p);
        }
        Ok(out)
    };
    Ok(UpdateTwin {
        address: u.address.clone(),
        if_match,
        patch: super::TwinPatch {
            tags: section(&u.target.tags, &u.base.tags, "tags")?,
            desired: section(&u.target.desired, &u.base.desired, "desired")?,
        },
        base: u.target.clone(),
        target: u.base.clone(),
        diff: Vec::new(),
        ignore: u.ignore.clone(),
        sensitive: u.sensitive.clone(),
        // A sensitive old value is refused above, so the way back holds no secret.
        refs: Vec::new(),
        key: u.key,
        adopted: Vec::new(),
        released: Vec::new(),
        forced: Vec::new(),
    })
}

fn contains_digest(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .values()
            .any(|v| super::is_sensitive_digest(v) || contains_digest(v)),
        Value::Array(a) => a.iter().any(contains_digest),
        _ => false,
    }
}

/// How many twins of a wave are in each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    pub acknowledged: usize,
    pub rejected: usize,
    pub pending: usize,
}

impl Tally {
    pub fn of(classes: &[Ack]) -> Tally {
        let mut t = Tally::default();
        for c in classes {
            match c {
                Ack::Acknowledged => t.acknowledged += 1,
                Ack::Rejected { .. } => t.rejected += 1,
                Ack::Pending => t.pending += 1,
            }
        }
        t
    }

    pub fn total(&self) -> usize {
        self.acknowledged + self.rejected + self.pending
    }
}

/// Where a written wave stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Twins are still pending and the timeout has not passed: poll again.
    Waiting,
    /// Write the next wave (after `bake`).
    Passed,
    /// Halt the rollout.
    Failed(Halted),
}

/// Why a wave failed its gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halted {
    /// More than `halt.rejected` of its twins rejected the change.
    Rejected,
    /// At timeout, more than `halt.pending` of its twins had not acknowledged.
    Pending,
}

/// The gate of one written wave, from its twins' classes (SPEC §11). Shares compare strictly: a wave
/// fails when *more than* the threshold share of its twins is rejected (at once, whether or not the
/// timeout has passed) or, once `timed_out`, pending. Before the timeout it passes only when no twin
/// is pending any more; at the timeout it passes when the pending share is within `halt.pending`. An
/// empty wave passes.
pub fn gate(classes: &[Ack], halt: &Halt, timed_out: bool) -> Gate {
    let t = Tally::of(classes);
    let total = t.total();
    if halt.rejected.is_exceeded_by(t.rejected, total) {
        return Gate::Failed(Halted::Rejected);
    }
    if t.pending == 0 {
        return Gate::Passed;
    }
    if !timed_out {
        return Gate::Waiting;
    }
    if halt.pending.is_exceeded_by(t.pending, total) {
        Gate::Failed(Halted::Pending)
    } else {
        Gate::Passed
    }
}

pub mod delivery;
pub mod progress;
pub mod select;

#[cfg(test)]
mod tests;
