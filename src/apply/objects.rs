//! Managed objects in apply (SPEC §16): creates and updates once the identities and twins are
//! written, one at a time (IoT Hub shapes configuration writes to about one a second), and deletes
//! last — a replaced object only once its replacement is applied to every device it targets, so a
//! targeted device is never left without one between two evaluations.

use std::time::{Duration, Instant};

use super::{Executor, hub_failed_outcome};
use crate::hub::{Error, ObjectWrite};
use twinops_core::model::{Address, ConfigurationId, ObjectKind, ObservedObject};
use twinops_core::plan::objects::ObjectChange;
use twinops_core::plan::rollout::delivery::Cadence;
use twinops_core::plan::{Kind, Plan};
use twinops_core::report::{Doing, Outcome, Reason, Status};

/// The longest a replaced object waits for its replacement to be applied before it is kept.
pub(crate) const REPLACEMENT_WAIT: Duration = Duration::from_secs(600);

/// The report address of an object.
pub(crate) fn address(kind: ObjectKind, id: &str) -> Address {
    // Hub IDs and planned IDs follow IoT Hub's rule; one that does not still gets a report line.
    let id = ConfigurationId::new(id).unwrap_or_else(|_| {
        ConfigurationId::new(id.to_ascii_lowercase().replace(' ', "-")).unwrap_or_else(|_| {
            ConfigurationId::new("invalid-id").unwrap_or_else(|_| unreachable!("a valid ID"))
        })
    });
    match kind {
        ObjectKind::Configuration => Address::Configuration(id),
        ObjectKind::Deployment => Address::Deployment(id),
    }
}

fn outcome(c: &ObjectChange, status: Status, reason: Option<Reason>) -> Outcome {
    Outcome {
        kind: Kind::of_object(c),
        address: address(c.object(), c.id()),
        status,
        reason,
        keys: Vec::new(),
    }
}

fn written(c: &ObjectChange, w: Result<ObjectWrite, Error>) -> Outcome {
    match w {
        Ok(ObjectWrite::Written) => outcome(c, Status::Applied, None),
        Ok(ObjectWrite::Existed) => outcome(c, Status::Unchanged, Some(Reason::ExistedWithContent)),
        Ok(ObjectWrite::Gone) => outcome(c, Status::Unchanged, Some(Reason::AlreadyGone)),
        Ok(ObjectWrite::Changed) => outcome(c, Status::Conflict, Some(Reason::ObjectChanged)),
        Err(e) => hub_failed_outcome(outcome(c, Status::Failed, None), Doing::Writing, &e),
    }
}

/// Creates (replacements first, in plan order) and in-place updates.
pub(super) async fn writes(ex: &Executor<'_>, plan: &Plan) -> Vec<Outcome> {
    let mut out = Vec::new();
    for c in plan
        .objects
        .changes
        .iter()
        .filter(|c| !matches!(c, ObjectChange::Delete { .. }))
    {
        if ex.stopped() {
            break;
        }
        out.push(ex.done(written(c, ex.hub.write_object(c).await)));
    }
    out
}

/// Deletes: prune deletes at once; a replaced object once its replacement (written now, or found
/// existing) is applied to every device it targets, else kept and reported.
pub(super) async fn deletes(ex: &Executor<'_>, plan: &Plan, wrote: &[Outcome]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for c in plan
        .objects
        .changes
        .iter()
        .filter(|c| matches!(c, ObjectChange::Delete { .. }))
    {
        if ex.stopped() {
            break;
        }
        if let ObjectChange::Delete {
            replaced_by: Some(new),
            ..
        } = c
        {
            let created = wrote.iter().find(|o| o.address == address(c.object(), new));
            let target = plan
                .objects
                .changes
                .iter()
                .find(|x| x.id() == new)
                .and_then(ObjectChange::target)
                .unwrap_or_default();
            let ready = match created.map(|o| o.status) {
                Some(Status::Failed | Status::Conflict) => false,
                _ => applied_within(ex, c.object(), new, target, REPLACEMENT_WAIT).await,
            };
            if !ready {
                out.push(ex.done(outcome(
                    c,
                    Status::Skipped,
                    Some(Reason::ReplacementNotApplied(new.clone())),
                )));
                continue;
            }
        }
        out.push(ex.done(written(c, ex.hub.write_object(c).await)));
    }
    out
}

/// Applied to every device it targets, once the hub counts every device its target selects
/// (`expected`): right after a write the hub counts 0 of 0, not evaluated yet.
pub(crate) fn is_applied(o: &ObservedObject, expected: u64) -> bool {
    matches!((o.counts.targeted, o.counts.applied), (Some(t), Some(a)) if t >= expected && a >= t)
}

/// Polls the object until it is applied, `limit` passes or the run is stopped.
async fn applied_within(
    ex: &Executor<'_>,
    kind: ObjectKind,
    id: &str,
    target: &str,
    limit: Duration,
) -> bool {
    let Ok(expected) = ex.hub.expected_targets(kind, target).await else {
        return false;
    };
    let started = Instant::now();
    let mut cadence = Cadence::new();
    loop {
        if let Ok(Some(o)) = ex.hub.object(id).await
            && is_applied(&o, expected)
        {
            return true;
        }
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() || ex.options.stop.is_cancelled() {
            return false;
        }
        ex.sleep(cadence.next(left)).await;
    }
}
