//! Delivering a rollout (SPEC §11) as a pure state machine: the executor asks [`Delivery::next`]
//! what to do (write a wave, poll its gate, sleep, revert, stop), does it against the hub, and
//! hands back what it saw ([`Delivery::wrote`], [`Delivery::polled`], [`Delivery::unreadable`]).
//! Every decision — which twins a wave writes, what its gate waits for, when it passes, fails or
//! times out, the bake, the halt and its message, the revert — is made here, from those
//! observations and the time the executor passes in; nothing here reads a clock or the hub.
//!
//! [`GateItem`] and [`Cadence`] are shared with `apply --wait`, which waits for twins the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::progress::{
    GateTwin, HaltReason, HaltReport, RolloutEvent, RolloutReport, WaveReport, WaveState,
};
use super::{Ack, Gate, Halted, Rollout, Tally};
use crate::model::{Address, Digest, JsonMap, ObservedTwin, OnHalt, TwinAddress};
use crate::plan::ledger;

/// The one polling cadence of gates, `apply --wait` and hub jobs: 250 ms, doubling to 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    next: Duration,
}

impl Cadence {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Cadence {
        Cadence {
            next: Cadence::FIRST,
        }
    }

    /// The wait before the next poll, at most `left` (what remains of a timeout).
    pub fn next(&mut self, left: Duration) -> Duration {
        let wait = self.next.min(left);
        self.next = (self.next * 2).min(Cadence::MAX);
        wait
    }
}

impl Default for Cadence {
    fn default() -> Cadence {
        Cadence::new()
    }
}

/// One twin a gate (or `apply --wait`) waits for, and what its device answered so far.
#[derive(Debug, Clone, PartialEq)]
pub struct GateItem {
    pub address: TwinAddress,
    /// The changed desired keys; `None` for a twin an earlier run wrote, whose keys its ledger's
    /// rollout mark names (read when it is polled).
    pub keys: Option<BTreeSet<String>>,
    /// The values written (a plan's `target.desired`), to tell someone else's later value apart.
    pub expect: JsonMap,
    /// The desired `$version` the write produced: a query row older than that is stale.
    pub version: Option<i64>,
    pub answer: Ack,
    /// Read for the wave's counts only: a twin an earlier run wrote in a wave `--resume` accepts
    /// as it stands. Its answer does not decide the gate.
    pub accepted: bool,
}

impl GateItem {
    /// A twin whose desired values `expect` were written (or are wanted) and are waited for.
    pub fn new(address: TwinAddress, expect: JsonMap, version: Option<i64>) -> GateItem {
        GateItem {
            address,
            keys: Some(expect.keys().cloned().collect()),
            expect,
            version,
            answer: Ack::Pending,
            accepted: false,
        }
    }

    pub fn is_open(&self) -> bool {
        self.answer == Ack::Pending
    }

    /// Classifies the twin as read now. `rollout` is the rollout whose mark names the keys of an
    /// item without its own.
    pub fn observe(&mut self, rollout: Option<&Digest>, seen: &ObservedTwin) {
        // A query row from before the write (the query index lags) says nothing about it yet.
        if self.version.is_some_and(|v| seen.desired_version < v) {
            self.answer = Ack::Pending;
            return;
        }
        let keys = match &self.keys {
            Some(k) => k.clone(),
            // The entry whose mark is this rollout's; none when the twin was rewritten since by
            // someone else: then it is not this rollout's to wait for.
            None => match ledger::read(&seen.tags) {
                ledger::Found::Ledger(l) => l
                    .owners
                    .into_values()
                    .filter_map(|e| e.rollout)
                    .find(|m| Some(&m.id) == rollout)
                    .map(|m| m.desired)
                    .unwrap_or_default(),
                _ => BTreeSet::new(),
            },
        };
        self.answer = super::answer(&keys, &self.expect, seen);
    }
}

/// What writing one twin of a wave did.
#[derive(Debug, Clone, PartialEq)]
pub struct Wrote {
    pub address: TwinAddress,
    /// Written now (it can be reverted).
    pub written: bool,
    /// Written or at the target already: its gate waits for it.
    pub gated: bool,
    /// The desired `$version` after the write, when the hub answered it.
    pub desired_version: Option<i64>,
}

/// What a gate's reads cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub polls: usize,
    pub gets: usize,
    pub query_pages: usize,
}

