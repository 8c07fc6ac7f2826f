//! Digests in postgres (`migrations/0004_digests.sql`): the events kept
//! for a sink's digest, and the one transaction that turns a period's
//! events into one outbox entry, as the sled store's `hold.rs` does: the
//! kept rows removed (all of them, or nothing when another call took them
//! first), a delivery-log record for each, their bodies let go when
//! nothing else needs them, the digest's body and entry written.

use super::read::{damaged, entry_of};
use super::{OrStore, PgStore, signed, unsigned};
use crate::store::hold::HeldEntry;
use crate::store::{NewDigest, StoreError, now_ms};

impl PgStore {
    pub(super) fn read_held_for_digest(
        &self,
        sink: &str,
        before_ms: u64,
    ) -> Result<Vec<HeldEntry>, StoreError> {
        let (sink, before) = (sink.to_owned(), signed(before_ms));
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(
                    "SELECT h.*, b.body FROM digest_held h LEFT JOIN bodies b ON b.seq = h.seq
                     WHERE h.sink = $1 AND h.created_ms < $2 ORDER BY h.seq",
                )
                .await
                .or_store(&at)?;
            let mut out = Vec::new();
            for row in c.query(&st, &[&sink, &before]).await.or_store(&at)? {
                // A row that does not read is passed over, as sled passes
                // over a kept record that does not decode.
                let Ok(entry) = entry_of(&row) else {
                    tracing::warn!(
                        "an event kept for a digest cannot be read (a damaged store), and is left out"
                    );
                    continue;
                };
                out.push(HeldEntry {
                    key: Vec::new(),
                    entry,
                    body: row.try_get("body").map_err(damaged)?,
                });
            }
            Ok(out)
        })
    }

    pub(super) fn read_oldest_kept_for_digest(
        &self,
        sink: &str,
    ) -> Result<Option<u64>, StoreError> {
        let sink = sink.to_owned();
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(
                    "SELECT created_ms FROM digest_held WHERE sink = $1 ORDER BY seq LIMIT 1",
                )
                .await
                .or_store(&at)?;
            Ok(c.query_opt(&st, &[&sink])
                .await
                .or_store(&at)?
                .map(|row| unsigned(row.get(0))))
        })
    }

    pub(super) fn write_first_digest_since(
        &self,
        sink: &str,
        now_ms: u64,
        record: bool,
    ) -> Result<Option<u64>, StoreError> {
        let (sink, now) = (sink.to_owned(), signed(now_ms));
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached("SELECT from_ms FROM digest_first WHERE sink = $1")
                .await
                .or_store(&at)?;
            if let Some(row) = c.query_opt(&st, &[&sink]).await.or_store(&at)? {
                let from: Option<i64> = row.get(0);
                return Ok(from.map(unsigned));
            }
            if record {
                let st = c
                    .prepare_cached(
                        "INSERT INTO digest_first (sink, from_ms) VALUES ($1, $2)
                         ON CONFLICT (sink) DO NOTHING",
                    )
                    .await
                    .or_store(&at)?;
                c.execute(&st, &[&sink, &now]).await.or_store(&at)?;
            }
            Ok(Some(now_ms))
        })
    }

    pub(super) fn write_first_digest_from(
        &self,
        sink: &str,
        from_ms: u64,
    ) -> Result<(), StoreError> {
        let (sink, from) = (sink.to_owned(), signed(from_ms));
        self.inner.run(move |c, at| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO digest_first (sink, from_ms) VALUES ($1, $2)
                     ON CONFLICT (sink) DO UPDATE SET from_ms = EXCLUDED.from_ms",
                )
                .await
                .or_store(&at)?;
            c.execute(&st, &[&sink, &from]).await.or_store(&at)?;
            Ok(())
        })
    }

    pub(super) fn write_make_digest(&self, digest: &NewDigest) -> Result<bool, StoreError> {
        let sink = digest.sink.to_owned();
        let (id, json) = (digest.id.to_owned(), digest.json.to_owned());
        let seqs: Vec<i64> = digest.entries.iter().map(|h| signed(h.entry.seq)).collect();
        let now = signed(now_ms());
        self.inner.run(move |mut c, at| async move {
            let tx = c.transaction().await.or_store(&at)?;
            let st = tx
                .prepare_cached(
                    "DELETE FROM digest_held WHERE sink = $1 AND seq = ANY($2::bigint[])",
                )
                .await
                .or_store(&at)?;
            let taken = tx.execute(&st, &[&sink, &seqs]).await.or_store(&at)?;
            if usize::try_from(taken).ok() != Some(seqs.len()) {
                // Another call made their digest already: the transaction
                // rolls back as it is dropped.
                return Ok(false);
            }
            let st = tx
                .prepare_cached(
                    "WITH logged AS (
                         INSERT INTO deliveries (seq, sink, attempts, delivered_ms)
                         SELECT u.seq, $1, 0, $3 FROM UNNEST($2::bigint[]) AS u(seq)
                         ON CONFLICT (seq, sink) DO UPDATE SET
                             attempts = EXCLUDED.attempts, delivered_ms = EXCLUDED.delivered_ms)
                     DELETE FROM bodies b WHERE b.seq = ANY($2::bigint[])
                         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = b.seq)
                         AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = b.seq)
                         AND NOT EXISTS (SELECT 1 FROM digest_held h WHERE h.seq = b.seq)
                         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = b.seq)",
                )
                .await
                .or_store(&at)?;
            tx.execute(&st, &[&sink, &seqs, &now]).await.or_store(&at)?;
            // Digests have a lane of their own (no source, no order): one
            // sink's digests leave in the order they were made.
            let st = tx
                .prepare_cached(
                    "WITH next AS (SELECT nextval('event_seq') AS seq),
                          body AS (INSERT INTO bodies (seq, body) SELECT seq, $3 FROM next)
                     INSERT INTO outbox (sink, seq, source, order_id, event_id, type,
                                         due_ms, attempts, created_ms)
                     SELECT $1, seq, '', '', $2, 'digest', $4, 0, $4 FROM next",
                )
                .await
                .or_store(&at)?;
            tx.execute(&st, &[&sink, &id, &json, &now])
                .await
                .or_store(&at)?;
            let st = tx
                .prepare_cached(
                    "INSERT INTO digest_first (sink, from_ms) VALUES ($1, NULL)
                     ON CONFLICT (sink) DO UPDATE SET from_ms = NULL",
                )
                .await
                .or_store(&at)?;
            tx.execute(&st, &[&sink]).await.or_store(&at)?;
            tx.commit().await.or_store(&at)?;
            Ok(true)
        })
    }
}
