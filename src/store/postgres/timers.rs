//! The timer index in postgres (`migrations/0003_timers.sql`): the same
//! records and schedule as the sled store's `timers` tree, weighed by the
//! same pure steps (`store/timers.rs`: `plan_order`, `plan_fire`,
//! `rebuild_with`), so a due date moves, fires and is refused alike on
//! both backends.
//!
//! A poll's timers and a fired timer are written by [`write_in_commit`]
//! inside the commit's own transaction, the records locked (`FOR UPDATE`)
//! while they are weighed: a poll and the timer committing one order at
//! once go one after the other, and the later one sees the other's record.

use super::read::{SNAPSHOT_COLUMNS, damaged, snapshot_of};
use super::{OrStore, PgStore, signed, unsigned};
use crate::store::timers::{
    IndexMode, OrderChange, TimerRecord, decode_record, plan_fire, plan_order, quietly_overdue,
    rebuild_with,
};
use crate::store::{
    DueTimer, FiredTimer, IndexBuild, OverdueOrder, StoreError, TimerKind, TimerUpdate,
};
use std::collections::{BTreeMap, HashMap};

/// A record as stored: the sled store's JSON.
fn encode(r: &TimerRecord) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| StoreError::Damaged(e.to_string()))
}

/// What one transaction changes in the index, gathered so that each table
/// takes one statement: per schedule entry and per record, the last word.
#[derive(Default)]
struct IndexWrites {
    /// `(fire_ms, order_id, kind)` → armed (true) or taken out.
    schedule: BTreeMap<(i64, String, i16), bool>,
    /// order id → its record, or `None` to remove it.
    records: BTreeMap<String, Option<String>>,
}

impl IndexWrites {
    fn schedule(&mut self, order_id: &str, entries: &[(TimerKind, u64)], armed: bool) {
        for (kind, at) in entries {
            self.schedule.insert(
                (signed(*at), order_id.to_owned(), i16::from(kind.byte())),
                armed,
            );
        }
    }

    fn change(&mut self, order_id: &str, change: &OrderChange) -> Result<(), StoreError> {
        self.schedule(order_id, &change.unarm, false);
        self.schedule(order_id, &change.arm, true);
        let record = change.record.as_ref().map(encode).transpose()?;
        self.records.insert(order_id.to_owned(), record);
        Ok(())
    }

    /// Weigh each order's new times against its record (`records`, kept
    /// current as the orders go, as sled reads its own writes).
    fn orders(
        &mut self,
        records: &mut HashMap<String, TimerRecord>,
        update: &TimerUpdate,
        now_ms: u64,
        mode: IndexMode,
    ) -> Result<(), StoreError> {
        for (order_id, times) in &update.orders {
            let old = records.get(order_id);
            let Some(change) = plan_order(old, times.as_ref(), update.settings, now_ms, mode)
            else {
                continue;
            };
            self.change(order_id, &change)?;
            match change.record {
                Some(r) => records.insert(order_id.clone(), r),
                None => records.remove(order_id),
            };
        }
        Ok(())
    }

