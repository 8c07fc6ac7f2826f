//! The PostgreSQL store backend: the same records and the same contract as
//! the sled store, in tables a DBA can read (`migrations/0001_initial.sql`
//! describes each). This is the only module that imports the driver
//! (tokio-postgres, pooled by deadpool-postgres).
//!
//! - `runner.rs`: the driver's own thread, and how synchronous callers wait
//! - `schema.rs`: the embedded, versioned migrations, applied at open in
//!   one transaction; a database with a newer schema is refused
//! - `read.rs`: snapshots, sync state, health, the log, the timeline
//! - `write.rs`: a poll's commit, and the outbox and dead letters
//! - `digest.rs`: the events kept for digests, and a digest made of them
//! - `import.rs`: what `store copy` writes, in one transaction
//! - `timers.rs`: the timer index (due dates, stalled orders), written
//!   in the commit's transaction
//! - `lease.rs`: replicas: who polls each source, and the fencing check
//!   every commit makes
//! - `tls.rs`: TLS to the server as the URL's `sslmode` asks, the server's
//!   certificate verified
//!
//! A commit is a handful of statements whatever its size: each table's
//! rows go in as arrays (`UNNEST`), not one statement per row. Statements
//! are prepared once per connection (`prepare_cached`); a small pool keeps
//! the connections and opens a new one when one broke, so a server that
//! went away and came back is used again without a restart.

mod digest;
mod import;
mod lease;
mod read;
mod runner;
mod schema;
mod timers;
mod tls;
mod write;

pub(crate) use import::{CopyChunk, LoggedEvent};

use super::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use runner::Runner;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Connections kept open: a poller per source and a dispatcher per sink
/// share them, and each call holds one only for its statements.
const POOL_SIZE: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free (or new) connection.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// An open postgres store: a pool on its driver thread.
pub(crate) struct PgStore {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    runner: Runner,
    /// The store as logs and errors name it: host, port and database.
    at: Arc<str>,
    /// Each source's snapshot hashes, read in bulk (`read.rs` says why).
    hashes: read::HashCache,
    /// This replica's name in leases and delivery claims.
    holder: String,
    /// The sources this replica leads, with their fencing tokens.
    fences: lease::Fences,
    /// Whether this replica may hold delivery claims to renew
    /// (`write::renew_claims`).
    claiming: Arc<AtomicBool>,
}

impl PgStore {
    /// Connect, and bring the schema up to date (`create`: also in a
    /// database without one).
    pub(crate) fn open(url: &str, create: bool) -> Result<PgStore, StoreError> {
        let (url, root_cert) = tls::take_root_cert(url.trim());
        let config = tokio_postgres::Config::from_str(&url).map_err(|e| {
            StoreError::Engine(format!(
                "the store's url is not a PostgreSQL connection URL: {}",
                crate::secret::redact(&e.to_string())
            ))
        })?;
        let at = describe(&config);
        let mut config = config;
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("orderwatch");
        }
        let tls = tls::connector(config.get_ssl_mode(), root_cert.as_deref(), &at)?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Engine(format!("the postgres store {at}: {e}")))?;
        let runner = Runner::start(pool, at.clone())?;
        let inner = Arc::new(Inner {
            runner,
            at: at.into(),
            hashes: read::HashCache::default(),
            holder: lease::holder_id(),
            fences: lease::Fences::default(),
            claiming: Arc::new(AtomicBool::new(false)),
        });
        let (renew_at, me, claiming) = (
            inner.at.clone(),
            inner.holder.clone(),
            inner.claiming.clone(),
        );
        inner
            .runner
            .background(move |pool| write::renew_claims(pool, renew_at, me, claiming))?;
        let store = PgStore { inner };
        store.migrate(create)?;
        Ok(store)
    }

    fn at(&self) -> Arc<str> {
        self.inner.at.clone()
    }

    /// The store as logs may name it: host, port and database.
    pub(crate) fn describe(&self) -> String {
        self.inner.at.to_string()
    }
}

/// `postgres://host:port/database`: what logs and errors may say of a
/// store's URL (never its user or password).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

