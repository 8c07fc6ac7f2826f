//! The source client against the simulator over real HTTP on 127.0.0.1:
//! paging, filters and sort, the token cache, Orange's error answers, and
//! messages that say what to do without leaking a credential.
//!
//! Call counts come from the simulator's `/_sim/stats`, so each test checks
//! what went over the wire, not what the client believes it did.

use crate::helpers::*;
use orderwatch::{ApiErrorKind, Config, Detail, Page, SourceClient, SourceConfig};
use orderwatch_simulator::{self as simulator, SimOptions};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const LIST: &str = "order-tracking.list";
const DETAIL: &str = "order-tracking.detail";

/// A tracking source on the simulator. Retries are fast, and the budget is
/// far above what any test here uses, so it never slows a test down.
fn source_config(base_url: &str, extra: &str) -> SourceConfig {
    source_config_with(base_url, CLIENT_SECRET, API_KEY, extra)
}

fn source_config_with(base_url: &str, secret: &str, api_key: &str, extra: &str) -> SourceConfig {
    let yaml = format!(
        "sources:\n  - name: tracking\n    api: order-tracking\n    base_url: {base_url}\n    client_id: {CLIENT_ID}\n    client_secret: {secret}\n    api_key: {api_key}\n    retry_backoff: 10ms\n    max_requests_per_minute: 10000\n{extra}"
    );
    let config = Config::parse(&yaml, Path::new("source-test.yaml"), &HashMap::new())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    config.sources[0].clone()
}

fn client(cfg: &SourceConfig) -> SourceClient {
    SourceClient::new(cfg).expect("client builds")
}

/// Calls the simulator served at `endpoint` with `status`.
fn calls(stats: &Value, endpoint: &str, status: u16) -> u64 {
    stats["by_endpoint"][endpoint][status.to_string()]
        .as_u64()
        .unwrap_or(0)
}

