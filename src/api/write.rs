//! The write endpoints: replay dead letters, poll a source now, pause and
//! resume a sink, reload the config. Each acts through the same store calls
//! and loop handles the command line and the loops use.

use super::{ApiError, ApiState};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use tracing::info;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

/// `{"ids": [...]}` (event ids or `SINK:SEQ`) or `{"all": true}`: put dead
/// letters back in the outbox, due now, and wake the sinks.
pub async fn replay(
    State(state): State<Arc<ApiState>>,
    body: Result<Json<ReplayRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Ok(Json(request)) = body else {
        return Err(ApiError::bad_request(
            r#"the body must be JSON: {"ids": ["<event id or SINK:SEQ>", ...]} or {"all": true}"#,
        ));
    };
    let ids = match (request.all, request.ids.is_empty()) {
        (true, true) => None,
        (false, false) => Some(request.ids),
        (true, false) => return Err(ApiError::bad_request("give either ids or all, not both")),
        (false, true) => {
            return Err(ApiError::bad_request(
                "name the entries to replay (ids), or give all: true",
            ));
        }
    };
    let replayed = state.store.replay(ids.as_deref())?;
    state.store.flush()?;
    if replayed > 0 {
        state.wake_sinks.notify_one();
    }
    info!(
        entries = replayed,
        "dead letters put back in the outbox (API)"
    );
    Ok(Json(serde_json::json!({ "replayed": replayed })))
}

pub async fn poll_now(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(control) = state.sources.get(&name) else {
        return Err(ApiError::not_found(format!(
            "no source named {name} (sources: {})",
            names(state.sources.keys())
        )));
    };
    control.request_poll();
    info!(source = %name, "poll requested (API)");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "source": name, "poll": "requested" })),
    ))
}

pub async fn pause(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&state, name, true)
}

pub async fn resume(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&state, name, false)
}

fn set_paused(state: &ApiState, name: String, paused: bool) -> Result<Json<Value>, ApiError> {
    let Some(control) = state.sinks.get(&name) else {
        return Err(ApiError::not_found(format!(
            "no sink named {name} (sinks: {})",
            names(state.sinks.keys())
        )));
    };
    control.set_paused(paused);
    if paused {
        info!(sink = %name, "sink paused (API): its entries are held in the outbox");
    } else {
        info!(sink = %name, "sink resumed (API)");
    }
    Ok(Json(serde_json::json!({ "sink": name, "paused": paused })))
}

/// Re-read the config file and apply it; answers once it is applied: 200
/// with what changed, or 400 with every problem (and nothing changed).
pub async fn reload(State(state): State<Arc<ApiState>>) -> Response {
    match state.reload.reload(crate::reload::Origin::Api).await {
        Some(Ok(changes)) => Json(serde_json::json!(changes)).into_response(),
        Some(Err(e)) => {
            let problems: Vec<Value> = e
                .problems
                .iter()
                .map(
                    |p| serde_json::json!({ "path": p.path, "line": p.line, "message": p.message }),
                )
                .collect();
            let body = serde_json::json!({
                "error": format!("{}: the configuration has problems; nothing changed", e.file.display()),
                "problems": problems,
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "orderwatch is stopping" })),
        )
            .into_response(),
    }
}

fn names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(String::as_str).collect::<Vec<_>>().join(", ")
}
