//! The store: snapshots, the outbox, dead letters, the event log and meta, in
//! one sled database. This is the only module that imports sled, so the engine
//! can be replaced without touching the rest.
//!
//! [`Store`] (`handle.rs`) is what the rest of orderwatch holds: it opens
//! the database again after the disk failed under it (a full disk), and
//! `leftovers.rs` clears the snapshot files sled began and could not finish,
//! which would otherwise make a healthy store read as corrupt.
//!
//! The engine sits behind `backend.rs`'s trait: sled (the trees below) is
//! one implementation, PostgreSQL (`postgres/`, the only module that
//! imports its driver) the other. sled stays the only engine this file
//! and its siblings know.
//!
//! Trees:
//! - `snapshots`: `source \0 order_id` → [`Snapshot`]
//! - `changed`: `changed_ms source \0 order_id` → whether the order is
//!   still in the listing (`LISTED` or `UNLISTED`, `changed.rs`),
//!   one per snapshot: the orders by the time of their last change, written
//!   in the transaction that writes or removes the snapshot, so "latest
//!   change first" holds across the pages of a listing; and the vanish step
//!   reads these small keys instead of every snapshot (schema 5; built from
//!   the snapshots when an older store is opened). Schemas 2 to 4 kept the
//!   listed orders in a tree of their own, a third key per order written
//!   with every snapshot (BENCHMARKS.md, the baseline at 100,000 orders)
//! - `bodies`: `seq` → the event JSON, exactly the webhook body, once per
//!   event; `body_refs`: `seq` → how many outbox entries and dead letters
//!   refer to it (`log.rs` says when a body goes)
//! - `outbox`: `sink \0 due_ms seq` → [`OutboxEntry`] (its body by `seq`);
//!   what is due is a range scan
//! - `outbox_order`: `sink \0 source \0 order seq` → due_ms; the pending
//!   entries of one order, so a later event never overtakes an earlier one
//! - `dead_letters`: `sink \0 seq` → [`DeadLetter`]
//! - `events`: `seq` → which order the event is about: the bounded log
//!   (the last [`EVENT_LOG_LEN`]) for `orderwatch events`
//! - `events_by_order`: `source \0 order seq` → nothing: one order's logged
//!   events; `deliveries`: `seq sink` → attempts and time, the delivery log,
//!   trimmed with the event log (`timeline.rs` reads both)
//! - `digest_held`: `sink \0 seq` → [`OutboxEntry`]: the events kept for a
//!   sink's digest until its period ends (`hold.rs`)
//! - `timers`: the timer index by fire time, and what each open order's
//!   due date and status episode are (`timers.rs`); built from the
//!   snapshots when absent, so it needs no schema version of its own
//! - `meta`: schema version, baseline markers, the event sequence, and per
//!   source the incremental listing's high-water mark and the time of its
//!   last full listing ([`SyncState`]), and its health record
//!   ([`SourceHealth`], `health.rs`)
//!
//! Schema 5; `migrate.rs` upgrades a schema 1 to 4 store when it is
//! opened.

mod backend;
mod changed;
pub mod copy;
mod handle;
mod health;
mod hold;
mod keys;
mod leftovers;
mod log;
mod migrate;
mod postgres;
pub mod salvage;
mod snapshot;
mod timeline;
mod timers;

pub use changed::{ChangePosition, ChangedOrder};
pub use handle::Store;
pub use health::SourceHealth;
pub use hold::{Hold, NewDigest, Routed};
pub use snapshot::Snapshot;
pub use timeline::{DeliveryState, DeliveryStatus, TimelineEntry};
#[allow(
    unused_imports,
    reason = "what Store::overdue_orders answers: the orders a digest lists as overdue from the start"
)]
pub use timers::OverdueOrder;
pub(crate) use timers::TimerRows;
pub use timers::{
    DueDate, DueTimer, FiredTimer, IndexBuild, IndexMode, OrderTimes, TimerKind, TimerSettings,
    TimerUpdate,
};

use crate::event::EventType;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bump when a tree's layout changes; an older binary refuses a newer store.
pub const SCHEMA_VERSION: u64 = 5;
/// How many events `orderwatch events` can show.
pub const EVENT_LOG_LEN: u64 = 10_000;
/// sled's page cache; its automatic size only reads cgroup v1 limits. Small
/// on purpose: a cycle reads the snapshots once, in listing order, so a large
/// store gains nothing from a bigger cache, and a daemon keeps it all between
/// polls (it was 16 MiB; BENCHMARKS.md has the numbers).
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// How long an open waits for a store lock held by a process that is
/// stopping.
pub(crate) const LOCK_GRACE: Duration = Duration::from_secs(2);