/// Calls the simulator served at `endpoint`, whatever the status.
fn all_calls(stats: &Value, endpoint: &str) -> u64 {
    stats["by_endpoint"][endpoint]
        .as_object()
        .map(|counts| counts.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

fn ids_of(page: &Page) -> Vec<String> {
    page.orders
        .iter()
        .map(|raw| {
            let order: Value = serde_json::from_str(raw.get()).expect("order is JSON");
            order["id"].as_str().expect("order has an id").to_owned()
        })
        .collect()
}

/// Every order of the listing, in the order the pages gave them.
async fn read_all(client: &SourceClient) -> Vec<String> {
    let mut pages = client.pages();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await.expect("page") {
        ids.extend(ids_of(&page));
    }
    ids
}

#[tokio::test]
async fn paging_reads_every_order_exactly_once() {
    // (orders, list calls): an empty list and a short page each take one
    // call; a full page that reaches X-Total-Count ends the listing without
    // asking for an empty page; 173 orders are four pages of 50.
    for (orders, list_calls) in [(0, 1), (1, 1), (50, 1), (173, 4)] {
        let sim = simulator(orders).await;
        let admin = Admin::new(&sim);
        let cfg = source_config(&sim.base_url(), "    page_size: 50\n");
        let read = read_all(&client(&cfg)).await;
        // Stats before `Admin::ids`, which makes calls of its own.
        let stats = admin.stats().await;
        assert_eq!(all_calls(&stats, LIST), list_calls, "{orders} orders");
        assert_eq!(calls(&stats, "token", 200), 1, "one token for all pages");

        let unique: HashSet<&String> = read.iter().collect();
        assert_eq!(unique.len(), read.len(), "{orders} orders: read twice");
        let expected: HashSet<String> = admin.ids(TRACKING, "").await.into_iter().collect();
        assert_eq!(expected.len(), orders);
        assert_eq!(unique, expected.iter().collect(), "{orders} orders");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn an_overstated_total_ends_on_the_empty_page() {
    // Orange's counts are not always consistent: a total above what is there
    // must not make the client loop or fail; the empty page ends the listing.
    let sim = simulator(50).await;
    let admin = Admin::new(&sim);
    admin.fault(json!({"total_count_delta": 5})).await;
    let cfg = source_config(&sim.base_url(), "    page_size: 50\n");
    let read = read_all(&client(&cfg)).await;
    assert_eq!(read.len(), 50);
    assert_eq!(all_calls(&admin.stats().await, LIST), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn status_filters_split_the_list() {
    let sim = simulator(150).await;
    let admin = Admin::new(&sim);
    let mut seen = HashSet::new();
    for status in ["Current", "Closed"] {
        let cfg = source_config(
            &sim.base_url(),
            &format!("    page_size: 40\n    filters: {{ status: {status} }}\n"),
        );
        let read = read_all(&client(&cfg)).await;
        let expected = admin.ids(TRACKING, &format!("status={status}")).await;
        assert!(!expected.is_empty(), "the simulator has {status} orders");
        let read_set: HashSet<String> = read.iter().cloned().collect();
        assert_eq!(read_set, expected.into_iter().collect(), "{status}");
        assert_eq!(read_set.len(), read.len());
        seen.extend(read);
    }
    // Together they are every order, each in one of the two lists.
    assert_eq!(seen.len(), 150);
    sim.shutdown().await;
}

#[tokio::test]
async fn sort_descending_by_id() {
    let sim = simulator(100).await;
    let admin = Admin::new(&sim);
    let cfg = source_config(&sim.base_url(), "    page_size: 30\n    sort: -id\n");
    let read = read_all(&client(&cfg)).await;
    let mut expected = admin.ids(TRACKING, "").await; // ascending by id
    expected.reverse();
    assert_eq!(read, expected);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_once() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let client = client(&source_config(&sim.base_url(), ""));
    client.page(0).await.expect("first page");
    admin.fault(json!({"expire_tokens": true})).await;
    let page = client.page(0).await.expect("page after expiry");
    assert_eq!(page.orders.len(), 10);
    let stats = admin.stats().await;
    assert_eq!(calls(&stats, "token", 200), 2);
    assert_eq!(calls(&stats, LIST, 401), 1, "the expired token, once");
    assert_eq!(calls(&stats, LIST, 200), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_token_the_api_no_longer_knows_is_fetched_again() {
    // A restarted simulator knows none of the tokens it issued before: to the
    // client that is a revoked token (401 code 41, not 42).
    let first = simulator(10).await;
    let addr = first.addr();
    let client = client(&source_config(&first.base_url(), ""));
    client.page(0).await.expect("first page");
    first.shutdown().await;
    let second = simulator::start(
        addr,
        SimOptions {
            orders: 10,
            ..SimOptions::default()
        },
    )
    .await
    .expect("the simulator starts again on the same port");
    let page = client.page(0).await.expect("page after revocation");
    assert_eq!(page.orders.len(), 10);
    let stats = Admin::new(&second).stats().await;
    assert_eq!(calls(&stats, LIST, 401), 1);
    assert_eq!(calls(&stats, "token", 200), 1);
    assert_eq!(calls(&stats, LIST, 200), 1);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_refresh_the_token_once() {
    let sim = simulator(80).await;
    let admin = Admin::new(&sim);
    let client = Arc::new(client(&source_config(
        &sim.base_url(),
        "    page_size: 10\n",
    )));
    client.page(0).await.expect("first page");
    admin.fault(json!({"expire_tokens": true})).await;

    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.page(i * 10).await.map(|p| p.orders.len()) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("page"), 10);
    }
    let stats = admin.stats().await;
    assert_eq!(
        calls(&stats, "token", 200),
        2,
        "one new token for all eight calls"
    );
    assert!(calls(&stats, LIST, 401) >= 1, "{stats}");
    assert_eq!(calls(&stats, LIST, 200), 9);
    sim.shutdown().await;
}

#[tokio::test]
async fn too_many_requests_is_waited_out() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let client = client(&source_config(&sim.base_url(), ""));
    admin
        .fault(json!({"status": 429, "count": 2, "retry_after": 1}))
        .await;
    let page = client.page(0).await.expect("page after 429s");
    assert_eq!(page.orders.len(), 10);
    let stats = admin.stats().await;
    assert_eq!(calls(&stats, LIST, 429), 2);
    assert_eq!(calls(&stats, LIST, 200), 1);
    assert_eq!(calls(&stats, "token", 200), 1, "a rate limit is not a 401");
    sim.shutdown().await;
}

#[tokio::test]
async fn forbidden_with_code_53_is_a_rate_limit_not_a_refusal() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let client = client(&source_config(&sim.base_url(), ""));
    // The simulator answers a 403 status fault with code 53 (spike arrest),
    // and no Retry-After: the client backs off on its own.
    admin.fault(json!({"status": 403, "count": 1})).await;
    let page = client.page(0).await.expect("page after 403 code 53");
    assert_eq!(page.orders.len(), 10);
    let stats = admin.stats().await;
    assert_eq!(calls(&stats, LIST, 403), 1);
    assert_eq!(calls(&stats, LIST, 200), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retried_then_fail_with_the_request_id() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let client = client(&source_config(&sim.base_url(), "    retries: 2\n"));

    // Fewer failures than retries: the call succeeds.
    admin.fault(json!({"status": 503, "count": 2})).await;
    assert_eq!(client.page(0).await.expect("retried").orders.len(), 10);
    let stats = admin.stats().await;
    assert_eq!((calls(&stats, LIST, 503), calls(&stats, LIST, 200)), (2, 1));

    admin.fault(json!({"status": 503, "count": 10})).await;
    let err = client.page(0).await.err().expect("fails after retries");
    assert_eq!(err.kind, ApiErrorKind::Server);
    assert_eq!((err.http, err.code), (Some(503), Some(5)));
    let request_id = err.request_id.clone().expect("the request id is kept");
    let message = err.to_string();
    assert!(message.contains("request id"), "{message}");
    assert!(message.contains(&request_id), "{message}");
    let stats = admin.stats().await;
    assert_eq!(
        calls(&stats, LIST, 503),
        2 + 3,
        "one call and two retries, then no more"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn broken_bodies_are_bad_answers() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let client = client(&source_config(&sim.base_url(), ""));
    for fault in [
        json!({"truncate_body": true, "count": 1}),
        json!({"non_json": true, "count": 1}),
    ] {
        admin.fault(fault.clone()).await;
        let err = client.page(0).await.err().expect("a broken body fails");
        assert_eq!(err.kind, ApiErrorKind::BadAnswer, "{fault}: {err}");
        assert!(err.request_id.is_some(), "{fault}");
    }
    // The fault used up, the same client reads the page.
    assert_eq!(client.page(0).await.expect("page").orders.len(), 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_client_secret_is_said_plainly() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let secret = "not-the-right-secret-7f3a";
    let client = client(&source_config_with(&sim.base_url(), secret, API_KEY, ""));
    let err = client.page(0).await.err().expect("refused");
    assert_eq!(err.kind, ApiErrorKind::InvalidClient);
    let message = err.to_string();
    assert!(message.contains("client_secret"), "{message}");
    assert!(!message.contains(secret), "{message}");
    let stats = admin.stats().await;
    assert_eq!(calls(&stats, "token", 401), 1, "a refusal is not retried");
    assert_eq!(all_calls(&stats, LIST), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_api_key_is_said_plainly() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let key = "not-the-right-key-91c2";
    let wrong = client(&source_config_with(&sim.base_url(), CLIENT_SECRET, key, ""));
    let err = wrong.page(0).await.err().expect("refused");
    assert_eq!(err.kind, ApiErrorKind::Forbidden);
    assert_eq!((err.http, err.code), (Some(403), Some(50)));
    let message = err.to_string();
    assert!(message.contains("API key"), "{message}");
    assert!(!message.contains(key), "{message}");
    assert_eq!(calls(&admin.stats().await, LIST, 403), 1, "not retried");

    // A key Orange revoked: the right key, refused all the same.
    admin.fault(json!({"reject_api_key": true})).await;
    let right = client(&source_config(&sim.base_url(), ""));
    let err = right.page(0).await.err().expect("refused");
    assert_eq!(err.kind, ApiErrorKind::Forbidden);
    let message = err.to_string();
    assert!(message.contains("API key"), "{message}");
    assert!(!message.contains(API_KEY), "{message}");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_order_is_none() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let client = client(&source_config(&sim.base_url(), ""));
    assert!(matches!(
        client.order("no-such-order").await.expect("404"),
        Detail::NotFound
    ));
    let id = admin.ids(TRACKING, "").await.remove(0);
    let Detail::Order(order) = client.order(&id).await.expect("detail") else {
        panic!("order {id} is known");
    };
    let order: Value = serde_json::from_str(order.get()).expect("JSON");
    assert_eq!(order["id"], id.as_str());
    let stats = admin.stats().await;
    assert_eq!(calls(&stats, DETAIL, 404), 1);
    assert_eq!(calls(&stats, DETAIL, 200), 1);
    sim.shutdown().await;
}

/// The per-minute budget on tokio's paused clock: the clock jumps to the
/// budget's wake-up instead of the test waiting a minute. This holds with real
/// sockets only because the simulator runs on the test's own single thread
/// over loopback, so the runtime is never idle while an answer is on its way
/// (if it were, the clock would jump to the 1h request timeout and the call
/// would fail, never pass wrongly).
#[tokio::test(start_paused = true)]
async fn the_request_budget_spreads_calls_over_minutes() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let mut cfg = source_config(
        &sim.base_url(),
        "    timeout: 1h
",
    );
    cfg.max_requests_per_minute = 3;
    let client = client(&cfg);
    let start = tokio::time::Instant::now();
    for _ in 0..5 {
        client.page(0).await.expect("page");
    }
    // The token and five pages are six calls: three in the first minute,
    // the other three only once it has passed.
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_secs(60), "{elapsed:?}");
    let stats = admin.stats().await;
    assert_eq!(calls(&stats, "token", 200), 1);
    assert_eq!(
        calls(&stats, LIST, 200),
        5,
        "every call served, none refused"
    );
    sim.shutdown().await;
}
