//! `apply --wait[=DURATION]`: after applying, wait until every changed twin's desired values are
//! acknowledged by its device (reported equal, or the Plug and Play ack form), or the time runs out.
//! The twins are read and classified the way a rollout's gate reads its wave ([`super::rollout::poll`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::rollout::{Cost, Item, poll};
use crate::apply::{Report, Status};
use crate::hub::{Hub, observe};
use twinops_core::model::TwinAddress;
use twinops_core::plan::drift::Ack;
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

/// Polls until everything is acknowledged or `limit` passes; returns the items with their times.
/// The twins are read and classified as a rollout's gate reads its wave (one GET each for a few,
/// paged `IN` queries of just the pending ones for more).
pub async fn wait(
    hub: &Hub,
    mut items: Vec<Pending>,
    limit: Duration,
    concurrency: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<Vec<Pending>> {
    let mut polled = Vec::with_capacity(items.len());
    for p in &items {
        let device = observe::device_id(&p.device)?;
        polled.push(Item {
            address: match &p.module {
                Some(m) => TwinAddress::module(device, observe::module_id(m)?),
                None => TwinAddress::device(device),
            },
            keys: Some(p.desired.keys().cloned().collect()),
            expect: p
                .desired
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            version: None,
            answer: Ack::Pending,
        });
    }
    let started = Instant::now();
    let mut interval = Duration::from_millis(250);
    let mut cost = Cost::default();
    loop {
        poll(hub, &mut polled, None, concurrency, &mut cost).await?;
        for (p, item) in items.iter_mut().zip(&polled) {
            if !p.is_open() {
                continue;
            }
            match &item.answer {
                Ack::Acknowledged => p.acknowledged_after = Some(started.elapsed()),
                Ack::Rejected { ad } => p.rejected = ad.clone().or_else(|| Some("rejected".into())),
                Ack::Pending => {}
            }
        }
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