const META_SCHEMA: &[u8] = b"schema_version";
const META_EVENT_SEQ: &[u8] = b"event_seq";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "there is no orderwatch store at {dir} (the config's state_dir), so there is nothing to show: `orderwatch run` or `orderwatch once` creates it (if you expected one here, check state_dir)"
    )]
    Missing { dir: PathBuf },
    #[error(
        "state_dir {dir} is not a directory: {file} is a file. Point state_dir at a directory (orderwatch creates it when it is missing); nothing was changed"
    )]
    NotADirectory { dir: PathBuf, file: PathBuf },
    #[error(
        "the store at {dir} cannot be opened: the disk holding it is full (no space left on device). Free some space, then try again: the store is not damaged, and nothing in it was lost"
    )]
    OpenDiskFull { dir: PathBuf },
    #[error(
        "the store cannot be written: the disk holding it is full (no space left on device). Free some space: orderwatch carries on by itself once it can write again"
    )]
    DiskFull,
    #[error(
        "could not write the store at {dir} to disk: the disk holding it is full (no space left on device). What was not written is lost from the store, as in a crash: the next poll detects those changes again (same event ids), and deliveries made since the last write may be repeated once (same webhook-id)"
    )]
    FlushDiskFull { dir: PathBuf },
    #[error("the store cannot be read or written: {0}")]
    Io(String),
    /// The store failed earlier and could not be opened again yet.
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "the store at {dir} is in use by another process (sled holds a lock on it): stop the other orderwatch, or point state_dir elsewhere"
    )]
    Locked { dir: PathBuf },
    #[error(
        "the store at {dir} cannot be opened: {reason}. Nothing was deleted. To keep what is readable (above all undelivered notifications), run `orderwatch store salvage --to NEW_DIR`, then point state_dir at NEW_DIR"
    )]
    Unreadable { dir: PathBuf, reason: String },
    #[error(
        "the store at {dir} has schema version {found}, this orderwatch reads version {expected}: use the orderwatch release that wrote it (nothing was changed)"
    )]
    Schema {
        dir: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error(
        "the postgres database {at} holds no orderwatch store, so there is nothing to show: `orderwatch run` or `orderwatch once` with this store url creates it"
    )]
    NoPostgresStore { at: String },
    #[error(
        "the postgres store {at} has schema version {found}, this orderwatch knows versions up to {expected}: use the orderwatch release that wrote it (nothing was changed)"
    )]
    PostgresSchema {
        at: String,
        found: i64,
        expected: i64,
    },
    #[error(
        "the postgres store {at} is not empty: `store copy` only fills an empty one (nothing was copied). Copy into a new database, or empty this one first"
    )]
    NotEmpty { at: String },
    /// Another orderwatch took the lead of this source: nothing of this
    /// commit was written.
    #[error(
        "source `{source_name}` is polled by another orderwatch now ({holder}): this commit was refused, and this orderwatch follows"
    )]
    Fenced { source_name: String, holder: String },
    #[error("store error: {0}")]
    Engine(String),
    #[error("a stored record is damaged: {0}")]
    Damaged(String),
    /// A timer fired for an order whose dates a poll changed meanwhile:
    /// nothing was written, and the timer reads again.
    #[error("an order's timers changed while they fired")]
    TimerMoved,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match &e {
            sled::Error::Io(io) if is_disk_full(io) => StoreError::DiskFull,
            sled::Error::Io(_) => StoreError::Io(e.to_string()),
            _ => StoreError::Engine(e.to_string()),
        }
    }
}

impl StoreError {
    /// The disk or the files failed (not the data): the open store may be
    /// unusable from now on (sled refuses every write after a failed one)
    /// and is worth opening again.
    pub(crate) fn is_io(&self) -> bool {
        matches!(self, StoreError::DiskFull | StoreError::Io(_))
    }
}

/// ENOSPC and EDQUOT; sled's copies of an error keep only its kind.
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}

/// A pending delivery of one event to one sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxEntry {
    pub seq: u64,
    pub sink: String,
    pub source: String,
    pub order_id: String,
    pub event_id: String,
    pub event_type: EventType,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the event was committed (unix ms), for `max_age`.
    pub created_ms: u64,
    pub last_error: Option<String>,
}

