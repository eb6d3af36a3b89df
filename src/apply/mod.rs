//! The executor: runs a [`Plan`] against a hub in [`Phase::APPLY`] order with bounded concurrency,
//! the 412 re-read rule, bulk creates, a rollout's waves, and one outcome per item, reported as a
//! stream of typed events ([`Event`]): it composes no words, the edge draws them.
//!
//! It never overwrites a change it did not plan against: every update and delete carries `If-Match`, and a
//! 412 leads to a re-read and the owned-keys rule, never a blind retry with `*`. What IoT Hub's
//! protocol needs for each write (bulk rows, scope rules, etag echoes) is the hub client's
//! ([`crate::hub::Hub`]); this module decides what to write, in which order, and what came of it.

mod create;
mod identity;
pub(crate) mod objects;
mod rollout;
mod twin;
pub(crate) mod wait;

use std::time::Duration;

use futures::{StreamExt, stream};
use tokio_util::sync::CancellationToken;

use crate::hub::{Error, Hub, StepError};
use twinops_core::plan::{Change, Plan};
use twinops_core::report::{Doing, Event, Phase, Reason, Reporter};

pub(crate) use twinops_core::report::{Outcome, Report, Status};

/// An item's outcome for a change.
/// An outcome that failed on the hub: the client error's one-line chain as its reason.
fn hub_failed_outcome(o: Outcome, doing: Doing, e: &Error) -> Outcome {
    o.because(Reason::Hub {
        doing,
        error: e.chain().to_string(),
        refusal: None,
    })
}

fn outcome(c: &Change, status: Status) -> Outcome {
    Outcome::new(c.kind(), c.address(), status)
}

/// Executor settings.
#[derive(Clone)]
pub(crate) struct Options {
    pub concurrency: usize,
    /// Cancelled to stop starting new operations (Ctrl-C); in-flight ones finish, waits end.
    pub stop: CancellationToken,
    /// Resends of a patch whose twin moved only outside the owned keys.
    pub max_resends: u32,
    /// Write a plan's rolled-out twins at once, as if it had no rollout (`--no-rollout`).
    pub no_rollout: bool,
    /// Accept the last written wave as it stands and go on with the next (`--resume`).
    pub resume: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 16,
            stop: CancellationToken::new(),
            max_resends: 5,
            no_rollout: false,
            resume: false,
        }
    }
}

struct Executor<'a> {
    hub: &'a Hub,
    /// The plan's owner: whose ledger entry its writes carry.
    owner: &'a str,
    options: &'a Options,
    reporter: &'a dyn Reporter,
}

impl Executor<'_> {
    fn stopped(&self) -> bool {
        self.options.stop.is_cancelled()
    }

    fn done(&self, o: Outcome) -> Outcome {
        self.reporter.event(Event::Done(o.clone()));
        o
    }

    fn event(&self, e: Event) {
        self.reporter.event(e);
    }

    /// Sleeps for `d`, waking early when the run is stopped.
    async fn sleep(&self, d: Duration) {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = self.options.stop.cancelled() => {}
        }
    }

    /// A failed item: the step and the hub's error; a 401 on a module identity operation says
    /// why the hub refused (a missing or disabled device, else a permission).
    async fn failed(&self, c: &Change, e: StepError) -> Outcome {
        self.failed_with(c, e.doing, &e.error).await
    }

    async fn failed_with(&self, c: &Change, doing: Doing, e: &Error) -> Outcome {
        let module_op = matches!(
            c,
            Change::CreateModule(_) | Change::UpdateModule(_) | Change::DeleteModule(_)
        );
        let refusal = match e {
            Error::Unauthorized { .. } if module_op => Some(self.hub.refusal(c.device_id()).await),
            _ => None,
        };
        outcome(c, Status::Failed).because(Reason::Hub {
            doing,
            error: e.chain().to_string(),
            refusal,
        })
    }

    /// One identity update, twin patch or delete.
    async fn one(&self, c: &Change) -> Outcome {
        if self.stopped() {
            return self.done(outcome(c, Status::Skipped).because(Reason::Interrupted));
        }
        let o = match c {
            Change::UpdateDevice(u) => {
                identity::written(self, c, self.hub.update_device(u).await).await
            }
            Change::UpdateModule(u) => {
                identity::written(self, c, self.hub.update_module(u).await).await
            }
            Change::UpdateTwin(u) | Change::Release(u) => twin::update(self, c, u).await.0,
            Change::DeleteDevice(d) => {
                identity::deleted(self, c, self.hub.delete_device(d).await).await
            }
            Change::DeleteModule(d) => {
                identity::deleted(self, c, self.hub.delete_module(d).await).await
            }
            // Creates run in bulk (`create`), never one by one.
            Change::CreateDevice(_) | Change::CreateModule(_) => {
                outcome(c, Status::Skipped).because(Reason::Interrupted)
            }
        };
        self.done(o)
    }

    /// Runs one phase's changes with the executor's concurrency.
    async fn phase(&self, phase: Phase, changes: Vec<&Change>) -> Vec<Outcome> {
        if changes.is_empty() {
            return Vec::new();
        }
        self.event(Event::Phase {
            phase,
            items: changes.len(),
        });
        stream::iter(changes.into_iter().map(|c| self.one(c)))
            .buffered(self.options.concurrency.max(1))
            .collect()
            .await
    }
}

