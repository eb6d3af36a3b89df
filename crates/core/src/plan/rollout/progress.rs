//! What a rollout's delivery reports: the state of each wave, the twins that stopped it, why it
//! halted, and the events an operator follows while it runs. Plain values; `render` words them.

use std::time::Duration;

use serde::Serialize;

use super::Tally;
use crate::model::Address;

/// Where a rollout's wave stands at the end of an apply (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Accepted as it stood by `apply --resume`: its gate was read again for the counts, and not
    /// decided (a rejection the operator accepted stays counted).
    Accepted,
}

/// One wave of a delivered rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaveReport {
    pub index: usize,
    /// Twins in the wave.
    pub twins: usize,
    /// The gate's count of its twins, when it was checked.
    pub acknowledged: usize,
    pub rejected: usize,
    pub pending: usize,
    pub state: WaveState,
    /// Passed in an earlier run (the twins' ledgers say so) and not read again by this one: its
    /// counts are not this run's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub earlier: bool,
    /// How often the gate read the wave's twins, and what that cost: targeted twin GETs and query
    /// pages.
    pub polls: usize,
    pub gets: usize,
    pub query_pages: usize,
}

/// A twin of a failed wave that rejected the change or never acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateTwin {
    #[serde(flatten)]
    pub address: Address,
    /// The device's `ad` texts, `desired.KEY: text` joined by `; ` (rejected twins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ad: Option<String>,
}

/// Why a rollout stopped before its last wave passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltReason {
    /// More than `halt.rejected` of the wave's twins rejected the change.
    Rejected,
    /// At the timeout, more than `halt.pending` had not acknowledged.
    Pending,
    /// The gate's twins could not be read.
    Unreadable,
}

/// Why a rollout stopped before its last wave passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaltReport {
    /// The wave whose gate failed.
    pub wave: usize,
    pub reason: HaltReason,
    /// The one-line message, `rollout halted at wave K of W: …`.
    pub message: String,
}

/// How a rollout went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutReport {
    pub id: String,
    pub waves: Vec<WaveReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<HaltReport>,
    /// The twins of the failed wave that rejected the change, with the device's `ad`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<GateTwin>,
    /// The twins of the failed wave that had not acknowledged at its timeout.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<GateTwin>,
}

/// What a rollout is doing that takes time, for the operator (and CI logs) to follow.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutEvent {
    /// The twins' ledgers say an earlier run wrote up to wave `last`.
    Continues {
        id: String,
        last: usize,
        waves: usize,
    },
    Writing {
        wave: usize,
        waves: usize,
        twins: usize,
    },
    Waiting {
        wave: usize,
        waves: usize,
        timeout: Duration,
        twins: usize,
    },
    Passed {
        wave: usize,
        waves: usize,
        tally: Tally,
    },
    Baking {
        bake: Duration,
        next: usize,
    },
    Reverting {
        twins: usize,
    },
}
