//! Replicas on one database: who polls each source (a lease with a fencing
//! token, `migrations/0002_leases.sql`), and the check every commit makes
//! inside its transaction.
//!
//! A replica asks for the lead before each cycle ([`PgStore::lead_source`]):
//! it gets it when nobody holds it, when it holds it already (renewed), or
//! when the holder's lease ran out (taken over: the token goes up). A
//! commit then locks the source's lease row and goes ahead only if this
//! replica still holds it with the token it was given, renewing it; a
//! replica that never asked (`once`) may take a lease that is free or ran
//! out, in the same transaction. So whatever pauses a leader (a stopped
//! process, a cut network, a long GC), once another replica took over, its
//! commits are refused: the snapshots and outbox are only ever written by
//! the current leader. Lease times are the database's clock.

use super::{OrStore, PgStore};
use crate::store::{Leadership, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The lease a commit renews when its source's lead was never asked for
/// (`once`).
const COMMIT_LEASE: Duration = Duration::from_secs(60);

/// What this replica holds: per source, its token and lease.
#[derive(Default)]
pub(super) struct Fences {
    held: Mutex<HashMap<String, (i64, i64)>>,
}

impl Fences {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, i64)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `(token, lease_ms)` this replica holds `source` with, if it leads it.
    pub(super) fn of(&self, source: &str) -> Option<(i64, i64)> {
        self.lock().get(source).copied()
    }

    fn hold(&self, source: &str, token: i64, lease_ms: i64) {
        self.lock().insert(source.to_owned(), (token, lease_ms));
    }

    pub(super) fn drop_source(&self, source: &str) {
        self.lock().remove(source);
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// This replica's name in the leases table: host, process and a random
/// part, so two processes on one host (or a restarted one) differ.
pub(super) fn holder_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "orderwatch".to_owned());
    format!(
        "{host}/{}/{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgStore {
    pub(super) fn lead_source(
        &self,
        source: &str,
        lease: Duration,
    ) -> Result<Leadership, StoreError> {
        let (owned, holder, lease_ms) =
            (source.to_owned(), self.inner.holder.clone(), millis(lease));
        let got = self.inner.run(move |c, at| async move {
            let take = c
                .prepare_cached(
                    "INSERT INTO leases (source, holder, fencing_token, lease_until)
                     VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')
                     ON CONFLICT (source) DO UPDATE SET
                         fencing_token = leases.fencing_token
                             + CASE WHEN leases.holder = EXCLUDED.holder THEN 0 ELSE 1 END,
                         holder = EXCLUDED.holder,
                         lease_until = EXCLUDED.lease_until
                     WHERE leases.holder = EXCLUDED.holder
                         OR leases.lease_until < clock_timestamp()
                     RETURNING fencing_token",
                )
                .await
                .or_store(&at)?;
            if let Some(row) = c
                .query_opt(&take, &[&owned, &holder, &(lease_ms as f64)])
                .await
                .or_store(&at)?
            {
                return Ok(Ok(row.get::<_, i64>(0)));
            }
            let who = c
                .prepare_cached("SELECT holder FROM leases WHERE source = $1")
                .await
                .or_store(&at)?;
            let holder = c
                .query_opt(&who, &[&owned])
                .await
                .or_store(&at)?
                .map(|row| row.get::<_, String>(0))
                .unwrap_or_default();
            Ok(Err(holder))
        })?;
        Ok(match got {
            Ok(token) => {
                // Led by another in between (or never before): what this
                // replica remembers of the source's hashes may be stale.
                if self.inner.fences.of(source).map(|(t, _)| t) != Some(token) {
                    self.inner.hashes.forget(source);
                }
                self.inner.fences.hold(source, token, lease_ms);
                Leadership::Leads
            }
            Err(holder) => {
                self.inner.fences.drop_source(source);
                self.inner.hashes.forget(source);
                Leadership::Follows { holder }
            }
        })
    }
}

impl PgStore {
    /// At a clean stop: the sources this replica leads, and the deliveries
    /// it claimed (those it abandoned included), go to the others at once.
    pub(super) fn release_leases(&self) -> Result<(), StoreError> {
        let me = self.inner.holder.clone();
        self.inner.run(move |c, at| async move {
            c.execute("DELETE FROM leases WHERE holder = $1", &[&me])
                .await
                .or_store(&at)?;
            c.execute(
                "UPDATE outbox SET claimed_by = NULL, claimed_until_ms = NULL
                 WHERE claimed_by = $1",
                &[&me],
            )
            .await
            .or_store(&at)?;
            Ok(())
        })?;
        self.inner.fences.clear();
        Ok(())
    }
}

/// Inside a commit's transaction: go ahead only as the source's leader
/// (`held`: the token and lease this replica holds it with, if any),
/// renewing the lease; otherwise [`StoreError::Fenced`].
pub(super) async fn check_in(
    tx: &deadpool_postgres::Transaction<'_>,
    at: &str,
    source: &str,
    me: &str,
    held: Option<(i64, i64)>,
) -> Result<(), StoreError> {
    let lease_ms = held.map_or(millis(COMMIT_LEASE), |(_, ms)| ms) as f64;
    let read = tx
        .prepare_cached(
            "SELECT holder, fencing_token, lease_until < clock_timestamp()
             FROM leases WHERE source = $1 FOR UPDATE",
        )
        .await
        .or_store(at)?;
    let row = tx.query_opt(&read, &[&source]).await.or_store(at)?;
    let fenced = |holder: String| StoreError::Fenced {
        source_name: source.to_owned(),
        holder,
    };
    match row {
        None => {
            if held.is_some() {
                // Our lease row went away: someone cleared the leases.
                return Err(fenced(String::new()));
            }
            let take = tx
                .prepare_cached(
                    "INSERT INTO leases (source, holder, fencing_token, lease_until)
                     VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')",
                )
                .await
                .or_store(at)?;
            tx.execute(&take, &[&source, &me, &lease_ms])
                .await
                .or_store(at)?;
        }
        Some(row) => {
            let (holder, token, expired): (String, i64, bool) =
                (row.get(0), row.get(1), row.get(2));
            let ours = holder == me && held.is_none_or(|(t, _)| t == token);
            let free = expired && held.is_none();
            if !ours && !free {
                return Err(fenced(holder));
            }
            let renew = tx
                .prepare_cached(
                    "UPDATE leases SET holder = $2,
                         fencing_token = fencing_token + CASE WHEN holder = $2 THEN 0 ELSE 1 END,
                         lease_until = clock_timestamp() + $3 * interval '1 millisecond'
                     WHERE source = $1",
                )
                .await
                .or_store(at)?;
            tx.execute(&renew, &[&source, &me, &lease_ms])
                .await
                .or_store(at)?;
        }
    }
    Ok(())
}