/// Executes a plan. Items whose prerequisites failed are skipped; nothing is retried blindly.
pub(crate) async fn apply(
    hub: &Hub,
    plan: &Plan,
    options: &Options,
    reporter: &dyn Reporter,
) -> Report {
    let ex = Executor {
        hub,
        owner: plan.owner.as_str(),
        options,
        reporter,
    };
    // With a rollout, the twin updates it delivers go in waves after the other twin patches, and
    // the deletes only once every wave has passed (SPEC §11).
    let delivering = plan.rollout.as_ref().filter(|_| !options.no_rollout);
    let in_waves =
        |c: &Change| delivering.is_some() && twinops_core::plan::rollout::rolled_out(c).is_some();
    let mut creates = create::Creates::of(plan);
    let mut outcomes = Vec::new();
    let mut rollout = None;
    let mut waves_passed = true;
    let mut object_writes = Vec::new();
    for phase in Phase::APPLY {
        let changes: Vec<&Change> = plan
            .changes
            .iter()
            .filter(|c| c.kind().phase() == phase && !in_waves(c))
            .collect();
        let done = match phase {
            Phase::DeviceCreates => creates.devices(&ex, &changes).await,
            Phase::ModuleCreates => creates.modules(&ex, &changes, &mut outcomes).await,
            Phase::ModuleDeletes | Phase::DeviceDeletes if !waves_passed => {
                skipped_deletes(&ex, &changes)
            }
            _ => ex.phase(phase, changes).await,
        };
        outcomes.extend(done);
        if phase == Phase::TwinPatches
            && let Some(r) = delivering
        {
            let d = rollout::deliver(&ex, plan, r, options.resume).await;
            outcomes.extend(d.outcomes);
            waves_passed = d.passed;
            rollout = Some(d.report);
        }
        if phase == Phase::TwinPatches && !plan.objects.changes.is_empty() {
            object_writes = objects::writes(&ex, plan).await;
        }
    }
    // Managed objects are deleted last: a replaced one once its replacement is applied.
    if plan.objects.changes.iter().any(|c| c.object_delete()) {
        let deleted = objects::deletes(&ex, plan, &object_writes).await;
        object_writes.extend(deleted);
    }
    outcomes.extend(object_writes);
    Report {
        interrupted: ex.stopped(),
        outcomes,
        rollout,
        wait: None,
    }
}

/// Deletes when a rollout did not pass every wave: not run (nor reported when interrupted).
fn skipped_deletes(ex: &Executor<'_>, changes: &[&Change]) -> Vec<Outcome> {
    if ex.stopped() {
        return Vec::new();
    }
    changes
        .iter()
        .map(|c| ex.done(outcome(c, Status::Skipped).because(Reason::AfterWaves)))
        .collect()
}
