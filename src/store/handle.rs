//! [`Store`], the handle every part of orderwatch holds, and how it gets
//! over a disk that failed (above all, one that filled up).
//!
//! Once one of its writes to disk failed, sled 0.34 refuses every later
//! write of that open database, for good: a daemon would stay broken after
//! the space came back. So on an I/O error the handle lets go of the open
//! database and opens the store again (at most every [`REOPEN_EVERY`]) on
//! the next call; until that works, each call fails with the plain reason.
//! Opening again is what a restart does: sled recovers what reached the
//! disk, and writes that had not (a commit, a removed outbox entry, in the
//! moments before the failure) are gone as after a crash. The next poll
//! then sees the same changes again, under the same event ids, and an entry
//! whose removal was lost is delivered once more, under the same id.
//!
//! A store on a server (postgres) is held for good instead: its pool
//! reconnects by itself, so the handle only notes when it cannot be reached
//! and when it can again, for `/healthz` and the log.

use super::backend::StoreBackend;
use super::{
    ChangePosition, ChangedOrder, Commit, DeadLetter, DueEntry, LOCK_GRACE, Leadership,
    OutboxEntry, SledStore, Snapshot, SourceHealth, StoreError, SyncState, TimelineEntry,
    refuse_files_in_the_way,
};
use crate::config::StoreConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tracing::{error, info, warn};

/// How often a failed store is opened again.
const REOPEN_EVERY: Duration = Duration::from_secs(2);
/// A reopen waits this long for the dropped database's lock (sled's flusher
/// lets go a moment after the last handle), then tries again later.
const REOPEN_LOCK_GRACE: Duration = Duration::from_millis(500);

/// The store, shared by clones; opens itself again after a disk failure.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// `None` after a disk failure, until an open works again.
    open: RwLock<Option<Arc<SledStore>>>,
    health: Mutex<Health>,
    /// A store on a server, which reconnects by itself: held for good, and
    /// `open` stays empty.
    server: Option<Arc<dyn StoreBackend>>,
}

#[derive(Default)]
struct Health {
    failure: Option<StoreFailure>,
    /// Whether the last failure was a full disk.
    disk_full: bool,
    last_reopen: Option<Instant>,
}

impl Health {
    /// The error to answer while the store is still failing.
    fn last_error(&self) -> StoreError {
        if self.disk_full {
            return StoreError::DiskFull;
        }
        StoreError::Unavailable(
            self.failure
                .as_ref()
                .map_or_else(String::new, |f| f.error.clone()),
        )
    }
}

/// Why the store cannot be used right now, for `/healthz` and `/readyz`.
#[derive(Debug, Clone)]
pub struct StoreFailure {
    pub since: SystemTime,
    pub error: String,
}

