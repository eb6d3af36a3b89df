//! `apply --wait[=DURATION]`: after applying, wait until the declared desired values of the twins in
//! scope are acknowledged by their devices (reported equal, or the Plug and Play ack form, each key
//! at its own version) — the ones this run wrote and the ones earlier runs wrote that are still not
//! acknowledged (SPEC §18) — a device rejects one, or the time runs out. The twins are read with the rollout gate's poll and classified by
//! the same rule, at the one cadence (`twinops_core::plan::rollout::delivery`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::hub::{Error, Hub, read};
use twinops_core::model::{JsonMap, TwinAddress};
use twinops_core::plan::drift::Ack;
use twinops_core::plan::rollout::delivery::{Cadence, GateItem};
use twinops_core::plan::{Kind, Plan, is_sensitive_digest};
use twinops_core::report::{Event, Report, Reporter, WaitReport, Waited, WaitedObject};

/// The twins whose desired values the apply wrote (or found at the target), with the values to
/// see reported back; looked up by address in the report, never scanned.
pub(crate) fn pending(plan: &Plan, report: &Report) -> Vec<GateItem> {
    let took_effect: HashMap<(Kind, &TwinAddress), bool> = report
        .outcomes
        .iter()
        .filter_map(|o| Some(((o.kind, o.address.twin()?), o.took_effect())))
        .collect();
    let mut out = Vec::new();
    for c in &plan.changes {
        if !matches!(
            c.kind(),
            Kind::CreateDevice
                | Kind::CreateModule
                | Kind::UpdateDeviceTwin
                | Kind::UpdateModuleTwin
        ) {
            continue;
        }
        let address = c.address();
        if took_effect.get(&(c.kind(), &address)) != Some(&true) {
            continue;
        }
        // Desired values only; keys being removed and sensitive digests cannot be compared.
        let desired: JsonMap = c
            .wanted()
            .map(|w| {
                w.desired
                    .into_iter()
                    .filter(|(_, v)| !v.is_null() && !is_sensitive_digest(v))
                    .collect()
            })
            .unwrap_or_default();
        if !desired.is_empty() {
            out.push(GateItem::new(address, desired, None));
        }
    }
    out
}

/// What `--wait` waits for: the twins the run wrote ([`pending`]), then the unchanged twins the
/// plan found unacknowledged (`Plan::awaiting`).
pub(crate) fn items(plan: &Plan, report: &Report) -> Vec<GateItem> {
    let mut items = pending(plan, report);
    let written: std::collections::HashSet<TwinAddress> =
        items.iter().map(|i| i.address.clone()).collect();
    items.extend(
        plan.awaiting
            .iter()
            .filter(|a| !written.contains(&a.address))
            .map(|a| GateItem::new(a.address.clone(), a.expect.clone(), None)),
    );
    items
}

/// A managed object `--wait` waits for: its kind and hub ID.
pub(crate) struct ObjectItem {
    pub kind: twinops_core::model::ObjectKind,
    pub id: String,
    pub target: String,
}

