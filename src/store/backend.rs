//! [`StoreBackend`]: what a store engine does for orderwatch, so that the
//! [`Store`](super::Store) handle can hold sled or PostgreSQL and every
//! caller stays as it is.
//!
//! The methods are the ones `Store` has always exposed, synchronous because
//! sled is embedded and its callers (the pollers, the dispatcher, the API's
//! handlers, the CLI) were written against a store that answers at once. A
//! backend that talks to a server answers over a channel from its own
//! thread instead (`postgres/runner.rs` says how), which works from any
//! thread, async or not.
//!
//! The contract every backend keeps (tests/it/store_contract.rs runs one
//! suite against each): a [`Commit`] writes its snapshots, outbox entries,
//! event log records, baseline mark, sync state and health record together
//! or not at all; one order's entries at one sink leave in sequence order
//! ([`StoreBackend::is_first_of_order`]); an entry is removed only when it
//! was delivered or dead-lettered; each event's body is stored once and
//! kept while the log or an entry needs it; the log keeps the last
//! [`EVENT_LOG_LEN`](super::EVENT_LOG_LEN) sequence numbers; the timer
//! index moves with the snapshots of its commit, and a fired timer with
//! its event (refused as [`StoreError::TimerMoved`] when a poll changed
//! the order's record in between).

use super::hold::HeldEntry;
use super::{
    ChangePosition, ChangedOrder, Commit, DeadLetter, DueEntry, DueTimer, IndexBuild, Leadership,
    NewDigest, OutboxEntry, OverdueOrder, Snapshot, SourceHealth, StoreError, SyncState,
    TimelineEntry,
};
use std::time::Duration;

/// A stream of stored records, read lazily (a source's snapshots may be
/// many more than fit comfortably in memory at once).
pub(crate) type Records<T> = Box<dyn Iterator<Item = Result<T, StoreError>>>;

pub(crate) trait StoreBackend: Send + Sync {
    /// Make what was written durable (sled flushes; a server's commits
    /// already are).
    fn flush(&self) -> Result<(), StoreError>;

    fn has_baseline(&self, source: &str) -> Result<bool, StoreError>;
    fn sync_state(&self, source: &str) -> Result<SyncState, StoreError>;
    fn source_health(&self, source: &str) -> Result<SourceHealth, StoreError>;

