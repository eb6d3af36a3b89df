//! Retry policy as data: which errors to retry, and how long to wait before attempt `n`.

use std::time::Duration;

use super::Error;

/// IoT Hub's throttling errors say "Wait 10 seconds and try again" and carry no `Retry-After`.
pub(super) const THROTTLE_WAIT: Duration = Duration::from_secs(10);

/// The longest `Retry-After` honoured. IoT Hub sends none on its 429s (it says "Wait 10 seconds");
/// a larger value comes from something in between (a proxy, a gateway under maintenance), and
/// honouring `Retry-After: 86400` would stall a CI job for a day per attempt. Sixty seconds is six
/// times IoT Hub's own advice: with the attempts allowed, a run that keeps being told to wait fails
/// within minutes and says why.
pub(super) const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Wait after a 429 without `Retry-After`.
    pub throttle_wait: Duration,
    /// The longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            max_attempts: 8,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            throttle_wait: THROTTLE_WAIT,
            retry_after_cap: RETRY_AFTER_CAP,
        }
    }
}

impl Backoff {
    /// The wait before retrying after `attempt` (1-based) failed with `err`, or `None` to give up.
    /// `jitter` in `[0, 1)` spreads clients apart (full jitter on the exponential part).
    pub fn delay(&self, attempt: u32, err: &Error, jitter: f64) -> Option<Duration> {
        if !err.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        if let Some(ra) = err.retry_after() {
            return Some(ra.min(self.retry_after_cap));
        }
        if matches!(err, Error::Throttled { .. }) {
            return Some(self.throttle_wait);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.cap);
        Some(exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Error {
        Error::Unavailable {
            status: 503,
            code: "ServiceUnavailable".into(),
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn throttling_without_retry_after_waits_ten_seconds() {
        let e = Error::Throttled {
            code: "ThrottlingException".into(),
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(Backoff::default().delay(1, &e, 0.5), Some(THROTTLE_WAIT));
    }

    #[test]
    fn retry_after_is_honoured() {
        let e = Error::Throttled {
            code: "x".into(),
            message: String::new(),
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(
            Backoff::default().delay(3, &e, 0.0),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_huge_retry_after_is_capped() {
        let e = Error::Throttled {
            code: "x".into(),
            message: String::new(),
            retry_after: Some(Duration::from_secs(86_400)),
        };
        assert_eq!(Backoff::default().delay(1, &e, 0.0), Some(RETRY_AFTER_CAP));
        assert_eq!(RETRY_AFTER_CAP, Duration::from_secs(60));
    }

    #[test]
    fn server_errors_back_off_exponentially_up_to_a_cap() {
        let b = Backoff::default();
        let d1 = b.delay(1, &unavailable(), 1.0).unwrap();
        let d3 = b.delay(3, &unavailable(), 1.0).unwrap();
        assert_eq!(d1, Duration::from_millis(200));
        assert_eq!(d3, Duration::from_millis(800));
        assert!(b.delay(7, &unavailable(), 1.0).unwrap() <= b.cap);
        assert_eq!(b.delay(8, &unavailable(), 1.0), None);
    }

    #[test]
    fn client_errors_are_not_retried() {
        let e = Error::PreconditionFailed {
            code: "PreconditionFailed".into(),
            message: String::new(),
        };
        assert_eq!(Backoff::default().delay(1, &e, 0.0), None);
    }
}