    async fn write(
        self,
        tx: &deadpool_postgres::Transaction<'_>,
        at: &str,
        source: &str,
    ) -> Result<(), StoreError> {
        let (mut gone, mut armed) = (Vec::new(), Vec::new());
        for ((fire, order, kind), on) in self.schedule {
            if on {
                armed.push((fire, order, kind));
            } else {
                gone.push((fire, order, kind));
            }
        }
        type Columns = (Vec<i64>, Vec<String>, Vec<i16>);
        let columns = |rows: Vec<(i64, String, i16)>| -> Columns {
            let mut c: Columns = (Vec::new(), Vec::new(), Vec::new());
            for (f, o, k) in rows {
                c.0.push(f);
                c.1.push(o);
                c.2.push(k);
            }
            c
        };
        if !gone.is_empty() {
            let (fires, orders, kinds) = columns(gone);
            let st = tx
                .prepare_cached(
                    "DELETE FROM timer_schedule s USING
                         UNNEST($2::bigint[], $3::text[], $4::smallint[]) AS u(fire_ms, order_id, kind)
                     WHERE s.source = $1 AND s.fire_ms = u.fire_ms
                         AND s.order_id = u.order_id AND s.kind = u.kind",
                )
                .await
                .or_store(at)?;
            tx.execute(&st, &[&source, &fires, &orders, &kinds])
                .await
                .or_store(at)?;
        }
        if !armed.is_empty() {
            let (fires, orders, kinds) = columns(armed);
            let st = tx
                .prepare_cached(
                    "INSERT INTO timer_schedule (fire_ms, source, order_id, kind)
                     SELECT u.fire_ms, $1, u.order_id, u.kind
                     FROM UNNEST($2::bigint[], $3::text[], $4::smallint[]) AS u(fire_ms, order_id, kind)
                     ON CONFLICT DO NOTHING",
                )
                .await
                .or_store(at)?;
            tx.execute(&st, &[&source, &fires, &orders, &kinds])
                .await
                .or_store(at)?;
        }
        let (mut put_ids, mut put_records, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        for (order_id, record) in self.records {
            match record {
                Some(r) => {
                    put_ids.push(order_id);
                    put_records.push(r);
                }
                None => removed.push(order_id),
            }
        }
        if !put_ids.is_empty() {
            let st = tx
                .prepare_cached(
                    "INSERT INTO timers (source, order_id, record)
                     SELECT $1, u.* FROM UNNEST($2::text[], $3::text[]) AS u
                     ON CONFLICT (source, order_id) DO UPDATE SET record = EXCLUDED.record",
                )
                .await
                .or_store(at)?;
            tx.execute(&st, &[&source, &put_ids, &put_records])
                .await
                .or_store(at)?;
        }
        if !removed.is_empty() {
            let st = tx
                .prepare_cached(
                    "DELETE FROM timers WHERE source = $1 AND order_id = ANY($2::text[])",
                )
                .await
                .or_store(at)?;
            tx.execute(&st, &[&source, &removed]).await.or_store(at)?;
        }
        Ok(())
    }
}

/// The stored records of `ids`, locked for the rest of the transaction.
async fn lock_records(
    tx: &deadpool_postgres::Transaction<'_>,
    at: &str,
    source: &str,
    ids: &[String],
) -> Result<HashMap<String, TimerRecord>, StoreError> {
    let st = tx
        .prepare_cached(
            "SELECT order_id, record FROM timers
             WHERE source = $1 AND order_id = ANY($2::text[]) FOR UPDATE",
        )
        .await
        .or_store(at)?;
    let mut out = HashMap::new();
    for row in tx.query(&st, &[&source, &ids]).await.or_store(at)? {
        let order_id: String = row.try_get(0).map_err(damaged)?;
        let record: String = row.try_get(1).map_err(damaged)?;
        // A record that does not read is treated as none, as sled does.
        if let Some(r) = decode_record(record.as_bytes()) {
            out.insert(order_id, r);
        }
    }
    Ok(out)
}

/// Apply a commit's fired timers, then its orders' new times, inside its
/// transaction; [`StoreError::TimerMoved`] (the transaction then rolls
/// back) when a fired timer's order changed since the timer read it.
pub(super) async fn write_in_commit(
    tx: &deadpool_postgres::Transaction<'_>,
    at: &str,
    source: &str,
    fired: &[FiredTimer],
    update: Option<&TimerUpdate>,
    now_ms: u64,
) -> Result<(), StoreError> {
    if fired.is_empty() && update.is_none_or(|u| u.orders.is_empty()) {
        return Ok(());
    }
    let mode = match update {
        Some(_) => {
            let st = tx
                .prepare_cached("SELECT 1 FROM baselines WHERE source = $1")
                .await
                .or_store(at)?;
            IndexMode::Poll {
                baseline: tx.query_opt(&st, &[&source]).await.or_store(at)?.is_none(),
            }
        }
        None => IndexMode::Poll { baseline: false },
    };
    let mut ids: Vec<String> = fired.iter().map(|f| f.order_id.clone()).collect();
    if let Some(u) = update {
        ids.extend(u.orders.iter().map(|(id, _)| id.clone()));
    }
    ids.sort_unstable();
    ids.dedup();
    let mut records = lock_records(tx, at, source, &ids).await?;
    let mut writes = IndexWrites::default();
    if !fired.is_empty() {
        let st = tx
            .prepare_cached(
                "SELECT fire_ms, order_id, kind FROM timer_schedule
                 WHERE source = $1 AND order_id = ANY($2::text[])",
            )
            .await
            .or_store(at)?;
        let mut scheduled = std::collections::HashSet::new();
        for row in tx.query(&st, &[&source, &ids]).await.or_store(at)? {
            let fire: i64 = row.try_get(0).map_err(damaged)?;
            let order: String = row.try_get(1).map_err(damaged)?;
            let kind: i16 = row.try_get(2).map_err(damaged)?;
            scheduled.insert((fire, order, kind));
        }
        for f in fired {
            let key = (
                signed(f.fire_ms),
                f.order_id.clone(),
                i16::from(f.kind.byte()),
            );
            let (record, next) = plan_fire(records.get(&f.order_id), scheduled.remove(&key), f)?;
            writes.schedule(&f.order_id, &[(f.kind, f.fire_ms)], false);
            if let Some(next) = next {
                writes.schedule(&f.order_id, &[next], true);
                scheduled.insert((signed(next.1), f.order_id.clone(), i16::from(next.0.byte())));
            }
            writes
                .records
                .insert(f.order_id.clone(), Some(encode(&record)?));
            records.insert(f.order_id.clone(), record);
        }
    }
    if let Some(update) = update {
        writes.orders(&mut records, update, now_ms, mode)?;
    }
    writes.write(tx, at, source).await
}

impl PgStore {
    pub(super) fn read_due_timers(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let (now, limit) = (signed(now_ms), i64::try_from(limit).unwrap_or(i64::MAX));
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(&format!(
                    "SELECT s.fire_ms, s.source, s.order_id, s.kind, t.record, n.source IS NOT NULL,
                            {}
                     FROM timer_schedule s
                     LEFT JOIN timers t ON t.source = s.source AND t.order_id = s.order_id
                     LEFT JOIN snapshots n ON n.source = s.source AND n.order_id = s.order_id
                     WHERE s.fire_ms <= $1
                     ORDER BY s.fire_ms, s.source, s.order_id, s.kind LIMIT $2",
                    SNAPSHOT_COLUMNS
                        .split(", ")
                        .map(|col| format!("n.{col}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .await
                .or_store(&at)?;
            let mut out = Vec::new();
            let mut stale: Vec<(i64, String, String, i16)> = Vec::new();
            for row in c.query(&st, &[&now, &limit]).await.or_store(&at)? {
                let fire: i64 = row.try_get(0).map_err(damaged)?;
                let source: String = row.try_get(1).map_err(damaged)?;
                let order_id: String = row.try_get(2).map_err(damaged)?;
                let kind_byte: i16 = row.try_get(3).map_err(damaged)?;
                let record: Option<String> = row.try_get(4).map_err(damaged)?;
                let has_snapshot: bool = row.try_get(5).map_err(damaged)?;
                let found = u8::try_from(kind_byte)
                    .ok()
                    .and_then(TimerKind::from_byte)
                    .zip(record.as_deref().and_then(|r| decode_record(r.as_bytes())))
                    .filter(|(kind, r)| r.armed.contains(&(*kind, unsigned(fire))));
                match found {
                    Some((kind, record)) => {
                        let snapshot = if has_snapshot {
                            Some(snapshot_of(&row, 6)?)
                        } else {
                            None
                        };
                        out.push(DueTimer {
                            source,
                            fired: FiredTimer {
                                order_id,
                                kind,
                                fire_ms: unsigned(fire),
                                record,
                            },
                            snapshot,
                        });
                    }
                    // Left by a record that is gone or no longer arms it:
                    // taken out on the way, as sled does.
                    None => stale.push((fire, source, order_id, kind_byte)),
                }
            }
            if !stale.is_empty() {
                let st = c
                    .prepare_cached(
                        "DELETE FROM timer_schedule
                         WHERE fire_ms = $1 AND source = $2 AND order_id = $3 AND kind = $4",
                    )
                    .await
                    .or_store(&at)?;
                for (fire, source, order_id, kind) in &stale {
                    c.execute(&st, &[fire, source, order_id, kind])
                        .await
                        .or_store(&at)?;
                }
            }
            Ok(out)
        })
    }

    pub(super) fn read_next_timer(&self) -> Result<Option<u64>, StoreError> {
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached("SELECT min(fire_ms) FROM timer_schedule")
                .await
                .or_store(&at)?;
            let next: Option<i64> = c.query_one(&st, &[]).await.or_store(&at)?.get(0);
            Ok(next.map(unsigned))
        })
    }

