//! Delivering a plan's rollout (SPEC §11): the waves written in order under the 412 rule and the
//! pace, each gated on what its devices report (the one classifier `drift` and `--wait` use), `bake`
//! between waves, and a halt that stops by itself, with `on_halt: revert` written back under the
//! 412 rule as well.
//!
//! Which twin is in which wave, the rollout's ID and the gate arithmetic are pure
//! (`twinops_core::plan::rollout`); this module does the reads, the writes and the waiting. The hub
//! remembers the rollout (each written twin's ledger holds its ID and wave), so a plan made after a
//! kill or a halt continues it: the first step then writes what is left of the waves up to the last
//! one written and checks that wave's gate again before anything later is written.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};

use super::{Event, Executor, Outcome, Status, outcome, twin};
use crate::hub::{Error, Hub, observe, read};
use twinops_core::model::{Digest, ETag, JsonMap, ObservedTwin, OnHalt, TwinAddress};
use twinops_core::plan::rollout::{self, Ack, Gate, Halted, Tally};
use twinops_core::plan::{Change, Plan, Rollout, UpdateTwin, ledger};
use twinops_core::report::{GateTwin, HaltReport, RolloutReport, WaveReport, WaveState};

/// Above this many open twins a poll reads them with paged `IN` queries instead of one GET each.
const GATE_TARGETED_MAX: usize = crate::hub::read::TARGETED_MAX_TWINS;

/// What delivering the waves did.
pub(super) struct Delivery {
    pub outcomes: Vec<Outcome>,
    pub report: RolloutReport,
    /// Every wave passed: what runs after the waves (deletes) may run.
    pub passed: bool,
}

/// One twin a gate (or `apply --wait`) waits for.
pub(super) struct Item {
    pub address: TwinAddress,
    /// The changed desired keys; for a twin an earlier run wrote, read from its mark when polled.
    pub keys: Option<BTreeSet<String>>,
    /// The values written (a plan's `target.desired`), to tell someone else's later value apart.
    pub expect: JsonMap,
    /// The desired `$version` the write produced: a query row older than that is stale.
    pub version: Option<i64>,
    pub answer: Ack,
}

/// A twin this run wrote, for `on_halt: revert`.
struct Written<'a> {
    change: &'a Change,
    update: &'a UpdateTwin,
    etag: Option<ETag>,
    /// Index of its outcome.
    at: usize,
}

