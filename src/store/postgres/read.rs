//! What the postgres store reads: snapshots (one, a hash, or a source's in
//! pages), baseline marks, sync state, health records, the event log in
//! pages, and one order's timeline.
//!
//! Streams (a source's snapshots, the log) are read a page at a time by
//! key, so a large source is never held in memory at once and no cursor
//! stays open between two pages.

use super::{Inner, OrStore, PgStore, signed, unsigned};
use crate::event::{Event, EventType};
use crate::store::backend::Records;
use crate::store::{
    ChangePosition, ChangedOrder, DeadLetter, DeliveryState, DeliveryStatus, OutboxEntry, Snapshot,
    SourceHealth, StoreError, SyncState, TimelineEntry,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio_postgres::Row;

/// Rows read per page of a stream.
const PAGE: i64 = 500;

pub(super) const SNAPSHOT_COLUMNS: &str = "revision, hash, listed, status, changed_at, body";

/// A snapshot from its columns, in [`SNAPSHOT_COLUMNS`] order from `at`.
pub(super) fn snapshot_of(row: &Row, first: usize) -> Result<Snapshot, StoreError> {
    let hash: Vec<u8> = row.try_get(first + 1).map_err(damaged)?;
    let hash = <[u8; 16]>::try_from(hash.as_slice())
        .map(u128::from_be_bytes)
        .map_err(|_| StoreError::Damaged("a snapshot's hash is not 16 bytes".into()))?;
    Ok(Snapshot {
        revision: unsigned(row.try_get(first).map_err(damaged)?),
        hash,
        listed: row.try_get(first + 2).map_err(damaged)?,
        status: row.try_get(first + 3).map_err(damaged)?,
        changed_at: row.try_get(first + 4).map_err(damaged)?,
        order: row.try_get(first + 5).map_err(damaged)?,
    })
}

pub(super) fn damaged(e: tokio_postgres::Error) -> StoreError {
    StoreError::Damaged(format!("a stored row does not read: {e}"))
}

/// An entry's stored type: an event type, or a digest (which no route
/// names, so the config's list of types leaves it out).
fn stored_type(kind: &str) -> Result<EventType, StoreError> {
    if kind == EventType::Digest.as_str() {
        return Ok(EventType::Digest);
    }
    kind.parse()
        .map_err(|e: String| StoreError::Damaged(format!("outbox entry: {e}")))
}

pub(super) fn entry_of(row: &Row) -> Result<OutboxEntry, StoreError> {
    let kind: String = row.try_get("type").map_err(damaged)?;
    Ok(OutboxEntry {
        seq: unsigned(row.try_get("seq").map_err(damaged)?),
        sink: row.try_get("sink").map_err(damaged)?,
        source: row.try_get("source").map_err(damaged)?,
        order_id: row.try_get("order_id").map_err(damaged)?,
        event_id: row.try_get("event_id").map_err(damaged)?,
        event_type: stored_type(&kind)?,
        attempts: u32::try_from(row.try_get::<_, i32>("attempts").map_err(damaged)?).unwrap_or(0),
        created_ms: unsigned(row.try_get("created_ms").map_err(damaged)?),
        last_error: row.try_get("last_error").map_err(damaged)?,
    })
}

pub(super) fn dead_letter_of(row: &Row) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        entry: entry_of(row)?,
        reason: row.try_get("reason").map_err(damaged)?,
        dead_ms: unsigned(row.try_get("dead_ms").map_err(damaged)?),
    })
}