    fn snapshot(&self, source: &str, order_id: &str) -> Result<Option<Snapshot>, StoreError>;
    /// The stored hash and listed flag, for the quiet-cycle comparison.
    fn snapshot_hash(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Option<(u128, bool)>, StoreError>;
    /// Every snapshot of a source, in byte order of the order ids.
    fn snapshots_of(&self, source: &str) -> Records<(String, Snapshot)>;
    /// The snapshots of a source whose ids come after `after`, in byte order.
    fn snapshots_of_after(&self, source: &str, after: &str) -> Records<(String, Snapshot)>;
    /// Every order, latest change first (ties: source, then id, both
    /// descending), strictly below `below` when given.
    fn orders_by_change(&self, below: Option<&ChangePosition>) -> Records<ChangedOrder>;
    /// The sources that have snapshots, in name order.
    fn sources(&self) -> Result<Vec<String>, StoreError>;
    /// The sinks that have entries waiting, in name order.
    fn outbox_sinks(&self) -> Result<Vec<String>, StoreError>;
    /// Ids of a source still listed but not `seen`.
    fn listed_ids_except(
        &self,
        source: &str,
        seen: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError>;

    /// Everything of one page of a poll, in one transaction.
    fn commit(&self, commit: &Commit) -> Result<(), StoreError>;

    fn due(&self, sink: &str, now_ms: u64, limit: usize) -> Result<Vec<DueEntry>, StoreError>;
    fn next_due(&self, sink: &str) -> Result<Option<u64>, StoreError>;
    fn is_first_of_order(&self, entry: &OutboxEntry) -> Result<bool, StoreError>;
    /// [`StoreBackend::is_first_of_order`] of each of `entries`, in their
    /// order: the dispatcher asks for a whole `due` batch at once, which a
    /// server answers in one round trip rather than one per entry.
    fn are_first_of_order(&self, entries: &[&OutboxEntry]) -> Result<Vec<bool>, StoreError> {
        entries.iter().map(|e| self.is_first_of_order(e)).collect()
    }
    fn complete(&self, due: &DueEntry) -> Result<(), StoreError>;
    /// Delivered, each of `dues`, in one transaction.
    fn complete_all(&self, dues: &[DueEntry]) -> Result<(), StoreError>;
    fn reschedule(
        &self,
        due: &DueEntry,
        entry: &OutboxEntry,
        due_ms: u64,
    ) -> Result<(), StoreError>;
    fn bury(&self, due: &DueEntry, entry: &OutboxEntry, reason: &str) -> Result<(), StoreError>;
    fn outbox_depth(&self, sink: &str) -> Result<u64, StoreError>;

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
    fn dead_letter_count(&self, sink: &str) -> Result<u64, StoreError>;
    fn replay(&self, ids: Option<&[String]>) -> Result<usize, StoreError>;

    fn timeline(&self, source: &str, order_id: &str) -> Result<Vec<TimelineEntry>, StoreError>;
    /// The logged events below sequence `before`, newest first.
    fn events_before(&self, before: u64) -> Records<(u64, String)>;

    /// Armed timers due at `now_ms`, earliest first, at most `limit`.
    fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<DueTimer>, StoreError>;
    /// When the earliest armed timer fires (unix ms).
    fn next_timer(&self) -> Result<Option<u64>, StoreError>;
    /// The settings a source's index was built with.
    fn timer_settings(&self, source: &str) -> Result<Option<String>, StoreError>;
    /// The sources that have timer settings recorded, in name order.
    fn timer_sources(&self) -> Result<Vec<String>, StoreError>;
    /// Build a source's index again from its snapshots; the settings are
    /// recorded last, so a rebuild cut short is done again.
    fn rebuild_timers(
        &self,
        source: &str,
        build: &IndexBuild<'_>,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// Open orders past their date that the baseline (or a rebuild) found
    /// so already, never announced.
    fn overdue_orders(&self, source: &str, now_ms: u64) -> Result<Vec<OverdueOrder>, StoreError>;

    /// The events kept for `sink`'s digest committed before `before_ms`,
    /// oldest first, with their bodies.
    fn held_for_digest(&self, sink: &str, before_ms: u64) -> Result<Vec<HeldEntry>, StoreError>;
    /// When the first event kept for `sink`'s digest was committed.
    fn oldest_kept_for_digest(&self, sink: &str) -> Result<Option<u64>, StoreError>;
    /// Until `sink`'s first digest is made, since when it has waited
    /// (`record`: note `now_ms` as that time when there is none yet).
    fn first_digest_since(
        &self,
        sink: &str,
        now_ms: u64,
        record: bool,
    ) -> Result<Option<u64>, StoreError>;
    /// `sink`'s first digest is still to come: look again from `from_ms`.
    fn first_digest_from(&self, sink: &str, from_ms: u64) -> Result<(), StoreError>;
    /// How many events are kept for `sink`'s digest.
    fn kept_for_digest(&self, sink: &str) -> Result<u64, StoreError>;
    /// The kept events of `digest` turned into one outbox entry, in one
    /// transaction; `false` (nothing changed) when another call took them.
    fn make_digest(&self, digest: &NewDigest) -> Result<bool, StoreError>;

    /// Let go of every source this process leads (on shutdown, so another
    /// replica takes over at once rather than after the lease).
    fn release(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Take or keep the lead of `source` for `lease`: only its leader
    /// polls it. A store one process holds alone (sled) always leads.
    fn lead(&self, _source: &str, _lease: Duration) -> Result<Leadership, StoreError> {
        Ok(Leadership::Leads)
    }

    /// The most recent events, newest first, as stored JSON.
    fn recent_events(&self) -> Records<String> {
        Box::new(
            self.events_before(u64::MAX)
                .map(|item| item.map(|(_, json)| json)),
        )
    }
}

impl StoreBackend for super::SledStore {
    fn flush(&self) -> Result<(), StoreError> {
        super::SledStore::flush(self)
    }
    fn has_baseline(&self, source: &str) -> Result<bool, StoreError> {
        super::SledStore::has_baseline(self, source)
    }
    fn sync_state(&self, source: &str) -> Result<SyncState, StoreError> {
        super::SledStore::sync_state(self, source)
    }
    fn source_health(&self, source: &str) -> Result<SourceHealth, StoreError> {
        super::SledStore::source_health(self, source)
    }
    fn snapshot(&self, source: &str, order_id: &str) -> Result<Option<Snapshot>, StoreError> {
        super::SledStore::snapshot(self, source, order_id)
    }
    fn snapshot_hash(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Option<(u128, bool)>, StoreError> {
        super::SledStore::snapshot_hash(self, source, order_id)
    }
    fn snapshots_of(&self, source: &str) -> Records<(String, Snapshot)> {
        Box::new(super::SledStore::snapshots_of(self, source))
    }
    fn snapshots_of_after(&self, source: &str, after: &str) -> Records<(String, Snapshot)> {
        Box::new(super::SledStore::snapshots_of_after(self, source, after))
    }
    fn sources(&self) -> Result<Vec<String>, StoreError> {
        super::SledStore::sources(self)
    }
    fn outbox_sinks(&self) -> Result<Vec<String>, StoreError> {
        super::SledStore::outbox_sinks(self)
    }
    fn listed_ids_except(
        &self,
        source: &str,
        seen: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        super::SledStore::listed_ids_except(self, source, seen)
    }
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        super::SledStore::commit(self, commit)
    }
    fn due(&self, sink: &str, now_ms: u64, limit: usize) -> Result<Vec<DueEntry>, StoreError> {
        super::SledStore::due(self, sink, now_ms, limit)
    }
    fn next_due(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        super::SledStore::next_due(self, sink)
    }
    fn is_first_of_order(&self, entry: &OutboxEntry) -> Result<bool, StoreError> {
        super::SledStore::is_first_of_order(self, entry)
    }
    fn complete(&self, due: &DueEntry) -> Result<(), StoreError> {
        super::SledStore::complete(self, due)
    }
    fn complete_all(&self, dues: &[DueEntry]) -> Result<(), StoreError> {
        super::SledStore::complete_all(self, dues)
    }
    fn orders_by_change(&self, below: Option<&ChangePosition>) -> Records<ChangedOrder> {
        Box::new(super::SledStore::orders_by_change(self, below))
    }
    fn reschedule(
        &self,
        due: &DueEntry,
        entry: &OutboxEntry,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        super::SledStore::reschedule(self, due, entry, due_ms)
    }
    fn bury(&self, due: &DueEntry, entry: &OutboxEntry, reason: &str) -> Result<(), StoreError> {
        super::SledStore::bury(self, due, entry, reason)
    }
    fn outbox_depth(&self, sink: &str) -> Result<u64, StoreError> {
        super::SledStore::outbox_depth(self, sink)
    }
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        super::SledStore::dead_letters(self)
    }
    fn dead_letter_count(&self, sink: &str) -> Result<u64, StoreError> {
        super::SledStore::dead_letter_count(self, sink)
    }
    fn replay(&self, ids: Option<&[String]>) -> Result<usize, StoreError> {
        super::SledStore::replay(self, ids)
    }
    fn timeline(&self, source: &str, order_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        super::SledStore::timeline(self, source, order_id)
    }
    fn events_before(&self, before: u64) -> Records<(u64, String)> {
        Box::new(super::SledStore::events_before(self, before))
    }
    fn recent_events(&self) -> Records<String> {
        Box::new(super::SledStore::recent_events(self))
    }
    fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<DueTimer>, StoreError> {
        super::SledStore::due_timers(self, now_ms, limit)
    }
    fn next_timer(&self) -> Result<Option<u64>, StoreError> {
        super::SledStore::next_timer(self)
    }
    fn timer_settings(&self, source: &str) -> Result<Option<String>, StoreError> {
        super::SledStore::timer_settings(self, source)
    }
    fn timer_sources(&self) -> Result<Vec<String>, StoreError> {
        super::SledStore::timer_sources(self)
    }
    fn rebuild_timers(
        &self,
        source: &str,
        build: &IndexBuild<'_>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        super::SledStore::rebuild_timers(self, source, build, now_ms)
    }
    fn overdue_orders(&self, source: &str, now_ms: u64) -> Result<Vec<OverdueOrder>, StoreError> {
        super::SledStore::overdue_orders(self, source, now_ms)
    }
    fn held_for_digest(&self, sink: &str, before_ms: u64) -> Result<Vec<HeldEntry>, StoreError> {
        super::SledStore::held_for_digest(self, sink, before_ms)
    }
    fn oldest_kept_for_digest(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        super::SledStore::oldest_kept_for_digest(self, sink)
    }
    fn first_digest_since(
        &self,
        sink: &str,
        now_ms: u64,
        record: bool,
    ) -> Result<Option<u64>, StoreError> {
        super::SledStore::first_digest_since(self, sink, now_ms, record)
    }
    fn first_digest_from(&self, sink: &str, from_ms: u64) -> Result<(), StoreError> {
        super::SledStore::first_digest_from(self, sink, from_ms)
    }
    fn kept_for_digest(&self, sink: &str) -> Result<u64, StoreError> {
        super::SledStore::kept_for_digest(self, sink)
    }
    fn make_digest(&self, digest: &NewDigest) -> Result<bool, StoreError> {
        super::SledStore::make_digest(self, digest)
    }
}