impl Store {
    /// Open (or create) the store in `dir`: `run` and `once`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let opened = SledStore::open(dir, LOCK_GRACE)?;
        Ok(Store {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                open: RwLock::new(Some(Arc::new(opened))),
                health: Mutex::new(Health::default()),
                server: None,
            }),
        })
    }

    /// Open (or create) the store the config names: sled in `state_dir`,
    /// or postgres at `store.url` (its schema brought up to date).
    pub fn open_configured(store: &StoreConfig, state_dir: &Path) -> Result<Store, StoreError> {
        match store {
            StoreConfig::Sled => Store::open(state_dir),
            StoreConfig::Postgres { url } => Store::open_postgres(url.expose(), true),
        }
    }

    /// [`Store::open_existing`] for the store the config names.
    pub fn open_existing_configured(
        store: &StoreConfig,
        state_dir: &Path,
    ) -> Result<Store, StoreError> {
        match store {
            StoreConfig::Sled => Store::open_existing(state_dir),
            StoreConfig::Postgres { url } => Store::open_postgres(url.expose(), false),
        }
    }

    /// The postgres store at `url`; `create` sets its schema up in a
    /// database that has none, otherwise such a database is refused.
    pub fn open_postgres(url: &str, create: bool) -> Result<Store, StoreError> {
        let opened = super::postgres::PgStore::open(url, create)?;
        Ok(Store {
            shared: Arc::new(Shared {
                dir: PathBuf::new(),
                open: RwLock::new(None),
                health: Mutex::new(Health::default()),
                server: Some(Arc::new(opened)),
            }),
        })
    }

    /// Open the store in `dir` only if there is one: the commands that read
    /// it never create an empty store where the user mistyped a path.
    pub fn open_existing(dir: &Path) -> Result<Store, StoreError> {
        refuse_files_in_the_way(dir)?;
        if !dir.join("db").is_file() {
            return Err(StoreError::Missing {
                dir: dir.to_owned(),
            });
        }
        Store::open(dir)
    }

    /// Whether other processes may share this store (postgres replicas).
    pub fn is_shared(&self) -> bool {
        self.shared.server.is_some()
    }

    /// Why the store cannot be used, while it cannot.
    pub fn failure(&self) -> Option<StoreFailure> {
        self.health().failure.clone()
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.shared
            .health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `op` on the open database; after an I/O error, let go of it so
    /// that a later call opens the store again.
    pub(super) fn with<T>(
        &self,
        op: impl FnOnce(&dyn StoreBackend) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some(server) = &self.shared.server {
            let result = op(server.as_ref());
            self.note_server(result.as_ref().err());
            return result;
        }
        let opened = self.opened()?;
        let result = op(opened.as_ref());
        if let Err(e) = &result
            && e.is_io()
        {
            self.let_go(&opened, e);
        }
        result
    }

    /// The backend to read a stream of records from.
    fn backend(&self) -> Result<Arc<dyn StoreBackend>, StoreError> {
        match &self.shared.server {
            Some(server) => Ok(server.clone()),
            None => Ok(self.opened()?),
        }
    }

    /// A server that could not be reached (or can again): said once, and
    /// kept for `/healthz` until a call works.
    fn note_server(&self, error: Option<&StoreError>) {
        let mut health = self.health();
        match error {
            Some(e @ StoreError::Unavailable(_)) => {
                if health.failure.is_none() {
                    error!("{e}");
                    health.failure = Some(StoreFailure {
                        since: SystemTime::now(),
                        error: e.to_string(),
                    });
                }
            }
            Some(_) => {}
            None => {
                if health.failure.take().is_some() {
                    info!("the store can be reached again");
                }
            }
        }
    }

    pub(super) fn opened(&self) -> Result<Arc<SledStore>, StoreError> {
        if let Some(opened) = self.read_slot().as_ref() {
            return Ok(opened.clone());
        }
        self.reopen()
    }

    fn read_slot(&self) -> std::sync::RwLockReadGuard<'_, Option<Arc<SledStore>>> {
        self.shared
            .open
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_slot(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<SledStore>>> {
        self.shared
            .open
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn let_go(&self, opened: &Arc<SledStore>, e: &StoreError) {
        let mut slot = self.write_slot();
        // Only the database that failed: another call may have opened a
        // fresh one meanwhile.
        if slot
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, opened))
        {
            *slot = None;
            let mut health = self.health();
            if health.failure.is_none() {
                error!(state_dir = %self.shared.dir.display(), "{e}");
                health.failure = Some(StoreFailure {
                    since: SystemTime::now(),
                    error: e.to_string(),
                });
            }
            health.disk_full = matches!(e, StoreError::DiskFull);
            // The first reopen waits a little: the disk rarely recovers at
            // once, and sled needs a moment to let go of its lock.
            health.last_reopen = Some(Instant::now());
        }
    }

    fn reopen(&self) -> Result<Arc<SledStore>, StoreError> {
        let mut slot = self.write_slot();
        if let Some(opened) = slot.as_ref() {
            return Ok(opened.clone());
        }
        let mut health = self.health();
        if health
            .last_reopen
            .is_some_and(|t| t.elapsed() < REOPEN_EVERY)
        {
            return Err(health.last_error());
        }
        health.last_reopen = Some(Instant::now());
        // Never a fresh empty store in place of one that went away: that
        // would be a silent new baseline.
        if !self.shared.dir.join("db").is_file() {
            let gone = format!(
                "the store's files at {} are gone: restore them, or restart orderwatch to begin a new store",
                self.shared.dir.display()
            );
            if let Some(f) = health.failure.as_mut() {
                f.error = gone.clone();
            }
            health.disk_full = false;
            return Err(StoreError::Unavailable(gone));
        }
        match SledStore::open(&self.shared.dir, REOPEN_LOCK_GRACE) {
            Ok(opened) => {
                let opened = Arc::new(opened);
                *slot = Some(opened.clone());
                health.failure = None;
                health.disk_full = false;
                info!(state_dir = %self.shared.dir.display(), "the store can be written again");
                Ok(opened)
            }
            // The failed database has not let go of its lock yet (a call
            // still holds it): not "another process", just not yet.
            Err(StoreError::Locked { .. }) => Err(health.last_error()),
            Err(StoreError::OpenDiskFull { .. }) => {
                health.disk_full = true;
                if let Some(f) = health.failure.as_mut() {
                    f.error = StoreError::DiskFull.to_string();
                }
                Err(StoreError::DiskFull)
            }
            Err(e) => {
                health.disk_full = false;
                if let Some(f) = health.failure.as_mut() {
                    f.error = e.to_string();
                }
                Err(e)
            }
        }
    }

    /// At the end of a run or of `once`: let go of the sources this
    /// process leads (postgres replicas, so another takes over at once),
    /// and write everything to disk.
    pub fn close(&self) -> Result<(), StoreError> {
        if self.is_shared()
            && let Err(e) = self.with(|s| s.release())
        {
            // Not a failed shutdown: the leases simply run out instead.
            warn!(
                "could not let go of this orderwatch's leases ({e}): other replicas take over once they run out"
            );
        }
        self.flush()
    }

    /// Write everything to disk (what a commit wrote is durable then);
    /// the leases this process holds stay held.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.with(|s| s.flush()).map_err(|e| match e {
            StoreError::DiskFull => StoreError::FlushDiskFull {
                dir: self.shared.dir.clone(),
            },
            other => other,
        })
    }

    pub fn has_baseline(&self, source: &str) -> Result<bool, StoreError> {
        self.with(|s| s.has_baseline(source))
    }

    pub fn sync_state(&self, source: &str) -> Result<SyncState, StoreError> {
        self.with(|s| s.sync_state(source))
    }

    pub fn source_health(&self, source: &str) -> Result<SourceHealth, StoreError> {
        self.with(|s| s.source_health(source))
    }

    pub fn snapshot(&self, source: &str, order_id: &str) -> Result<Option<Snapshot>, StoreError> {
        self.with(|s| s.snapshot(source, order_id))
    }

    pub fn snapshot_hash(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Option<(u128, bool)>, StoreError> {
        self.with(|s| s.snapshot_hash(source, order_id))
    }

    /// Every snapshot of a source: `(order_id, snapshot)`.
    pub fn snapshots_of(
        &self,
        source: &str,
    ) -> Box<dyn Iterator<Item = Result<(String, Snapshot), StoreError>>> {
        match self.backend() {
            Ok(opened) => opened.snapshots_of(source),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// The snapshots of a source after the id `after`, in key order.
    pub fn snapshots_of_after(
        &self,
        source: &str,
        after: &str,
    ) -> Box<dyn Iterator<Item = Result<(String, Snapshot), StoreError>>> {
        match self.backend() {
            Ok(opened) => opened.snapshots_of_after(source, after),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// Every order, latest change first, strictly below `below` if given.
    pub fn orders_by_change(
        &self,
        below: Option<&ChangePosition>,
    ) -> Box<dyn Iterator<Item = Result<ChangedOrder, StoreError>>> {
        match self.backend() {
            Ok(opened) => opened.orders_by_change(below),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    pub fn sources(&self) -> Result<Vec<String>, StoreError> {
        self.with(|s| s.sources())
    }

    pub fn outbox_sinks(&self) -> Result<Vec<String>, StoreError> {
        self.with(|s| s.outbox_sinks())
    }

    #[cfg(test)]
    pub fn listed_ids(&self, source: &str) -> Result<Vec<String>, StoreError> {
        self.with(|s| s.listed_ids_except(source, &|_: &str| false))
    }

    pub fn listed_ids_except(
        &self,
        source: &str,
        seen: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        self.with(|s| s.listed_ids_except(source, &|id: &str| seen(id)))
    }

    /// Take or keep the lead of `source` for `lease` (replicas on one
    /// postgres store: only the leader polls it; sled always leads).
    pub fn lead(&self, source: &str, lease: Duration) -> Result<Leadership, StoreError> {
        // Not even a look at a store one process holds alone: a failed disk
        // must fail the cycle at its commit, as it always did.
        if !self.is_shared() {
            return Ok(Leadership::Leads);
        }
        self.with(|s| s.lead(source, lease))
    }

    pub fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        self.with(|s| s.commit(commit))
    }

    pub fn due(&self, sink: &str, now_ms: u64, limit: usize) -> Result<Vec<DueEntry>, StoreError> {
        self.with(|s| s.due(sink, now_ms, limit))
    }

    pub fn next_due(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        self.with(|s| s.next_due(sink))
    }

    pub fn is_first_of_order(&self, entry: &OutboxEntry) -> Result<bool, StoreError> {
        self.with(|s| s.is_first_of_order(entry))
    }

    /// Whether each of `entries` is the oldest pending entry of its order
    /// at its sink, in their order.
    pub fn are_first_of_order(&self, entries: &[&OutboxEntry]) -> Result<Vec<bool>, StoreError> {
        self.with(|s| s.are_first_of_order(entries))
    }

    pub fn complete(&self, due: &DueEntry) -> Result<(), StoreError> {
        self.with(|s| s.complete(due))
    }

    pub fn complete_all(&self, dues: &[DueEntry]) -> Result<(), StoreError> {
        self.with(|s| s.complete_all(dues))
    }

    pub fn reschedule(
        &self,
        due: &DueEntry,
        entry: &OutboxEntry,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        self.with(|s| s.reschedule(due, entry, due_ms))
    }

    pub fn bury(
        &self,
        due: &DueEntry,
        entry: &OutboxEntry,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.with(|s| s.bury(due, entry, reason))
    }

    pub fn outbox_depth(&self, sink: &str) -> Result<u64, StoreError> {
        self.with(|s| s.outbox_depth(sink))
    }

    /// Entries waiting for any sink (0 while the store cannot be read).
    #[cfg(test)]
    pub fn outbox_len(&self) -> u64 {
        self.opened().map_or(0, |s| s.outbox_len())
    }

    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.with(|s| s.dead_letters())
    }

    pub fn dead_letter_count(&self, sink: &str) -> Result<u64, StoreError> {
        self.with(|s| s.dead_letter_count(sink))
    }

    pub fn replay(&self, ids: Option<&[String]>) -> Result<usize, StoreError> {
        self.with(|s| s.replay(ids))
    }

    /// The events of one order still in the event log, oldest first, with
    /// the state of their deliveries.
    #[allow(
        dead_code,
        reason = "the HTTP API's order view (`/api/v1/orders/{source}/{id}`) reads it"
    )]
    pub fn timeline(&self, source: &str, order_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        self.with(|s| s.timeline(source, order_id))
    }

    /// The most recent events, newest first, as stored JSON.
    pub fn recent_events(&self) -> Box<dyn Iterator<Item = Result<String, StoreError>>> {
        match self.backend() {
            Ok(opened) => opened.recent_events(),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// The logged events below sequence `before`, newest first, with their
    /// sequence (the API's pages of the log).
    pub fn events_before(
        &self,
        before: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, String), StoreError>>> {
        match self.backend() {
            Ok(opened) => opened.events_before(before),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }
}
