//! The log of every change the simulator made to an order, by churn or by an
//! admin call, oldest first: what `GET /_sim/changes` serves and what tests
//! compare notifications with.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::Serialize;

use super::diff::LeafChange;
use super::state::Api;

/// Entries beyond this drop the oldest: churn running for days must not grow
/// memory without bound. Sequence numbers keep counting, so `since` still
/// works and a gap shows that entries were dropped.
const MAX_ENTRIES: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ChangeKind {
    Created,
    Changed,
    Removed,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChangeEntry {
    pub(crate) seq: u64,
    pub(crate) time: String,
    pub(crate) api: &'static str,
    pub(crate) id: String,
    pub(crate) kind: ChangeKind,
    pub(crate) changes: Vec<LeafChange>,
}

#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    entries: VecDeque<ChangeEntry>,
    last_seq: u64,
}

impl ChangeLog {
    pub(crate) fn record(
        &mut self,
        api: Api,
        id: &str,
        kind: ChangeKind,
        changes: Vec<LeafChange>,
    ) {
        self.last_seq += 1;
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(ChangeEntry {
            seq: self.last_seq,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            api: api.name(),
            id: id.to_owned(),
            kind,
            changes,
        });
    }

    /// Entries with a sequence number above `since` (all with `since` 0).
    pub(crate) fn since(&self, since: u64) -> Vec<&ChangeEntry> {
        // Sequence numbers are consecutive, so the first wanted entry's
        // position is arithmetic.
        let first = self.entries.front().map_or(1, |entry| entry.seq);
        let skip = since.saturating_add(1).saturating_sub(first);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.entries.iter().skip(skip).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_returns_later_entries() {
        let mut log = ChangeLog::default();
        for id in ["a", "b", "c"] {
            log.record(Api::OrderTracking, id, ChangeKind::Created, Vec::new());
        }
        let ids = |since| {
            log.since(since)
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(0), vec!["a", "b", "c"]);
        assert_eq!(ids(2), vec!["c"]);
        assert!(ids(3).is_empty());
        assert!(ids(u64::MAX).is_empty());
    }
}
