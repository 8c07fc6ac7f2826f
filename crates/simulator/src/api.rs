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
use serde_json::{Map, Value};

use super::accept;
use super::auth;
use super::errors::{ApiError, json_response};
use super::faults::BodyFault;
use super::query::{self, ListQuery, PageLimits};
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
    let limits = match api {
        // Orange's published limit, refused above, for the collection
        // modelled on its published description.
        Api::OrderingOrders => PageLimits {
            default: query::ORDERS_LIMIT,
            max: query::ORDERS_LIMIT,
            refuse_above: true,
        },
        Api::OrderTracking | Api::Ordering => PageLimits {
            default: query::DEFAULT_LIMIT,
            max: sim.max_page_size,
            refuse_above: false,
        },
    };
    let query = match ListQuery::parse_with(raw_query, limits) {
        Ok(query) => query,
        Err(bad) => {
            let error = match bad.max {
                Some(max) => ApiError::limit_too_large(&bad.name, &bad.value, max),
                None => ApiError::bad_query_parameter(&bad.name, &bad.value),
            };
            return error.into_response();
        }
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

    let body = match &query.fields {
        Some(fields) => partial_items(&page.body, fields),
        None => page.body,
    };
    let (body, result_count) = match body_fault {
        None => (Bytes::from(body), page.result_count),
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
            let body = Bytes::from(body);
            (body.slice(..body.len() / 2), page.result_count)
        }
    };
    let mut response = json_response(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert("x-result-count", HeaderValue::from(result_count));
    headers.insert("x-total-count", HeaderValue::from(total));
    response
}

/// `fields=id,status,keyDates.expectedAt`: each item keeps only the named
/// fields (a dotted path keeps that nested field inside its parents), in the
/// order they are named; a field an item lacks is left out.
fn partial_items(body: &str, fields: &[String]) -> String {
    let Ok(items) = serde_json::from_str::<Vec<Value>>(body) else {
        return body.to_owned();
    };
    let partial: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut kept = Value::Object(Map::new());
            for field in fields {
                let path: Vec<&str> = field.split('.').collect();
                if let Some(value) = lookup(item, &path) {
                    place(&mut kept, &path, value.clone());
                }
            }
            kept
        })
        .collect();
    serde_json::to_string(&partial).unwrap_or_else(|_| body.to_owned())
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |at, key| at.get(key))
}

fn place(target: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = target;
    for key in parents {
        let Some(object) = at.as_object_mut() else {
            return;
        };
        at = object
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(object) = at.as_object_mut() {
        object.insert((*last).to_owned(), value);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_items_keep_the_named_fields() {
        let body = r#"[{"id":"1","status":"NEW","keyDates":{"expectedAt":"x","issuedAt":"y"}},{"id":"2"}]"#;
        let fields = ["id".to_owned(), "keyDates.expectedAt".to_owned()];
        assert_eq!(
            partial_items(body, &fields),
            r#"[{"id":"1","keyDates":{"expectedAt":"x"}},{"id":"2"}]"#
        );
    }
}
