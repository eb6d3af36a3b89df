//! What an apply did, item by item, and what it told the operator while it ran: the outcome types
//! the executor produces, the progress events it emits, and the rollout and `--wait` reports.
//!
//! Plain typed values: no I/O and no words. Every item is keyed by a typed [`Address`], every reason
//! and event is an enum; `render` turns them into words (`render::text::reason`,
//! `render::text::event`), and the JSON report writes the same words as `detail`, so the
//! executor never composes prose.

use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::model::{Address, DeviceId, TwinAddress};
use crate::plan::Kind;
pub use crate::plan::Phase;
pub use crate::plan::rollout::progress::{
    GateTwin, HaltReason, HaltReport, RolloutEvent, RolloutReport, WaveReport, WaveState,
};

/// How an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// What the executor was doing when the hub refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    /// The write itself.
    Writing,
    ReadingIdentity,
    ReadingParent,
    ReadingExistingTwin,
    ReReadingAfter412,
    /// Attaching an edge child's parent again after the device stopped being an edge device.
    AttachingParentAgain,
    /// Disabling a device created enabled so that its modules could be created.
    Disabling,
}

/// Why a 401 on a module identity operation happened. Under SAS a live hub answers 401, not 404,
/// when the device is missing, and 401 when it is disabled (live-hub.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    DeviceMissing(DeviceId),
    DeviceDisabled(DeviceId),
    /// Neither: a permission the policy lacks, or a wrong key (the hub's error says which it
    /// can be under the policy used).
    Permission,
}

/// Why an item ended as it did (absent: as planned, nothing to add).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The run was interrupted before the item started.
    Interrupted,
    /// Its device's create failed.
    DeviceNotCreated,
    /// Deletes run once every rollout wave has passed, and one did not.
    AfterWaves,
    /// The identity existed (409) and its twin already had the content.
    ExistedWithContent,
    /// The identity existed (409); its twin content was applied.
    ExistedContentApplied,
    /// The identity existed and its ledger names another owner.
    ExistsOwnedBy(String),
    /// The etag moved on every re-read and resend.
    ChangingTooFast,
    /// Written after this many re-reads found only unrelated changes.
    Resent(u32),
    /// Its owned keys already had the target values.
    AlreadyAtTarget,
    /// Someone else changed owned keys since the plan (the item's `keys`).
    OwnedKeysChanged,
    /// A conflict the plan found (its reason): the twin was not touched.
    PlanConflict(String),
    /// A managed object changed or went since the plan: not overwritten.
    ObjectChanged,
    /// A replaced object was not deleted: its replacement was not applied in time (or failed).
    ReplacementNotApplied(String),
    /// Owned keys were taken over by another owner since the plan (its words name each key and
    /// its manager).
    TakenOver(String),
    /// The twin was gone (404); the next run creates it.
    TwinGone,
    /// The identity's etag differs from the plan's.
    IdentityChanged,
    /// The module twin's etag differs from the plan's (a module delete re-checks it).
    ModuleTwinChanged,
    /// Deleted already (404 on the delete).
    AlreadyGone,
    /// Changed since the plan; not deleted (412 on the delete).
    ChangedNotDeleted,
    /// The parent the manifests name is not an edge device in the hub.
    ParentNotEdge(DeviceId),
    /// IoT Hub detaches the parent of a device that stops being an edge device, so the parent was
    /// attached again in a second write.
    TwoWrites,
    /// The identity changed between those two writes; the parent was not attached again.
    ChangedBetweenWrites,
    /// Created enabled (its modules needed that), disabled once they existed.
    CreatedEnabledThenDisabled,
    /// The hub refused or failed; `error` is the client error's one-line chain.
    Hub {
        doing: Doing,
        error: String,
        refusal: Option<Refusal>,
    },
    /// A bulk row failed with IoT Hub's code and status text.
    Row { code: String, status: String },
    /// Rolled out, then written back to its old values.
    Reverted,
    /// Rolled out; a revert cannot write it back (a sensitive old value; the planner's words).
    NotReverted(String),
    /// Rolled out, then changed by someone else: not reverted.
    RevertConflict,
    /// Rolled out; writing it back failed, for this reason.
    RevertFailed(Box<Reason>),
}

/// One item's outcome: a change of the plan (an identity or a twin), or a managed object. Its
/// JSON (`render`) writes the reason in words as `detail`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub kind: Kind,
    pub address: Address,
    pub status: Status,
    pub reason: Option<Reason>,
    /// Keys that changed under the plan (conflicts).
    pub keys: Vec<String>,
}

impl Outcome {
    pub fn new(kind: Kind, address: impl Into<Address>, status: Status) -> Outcome {
        Outcome {
            kind,
            address: address.into(),
            status,
            reason: None,
            keys: Vec::new(),
        }
    }

