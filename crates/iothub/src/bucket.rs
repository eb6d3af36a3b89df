//! The token bucket behind both sides of IoT Hub's quotas: the client paces its requests with it
//! (`hub::pace`) and the emulator simulates the throttles with it (`throttle`), so both count the
//! same way.
//!
//! A bucket holds **one second** of its rate (at least one token, so a class slower than one a
//! second can run at all) and refills continuously. A draw may be larger than the bucket (a bulk
//! call of 100 rows against 1.67 tokens on S1): it leaves the bucket in debt, which is paid off
//! at the rate before the bucket holds tokens again, so the rate holds on average.
//!
//! Pure: the caller passes the time in and decides what waiting or refusing looks like. No locking
//! either: each side keeps its buckets behind the lock that fits it.

use std::time::{Duration, Instant};

/// One class's bucket. Rates are per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket for `rate` per second (which must be above zero), as of `now`.
    pub fn new(rate: f64, now: Instant) -> Bucket {
        let capacity = rate.max(1.0);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// A bucket for `rate` per second that holds up to `capacity` tokens (above zero; a draw
    /// larger than it goes into debt as usual) and holds `tokens` of them now.
    pub fn with_capacity(rate: f64, capacity: f64, tokens: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            capacity,
            tokens: tokens.min(capacity),
            last: now,
        }
    }

    /// Tokens earned per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Scales the rate, e.g. by 0.9 after the hub throttled anyway; the capacity stays the burst
    /// the bucket was made with.
    pub fn scale_rate(&mut self, factor: f64) {
        self.rate *= factor;
    }

    /// Adds what the time since the last refill earned, up to the capacity. A `now` before the
    /// last refill earns nothing.
    pub fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Whether `n` tokens may be drawn without waiting: all of them, or a full bucket for a draw
    /// larger than it.
    pub fn can_draw(&self, n: f64) -> bool {
        self.tokens + 1e-9 >= n.min(self.capacity)
    }

    /// Takes `n` tokens, into debt if need be, and returns how long until the debt is paid off
    /// (zero when there is none).
    pub fn draw(&mut self, n: f64) -> Duration {
        self.tokens -= n;
        if self.tokens < 0.0 {
            Duration::from_secs_f64(-self.tokens / self.rate)
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_bucket_starts_full_with_one_second_of_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, t0);
        assert!(b.can_draw(10.0));
        assert_eq!(b.draw(10.0), Duration::ZERO);
        assert!(!b.can_draw(1.0));
    }

    #[test]
    fn slow_rates_still_hold_one_token() {
        let t0 = Instant::now();
        let mut b = Bucket::new(20.0 / 60.0, t0);
        assert!(b.can_draw(1.0));
        b.draw(1.0);
        assert!(!b.can_draw(1.0));
        b.refill(t0 + secs(3.0));
        assert!(b.can_draw(1.0), "20/min earns a token in 3 s");
    }

    #[test]
    fn refills_earn_the_rate_up_to_the_capacity() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, t0);
        b.draw(10.0);
        b.refill(t0 + secs(0.5));
        assert!(b.can_draw(5.0));
        assert!(!b.can_draw(6.0));
        b.refill(t0 + secs(60.0));
        assert_eq!(b.draw(10.0), Duration::ZERO, "never more than one second");
        assert!(!b.can_draw(1.0));
        b.refill(t0);
        assert!(!b.can_draw(1.0), "time going backwards earns nothing");
    }

    #[test]
    fn a_draw_larger_than_the_bucket_runs_into_debt_paid_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(60.0, t0);
        assert!(b.can_draw(100.0), "a full bucket admits a big draw");
        let wait = b.draw(100.0);
        assert!((wait.as_secs_f64() - 40.0 / 60.0).abs() < 1e-9, "{wait:?}");
        b.refill(t0 + wait);
        assert!(!b.can_draw(1.0));
        b.refill(t0 + wait + secs(1.0 / 60.0));
        assert!(b.can_draw(1.0));
    }

    #[test]
    fn scaling_the_rate_keeps_the_capacity() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100.0, t0);
        b.scale_rate(0.9);
        assert!((b.rate() - 90.0).abs() < 1e-9);
        assert!(b.can_draw(100.0));
        b.draw(100.0);
        b.refill(t0 + secs(1.0));
        assert!(b.can_draw(89.9) && !b.can_draw(90.1));
    }
}