/// A driver error as the store's callers take it: a server that cannot be
/// reached (or is shutting down, or full of connections) is unavailable
/// and worth trying again; anything else is the statement's own failure.
/// The text from the server goes through the redactor.
pub(super) fn pg_error(at: &str, e: &tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let text = crate::secret::redact(db.message());
        // 08: connection exceptions; 57P: the server shutting down or not
        // accepting connections yet; 53: out of resources.
        if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") {
            return StoreError::Unavailable(format!(
                "the postgres store {at} cannot be used right now: {text} (SQLSTATE {code})"
            ));
        }
        return StoreError::Engine(format!(
            "the postgres store {at} refused a statement: {text} (SQLSTATE {code})"
        ));
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    StoreError::Unavailable(format!(
        "the postgres store {at} cannot be reached: {}{}",
        crate::secret::redact(&text),
        tls::hint(&text)
    ))
}

pub(super) fn pool_error(at: &str, e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(at, &e),
        other => StoreError::Unavailable(format!(
            "the postgres store {at} cannot be reached: {}",
            crate::secret::redact(&other.to_string())
        )),
    }
}

/// One connection of the pool, for the statements of one call.
pub(super) async fn connection(
    pool: &Pool,
    at: &str,
) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(|e| pool_error(at, e))
}

/// A stored number (a `bigint`) as the unsigned one orderwatch counts in.
pub(super) fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// An unsigned count or time as a `bigint`.
pub(super) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A driver result as a store result, naming the store.
pub(super) trait OrStore<T> {
    fn or_store(self, at: &str) -> Result<T, StoreError>;
}

impl<T> OrStore<T> for Result<T, tokio_postgres::Error> {
    fn or_store(self, at: &str) -> Result<T, StoreError> {
        self.map_err(|e| pg_error(at, &e))
    }
}

impl Inner {
    /// Run `f` with a connection of the pool on the driver's thread, and
    /// wait for its answer.
    pub(super) fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object, Arc<str>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let at = self.at.clone();
        self.runner.call(move |pool| async move {
            let client = connection(&pool, &at).await?;
            f(client, at).await
        })
    }
}

