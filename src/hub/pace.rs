//! Client-side pacing: one token bucket per operation class, so a large apply or read runs just under
//! IoT Hub's quotas instead of into 429 storms. A 429 lowers that class's rate.
//!
//! The hub's bucket holds one second of the rate; ours holds a quarter second less ([`RESERVE`]).
//! Sending exactly at the hub's limit leaves its bucket empty, and then a request that the network
//! or the hub delayed, followed by one that was not, arrives too soon and is refused (with IoT
//! Hub's 10-second wait). The reserve keeps that much of the hub's bucket unspent. And a run starts
//! with one token per class, not a full bucket: the hub's bucket may still be short from the run
//! before (a plan followed at once by its apply), which a full burst would overdraw.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;
use twinops_iothub::bucket::Bucket;

use super::OpClass;

/// A rate in operations per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub f64);

impl Rate {
    /// Parses `N/s`, `N/min` (or `N/m`) and `N/h`.
    pub fn parse(s: &str) -> Option<Rate> {
        twinops_iothub::quota::parse_rate(s).map(Rate)
    }
}

/// Parses one `--rate CLASS=N/s|N/min`.
pub(crate) fn parse_rate_flag(s: &str) -> Result<(OpClass, Rate), String> {
    let (class, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("`--rate {s}` is not CLASS=N/s or CLASS=N/min"))?;
    let class = OpClass::parse(class.trim()).ok_or_else(|| {
        format!(
            "unknown class `{class}` in --rate; classes: {}",
            OpClass::names()
        )
    })?;
    let rate = Rate::parse(rate)
        .ok_or_else(|| format!("`{rate}` in --rate is not N/s or N/min with N > 0"))?;
    Ok((class, rate))
}

/// IoT Hub's published quotas for a tier and unit count.
pub(crate) fn tier_rates(tier: &str, units: u32) -> Result<Vec<(OpClass, Rate)>, String> {
    Ok(twinops_iothub::quota::tier_rates(tier, units)?
        .into_iter()
        .map(|(c, r)| (c, Rate(r)))
        .collect())
}

/// Seconds of each class's rate that the client leaves in the hub's bucket.
pub(crate) const RESERVE: f64 = 0.25;

/// Token buckets per class. Bulk rows draw from `registry_write`, as IoT Hub counts them.
///
/// A caller reserves its tokens under a short lock (the bucket goes into debt) and then sleeps off
/// its share outside it, so the lock is never held across a wait: a 429 lowers the rate at once,
/// even while many tasks are waiting in [`Pacer::acquire`].
#[derive(Debug, Default)]
pub struct Pacer {
    buckets: HashMap<OpClass, Mutex<Bucket>>,
}

impl Pacer {
    pub fn new(rates: &[(OpClass, Rate)]) -> Pacer {
        let now = Instant::now().into_std();
        let buckets = rates
            .iter()
            .map(|(c, r)| {
                // The hub's capacity, one second (at least one token), less the reserve.
                let capacity = r.0.max(1.0) - RESERVE * r.0;
                (
                    *c,
                    Mutex::new(Bucket::with_capacity(r.0, capacity, 1.0, now)),
                )
            })
            .collect();
        Pacer { buckets }
    }

    fn bucket_class(class: OpClass) -> OpClass {
        match class {
            OpClass::Bulk => OpClass::RegistryWrite,
            c => c,
        }
    }

    fn with_bucket<T>(&self, class: OpClass, f: impl FnOnce(&mut Bucket) -> T) -> Option<T> {
        let bucket = self.buckets.get(&Self::bucket_class(class))?;
        // A panic while holding this lock cannot leave a bucket half-updated in a way that
        // matters more than pacing: keep pacing with what is there.
        let mut b = bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(f(&mut b))
    }

    /// The rate of a class, if paced.
    pub fn rate(&self, class: OpClass) -> Option<f64> {
        self.with_bucket(class, |b| b.rate())
    }