impl PgStore {
    pub(super) fn read_has_baseline(&self, source: &str) -> Result<bool, StoreError> {
        let source = source.to_owned();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached("SELECT 1 FROM baselines WHERE source = $1")
                .await
                .or_store(&at)?;
            Ok(c.query_opt(&st, &[&source]).await.or_store(&at)?.is_some())
        })
    }

    pub(super) fn read_sync_state(&self, source: &str) -> Result<SyncState, StoreError> {
        let source = source.to_owned();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached("SELECT high_water, last_full_ms FROM sync_state WHERE source = $1")
                .await
                .or_store(&at)?;
            Ok(match c.query_opt(&st, &[&source]).await.or_store(&at)? {
                Some(row) => SyncState {
                    high_water: row.get(0),
                    last_full_ms: row.get::<_, Option<i64>>(1).map(unsigned),
                },
                None => SyncState::default(),
            })
        })
    }

    pub(super) fn read_source_health(&self, source: &str) -> Result<SourceHealth, StoreError> {
        let source = source.to_owned();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(
                    "SELECT failing_since_ms, failures, failing_told, expiry_told
                     FROM source_health WHERE source = $1",
                )
                .await
                .or_store(&at)?;
            Ok(match c.query_opt(&st, &[&source]).await.or_store(&at)? {
                Some(row) => SourceHealth {
                    failing_since_ms: row.get::<_, Option<i64>>(0).map(unsigned),
                    failures: unsigned(row.get(1)),
                    failing_told: row.get(2),
                    expiry_told: row.get(3),
                },
                None => SourceHealth::default(),
            })
        })
    }

    pub(super) fn read_snapshot(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Option<Snapshot>, StoreError> {
        let (source, order_id) = (source.to_owned(), order_id.to_owned());
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(&format!(
                    "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE source = $1 AND order_id = $2"
                ))
                .await
                .or_store(&at)?;
            match c
                .query_opt(&st, &[&source, &order_id])
                .await
                .or_store(&at)?
            {
                Some(row) => snapshot_of(&row, 0).map(Some),
                None => Ok(None),
            }
        })
    }

    /// The stored hash and listed flag of one order, from the source's
    /// hashes read in bulk.
    pub(super) fn read_snapshot_hash(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Option<(u128, bool)>, StoreError> {
        if let Some(known) = self.inner.hashes.get(source, order_id) {
            return Ok(known);
        }
        let owned = source.to_owned();
        let hashes = self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached("SELECT order_id, hash, listed FROM snapshots WHERE source = $1")
                .await
                .or_store(&at)?;
            let rows = c.query(&st, &[&owned]).await.or_store(&at)?;
            let mut out = HashMap::with_capacity(rows.len());
            for row in rows {
                let hash: Vec<u8> = row.get(1);
                // A hash that does not read is "no snapshot to compare
                // with": the order is then read in full, as sled does.
                if let Ok(hash) = <[u8; 16]>::try_from(hash.as_slice()) {
                    out.insert(
                        row.get::<_, String>(0),
                        (u128::from_be_bytes(hash), row.get(2)),
                    );
                }
            }
            Ok(out)
        })?;
        let known = hashes.get(order_id).copied();
        self.inner.hashes.fill(source, hashes);
        Ok(known)
    }

    pub(super) fn read_snapshots_after(
        &self,
        source: &str,
        after: Option<&str>,
    ) -> Records<(String, Snapshot)> {
        Box::new(SnapshotPages {
            inner: self.inner.clone(),
            source: source.to_owned(),
            after: after.map(str::to_owned),
            page: VecDeque::new(),
            done: false,
        })
    }

    /// Every order, latest change first (ties: source, then id, both
    /// descending), strictly below `below` when given, a page at a time.
    pub(super) fn read_orders_by_change(
        &self,
        below: Option<&ChangePosition>,
    ) -> Records<ChangedOrder> {
        Box::new(ChangedPages {
            inner: self.inner.clone(),
            below: below.cloned(),
            page: VecDeque::new(),
            done: false,
        })
    }

    pub(super) fn read_names(&self, table: &'static str) -> Result<Vec<String>, StoreError> {
        self.inner.run(move |c, at| async move {
            // A loose index scan: one index probe per name, not a read of
            // every row.
            let column = if table == "outbox" { "sink" } else { "source" };
            let sql = format!(
                "WITH RECURSIVE names(name) AS (
                     (SELECT {column} FROM {table} ORDER BY {column} LIMIT 1)
                     UNION ALL
                     SELECT (SELECT {column} FROM {table} WHERE {column} > names.name
                             ORDER BY {column} LIMIT 1)
                     FROM names WHERE names.name IS NOT NULL)
                 SELECT name FROM names WHERE name IS NOT NULL"
            );
            let st = c.prepare_cached(&sql).await.or_store(&at)?;
            let rows = c.query(&st, &[]).await.or_store(&at)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    pub(super) fn read_listed_ids(&self, source: &str) -> Result<Vec<String>, StoreError> {
        let source = source.to_owned();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(
                    "SELECT order_id FROM snapshots WHERE source = $1 AND listed ORDER BY order_id",
                )
                .await
                .or_store(&at)?;
            let rows = c.query(&st, &[&source]).await.or_store(&at)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    pub(super) fn read_events_before(&self, before: u64) -> Records<(u64, String)> {
        Box::new(EventPages {
            inner: self.inner.clone(),
            before: signed(before),
            page: VecDeque::new(),
            done: false,
        })
    }

    pub(super) fn read_timeline(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Vec<TimelineEntry>, StoreError> {
        let (source, order_id) = (source.to_owned(), order_id.to_owned());
        self.inner.run(move |c, at| async move {
            let events = c
                .prepare_cached(
                    "SELECT e.seq, b.body FROM events e JOIN bodies b ON b.seq = e.seq
                     WHERE e.source = $1 AND e.order_id = $2 ORDER BY e.seq",
                )
                .await
                .or_store(&at)?;
            let pending = c
                .prepare_cached(
                    "SELECT seq, sink, attempts, last_error, due_ms FROM outbox
                     WHERE source = $1 AND order_id = $2",
                )
                .await
                .or_store(&at)?;
            let delivered = c
                .prepare_cached(
                    "SELECT seq, sink, attempts, delivered_ms FROM deliveries
                     WHERE seq = ANY($1::bigint[])",
                )
                .await
                .or_store(&at)?;
            let dead = c
                .prepare_cached(
                    "SELECT seq, sink, attempts, reason, dead_ms FROM dead_letters
                     WHERE source = $1 AND order_id = $2",
                )
                .await
                .or_store(&at)?;
            let mut logged = Vec::new();
            for row in c
                .query(&events, &[&source, &order_id])
                .await
                .or_store(&at)?
            {
                let seq: i64 = row.get(0);
                let body: String = row.get(1);
                match serde_json::from_str::<Event>(&body) {
                    Ok(event) => logged.push((seq, event)),
                    Err(e) => tracing::warn!(
                        seq,
                        "a logged event does not decode, left out of its order's timeline: {e}"
                    ),
                }
            }
            let seqs: Vec<i64> = logged.iter().map(|(seq, _)| *seq).collect();
            let mut states: HashMap<i64, Vec<DeliveryState>> = HashMap::new();
            for row in c
                .query(&pending, &[&source, &order_id])
                .await
                .or_store(&at)?
            {
                let attempts = u32::try_from(row.get::<_, i32>(2)).unwrap_or(0);
                states.entry(row.get(0)).or_default().push(DeliveryState {
                    sink: row.get(1),
                    state: if attempts == 0 {
                        DeliveryStatus::Queued
                    } else {
                        DeliveryStatus::Retrying
                    },
                    attempts,
                    last_error: row.get(3),
                    at_ms: Some(unsigned(row.get(4))),
                });
            }
            for row in c.query(&delivered, &[&seqs]).await.or_store(&at)? {
                states.entry(row.get(0)).or_default().push(DeliveryState {
                    sink: row.get(1),
                    state: DeliveryStatus::Delivered,
                    attempts: u32::try_from(row.get::<_, i32>(2)).unwrap_or(0),
                    last_error: None,
                    at_ms: Some(unsigned(row.get(3))),
                });
            }
            for row in c.query(&dead, &[&source, &order_id]).await.or_store(&at)? {
                states.entry(row.get(0)).or_default().push(DeliveryState {
                    sink: row.get(1),
                    state: DeliveryStatus::DeadLettered,
                    attempts: u32::try_from(row.get::<_, i32>(2)).unwrap_or(0),
                    last_error: Some(row.get(3)),
                    at_ms: Some(unsigned(row.get(4))),
                });
            }
            Ok(logged
                .into_iter()
                .map(|(seq, event)| {
                    let mut deliveries = states.remove(&seq).unwrap_or_default();
                    deliveries.sort_by(|a, b| a.sink.cmp(&b.sink));
                    TimelineEntry {
                        seq: unsigned(seq),
                        event,
                        deliveries,
                    }
                })
                .collect())
        })
    }
}

/// Each source's snapshot hashes and listed flags, in memory.
///
/// A cycle compares every order it reads with its snapshot's hash, and an
/// answer per order would be a round trip per order (a thousand a page).
/// So the first comparison of a source reads all its hashes in one query,
/// and this store's own commits keep them current; they are read again
/// after [`HASHES_FOR`], and forgotten when a commit of the source fails
/// (it may or may not have landed), or when another replica led the source
/// in between (`lease.rs`). That is exact because only a source's leader
/// writes its snapshots (fenced), and `store copy` only into an empty
/// store; the snapshot an event is made from is always read from the
/// database itself.
#[derive(Default)]
pub(super) struct HashCache {
    sources: std::sync::Mutex<HashMap<String, SourceHashes>>,
}

struct SourceHashes {
    read_at: std::time::Instant,
    hashes: HashMap<String, (u128, bool)>,
}

/// How long a source's hashes are used before they are read again.
const HASHES_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl HashCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SourceHashes>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(answer)` when the source's hashes are known and fresh.
    fn get(&self, source: &str, order_id: &str) -> Option<Option<(u128, bool)>> {
        let sources = self.lock();
        let known = sources.get(source)?;
        (known.read_at.elapsed() < HASHES_FOR).then(|| known.hashes.get(order_id).copied())
    }

    fn fill(&self, source: &str, hashes: HashMap<String, (u128, bool)>) {
        self.lock().insert(
            source.to_owned(),
            SourceHashes {
                read_at: std::time::Instant::now(),
                hashes,
            },
        );
    }

    /// A commit of `source` landed: its snapshots as they now are.
    pub(super) fn committed(&self, source: &str, written: &[(String, Option<(u128, bool)>)]) {
        let mut sources = self.lock();
        let Some(known) = sources.get_mut(source) else {
            return;
        };
        for (id, hash) in written {
            match hash {
                Some(h) => known.hashes.insert(id.clone(), *h),
                None => known.hashes.remove(id),
            };
        }
    }

    /// Read `source`'s hashes again on their next use: a commit failed (it
    /// may or may not have landed), or another replica led the source.
    pub(super) fn forget(&self, source: &str) {
        self.lock().remove(source);
    }
}

/// A source's snapshots after an id, a page at a time.
struct SnapshotPages {
    inner: Arc<Inner>,
    source: String,
    /// The last id read; `None` before the first page of a whole source.
    after: Option<String>,
    page: VecDeque<(String, Snapshot)>,
    done: bool,
}

impl Iterator for SnapshotPages {
    type Item = Result<(String, Snapshot), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            let (source, after) = (self.source.clone(), self.after.clone());
            let read = self.inner.run(move |c, at| async move {
                let st = c
                    .prepare_cached(&format!(
                        "SELECT order_id, {SNAPSHOT_COLUMNS} FROM snapshots
                         WHERE source = $1 AND ($2::text IS NULL OR order_id > $2)
                         ORDER BY order_id LIMIT $3"
                    ))
                    .await
                    .or_store(&at)?;
                let rows = c
                    .query(&st, &[&source, &after, &PAGE])
                    .await
                    .or_store(&at)?;
                rows.iter()
                    .map(|row| Ok((row.get::<_, String>(0), snapshot_of(row, 1)?)))
                    .collect::<Result<Vec<_>, StoreError>>()
            });
            match read {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < PAGE;
                    if let Some((id, _)) = rows.last() {
                        self.after = Some(id.clone());
                    }
                    self.page.extend(rows);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}

/// The orders by last change, newest first, a page at a time.
struct ChangedPages {
    inner: Arc<Inner>,
    /// Where the last page ended; `None` before the first of a whole walk.
    below: Option<ChangePosition>,
    page: VecDeque<ChangedOrder>,
    done: bool,
}

impl Iterator for ChangedPages {
    type Item = Result<ChangedOrder, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            let below = self
                .below
                .as_ref()
                .map(|b| (signed(b.changed_ms), b.source.clone(), b.order_id.clone()));
            let read = self.inner.run(move |c, at| async move {
                let rows = match &below {
                    Some((ms, source, order_id)) => {
                        let st = c
                            .prepare_cached(&format!(
                                "SELECT changed_ms, source, order_id, {SNAPSHOT_COLUMNS}
                                 FROM snapshots WHERE (changed_ms, source, order_id) < ($1, $2, $3)
                                 ORDER BY changed_ms DESC, source DESC, order_id DESC LIMIT $4"
                            ))
                            .await
                            .or_store(&at)?;
                        c.query(&st, &[ms, source, order_id, &PAGE])
                            .await
                            .or_store(&at)?
                    }
                    None => {
                        let st = c
                            .prepare_cached(&format!(
                                "SELECT changed_ms, source, order_id, {SNAPSHOT_COLUMNS}
                                 FROM snapshots
                                 ORDER BY changed_ms DESC, source DESC, order_id DESC LIMIT $1"
                            ))
                            .await
                            .or_store(&at)?;
                        c.query(&st, &[&PAGE]).await.or_store(&at)?
                    }
                };
                rows.iter()
                    .map(|row| {
                        Ok(ChangedOrder {
                            at: ChangePosition {
                                changed_ms: unsigned(row.try_get(0).map_err(damaged)?),
                                source: row.try_get(1).map_err(damaged)?,
                                order_id: row.try_get(2).map_err(damaged)?,
                            },
                            snapshot: snapshot_of(row, 3)?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            });
            match read {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < PAGE;
                    if let Some(last) = rows.last() {
                        self.below = Some(last.at.clone());
                    }
                    self.page.extend(rows);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}

/// The event log below a sequence, newest first, a page at a time.
struct EventPages {
    inner: Arc<Inner>,
    before: i64,
    page: VecDeque<(u64, String)>,
    done: bool,
}

impl Iterator for EventPages {
    type Item = Result<(u64, String), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            let before = self.before;
            let read = self.inner.run(move |c, at| async move {
                let st = c
                    .prepare_cached(
                        "SELECT e.seq, b.body FROM events e JOIN bodies b ON b.seq = e.seq
                         WHERE e.seq < $1 ORDER BY e.seq DESC LIMIT $2",
                    )
                    .await
                    .or_store(&at)?;
                let rows = c.query(&st, &[&before, &PAGE]).await.or_store(&at)?;
                Ok(rows
                    .iter()
                    .map(|row| (row.get::<_, i64>(0), row.get::<_, String>(1)))
                    .collect::<Vec<_>>())
            });
            match read {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < PAGE;
                    if let Some((seq, _)) = rows.last() {
                        self.before = *seq;
                    }
                    self.page
                        .extend(rows.into_iter().map(|(seq, body)| (unsigned(seq), body)));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}
