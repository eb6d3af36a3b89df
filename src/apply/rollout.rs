//! Delivering a plan's rollout (SPEC §11): a thin driver of the pure state machine
//! `twinops_core::plan::rollout::delivery::Delivery`, which decides every step (the waves, their
//! gates, the bake, the halt, the revert). This module does what a step says against the hub —
//! writes under the 412 rule with the executor's concurrency, gate polls through the one reader
//! (`hub::read::poll`), sleeps that a stop ends early — and hands back what it saw.

use std::collections::HashMap;
use std::time::Instant;

use futures::{StreamExt, stream};

use super::twin::{self};
use super::{Executor, Outcome, Status, outcome};
use crate::hub::read;
use twinops_core::model::{ETag, TwinAddress};
use twinops_core::plan::rollout::delivery::{Delivery, GateItem, Step, Wrote};
use twinops_core::plan::rollout::{self, Ack};
use twinops_core::plan::{Change, Plan, Rollout, UpdateTwin};
use twinops_core::report::{Event, Phase, Reason, RolloutReport};

/// What delivering the waves did.
pub(super) struct Delivered {
    pub outcomes: Vec<Outcome>,
    pub report: RolloutReport,
    /// Every wave passed: what runs after the waves (deletes) may run.
    pub passed: bool,
}

/// A twin this run wrote, for `on_halt: revert`.
struct Written {
    /// Its outcome's index.
    at: usize,
    /// The etag of our write.
    etag: Option<ETag>,
}

struct Driver<'a, 'p> {
    ex: &'a Executor<'a>,
    changes: HashMap<&'p TwinAddress, (&'p Change, &'p UpdateTwin)>,
    outcomes: Vec<Outcome>,
    written: HashMap<TwinAddress, Written>,
}

pub(super) async fn deliver(
    ex: &Executor<'_>,
    plan: &Plan,
    r: &Rollout,
    resume: bool,
) -> Delivered {
    let changes: HashMap<&TwinAddress, (&Change, &UpdateTwin)> = plan
        .changes
        .iter()
        .filter_map(|c| rollout::rolled_out(c).map(|u| (&u.address, (c, u))))
        .collect();
    let mut d = Delivery::new(r, changes.keys().map(|a| (*a).clone()), resume);
    let mut driver = Driver {
        ex,
        changes,
        outcomes: Vec::new(),
        written: HashMap::new(),
    };
    let started = Instant::now();
    let passed = loop {
        for e in d.events() {
            ex.event(Event::Rollout(e));
        }
        let step = d.next(started.elapsed());
        let interruptible = matches!(step, Step::Write { .. } | Step::Poll | Step::Sleep(_));
        if interruptible && ex.stopped() {
            d.interrupt();
            continue;
        }
        match step {
            Step::Write { wave, twins } => {
                let wrote = driver.write(wave, &twins).await;
                let changes = &driver.changes;
                d.wrote(wrote, |a| match changes.get(a) {
                    Some((_, u)) => GateItem {
                        address: a.clone(),
                        keys: Some(rollout::gated_keys(u)),
                        expect: u.target.desired.clone(),
                        version: None,
                        answer: Ack::Pending,
                        accepted: false,
                    },
                    None => GateItem::new(a.clone(), Default::default(), None),
                });
            }
            Step::Poll => {
                let id = d.id().clone();
                match read::poll(ex.hub, d.gate_mut(), Some(&id), ex.options.concurrency).await {
                    Ok(cost) => d.polled(started.elapsed(), cost),
                    Err(e) => d.unreadable(&e.chain().to_string()),
                }
            }
            Step::Sleep(t) => ex.sleep(t).await,
            Step::Revert(twins) => {
                driver.revert(&twins).await;
                d.reverted();
            }
            Step::Done { passed } => break passed,
        }
    };
    for e in d.events() {
        ex.event(Event::Rollout(e));
    }
    Delivered {
        outcomes: driver.outcomes,
        report: d.into_report(),
        passed,
    }
}

impl Driver<'_, '_> {
    /// Writes a wave's twins, in wave order, with the executor's concurrency, under the 412 rule.
    async fn write(&mut self, wave: usize, twins: &[TwinAddress]) -> Vec<Wrote> {
        let items: Vec<(&Change, &UpdateTwin)> = twins
            .iter()
            .filter_map(|a| self.changes.get(a).copied())
            .collect();
        if items.is_empty() {
            return Vec::new();
        }
        let ex = self.ex;
        ex.event(Event::Phase {
            phase: Phase::RolloutWave(wave),
            items: items.len(),
        });
        let results: Vec<_> = stream::iter(items.into_iter().map(|(c, u)| async move {
            let (o, after) = if ex.stopped() {
                (
                    outcome(c, Status::Skipped).because(Reason::Interrupted),
                    None,
                )
            } else {
                twin::update(ex, c, u).await
            };
            (u, ex.done(o), after)
        }))
        .buffered(ex.options.concurrency.max(1))
        .collect()
        .await;
        let mut wrote = Vec::with_capacity(results.len());
        for (u, o, after) in results {
            wrote.push(Wrote {
                address: u.address.clone(),
                written: o.status == Status::Applied,
                gated: matches!(o.status, Status::Applied | Status::Unchanged),
                desired_version: after.as_ref().map(|a| a.desired_version),
            });
            if o.status == Status::Applied {
                self.written.insert(
                    u.address.clone(),
                    Written {
                        at: self.outcomes.len(),
                        etag: after.map(|a| a.etag),
                    },
                );
            }
            self.outcomes.push(o);
        }
        wrote
    }

    /// Writes these twins back to their plan `base` values under the 412 rule; their outcomes
    /// become `reverted`, a conflict, or a failure.
    async fn revert(&mut self, twins: &[TwinAddress]) {
        let ex = self.ex;
        let jobs: Vec<(usize, &Change, &UpdateTwin, ETag)> = twins
            .iter()
            .filter_map(|a| {
                let w = self.written.get(a)?;
                let (c, u) = self.changes.get(a)?;
                // The etag of our write; a stale one (the device reported since) costs a re-read.
                let etag = w.etag.clone().unwrap_or_else(|| u.if_match.clone());
                Some((w.at, *c, *u, etag))
            })
            .collect();
        ex.event(Event::Phase {
            phase: Phase::RolloutRevert,
            items: jobs.len(),
        });
        let reverted: Vec<(usize, Outcome)> =
            stream::iter(jobs.into_iter().map(|(at, c, u, etag)| async move {
                (at, ex.done(revert_one(ex, c, u, etag).await))
            }))
            .buffered(ex.options.concurrency.max(1))
            .collect()
            .await;
        for (at, o) in reverted {
            self.outcomes[at] = o;
        }
    }
}

async fn revert_one(ex: &Executor<'_>, c: &Change, u: &UpdateTwin, etag: ETag) -> Outcome {
    let back = match rollout::revert(u, etag) {
        Ok(back) => back,
        Err(why) => return outcome(c, Status::Failed).because(Reason::NotReverted(why)),
    };
    let (o, _) = twin::update(ex, c, &back).await;
    match o.status {
        Status::Applied | Status::Unchanged => {
            outcome(c, Status::Reverted).because(Reason::Reverted)
        }
        Status::Conflict => {
            let mut conflict = outcome(c, Status::Conflict).because(Reason::RevertConflict);
            conflict.keys = o.keys;
            conflict
        }
        _ => outcome(c, Status::Failed).because(Reason::RevertFailed(Box::new(
            o.reason.unwrap_or(Reason::Interrupted),
        ))),
    }
}
