//! `/healthz`, `/readyz` and `/metrics` (Prometheus text, from the `metrics`
//! facade's exporter), and the accept loop that serves them. While the
//! store cannot be written (a full disk), `/readyz` answers 503 and
//! `/healthz` says so: it stays 200, because the process recovers by itself
//! and a restart (a liveness probe's answer to a failing `/healthz`) would
//! not give the disk room. A loop that died and waits for its restart does
//! make `/healthz` fail.
//!
//! The port may face anything on its network, so the accept loop is ours
//! rather than `axum::serve`'s: a connection that has not sent its request
//! headers within [`HEADER_READ_TIMEOUT`] is dropped, and at most
//! [`MAX_CONNECTIONS`] are held at once (fewer when the file-descriptor
//! limit is low), so idle or half-sent connections can neither pile up nor
//! take the sockets the sinks need.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::shutdown::Shutdown;
use crate::supervise::Liveness;

/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections held at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// Test-only overrides, so a test need not wait 30 s or open 1,024 sockets.
const HEADER_READ_TIMEOUT_ENV: &str = "ORDERWATCH_TEST_HEADER_READ_TIMEOUT";
const MAX_CONNECTIONS_ENV: &str = "ORDERWATCH_TEST_MAX_CONNECTIONS";

/// The process-wide metrics recorder; installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist (in tests); ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            crate::metrics::describe();
            handle
        })
        .clone()
}

/// What `/readyz` knows of each source.
#[derive(Default)]
pub struct Readiness {
    sources: Mutex<BTreeMap<String, SourceState>>,
    store: OnceLock<crate::store::Store>,
}

struct SourceState {
    interval: Duration,
    last_ok: Option<Instant>,
    /// Whether the last cycle failed. `/readyz` is open to anyone who can
    /// reach the port and error text comes from outside, so it says only
    /// that; the text itself is for the API, behind its token.
    failing: bool,
    last_error: Option<String>,
    /// Cycles failed in a row since the last good one.
    failures: u32,
    /// Wall-clock times, for the API: when the cycle in hand (or the last
    /// one) began, when the last one ended, the last good one ended, and
    /// when the next is due.
    started_at: Option<SystemTime>,
    last_cycle_at: Option<SystemTime>,
    last_ok_at: Option<SystemTime>,
    next_poll_at: Option<SystemTime>,
    polling: bool,
}

/// What the API says of one source's polling.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// No cycle has ended yet.
    pub pending: bool,
    pub failing: bool,
    pub polling: bool,
    pub ready: bool,
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_cycle_at: Option<SystemTime>,
    pub last_ok_at: Option<SystemTime>,
    pub next_poll_at: Option<SystemTime>,
}

impl Readiness {
    /// Report this store's health too.
    pub fn watch_store(&self, store: crate::store::Store) {
        let _ = self.store.set(store);
    }

    /// Why the store cannot be written, while it cannot: one line.
    pub fn store_problem(&self) -> Option<String> {
        let failure = self.store.get()?.failure()?;
        let secs = failure.since.elapsed().map_or(0, |d| d.as_secs());
        Some(format!("store: failing for {secs}s: {}\n", failure.error))
    }

    /// Watch `source`; registered again (a reload changed it), it keeps
    /// what its earlier cycles said and takes the new interval.
    pub fn register(&self, source: &str, interval: Duration) {
        if let Ok(mut s) = self.sources.lock() {
            if let Some(known) = s.get_mut(source) {
                known.interval = interval;
                return;
            }
            s.insert(
                source.to_owned(),
                SourceState {
                    interval,
                    last_ok: None,
                    failing: false,
                    last_error: None,
                    failures: 0,
                    started_at: None,
                    last_cycle_at: None,
                    last_ok_at: None,
                    next_poll_at: None,
                    polling: false,
                },
            );
        }
    }

    /// Forget a source the config no longer has (a reload removed it), so
    /// it no longer holds `/readyz` back.
    pub fn unregister(&self, source: &str) {
        if let Ok(mut s) = self.sources.lock() {
            s.remove(source);
        }
    }

    /// A cycle of `source` begins.
    pub fn started(&self, source: &str) {
        if let Ok(mut s) = self.sources.lock()
            && let Some(state) = s.get_mut(source)
        {
            state.polling = true;
            state.started_at = Some(SystemTime::now());
        }
    }

    /// A cycle of `source` ended, with its error if it failed (kept
    /// redacted, for the API only). The next one is due an interval after
    /// this one began, or at once when it took longer.
    pub fn record(&self, source: &str, error: Option<String>) {
        if let Ok(mut s) = self.sources.lock()
            && let Some(state) = s.get_mut(source)
        {
            let now = SystemTime::now();
            state.failing = error.is_some();
            state.polling = false;
            state.last_cycle_at = Some(now);
            state.next_poll_at = Some(
                state
                    .started_at
                    .map_or(now, |at| (at + state.interval).max(now)),
            );
            match error {
                Some(e) => {
                    state.failures = state.failures.saturating_add(1);
                    state.last_error = Some(crate::secret::redact(&e));
                }
                None => {
                    state.last_ok = Some(Instant::now());
                    state.last_ok_at = Some(now);
                    state.failures = 0;
                    state.last_error = None;
                }
            }
        }
    }

