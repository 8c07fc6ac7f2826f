//! What an operator sees of the source: a `base_url` behind a gateway
//! prefix, a log that says why a cycle was slow, and failures told once, in
//! the right words.

use crate::helpers::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A gateway in front of the simulator that serves it under `/api` only:
/// `/api/oauth/v3/token` is the simulator's `/oauth/v3/token`; anything
/// outside `/api` is a 404 (and remembered, so the test can say so).
#[derive(Clone)]
struct Gateway {
    upstream: String,
    http: reqwest::Client,
    outside: Arc<Mutex<Vec<String>>>,
}

async fn forward(
    State(g): State<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(rest) = uri.path().strip_prefix("/api/") else {
        g.outside.lock().unwrap().push(uri.to_string());
        return (StatusCode::NOT_FOUND, "not behind this gateway").into_response();
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut request = g
        .http
        .request(method, format!("{}/{rest}{query}", g.upstream))
        .body(body);
    for name in ["authorization", "x-api-key", "accept", "content-type"] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v.as_bytes());
        }
    }
    let answer = request.send().await.unwrap();
    let mut response = StatusCode::from_u16(answer.status().as_u16())
        .unwrap()
        .into_response();
    for name in [
        "content-type",
        "x-total-count",
        "x-result-count",
        "x-oapi-request-id",
        "retry-after",
    ] {
        if let Some(v) = answer.headers().get(name) {
            response
                .headers_mut()
                .insert(name, v.to_str().unwrap().parse().unwrap());
        }
    }
    let body = answer.bytes().await.unwrap();
    (response.into_parts().0, body).into_response()
}

/// `base_url: http://gateway/api`: the token URL (by default) and every API
/// call stay under `/api`; `check --connect`, a baseline and a change told
/// by the vanish step's detail call all go through the prefix.
#[tokio::test]
async fn a_base_url_path_is_kept() {
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let gateway = Gateway {
        upstream: sim.base_url(),
        http: reqwest::Client::new(),
        outside: Arc::default(),
    };
    let outside = gateway.outside.clone();
    let app = Router::new().fallback(forward).with_state(gateway);
    let base_url = format!("http://{}/api", serve(app).await);

    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&base_url, &hook.url, "", "");
    let out = ws.run(&["check", "--connect"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    ws.once_ok().await;

    let open = admin
        .ids("/order-tracking/b2b/v1/orders", "status=Current")
        .await;
    let id = open.first().expect("an open order").clone();
    admin
        .patch("order-tracking", &id, json!({"status": "Closed"}))
        .await;
    ws.once_ok().await;
    let told: Vec<_> = hook
        .delivered()
        .iter()
        .map(|r| r.json())
        .filter(|e| e["data"]["order_id"] == id.as_str())
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["data"]["to"], "Closed");
    assert!(
        outside.lock().unwrap().is_empty(),
        "calls outside the prefix: {:?}",
        outside.lock().unwrap()
    );
}

/// A cycle held back by the request budget says so once, at info, with
/// how long it waited and the budget; the time is counted in
/// `orderwatch_api_throttled_seconds_total`. (Orange's own rate-limit answer
/// closes the budget: the quickest honest way to make a cycle wait.)
#[tokio::test]
async fn a_throttled_cycle_says_so_once() {
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(
        &sim.base_url(),
        &hook.url,
        "    page_size: 10\n",
        "listen: 127.0.0.1:0\n",
    );
    admin
        .fault(json!({"status": 429, "count": 2, "retry_after": 1, "target": "list"}))
        .await;
    let mut child = ws.spawn_run();
    eventually("the cycle", Duration::from_secs(30), || {
        log_count(&ws, "poll cycle done") >= 1
    })
    .await;
    let log = std::fs::read_to_string(ws.log_path()).unwrap();
    assert_eq!(
        log.matches("held this cycle back").count(),
        1,
        "once per cycle:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("held this cycle back"))
        .unwrap();
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("max_requests_per_minute=60"), "{line}");
    assert!(line.contains("60 calls a minute"), "{line}");
    assert!(line.contains("for Orange's rate-limit answers"), "{line}");
    let addr = health_addr(&ws).await;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = metrics
        .lines()
        .find(|l| l.starts_with("orderwatch_api_throttled_seconds_total{source=\"tracking\"}"))
        .unwrap_or_else(|| panic!("no throttle metric in\n{metrics}"));
    let seconds: u64 = series.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(seconds >= 1, "{series}");
    terminate(&mut child, Duration::from_secs(15)).await;
}

/// A refused credential ends the cycle and is logged once per cycle (it was
/// logged by the token call and again by the cycle).
#[tokio::test]
async fn a_refused_credential_is_logged_once_per_cycle() {
    let sim = simulator(10).await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), "")
            .replace(CLIENT_SECRET, "not-the-secret"),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    let mut child = ws.spawn_run();
    eventually("two failed cycles", Duration::from_secs(30), || {
        log_count(&ws, "poll cycle failed") >= 2
    })
    .await;
    terminate(&mut child, Duration::from_secs(15)).await;
    let log = std::fs::read_to_string(ws.log_path()).unwrap();
    assert_eq!(
        log.matches("Orange refused the client credentials").count(),
        log.matches("poll cycle failed").count(),
        "{log}"
    );
}

/// A retried call says it is retrying; only the call that gave up says it
/// is still failing after its retries, and the cycle logs that once.
#[tokio::test]
async fn retries_say_what_they_are() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "", "");
    admin
        .fault(json!({"status": 503, "count": 1, "target": "list"}))
        .await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let retry = stderr
        .lines()
        .find(|l| l.contains("attempt 1 of 4"))
        .unwrap_or_else(|| panic!("no retry line:\n{stderr}"));
    assert!(retry.contains("retrying"), "{retry}");
    assert!(!stderr.contains("still"), "{stderr}");

    admin
        .fault(json!({"status": 503, "count": 4, "target": "list"}))
        .await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("still so after 3 retries").count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.matches("attempt 4 of 4").count(), 0, "{stderr}");
}
