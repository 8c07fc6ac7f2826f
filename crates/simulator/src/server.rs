//! The router, and the layer every answer passes through: it adds the
//! `X-OAPI-Request-Id`, and for API calls (token, list, detail) it adds the
//! injected latency, answers injected status faults before any other check
//! (like a failing gateway in front of the API), and counts and logs the
//! call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State, rejection::PathRejection};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};

use super::admin;
use super::api;
use super::auth;
use super::errors::ApiError;
use super::faults::StatusFault;
use super::requests;
use super::state::{Api, SimState, lock};
use super::stats::Endpoint;
use super::token;

pub(crate) const TOKEN_PATH: &str = "/oauth/v3/token";
pub(crate) const TRACKING_LIST: &str = "/order-tracking/b2b/v1/orders";
/// The Ordering API's documented path, its French variant and the newer
/// version: all serve the same requests.
pub(crate) const ORDERING_LISTS: [&str; 3] = [
    "/ordering/b2b/v2/requests",
    "/ordering/fr/b2b/v2/requests",
    "/ordering/b2b/v3/requests",
];
/// The Ordering API's commercial orders, at the same three places.
pub(crate) const ORDERING_ORDER_LISTS: [&str; 3] = [
    "/ordering/b2b/v2/orders",
    "/ordering/fr/b2b/v2/orders",
    "/ordering/b2b/v3/orders",
];

/// Unique ids for `X-OAPI-Request-Id`, shaped like a UUID: a random
/// per-simulator half and a counter half, so two answers never share one.
pub(crate) struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    pub(crate) fn new() -> RequestIds {
        RequestIds {
            prefix: rand::random(),
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let p = self.prefix;
        let id = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            p >> 32,
            (p >> 16) & 0xffff,
            p & 0xffff,
            (n >> 48) & 0xffff,
            n & 0xffff_ffff_ffff
        );
        // Hex digits and dashes are always a valid header value.
        HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0"))
    }
}

/// Which API endpoint a path is, by the same shapes the router matches.
fn classify(path: &str) -> Option<Endpoint> {
    if path == TOKEN_PATH {
        return Some(Endpoint::Token);
    }
    let lists = std::iter::once((TRACKING_LIST, Api::OrderTracking))
        .chain(ORDERING_LISTS.into_iter().map(|p| (p, Api::Ordering)))
        .chain(
            ORDERING_ORDER_LISTS
                .into_iter()
                .map(|p| (p, Api::OrderingOrders)),
        );
    for (list, api) in lists {
        if path == list {
            return Some(Endpoint::List(api));
        }
        let id = path
            .strip_prefix(list)
            .and_then(|rest| rest.strip_prefix('/'));
        if id.is_some_and(|id| !id.is_empty() && !id.contains('/')) {
            return Some(Endpoint::Detail(api));
        }
    }
    None
}

/// The offset of a list call (0 when the query has none), for status faults
/// aimed at one page; `None` for other calls, or an offset that does not
/// parse (the list handler refuses that with 400).
fn list_offset(endpoint: Endpoint, query: Option<&str>) -> Option<usize> {
    if !matches!(endpoint, Endpoint::List(_)) {
        return None;
    }
    let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes());
    match pairs.filter(|(name, _)| name == "offset").last() {
        Some((_, value)) => value.trim().parse().ok(),
        None => Some(0),
    }
}