pub(super) async fn deliver(ex: &Executor<'_>, plan: &Plan, r: &Rollout, resume: bool) -> Delivery {
    let changes: HashMap<&TwinAddress, (&Change, &UpdateTwin)> = plan
        .changes
        .iter()
        .filter_map(|c| rollout::rolled_out(c).map(|u| (&u.address, (c, u))))
        .collect();
    let waves = r.waves.len();
    let start = r.written.unwrap_or(0);
    let mut report = RolloutReport {
        id: r.id.to_string(),
        waves: r
            .waves
            .iter()
            .map(|w| WaveReport {
                index: w.index,
                twins: w.twins.len(),
                acknowledged: 0,
                rejected: 0,
                pending: 0,
                state: if r.written.is_some_and(|last| w.index < last) {
                    WaveState::Passed
                } else {
                    WaveState::NotStarted
                },
                polls: 0,
                gets: 0,
                query_pages: 0,
            })
            .collect(),
        halted: None,
        rejected: Vec::new(),
        pending: Vec::new(),
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut written: Vec<Written<'_>> = Vec::new();
    let mut passed = true;
    if let Some(last) = r.written {
        ex.note(format!(
            "Rollout {} continues: the twins' ledgers say wave {last} of {waves} was the last one written.",
            twinops_core::render::text::short_id(r)
        ));
    }
    for w in r.waves.iter().filter(|w| w.index >= start) {
        if ex.stopped() {
            passed = false;
            break;
        }
        let continuing = r.written == Some(w.index);
        // Continuing: what is left of every wave up to the last one written goes out first.
        let twins: Vec<&TwinAddress> = if continuing {
            r.waves
                .iter()
                .filter(|v| v.index <= w.index)
                .flat_map(|v| &v.twins)
                .collect()
        } else {
            w.twins.iter().collect()
        };
        let items: Vec<(&Change, &UpdateTwin)> = twins
            .iter()
            .filter_map(|a| changes.get(a))
            .map(|(c, u)| (*c, *u))
            .collect();
        let mut gate_items: Vec<Item> = Vec::new();
        if !items.is_empty() {
            ex.note(format!(
                "Rollout wave {} of {waves}: writing {} twin(s)...",
                w.index,
                items.len()
            ));
            ex.reporter.event(Event::Phase {
                name: format!("rollout wave {}", w.index),
                items: items.len(),
            });
        }
        // Written with the executor's concurrency, in wave order, under the 412 rule.
        let results: Vec<_> = stream::iter(items.into_iter().map(|(c, u)| async move {
            let (o, after) = if ex.stopped() {
                (outcome(c, Status::Skipped, "interrupted"), None)
            } else {
                twin::patch_etag(ex, c, u).await
            };
            (c, u, ex.done(o), after)
        }))
        .buffered(ex.options.concurrency.max(1))
        .collect()
        .await;
        for (c, u, o, after) in results {
            if matches!(o.status, Status::Applied | Status::Unchanged) {
                gate_items.push(Item {
                    address: u.address.clone(),
                    keys: Some(rollout::gated_keys(u)),
                    expect: u.target.desired.clone(),
                    version: after.as_ref().map(|a| a.desired_version),
                    answer: Ack::Pending,
                });
            }
            if o.status == Status::Applied {
                written.push(Written {
                    change: c,
                    update: u,
                    etag: after.map(|a| a.etag),
                    at: outcomes.len(),
                });
            }
            outcomes.push(o);
        }
        if continuing && !resume {
            // The twins an earlier run wrote in this wave: their gate is checked again.
            gate_items.extend(
                w.twins
                    .iter()
                    .filter(|a| !changes.contains_key(a))
                    .map(|a| Item {
                        address: a.clone(),
                        keys: None,
                        expect: JsonMap::new(),
                        version: None,
                        answer: Ack::Pending,
                    }),
            );
        }
        let state = &mut report.waves[w.index];
        state.state = WaveState::Written;
        if ex.stopped() {
            passed = false;
            break;
        }
        ex.note(format!(
            "Rollout wave {} of {waves}: waiting up to {} for {} twin(s) to acknowledge...",
            w.index,
            twinops_core::render::text::duration(r.timeout),
            gate_items.len()
        ));
        let mut cost = Cost::default();
        let gated = wait_gate(ex, &mut gate_items, r, &mut cost).await;
        let state = &mut report.waves[w.index];
        state.polls = cost.polls;
        state.gets = cost.gets;
        state.query_pages = cost.query_pages;
        let (gate, tally) = match gated {
            Ok(g) => g,
            Err(e) => {
                report.halted = Some(HaltReport {
                    wave: w.index,
                    reason: "unreadable".into(),
                    message: format!(
                        "rollout halted at wave {} of {waves}: its gate could not be read: {}",
                        w.index,
                        e.chain()
                    ),
                });
                passed = false;
                break;
            }
        };
        let state = &mut report.waves[w.index];
        state.acknowledged = tally.acknowledged;
        state.rejected = tally.rejected;
        state.pending = tally.pending;
        match gate {
            Gate::Passed => {
                state.state = WaveState::Passed;
                ex.note(format!(
                    "Rollout wave {} of {waves} passed: {} acknowledged, {} rejected, {} pending.",
                    w.index, tally.acknowledged, tally.rejected, tally.pending
                ));
                let last = w.index + 1 == waves;
                // `--resume` accepted the wave: the operator decided, there is nothing to bake.
                let accepted = continuing && resume;
                if !last && !accepted && !r.bake.is_zero() {
                    ex.note(format!(
                        "Baking {} before wave {}...",
                        twinops_core::render::text::duration(r.bake),
                        w.index + 1
                    ));
                    sleep_unless_stopped(ex, r.bake).await;
                }
            }
            Gate::Waiting => {
                // Interrupted while waiting: the wave stays written, undecided.
                passed = false;
                break;
            }
            Gate::Failed(why) => {
                state.state = WaveState::Failed;
                report.rejected = gate_items
                    .iter()
                    .filter_map(|i| match &i.answer {
                        Ack::Rejected { ad } => Some(gate_twin(&i.address, ad.clone())),
                        _ => None,
                    })
                    .collect();
                report.pending = gate_items
                    .iter()
                    .filter(|i| i.answer == Ack::Pending)
                    .map(|i| gate_twin(&i.address, None))
                    .collect();
                report.halted = Some(halt_report(r, w.index, why, &tally));
                passed = false;
                break;
            }
        }
    }
    if report.halted.is_some() && r.on_halt == OnHalt::Revert {
        revert(ex, &written, &mut outcomes).await;
    }
    Delivery {
        outcomes,
        report,
        passed,
    }
}

fn gate_twin(a: &TwinAddress, ad: Option<String>) -> GateTwin {
    GateTwin {
        device_id: a.device.to_string(),
        module_id: a.module_id().map(str::to_string),
        ad,
    }
}

/// `rollout halted at wave K of W: …`, with what to do next.
fn halt_report(r: &Rollout, wave: usize, why: Halted, t: &Tally) -> HaltReport {
    let waves = r.waves.len();
    let (reason, what) = match why {
        Halted::Rejected => (
            "rejected",
            format!(
                "{} of {} twin(s) rejected the change (more than halt.rejected {})",
                t.rejected,
                t.total(),
                r.halt.rejected
            ),
        ),
        Halted::Pending => (
            "pending",
            format!(
                "{} of {} twin(s) had not acknowledged after {} (more than halt.pending {})",
                t.pending,
                t.total(),
                twinops_core::render::text::duration(r.timeout),
                r.halt.pending
            ),
        ),
    };
    let next = match r.on_halt {
        OnHalt::Stop => {
            "no later wave was written; fix the value in the manifests, or run apply again once the devices acknowledge (apply --resume accepts the wave as it stands)"
        }
        OnHalt::Revert => {
            "no later wave was written, and the twins this run wrote were written back to their old values"
        }
    };
    HaltReport {
        wave,
        reason: reason.into(),
        message: format!("rollout halted at wave {wave} of {waves}: {what}; {next}"),
    }
}

/// What a gate's reads cost.
#[derive(Debug, Default)]
pub(super) struct Cost {
    pub polls: usize,
    pub gets: usize,
    pub query_pages: usize,
}

/// Polls a written wave until its gate decides, the timeout passes or the run is interrupted
/// ([`Gate::Waiting`]). Only twins still pending are read again.
async fn wait_gate(
    ex: &Executor<'_>,
    items: &mut [Item],
    r: &Rollout,
    cost: &mut Cost,
) -> Result<(Gate, Tally), Error> {
    let started = Instant::now();
    let mut interval = Duration::from_millis(250);
    loop {
        poll(ex.hub, items, Some(&r.id), ex.options.concurrency, cost).await?;
        let answers: Vec<Ack> = items.iter().map(|i| i.answer.clone()).collect();
        let timed_out = started.elapsed() >= r.timeout;
        let tally = Tally::of(&answers);
        match rollout::gate(&answers, &r.halt, timed_out) {
            Gate::Waiting => {}
            decided => return Ok((decided, tally)),
        }
        if ex.stopped() {
            return Ok((Gate::Waiting, tally));
        }
        let left = r.timeout.saturating_sub(started.elapsed());
        sleep_unless_stopped(ex, interval.min(left)).await;
        interval = (interval * 2).min(Duration::from_secs(5));
    }
}

/// Sleeps for `d`, waking early when the run is interrupted.
async fn sleep_unless_stopped(ex: &Executor<'_>, d: Duration) {
    let until = Instant::now() + d;
    while !ex.stopped() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
}

/// Classifies one polled twin.
fn classify(item: &Item, id: Option<&Digest>, seen: &ObservedTwin) -> Ack {
    // A query row from before the write (the query index lags) says nothing about it yet.
    if item.version.is_some_and(|v| seen.desired_version < v) {
        return Ack::Pending;
    }
    let keys = match &item.keys {
        Some(k) => k.clone(),
        None => match ledger::read(&seen.tags) {
            ledger::Found::Ledger(ledger::Ledger {
                rollout: Some(mark),
                ..
            }) if Some(&mark.id) == id => mark.desired,
            // Rewritten since by someone else: not this rollout's to wait for.
            _ => BTreeSet::new(),
        },
    };
    rollout::answer(&keys, &item.expect, seen)
}

/// Reads the open (pending) items once: one GET each when `items` (the whole wave, decided ones
/// included) is small, else paged queries over `IN` lists of the open ones' IDs (about one request
/// per 100 twins). Deciding on the whole set keeps a large wave on queries to its end, when the
/// few twins still pending fit in one page. `id` is the rollout whose marks name the keys of items
/// without their own.
pub(super) async fn poll(
    hub: &Hub,
    items: &mut [Item],
    id: Option<&Digest>,
    concurrency: usize,
    cost: &mut Cost,
) -> Result<(), Error> {
    let by_query = items.len() > GATE_TARGETED_MAX;
    let open: Vec<usize> = (0..items.len())
        .filter(|i| items[*i].answer == Ack::Pending)
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    cost.polls += 1;
    // IDs with a quote cannot go into a query string literal as written: those are read by GET.
    let quotable = |a: &TwinAddress| !a.to_string().contains('\'');
    let (queried, targeted): (Vec<usize>, Vec<usize>) = if by_query {
        open.into_iter().partition(|i| quotable(&items[*i].address))
    } else {
        (Vec::new(), open)
    };
    let seen: Vec<(usize, Option<ObservedTwin>)> = stream::iter(targeted.into_iter().map(|i| {
        let a = items[i].address.clone();
        async move {
            match hub.observed_twin(a.device.as_str(), a.module_id()).await {
                Ok(t) => Ok((i, Some(t))),
                Err(e) if e.is_not_found() => Ok((i, None)),
                Err(e) => Err(e),
            }
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .try_collect()
    .await?;
    cost.gets += seen.len();
    for (i, t) in seen {
        if let Some(t) = t {
            items[i].answer = classify(&items[i], id, &t);
        }
    }
    if queried.is_empty() {
        return Ok(());
    }
    let by_address: HashMap<TwinAddress, usize> = queried
        .iter()
        .map(|i| (items[*i].address.clone(), *i))
        .collect();
    let mut rows: Vec<(TwinAddress, ObservedTwin)> = Vec::new();
    for sql in queries(queried.iter().map(|i| &items[*i].address)) {
        hub.query_all(&sql, crate::hub::read::QUERY_PAGE_REQUEST, |page| {
            cost.query_pages += 1;
            for v in page {
                let t = observe::row(v)?;
                let device = observe::device_id(&t.device_id)?;
                let address = match t.module_id.as_deref().filter(|m| !m.is_empty()) {
                    Some(m) => TwinAddress::module(device, observe::module_id(m)?),
                    None => TwinAddress::device(device),
                };
                rows.push((address, observe::twin(&t)?));
            }
            Ok(())
        })
        .await?;
    }
    for (address, t) in rows {
        if let Some(&i) = by_address.get(&address) {
            items[i].answer = classify(&items[i], id, &t);
        }
    }
    Ok(())
}

/// The queries that read these twins: device twins by `deviceId IN [...]`, module twins by the
/// same lists over `devices.modules` (the plan's own `IN` lists, under IoT Hub's query size limit).
/// A module query returns every module of those devices; the caller keeps the asked ones.
fn queries<'a>(twins: impl Iterator<Item = &'a TwinAddress>) -> Vec<String> {
    let mut devices: BTreeSet<&twinops_core::model::DeviceId> = BTreeSet::new();
    let mut with_modules: BTreeSet<&twinops_core::model::DeviceId> = BTreeSet::new();
    for a in twins {
        match a.module {
            None => devices.insert(&a.device),
            Some(_) => with_modules.insert(&a.device),
        };
    }
    let devices: Vec<_> = devices.into_iter().collect();
    let with_modules: Vec<_> = with_modules.into_iter().collect();
    let mut out = Vec::new();
    if !devices.is_empty() {
        out.extend(read::in_queries(read::IN_PREFIX_DEVICES, &devices));
    }
    if !with_modules.is_empty() {
        out.extend(read::in_queries(read::IN_PREFIX_MODULES, &with_modules));
    }
    out
}

/// Writes every twin this run wrote back to its plan `base` values under the 412 rule.
async fn revert(ex: &Executor<'_>, written: &[Written<'_>], outcomes: &mut [Outcome]) {
    if written.is_empty() {
        return;
    }
    ex.note(format!(
        "on_halt: revert: writing {} twin(s) back to the values they had before this run...",
        written.len()
    ));
    ex.reporter.event(Event::Phase {
        name: "rollout revert".into(),
        items: written.len(),
    });
    let reverted: Vec<(usize, Outcome)> = stream::iter(written.iter().map(|w| async move {
        // The etag of our write; a stale one (the device reported since) costs one re-read.
        let etag = w.etag.clone().unwrap_or_else(|| w.update.if_match.clone());
        let o = match rollout::revert(w.update, etag) {
            Err(why) => outcome(
                w.change,
                Status::Failed,
                format!("written by the rollout; not reverted: {why}"),
            ),
            Ok(back) => {
                let (o, _) = twin::patch_etag(ex, w.change, &back).await;
                match o.status {
                    Status::Applied | Status::Unchanged => {
                        outcome(w.change, Status::Reverted, "written back to its old values")
                    }
                    Status::Conflict => {
                        let mut c = outcome(
                            w.change,
                            Status::Conflict,
                            "written by the rollout, then changed by someone else; not reverted",
                        );
                        c.keys = o.keys;
                        c
                    }
                    _ => outcome(
                        w.change,
                        Status::Failed,
                        format!("written by the rollout; reverting failed: {}", o.detail),
                    ),
                }
            }
        };
        (w.at, ex.done(o))
    }))
    .buffered(ex.options.concurrency.max(1))
    .collect()
    .await;
    for (at, o) in reverted {
        outcomes[at] = o;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use twinops_core::model::{DeviceId, ModuleId};

    fn a(text: &str) -> TwinAddress {
        match text.split_once('/') {
            Some((d, m)) => {
                TwinAddress::module(DeviceId::new(d).unwrap(), ModuleId::new(m).unwrap())
            }
            None => TwinAddress::device(DeviceId::new(text).unwrap()),
        }
    }

    #[test]
    fn gate_queries_read_device_and_module_twins_by_the_plans_id_lists() {
        let twins = [a("d1"), a("d2"), a("d1/m1"), a("d2/m1"), a("d2/m2")];
        assert_eq!(
            queries(twins.iter()),
            [
                "SELECT * FROM devices WHERE deviceId IN ['d1', 'd2']",
                "SELECT * FROM devices.modules WHERE deviceId IN ['d1', 'd2']",
            ]
        );
        assert_eq!(
            queries([a("d3/m1")].iter()),
            ["SELECT * FROM devices.modules WHERE deviceId IN ['d3']"]
        );
    }
}
