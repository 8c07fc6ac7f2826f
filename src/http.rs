//! `/healthz`, `/readyz` and `/metrics` (Prometheus text, from the `metrics`
//! facade's exporter). While the store cannot be written (a full disk),
//! `/readyz` answers 503 and `/healthz` says so: it stays 200, because the
//! process recovers by itself and a restart (a liveness probe's answer to a
//! failing `/healthz`) would not give the disk room.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The process-wide metrics recorder; installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist (in tests); ours still renders.
            let _ = metrics::set_global_recorder(recorder);
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
    /// Whether the last cycle failed. Its error is not kept: `/readyz` is
    /// open to anyone who can reach the port, and error text comes from
    /// outside (the logs have it).
    failing: bool,
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

    pub fn register(&self, source: &str, interval: Duration) {
        if let Ok(mut s) = self.sources.lock() {
            s.insert(
                source.to_owned(),
                SourceState {
                    interval,
                    last_ok: None,
                    failing: false,
                },
            );
        }
    }

    pub fn record(&self, source: &str, error: Option<String>) {
        if let Ok(mut s) = self.sources.lock()
            && let Some(state) = s.get_mut(source)
        {
            state.failing = error.is_some();
            if error.is_none() {
                state.last_ok = Some(Instant::now());
            }
        }
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
                "; the last poll failed (see the log)"
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

pub fn router(readiness: Arc<Readiness>) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route(
            "/healthz",
            get(|State(r): State<Arc<Readiness>>| async move {
                match r.store_problem() {
                    Some(problem) => format!("ok (running), but {problem}"),
                    None => "ok\n".to_owned(),
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