    /// Waits until `n` operations of `class` may start. Reservations are made in call order: each
    /// caller's draw deepens the debt that the next one waits off, so callers start at the rate,
    /// and a request larger than the bucket (a bulk call of 100 rows on a slow class) waits its
    /// own debt off.
    pub async fn acquire(&self, class: OpClass, n: u32) {
        let wait = self.with_bucket(class, |b| {
            b.refill(Instant::now().into_std());
            b.draw(f64::from(n.max(1)))
        });
        if let Some(wait) = wait
            && !wait.is_zero()
        {
            tokio::time::sleep(wait).await;
        }
    }

    /// Lowers a class's rate by a tenth after the hub throttled it.
    pub fn throttled(&self, class: OpClass) {
        self.with_bucket(class, |b| {
            b.refill(Instant::now().into_std());
            b.scale_rate(0.9);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_per_second_and_minute() {
        assert_eq!(Rate::parse("50/s"), Some(Rate(50.0)));
        assert_eq!(Rate::parse("6000/min"), Some(Rate(100.0)));
        assert_eq!(Rate::parse("0/s"), None);
        assert_eq!(Rate::parse("x/s"), None);
        assert!(parse_rate_flag("registry_write=60000/min").is_ok());
        assert!(parse_rate_flag("nope=1/s").unwrap_err().contains("classes"));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_paces_to_the_rate() {
        let p = Pacer::new(&[(OpClass::TwinWrite, Rate(10.0))]);
        let start = Instant::now();
        for _ in 0..30 {
            p.acquire(OpClass::TwinWrite, 1).await;
        }
        // One token up front, then 29 more at 10/s.
        let took = start.elapsed().as_secs_f64();
        assert!((2.85..2.95).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_fills_up_to_the_rate_less_the_reserve() {
        let p = Pacer::new(&[(OpClass::TwinRead, Rate(100.0))]);
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let start = Instant::now();
        for _ in 0..75 {
            p.acquire(OpClass::TwinRead, 1).await;
        }
        assert!(start.elapsed().as_secs_f64() < 0.01, "75 at once");
        p.acquire(OpClass::TwinRead, 1).await;
        assert!(start.elapsed().as_secs_f64() >= 0.009, "the 76th waits");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_lowers_the_rate_while_other_tasks_wait_in_acquire() {
        let p = std::sync::Arc::new(Pacer::new(&[(OpClass::TwinWrite, Rate(10.0))]));
        // Empty the bucket, then put ten tasks to wait in `acquire`.
        for _ in 0..10 {
            p.acquire(OpClass::TwinWrite, 1).await;
        }
        let waiting: Vec<_> = (0..10)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.acquire(OpClass::TwinWrite, 1).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // The hub throttles while they wait: the rate must drop now, not "when the lock is free".
        p.throttled(OpClass::TwinWrite);
        assert!((p.rate(OpClass::TwinWrite).unwrap() - 9.0).abs() < 1e-9);
        p.throttled(OpClass::TwinWrite);
        assert!((p.rate(OpClass::TwinWrite).unwrap() - 8.1).abs() < 1e-9);
        for w in waiting {
            w.await.unwrap();
        }
        // Later requests are paced at the lowered rate: 8.1/s, so 81 more take about 10 s.
        let start = Instant::now();
        for _ in 0..81 {
            p.acquire(OpClass::TwinWrite, 1).await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((9.5..10.5).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_rows_draw_from_registry_write() {
        let p = Pacer::new(&[(OpClass::RegistryWrite, Rate(100.0))]);
        let start = Instant::now();
        p.acquire(OpClass::Bulk, 100).await;
        p.acquire(OpClass::Bulk, 100).await;
        // One token up front: the first call waits off 99, the second 100.
        let took = start.elapsed().as_secs_f64();
        assert!((1.95..2.05).contains(&took), "{took}");
    }
}
