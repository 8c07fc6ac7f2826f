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

use crate::metrics::LEADER;
use crate::store::{Leadership, Store, StoreError};
use std::sync::Mutex;
use std::time::Duration;
use tracing::info;

const MIN_LEASE: Duration = Duration::from_secs(5);
const MAX_SLACK: Duration = Duration::from_secs(60);

pub struct Leader {
    source: String,
    lease: Duration,
    /// What the last check found, to log only changes.
    last: Mutex<Option<Leadership>>,
}

impl Leader {
    pub fn new(source: &str, interval: Duration) -> Leader {
        Leader {
            source: source.to_owned(),
            lease: (interval * 2).min(interval + MAX_SLACK).max(MIN_LEASE),
            last: Mutex::new(None),
        }
    }

    /// Whether this process polls the source this cycle.
    pub fn leads(&self, store: &Store) -> Result<bool, StoreError> {
        let now = store.lead(&self.source, self.lease)?;
        let leads = now == Leadership::Leads;
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