/// What the executor does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Write these twins' planned updates (under the 412 rule), then call [`Delivery::wrote`].
    Write {
        wave: usize,
        twins: Vec<TwinAddress>,
    },
    /// Read the open items of [`Delivery::gate_mut`], then call [`Delivery::polled`] (or
    /// [`Delivery::unreadable`]).
    Poll,
    /// Sleep this long (waking early when interrupted), then ask again.
    Sleep(Duration),
    /// Write these twins back to their plan `base` values, then call [`Delivery::reverted`].
    Revert(Vec<TwinAddress>),
    /// Delivered (`passed`: every wave passed, so what runs after the waves may run).
    Done { passed: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Write the wave at this position of the rollout's waves.
    Write(usize),
    /// Waiting for [`Delivery::wrote`].
    Writing(usize),
    /// Poll the gate of this wave, which started at `since`.
    Poll {
        wave: usize,
        since: Duration,
    },
    /// Waiting for [`Delivery::polled`].
    Polling {
        wave: usize,
        since: Duration,
    },
    /// Revert the twins this run wrote.
    Revert,
    /// Waiting for [`Delivery::reverted`].
    Reverting,
    Done {
        passed: bool,
    },
}

/// A rollout being delivered.
#[derive(Debug)]
pub struct Delivery<'r> {
    rollout: &'r Rollout,
    /// The twins this plan writes (its rolled-out updates).
    planned: BTreeSet<TwinAddress>,
    resume: bool,
    state: State,
    /// A sleep asked for before the state's step (a gate's next poll, a bake).
    sleep: Option<Duration>,
    cadence: Cadence,
    gate: Vec<GateItem>,
    /// The twins this run wrote, for `on_halt: revert`.
    written: Vec<TwinAddress>,
    report: RolloutReport,
    events: Vec<RolloutEvent>,
}

