//! One source's leadership among replicas sharing a postgres store, as its
//! poll loop asks before each cycle: only the leader polls (a follower's
//! cycle is skipped, and counts as ready), a change of leader is logged,
//! and `orderwatch_leader{source}` is 1 where it leads, 0 where it follows.
//!
//! The lease is two intervals, but at most one interval and [`MAX_SLACK`]
//! and at least [`MIN_LEASE`]: the leader renews it every cycle and with
//! every commit, so it holds it through a slow cycle, and a leader that
//! stops or is cut off is replaced within its lease plus one interval of
//! the follower. Short, because an orderwatch restarted after a crash is a
//! new holder and waits for its old lease to run out too. A store one
//! process holds alone (sled) always leads, and says nothing.
//!
//! The database fences the commits of a leader that lost its lease, but
//! not its calls to the API: a leader paused mid-cycle (SIGSTOP, a
//! suspended VM) would wake and send the rest of its cycle's calls while
//! another replica polls. So the leader also keeps, by its own monotonic
//! clock, when the lease it last took or renewed runs out
//! ([`LeaseClock`]), and past that moment its source client asks the store
//! again before its next call: a slow cycle nobody took over renews the
//! lease and goes on; a leader replaced meanwhile makes no further call,
//! and gives the cycle up.

use crate::metrics::LEADER;
use crate::store::{Leadership, Store, StoreError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::info;

const MIN_LEASE: Duration = Duration::from_secs(5);
const MAX_SLACK: Duration = Duration::from_secs(60);

/// When the lease this process last took or renewed runs out, by its own
/// monotonic clock: counted from before the query that took or renewed it
/// was sent, so never later than the database's end of the same lease.
/// Unbounded until a shared store's lead was asked for: a store one
/// process holds alone has no lease to run out.
#[derive(Default)]
pub struct LeaseClock {
    /// The end of the lease, and its length for the renewals.
    held: Mutex<Option<(Instant, Duration)>>,
    /// Asks the store for the lead again: when it was asked, if it leads.
    ask: Mutex<Option<Asker>>,
}

type Asker = Box<dyn Fn() -> Option<Instant> + Send + Sync>;

impl LeaseClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Duration)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, until: Instant, lease: Duration) {
        *self.lock() = Some((until, lease));
    }

    /// A commit that went out at `at` renewed the lease (the database
    /// renews it in every commit's transaction).
    pub fn renewed(&self, at: Instant) {
        if let Some((until, lease)) = self.lock().as_mut() {
            *until = (*until).max(at + *lease);
        }
    }

    /// Whether the lease has run out by now: no call to the source may go
    /// out, another replica may be polling it.
    pub fn ran_out(&self) -> bool {
        self.lock()
            .is_some_and(|(until, _)| Instant::now() >= until)
    }

    /// Whether a call to the source may go out now: the lease holds by this
    /// clock, or, asked again, the store renewed it (nobody took over).
    pub fn may_call(&self) -> bool {
        if !self.ran_out() {
            return true;
        }
        let asked = {
            let ask = self.ask.lock().unwrap_or_else(|p| p.into_inner());
            ask.as_ref().and_then(|ask| ask())
        };
        let Some(asked) = asked else {
            return false;
        };
        if let Some((until, lease)) = self.lock().as_mut() {
            *until = asked + *lease;
        }
        !self.ran_out()
    }
}

pub struct Leader {
    source: String,
    store: Store,
    lease: Duration,
    clock: Arc<LeaseClock>,
    /// What the last check found, to log only changes.
    last: Mutex<Option<Leadership>>,
}

impl Leader {
    /// The leader of `source`, keeping the end of its lease on `clock`
    /// (the one the source's client checks before each call).
    pub fn new(source: &str, interval: Duration, clock: Arc<LeaseClock>, store: &Store) -> Leader {
        let lease = (interval * 2).min(interval + MAX_SLACK).max(MIN_LEASE);
        let (owned, asked_of) = (source.to_owned(), store.clone());
        let ask: Asker = Box::new(move || {
            let asked = Instant::now();
            matches!(asked_of.lead(&owned, lease), Ok(Leadership::Leads)).then_some(asked)
        });
        *clock.ask.lock().unwrap_or_else(|p| p.into_inner()) = Some(ask);
        Leader {
            source: source.to_owned(),
            store: store.clone(),
            lease,
            clock,
            last: Mutex::new(None),
        }
    }

    /// Whether this process polls the source this cycle.
    pub fn leads(&self) -> Result<bool, StoreError> {
        let store = &self.store;
        let asked = Instant::now();
        let now = store.lead(&self.source, self.lease)?;
        let leads = now == Leadership::Leads;
        if store.is_shared() {
            // A follower's lease ran out the moment it asked.
            let until = if leads { asked + self.lease } else { asked };
            self.clock.set(until, self.lease);
        }
        ::metrics::gauge!(LEADER, "source" => self.source.clone()).set(if leads {
            1.0
        } else {
            0.0
        });
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref() != Some(&now) && store.is_shared() {
            match &now {
                Leadership::Leads => {
                    info!(source = %self.source, "this orderwatch leads source `{}`: it polls it", self.source)
                }
                Leadership::Follows { holder } => info!(
                    source = %self.source,
                    leader = %holder,
                    "source `{}` is polled by another orderwatch ({holder}): this one follows",
                    self.source
                ),
            }
        }
        *last = Some(now);
        Ok(leads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_clock_runs_out_unless_renewed_or_asked_again() {
        let clock = LeaseClock::default();
        assert!(!clock.ran_out(), "unbounded until a lead was taken");
        clock.renewed(Instant::now());
        assert!(!clock.ran_out(), "a renewal bounds nothing by itself");
        let lease = Duration::from_millis(200);
        let taken = Instant::now();
        clock.set(taken + lease, lease);
        assert!(!clock.ran_out());
        std::thread::sleep(Duration::from_millis(150));
        clock.renewed(Instant::now());
        std::thread::sleep(Duration::from_millis(100));
        assert!(!clock.ran_out(), "renewed by a commit");
        // A renewal counted from before the last one moves nothing back.
        clock.renewed(taken);
        assert!(!clock.ran_out());
        std::thread::sleep(Duration::from_millis(150));
        assert!(clock.ran_out());
        assert!(!clock.may_call(), "nobody to ask: no call");
        // Asked again, the store renews the lease: the call may go out.
        *clock.ask.lock().unwrap() = Some(Box::new(|| Some(Instant::now())));
        assert!(clock.may_call());
        assert!(!clock.ran_out(), "renewed from when it was asked");
        clock.set(Instant::now(), lease);
        assert!(clock.ran_out(), "a follower's lease is over at once");
        // Another replica leads now: no call.
        *clock.ask.lock().unwrap() = Some(Box::new(|| None));
        assert!(!clock.may_call());
    }
}
