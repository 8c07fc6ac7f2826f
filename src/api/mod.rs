//! The operator API under `/api/v1/` on the `listen` port (README
//! "Operating a running orderwatch"): what the store holds and how the
//! loops are doing, read while `run` holds the store, and the few things an
//! operator does to a running daemon (replay dead letters, poll a source
//! now, pause and resume a sink).
//!
//! It is served only when `api_token` is configured, and every call must
//! carry that token (`auth`): order documents name customers, sites and
//! contacts, and error text comes from outside.
//!
//! - `auth`: the bearer check, in constant time
//! - `page`: the opaque cursors of paginated lists
//! - `read`: the read endpoints
//! - `write`: the write endpoints (a config reload among them)
//! - `client`: the same API from the command line's side

pub(crate) mod auth;
pub mod client;
mod page;
// The web UI calls the same handlers and renders what they answer.
pub(crate) mod read;
pub(crate) mod write;

pub use read::dead_letter_json;

use crate::config::Config;
use crate::control::{SinkControl, SourceControl};
use crate::http::Readiness;
use crate::secret::Secret;
use crate::store::Store;
use axum::Json;
use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// What the endpoints read and act on: the daemon's own handles.
pub struct ApiState {
    pub token: Secret,
    pub store: Store,
    pub config: Arc<Config>,
    pub readiness: Arc<Readiness>,
    pub sinks: BTreeMap<String, Arc<SinkControl>>,
    pub sources: BTreeMap<String, Arc<SourceControl>>,
    /// Wakes every sink's loop (replayed entries are due now).
    pub wake_sinks: Arc<Notify>,
    /// Reloads the config file `run` was started with.
    pub reload: crate::reload::ReloadHandle,
}

/// The state the handlers see, replaced whole when the config is reloaded
/// (new sources and sinks, their switches); a call in progress keeps the
/// state it began with.
#[derive(Clone)]
pub struct LiveState(Arc<RwLock<Arc<ApiState>>>);

impl LiveState {
    pub fn new(state: ApiState) -> LiveState {
        LiveState(Arc::new(RwLock::new(Arc::new(state))))
    }

    pub fn replace(&self, state: ApiState) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
    }

    /// The state as it is now.
    pub fn current(&self) -> Arc<ApiState> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl FromRef<LiveState> for Arc<ApiState> {
    fn from_ref(live: &LiveState) -> Arc<ApiState> {
        live.current()
    }
}

/// The routes under `/api/v1/`, each behind the token, on `state`.
pub fn router(state: LiveState) -> Router {
    let api = Router::new()
        .route("/sources", get(read::sources))
        .route("/sources/{name}/poll", post(write::poll_now))
        .route("/orders", get(read::orders))
        .route("/orders/{source}/{id}", get(read::order))
        .route("/events", get(read::events))
        .route("/outbox", get(read::outbox))
        .route("/dead-letters", get(read::dead_letters))
        .route("/dead-letters/replay", post(write::replay))
        .route("/sinks/{name}/pause", post(write::pause))
        .route("/sinks/{name}/resume", post(write::resume))
        .route("/reload", post(write::reload))
        .fallback(|| async { ApiError::not_found("no such endpoint under /api/v1/") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

/// An answer other than success: its status and a plain `{"error": ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn internal() -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error: the request could not be answered".to_owned(),
        }
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: e.to_string(),
        }
    }
}

impl ApiError {
    /// What the web UI shows of a refusal: the same status and words.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// RFC 3339, UTC, seconds: the event's own time format.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn rfc3339_ms(ms: u64) -> String {
    rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}
