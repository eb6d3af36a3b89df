//! Client-side pacing: one token bucket per operation class, holding one second of its rate, so a large
//! apply runs just under IoT Hub's quotas instead of into 429 storms. A 429 lowers that class's rate.

use std::collections::HashMap;

use tokio::sync::Mutex;
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
pub fn parse_rate_flag(s: &str) -> Result<(OpClass, Rate), String> {
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
pub fn tier_rates(tier: &str, units: u32) -> Result<Vec<(OpClass, Rate)>, String> {
    Ok(twinops_iothub::quota::tier_rates(tier, units)?
        .into_iter()
        .map(|(c, r)| (c, Rate(r)))
        .collect())
}

/// Token buckets per class. Bulk rows draw from `registry_write`, as IoT Hub counts them.
#[derive(Debug, Default)]
pub struct Pacer {
    buckets: HashMap<OpClass, Mutex<Bucket>>,
}

impl Pacer {
    pub fn new(rates: &[(OpClass, Rate)]) -> Pacer {
        let now = Instant::now().into_std();
        let buckets = rates
            .iter()
            .map(|(c, r)| (*c, Mutex::new(Bucket::new(r.0, now))))
            .collect();
        Pacer { buckets }
    }

    fn bucket_class(class: OpClass) -> OpClass {
        match class {
            OpClass::Bulk => OpClass::RegistryWrite,
            c => c,
        }
    }

    /// The rate of a class, if paced.
    pub fn rate(&self, class: OpClass) -> Option<f64> {
        self.buckets
            .get(&Self::bucket_class(class))
            .and_then(|b| b.try_lock().ok().map(|b| b.rate()))
    }

    /// Waits until `n` operations of `class` may start.
    pub async fn acquire(&self, class: OpClass, n: u32) {
        let Some(bucket) = self.buckets.get(&Self::bucket_class(class)) else {
            return;
        };
        // Holding the lock while waiting queues callers in order; a request larger than the bucket
        // (a bulk call of 100 rows on a slow class) runs into debt and waits it off.
        let mut b = bucket.lock().await;
        b.refill(Instant::now().into_std());
        let wait = b.draw(f64::from(n.max(1)));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            b.refill(Instant::now().into_std());
        }
    }

    /// Lowers a class's rate by a tenth after the hub throttled it.
    pub fn throttled(&self, class: OpClass) {
        if let Some(b) = self.buckets.get(&Self::bucket_class(class))
            && let Ok(mut b) = b.try_lock()
        {
            b.scale_rate(0.9);
        }
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
        // 10 tokens up front, then 20 more at 10/s.
        let took = start.elapsed().as_secs_f64();
        assert!((1.9..2.2).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_rows_draw_from_registry_write() {
        let p = Pacer::new(&[(OpClass::RegistryWrite, Rate(100.0))]);
        let start = Instant::now();
        p.acquire(OpClass::Bulk, 100).await;
        p.acquire(OpClass::Bulk, 100).await;
        let took = start.elapsed().as_secs_f64();
        assert!((0.9..1.1).contains(&took), "{took}");
    }
}
