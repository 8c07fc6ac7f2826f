//! The per-minute request budget. A rolling window: a call is refused when
//! the budget's worth of calls were accepted in the last 60 seconds, and
//! `Retry-After` says when the oldest of them leaves the window. Refused
//! calls do not count, so a client that waits as told gets through.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: Option<u32>,
    accepted: VecDeque<Instant>,
}

impl RateLimiter {
    pub(crate) fn new(limit: Option<u32>) -> RateLimiter {
        RateLimiter {
            limit: limit.filter(|n| *n > 0),
            accepted: VecDeque::new(),
        }
    }

    pub(crate) fn limit(&self) -> Option<u32> {
        self.limit
    }

    /// `None` or 0 removes the budget. Calls already counted stay counted.
    pub(crate) fn set_limit(&mut self, limit: Option<u32>) {
        self.limit = limit.filter(|n| *n > 0);
    }

    /// Count a call, or say in how many whole seconds (at least 1) to retry.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<(), u64> {
        while self
            .accepted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.accepted.pop_front();
        }
        let Some(limit) = self.limit else {
            // Unlimited: nothing to remember.
            self.accepted.clear();
            return Ok(());
        };
        if self.accepted.len() < limit as usize {
            self.accepted.push_back(now);
            return Ok(());
        }
        let frees_at = self.accepted.front().map_or(now, |t| *t + WINDOW);
        let wait = frees_at.saturating_duration_since(now);
        let whole_seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(whole_seconds.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_budget_and_frees_after_a_minute() {
        let mut limiter = RateLimiter::new(Some(2));
        let t0 = Instant::now();
        assert_eq!(limiter.admit(t0), Ok(()));
        assert_eq!(limiter.admit(t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(limiter.admit(t0 + Duration::from_secs(20)), Err(40));
        assert_eq!(limiter.admit(t0 + Duration::from_millis(59_500)), Err(1));
        assert_eq!(limiter.admit(t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn no_limit_admits_everything() {
        let mut limiter = RateLimiter::new(Some(0));
        let t0 = Instant::now();
        assert!((0..1000).all(|_| limiter.admit(t0).is_ok()));
        limiter.set_limit(Some(1));
        assert_eq!(limiter.admit(t0), Ok(()));
        assert!(limiter.admit(t0).is_err());
    }
}