    pub fn because(mut self, reason: Reason) -> Outcome {
        self.reason = Some(reason);
        self
    }

    pub fn is_error(&self) -> bool {
        matches!(
            self.status,
            Status::Conflict | Status::Failed | Status::Skipped
        )
    }

    /// Written, or at the target already: what `--wait` goes on to wait for.
    pub fn took_effect(&self) -> bool {
        matches!(
            self.status,
            Status::Applied | Status::Adopted | Status::Unchanged
        )
    }
}

/// The result of an apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub interrupted: bool,
    /// How the plan's rollout went, wave by wave, when the apply delivered one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutReport>,
    /// What `apply --wait` saw, when it waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitReport>,
}

impl Report {
    /// The report of an apply with nothing to do.
    pub fn empty() -> Report {
        Report {
            outcomes: Vec::new(),
            interrupted: false,
            rollout: None,
            wait: None,
        }
    }

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

/// One twin waited for by `apply --wait`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waited {
    #[serde(rename = "twin")]
    pub address: TwinAddress,
    /// When its device acknowledged every value, from the start of the wait.
    #[serde(
        rename = "acknowledged_after_seconds",
        skip_serializing_if = "Option::is_none",
        serialize_with = "seconds"
    )]
    pub acknowledged_after: Option<Duration>,
    /// The device rejected a value: the keys and the device's `ad` texts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

fn seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64((d.as_secs_f64() * 10.0).round() / 10.0),
        None => s.serialize_none(),
    }
}

impl Waited {
    /// Neither acknowledged nor rejected yet.
    pub fn is_open(&self) -> bool {
        self.acknowledged_after.is_none() && self.rejected.is_none()
    }
}

/// What `apply --wait` saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitReport {
    /// How long it was allowed to wait.
    #[serde(rename = "limit_seconds", serialize_with = "limit_seconds")]
    pub limit: Duration,
    pub twins: Vec<Waited>,
    /// Managed objects waited for (SPEC §16): applied, and for deployments reported by the edge
    /// agents.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<WaitedObject>,
}

/// One managed object `apply --wait` waited for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitedObject {
    #[serde(flatten)]
    pub address: Address,
    /// When it reached its goal: applied to every targeted device (and, for a deployment,
    /// reported successfully by every edge agent).
    #[serde(
        rename = "done_after_seconds",
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_seconds"
    )]
    pub done_after: Option<Duration>,
    /// Targeted, applied and reported counts when the wait ended.
    pub targeted: u64,
    pub applied: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_successful: Option<u64>,
    /// Edge agents that report a failed deployment: `device: lastDesiredStatus` (the wait ended).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

fn opt_seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn limit_seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl WaitReport {
    /// A device rejected a value: the wait ended at once.
    pub fn rejected(&self) -> impl Iterator<Item = &Waited> {
        self.twins.iter().filter(|w| w.rejected.is_some())
    }

    /// Still unacknowledged when the wait ended.
    pub fn open(&self) -> impl Iterator<Item = &Waited> {
        self.twins.iter().filter(|w| w.is_open())
    }

    /// Every twin acknowledged, every object applied (and reported).
    pub fn ok(&self) -> bool {
        self.twins.iter().all(|w| w.acknowledged_after.is_some())
            && self.objects.iter().all(|o| o.done_after.is_some())
    }
}

/// How a plan reads the hub, told before the read starts on a paced hub (it can take minutes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadEstimate {
    /// Every identity of the hub, by query.
    pub whole_hub: bool,
    pub query_twins: usize,
    pub query_requests: usize,
    pub get_twins: usize,
    /// Seconds at the pace in force.
    pub estimated_seconds: Option<f64>,
}

/// Something the operator should know before applying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A device disabled in the hub whose module identities the plan updates or deletes: IoT Hub
    /// refuses those under SAS.
    DisabledDevice(DeviceId),
    /// A module the manifests declare with a `managedBy` that differs from the hub's: it is written
    /// only at creation, never changed (SPEC §15).
    ManagedByDiffers {
        module: crate::model::TwinAddress,
        declared: String,
        hub: Option<String>,
    },
}

/// Progress, as the executor and the operations report it; the edge draws it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A plan starts reading the hub.
    Reading(ReadEstimate),
    /// Which read an operation chose (SPEC §17): an export job or queries and GETs, and why.
    ReadVia {
        export: bool,
        why: String,
    },
    Warning(Warning),
    /// A phase starts with this many items.
    Phase {
        phase: Phase,
        items: usize,
    },
    /// An item ended.
    Done(Outcome),
    Rollout(RolloutEvent),
    /// `apply --wait` starts waiting for this many twins.
    Waiting {
        twins: usize,
        limit: Duration,
    },
}

/// Receives progress events.
pub trait Reporter: Send + Sync {
    fn event(&self, e: Event);
}

/// A reporter that drops every event.
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: Event) {}
}