fn fault_answer(endpoint: Endpoint, fault: StatusFault) -> Response {
    let status = axum::http::StatusCode::from_u16(fault.status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    if endpoint == Endpoint::Token && status == axum::http::StatusCode::UNAUTHORIZED {
        // The token endpoint speaks OAuth, not Orange's API error body.
        return token::invalid_client("Injected by the simulator's faults.");
    }
    ApiError::for_status(status, fault.retry_after).into_response()
}

async fn every_answer(State(sim): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    let endpoint = classify(request.uri().path());
    let logged = endpoint.map(|_| {
        let client = auth::bearer_token(request.headers())
            .map(|token| requests::client_label(lock(&sim.tokens).number(token)));
        let uri = request.uri();
        lock(&sim.requests).arrived(request.method().as_str(), uri.path(), uri.query(), client)
    });
    let mut response = match endpoint {
        None => next.run(request).await,
        Some(endpoint) => {
            let latency_ms = lock(&sim.faults).latency_ms;
            if latency_ms > 0 {
                tokio::time::sleep(Duration::from_millis(latency_ms)).await;
            }
            let offset = list_offset(endpoint, request.uri().query());
            let fault = lock(&sim.faults).take_status(endpoint, offset);
            match fault {
                Some(fault) => fault_answer(endpoint, fault),
                None => next.run(request).await,
            }
        }
    };
    if let Some(endpoint) = endpoint {
        lock(&sim.stats).record(endpoint, response.status().as_u16());
    }
    if let Some(seq) = logged {
        let issued = response
            .extensions()
            .get::<token::IssuedToken>()
            .map(|issued| requests::client_label(Some(issued.0)));
        lock(&sim.requests).answered(seq, response.status().as_u16(), issued);
    }
    response
        .headers_mut()
        .insert("x-oapi-request-id", sim.request_ids.next());
    response
}

type Sim = State<Arc<SimState>>;
type Id = Result<Path<String>, PathRejection>;

async fn tracking_list(State(sim): Sim, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    api::list(&sim, Api::OrderTracking, &headers, query.as_deref())
}

async fn tracking_detail(State(sim): Sim, headers: HeaderMap, id: Id) -> Response {
    api::detail(&sim, Api::OrderTracking, &headers, id)
}

async fn ordering_list(State(sim): Sim, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    api::list(&sim, Api::Ordering, &headers, query.as_deref())
}

async fn ordering_detail(State(sim): Sim, headers: HeaderMap, id: Id) -> Response {
    api::detail(&sim, Api::Ordering, &headers, id)
}

async fn orders_list(State(sim): Sim, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    api::list(&sim, Api::OrderingOrders, &headers, query.as_deref())
}

async fn orders_detail(State(sim): Sim, headers: HeaderMap, id: Id) -> Response {
    api::detail(&sim, Api::OrderingOrders, &headers, id)
}

async fn no_such_path() -> Response {
    ApiError::not_found("There is no resource at this path.").into_response()
}

async fn wrong_method() -> Response {
    ApiError::method_not_allowed().into_response()
}

pub(crate) fn router(sim: Arc<SimState>) -> Router {
    let mut router = Router::new()
        .route(TOKEN_PATH, post(token::issue))
        .route(TRACKING_LIST, get(tracking_list))
        .route(&format!("{TRACKING_LIST}/{{id}}"), get(tracking_detail));
    for list in ORDERING_LISTS {
        router = router
            .route(list, get(ordering_list))
            .route(&format!("{list}/{{id}}"), get(ordering_detail));
    }
    for list in ORDERING_ORDER_LISTS {
        router = router
            .route(list, get(orders_list))
            .route(&format!("{list}/{{id}}"), get(orders_detail));
    }
    router
        .route("/_sim/{api}/orders", post(admin::create))
        .route(
            "/_sim/{api}/orders/{id}",
            patch(admin::patch).delete(admin::remove),
        )
        .route("/_sim/changes", get(admin::changes))
        .route("/_sim/requests", get(admin::requests))
        .route("/_sim/stats", get(admin::stats))
        .route(
            "/_sim/faults",
            post(admin::set_faults).delete(admin::clear_faults),
        )
        .method_not_allowed_fallback(wrong_method)
        .fallback(no_such_path)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&sim),
            every_answer,
        ))
        .with_state(sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_api_paths() {
        assert_eq!(classify("/oauth/v3/token"), Some(Endpoint::Token));
        assert_eq!(
            classify("/order-tracking/b2b/v1/orders"),
            Some(Endpoint::List(Api::OrderTracking))
        );
        assert_eq!(
            classify("/order-tracking/b2b/v1/orders/100001"),
            Some(Endpoint::Detail(Api::OrderTracking))
        );
        assert_eq!(
            classify("/ordering/fr/b2b/v2/requests/W1"),
            Some(Endpoint::Detail(Api::Ordering))
        );
        assert_eq!(
            classify("/ordering/b2b/v3/requests"),
            Some(Endpoint::List(Api::Ordering))
        );
        assert_eq!(
            classify("/ordering/b2b/v2/orders"),
            Some(Endpoint::List(Api::OrderingOrders))
        );
        assert_eq!(
            classify("/ordering/b2b/v2/orders/OR1"),
            Some(Endpoint::Detail(Api::OrderingOrders))
        );
        assert_eq!(classify("/order-tracking/b2b/v1/orders/"), None);
        assert_eq!(classify("/order-tracking/b2b/v1/orders/1/x"), None);
        assert_eq!(classify("/_sim/stats"), None);
    }

    #[test]
    fn list_offsets_for_page_faults() {
        let list = Endpoint::List(Api::OrderTracking);
        assert_eq!(list_offset(list, None), Some(0));
        assert_eq!(list_offset(list, Some("status=Current&limit=50")), Some(0));
        assert_eq!(list_offset(list, Some("offset=100&limit=50")), Some(100));
        assert_eq!(list_offset(list, Some("offset=x")), None);
        assert_eq!(
            list_offset(Endpoint::Detail(Api::OrderTracking), Some("offset=100")),
            None
        );
    }

    #[test]
    fn request_ids_are_unique() {
        let ids = RequestIds::new();
        assert_ne!(ids.next(), ids.next());
    }
}