impl super::backend::StoreBackend for PgStore {
    fn flush(&self) -> Result<(), StoreError> {
        // Every commit is durable once the server answered it.
        Ok(())
    }
    fn has_baseline(&self, source: &str) -> Result<bool, StoreError> {
        self.read_has_baseline(source)
    }
    fn sync_state(&self, source: &str) -> Result<super::SyncState, StoreError> {
        self.read_sync_state(source)
    }
    fn source_health(&self, source: &str) -> Result<super::SourceHealth, StoreError> {
        self.read_source_health(source)
    }
    fn snapshot(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Option<super::Snapshot>, StoreError> {
        self.read_snapshot(source, order_id)
    }
    fn snapshot_hash(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Option<(u128, bool)>, StoreError> {
        self.read_snapshot_hash(source, order_id)
    }
    fn snapshots_of(&self, source: &str) -> super::backend::Records<(String, super::Snapshot)> {
        self.read_snapshots_after(source, None)
    }
    fn snapshots_of_after(
        &self,
        source: &str,
        after: &str,
    ) -> super::backend::Records<(String, super::Snapshot)> {
        self.read_snapshots_after(source, Some(after))
    }
    fn sources(&self) -> Result<Vec<String>, StoreError> {
        self.read_names("snapshots")
    }
    fn outbox_sinks(&self) -> Result<Vec<String>, StoreError> {
        self.read_names("outbox")
    }
    fn listed_ids_except(
        &self,
        source: &str,
        seen: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = self.read_listed_ids(source)?;
        ids.retain(|id| !seen(id));
        Ok(ids)
    }
    fn commit(&self, commit: &super::Commit) -> Result<(), StoreError> {
        self.write_commit(commit)
    }
    fn due(
        &self,
        sink: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<super::DueEntry>, StoreError> {
        self.write_due(sink, now_ms, limit)
    }
    fn next_due(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        self.write_next_due(sink)
    }
    fn is_first_of_order(&self, entry: &super::OutboxEntry) -> Result<bool, StoreError> {
        self.write_is_first_of_order(entry)
    }
    fn are_first_of_order(&self, entries: &[&super::OutboxEntry]) -> Result<Vec<bool>, StoreError> {
        self.write_are_first_of_order(entries)
    }
    fn complete(&self, due: &super::DueEntry) -> Result<(), StoreError> {
        self.write_complete_all(std::slice::from_ref(due))
    }
    fn complete_all(&self, dues: &[super::DueEntry]) -> Result<(), StoreError> {
        self.write_complete_all(dues)
    }
    fn orders_by_change(
        &self,
        below: Option<&super::ChangePosition>,
    ) -> super::backend::Records<super::ChangedOrder> {
        self.read_orders_by_change(below)
    }
    fn reschedule(
        &self,
        _due: &super::DueEntry,
        entry: &super::OutboxEntry,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        self.write_reschedule(entry, due_ms)
    }
    fn bury(
        &self,
        _due: &super::DueEntry,
        entry: &super::OutboxEntry,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.write_bury(entry, reason)
    }
    fn outbox_depth(&self, sink: &str) -> Result<u64, StoreError> {
        self.write_count("outbox", sink)
    }
    fn dead_letters(&self) -> Result<Vec<super::DeadLetter>, StoreError> {
        self.write_dead_letters()
    }
    fn dead_letter_count(&self, sink: &str) -> Result<u64, StoreError> {
        self.write_count("dead_letters", sink)
    }
    fn replay(&self, ids: Option<&[String]>) -> Result<usize, StoreError> {
        self.write_replay(ids)
    }
    fn timeline(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Vec<super::TimelineEntry>, StoreError> {
        self.read_timeline(source, order_id)
    }
    fn events_before(&self, before: u64) -> super::backend::Records<(u64, String)> {
        self.read_events_before(before)
    }
    fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<super::DueTimer>, StoreError> {
        self.read_due_timers(now_ms, limit)
    }
    fn next_timer(&self) -> Result<Option<u64>, StoreError> {
        self.read_next_timer()
    }
    fn timer_settings(&self, source: &str) -> Result<Option<String>, StoreError> {
        self.read_timer_settings(source)
    }
    fn timer_sources(&self) -> Result<Vec<String>, StoreError> {
        self.read_timer_sources()
    }
    fn rebuild_timers(
        &self,
        source: &str,
        build: &super::IndexBuild<'_>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.write_rebuild_timers(source, build, now_ms)
    }
    fn overdue_orders(
        &self,
        source: &str,
        now_ms: u64,
    ) -> Result<Vec<super::OverdueOrder>, StoreError> {
        self.read_overdue_orders(source, now_ms)
    }
    fn held_for_digest(
        &self,
        sink: &str,
        before_ms: u64,
    ) -> Result<Vec<super::hold::HeldEntry>, StoreError> {
        self.read_held_for_digest(sink, before_ms)
    }
    fn oldest_kept_for_digest(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        self.read_oldest_kept_for_digest(sink)
    }
    fn first_digest_since(
        &self,
        sink: &str,
        now_ms: u64,
        record: bool,
    ) -> Result<Option<u64>, StoreError> {
        self.write_first_digest_since(sink, now_ms, record)
    }
    fn first_digest_from(&self, sink: &str, from_ms: u64) -> Result<(), StoreError> {
        self.write_first_digest_from(sink, from_ms)
    }
    fn kept_for_digest(&self, sink: &str) -> Result<u64, StoreError> {
        self.write_count("digest_held", sink)
    }
    fn make_digest(&self, digest: &super::NewDigest) -> Result<bool, StoreError> {
        self.write_make_digest(digest)
    }
    fn lead(&self, source: &str, lease: Duration) -> Result<super::Leadership, StoreError> {
        self.lead_source(source, lease)
    }
    fn release(&self) -> Result<(), StoreError> {
        self.release_leases()
    }
}