impl<'r> Delivery<'r> {
    /// `planned` are the twins whose updates this plan holds; `resume` accepts the last wave an
    /// earlier run wrote as it stands (`apply --resume`).
    pub fn new(
        rollout: &'r Rollout,
        planned: impl IntoIterator<Item = TwinAddress>,
        resume: bool,
    ) -> Delivery<'r> {
        let report = RolloutReport {
            id: rollout.id.to_string(),
            waves: rollout
                .waves
                .iter()
                .map(|w| WaveReport {
                    index: w.index,
                    twins: w.twins.len(),
                    acknowledged: 0,
                    rejected: 0,
                    pending: 0,
                    state: if rollout.written.is_some_and(|last| w.index < last) {
                        WaveState::Passed
                    } else {
                        WaveState::NotStarted
                    },
                    earlier: rollout.written.is_some_and(|last| w.index < last),
                    polls: 0,
                    gets: 0,
                    query_pages: 0,
                })
                .collect(),
            halted: None,
            rejected: Vec::new(),
            pending: Vec::new(),
        };
        let mut events = Vec::new();
        if let Some(last) = rollout.written {
            events.push(RolloutEvent::Continues {
                id: rollout.id.to_string(),
                last,
                waves: rollout.waves.len(),
            });
        }
        Delivery {
            rollout,
            planned: planned.into_iter().collect(),
            resume,
            state: State::Write(rollout.written.unwrap_or(0)),
            sleep: None,
            cadence: Cadence::new(),
            gate: Vec::new(),
            written: Vec::new(),
            report,
            events,
        }
    }

    /// What to do next; `now` is the time since delivery began.
    pub fn next(&mut self, now: Duration) -> Step {
        if let Some(d) = self.sleep.take() {
            return Step::Sleep(d);
        }
        match self.state {
            State::Write(wave) if wave >= self.rollout.waves.len() => {
                self.state = State::Done { passed: true };
                Step::Done { passed: true }
            }
            State::Write(wave) => self.write(wave),
            State::Poll { wave, since } => {
                let since = if since == Duration::MAX { now } else { since };
                self.state = State::Polling { wave, since };
                Step::Poll
            }
            State::Revert => {
                self.state = State::Reverting;
                Step::Revert(self.written.clone())
            }
            State::Done { passed } => Step::Done { passed },
            // Waiting for an observation the executor did not hand back: nothing more to do.
            State::Writing(_) | State::Polling { .. } | State::Reverting => {
                self.state = State::Done { passed: false };
                Step::Done { passed: false }
            }
        }
    }

    fn write(&mut self, wave: usize) -> Step {
        let w = &self.rollout.waves[wave];
        // Continuing: what is left of every wave up to the last one written goes out first.
        let twins: Vec<TwinAddress> = if self.continuing(wave) {
            self.rollout
                .waves
                .iter()
                .filter(|v| v.index <= wave)
                .flat_map(|v| &v.twins)
                .filter(|a| self.planned.contains(*a))
                .cloned()
                .collect()
        } else {
            w.twins
                .iter()
                .filter(|a| self.planned.contains(*a))
                .cloned()
                .collect()
        };
        if !twins.is_empty() {
            self.events.push(RolloutEvent::Writing {
                wave,
                waves: self.rollout.waves.len(),
                twins: twins.len(),
            });
        }
        self.state = State::Writing(wave);
        Step::Write { wave, twins }
    }

    fn continuing(&self, wave: usize) -> bool {
        self.rollout.written == Some(wave)
    }

    /// What writing the wave did; its gate starts.
    pub fn wrote(&mut self, results: Vec<Wrote>, expect: impl Fn(&TwinAddress) -> GateItem) {
        let State::Writing(wave) = self.state else {
            return;
        };
        self.gate.clear();
        for r in results {
            if r.gated {
                let mut item = expect(&r.address);
                item.version = r.desired_version;
                self.gate.push(item);
            }
            if r.written {
                self.written.push(r.address);
            }
        }
        if self.continuing(wave) {
            // The twins an earlier run wrote in this wave: their gate is checked again, or, with
            // `--resume`, read for the wave's counts only (the operator accepted them as they are).
            let accepted = self.resume;
            let w = &self.rollout.waves[wave];
            self.gate.extend(
                w.twins
                    .iter()
                    .filter(|a| !self.planned.contains(*a))
                    .map(|a| GateItem {
                        address: a.clone(),
                        keys: None,
                        expect: JsonMap::new(),
                        version: None,
                        answer: Ack::Pending,
                        accepted,
                    }),
            );
        }
        self.report.waves[wave].state = WaveState::Written;
        self.events.push(RolloutEvent::Waiting {
            wave,
            waves: self.rollout.waves.len(),
            timeout: self.rollout.timeout,
            twins: self.gate.len(),
        });
        self.cadence = Cadence::new();
        // The gate's clock starts at its first poll.
        self.state = State::Poll {
            wave,
            since: Duration::MAX,
        };
    }

    /// The gate's items, to read the open ones.
    pub fn gate_mut(&mut self) -> &mut [GateItem] {
        &mut self.gate
    }

    /// The rollout whose marks name the keys of items without their own.
    pub fn id(&self) -> &Digest {
        &self.rollout.id
    }

    /// The gate was read at `now` (the items' answers are updated); decides the wave.
    pub fn polled(&mut self, now: Duration, cost: Cost) {
        let State::Polling { wave, since } = self.state else {
            return;
        };
        let state = &mut self.report.waves[wave];
        state.polls += cost.polls;
        state.gets += cost.gets;
        state.query_pages += cost.query_pages;
        // The counts cover every twin read; the decision only those not accepted as they stand.
        let all: Vec<Ack> = self.gate.iter().map(|i| i.answer.clone()).collect();
        let deciding: Vec<Ack> = self
            .gate
            .iter()
            .filter(|i| !i.accepted)
            .map(|i| i.answer.clone())
            .collect();
        let tally = Tally::of(&all);
        let elapsed = now.saturating_sub(since);
        let timed_out = elapsed >= self.rollout.timeout;
        state.acknowledged = tally.acknowledged;
        state.rejected = tally.rejected;
        state.pending = tally.pending;
        match super::gate(&deciding, &self.rollout.halt, timed_out) {
            Gate::Waiting => {
                let left = self.rollout.timeout.saturating_sub(elapsed);
                self.sleep = Some(self.cadence.next(left));
                self.state = State::Poll { wave, since };
            }
            Gate::Passed => self.passed(wave, tally),
            Gate::Failed(why) => self.failed(wave, why, &tally),
        }
    }

    fn passed(&mut self, wave: usize, tally: Tally) {
        let waves = self.rollout.waves.len();
        self.report.waves[wave].state = if self.continuing(wave) && self.resume {
            WaveState::Accepted
        } else {
            WaveState::Passed
        };
        self.events
            .push(RolloutEvent::Passed { wave, waves, tally });
        let last = wave + 1 == waves;
        // `--resume` accepted the wave: the operator decided, there is nothing to bake.
        let accepted = self.continuing(wave) && self.resume;
        if !last && !accepted && !self.rollout.bake.is_zero() {
            self.events.push(RolloutEvent::Baking {
                bake: self.rollout.bake,
                next: wave + 1,
            });
            self.sleep = Some(self.rollout.bake);
        }
        self.state = State::Write(wave + 1);
    }

    fn failed(&mut self, wave: usize, why: Halted, tally: &Tally) {
        self.report.waves[wave].state = WaveState::Failed;
        let twin = |i: &GateItem, ad| GateTwin {
            address: Address::Twin(i.address.clone()),
            ad,
        };
        self.report.rejected = self
            .gate
            .iter()
            .filter_map(|i| match &i.answer {
                Ack::Rejected { ad } => Some(twin(i, ad.clone())),
                _ => None,
            })
            .collect();
        self.report.pending = self
            .gate
            .iter()
            .filter(|i| i.is_open())
            .map(|i| twin(i, None))
            .collect();
        let (reason, what) = self.why(why, tally);
        self.halt(wave, reason, what);
    }

    /// The gate's twins could not be read (`error`: the client error's one line).
    pub fn unreadable(&mut self, error: &str) {
        let State::Polling { wave, .. } = self.state else {
            return;
        };
        self.halt(
            wave,
            HaltReason::Unreadable,
            format!("its gate could not be read: {error}"),
        );
    }

    fn why(&self, why: Halted, t: &Tally) -> (HaltReason, String) {
        let r = self.rollout;
        match why {
            Halted::Rejected => (
                HaltReason::Rejected,
                format!(
                    "{} of {} twin(s) rejected the change (more than halt.rejected {})",
                    t.rejected,
                    t.total(),
                    r.halt.rejected
                ),
            ),
            Halted::Pending => (
                HaltReason::Pending,
                format!(
                    "{} of {} twin(s) had not acknowledged after {} (more than halt.pending {})",
                    t.pending,
                    t.total(),
                    twinops_iothub::duration::format(r.timeout),
                    r.halt.pending
                ),
            ),
        }
    }

    /// Halts at `wave`: the report says why and what to do next; with `on_halt: revert` the
    /// twins this run wrote go back first.
    fn halt(&mut self, wave: usize, reason: HaltReason, what: String) {
        let r = self.rollout;
        let message = match reason {
            // An unreadable gate says what failed; there is nothing to advise beyond it.
            HaltReason::Unreadable => {
                format!("rollout halted at wave {wave} of {}: {what}", r.waves.len())
            }
            _ => {
                let next = match r.on_halt {
                    OnHalt::Stop => {
                        "no later wave was written; fix the value in the manifests, or run apply again once the devices acknowledge (apply --resume accepts the wave as it stands)"
                    }
                    OnHalt::Revert => {
                        "no later wave was written, and the twins this run wrote were written back to their old values"
                    }
                };
                format!(
                    "rollout halted at wave {wave} of {}: {what}; {next}",
                    r.waves.len()
                )
            }
        };
        self.report.halted = Some(HaltReport {
            wave,
            reason,
            message,
        });
        if r.on_halt == OnHalt::Revert && !self.written.is_empty() {
            self.events.push(RolloutEvent::Reverting {
                twins: self.written.len(),
            });
            self.state = State::Revert;
        } else {
            self.state = State::Done { passed: false };
        }
        self.sleep = None;
    }

    /// The twins of [`Step::Revert`] were written back (or not; their outcomes say so).
    pub fn reverted(&mut self) {
        self.state = State::Done { passed: false };
    }

    /// The run was interrupted: nothing more is written, and a written wave stays undecided.
    pub fn interrupt(&mut self) {
        self.sleep = None;
        self.state = State::Done { passed: false };
    }

    /// What happened since the last call, for the operator.
    pub fn events(&mut self) -> Vec<RolloutEvent> {
        std::mem::take(&mut self.events)
    }

    /// The report of the delivery so far.
    pub fn report(&self) -> &RolloutReport {
        &self.report
    }

    pub fn into_report(self) -> RolloutReport {
        self.report
    }
}

