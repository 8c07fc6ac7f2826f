//! What the postgres store writes: a poll's commit, and the life of an
//! outbox entry (due, delivered, rescheduled, buried, replayed).
//!
//! A commit is one transaction of a few statements, whatever its size:
//! each table's new rows go in as arrays through `UNNEST`. Each outbox step
//! is one statement, so it is atomic without a transaction around it
//! (completions have one, for the commit setting they alone use), and the
//! dispatcher's steps for a batch (its heads of order, a chunk's
//! completions) are one statement for all its entries, arrays again.

use super::read::{dead_letter_of, entry_of};
use super::{OrStore, PgStore, signed, unsigned};
use crate::store::{
    Commit, DeadLetter, DueEntry, EVENT_LOG_LEN, Hold, OutboxEntry, Snapshot, StoreError, now_ms,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres::types::ToSql;

/// A sink an event goes to, and when it leaves for it.
type SinkHold = (String, Hold);

/// A commit's rows, as the arrays its statements take.
#[derive(Default)]
struct Rows {
    source: String,
    upsert_ids: Vec<String>,
    revisions: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    listed: Vec<bool>,
    statuses: Vec<Option<String>>,
    changed_at: Vec<String>,
    /// `changed_at` as unix ms, as the sled store's `changed` index reads it.
    changed_ms: Vec<i64>,
    orders: Vec<String>,
    delete_ids: Vec<String>,
    /// Per event, in commit order: id, type, order, body, and its sinks
    /// with when it leaves for each.
    events: Vec<(String, String, String, String, Vec<SinkHold>)>,
    baseline: bool,
    sync: Option<(Option<String>, Option<i64>)>,
    health: Option<(Option<i64>, i64, bool, Option<String>)>,
}

impl Rows {
    fn of(commit: &Commit) -> Rows {
        let mut rows = Rows {
            source: commit.source.clone(),
            baseline: commit.mark_baseline,
            ..Rows::default()
        };
        // One row per order id, the last write winning, as it does in sled
        // (one statement cannot touch a row twice).
        let mut last: HashMap<&str, &Option<Snapshot>> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (id, snap) in &commit.snapshots {
            if last.insert(id.as_str(), snap).is_none() {
                order.push(id.as_str());
            }
        }
        for id in order {
            match last[id] {
                Some(s) => {
                    rows.upsert_ids.push(id.to_owned());
                    rows.revisions.push(signed(s.revision));
                    rows.hashes.push(s.hash.to_be_bytes().to_vec());
                    rows.listed.push(s.listed);
                    rows.statuses.push(s.status.clone());
                    rows.changed_at.push(s.changed_at.clone());
                    rows.changed_ms
                        .push(signed(crate::store::snapshot::changed_ms(&s.changed_at)));
                    rows.orders.push(s.order.clone());
                }
                None => rows.delete_ids.push(id.to_owned()),
            }
        }
        for e in &commit.events {
            let mut sinks: Vec<SinkHold> = Vec::with_capacity(e.sinks.len());
            for routed in &e.sinks {
                if !sinks.iter().any(|(s, _)| *s == routed.sink) {
                    sinks.push((routed.sink.clone(), routed.hold));
                }
            }
            rows.events.push((
                e.event_id.clone(),
                e.event_type.as_str().to_owned(),
                e.order_id.clone(),
                e.json.clone(),
                sinks,
            ));
        }
        rows.sync = commit
            .sync
            .as_ref()
            .map(|u| (u.high_water.clone(), u.last_full_ms.map(signed)));
        rows.health = commit.health.as_ref().map(|h| {
            (
                h.failing_since_ms.map(signed),
                signed(h.failures),
                h.failing_told,
                h.expiry_told.clone(),
            )
        });
        rows
    }
}

/// How long a replica's claim on the entries `due` gave it lasts from its
/// last renewal. While the replica lives it renews its claims every
/// [`RENEW_CLAIMS`], however long its deliveries take (a batch's attempts,
/// each up to its sink's `timeout`, spaced by `max_per_minute`), so the
/// claim of a live replica never runs out under a delivery; a dead
/// replica's claims run out within this, and another replica takes them.
const CLAIM: Duration = Duration::from_secs(15);
/// A third of [`CLAIM`]: a renewal may be late twice before a claim runs out.
const RENEW_CLAIMS: Duration = Duration::from_secs(5);

/// The database's clock in unix milliseconds: claims are timed by it, so
/// the replicas' clocks need not agree.
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// A dead letter in, its entry out of the outbox (if still there).
pub(super) const BURY: &str = "WITH gone AS (DELETE FROM outbox WHERE sink = $1 AND seq = $2)
     INSERT INTO dead_letters (sink, seq, source, order_id, event_id, type,
                               attempts, created_ms, last_error, reason, dead_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (sink, seq) DO UPDATE SET
         attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
         reason = EXCLUDED.reason, dead_ms = EXCLUDED.dead_ms";

/// Entries delivered: each goes, its delivery is logged, and its body goes
/// when nothing else needs it. `$1`-`$3` are the entries' sinks, seqs and
/// attempts as arrays, so a chunk of deliveries is one statement. Its
/// subqueries see the outbox as it was before the statement, hence the
/// entries in `gone` are left out of the search for another holder.
const COMPLETE: &str = "WITH done AS (SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::integer[])
                       AS u(sink, seq, attempts)),
          gone AS (DELETE FROM outbox o USING done
                   WHERE o.sink = done.sink AND o.seq = done.seq
                   RETURNING o.sink, o.seq, done.attempts),
          logged AS (
              INSERT INTO deliveries (seq, sink, attempts, delivered_ms)
              SELECT seq, sink, attempts, $4 FROM gone
              ON CONFLICT (seq, sink) DO UPDATE SET
                  attempts = EXCLUDED.attempts,
                  delivered_ms = EXCLUDED.delivered_ms)
     DELETE FROM bodies b WHERE b.seq IN (SELECT seq FROM gone)
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = b.seq
             AND NOT EXISTS (SELECT 1 FROM gone g WHERE g.sink = o.sink AND g.seq = o.seq))
         AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = b.seq)
         AND NOT EXISTS (SELECT 1 FROM digest_held h WHERE h.seq = b.seq)
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = b.seq)";

