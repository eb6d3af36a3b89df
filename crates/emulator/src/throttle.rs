//! Quota simulation (`--throttle`): IoT Hub's per-class throttles (reference §9) as token buckets.
//!
//! Each configured class is a `twinops_iothub::bucket::Bucket` (the one the client paces with): it
//! holds **one second** of its rate (at least one token) and refills continuously. A request draws
//! one token from its class; a bulk call also draws one token per row from `registry_write`, as
//! IoT Hub counts bulk rows against the registry quota. A draw
//! larger than the bucket (100 rows against 1.67 tokens on S1) is admitted when the bucket is full
//! and leaves it in debt, so a 100-row call on S1 is followed by about a minute of refusals: the
//! published rate holds on average. Classes without a rate are never throttled.
//!
//! It owns the spec grammar, the live buckets and what a refusal answers; the server decides when
//! to refuse.

use std::sync::Mutex;
use std::time::Instant;

use super::error::Error;
use super::stats::OpClass;
use twinops_iothub::bucket::Bucket;

/// Per-class rates, in requests (or rows) per second.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ThrottleSpec {
    rates: Vec<(OpClass, f64)>,
}

impl ThrottleSpec {
    /// Parses `S1:1` (a tier and its units; `S1` alone is one unit), per-class rates such as
    /// `registry_write=6000/min,twin_write=500/s`, or both: later items override earlier ones.
    pub fn parse(text: &str) -> Result<ThrottleSpec, String> {
        let mut spec = ThrottleSpec::default();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!("`{text}` has an empty item"));
            }
            if let Some((class, rate)) = item.split_once('=') {
                let class = class_named(class.trim()).ok_or_else(|| {
                    format!(
                        "`{}` in `{item}` is not a class; classes: {}",
                        class.trim(),
                        class_names()
                    )
                })?;
                spec.set(class, parse_rate(rate.trim(), item)?);
            } else {
                for (class, rate) in tier_rates(item)? {
                    spec.set(class, rate);
                }
            }
        }
        Ok(spec)
    }

    fn set(&mut self, class: OpClass, per_second: f64) {
        self.rates.retain(|(c, _)| *c != class);
        self.rates.push((class, per_second));
    }

    /// The rate of a class per second, if it is throttled.
    pub(crate) fn rate(&self, class: OpClass) -> Option<f64> {
        self.rates
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, r)| *r)
    }
}

fn class_named(name: &str) -> Option<OpClass> {
    OpClass::parse(name)
}

fn class_names() -> String {
    OpClass::names()
}

/// `N/s` or `N/min` with N > 0.
fn parse_rate(rate: &str, item: &str) -> Result<f64, String> {
    twinops_iothub::quota::parse_rate(rate)
        .ok_or_else(|| format!("`{rate}` in `{item}` is not a rate: write N/s or N/min with N > 0"))
}

/// IoT Hub's published throttles for `TIER[:UNITS]` (reference §9), per second.
fn tier_rates(item: &str) -> Result<Vec<(OpClass, f64)>, String> {
    let (tier, units) = match item.split_once(':') {
        Some((t, u)) => {
            let units: u32 =
                u.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!("`{u}` in `{item}` is not a number of units (1 or more)")
                })?;
            (t.trim(), units)
        }
        None => (item, 1),
    };
    twinops_iothub::quota::tier_rates(tier, units).map_err(|_| {
        format!("`{item}` is neither a tier (S1, S2, S3 or F1, optionally `:UNITS`) nor CLASS=RATE")
    })
}

/// The live buckets, one per throttled class.
#[derive(Debug)]
pub(crate) struct Throttle {
    buckets: [Option<Mutex<Bucket>>; OpClass::ALL.len()],
}

impl Throttle {
    pub(crate) fn new(spec: &ThrottleSpec) -> Throttle {
        let now = Instant::now();
        let buckets =
            OpClass::ALL.map(|c| spec.rate(c).map(|rate| Mutex::new(Bucket::new(rate, now))));
        Throttle { buckets }
    }

    /// Whether bulk calls need their row count (their rows draw from a throttled `registry_write`).
    pub(crate) fn counts_rows(&self) -> bool {
        self.buckets[OpClass::RegistryWrite.index()].is_some()
    }

