//! What an apply did, item by item: the outcome types the executor produces and the renderers draw.
//!
//! Plain values: no I/O. The executor (`twinops::apply`) fills them in; `render` prints them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::Kind;

/// How an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Written as planned.
    Applied,
    /// Created already (409) and taken over.
    Adopted,
    /// Already at the target: no write was needed.
    Unchanged,
    /// Someone else changed what the plan was computed against; nothing written.
    Conflict,
    Failed,
    /// Not started because the run was interrupted or a prerequisite failed.
    Skipped,
    /// The twin was gone when it was written (404), though the query the plan read still listed
    /// it: IoT Hub's query index lags behind (a deleted device can stay in it for minutes). Not an
    /// error: the next run plans its creation.
    Missing,
    /// Written by a rollout wave, then written back to its plan `base` values when the rollout
    /// halted with `on_halt: revert`.
    Reverted,
}

/// One item's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub kind: Kind,
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Keys that changed under the plan (conflicts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

impl Outcome {
    pub fn address(&self) -> String {
        crate::model::address(&self.device_id, self.module_id.as_deref())
    }

    pub fn is_error(&self) -> bool {
        matches!(
            self.status,
            Status::Conflict | Status::Failed | Status::Skipped
        )
    }
}

/// The result of an apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub interrupted: bool,
    /// How the plan's rollout went, wave by wave, when the apply delivered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutReport>,
}

impl Report {
    /// Whether every item ended well, and a rollout (if any) did not halt.
    pub fn ok(&self) -> bool {
        !self.interrupted
            && !self.outcomes.iter().any(Outcome::is_error)
            && self.rollout.as_ref().is_none_or(|r| r.halted.is_none())
    }

    pub fn count(&self, s: Status) -> usize {
        self.outcomes.iter().filter(|o| o.status == s).count()
    }
}

/// One twin waited for by `apply --wait`: its desired values to see acknowledged.
#[derive(Debug, Clone)]
pub struct Pending {
    pub device: String,
    pub module: Option<String>,
    pub desired: BTreeMap<String, Value>,
    pub acknowledged_after: Option<Duration>,
    /// The device rejected a value: the keys and the device's `ad` texts.
    pub rejected: Option<String>,
}

impl Pending {
    /// Neither acknowledged nor rejected yet.
    pub fn is_open(&self) -> bool {
        self.acknowledged_after.is_none() && self.rejected.is_none()
    }

    pub fn address(&self) -> String {
        crate::model::address(&self.device, self.module.as_deref())
    }
}

/// Where a rollout's wave stands at the end of an apply (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveState {
    /// Its gate passed.
    Passed,
    /// Its gate failed: the rollout halted here.
    Failed,
    /// Written, but its gate was not decided (the run was interrupted).
    Written,
    /// Not written by this run (nor, as far as its ledgers tell, by an earlier one).
    NotStarted,
}

/// One wave of a delivered rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveReport {
    pub index: usize,
    /// Twins in the wave.
    pub twins: usize,
    /// The gate's count of its twins, when it was checked.
    pub acknowledged: usize,
    pub rejected: usize,
    pub pending: usize,
    pub state: WaveState,
    /// How often the gate read the wave's twins, and what that cost: targeted twin GETs and query
    /// pages.
    #[serde(default)]
    pub polls: usize,
    #[serde(default)]
    pub gets: usize,
    #[serde(default)]
    pub query_pages: usize,
}

/// A twin of a failed wave that rejected the change or never acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateTwin {
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The device's `ad` texts, `desired.KEY: text` joined by `; ` (rejected twins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad: Option<String>,
}

impl GateTwin {
    pub fn address(&self) -> String {
        crate::model::address(&self.device_id, self.module_id.as_deref())
    }
}

/// Why a rollout stopped before its last wave passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltReport {
    /// The wave whose gate failed.
    pub wave: usize,
    /// `rejected` or `pending`.
    pub reason: String,
    /// The one-line message, `rollout halted at wave K of W: …`.
    pub message: String,
}

/// How a rollout went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutReport {
    pub id: String,
    pub waves: Vec<WaveReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<HaltReport>,
    /// The twins of the failed wave that rejected the change, with the device's `ad`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<GateTwin>,
    /// The twins of the failed wave that had not acknowledged at its timeout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<GateTwin>,
}