    /// Each source's polling as the API shows it.
    pub fn statuses(&self) -> BTreeMap<String, SourceStatus> {
        let Ok(sources) = self.sources.lock() else {
            return BTreeMap::new();
        };
        sources
            .iter()
            .map(|(name, s)| {
                let status = SourceStatus {
                    pending: s.last_cycle_at.is_none(),
                    failing: s.failing,
                    polling: s.polling,
                    ready: s.last_ok.is_some_and(|t| t.elapsed() <= s.interval * 3),
                    failures: s.failures,
                    last_error: s.last_error.clone(),
                    last_cycle_at: s.last_cycle_at,
                    last_ok_at: s.last_ok_at,
                    next_poll_at: s.next_poll_at,
                };
                (name.clone(), status)
            })
            .collect()
    }

    /// Ready when every source completed a poll within 3 of its intervals;
    /// otherwise one line per late source, naming it and whether its last
    /// poll failed, never with error text (the log has that).
    pub fn check(&self) -> Result<String, String> {
        let Ok(sources) = self.sources.lock() else {
            return Err("internal state unavailable".into());
        };
        let mut late = Vec::new();
        let mut fine = Vec::new();
        for (name, s) in sources.iter() {
            let fresh = s.last_ok.is_some_and(|t| t.elapsed() <= s.interval * 3);
            if fresh {
                fine.push(format!("{name}: ok"));
                continue;
            }
            let when = match s.last_ok {
                None => "no successful poll yet".to_owned(),
                Some(t) => format!("last successful poll {}s ago", t.elapsed().as_secs()),
            };
            let why = if s.failing {
                "; the last poll failed (the log and the API's /api/v1/sources say why)"
            } else {
                ""
            };
            late.push(format!("{name}: not ready: {when}{why}"));
        }
        if late.is_empty() {
            Ok(fine.join("\n") + "\n")
        } else {
            Err(late.join("\n") + "\n")
        }
    }
}

pub fn router(readiness: Arc<Readiness>, liveness: Arc<Liveness>) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route(
            "/healthz",
            get(move |State(r): State<Arc<Readiness>>| async move {
                match (liveness.check(), r.store_problem()) {
                    (Err(down), _) => (StatusCode::SERVICE_UNAVAILABLE, down),
                    (Ok(()), Some(problem)) => {
                        (StatusCode::OK, format!("ok (running), but {problem}"))
                    }
                    (Ok(()), None) => (StatusCode::OK, "ok\n".to_owned()),
                }
            }),
        )
        .route(
            "/readyz",
            get(|State(r): State<Arc<Readiness>>| async move {
                if let Some(problem) = r.store_problem() {
                    return (StatusCode::SERVICE_UNAVAILABLE, problem);
                }
                match r.check() {
                    Ok(body) => (StatusCode::OK, body),
                    Err(body) => (StatusCode::SERVICE_UNAVAILABLE, body),
                }
            }),
        )
        .route("/metrics", get(move || async move { handle.render() }))
        .with_state(readiness)
}

/// The routes behind `api_token`: the JSON API under `/api/v1/` and the
/// web UI under `/ui/`, both on the same handles.
/// Returns them with the handle a reload replaces their state through.
pub fn operator_routes(api: crate::api::ApiState) -> (Router, crate::api::LiveState) {
    let live = crate::api::LiveState::new(api);
    let routes = crate::api::router(live.clone()).merge(crate::ui::router(live.clone()));
    (routes, live)
}

/// What the `listen` port tolerates from its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl ServerLimits {
    /// The contract's limits, the connection cap lowered to a quarter of the
    /// process's file-descriptor limit so the sinks always keep sockets.
    /// Tests may shorten both through `ORDERWATCH_TEST_*` variables.
    pub fn from_env() -> ServerLimits {
        let header_read_timeout = std::env::var(HEADER_READ_TIMEOUT_ENV)
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
            .filter(|d| !d.is_zero())
            .map_or(HEADER_READ_TIMEOUT, |d| d.min(HEADER_READ_TIMEOUT));
        let cap = std::env::var(MAX_CONNECTIONS_ENV)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .map_or(MAX_CONNECTIONS, |n| n.min(MAX_CONNECTIONS));
        let max_connections = match fd_limit() {
            Some(limit) => cap.min((limit / 4).max(1)),
            None => cap,
        };
        ServerLimits {
            header_read_timeout,
            max_connections,
        }
    }
}

/// The soft `RLIMIT_NOFILE`, if it can be read.
fn fd_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    usize::try_from(limit.rlim_cur).ok()
}

/// Serve `app` on `listener` until `shutdown` fires, within `limits`. A
/// connection waits for a free slot before it is accepted; connections still
/// open at shutdown are dropped (health checks and scrapes are retried by
/// their clients).
pub async fn serve(listener: TcpListener, app: Router, limits: ServerLimits, shutdown: Shutdown) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let slot = tokio::select! {
            biased;
            _ = shutdown.stopped() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            _ = shutdown.stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: give it a moment
                    // instead of spinning on the same error.
                    warn!("health server cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            // A client's error or a dropped connection concerns only it.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    connections.abort_all();
}
