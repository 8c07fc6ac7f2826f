//! What `store copy` writes into a postgres store: every record of another
//! store, fed in chunks while one transaction stays open, so the copy lands
//! whole or not at all (a copy that fails leaves the database as empty as
//! it found it, and can simply be run again).
//!
//! Only an empty store is written: copying over one that holds anything
//! would mix two histories (two sequences of events, two baselines).

use super::write::{BURY, dead_letter_params, entry_params};
use super::{OrStore, PgStore, connection, signed};
use crate::store::{DeadLetter, OutboxEntry, Snapshot, SourceHealth, StoreError, SyncState};
use std::time::Duration;

/// The longest a copy may hold its transaction open.
const COPY_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// One event of the log, as the copy reads it.
pub(crate) struct LoggedEvent {
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    pub order_id: String,
}

/// A chunk of records to copy.
pub(crate) enum CopyChunk {
    Snapshots(String, Vec<(String, Snapshot)>),
    Bodies(Vec<(u64, String)>),
    Events(Vec<LoggedEvent>),
    /// Entries with the time they are due.
    Outbox(Vec<(OutboxEntry, u64)>),
    DeadLetters(Vec<DeadLetter>),
    /// `(seq, sink, attempts, delivered_ms)`
    Deliveries(Vec<(u64, String, u32, u64)>),
    /// `(source, marked_ms)`
    Baselines(Vec<(String, u64)>),
    Sync(Vec<(String, SyncState)>),
    Health(Vec<(String, SourceHealth)>),
    /// The timer index, whole: what was told of each due date and status
    /// episode, and what is armed.
    Timers(crate::store::TimerRows),
    /// The events kept for digests, and per sink since when its first
    /// digest has waited (`None`: made already).
    Digests {
        held: Vec<OutboxEntry>,
        first: Vec<(String, Option<u64>)>,
    },
    /// The last sequence number given out: the next event comes after it.
    Done {
        event_seq: u64,
    },
}

/// A copy under way: send it chunks, then [`Importer::finish`].
pub(crate) struct Importer {
    chunks: Option<tokio::sync::mpsc::Sender<CopyChunk>>,
    pending: super::runner::Pending<()>,
}

