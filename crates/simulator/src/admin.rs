//! The `/_sim/...` endpoints tests script the simulator with: add, patch and
//! remove orders, read the change log, the request log and the call counts, set and clear
//! faults. They need no credentials and are not counted in the stats.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::book::BookError;
use super::errors::{ApiError, json_response};
use super::faults::{FaultRequest, Faults};
use super::state::{Api, SimState, lock};

type Sim = State<Arc<SimState>>;

fn api_of(name: &str) -> Result<Api, ApiError> {
    Api::from_name(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "No API {name:?}: use \"order-tracking\", \"ordering\" or \"ordering-orders\"."
        ))
    })
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_body(format!("The body is not JSON: {e}.")))
}

fn book_error(error: BookError) -> ApiError {
    let description = error.to_string();
    match error {
        BookError::NotFound(_) => ApiError::not_found(description),
        BookError::Exists(_) => ApiError::conflict(description),
        BookError::NotAnObject | BookError::MissingId | BookError::IdChanged { .. } => {
            ApiError::bad_body(description)
        }
    }
}

fn path_error() -> ApiError {
    ApiError::not_found("There is no resource at this path.")
}

fn answer(status: StatusCode, result: Result<String, ApiError>) -> Response {
    match result {
        Ok(json) => json_response(status, json),
        Err(error) => error.into_response(),
    }
}

/// `POST /_sim/{api}/orders`: 201 with the order, 409 if its id exists.
pub(crate) async fn create(
    State(sim): Sim,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let result = (|| {
        let Path(api) = path.map_err(|_| path_error())?;
        let api = api_of(&api)?;
        let order = json_body(&body)?;
        sim.create_order(api, &order).map_err(book_error)
    })();
    answer(StatusCode::CREATED, result)
}

/// `PATCH /_sim/{api}/orders/{id}`: RFC 7396 merge patch; the id cannot
/// change.
pub(crate) async fn patch(
    State(sim): Sim,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Response {
    let result = (|| {
        let Path((api, id)) = path.map_err(|_| path_error())?;
        let api = api_of(&api)?;
        let patch = json_body(&body)?;
        sim.update_order(api, &id, |order| json_patch::merge(order, &patch))
            .map_err(book_error)
    })();
    answer(StatusCode::OK, result)
}

/// `DELETE /_sim/{api}/orders/{id}`: 204, or 404 if unknown.
pub(crate) async fn remove(
    State(sim): Sim,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let result = (|| {
        let Path((api, id)) = path.map_err(|_| path_error())?;
        sim.remove_order(api_of(&api)?, &id).map_err(book_error)
    })();
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

/// The `since=SEQ` of a log's query: 0 when absent.
fn since_of(query: Option<&str>) -> Result<u64, ApiError> {
    let mut since = 0;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == "since" {
            since = value
                .trim()
                .parse()
                .map_err(|_| ApiError::bad_query_parameter("since", &value))?;
        }
    }
    Ok(since)
}

/// `GET /_sim/changes[?since=SEQ]`: the change log, oldest first.
pub(crate) async fn changes(State(sim): Sim, RawQuery(query): RawQuery) -> Response {
    let result = since_of(query.as_deref()).map(|since| {
        let log = lock(&sim.changes);
        serde_json::to_string(&log.since(since)).unwrap_or_else(|_| "[]".to_owned())
    });
    answer(StatusCode::OK, result)
}

/// `GET /_sim/requests[?since=SEQ]`: the request log, oldest first.
pub(crate) async fn requests(State(sim): Sim, RawQuery(query): RawQuery) -> Response {
    let result = since_of(query.as_deref()).map(|since| {
        let log = lock(&sim.requests);
        serde_json::to_string(&log.since(since)).unwrap_or_else(|_| "[]".to_owned())
    });
    answer(StatusCode::OK, result)
}

/// `GET /_sim/stats`.
pub(crate) async fn stats(State(sim): Sim) -> Response {
    let body = lock(&sim.stats).to_json().to_string();
    json_response(StatusCode::OK, body)
}

fn fault_state(sim: &SimState) -> Response {
    let limit = lock(&sim.rate).limit();
    let body = lock(&sim.faults).to_json(limit).to_string();
    json_response(StatusCode::OK, body)
}

/// `POST /_sim/faults`: add or set faults; answers the resulting state.
pub(crate) async fn set_faults(State(sim): Sim, body: Bytes) -> Response {
    let request =
        json_body(&body).and_then(|body| FaultRequest::parse(&body).map_err(ApiError::bad_body));
    let request = match request {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    lock(&sim.faults).apply(&request);
    if let Some(limit) = request.rate_limit_per_minute {
        lock(&sim.rate).set_limit(limit);
    }
    if request.expire_tokens {
        lock(&sim.tokens).expire_all(Instant::now());
    }
    fault_state(&sim)
}

/// `DELETE /_sim/faults`: clear every fault; the rate limit goes back to the
/// configured one. Tokens expired by a fault stay expired.
pub(crate) async fn clear_faults(State(sim): Sim) -> Response {
    *lock(&sim.faults) = Faults::default();
    lock(&sim.rate).set_limit(sim.configured_rate_limit);
    fault_state(&sim)
}
