//! The postgres schema's migrations, embedded in the binary and applied when
//! the store is opened.
//!
//! Each migration is applied once, in order, and recorded in
//! `schema_migrations`; all that an open applies is one transaction, so a
//! failed upgrade leaves the database as it was. The transaction takes an
//! advisory lock first: two orderwatch starting at once on one database
//! upgrade it one after the other, not both. A database whose schema is
//! newer than this binary knows is refused plainly and left alone, as the
//! sled store refuses a newer schema version.

use super::{PgStore, connection, pg_error};
use crate::store::StoreError;

/// `(version, SQL)`, oldest first. A new migration is a new file and a new
/// line here; a released one is never edited.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_leases.sql")),
    (3, include_str!("migrations/0003_timers.sql")),
    (4, include_str!("migrations/0004_digests.sql")),
    (5, include_str!("migrations/0005_changed.sql")),
];

/// The schema version this binary writes.
pub(crate) const PG_SCHEMA_VERSION: i32 = 5;

/// Any number, the same in every orderwatch: the advisory lock's key.
const MIGRATION_LOCK: i64 = 0x6f72_6465_7277_6174;

impl PgStore {
    pub(super) fn migrate(&self, create: bool) -> Result<(), StoreError> {
        let at = self.at();
        self.inner.runner.call(move |pool| async move {
            let mut client = connection(&pool, &at).await?;
            let tx = client.transaction().await.map_err(|e| pg_error(&at, &e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(|e| pg_error(&at, &e))?;
            let exists: bool = tx
                .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
                .await
                .map_err(|e| pg_error(&at, &e))?
                .get(0);
            if !exists {
                if !create {
                    return Err(StoreError::NoPostgresStore { at: at.to_string() });
                }
                tx.batch_execute(
                    "CREATE TABLE schema_migrations (
                         version    integer PRIMARY KEY,
                         applied_at timestamptz NOT NULL DEFAULT now()
                     )",
                )
                .await
                .map_err(|e| pg_error(&at, &e))?;
            }
            let found: i32 = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM schema_migrations",
                    &[],
                )
                .await
                .map_err(|e| pg_error(&at, &e))?
                .get(0);
            if found > PG_SCHEMA_VERSION {
                return Err(StoreError::PostgresSchema {
                    at: at.to_string(),
                    found: found as i64,
                    expected: PG_SCHEMA_VERSION as i64,
                });
            }
            if found == 0 && !create {
                return Err(StoreError::NoPostgresStore { at: at.to_string() });
            }
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
                tx.batch_execute(sql).await.map_err(|e| pg_error(&at, &e))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await
                .map_err(|e| pg_error(&at, &e))?;
                tracing::info!(store = %at, version, "applied a migration of the postgres store");
            }
            tx.commit().await.map_err(|e| pg_error(&at, &e))?;
            Ok(())
        })
    }
}
