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
use twinops_core::report::{Event, Report, Reporter, WaitReport, Waited};

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

/// Polls until everything is acknowledged, a device rejects, `limit` passes or the run is
/// stopped; what each twin answered, and when.
pub(crate) async fn wait(
    hub: &Hub,
    mut items: Vec<GateItem>,
    limit: Duration,
    concurrency: usize,
    stop: &CancellationToken,
    reporter: &dyn Reporter,
) -> Result<WaitReport, Error> {
    reporter.event(Event::Waiting {
        twins: items.len(),
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
    let started = Instant::now();
    let mut cadence = Cadence::new();
    loop {
        read::poll(hub, &mut items, None, concurrency).await?;
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
        // A rejection ends the wait at once: waiting longer cannot turn it into an ack.
        let rejected = waited.iter().any(|w| w.rejected.is_some());
        let open = waited.iter().any(Waited::is_open);
        let left = limit.saturating_sub(started.elapsed());
        if !open || rejected || left.is_zero() || stop.is_cancelled() {
            return Ok(WaitReport {
                limit,
                twins: waited,
            });
        }
        tokio::select! {
            () = tokio::time::sleep(cadence.next(left)) => {}
            () = stop.cancelled() => {}
        }
    }
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
