//! `/healthz`, `/readyz` and `/metrics` (Prometheus text, from the `metrics`
//! facade's exporter).

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
}

struct SourceState {
    interval: Duration,
    last_ok: Option<Instant>,
    last_error: Option<String>,
}

impl Readiness {
    pub fn register(&self, source: &str, interval: Duration) {
        if let Ok(mut s) = self.sources.lock() {
            s.insert(
                source.to_owned(),
                SourceState {
                    interval,
                    last_ok: None,
                    last_error: None,
                },
            );
        }
    }

    pub fn record(&self, source: &str, error: Option<String>) {
        if let Ok(mut s) = self.sources.lock()
            && let Some(state) = s.get_mut(source)
        {
            match error {
                None => {
                    state.last_ok = Some(Instant::now());
                    state.last_error = None;
                }
                Some(e) => state.last_error = Some(e),
            }
        }
    }

    /// Ready when every source completed a poll within 3 of its intervals;
    /// otherwise the reasons, one line per late source.
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
            let why = s
                .last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
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
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(r): State<Arc<Readiness>>| async move {
                match r.check() {
                    Ok(body) => (StatusCode::OK, body),
                    Err(body) => (StatusCode::SERVICE_UNAVAILABLE, body),
                }
            }),
        )
        .route("/metrics", get(move || async move { handle.render() }))
        .with_state(readiness)
}