/// The rolled-out twins' planned values by address, for the gate items of written twins.
pub type Expected = BTreeMap<TwinAddress, JsonMap>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Halt, Share};
    use crate::plan::rollout::{Wave, WaveStep};
    use serde_json::json;

    fn a(t: &str) -> TwinAddress {
        t.parse().unwrap()
    }

    fn rollout(waves: &[&[&str]], on_halt: OnHalt, written: Option<usize>) -> Rollout {
        Rollout {
            id: Digest::from_sha256([7; 32]),
            waves: waves
                .iter()
                .enumerate()
                .map(|(index, twins)| Wave {
                    index,
                    step: WaveStep::First,
                    twins: twins.iter().map(|t| a(t)).collect(),
                })
                .collect(),
            bake: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            halt: Halt {
                rejected: Share::parse("0%").unwrap(),
                pending: Share::parse("0%").unwrap(),
            },
            on_halt,
            written,
        }
    }

    fn item(t: &TwinAddress) -> GateItem {
        GateItem::new(
            t.clone(),
            json!({"v": 2}).as_object().unwrap().clone(),
            None,
        )
    }

    fn wrote_all(d: &mut Delivery<'_>, twins: &[TwinAddress]) {
        let results = twins
            .iter()
            .map(|t| Wrote {
                address: t.clone(),
                written: true,
                gated: true,
                desired_version: Some(3),
            })
            .collect();
        d.wrote(results, item);
    }

    fn answer_all(d: &mut Delivery<'_>, answer: Ack) {
        for i in d.gate_mut() {
            i.answer = answer.clone();
        }
    }

    #[test]
    fn waves_are_written_gated_baked_and_done_in_order() {
        let r = rollout(&[&["d1"], &["d2", "d3"]], OnHalt::Stop, None);
        let all = [a("d1"), a("d2"), a("d3")];
        let mut d = Delivery::new(&r, all.clone(), false);
        let Step::Write { wave: 0, twins } = d.next(Duration::ZERO) else {
            panic!("wave 0 first")
        };
        assert_eq!(twins, [a("d1")]);
        wrote_all(&mut d, &twins);
        assert_eq!(d.next(Duration::ZERO), Step::Poll);
        d.polled(Duration::from_millis(10), Cost::default());
        // Pending, before the timeout: poll again after the cadence's first wait.
        assert_eq!(d.next(Duration::ZERO), Step::Sleep(Cadence::FIRST));
        assert_eq!(d.next(Duration::ZERO), Step::Poll);
        answer_all(&mut d, Ack::Acknowledged);
        d.polled(Duration::from_secs(1), Cost::default());
        assert_eq!(d.next(Duration::ZERO), Step::Sleep(Duration::from_secs(60)));
        let Step::Write { wave: 1, twins } = d.next(Duration::ZERO) else {
            panic!("wave 1 after the bake")
        };
        assert_eq!(twins, [a("d2"), a("d3")]);
        wrote_all(&mut d, &twins);
        assert_eq!(d.next(Duration::from_secs(100)), Step::Poll);
        answer_all(&mut d, Ack::Acknowledged);
        d.polled(Duration::from_secs(100), Cost::default());
        // The last wave passed: no bake after it.
        assert_eq!(d.next(Duration::ZERO), Step::Done { passed: true });
        let states: Vec<WaveState> = d.report().waves.iter().map(|w| w.state).collect();
        assert_eq!(states, [WaveState::Passed, WaveState::Passed]);
        let events = d.events();
        assert!(matches!(events[0], RolloutEvent::Writing { wave: 0, .. }));
        assert!(events.contains(&RolloutEvent::Baking {
            bake: Duration::from_secs(60),
            next: 1
        }));
    }

    #[test]
    fn a_silent_wave_halts_at_its_timeout_counted_from_the_first_poll() {
        let r = rollout(&[&["d1"], &["d2"]], OnHalt::Stop, None);
        let mut d = Delivery::new(&r, [a("d1"), a("d2")], false);
        let Step::Write { twins, .. } = d.next(Duration::ZERO) else {
            panic!()
        };
        wrote_all(&mut d, &twins);
        assert_eq!(d.next(Duration::from_secs(5)), Step::Poll);
        d.polled(Duration::from_secs(14), Cost::default());
        // 9 s into a 10 s timeout: the next wait is cut to what is left.
        assert_eq!(
            d.next(Duration::ZERO),
            Step::Sleep(Duration::from_millis(250))
        );
        assert_eq!(d.next(Duration::ZERO), Step::Poll);
        d.polled(Duration::from_secs(15), Cost::default());
        assert_eq!(d.next(Duration::ZERO), Step::Done { passed: false });
        let halted = d.report().halted.clone().unwrap();
        assert_eq!(halted.reason, HaltReason::Pending);
        assert!(
            halted.message.starts_with(
                "rollout halted at wave 0 of 2: 1 of 1 twin(s) had not acknowledged after 10s"
            ),
            "{}",
            halted.message
        );
        assert_eq!(d.report().pending.len(), 1);
        assert_eq!(d.report().waves[1].state, WaveState::NotStarted);
    }

    #[test]
    fn a_rejection_with_revert_writes_back_what_this_run_wrote() {
        let r = rollout(&[&["d1", "d2"], &["d3"]], OnHalt::Revert, None);
        let mut d = Delivery::new(&r, [a("d1"), a("d2"), a("d3")], false);
        let Step::Write { twins, .. } = d.next(Duration::ZERO) else {
            panic!()
        };
        wrote_all(&mut d, &twins);
        assert_eq!(d.next(Duration::ZERO), Step::Poll);
        d.gate_mut()[1].answer = Ack::Rejected {
            ad: Some("out of range".into()),
        };
        d.polled(Duration::ZERO, Cost::default());
        assert_eq!(d.next(Duration::ZERO), Step::Revert(vec![a("d1"), a("d2")]));
        d.reverted();
        assert_eq!(d.next(Duration::ZERO), Step::Done { passed: false });
        let report = d.into_report();
        assert_eq!(report.halted.unwrap().reason, HaltReason::Rejected);
        assert_eq!(report.rejected[0].ad.as_deref(), Some("out of range"));
    }

    #[test]
    fn a_continued_rollout_writes_what_is_left_and_checks_the_earlier_runs_twins_again() {
        // An earlier run wrote wave 0 (d1); this plan still has d2 of wave 0 and d3 of wave 1.
        let r = rollout(&[&["d1", "d2"], &["d3"]], OnHalt::Stop, Some(0));
        let mut d = Delivery::new(&r, [a("d2"), a("d3")], false);
        assert!(matches!(
            d.events()[0],
            RolloutEvent::Continues { last: 0, .. }
        ));
        let Step::Write { wave: 0, twins } = d.next(Duration::ZERO) else {
            panic!()
        };
        assert_eq!(twins, [a("d2")]);
        wrote_all(&mut d, &twins);
        let gated: Vec<(String, bool)> = d
            .gate_mut()
            .iter()
            .map(|i| (i.address.to_string(), i.keys.is_none()))
            .collect();
        assert_eq!(gated, [("d2".into(), false), ("d1".into(), true)]);
        // With --resume the earlier twins are accepted as they stand.
        let mut resumed = Delivery::new(&r, [a("d2"), a("d3")], true);
        let Step::Write { twins, .. } = resumed.next(Duration::ZERO) else {
            panic!()
        };
        wrote_all(&mut resumed, &twins);
        // ... read for the counts, never deciding the gate: a rejection the operator accepted stays
        // counted, and the wave says it was accepted, not passed.
        let accepted: Vec<(String, bool)> = resumed
            .gate_mut()
            .iter()
            .map(|i| (i.address.to_string(), i.accepted))
            .collect();
        assert_eq!(accepted, [("d2".into(), false), ("d1".into(), true)]);
        assert_eq!(resumed.next(Duration::ZERO), Step::Poll);
        for i in resumed.gate_mut() {
            i.answer = if i.accepted {
                Ack::Rejected {
                    ad: Some("out of range".into()),
                }
            } else {
                Ack::Acknowledged
            };
        }
        resumed.polled(Duration::ZERO, Cost::default());
        assert!(matches!(
            resumed.next(Duration::ZERO),
            Step::Write { wave: 1, .. }
        ));
        let w = &resumed.into_report().waves[0];
        assert_eq!(
            (w.state, w.acknowledged, w.rejected),
            (WaveState::Accepted, 1, 1)
        );
    }

    #[test]
    fn an_interrupted_delivery_stops_with_its_wave_written() {
        let r = rollout(&[&["d1"], &["d2"]], OnHalt::Revert, None);
        let mut d = Delivery::new(&r, [a("d1"), a("d2")], false);
        let Step::Write { twins, .. } = d.next(Duration::ZERO) else {
            panic!()
        };
        wrote_all(&mut d, &twins);
        d.interrupt();
        assert_eq!(d.next(Duration::ZERO), Step::Done { passed: false });
        assert_eq!(d.report().waves[0].state, WaveState::Written);
        assert!(d.report().halted.is_none(), "an interruption is no halt");
    }

    #[test]
    fn the_cadence_doubles_to_five_seconds_and_never_passes_the_timeout() {
        let mut c = Cadence::new();
        let waits: Vec<u128> = (0..7).map(|_| c.next(Duration::MAX).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(c.next(Duration::from_millis(30)), Duration::from_millis(30));
    }
}
