//! The per-minute request budget of one source.
//!
//! Orange enforces a per-minute threshold ("spike arrest") and warns that
//! applications making too many mishandled calls may lose access. Every call,
//! token requests included, takes a slot here first; a rate-limit answer also
//! closes the budget until the time Orange asked for.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

pub(crate) struct RequestBudget {
    per_minute: usize,
    state: Mutex<BudgetState>,
}

struct BudgetState {
    /// Start times of the calls made in the last minute, oldest first.
    recent: VecDeque<Instant>,
    /// No call before this (set by a rate-limit answer).
    closed_until: Option<Instant>,
}

impl RequestBudget {
    pub fn new(per_minute: u32) -> Self {
        RequestBudget {
            per_minute: per_minute.max(1) as usize,
            state: Mutex::new(BudgetState {
                recent: VecDeque::new(),
                closed_until: None,
            }),
        }
    }

    /// Wait for a slot, then take it. The lock is held while waiting, so
    /// callers are served in turn.
    pub async fn acquire(&self) {
        let mut s = self.state.lock().await;
        loop {
            let now = Instant::now();
            if let Some(until) = s.closed_until {
                if until > now {
                    tokio::time::sleep_until(until).await;
                    continue;
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
                return;
            }
            let oldest = s.recent.front().copied().unwrap_or(now);
            tokio::time::sleep_until(oldest + WINDOW).await;
        }
    }

    /// Make no call for `wait` (a rate-limit answer's `Retry-After` or backoff).
    pub async fn close_for(&self, wait: Duration) {
        let mut s = self.state.lock().await;
        let until = Instant::now() + wait;
        if s.closed_until.is_none_or(|u| u < until) {
            s.closed_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_spreads_calls_over_the_minute() {
        let budget = RequestBudget::new(2);
        let start = Instant::now();
        budget.acquire().await;
        budget.acquire().await;
        assert_eq!(Instant::now(), start);
        budget.acquire().await;
        assert!(Instant::now() >= start + WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_delays_the_next_call() {
        let budget = RequestBudget::new(100);
        let start = Instant::now();
        budget.close_for(Duration::from_secs(7)).await;
        budget.acquire().await;
        assert!(Instant::now() >= start + Duration::from_secs(7));
    }
}