    /// Draws one token for a request of `class` and, for a bulk call, `rows` tokens from
    /// `registry_write`; either all draws happen or none.
    pub(crate) fn admit(&self, class: OpClass, rows: u64) -> bool {
        let now = Instant::now();
        let own = self.buckets[class.index()].as_ref().map(lock);
        let rows_bucket = match class {
            OpClass::Bulk => self.buckets[OpClass::RegistryWrite.index()]
                .as_ref()
                .map(lock),
            _ => None,
        };
        let mut draws: Vec<(std::sync::MutexGuard<'_, Bucket>, f64)> = Vec::with_capacity(2);
        draws.extend(own.map(|b| (b, 1.0)));
        // Row counts are at most 100 per call, so the conversion is exact.
        draws.extend(rows_bucket.map(|b| (b, rows.max(1) as f64)));
        for (b, n) in draws.iter_mut() {
            b.refill(now);
            if !b.can_draw(*n) {
                return false;
            }
        }
        for (b, n) in draws.iter_mut() {
            // Debt is how a big call is paid for: the next requests are refused, not delayed.
            b.draw(*n);
        }
        true
    }
}

/// A poisoned bucket is still a valid bucket (plain numbers), so keep using it.
fn lock(m: &Mutex<Bucket>) -> std::sync::MutexGuard<'_, Bucket> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a throttled request of `class` is refused (quota simulation and injected 429s alike).
/// A configuration write answers `ThrottlingBacklogTimeout`, as live hubs, which shape
/// configuration writes, were seen to answer (live-hub.md); its operation type is the one the
/// same source's client tests carry (`mwalser/terraform-provider-iothub`,
/// `internal/client/errors_test.go`). Everything else answers `ThrottlingException`.
pub(crate) fn refusal(class: OpClass, method: &axum::http::Method) -> Error {
    if class == OpClass::Configuration && method != axum::http::Method::GET {
        Error::BacklogTimeout("ConfigurationWrite".into())
    } else {
        Error::Throttled(operation_type(class).into())
    }
}

/// The `Operation type:` IoT Hub names in its throttling message.
fn operation_type(class: OpClass) -> &'static str {
    match class {
        OpClass::RegistryRead | OpClass::RegistryWrite | OpClass::Bulk => "CRUD",
        OpClass::TwinRead => "TwinRead",
        OpClass::TwinWrite => "TwinUpdate",
        OpClass::Query => "Query",
        OpClass::Configuration => "Configurations",
        OpClass::Jobs => "Jobs",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_published_table() {
        let s1 = ThrottleSpec::parse("S1:1").unwrap();
        assert_eq!(s1.rate(OpClass::RegistryWrite), Some(100.0 / 60.0));
        assert_eq!(s1.rate(OpClass::TwinRead), Some(100.0));
        assert_eq!(s1.rate(OpClass::TwinWrite), Some(50.0));
        assert_eq!(s1.rate(OpClass::Query), Some(20.0 / 60.0));
        assert_eq!(s1.rate(OpClass::Bulk), None);
        let s3 = ThrottleSpec::parse("s3:2").unwrap();
        assert_eq!(s3.rate(OpClass::RegistryRead), Some(10_000.0 / 60.0));
        assert_eq!(s3.rate(OpClass::TwinWrite), Some(500.0));
        assert_eq!(ThrottleSpec::parse("S1").unwrap(), s1);
        let s2 = ThrottleSpec::parse("S2:20").unwrap();
        assert_eq!(s2.rate(OpClass::TwinRead), Some(200.0));
    }

    #[test]
    fn class_rates_override_tiers() {
        let s = ThrottleSpec::parse("registry_write=6000/min, twin_write=500/s").unwrap();
        assert_eq!(s.rate(OpClass::RegistryWrite), Some(100.0));
        assert_eq!(s.rate(OpClass::TwinWrite), Some(500.0));
        assert_eq!(s.rate(OpClass::TwinRead), None);
        let s = ThrottleSpec::parse("S1:1,twin_write=5/s").unwrap();
        assert_eq!(s.rate(OpClass::TwinWrite), Some(5.0));
        assert_eq!(s.rate(OpClass::TwinRead), Some(100.0));
    }

    #[test]
    fn errors_name_the_bad_part() {
        let e = ThrottleSpec::parse("twin_writes=5/s").unwrap_err();
        assert!(e.contains("`twin_writes`"), "{e}");
        let e = ThrottleSpec::parse("twin_write=5/day").unwrap_err();
        assert!(e.contains("`5/day`"), "{e}");
        let e = ThrottleSpec::parse("twin_write=0/s").unwrap_err();
        assert!(e.contains("`0/s`"), "{e}");
        let e = ThrottleSpec::parse("S9:1").unwrap_err();
        assert!(e.contains("`S9:1`"), "{e}");
        let e = ThrottleSpec::parse("S1:0").unwrap_err();
        assert!(e.contains("`0`"), "{e}");
        assert!(ThrottleSpec::parse("S1:1,").unwrap_err().contains("empty"));
    }

    #[test]
    fn a_bucket_holds_one_second_of_its_rate() {
        let t = Throttle::new(&ThrottleSpec::parse("twin_read=10/s").unwrap());
        let admitted = (0..50).filter(|_| t.admit(OpClass::TwinRead, 0)).count();
        assert_eq!(admitted, 10);
        assert!(t.admit(OpClass::TwinWrite, 0), "other classes are free");
    }

    #[test]
    fn slow_classes_still_hold_one_token() {
        let t = Throttle::new(&ThrottleSpec::parse("query=20/min").unwrap());
        assert!(t.admit(OpClass::Query, 0));
        assert!(!t.admit(OpClass::Query, 0));
    }

    #[test]
    fn bulk_rows_draw_from_registry_write_and_may_go_into_debt() {
        let t = Throttle::new(&ThrottleSpec::parse("registry_write=60/s").unwrap());
        assert!(t.counts_rows());
        assert!(
            t.admit(OpClass::Bulk, 100),
            "a full bucket admits a big call"
        );
        assert!(
            !t.admit(OpClass::RegistryWrite, 0),
            "and is in debt after it"
        );
        let t = Throttle::new(&ThrottleSpec::parse("registry_write=60/s,bulk=1/s").unwrap());
        assert!(t.admit(OpClass::Bulk, 10));
        assert!(!t.admit(OpClass::Bulk, 1), "the bulk bucket is empty");
        let rows_left = (0..100)
            .filter(|_| t.admit(OpClass::RegistryWrite, 0))
            .count();
        assert_eq!(rows_left, 50, "the refused call drew nothing");
    }
}