/// The objects the run created or updated (and found in place): what `--wait` waits to see
/// applied (and, for deployments, reported by the edge agents).
pub(crate) fn objects(plan: &Plan, report: &Report) -> Vec<ObjectItem> {
    use twinops_core::plan::objects::ObjectChange;
    // Looked up by address: a report holds an outcome per twin as well.
    let took_effect: std::collections::HashSet<&twinops_core::model::Address> = report
        .outcomes
        .iter()
        .filter(|o| o.address.twin().is_none() && o.took_effect())
        .map(|o| &o.address)
        .collect();
    plan.objects
        .changes
        .iter()
        .filter(|c| !matches!(c, ObjectChange::Delete { .. }))
        .filter(|c| took_effect.contains(&super::objects::address(c.object(), c.id())))
        .map(|c| ObjectItem {
            kind: c.object(),
            id: c.id().to_string(),
            target: c.target().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Polls until everything is acknowledged (and every object applied and reported), a device
/// rejects or an edge agent reports a failed deployment, `limit` passes or the run is stopped;
/// what each twin and object answered, and when.
pub(crate) async fn wait(
    hub: &Hub,
    mut items: Vec<GateItem>,
    objects: Vec<ObjectItem>,
    limit: Duration,
    concurrency: usize,
    stop: &CancellationToken,
    reporter: &dyn Reporter,
) -> Result<WaitReport, Error> {
    reporter.event(Event::Waiting {
        twins: items.len() + objects.len(),
        limit,
    });
    let mut waited: Vec<Waited> = items
        .iter()
        .map(|i| Waited {
            address: i.address.clone(),
            acknowledged_after: None,
            rejected: None,
        })
        .collect();
    let mut waited_objects: Vec<WaitedObject> = objects
        .iter()
        .map(|o| WaitedObject {
            address: super::objects::address(o.kind, &o.id),
            done_after: None,
            targeted: 0,
            applied: 0,
            reported_successful: None,
            failed: Vec::new(),
        })
        .collect();
    // What each object's targetedCount must reach: the devices its target selects now.
    let mut expected = Vec::with_capacity(objects.len());
    for o in &objects {
        expected.push(hub.expected_targets(o.kind, &o.target).await?);
    }
    let started = Instant::now();
    let mut cadence = Cadence::new();
    loop {
        if !items.is_empty() {
            read::poll(hub, &mut items, None, concurrency).await?;
        }
        for (w, item) in waited.iter_mut().zip(&items) {
            if !w.is_open() {
                continue;
            }
            match &item.answer {
                Ack::Acknowledged => w.acknowledged_after = Some(started.elapsed()),
                Ack::Rejected { ad } => w.rejected = ad.clone().or_else(|| Some("rejected".into())),
                Ack::Pending => {}
            }
        }
        for ((w, o), goal) in waited_objects.iter_mut().zip(&objects).zip(&expected) {
            if w.done_after.is_some() || !w.failed.is_empty() {
                continue;
            }
            observe_object(hub, o, *goal, w, started.elapsed()).await?;
        }
        // A rejection or a failed deployment ends the wait at once: waiting cannot undo it.
        let failed = waited.iter().any(|w| w.rejected.is_some())
            || waited_objects.iter().any(|o| !o.failed.is_empty());
        let open = waited.iter().any(Waited::is_open)
            || waited_objects.iter().any(|o| o.done_after.is_none());
        let left = limit.saturating_sub(started.elapsed());
        if !open || failed || left.is_zero() || stop.is_cancelled() {
            return Ok(WaitReport {
                limit,
                twins: waited,
                objects: waited_objects,
            });
        }
        tokio::select! {
            () = tokio::time::sleep(cadence.next(left)) => {}
            () = stop.cancelled() => {}
        }
    }
}

/// Reads one object's counts: done when the hub counts every device its target selects
/// (`expected`) and it is applied to every targeted device (a deployment: also
/// reported successfully by every edge agent); a deployment that edge agents report as failed
/// names them (`device: lastDesiredStatus`).
async fn observe_object(
    hub: &Hub,
    item: &ObjectItem,
    expected: u64,
    w: &mut WaitedObject,
    elapsed: Duration,
) -> Result<(), Error> {
    let Some(o) = hub.object(&item.id).await? else {
        return Ok(());
    };
    let c = o.counts;
    w.targeted = c.targeted.unwrap_or(0);
    w.applied = c.applied.unwrap_or(0);
    w.reported_successful = c.reported_successful;
    let applied = super::objects::is_applied(&o, expected);
    let done = match item.kind {
        twinops_core::model::ObjectKind::Configuration => applied,
        twinops_core::model::ObjectKind::Deployment => {
            applied && c.reported_successful.unwrap_or(0) >= w.targeted
        }
    };
    if item.kind == twinops_core::model::ObjectKind::Deployment
        && c.reported_failed.unwrap_or(0) > 0
    {
        w.failed = hub.failed_edge_agents(&o.target).await?;
        if w.failed.is_empty() {
            w.failed.push(format!(
                "{} edge agent(s) report a failed deployment",
                c.reported_failed.unwrap_or(0)
            ));
        }
        return Ok(());
    }
    if done {
        w.done_after = Some(elapsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_the_spec_says() {
        // `--wait` takes the one grammar of twinops-iothub (its own tests cover every form).
        let parse_duration = twinops_iothub::duration::parse;
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
