//! Fault injection (`--faults`): the spec grammar and the per-request draw.
//!
//! `429:0.2,429ra:0.1,500:0.05,503:0.05,reset:0.02,reset-after:0.02,latency:5-50ms`. The error
//! kinds are exclusive: one uniform number per request picks at most one of them, so each happens
//! with exactly its probability and the probabilities may add up to at most 1. Latency is drawn
//! separately and delays the request before anything else: `latency:5-50ms` (uniform, every
//! request), `latency:5ms` (fixed), `latency:0.5:5-50ms` (half of the requests).
//!
//! It owns the grammar and the random draw (seedable for reproducible tests); the server turns a
//! drawn fault into a response or a dropped connection.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use twinops_iothub::duration;

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// 429 `ThrottlingException` without `Retry-After`, as IoT Hub answers.
    Throttle,
    /// The same with `Retry-After: 1`.
    ThrottleRetryAfter,
    /// 500 `ServerError`.
    ServerError,
    /// 503 `ServiceUnavailable`.
    Unavailable,
    /// The connection is dropped before the request is performed.
    Reset,
    /// The request is performed (and committed), then the connection is dropped unanswered.
    ResetAfter,
}

impl Fault {
    pub(crate) const ALL: [Fault; 6] = [
        Fault::Throttle,
        Fault::ThrottleRetryAfter,
        Fault::ServerError,
        Fault::Unavailable,
        Fault::Reset,
        Fault::ResetAfter,
    ];

    /// The name in the spec and in the stats.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::Throttle => "429",
            Fault::ThrottleRetryAfter => "429ra",
            Fault::ServerError => "500",
            Fault::Unavailable => "503",
            Fault::Reset => "reset",
            Fault::ResetAfter => "reset-after",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Fault::Throttle => 0,
            Fault::ThrottleRetryAfter => 1,
            Fault::ServerError => 2,
            Fault::Unavailable => 3,
            Fault::Reset => 4,
            Fault::ResetAfter => 5,
        }
    }
}

/// A delay added to requests.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Latency {
    pub(crate) probability: f64,
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

/// What `--faults` asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultSpec {
    pub(crate) faults: Vec<(Fault, f64)>,
    pub(crate) latency: Option<Latency>,
}

impl FaultSpec {
    pub fn parse(text: &str) -> Result<FaultSpec, String> {
        let mut spec = FaultSpec::default();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!("`{text}` has an empty item"));
            }
            let (kind, rest) = item
                .split_once(':')
                .ok_or_else(|| format!("`{item}` is not KIND:PROBABILITY"))?;
            let kind = kind.trim();
            if kind == "latency" {
                if spec.latency.is_some() {
                    return Err(format!("`{item}`: latency is given twice"));
                }
                spec.latency = Some(parse_latency(rest.trim(), item)?);
                continue;
            }
            let fault = Fault::ALL
                .into_iter()
                .find(|f| f.name() == kind)
                .ok_or_else(|| {
                    format!(
                        "`{kind}` in `{item}` is not a fault; kinds: 429, 429ra, 500, 503, reset, reset-after, latency"
                    )
                })?;
            if spec.faults.iter().any(|(f, _)| *f == fault) {
                return Err(format!("`{item}`: {kind} is given twice"));
            }
            spec.faults
                .push((fault, parse_probability(rest.trim(), item)?));
        }
        let sum: f64 = spec.faults.iter().map(|(_, p)| p).sum();
        if sum > 1.0 + 1e-9 {
            return Err(format!(
                "the error probabilities in `{text}` add up to {sum}, over 1 (one request gets at most one)"
            ));
        }
        Ok(spec)
    }
}

fn parse_probability(p: &str, item: &str) -> Result<f64, String> {
    p.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("`{p}` in `{item}` is not a probability between 0 and 1"))
}

/// `A-Bms`, `Ams` or `P:A-Bms`; the lower bound may omit the unit (`5-50ms`).
fn parse_latency(rest: &str, item: &str) -> Result<Latency, String> {
    let (probability, range) = match rest.split_once(':') {
        Some((p, r)) => (parse_probability(p.trim(), item)?, r.trim()),
        None => (1.0, rest),
    };
    let in_item = |e: duration::Error| format!("{e} (in `{item}`)");
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let (min, max) = match range.split_once('-') {
        Some((lo, hi)) => {
            let hi_d = duration::parse(hi).map_err(in_item)?;
            let lo = lo.trim();
            // A bare lower bound takes the upper bound's unit (`5-50ms`), not seconds.
            let lo_d = if lo.chars().all(is_number) && !lo.is_empty() {
                let unit = hi.trim().trim_start_matches(is_number);
                duration::parse(&format!("{lo}{unit}")).map_err(in_item)?
            } else {
                duration::parse(lo).map_err(in_item)?
            };
            (lo_d, hi_d)
        }
        None => {
            let d = duration::parse(range).map_err(in_item)?;
            (d, d)
        }
    };
    if min > max {
        return Err(format!(
            "`{range}` in `{item}` is not a range: its start is after its end"
        ));
    }
    Ok(Latency {
        probability,
        min,
        max,
    })
}