/// An entry that will not be delivered without help.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    pub entry: OutboxEntry,
    pub reason: String,
    pub dead_ms: u64,
}

/// A due outbox entry, with the key it is stored under.
#[derive(Debug, Clone)]
pub struct DueEntry {
    key: Vec<u8>,
    pub entry: OutboxEntry,
    /// The event JSON, exactly the webhook body; `None` when the store
    /// lost it (a damaged store), so the entry can only be dead-lettered.
    pub body: Option<String>,
}

/// One event to commit, with the sinks its routes chose.
pub struct NewEvent {
    pub event_id: String,
    pub event_type: EventType,
    pub order_id: String,
    pub json: String,
    /// The sinks, and when the event leaves for each (`hold.rs`).
    pub sinks: Vec<Routed>,
}

/// Everything one page (or the vanish step) of a poll commits at once.
#[derive(Default)]
pub struct Commit {
    pub source: String,
    /// New snapshot, or `None` to delete it.
    pub snapshots: Vec<(String, Option<Snapshot>)>,
    pub events: Vec<NewEvent>,
    /// Set once the source's first complete poll is recorded.
    pub mark_baseline: bool,
    /// What an incremental listing moves on, written in the same
    /// transaction as the snapshots beside it.
    pub sync: Option<SyncUpdate>,
    /// The source's new health record, written with the events it led to.
    pub health: Option<SourceHealth>,
    /// The timers of the orders in `snapshots`, kept in step with them.
    pub timers: Option<TimerUpdate>,
    /// Timers whose events are in `events`: removed or moved on with them.
    pub fired: Vec<FiredTimer>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
            && self.events.is_empty()
            && !self.mark_baseline
            && self.sync.is_none()
            && self.health.is_none()
            && self.fired.is_empty()
            && self.timers.as_ref().is_none_or(|t| t.orders.is_empty())
    }
}

/// Who polls a source, among the orderwatch sharing one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    Leads,
    /// Another orderwatch holds its lease (its holder id).
    Follows {
        holder: String,
    },
}

/// Where a source's incremental listing stands: what the next cycle reads
/// back to, and when the last full listing was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The greatest cursor value (as Orange wrote it) among the orders the
    /// last completed cycle committed.
    pub high_water: Option<String>,
    /// Unix milliseconds of the last full listing that completed.
    pub last_full_ms: Option<u64>,
}

/// A change of [`SyncState`]; a field left `None` keeps its stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncUpdate {
    pub high_water: Option<String>,
    pub last_full_ms: Option<u64>,
}

/// One open sled database and its trees. [`Store`] is the handle the rest
/// of orderwatch holds: it opens this again after the disk failed.
pub(crate) struct SledStore {
    db: sled::Db,
    dir: PathBuf,
    snapshots: sled::Tree,
    changed: sled::Tree,
    outbox: sled::Tree,
    outbox_order: sled::Tree,
    dead_letters: sled::Tree,
    events: sled::Tree,
    events_by_order: sled::Tree,
    deliveries: sled::Tree,
    bodies: sled::Tree,
    body_refs: sled::Tree,
    digest_held: sled::Tree,
    meta: sled::Tree,
    timers: sled::Tree,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SledStore {
    /// Open (or create) the store in `dir`, waiting up to `lock_grace` for
    /// a lock a stopping process (or a just-dropped store) still holds.
    pub(crate) fn open(dir: &Path, lock_grace: Duration) -> Result<SledStore, StoreError> {
        refuse_files_in_the_way(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| {
            if is_disk_full(&e) {
                StoreError::OpenDiskFull {
                    dir: dir.to_owned(),
                }
            } else {
                StoreError::Unreadable {
                    dir: dir.to_owned(),
                    reason: format!("cannot create the directory: {e}"),
                }
            }
        })?;
        for path in leftovers::remove_unfinished_snapshots(dir) {
            tracing::warn!(
                file = %path.display(),
                "removed a snapshot file that sled began but could not finish (the disk was full, or it stopped): the store reads as it was before"
            );
        }
        let opened = Self::open_sled(dir, lock_grace);
        if opened.is_err() {
            // This very attempt may have begun a snapshot it could not
            // finish (on a full disk): leave the store as it was.
            leftovers::remove_unfinished_snapshots(dir);
        }
        opened.map_err(|e| match e {
            StoreError::DiskFull => StoreError::OpenDiskFull {
                dir: dir.to_owned(),
            },
            other => other,
        })
    }

    fn open_sled(dir: &Path, lock_grace: Duration) -> Result<SledStore, StoreError> {
        // sled 0.34 can open a damaged log as an empty store without an
        // error; a store that had data but has no schema version is that.
        let had_files = std::fs::metadata(dir.join("db")).is_ok_and(|m| m.len() > 0);
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(200));
        // A process that has just stopped (or a store just dropped in this
        // one: sled's flusher lets go of the lock a moment later) may still
        // hold the lock: wait a little before calling the store in use.
        let deadline = std::time::Instant::now() + lock_grace;
        let db = loop {
            match config.open().map_err(|e| open_error(dir, e)) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(dir, e));
        let store = SledStore {
            snapshots: tree("snapshots")?,
            changed: tree("changed")?,
            outbox: tree("outbox")?,
            outbox_order: tree("outbox_order")?,
            dead_letters: tree("dead_letters")?,
            events: tree("events")?,
            events_by_order: tree("events_by_order")?,
            deliveries: tree("deliveries")?,
            bodies: tree("bodies")?,
            body_refs: tree("body_refs")?,
            digest_held: tree("digest_held")?,
            meta: tree("meta")?,
            timers: tree("timers")?,
            dir: dir.to_owned(),
            db,
        };
        store.check_schema(had_files)?;
        Ok(store)
    }

