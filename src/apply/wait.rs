//! `apply --wait[=DURATION]`: after applying, wait until every changed twin's desired values are
//! acknowledged by its device (reported equal, or the Plug and Play ack form), or the time runs out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::apply::{Report, Status};
use crate::hub::{Hub, observe};
use twinops_core::plan::drift::{Ack, classify, twin_answer};
use twinops_core::plan::{Kind, Plan, is_sensitive_digest};

pub use twinops_core::report::Pending;

/// The twins whose desired values the apply wrote, with the values to see reported back.
pub fn pending(plan: &Plan, report: &Report) -> Vec<Pending> {
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
        let ok = report.outcomes.iter().any(|o| {
            o.kind == c.kind()
                && o.device_id == address.device.as_str()
                && o.module_id.as_deref() == address.module_id()
                && matches!(
                    o.status,
                    Status::Applied | Status::Adopted | Status::Unchanged
                )
        });
        // Desired values only; keys being removed and sensitive digests cannot be compared.
        let wanted = c.wanted();
        let desired: BTreeMap<String, Value> = wanted
            .map(|w| {
                w.desired
                    .into_iter()
                    .filter(|(_, v)| !v.is_null() && !is_sensitive_digest(v))
                    .collect()
            })
            .unwrap_or_default();
        if ok && !desired.is_empty() {
            out.push(Pending {
                device: address.device.to_string(),
                module: address.module.map(|m| m.to_string()),
                desired,
                acknowledged_after: None,
                rejected: None,
            });
        }
    }
    out
}

/// Classifies one waited-for twin: acknowledged (every key), rejected (any key, with the
/// device's `ad` texts), or still pending.
fn answer(p: &Pending, twin: &twinops_core::model::ObservedTwin) -> Ack {
    twin_answer(
        p.desired
            .iter()
            // A key someone else changed since is not ours to wait for.
            .filter(|(k, v)| twin.desired.get(*k) == Some(*v))
            .map(|(k, v)| {
                (
                    format!("desired.{k}"),
                    classify(v, twin.reported.get(k), twin.desired_version),
                )
            }),
    )
}

/// Records a twin's answer on its item.
fn record(p: &mut Pending, twin: &twinops_core::model::ObservedTwin, started: Instant) {
    match answer(p, twin) {
        Ack::Acknowledged => p.acknowledged_after = Some(started.elapsed()),
        Ack::Rejected { ad } => p.rejected = ad.or_else(|| Some("rejected".into())),
        Ack::Pending => {}
    }
}

async fn check(hub: &Hub, items: &mut [Pending], started: Instant) -> anyhow::Result<()> {
    let open: Vec<usize> = (0..items.len()).filter(|i| items[*i].is_open()).collect();
    if open.len() <= crate::hub::read::TARGETED_MAX_TWINS {
        for i in open {
            let p = &items[i];
            let t = hub.get_twin(&p.device, p.module.as_deref()).await?;
            let seen = observe::twin(&t)?;
            record(&mut items[i], &seen, started);
        }
        return Ok(());
    }
    // Many twins: the same paged read as a plan's (every device and module twin of the hub).
    let observed = crate::hub::read::query_all(hub).await?;
    let twin_of = |p: &Pending| {
        let d = observed.devices.get(p.device.as_str())?;
        match &p.module {
            None => Some(&d.twin),
            Some(m) => d.modules.get(m.as_str()).map(|m| &m.twin),
        }
    };
    for p in items.iter_mut().filter(|p| p.is_open()) {
        if let Some(t) = twin_of(p) {
            record(p, t, started);
        }
    }
    Ok(())
}

/// Polls until everything is acknowledged or `limit` passes; returns the items with their times.
pub async fn wait(
    hub: &Hub,
    mut items: Vec<Pending>,
    limit: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<Vec<Pending>> {
    let started = Instant::now();
    let mut interval = Duration::from_millis(250);
    loop {
        check(hub, &mut items, started).await?;
        let left = items.iter().filter(|p| p.is_open()).count();
        // A rejection ends the wait at once: waiting longer cannot turn it into an ack.
        let rejected = items.iter().any(|p| p.rejected.is_some());
        if left == 0
            || rejected
            || started.elapsed() >= limit
            || stop.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(items);
        }
        tokio::time::sleep(interval.min(limit.saturating_sub(started.elapsed()))).await;
        interval = (interval * 2).min(Duration::from_secs(5));
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
