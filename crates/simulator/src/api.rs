//! List and detail calls of both APIs: the checks every call goes through
//! (Accept, token, API key, budget — in that order), then the page or the
//! order, with the body faults a list answer may suffer.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::accept;
use super::auth;
use super::errors::{ApiError, json_response};
use super::faults::BodyFault;
use super::query::ListQuery;
use super::state::{Api, SimState, lock};

/// What a broken gateway answers instead of JSON.
const HTML_PAGE: &str = "<html><head><title>502 Bad Gateway</title></head>\
<body><h1>Bad Gateway</h1><p>The upstream server sent an invalid response.</p></body></html>";

fn admit(sim: &SimState, headers: &HeaderMap) -> Result<(), ApiError> {
    let accept = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if !accept::allows_json(accept) {
        return Err(ApiError::not_acceptable());
    }
    let now = Instant::now();
    let reject_every_key = lock(&sim.faults).reject_api_key;
    auth::check_credentials(
        headers,
        &lock(&sim.tokens),
        &sim.credentials.api_key,
        reject_every_key,
        now,
    )?;
    lock(&sim.rate)
        .admit(now)
        .map_err(|secs| ApiError::too_many_requests(StatusCode::TOO_MANY_REQUESTS, Some(secs)))
}

pub(crate) fn list(
    sim: &SimState,
    api: Api,
    headers: &HeaderMap,
    raw_query: Option<&str>,
) -> Response {
    if let Err(error) = admit(sim, headers) {
        return error.into_response();
    }
    let query = match ListQuery::parse_capped(raw_query, sim.max_page_size) {
        Ok(query) => query,
        Err(bad) => return ApiError::bad_query_parameter(&bad.name, &bad.value).into_response(),
    };
    // The read guard must be gone before the write lock is taken.
    let cached = sim.read_book(api).cached_page(&query);
    let page = match cached {
        Some(page) => page,
        None => sim.write_book(api).page(&query),
    };
    let (delta, body_fault) = {
        let mut faults = lock(&sim.faults);
        (
            faults.total_count_delta,
            faults.take_body_fault(api, query.offset),
        )
    };
    let total = i64::try_from(page.total_count)
        .unwrap_or(i64::MAX)
        .saturating_add(delta)
        .max(0);

    let (body, result_count) = match body_fault {
        None => (Bytes::from(page.body), page.result_count),
        Some(BodyFault::EmptyPage) => (Bytes::from_static(b"[]"), 0),
        Some(BodyFault::NonJson) => {
            let mut response = (StatusCode::OK, HTML_PAGE).into_response();
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return response;
        }
        Some(BodyFault::Truncate) => {
            // Cut in half, headers as for the whole page: the client sees a
            // 200 whose JSON does not parse.
            let body = Bytes::from(page.body);
            (body.slice(..body.len() / 2), page.result_count)
        }
    };
    let mut response = json_response(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert("x-result-count", HeaderValue::from(result_count));
    headers.insert("x-total-count", HeaderValue::from(total));
    response
}

pub(crate) fn detail(
    sim: &SimState,
    api: Api,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(error) = admit(sim, headers) {
        return error.into_response();
    }
    // An id that does not decode cannot name an order.
    let Ok(Path(id)) = id else {
        return ApiError::not_found("No order has this id.").into_response();
    };
    let json = sim.read_book(api).json(&id).map(str::to_owned);
    match json {
        Some(json) => json_response(StatusCode::OK, json),
        None => ApiError::not_found(format!("No order with id {id:?}.")).into_response(),
    }
}