/// What one request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Draw {
    pub(crate) delay: Option<Duration>,
    pub(crate) fault: Option<Fault>,
}

/// The live injector.
#[derive(Debug)]
pub(crate) struct Faults {
    spec: FaultSpec,
    rng: Mutex<StdRng>,
}

impl Faults {
    /// With a seed the sequence of draws is reproducible (for requests sent one at a time).
    pub(crate) fn new(spec: FaultSpec, seed: Option<u64>) -> Faults {
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Faults {
            spec,
            rng: Mutex::new(rng),
        }
    }

    pub(crate) fn draw(&self) -> Draw {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut draw = Draw::default();
        if let Some(l) = &self.spec.latency
            && (l.probability >= 1.0 || rng.random::<f64>() < l.probability)
        {
            let span = l.max.saturating_sub(l.min);
            draw.delay = Some(l.min + span.mul_f64(rng.random::<f64>()));
        }
        if !self.spec.faults.is_empty() {
            let mut u: f64 = rng.random();
            for (fault, p) in &self.spec.faults {
                if u < *p {
                    draw.fault = Some(*fault);
                    break;
                }
                u -= p;
            }
        }
        draw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_latency_forms_parse() {
        let s = FaultSpec::parse("429:0.2,503:0.05,reset:0.02,latency:5-50ms").unwrap();
        assert_eq!(
            s.faults,
            [
                (Fault::Throttle, 0.2),
                (Fault::Unavailable, 0.05),
                (Fault::Reset, 0.02)
            ]
        );
        let l = s.latency.unwrap();
        assert_eq!(
            (l.probability, l.min, l.max),
            (1.0, Duration::from_millis(5), Duration::from_millis(50))
        );
        let l = FaultSpec::parse("latency:5ms").unwrap().latency.unwrap();
        assert_eq!(
            (l.min, l.max),
            (Duration::from_millis(5), Duration::from_millis(5))
        );
        let l = FaultSpec::parse("latency:0.5:1s-2s")
            .unwrap()
            .latency
            .unwrap();
        assert_eq!(
            (l.probability, l.min, l.max),
            (0.5, Duration::from_secs(1), Duration::from_secs(2))
        );
        let l = FaultSpec::parse("latency:0.5-1.5ms")
            .unwrap()
            .latency
            .unwrap();
        assert_eq!(
            (l.min, l.max),
            (Duration::from_micros(500), Duration::from_micros(1500)),
            "a bare lower bound takes the upper bound's unit"
        );
        let s = FaultSpec::parse("429ra:0.1, reset-after:0.1, 500:0").unwrap();
        assert_eq!(s.faults.len(), 3);
    }

    #[test]
    fn errors_name_the_bad_part() {
        let e = FaultSpec::parse("418:0.1").unwrap_err();
        assert!(e.contains("`418`"), "{e}");
        let e = FaultSpec::parse("429:1.5").unwrap_err();
        assert!(e.contains("`1.5`"), "{e}");
        let e = FaultSpec::parse("429").unwrap_err();
        assert!(e.contains("`429`"), "{e}");
        let e = FaultSpec::parse("latency:5-50xs").unwrap_err();
        assert!(e.contains("latency:5-50xs"), "{e}");
        let e = FaultSpec::parse("latency:50-5ms").unwrap_err();
        assert!(e.contains("`50-5ms`"), "{e}");
        let e = FaultSpec::parse("429:0.6,503:0.6").unwrap_err();
        assert!(e.contains("over 1"), "{e}");
        let e = FaultSpec::parse("429:0.1,429:0.1").unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn draws_follow_the_probabilities_and_the_seed() {
        let spec = FaultSpec::parse("429:0.25,503:0.25,latency:0.5:10-20ms").unwrap();
        let a = Faults::new(spec.clone(), Some(7));
        let b = Faults::new(spec, Some(7));
        let draws: Vec<Draw> = (0..4000).map(|_| a.draw()).collect();
        assert!(
            draws.iter().all(|d| d == &b.draw()),
            "same seed, same draws"
        );
        let count = |f: Fault| draws.iter().filter(|d| d.fault == Some(f)).count();
        assert!((800..1200).contains(&count(Fault::Throttle)));
        assert!((800..1200).contains(&count(Fault::Unavailable)));
        let delays: Vec<Duration> = draws.iter().filter_map(|d| d.delay).collect();
        assert!((1700..2300).contains(&delays.len()));
        assert!(
            delays
                .iter()
                .all(|d| (Duration::from_millis(10)..=Duration::from_millis(20)).contains(d))
        );
        let always = Faults::new(FaultSpec::parse("reset:1").unwrap(), None);
        assert!((0..100).all(|_| always.draw().fault == Some(Fault::Reset)));
    }
}