/// Statement parameters, owned.
pub(super) struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    pub(super) fn push(&mut self, value: impl ToSql + Sync + Send + 'static) {
        self.0.push(Box::new(value));
    }

    pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// An entry's columns, in table order: sink, seq, source, order_id,
/// event_id, type, attempts, created_ms, last_error.
pub(super) fn entry_params(e: &OutboxEntry) -> Params {
    Params(vec![
        Box::new(e.sink.clone()),
        Box::new(signed(e.seq)),
        Box::new(e.source.clone()),
        Box::new(e.order_id.clone()),
        Box::new(e.event_id.clone()),
        Box::new(e.event_type.as_str()),
        Box::new(i32::try_from(e.attempts).unwrap_or(i32::MAX)),
        Box::new(signed(e.created_ms)),
        Box::new(e.last_error.clone()),
    ])
}

/// [`BURY`]'s parameters.
pub(super) fn dead_letter_params(d: &DeadLetter) -> Params {
    let mut params = entry_params(&d.entry);
    params.push(d.reason.clone());
    params.push(signed(d.dead_ms));
    params
}

impl PgStore {
    pub(super) fn write_commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if commit.is_empty() {
            return Ok(());
        }
        let rows = Rows::of(commit);
        let now_unsigned = now_ms();
        let now = signed(now_unsigned);
        let (fired, timers) = (commit.fired.clone(), commit.timers.clone());
        let written: Vec<(String, Option<(u128, bool)>)> = commit
            .snapshots
            .iter()
            .map(|(id, snap)| (id.clone(), snap.as_ref().map(|s| (s.hash, s.listed))))
            .collect();
        let (me, held) = (
            self.inner.holder.clone(),
            self.inner.fences.of(&commit.source),
        );
        let result = self.inner.run(move |mut c, at| async move {
            let tx = c.transaction().await.or_store(&at)?;
            let r = rows;
            super::lease::check_in(&tx, &at, &r.source, &me, held).await?;
            // Before the baseline mark below: a baseline's timers tell
            // nothing already due.
            super::timers::write_in_commit(
                &tx,
                &at,
                &r.source,
                &fired,
                timers.as_ref(),
                now_unsigned,
            )
            .await?;
            if !r.upsert_ids.is_empty() {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO snapshots (source, order_id, revision, hash, listed, status,
                                                changed_at, body, changed_ms)
                         SELECT $1, u.* FROM UNNEST($2::text[], $3::bigint[], $4::bytea[],
                             $5::boolean[], $6::text[], $7::text[], $8::text[], $9::bigint[]) AS u
                         ON CONFLICT (source, order_id) DO UPDATE SET
                             revision = EXCLUDED.revision, hash = EXCLUDED.hash,
                             listed = EXCLUDED.listed, status = EXCLUDED.status,
                             changed_at = EXCLUDED.changed_at, body = EXCLUDED.body,
                             changed_ms = EXCLUDED.changed_ms",
                    )
                    .await
                    .or_store(&at)?;
                tx.execute(
                    &st,
                    &[
                        &r.source,
                        &r.upsert_ids,
                        &r.revisions,
                        &r.hashes,
                        &r.listed,
                        &r.statuses,
                        &r.changed_at,
                        &r.orders,
                        &r.changed_ms,
                    ],
                )
                .await
                .or_store(&at)?;
            }
            if !r.delete_ids.is_empty() {
                let st = tx
                    .prepare_cached(
                        "DELETE FROM snapshots WHERE source = $1 AND order_id = ANY($2::text[])",
                    )
                    .await
                    .or_store(&at)?;
                tx.execute(&st, &[&r.source, &r.delete_ids])
                    .await
                    .or_store(&at)?;
            }
            if !r.events.is_empty() {
                let n = i32::try_from(r.events.len()).unwrap_or(i32::MAX);
                let st = tx
                    .prepare_cached("SELECT nextval('event_seq') FROM generate_series(1, $1)")
                    .await
                    .or_store(&at)?;
                let mut seqs: Vec<i64> = tx
                    .query(&st, &[&n])
                    .await
                    .or_store(&at)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                seqs.sort_unstable();
                let (mut ids, mut kinds, mut orders, mut bodies) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let (mut o_sinks, mut o_seqs, mut o_orders, mut o_ids, mut o_kinds) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let mut o_due: Vec<i64> = Vec::new();
                let (mut k_sinks, mut k_seqs, mut k_orders, mut k_ids, mut k_kinds) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (seq, (id, kind, order, body, sinks)) in seqs.iter().zip(&r.events) {
                    for (sink, hold) in sinks {
                        // Kept for the sink's digest, or queued: now, or
                        // when a route's quiet hours end (`max_age` then
                        // counts from there, as on sled).
                        let due = match hold {
                            Hold::Digest => {
                                k_sinks.push(sink.clone());
                                k_seqs.push(*seq);
                                k_orders.push(order.clone());
                                k_ids.push(id.clone());
                                k_kinds.push(kind.clone());
                                continue;
                            }
                            Hold::Now => now,
                            Hold::Until(at) => signed(*at).max(now),
                        };
                        o_sinks.push(sink.clone());
                        o_seqs.push(*seq);
                        o_orders.push(order.clone());
                        o_ids.push(id.clone());
                        o_kinds.push(kind.clone());
                        o_due.push(due);
                    }
                    ids.push(id.clone());
                    kinds.push(kind.clone());
                    orders.push(order.clone());
                    bodies.push(body.clone());
                }
                let st = tx
                    .prepare_cached(
                        "INSERT INTO bodies (seq, body)
                         SELECT * FROM UNNEST($1::bigint[], $2::text[])",
                    )
                    .await
                    .or_store(&at)?;
                tx.execute(&st, &[&seqs, &bodies]).await.or_store(&at)?;
                let st = tx
                    .prepare_cached(
                        "INSERT INTO events (seq, event_id, type, source, order_id, committed_ms)
                         SELECT u.seq, u.id, u.kind, $5, u.order_id, $6
                         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[])
                             AS u(seq, id, kind, order_id)",
                    )
                    .await
                    .or_store(&at)?;
                tx.execute(&st, &[&seqs, &ids, &kinds, &orders, &r.source, &now])
                    .await
                    .or_store(&at)?;
                if !o_seqs.is_empty() {
                    let st = tx
                        .prepare_cached(
                            "INSERT INTO outbox (sink, seq, source, order_id, event_id, type,
                                                 due_ms, attempts, created_ms)
                             SELECT u.sink, u.seq, $6, u.order_id, u.id, u.kind, u.due, 0, u.due
                             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[],
                                         $5::text[], $7::bigint[])
                                 AS u(sink, seq, order_id, id, kind, due)",
                        )
                        .await
                        .or_store(&at)?;
                    tx.execute(
                        &st,
                        &[&o_sinks, &o_seqs, &o_orders, &o_ids, &o_kinds, &r.source, &o_due],
                    )
                    .await
                    .or_store(&at)?;
                }
                if !k_seqs.is_empty() {
                    let st = tx
                        .prepare_cached(
                            "INSERT INTO digest_held (sink, seq, source, order_id, event_id, type,
                                                      attempts, created_ms)
                             SELECT u.sink, u.seq, $6, u.order_id, u.id, u.kind, 0, $7
                             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[],
                                         $5::text[]) AS u(sink, seq, order_id, id, kind)",
                        )
                        .await
                        .or_store(&at)?;
                    tx.execute(
                        &st,
                        &[&k_sinks, &k_seqs, &k_orders, &k_ids, &k_kinds, &r.source, &now],
                    )
                    .await
                    .or_store(&at)?;
                }
                // The log keeps the last EVENT_LOG_LEN sequence numbers;
                // a body older than that stays while an entry needs it.
                let last = seqs.last().copied().unwrap_or(0);
                let keep_from = last - signed(EVENT_LOG_LEN);
                if keep_from > 0 {
                    let st = tx
                        .prepare_cached(
                            "WITH old_events AS (DELETE FROM events WHERE seq <= $1),
                                  old_deliveries AS (DELETE FROM deliveries WHERE seq <= $1)
                             DELETE FROM bodies b WHERE b.seq <= $1
                                 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = b.seq)
                                 AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = b.seq)
                                 AND NOT EXISTS (SELECT 1 FROM digest_held h WHERE h.seq = b.seq)",
                        )
                        .await
                        .or_store(&at)?;
                    tx.execute(&st, &[&keep_from]).await.or_store(&at)?;
                }
            }
            if r.baseline {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO baselines (source, marked_ms) VALUES ($1, $2)
                         ON CONFLICT (source) DO UPDATE SET marked_ms = EXCLUDED.marked_ms",
                    )
                    .await
                    .or_store(&at)?;
                tx.execute(&st, &[&r.source, &now]).await.or_store(&at)?;
            }
            if let Some((high_water, last_full)) = &r.sync {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO sync_state (source, high_water, last_full_ms)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (source) DO UPDATE SET
                             high_water = coalesce(EXCLUDED.high_water, sync_state.high_water),
                             last_full_ms = coalesce(EXCLUDED.last_full_ms, sync_state.last_full_ms)",
                    )
                    .await
                    .or_store(&at)?;
                tx.execute(&st, &[&r.source, high_water, last_full])
                    .await
                    .or_store(&at)?;
            }
            if let Some((since, failures, told, expiry)) = &r.health {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO source_health
                             (source, failing_since_ms, failures, failing_told, expiry_told)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (source) DO UPDATE SET
                             failing_since_ms = EXCLUDED.failing_since_ms,
                             failures = EXCLUDED.failures,
                             failing_told = EXCLUDED.failing_told,
                             expiry_told = EXCLUDED.expiry_told",
                    )
                    .await
                    .or_store(&at)?;
                tx.execute(&st, &[&r.source, since, failures, told, expiry])
                    .await
                    .or_store(&at)?;
            }
            tx.commit().await.or_store(&at)?;
            Ok(())
        });
        match &result {
            Ok(()) => self.inner.hashes.committed(&commit.source, &written),
            Err(e) => {
                if matches!(e, StoreError::Fenced { .. }) {
                    self.inner.fences.drop_source(&commit.source);
                }
                self.inner.hashes.forget(&commit.source);
            }
        }
        result
    }

    /// What is due, claimed by this replica for [`CLAIM`] (renewed while
    /// it lives, [`renew_claims`]): another replica's `due` skips it (`SKIP
    /// LOCKED` while the claim is made, the claim after), until it is
    /// delivered, rescheduled or the claim ran out (its replica died:
    /// retried, same id).
    pub(super) fn write_due(
        &self,
        sink: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<DueEntry>, StoreError> {
        let (sink, me) = (sink.to_owned(), self.inner.holder.clone());
        let (now, limit) = (signed(now_ms), i64::try_from(limit).unwrap_or(i64::MAX));
        let claim = signed(CLAIM.as_millis() as u64);
        let claiming = self.inner.claiming.clone();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(&format!(
                    "WITH due AS (
                         SELECT sink, seq FROM outbox
                         WHERE sink = $1 AND due_ms <= $2
                             AND (claimed_by IS NULL OR claimed_by = $4
                                  OR claimed_until_ms < {DB_NOW_MS})
                         ORDER BY due_ms, seq LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     UPDATE outbox o SET claimed_by = $4, claimed_until_ms = {DB_NOW_MS} + $5
                     FROM due WHERE o.sink = due.sink AND o.seq = due.seq
                     RETURNING o.*, (SELECT body FROM bodies b WHERE b.seq = o.seq) AS body"
                ))
                .await
                .or_store(&at)?;
            let rows = c
                .query(&st, &[&sink, &now, &limit, &me, &claim])
                .await
                .or_store(&at)?;
            if !rows.is_empty() {
                claiming.store(true, Ordering::SeqCst);
            }
            let mut due = rows
                .iter()
                .map(|row| {
                    Ok((
                        (row.get::<_, i64>("due_ms"), row.get::<_, i64>("seq")),
                        DueEntry {
                            key: Vec::new(),
                            entry: entry_of(row)?,
                            body: row.get("body"),
                        },
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            due.sort_by_key(|(order, _)| *order);
            Ok(due.into_iter().map(|(_, d)| d).collect())
        })
    }

    /// When the next entry of `sink` may be taken: its due time, or for
    /// one another replica claimed, when that claim runs out.
    pub(super) fn write_next_due(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        let (sink, me) = (sink.to_owned(), self.inner.holder.clone());
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(&format!(
                    "SELECT min(CASE WHEN claimed_by IS NOT NULL AND claimed_by <> $2
                                          AND claimed_until_ms > {DB_NOW_MS}
                                     THEN greatest(due_ms, claimed_until_ms)
                                     ELSE due_ms END)
                     FROM outbox WHERE sink = $1"
                ))
                .await
                .or_store(&at)?;
            let row = c.query_one(&st, &[&sink, &me]).await.or_store(&at)?;
            Ok(row.get::<_, Option<i64>>(0).map(unsigned))
        })
    }

    pub(super) fn write_is_first_of_order(&self, entry: &OutboxEntry) -> Result<bool, StoreError> {
        let first = self.write_are_first_of_order(&[entry])?;
        Ok(first.first().copied().unwrap_or(true))
    }

    /// Each entry's order looked up at once: one statement for a whole
    /// `due` batch, the answers in the entries' order.
    pub(super) fn write_are_first_of_order(
        &self,
        entries: &[&OutboxEntry],
    ) -> Result<Vec<bool>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (mut sinks, mut sources, mut orders, mut seqs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in entries {
            sinks.push(e.sink.clone());
            sources.push(e.source.clone());
            orders.push(e.order_id.clone());
            seqs.push(signed(e.seq));
        }
        let n = entries.len();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(
                    "SELECT coalesce((SELECT min(o.seq) FROM outbox o
                                      WHERE o.sink = u.sink AND o.source = u.source
                                          AND o.order_id = u.order_id) = u.seq, true)
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
                         WITH ORDINALITY AS u(sink, source, order_id, seq, i)
                     ORDER BY u.i",
                )
                .await
                .or_store(&at)?;
            let rows = c
                .query(&st, &[&sinks, &sources, &orders, &seqs])
                .await
                .or_store(&at)?;
            let first: Vec<bool> = rows.iter().map(|row| row.get(0)).collect();
            if first.len() != n {
                return Err(StoreError::Engine(format!(
                    "the head-of-order check answered {} of {n} entries",
                    first.len()
                )));
            }
            Ok(first)
        })
    }

    /// Delivered, each of `dues`, in one statement: each entry goes, its
    /// delivery is logged, and its body goes when nothing else needs it.
    ///
    /// The transaction does not wait for its WAL to reach the disk
    /// (`synchronous_commit = off` for it alone; a poll's commit, which
    /// writes snapshots and outbox entries, always waits). A crash may then
    /// lose the last fraction of a second of completions: those entries are
    /// still in the outbox after restart and are delivered again under the
    /// same ids, as the at-least-once promise allows, and as on sled, whose
    /// completions reach the disk with its next flush. Nothing else is
    /// lost: postgres replays or drops such a transaction whole.
    pub(super) fn write_complete_all(&self, dues: &[DueEntry]) -> Result<(), StoreError> {
        if dues.is_empty() {
            return Ok(());
        }
        let (mut sinks, mut seqs, mut attempts) = (Vec::new(), Vec::new(), Vec::new());
        for due in dues {
            let e = &due.entry;
            sinks.push(e.sink.clone());
            seqs.push(signed(e.seq));
            attempts.push(i32::try_from(e.attempts.saturating_add(1)).unwrap_or(i32::MAX));
        }
        let now = signed(now_ms());
        self.inner.run(move |mut c, at| async move {
            let tx = c.transaction().await.or_store(&at)?;
            let st = tx.prepare_cached(COMPLETE).await.or_store(&at)?;
            // Sent together: the setting only has to be in place by COMMIT.
            let params: [&(dyn ToSql + Sync); 4] = [&sinks, &seqs, &attempts, &now];
            let (set, done) = futures::join!(
                tx.batch_execute("SET LOCAL synchronous_commit = off"),
                tx.execute(&st, &params),
            );
            set.or_store(&at)?;
            done.or_store(&at)?;
            tx.commit().await.or_store(&at)
        })
    }

    pub(super) fn write_reschedule(
        &self,
        entry: &OutboxEntry,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        let (sink, seq) = (entry.sink.clone(), signed(entry.seq));
        let attempts = i32::try_from(entry.attempts).unwrap_or(i32::MAX);
        let (due, created) = (signed(due_ms), signed(entry.created_ms));
        let last_error = entry.last_error.clone();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(
                    "UPDATE outbox SET due_ms = $3, attempts = $4, last_error = $5, created_ms = $6,
                         claimed_by = NULL, claimed_until_ms = NULL
                     WHERE sink = $1 AND seq = $2",
                )
                .await
                .or_store(&at)?;
            c.execute(&st, &[&sink, &seq, &due, &attempts, &last_error, &created])
                .await
                .or_store(&at)?;
            Ok(())
        })
    }

    pub(super) fn write_bury(&self, entry: &OutboxEntry, reason: &str) -> Result<(), StoreError> {
        let dead = DeadLetter {
            entry: entry.clone(),
            reason: reason.to_owned(),
            dead_ms: now_ms(),
        };
        self.inner.run(move |c, at| async move {
            let st = c.prepare_cached(BURY).await.or_store(&at)?;
            c.execute(&st, &dead_letter_params(&dead).refs())
                .await
                .or_store(&at)?;
            Ok(())
        })
    }

    pub(super) fn write_count(&self, table: &'static str, sink: &str) -> Result<u64, StoreError> {
        let sink = sink.to_owned();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(&format!("SELECT count(*) FROM {table} WHERE sink = $1"))
                .await
                .or_store(&at)?;
            let row = c.query_one(&st, &[&sink]).await.or_store(&at)?;
            Ok(unsigned(row.get(0)))
        })
    }

    pub(super) fn write_dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached("SELECT * FROM dead_letters ORDER BY sink, seq")
                .await
                .or_store(&at)?;
            let rows = c.query(&st, &[]).await.or_store(&at)?;
            rows.iter().map(dead_letter_of).collect()
        })
    }

    pub(super) fn write_replay(&self, ids: Option<&[String]>) -> Result<usize, StoreError> {
        let ids: Option<Vec<String>> = ids.map(<[String]>::to_vec);
        let now = signed(now_ms());
        self.inner.run(move |c, at| async move {
            // Due now, attempts reset, as the sled store replays.
            let st = c
                .prepare_cached(
                    "WITH moved AS (
                         DELETE FROM dead_letters
                         WHERE $1::text[] IS NULL OR event_id = ANY($1::text[])
                             OR (sink || ':' || seq::text) = ANY($1::text[])
                         RETURNING *)
                     INSERT INTO outbox (sink, seq, source, order_id, event_id, type,
                                         due_ms, attempts, created_ms, last_error)
                     SELECT sink, seq, source, order_id, event_id, type, $2, 0, $2, last_error
                     FROM moved
                     ON CONFLICT (sink, seq) DO NOTHING",
                )
                .await
                .or_store(&at)?;
            let n = c.execute(&st, &[&ids, &now]).await.or_store(&at)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

/// This replica's claims renewed every [`RENEW_CLAIMS`] for as long as it
/// runs (a task on the driver). `claiming` says it may hold some: set by
/// `due` when it claimed any, cleared once a renewal found none, so an
/// idle replica reads nothing. A claim that ran out is not renewed: another
/// replica may have taken it. A renewal that fails (the server away) is
/// tried again at the next turn; claims that ran out meanwhile go to
/// whichever replica asks first.
pub(super) async fn renew_claims(
    pool: deadpool_postgres::Pool,
    at: Arc<str>,
    me: String,
    claiming: Arc<AtomicBool>,
) {
    let claim = signed(CLAIM.as_millis() as u64);
    let mut turns = tokio::time::interval(RENEW_CLAIMS);
    turns.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        turns.tick().await;
        // Cleared before the renewal reads, so a claim made meanwhile
        // keeps it set.
        if !claiming.swap(false, Ordering::SeqCst) {
            continue;
        }
        let renewed = async {
            let c = super::connection(&pool, &at).await?;
            let st = c
                .prepare_cached(&format!(
                    "UPDATE outbox SET claimed_until_ms = {DB_NOW_MS} + $2
                     WHERE claimed_by = $1 AND claimed_until_ms >= {DB_NOW_MS}"
                ))
                .await
                .or_store(&at)?;
            c.execute(&st, &[&me, &claim]).await.or_store(&at)
        };
        match tokio::time::timeout(RENEW_CLAIMS, renewed).await {
            Ok(Ok(0)) => {}
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => claiming.store(true, Ordering::SeqCst),
        }
    }
}