    pub(super) fn read_timer_settings(&self, source: &str) -> Result<Option<String>, StoreError> {
        let source = source.to_owned();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached("SELECT fingerprint FROM timer_settings WHERE source = $1")
                .await
                .or_store(&at)?;
            Ok(c.query_opt(&st, &[&source])
                .await
                .or_store(&at)?
                .map(|row| row.get(0)))
        })
    }

    pub(super) fn read_timer_sources(&self) -> Result<Vec<String>, StoreError> {
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached("SELECT source FROM timer_settings ORDER BY source")
                .await
                .or_store(&at)?;
            Ok(c.query(&st, &[])
                .await
                .or_store(&at)?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })
    }

    pub(super) fn write_rebuild_timers(
        &self,
        source: &str,
        build: &IndexBuild<'_>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let orphans = || -> Result<Vec<String>, StoreError> {
            let source = source.to_owned();
            self.inner.run(move |c, at| async move {
                let st = c
                    .prepare_cached(
                        "SELECT t.order_id FROM timers t WHERE t.source = $1 AND NOT EXISTS
                             (SELECT 1 FROM snapshots n
                              WHERE n.source = t.source AND n.order_id = t.order_id)",
                    )
                    .await
                    .or_store(&at)?;
                Ok(c.query(&st, &[&source])
                    .await
                    .or_store(&at)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect())
            })
        };
        let mode = build.mode;
        let apply = |batch: &TimerUpdate| -> Result<(), StoreError> {
            let (source, batch) = (source.to_owned(), batch.clone());
            self.inner.run(move |mut c, at| async move {
                let tx = c.transaction().await.or_store(&at)?;
                let ids: Vec<String> = batch.orders.iter().map(|(id, _)| id.clone()).collect();
                let mut records = lock_records(&tx, &at, &source, &ids).await?;
                let mut writes = IndexWrites::default();
                writes.orders(&mut records, &batch, now_ms, mode)?;
                writes.write(&tx, &at, &source).await?;
                tx.commit().await.or_store(&at)
            })
        };
        rebuild_with(
            self.read_snapshots_after(source, None),
            &orphans,
            &apply,
            build,
        )?;
        let (source, fingerprint) = (source.to_owned(), build.fingerprint.map(str::to_owned));
        self.inner.run(move |c, at| async move {
            match fingerprint {
                Some(f) => {
                    let st = c
                        .prepare_cached(
                            "INSERT INTO timer_settings (source, fingerprint) VALUES ($1, $2)
                             ON CONFLICT (source) DO UPDATE SET fingerprint = EXCLUDED.fingerprint",
                        )
                        .await
                        .or_store(&at)?;
                    c.execute(&st, &[&source, &f]).await.or_store(&at)?;
                }
                None => {
                    let st = c
                        .prepare_cached("DELETE FROM timer_settings WHERE source = $1")
                        .await
                        .or_store(&at)?;
                    c.execute(&st, &[&source]).await.or_store(&at)?;
                }
            }
            Ok(())
        })
    }

    pub(super) fn read_overdue_orders(
        &self,
        source: &str,
        now_ms: u64,
    ) -> Result<Vec<OverdueOrder>, StoreError> {
        let source = source.to_owned();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(
                    "SELECT order_id, record FROM timers WHERE source = $1 ORDER BY order_id",
                )
                .await
                .or_store(&at)?;
            let mut records = Vec::new();
            for row in c.query(&st, &[&source]).await.or_store(&at)? {
                let order_id: String = row.try_get(0).map_err(damaged)?;
                let record: String = row.try_get(1).map_err(damaged)?;
                if let Some(r) = decode_record(record.as_bytes()) {
                    records.push((order_id, r));
                }
            }
            Ok(quietly_overdue(records.into_iter(), now_ms))
        })
    }
}