    fn check_schema(&self, had_files: bool) -> Result<(), StoreError> {
        match self.meta.get(META_SCHEMA)? {
            Some(v) => {
                let found =
                    read_u64(&v).ok_or_else(|| StoreError::Damaged("schema version".into()))?;
                if (1..SCHEMA_VERSION).contains(&found) {
                    return self.migrate(found);
                }
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        dir: self.dir.clone(),
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            None if had_files => {
                return Err(StoreError::Unreadable {
                    dir: self.dir.clone(),
                    reason: "its files exist but hold no orderwatch data (no schema version): they look damaged (if this is a store that was only just created and never used, delete the directory instead)".to_owned(),
                });
            }
            None => {
                // Written and flushed at once, so a used store always has it.
                self.meta
                    .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                self.meta.flush()?;
            }
        }
        Ok(())
    }

    /// Write everything to disk; called on shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    // ---- snapshots ----

    pub fn has_baseline(&self, source: &str) -> Result<bool, StoreError> {
        Ok(self.meta.contains_key(baseline_key(source))?)
    }

    /// The source's incremental state; empty when it has none yet (or what
    /// is stored does not decode: the next cycle is then a full one).
    pub fn sync_state(&self, source: &str) -> Result<SyncState, StoreError> {
        Ok(self
            .meta
            .get(sync_key(source))?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    pub fn snapshot(&self, source: &str, order_id: &str) -> Result<Option<Snapshot>, StoreError> {
        match self.snapshots.get(keys::snapshot(source, order_id))? {
            Some(bytes) => Snapshot::decode(&bytes)
                .map(Some)
                .ok_or_else(|| StoreError::Damaged(format!("snapshot of {source}/{order_id}"))),
            None => Ok(None),
        }
    }

    /// The stored hash and listed flag, without decoding the order.
    pub fn snapshot_hash(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Option<(u128, bool)>, StoreError> {
        Ok(self
            .snapshots
            .get(keys::snapshot(source, order_id))?
            .and_then(|b| Snapshot::peek_hash(&b)))
    }

    /// Every snapshot of a source: `(order_id, snapshot)`.
    pub fn snapshots_of(
        &self,
        source: &str,
    ) -> impl Iterator<Item = Result<(String, Snapshot), StoreError>> + use<> {
        let prefix = keys::snapshot_prefix(source);
        let skip = prefix.len();
        let source = source.to_owned();
        self.snapshots.scan_prefix(prefix).map(move |item| {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k[skip..]).into_owned();
            let snap = Snapshot::decode(&v)
                .ok_or_else(|| StoreError::Damaged(format!("snapshot of {source}/{id}")))?;
            Ok((id, snap))
        })
    }

    /// The snapshots of a source whose ids come after `after` in key
    /// order, `(order_id, snapshot)`: a page of a listing starts where the
    /// last one ended without reading what came before.
    pub fn snapshots_of_after(
        &self,
        source: &str,
        after: &str,
    ) -> impl Iterator<Item = Result<(String, Snapshot), StoreError>> + use<> {
        use std::ops::Bound;
        let prefix = keys::snapshot_prefix(source);
        let skip = prefix.len();
        let mut end = prefix.clone();
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        let start = keys::snapshot(source, after);
        let source = source.to_owned();
        self.snapshots
            .range::<Vec<u8>, _>((Bound::Excluded(start), Bound::Excluded(end)))
            .map(move |item| {
                let (k, v) = item?;
                let id = String::from_utf8_lossy(&k[skip..]).into_owned();
                let snap = Snapshot::decode(&v)
                    .ok_or_else(|| StoreError::Damaged(format!("snapshot of {source}/{id}")))?;
                Ok((id, snap))
            })
    }

    /// The sources that have snapshots, in name order.
    pub fn sources(&self) -> Result<Vec<String>, StoreError> {
        first_components(&self.snapshots)
    }

    /// The sinks that have entries waiting in the outbox, in name order.
    pub fn outbox_sinks(&self) -> Result<Vec<String>, StoreError> {
        first_components(&self.outbox)
    }

    /// Order ids of a source that are still listed (candidates to vanish).
    #[cfg(test)]
    pub fn listed_ids(&self, source: &str) -> Result<Vec<String>, StoreError> {
        self.listed_ids_except(source, |_| false)
    }

    /// Order ids of a source that are still listed but not `seen` (the
    /// orders a complete listing no longer has), in id order. Reads only the
    /// small keys of the `changed` index and their listed flag, and
    /// allocates only for what is missing. `seen` is a test rather than a
    /// set so the caller keeps what it saw as compactly as it likes.
    pub fn listed_ids_except(
        &self,
        source: &str,
        seen: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for item in self.changed.iter() {
            let (k, v) = item?;
            if v.as_ref() != changed::LISTED {
                continue;
            }
            match keys::changed_parts(&k) {
                Some((_, of, id)) if of == source && !seen(id) => out.push(id.to_owned()),
                _ => {}
            }
        }
        // The index is in time order; the snapshots' key order is what
        // the vanish step has always checked them in.
        out.sort_unstable();
        Ok(out)
    }

    /// Snapshots, outbox entries (one per event and sink) and the event log,
    /// in one transaction: a crash keeps all of it or none.
    pub fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if commit.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let encoded: Vec<SnapshotWrite> = commit
            .snapshots
            .iter()
            .map(|(id, snap)| {
                (
                    keys::snapshot(&commit.source, id),
                    snap.as_ref().map(Snapshot::encode),
                )
            })
            .collect();
        let timer_mode = timers::IndexMode::Poll {
            baseline: commit.timers.is_some() && !self.has_baseline(&commit.source)?,
        };
        let index_timers = |tree: &sled::transaction::TransactionalTree| {
            for fired in &commit.fired {
                timers::fire(tree, &commit.source, fired)?;
            }
            match &commit.timers {
                Some(update) => timers::apply_orders(tree, &commit.source, update, timer_mode, now),
                None => Ok(()),
            }
        };
        if commit.events.is_empty()
            && !commit.mark_baseline
            && commit.sync.is_none()
            && commit.health.is_none()
        {
            // Only snapshots (and their timers): a transaction over the
            // trees they touch, much cheaper than over all of them (a
            // baseline cycle is a thousand of these at 100,000 orders).
            (&self.snapshots, &self.changed, &self.timers).transaction(
                |(snapshots, changed, timers)| {
                    write_snapshots(snapshots, changed, &encoded)?;
                    index_timers(timers)
                },
            )?;
            return Ok(());
        }
        let trees = (
            &self.snapshots,
            &self.changed,
            &self.outbox,
            &self.outbox_order,
            &self.events,
            &self.events_by_order,
            &self.bodies,
            &self.body_refs,
            &self.meta,
            &self.timers,
            &self.digest_held,
        );
        let last_seq = trees.transaction(
            |(
                snapshots,
                changed,
                outbox,
                outbox_order,
                events,
                events_by_order,
                bodies,
                body_refs,
                meta,
                timers,
                digest_held,
            )| {
                index_timers(timers)?;
                write_snapshots(snapshots, changed, &encoded)?;
                let mut seq = meta
                    .get(META_EVENT_SEQ)?
                    .and_then(|v| read_u64(&v))
                    .unwrap_or(0);
                for event in &commit.events {
                    seq += 1;
                    // The body once; the log and each sink's entry refer
                    // to it by sequence.
                    bodies.insert(&seq.to_be_bytes(), event.json.as_bytes())?;
                    events.insert(
                        &seq.to_be_bytes(),
                        log::encode_record(&commit.source, &event.order_id),
                    )?;
                    if let Ok(n) = u32::try_from(event.sinks.len())
                        && n > 0
                    {
                        body_refs.insert(&seq.to_be_bytes(), &n.to_be_bytes())?;
                    }
                    events_by_order.insert(
                        keys::event_of_order(&commit.source, &event.order_id, seq),
                        &[] as &[u8],
                    )?;
                    for routed in &event.sinks {
                        let entry = OutboxEntry {
                            seq,
                            sink: routed.sink.clone(),
                            source: commit.source.clone(),
                            order_id: event.order_id.clone(),
                            event_id: event.event_id.clone(),
                            event_type: event.event_type,
                            attempts: 0,
                            created_ms: now,
                            last_error: None,
                        };
                        hold::place(outbox, outbox_order, digest_held, entry, routed.hold)?;
                    }
                }
                if !commit.events.is_empty() {
                    meta.insert(META_EVENT_SEQ, &seq.to_be_bytes())?;
                }
                if commit.mark_baseline {
                    meta.insert(baseline_key(&commit.source), &now.to_be_bytes())?;
                }
                if let Some(update) = &commit.sync {
                    let key = sync_key(&commit.source);
                    let mut state = meta
                        .get(&key)?
                        .and_then(|v| serde_json::from_slice::<SyncState>(&v).ok())
                        .unwrap_or_default();
                    if update.high_water.is_some() {
                        state.high_water.clone_from(&update.high_water);
                    }
                    if update.last_full_ms.is_some() {
                        state.last_full_ms = update.last_full_ms;
                    }
                    let value = serde_json::to_vec(&state).map_err(|e| {
                        ConflictableTransactionError::Abort(StoreError::Damaged(e.to_string()))
                    })?;
                    meta.insert(key, value)?;
                }
                if let Some(record) = &commit.health {
                    health::write(meta, &commit.source, record)?;
                }
                Ok(seq)
            },
        )?;
        if !commit.events.is_empty() {
            self.trim_event_log(last_seq)?;
        }
        Ok(())
    }

    // ---- outbox ----

    /// Entries of `sink` due at `now_ms`, oldest due first, at most `limit`.
    pub fn due(&self, sink: &str, now_ms: u64, limit: usize) -> Result<Vec<DueEntry>, StoreError> {
        let start = keys::sink_prefix(sink);
        let end = keys::outbox(sink, now_ms, u64::MAX);
        let mut out = Vec::new();
        for item in self.outbox.range(start..=end).take(limit) {
            let (k, v) = item?;
            let entry: OutboxEntry = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Damaged(format!("outbox entry: {e}")))?;
            let body = self.body(entry.seq)?;
            out.push(DueEntry {
                key: k.to_vec(),
                entry,
                body,
            });
        }
        Ok(out)
    }

    /// When the next entry of `sink` is due (unix ms), if any.
    pub fn next_due(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        let prefix = keys::sink_prefix(sink);
        Ok(match self.outbox.scan_prefix(prefix).next() {
            Some(item) => keys::outbox_due(&item?.0),
            None => None,
        })
    }

    /// Whether `entry` is the oldest pending entry of its order at its sink.
    pub fn is_first_of_order(&self, entry: &OutboxEntry) -> Result<bool, StoreError> {
        let prefix = keys::order_prefix(&entry.sink, &entry.source, &entry.order_id);
        Ok(match self.outbox_order.scan_prefix(prefix).next() {
            Some(item) => keys::tail_u64(&item?.0) == Some(entry.seq),
            None => true,
        })
    }

    /// Delivered: forget the entry, and note it in the delivery log.
    pub fn complete(&self, due: &DueEntry) -> Result<(), StoreError> {
        self.complete_all(std::slice::from_ref(due))
    }

    /// Delivered, each of `dues`: as [`SledStore::complete`], all in one
    /// transaction. The dispatcher hands over the deliveries that ended
    /// together, so one transaction's fixed cost serves several.
    pub fn complete_all(&self, dues: &[DueEntry]) -> Result<(), StoreError> {
        if dues.is_empty() {
            return Ok(());
        }
        let logged =
            |e: &OutboxEntry| timeline::encode_delivery(e.attempts.saturating_add(1), now_ms());
        let writes: Vec<_> = dues
            .iter()
            .map(|due| {
                let e = &due.entry;
                (
                    due.key.as_slice(),
                    keys::order_index(&e.sink, &e.source, &e.order_id, e.seq),
                    keys::delivery(e.seq, &e.sink),
                    logged(e),
                    e.seq,
                )
            })
            .collect();
        let trees = (
            &self.outbox,
            &self.outbox_order,
            &self.deliveries,
            &self.bodies,
            &self.body_refs,
            &self.events,
        );
        trees.transaction(|(outbox, order, deliveries, bodies, body_refs, events)| {
            for (key, index, log_key, logged, seq) in &writes {
                // Removed already (a retried removal after a full disk):
                // the body's reference went with it.
                if outbox.remove(*key)?.is_none() {
                    continue;
                }
                order.remove(index.as_slice())?;
                deliveries.insert(log_key.as_slice(), &logged[..])?;
                log::release_body(bodies, body_refs, events, *seq)?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        Ok(())
    }

    /// Failed for now: store the new attempt count and try again at `due_ms`.
    pub fn reschedule(
        &self,
        due: &DueEntry,
        entry: &OutboxEntry,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(entry).map_err(|e| StoreError::Damaged(e.to_string()))?;
        let new_key = keys::outbox(&entry.sink, due_ms, entry.seq);
        let index = keys::order_index(&entry.sink, &entry.source, &entry.order_id, entry.seq);
        (&self.outbox, &self.outbox_order).transaction(|(outbox, order)| {
            outbox.remove(due.key.as_slice())?;
            outbox.insert(new_key.as_slice(), value.as_slice())?;
            order.insert(index.as_slice(), &due_ms.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        Ok(())
    }

    /// Give up on the entry: move it to the dead letters.
    pub fn bury(
        &self,
        due: &DueEntry,
        entry: &OutboxEntry,
        reason: &str,
    ) -> Result<(), StoreError> {
        let dead = DeadLetter {
            entry: entry.clone(),
            reason: reason.to_owned(),
            dead_ms: now_ms(),
        };
        let value = serde_json::to_vec(&dead).map_err(|e| StoreError::Damaged(e.to_string()))?;
        let index = keys::order_index(&entry.sink, &entry.source, &entry.order_id, entry.seq);
        let dead_key = keys::dead_letter(&entry.sink, entry.seq);
        (&self.outbox, &self.outbox_order, &self.dead_letters).transaction(
            |(outbox, order, dead)| {
                outbox.remove(due.key.as_slice())?;
                order.remove(index.as_slice())?;
                dead.insert(dead_key.as_slice(), value.as_slice())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            },
        )?;
        Ok(())
    }

    /// Entries waiting for `sink` (due or not).
    pub fn outbox_depth(&self, sink: &str) -> Result<u64, StoreError> {
        Ok(self.outbox.scan_prefix(keys::sink_prefix(sink)).count() as u64)
    }

    /// Entries waiting for any sink.
    #[cfg(test)]
    pub fn outbox_len(&self) -> u64 {
        self.outbox.len() as u64
    }

    // ---- dead letters ----

    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_letters
            .iter()
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Damaged(format!("dead letter: {e}")))
            })
            .collect()
    }

    pub fn dead_letter_count(&self, sink: &str) -> Result<u64, StoreError> {
        Ok(self
            .dead_letters
            .scan_prefix(keys::sink_prefix(sink))
            .count() as u64)
    }

    /// Put dead letters back in the outbox, due now, attempts reset. `ids`
    /// match an event id or `sink:seq`; `None` replays all. Returns how many.
    pub fn replay(&self, ids: Option<&[String]>) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut replayed = 0;
        for item in self.dead_letters.iter() {
            let (k, v) = item?;
            let dead: DeadLetter = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Damaged(format!("dead letter: {e}")))?;
            let wanted = match ids {
                None => true,
                Some(ids) => ids.iter().any(|id| {
                    *id == dead.entry.event_id
                        || *id == format!("{}:{}", dead.entry.sink, dead.entry.seq)
                }),
            };
            if !wanted {
                continue;
            }
            let mut entry = dead.entry;
            entry.attempts = 0;
            entry.created_ms = now;
            let value =
                serde_json::to_vec(&entry).map_err(|e| StoreError::Damaged(e.to_string()))?;
            let out_key = keys::outbox(&entry.sink, now, entry.seq);
            let index = keys::order_index(&entry.sink, &entry.source, &entry.order_id, entry.seq);
            (&self.outbox, &self.outbox_order, &self.dead_letters).transaction(
                |(outbox, order, dead)| {
                    dead.remove(&k)?;
                    outbox.insert(out_key.as_slice(), value.as_slice())?;
                    order.insert(index.as_slice(), &now.to_be_bytes())?;
                    Ok::<_, ConflictableTransactionError<StoreError>>(())
                },
            )?;
            replayed += 1;
        }
        Ok(replayed)
    }
}

/// One snapshot write: key, and the encoded snapshot or `None` to delete.
type SnapshotWrite = (Vec<u8>, Option<Vec<u8>>);

/// Snapshot writes, and the `changed` index kept in step with them: one
/// index key per snapshot, written only when the snapshot's change time or
/// listed flag moved (a baseline writes two keys per order, a change three).
fn write_snapshots(
    snapshots: &sled::transaction::TransactionalTree,
    changed: &sled::transaction::TransactionalTree,
    encoded: &[SnapshotWrite],
) -> Result<(), sled::transaction::UnabortableTransactionError> {
    for (key, value) in encoded {
        // The write hands back the snapshot it replaces: its change time
        // and flag say which index entry to move, with no read of its own.
        let old = match value {
            Some(v) => snapshots.insert(key.as_slice(), v.as_slice())?,
            None => snapshots.remove(key.as_slice())?,
        };
        let old_at = old.as_deref().and_then(changed::place_of);
        let new_at = value.as_deref().and_then(changed::place_of);
        if old_at == new_at {
            continue;
        }
        if let Some((ms, _)) = old_at
            && new_at.is_none_or(|(new_ms, _)| new_ms != ms)
        {
            changed.remove(keys::changed(ms, key))?;
        }
        if let Some((ms, listed)) = new_at {
            changed.insert(keys::changed(ms, key), changed::flag(listed))?;
        }
    }
    Ok(())
}

/// The distinct first components (`name \0 ...`) of a tree's keys, jumping
/// from one name's keys to the next instead of reading every key.
fn first_components(tree: &sled::Tree) -> Result<Vec<String>, StoreError> {
    let mut out: Vec<String> = Vec::new();
    let mut next: Option<Vec<u8>> = Some(Vec::new());
    while let Some(start) = next.take() {
        let Some(item) = tree.range(start..).next() else {
            break;
        };
        let (k, _) = item?;
        let Some(end) = k.iter().position(|b| *b == 0) else {
            break;
        };
        out.push(String::from_utf8_lossy(&k[..end]).into_owned());
        let mut after = k[..end].to_vec();
        after.push(1);
        next = Some(after);
    }
    Ok(out)
}

fn sync_key(source: &str) -> Vec<u8> {
    let mut k = b"sync\0".to_vec();
    k.extend_from_slice(source.as_bytes());
    k
}

fn baseline_key(source: &str) -> Vec<u8> {
    let mut k = b"baseline\0".to_vec();
    k.extend_from_slice(source.as_bytes());
    k
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A file where `dir` or one of its parents should be a directory: sled
/// would only say "not a directory" or "file exists".
fn refuse_files_in_the_way(dir: &Path) -> Result<(), StoreError> {
    for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::metadata(ancestor) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(StoreError::NotADirectory {
                    dir: dir.to_owned(),
                    file: ancestor.to_owned(),
                });
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

fn open_error(dir: &Path, e: sled::Error) -> StoreError {
    if let sled::Error::Io(io) = &e
        && is_disk_full(io)
    {
        return StoreError::OpenDiskFull {
            dir: dir.to_owned(),
        };
    }
    let text = e.to_string();
    let locked = match &e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || text.contains("lock")
                || text.contains("Resource temporarily unavailable")
        }
        _ => false,
    };
    if locked {
        StoreError::Locked {
            dir: dir.to_owned(),
        }
    } else {
        StoreError::Unreadable {
            dir: dir.to_owned(),
            reason: text,
        }
    }
}

#[cfg(test)]
mod tests;
