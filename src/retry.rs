//! One retry policy, as data: exponential backoff with ±20 % jitter, a cap,
//! and when to give up. Source retries, rate-limit waits and deliveries all
//! wait through [`Backoff`]; a `Retry-After` is read in one place
//! ([`crate::clamp`]) and clamped there.

use rand::Rng;
use std::time::Duration;

/// Exponential waits: `initial`, then times `factor` each retry, up to `max`,
/// each with ±20 % jitter so clients recovering together do not call in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: u32,
}

impl Backoff {
    /// Doubling from `initial` up to `max`.
    pub const fn doubling(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            factor: 2,
        }
    }

    /// The wait before retry number `retry` (1 is the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let steps = retry.saturating_sub(1).min(64);
        let exp = self
            .initial
            .saturating_mul(self.factor.saturating_pow(steps))
            .min(self.max);
        jittered(exp)
    }
}

/// When to try again, and when to stop: the top-level `delivery:` section,
/// or a sink's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// No retry once the first attempt is this old.
    pub max_age: Duration,
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 30,
            max_age: Duration::from_secs(24 * 3600),
            backoff: Backoff::doubling(Duration::from_secs(5), Duration::from_secs(3600)),
        }
    }
}

impl RetryPolicy {
    /// Whether `attempts` failed attempts over `age` are enough.
    pub fn gives_up(&self, attempts: u32, age: Duration) -> bool {
        attempts >= self.max_attempts || age >= self.max_age
    }

    /// The wait after `attempts` failed attempts; the other side's own hint
    /// (already clamped) wins, but never past the backoff's `max`.
    pub fn wait(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(after) => after.min(self.backoff.max),
            None => self.backoff.delay(attempts),
        }
    }
}

/// ±20 %.
pub(crate) fn jittered(base: Duration) -> Duration {
    let factor = rand::rng().random_range(0.8..=1.2);
    // `mul_f64` panics past `Duration::MAX`; a wait that long is `MAX`.
    Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_of_the_longest_wait_does_not_overflow() {
        for _ in 0..100 {
            assert!(jittered(Duration::MAX) >= Duration::MAX.mul_f64(0.79));
        }
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }

    #[test]
    fn waits_double_up_to_the_cap() {
        let b = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(5));
        let within = |d: Duration, base: u64| {
            d >= Duration::from_secs(base).mul_f64(0.8)
                && d <= Duration::from_secs(base).mul_f64(1.2)
        };
        for (retry, base) in [(1, 1), (2, 2), (3, 4), (4, 5), (100, 5), (u32::MAX, 5)] {
            assert!(within(b.delay(retry), base), "retry {retry}");
        }
    }
}