impl Importer {
    /// Hand over one chunk; fails when the copy has already failed (then
    /// [`Importer::finish`] says why).
    pub(crate) fn send(&mut self, chunk: CopyChunk) -> Result<(), ()> {
        match &self.chunks {
            Some(tx) => tx.blocking_send(chunk).map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Wait for the copy's commit (after [`CopyChunk::Done`]) or its failure.
    pub(crate) fn finish(mut self) -> Result<(), StoreError> {
        self.chunks = None;
        self.pending.wait()
    }
}

impl PgStore {
    /// Begin a copy into this store, which must hold nothing yet.
    /// `send` blocks: call it from a thread that may block.
    pub(crate) fn import(&self) -> Result<Importer, StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<CopyChunk>(4);
        let at = self.at();
        let pending = self.inner.runner.submit(COPY_LIMIT, move |pool| async move {
            let mut c = connection(&pool, &at).await?;
            let tx = c.transaction().await.or_store(&at)?;
            // Nothing else may write while the copy checks and fills.
            tx.batch_execute(
                "LOCK TABLE snapshots, outbox, dead_letters, events, bodies, deliveries,
                      baselines, sync_state, source_health, timers, timer_schedule,
                      timer_settings, digest_held, digest_first IN EXCLUSIVE MODE",
            )
            .await
            .or_store(&at)?;
            let held: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM snapshots) OR EXISTS (SELECT 1 FROM outbox)
                         OR EXISTS (SELECT 1 FROM dead_letters) OR EXISTS (SELECT 1 FROM events)
                         OR EXISTS (SELECT 1 FROM bodies) OR EXISTS (SELECT 1 FROM baselines)
                         OR EXISTS (SELECT 1 FROM sync_state)
                         OR EXISTS (SELECT 1 FROM source_health)
                         OR EXISTS (SELECT 1 FROM timers)
                         OR EXISTS (SELECT 1 FROM timer_schedule)
                         OR EXISTS (SELECT 1 FROM timer_settings)
                         OR EXISTS (SELECT 1 FROM digest_held)
                         OR EXISTS (SELECT 1 FROM digest_first)",
                    &[],
                )
                .await
                .or_store(&at)?
                .get(0);
            if held {
                return Err(StoreError::NotEmpty { at: at.to_string() });
            }
            let now = signed(crate::store::now_ms());
            while let Some(chunk) = rx.recv().await {
                match chunk {
                    CopyChunk::Snapshots(source, rows) => {
                        let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
                        let revisions: Vec<i64> =
                            rows.iter().map(|(_, s)| signed(s.revision)).collect();
                        let hashes: Vec<Vec<u8>> = rows
                            .iter()
                            .map(|(_, s)| s.hash.to_be_bytes().to_vec())
                            .collect();
                        let listed: Vec<bool> = rows.iter().map(|(_, s)| s.listed).collect();
                        let statuses: Vec<Option<&str>> =
                            rows.iter().map(|(_, s)| s.status.as_deref()).collect();
                        let changed: Vec<&str> =
                            rows.iter().map(|(_, s)| s.changed_at.as_str()).collect();
                        let orders: Vec<&str> =
                            rows.iter().map(|(_, s)| s.order.as_str()).collect();
                        let changed_ms: Vec<i64> = rows
                            .iter()
                            .map(|(_, s)| signed(crate::store::snapshot::changed_ms(&s.changed_at)))
                            .collect();
                        tx.execute(
                            "INSERT INTO snapshots (source, order_id, revision, hash, listed,
                                                    status, changed_at, body, changed_ms)
                             SELECT $1, u.* FROM UNNEST($2::text[], $3::bigint[], $4::bytea[],
                                 $5::boolean[], $6::text[], $7::text[], $8::text[], $9::bigint[])
                                 AS u",
                            &[
                                &source, &ids, &revisions, &hashes, &listed, &statuses, &changed,
                                &orders, &changed_ms,
                            ],
                        )
                        .await
                        .or_store(&at)?;
                    }
                    CopyChunk::Bodies(rows) => {
                        let seqs: Vec<i64> = rows.iter().map(|(seq, _)| signed(*seq)).collect();
                        let bodies: Vec<&str> = rows.iter().map(|(_, b)| b.as_str()).collect();
                        tx.execute(
                            "INSERT INTO bodies (seq, body)
                             SELECT * FROM UNNEST($1::bigint[], $2::text[])",
                            &[&seqs, &bodies],
                        )
                        .await
                        .or_store(&at)?;
                    }
                    CopyChunk::Events(rows) => {
                        let seqs: Vec<i64> = rows.iter().map(|e| signed(e.seq)).collect();
                        let ids: Vec<&str> = rows.iter().map(|e| e.event_id.as_str()).collect();
                        let kinds: Vec<&str> =
                            rows.iter().map(|e| e.event_type.as_str()).collect();
                        let sources: Vec<&str> = rows.iter().map(|e| e.source.as_str()).collect();
                        let orders: Vec<&str> = rows.iter().map(|e| e.order_id.as_str()).collect();
                        tx.execute(
                            "INSERT INTO events (seq, event_id, type, source, order_id, committed_ms)
                             SELECT u.*, $6 FROM UNNEST($1::bigint[], $2::text[], $3::text[],
                                 $4::text[], $5::text[]) AS u",
                            &[&seqs, &ids, &kinds, &sources, &orders, &now],
                        )
                        .await
                        .or_store(&at)?;
                    }
                    CopyChunk::Outbox(rows) => {
                        let st = tx
                            .prepare(
                                "INSERT INTO outbox (sink, seq, source, order_id, event_id, type,
                                     attempts, created_ms, last_error, due_ms)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                            )
                            .await
                            .or_store(&at)?;
                        for (e, due) in &rows {
                            let mut params = entry_params(e);
                            params.push(signed(*due));
                            tx.execute(&st, &params.refs()).await.or_store(&at)?;
                        }
                    }
                    CopyChunk::DeadLetters(rows) => {
                        let st = tx.prepare(BURY).await.or_store(&at)?;
                        for d in &rows {
                            tx.execute(&st, &dead_letter_params(d).refs())
                                .await
                                .or_store(&at)?;
                        }
                    }
                    CopyChunk::Deliveries(rows) => {
                        for (seq, sink, attempts, at_ms) in &rows {
                            tx.execute(
                                "INSERT INTO deliveries (seq, sink, attempts, delivered_ms)
                                 VALUES ($1, $2, $3, $4)",
                                &[
                                    &signed(*seq),
                                    sink,
                                    &i32::try_from(*attempts).unwrap_or(i32::MAX),
                                    &signed(*at_ms),
                                ],
                            )
                            .await
                            .or_store(&at)?;
                        }
                    }
                    CopyChunk::Baselines(rows) => {
                        for (source, marked) in &rows {
                            tx.execute(
                                "INSERT INTO baselines (source, marked_ms) VALUES ($1, $2)",
                                &[source, &signed(*marked)],
                            )
                            .await
                            .or_store(&at)?;
                        }
                    }
                    CopyChunk::Sync(rows) => {
                        for (source, state) in &rows {
                            tx.execute(
                                "INSERT INTO sync_state (source, high_water, last_full_ms)
                                 VALUES ($1, $2, $3)",
                                &[source, &state.high_water, &state.last_full_ms.map(signed)],
                            )
                            .await
                            .or_store(&at)?;
                        }
                    }
                    CopyChunk::Health(rows) => {
                        for (source, h) in &rows {
                            tx.execute(
                                "INSERT INTO source_health
                                     (source, failing_since_ms, failures, failing_told, expiry_told)
                                 VALUES ($1, $2, $3, $4, $5)",
                                &[
                                    source,
                                    &h.failing_since_ms.map(signed),
                                    &signed(h.failures),
                                    &h.failing_told,
                                    &h.expiry_told,
                                ],
                            )
                            .await
                            .or_store(&at)?;
                        }
                    }
                    CopyChunk::Timers(rows) => {
                        let (sources, orders, records): (Vec<&str>, Vec<&str>, Vec<&str>) = (
                            rows.records.iter().map(|r| r.0.as_str()).collect(),
                            rows.records.iter().map(|r| r.1.as_str()).collect(),
                            rows.records.iter().map(|r| r.2.as_str()).collect(),
                        );
                        tx.execute(
                            "INSERT INTO timers (source, order_id, record)
                             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])",
                            &[&sources, &orders, &records],
                        )
                        .await
                        .or_store(&at)?;
                        let fires: Vec<i64> = rows.schedule.iter().map(|s| signed(s.0)).collect();
                        let sources: Vec<&str> =
                            rows.schedule.iter().map(|s| s.1.as_str()).collect();
                        let orders: Vec<&str> =
                            rows.schedule.iter().map(|s| s.2.as_str()).collect();
                        let kinds: Vec<i16> = rows
                            .schedule
                            .iter()
                            .map(|s| i16::from(s.3.byte()))
                            .collect();
                        tx.execute(
                            "INSERT INTO timer_schedule (fire_ms, source, order_id, kind)
                             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[],
                                 $4::smallint[])",
                            &[&fires, &sources, &orders, &kinds],
                        )
                        .await
                        .or_store(&at)?;
                        for (source, settings) in &rows.settings {
                            tx.execute(
                                "INSERT INTO timer_settings (source, fingerprint) VALUES ($1, $2)",
                                &[source, settings],
                            )
                            .await
                            .or_store(&at)?;
                        }
                    }
                    CopyChunk::Digests { held, first } => {
                        let st = tx
                            .prepare(
                                "INSERT INTO digest_held (sink, seq, source, order_id, event_id,
                                     type, attempts, created_ms, last_error)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                            )
                            .await
                            .or_store(&at)?;
                        for e in &held {
                            tx.execute(&st, &entry_params(e).refs())
                                .await
                                .or_store(&at)?;
                        }
                        for (sink, from) in &first {
                            tx.execute(
                                "INSERT INTO digest_first (sink, from_ms) VALUES ($1, $2)",
                                &[sink, &from.map(signed)],
                            )
                            .await
                            .or_store(&at)?;
                        }
                    }
                    CopyChunk::Done { event_seq } => {
                        if event_seq > 0 {
                            tx.execute("SELECT setval('event_seq', $1)", &[&signed(event_seq)])
                                .await
                                .or_store(&at)?;
                        }
                        tx.commit().await.or_store(&at)?;
                        return Ok(());
                    }
                }
            }
            // The reader stopped without finishing: the transaction rolls
            // back as it is dropped.
            Err(StoreError::Engine(format!(
                "the copy into the postgres store {at} stopped before the end: nothing was copied"
            )))
        })?;
        Ok(Importer {
            chunks: Some(tx),
            pending,
        })
    }
}
