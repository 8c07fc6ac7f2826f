//! The per-minute request budget of one source.
//!
//! Orange enforces a per-minute threshold ("spike arrest") and warns that
//! applications making too many mishandled calls may lose access. Every call,
//! token requests included, takes a slot here first; a rate-limit answer also
//! closes the budget until the time Orange asked for.
//!
//! The lock is only held to look at the slots, never across a wait: a
//! rate-limit answer must close the budget for every caller at once, even
//! while others are waiting for a slot.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);
const NANOS_PER_SECOND: u64 = 1_000_000_000;

pub(crate) struct RequestBudget {
    source: String,
    per_minute: usize,
    state: Mutex<BudgetState>,
    /// Time callers waited since [`RequestBudget::take_waited`] last asked:
    /// for a free slot, and while a rate-limit answer closed the budget.
    waited_for_slot_nanos: AtomicU64,
    waited_closed_nanos: AtomicU64,
    /// Time callers ever waited, for the whole-seconds metric.
    total_waited_nanos: AtomicU64,
}

struct BudgetState {
    /// Start times of the calls made in the last minute, oldest first.
    recent: VecDeque<Instant>,
    /// No call before this (set by a rate-limit answer).
    closed_until: Option<Instant>,
}

impl RequestBudget {
    pub fn new(source: &str, per_minute: u32) -> Self {
        RequestBudget {
            source: source.to_owned(),
            per_minute: per_minute.max(1) as usize,
            state: Mutex::new(BudgetState {
                recent: VecDeque::new(),
                closed_until: None,
            }),
            waited_for_slot_nanos: AtomicU64::new(0),
            waited_closed_nanos: AtomicU64::new(0),
            total_waited_nanos: AtomicU64::new(0),
        }
    }

    pub fn per_minute(&self) -> usize {
        self.per_minute
    }

    /// Wait for a slot, then take it.
    pub async fn acquire(&self) {
        while let Some((wake, closed)) = self.try_take() {
            let slept = Instant::now();
            tokio::time::sleep_until(wake).await;
            self.count_wait(slept.elapsed(), closed);
        }
    }

    /// Take a slot now, or say when to look again (and whether because a
    /// rate-limit answer closed the budget).
    fn try_take(&self) -> Option<(Instant, bool)> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(until) = s.closed_until {
            if until > now {
                return Some((until, true));
            }
            s.closed_until = None;
        }
        while s
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            s.recent.pop_front();
        }
        if s.recent.len() < self.per_minute {
            s.recent.push_back(now);
            return None;
        }
        let oldest = s.recent.front().copied().unwrap_or(now);
        Some((oldest + WINDOW, false))
    }

    /// Make no call for `wait` (a rate-limit answer's `Retry-After` or
    /// backoff, already clamped by the caller).
    pub fn close_for(&self, wait: Duration) {
        let now = Instant::now();
        let until = now
            .checked_add(wait)
            .unwrap_or(now + crate::clamp::MAX_RETRY_AFTER);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.closed_until.is_none_or(|u| u < until) {
            s.closed_until = Some(until);
        }
    }

    /// How long callers waited since the last call of this: for a free
    /// slot, and while the budget was closed by a rate-limit answer.
    pub fn take_waited(&self) -> Waited {
        let take = |n: &AtomicU64| Duration::from_nanos(n.swap(0, Ordering::Relaxed));
        Waited {
            for_slot: take(&self.waited_for_slot_nanos),
            closed: take(&self.waited_closed_nanos),
        }
    }

    fn count_wait(&self, waited: Duration, closed: bool) {
        if waited.is_zero() {
            return;
        }
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        add_saturating(
            if closed {
                &self.waited_closed_nanos
            } else {
                &self.waited_for_slot_nanos
            },
            nanos,
        );
        // The metric counts whole seconds; the fractions add up here.
        let before = add_saturating(&self.total_waited_nanos, nanos);
        let after = before.saturating_add(nanos);
        let seconds = after / NANOS_PER_SECOND - before / NANOS_PER_SECOND;
        if seconds > 0 {
            metrics::counter!(crate::metrics::API_THROTTLED_SECONDS_TOTAL, "source" => self.source.clone())
                .increment(seconds);
        }
    }
}

/// Add to a counter that stops at its maximum instead of wrapping to zero;
/// the value before.
fn add_saturating(counter: &AtomicU64, n: u64) -> u64 {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_add(n))
        })
        .unwrap_or_else(|v| v)
}

/// Time spent waiting for the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Waited {
    /// For a free slot: the budget's own per-minute limit.
    pub for_slot: Duration,
    /// While a rate-limit answer of Orange's closed the budget.
    pub closed: Duration,
}

impl Waited {
    pub fn total(&self) -> Duration {
        self.for_slot.saturating_add(self.closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn the_budget_spreads_calls_over_the_minute() {
        let budget = RequestBudget::new("s", 2);
        let start = Instant::now();
        budget.acquire().await;
        budget.acquire().await;
        assert_eq!(Instant::now(), start);
        assert_eq!(budget.take_waited(), Waited::default());
        budget.acquire().await;
        assert!(Instant::now() >= start + WINDOW);
        let waited = budget.take_waited();
        assert!(waited.for_slot >= WINDOW, "{waited:?}");
        assert_eq!(waited.closed, Duration::ZERO);
        assert_eq!(budget.take_waited(), Waited::default());
    }

    #[tokio::test(start_paused = true)]
    async fn closing_delays_the_next_call() {
        let budget = RequestBudget::new("s", 100);
        let start = Instant::now();
        budget.close_for(Duration::from_secs(7));
        budget.acquire().await;
        assert!(Instant::now() >= start + Duration::from_secs(7));
        let waited = budget.take_waited();
        assert!(waited.closed >= Duration::from_secs(7), "{waited:?}");
        assert_eq!(waited.for_slot, Duration::ZERO);
    }

    /// A caller waiting for a slot must not keep a rate-limit answer from
    /// closing the budget for everyone: the close takes effect at once, and
    /// the waiting caller honours it too.
    #[tokio::test(start_paused = true)]
    async fn closing_does_not_wait_for_callers_waiting_for_a_slot() {
        let budget = Arc::new(RequestBudget::new("s", 1));
        let start = Instant::now();
        budget.acquire().await;
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget.acquire().await;
                Instant::now()
            })
        };
        // Let the waiter start waiting for the next slot (a minute away).
        tokio::task::yield_now().await;
        budget.close_for(Duration::from_secs(300));
        assert!(
            Instant::now() < start + Duration::from_secs(1),
            "close_for returned only after {:?}",
            Instant::now() - start
        );
        let served = waiter.await.unwrap();
        assert!(served >= start + Duration::from_secs(300), "{served:?}");
    }

    #[test]
    fn absurd_waits_do_not_overflow() {
        let budget = RequestBudget::new("s", 1);
        budget.close_for(Duration::MAX);
        budget.count_wait(Duration::MAX, true);
        budget.count_wait(Duration::MAX, false);
        budget.count_wait(Duration::MAX, false);
        let waited = budget.take_waited();
        assert_eq!(waited.for_slot, Duration::from_nanos(u64::MAX));
        assert_eq!(waited.closed, Duration::from_nanos(u64::MAX));
    }
}
