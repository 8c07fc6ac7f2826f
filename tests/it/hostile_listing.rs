//! The poll cycle against an Orange that answers badly, through the real
//! binary: a small Orange inside the test (127.0.0.1, port 0) that serves a
//! list and detail answers chosen per order, and records every URL it was
//! asked for.
//!
//! - 404s that are not Orange's "not found" (HTML, empty, code 61), 410 and
//!   500 on a detail call: no `order.removed`, a plain error naming each
//!   order, the other vanished orders still resolved, the failed ones asked
//!   again next cycle; an answer about the whole source (the API key
//!   refused, Orange unavailable three orders in a row) stops the checks;
//! - items that are not orders (not an object, `null`/`""`/missing id):
//!   skipped with their position and the request id, the rest committed;
//! - ids `.`, `..`, `a\r\nb`, `x\ty`: no detail call aliases another URL, and
//!   the log stays one line per event;
//! - numeric ids beyond `f64`/`u64` stay distinct; `100` then `100.0` is one
//!   order;
//! - one page of 200,000 tiny orders;
//! - a detail body streamed without end: refused at the order limit, long
//!   before the page limit.

use crate::helpers::*;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orderwatch::{MAX_ORDER_BYTES, MAX_PAGE_BYTES};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const LIST_REQUEST_ID: &str = "req-list-7";

/// How the hostile Orange answers a detail call.
#[derive(Clone)]
enum DetailAnswer {
    /// Status, content type and body, as given.
    Plain(u16, &'static str, String),
    /// `200` and an order that never ends.
    Endless,
}

fn orange_error(status: u16, code: i64) -> DetailAnswer {
    DetailAnswer::Plain(
        status,
        "application/json",
        json!({"code": code, "message": "error", "description": "hostile"}).to_string(),
    )
}

#[derive(Default)]
struct OrangeState {
    /// The whole list, served at offset 0 whatever the limit.
    list: String,
    total: usize,
    /// By order id (decoded); others get Orange's real "not found".
    details: HashMap<String, DetailAnswer>,
    /// Every request's path and query, as sent.
    seen: Vec<String>,
}

/// A small Orange: token, list, detail.
#[derive(Clone)]
struct HostileOrange {
    base: String,
    state: Arc<Mutex<OrangeState>>,
    /// Bytes the endless detail has handed to the connection.
    streamed: Arc<AtomicUsize>,
    /// Set once the endless body was dropped (the client went away).
    stream_closed: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<OrangeState>>,
    streamed: Arc<AtomicUsize>,
    stream_closed: Arc<AtomicBool>,
}

impl HostileOrange {
    async fn start() -> HostileOrange {
        let state = Arc::new(Mutex::new(OrangeState::default()));
        let streamed = Arc::new(AtomicUsize::new(0));
        let stream_closed = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            state: state.clone(),
            streamed: streamed.clone(),
            stream_closed: stream_closed.clone(),
        };
        let app = Router::new()
            .route("/oauth/v3/token", post(token))
            .route(TRACKING, get(list))
            .route(&format!("{TRACKING}/{{id}}"), get(detail))
            .fallback(unknown)
            .with_state(shared);
        let base = format!("http://{}", serve(app).await);
        HostileOrange {
            base,
            state,
            streamed,
            stream_closed,
        }
    }

    /// Serve these items (raw JSON texts) as the list.
    fn set_list(&self, items: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.list = format!("[{}]", items.join(","));
        s.total = items.len();
    }

    /// Serve these orders, all `Current`, as the list.
    fn set_open_orders<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let items: Vec<String> = ids.into_iter().map(|id| order(id, "Current")).collect();
        self.set_list(&items.iter().map(String::as_str).collect::<Vec<_>>());
    }

    fn set_list_text(&self, list: String, total: usize) {
        let mut s = self.state.lock().unwrap();
        s.list = list;
        s.total = total;
    }

    fn answer(&self, id: &str, answer: DetailAnswer) {
        self.state
            .lock()
            .unwrap()
            .details
            .insert(id.to_owned(), answer);
    }

    fn seen(&self) -> Vec<String> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The detail URLs asked for, in order.
    fn detail_calls(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|p| p.starts_with(&format!("{TRACKING}/")))
            .collect()
    }

    fn forget_seen(&self) {
        self.state.lock().unwrap().seen.clear();
    }
}

fn record(shared: &Shared, uri: &Uri) {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    shared.state.lock().unwrap().seen.push(path);
}

async fn token(State(shared): State<Shared>, uri: Uri) -> Response {
    record(&shared, &uri);
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"token_type": "Bearer", "access_token": "t", "expires_in": 3600}).to_string(),
    )
        .into_response()
}

async fn list(State(shared): State<Shared>, uri: Uri) -> Response {
    record(&shared, &uri);
    let first = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|p| p == "offset=0");
    let s = shared.state.lock().unwrap();
    let body = if first {
        s.list.clone()
    } else {
        "[]".to_owned()
    };
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::HeaderName::from_static("x-total-count"),
                s.total.to_string(),
            ),
            (
                header::HeaderName::from_static("x-oapi-request-id"),
                LIST_REQUEST_ID.to_owned(),
            ),
        ],
        body,
    )
        .into_response()
}

/// Counts what the endless body handed over, and notes when it is dropped.
struct EndlessBody {
    shared: Shared,
    started: bool,
}

impl Drop for EndlessBody {
    fn drop(&mut self) {
        self.shared.stream_closed.store(true, Ordering::SeqCst);
    }
}

async fn detail(State(shared): State<Shared>, uri: Uri, Path(id): Path<String>) -> Response {
    record(&shared, &uri);
    let answer = shared.state.lock().unwrap().details.get(&id).cloned();
    let answer = answer.unwrap_or_else(|| orange_error(404, 60));
    let request_id = format!("req-detail-{}", id.escape_default());
    let request_id = header::HeaderValue::from_str(&request_id)
        .unwrap_or(header::HeaderValue::from_static("req-detail"));
    let mut response = match answer {
        DetailAnswer::Plain(status, content_type, body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap(),
        DetailAnswer::Endless => {
            let body = EndlessBody {
                shared: shared.clone(),
                started: false,
            };
            let chunks = futures::stream::unfold(body, |mut body| async move {
                let chunk = if body.started {
                    vec![b'x'; 64 * 1024]
                } else {
                    body.started = true;
                    br#"{"id":"big","pad":""#.to_vec()
                };
                body.shared
                    .streamed
                    .fetch_add(chunk.len(), Ordering::SeqCst);
                Some((Ok::<_, std::io::Error>(chunk), body))
            });
            Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(chunks))
                .unwrap()
        }
    };
    response.headers_mut().insert(
        header::HeaderName::from_static("x-oapi-request-id"),
        request_id,
    );
    response
}

async fn unknown(State(shared): State<Shared>, uri: Uri) -> Response {
    record(&shared, &uri);
    (StatusCode::NOT_FOUND, "<html>no such route</html>").into_response()
}

/// A tracking source on the hostile Orange (no filter), `extra` keys, and
/// one webhook sink.
fn workspace(orange: &HostileOrange, hook: &Receiver, extra: &str) -> Workspace {
    Workspace::new(
        &source_yaml("tracking", "order-tracking", &orange.base, extra),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    )
}

fn order(id: &str, status: &str) -> String {
    json!({"id": id, "status": status}).to_string()
}

/// `(type, order_id)` of every delivered event, in arrival order.
fn events(hook: &Receiver) -> Vec<(String, String)> {
    let text = |e: &Value, pointer: &str| {
        e.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    hook.delivered()
        .iter()
        .map(|r| r.json())
        .map(|e| (text(&e, "/type"), text(&e, "/data/order_id")))
        .collect()
}

/// Once `n` events are delivered: all of them, sorted.
async fn sorted_events(hook: &Receiver, n: usize) -> Vec<(String, String)> {
    eventually(
        &format!("{n} events delivered"),
        Duration::from_secs(10),
        || hook.delivered().len() >= n,
    )
    .await;
    let mut got = events(hook);
    got.sort();
    got
}

fn told(kind: &str, order_id: &str) -> (String, String) {
    (kind.to_owned(), order_id.to_owned())
}

/// Run `orderwatch once`, which must succeed, and read its peak RSS
/// (`VmHWM`, a high-water mark: any late sample holds the peak so far).
async fn once_peak_rss_kb(ws: &Workspace) -> u64 {
    let mut child = tokio::process::Command::new(binary())
        .arg("--config")
        .arg(ws.config_path())
        .arg("once")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("orderwatch once starts");
    let status_path = format!("/proc/{}/status", child.id().expect("running"));
    let mut peak_kb = 0;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak_kb = peak_kb.max(hwm.unwrap_or(0));
        }
        tokio::select! {
            status = child.wait() => break status.expect("orderwatch once ends"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    };
    assert_eq!(status.code(), Some(0));
    peak_kb
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn only_oranges_not_found_removes_and_one_failing_order_blocks_no_other() {
    let orange = HostileOrange::start().await;
    let hook = Receiver::start().await;
    let ws = workspace(&orange, &hook, "");
    let vanishing = [
        "o1-html",
        "o2-empty",
        "o3-code61",
        "o4-gone410",
        "o5-err500",
        "o6-real404",
        "o7-closed",
    ];
    orange.set_open_orders(vanishing.iter().copied().chain(["stays"]));
    ws.once_ok().await;

    // All but one leave the list; each detail answers its own way.
    orange.set_list(&[&order("stays", "Current")]);
    orange.answer(
        "o1-html",
        DetailAnswer::Plain(
            404,
            "text/html",
            "<html><body>404 Not Found</body></html>".into(),
        ),
    );
    orange.answer(
        "o2-empty",
        DetailAnswer::Plain(404, "application/json", String::new()),
    );
    orange.answer("o3-code61", orange_error(404, 61));
    orange.answer("o4-gone410", orange_error(410, 60));
    orange.answer("o5-err500", orange_error(500, 1));
    // o6-real404: no answer set, Orange's own 404 code 60.
    orange.answer(
        "o7-closed",
        DetailAnswer::Plain(200, "application/json", order("o7-closed", "Closed")),
    );
    let out = ws.run(&["once"]).await;
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!log.contains("panicked"), "{log}");
    let failure = log
        .lines()
        .find(|l| l.contains("poll cycle failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        failure.contains("5 order(s) that left the listing could not be checked"),
        "{failure}"
    );
    for id in &vanishing[..5] {
        assert!(
            failure.contains(&format!("order {id}: ")),
            "{id} named: {failure}"
        );
    }
    assert!(
        failure.contains("request id req-detail-o1-html"),
        "{failure}"
    );
    assert!(
        failure.contains("without Orange's \"not found\" code 60") || failure.contains("code 60"),
        "{failure}"
    );

    // The true outcomes of the others are told; nothing about the five.
    assert_eq!(
        sorted_events(&hook, 2).await,
        vec![
            told("order.removed", "o6-real404"),
            told("order.status_changed", "o7-closed"),
        ]
    );

    // Next cycle: the five are asked again (still candidates), o6 and o7 are
    // settled and not asked; still nothing said about the five.
    orange.forget_seen();
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let mut asked = orange.detail_calls();
    asked.sort();
    let mut expected: Vec<String> = vanishing[..5]
        .iter()
        .map(|id| format!("{TRACKING}/{id}"))
        .collect();
    // 500 is retried (`retries`, default 3) before it counts as failed.
    expected.extend((0..3).map(|_| format!("{TRACKING}/o5-err500")));
    expected.sort();
    assert_eq!(asked, expected);
    assert_eq!(events(&hook).len(), 2, "{:?}", events(&hook));

    // Once Orange says "not found" itself, the removal is told.
    orange.answer("o1-html", orange_error(404, 60));
    let _ = ws.run(&["once"]).await;
    let got = sorted_events(&hook, 3).await;
    assert!(got.contains(&told("order.removed", "o1-html")), "{got:?}");
}

#[tokio::test]
async fn items_that_are_not_orders_are_skipped_and_the_page_is_committed() {
    let orange = HostileOrange::start().await;
    let hook = Receiver::start().await;
    let ws = workspace(&orange, &hook, "    first_poll: notify\n");
    let a = order("a", "Current");
    let b = order("b", "Current");
    orange.set_list(&[
        &a,
        "42",
        r#"{"id":null,"status":"Current"}"#,
        r#"{"id":"","status":"Current"}"#,
        r#"{"status":"Current"}"#,
        r#""just a string""#,
        r#"[{"id":"c"}]"#,
        &b,
    ]);
    let out = ws.run(&["once"]).await;
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for position in 1..=6 {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("item {position} of the page at offset 0 skipped")))
            .unwrap_or_else(|| panic!("item {position} warned: {log}"));
        assert!(
            line.contains("WARN") && line.contains(LIST_REQUEST_ID),
            "{line}"
        );
    }
    assert!(
        !log.contains("item 0 of") && !log.contains("item 7 of"),
        "{log}"
    );
    assert_eq!(
        sorted_events(&hook, 2).await,
        vec![told("order.created", "a"), told("order.created", "b")]
    );
    let listed = ws.run(&["orders", "list", "--json"]).await;
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().count(),
        2,
        "{}",
        text(&listed)
    );

    // The same page again: quiet, and no detail call for what was skipped.
    orange.forget_seen();
    ws.once_ok().await;
    assert!(orange.detail_calls().is_empty(), "{:?}", orange.seen());
    assert_eq!(hook.delivered().len(), 2);
}

#[tokio::test]
async fn ids_that_are_dot_segments_or_hold_controls_alias_no_url_and_forge_no_line() {
    let orange = HostileOrange::start().await;
    let hook = Receiver::start().await;
    let ws = workspace(&orange, &hook, "    first_poll: notify\n");
    let ids = [".", "..", "a\r\nb", "x\ty"];
    orange.set_open_orders(ids.iter().copied().chain(["plain"]));
    let first = ws.run(&["once"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(sorted_events(&hook, 5).await.len(), 5);

    // They all leave the list: `.` and `..` cannot be asked for by id, the
    // other two are, under their own (escaped) URL, and are gone.
    orange.forget_seen();
    orange.set_list(&[&order("plain", "Current")]);
    let second = ws.run(&["once"]).await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let seen = orange.seen();
    let mut details = orange.detail_calls();
    details.sort();
    assert_eq!(
        details,
        vec![format!("{TRACKING}/a%0D%0Ab"), format!("{TRACKING}/x%09y")],
        "{seen:?}"
    );
    for path in &seen {
        let list_call = path.starts_with(&format!("{TRACKING}?")) && path.contains("offset=");
        assert!(
            list_call || path == "/oauth/v3/token" || details.contains(path),
            "an id aliased another URL: {path}"
        );
    }
    let removed: Vec<String> = sorted_events(&hook, 7)
        .await
        .into_iter()
        .filter(|(t, _)| t == "order.removed")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(removed, vec!["a\r\nb".to_owned(), "x\ty".to_owned()]);
    let log = stderr(&second);
    let failure = log
        .lines()
        .find(|l| l.contains("poll cycle failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        failure.contains("2 order(s)") && failure.contains("cannot be carried in a URL path"),
        "{failure}"
    );

    // Every line of both runs is one whole log event: it starts with its
    // timestamp, the ids' CR, LF and TAB are written escaped.
    let all = format!("{}{}", stderr(&first), log);
    for line in all.lines() {
        let stamp = line
            .get(..4)
            .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit()))
            && line.get(10..11) == Some("T");
        assert!(stamp, "a line that is not a log event: {line:?}");
        assert!(!line.contains('\r') && !line.contains('\t'), "{line:?}");
    }
    assert!(all.contains(r"a\r\nb"), "{all}");
    assert!(all.contains(r"x\ty"), "{all}");
}

#[tokio::test]
async fn numeric_ids_keep_every_digit_and_one_number_two_ways_is_one_order() {
    let orange = HostileOrange::start().await;
    let hook = Receiver::start().await;
    let ws = workspace(&orange, &hook, "    first_poll: notify\n");
    let big = [
        r#"{"id":12345678901234567890123,"status":"Current"}"#,
        r#"{"id":12345678901234567890124,"status":"Current"}"#,
        r#"{"id":12345678901234567891,"status":"Current"}"#,
    ];
    let mut items: Vec<&str> = big.to_vec();
    items.push(r#"{"id":100,"status":"Current"}"#);
    orange.set_list(&items);
    ws.once_ok().await;
    let created: Vec<String> = sorted_events(&hook, 4)
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        created,
        vec![
            "100",
            "12345678901234567890123",
            "12345678901234567890124",
            "12345678901234567891"
        ]
    );

    // Orange now writes 100 as 100.0: the same order, nothing to say.
    let mut items: Vec<&str> = big.to_vec();
    items.push(r#"{"id":100.0,"status":"Current"}"#);
    orange.set_list(&items);
    orange.forget_seen();
    ws.once_ok().await;
    assert!(orange.detail_calls().is_empty(), "{:?}", orange.seen());
    assert_eq!(hook.delivered().len(), 4, "{:?}", events(&hook));
    let listed = ws.run(&["orders", "list", "--json"]).await;
    let mut ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["order_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, created);

    // A big id that vanishes is asked for with every digit.
    orange.set_list(&[big[1], big[2], r#"{"id":100,"status":"Current"}"#]);
    orange.forget_seen();
    ws.once_ok().await;
    assert_eq!(
        orange.detail_calls(),
        vec![format!("{TRACKING}/12345678901234567890123")]
    );
}

#[tokio::test]
async fn a_page_of_200000_tiny_orders_is_committed_in_bounded_pieces() {
    const N: usize = 200_000;
    let orange = HostileOrange::start().await;
    let hook = Receiver::start().await;
    let ws = workspace(&orange, &hook, "    page_size: 10000\n    timeout: 120s\n");
    let list = format!(
        "[{}]",
        (0..N)
            .map(|i| format!(r#"{{"id":"{i}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    orange.set_list_text(list, N);
    // A gross bound, far above what it takes (about 110 MB for this debug
    // build, 2.6 MB of page) and far below what one commit of the whole page
    // took (2.2 GB): BENCHMARKS.md has the measured numbers.
    let peak_kb = once_peak_rss_kb(&ws).await;
    assert!(peak_kb < 512 * 1024, "peak RSS {peak_kb} kB");
    let listed = ws.run(&["orders", "list", "--json"]).await;
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().count(),
        N,
        "exit {:?}",
        listed.status
    );

    // A quiet cycle over them: nothing to say, nothing asked by id.
    orange.forget_seen();
    ws.once_ok().await;
    assert!(orange.detail_calls().is_empty());
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn a_detail_without_end_is_refused_at_the_order_limit_while_it_streams() {
    let orange = HostileOrange::start().await;
    let hook = Receiver::start().await;
    let ws = workspace(&orange, &hook, "");
    orange.set_list(&[&order("big", "Current"), &order("k", "Current")]);
    ws.once_ok().await;
    orange.set_list(&[&order("k", "Current")]);
    orange.answer("big", DetailAnswer::Endless);
    let out = ws.run(&["once"]).await;
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failure = log
        .lines()
        .find(|l| l.contains("poll cycle failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        failure.contains("order big: ")
            && failure.contains("the order is larger than orderwatch accepts"),
        "{failure}"
    );
    eventually("the endless body dropped", Duration::from_secs(10), || {
        orange.stream_closed.load(Ordering::SeqCst)
    })
    .await;
    // What was handed to the connection: the order limit plus what sockets
    // buffer, far below the page limit an unbounded read would reach.
    let streamed = orange.streamed.load(Ordering::SeqCst);
    assert!(streamed > MAX_ORDER_BYTES, "{streamed}");
    assert!(
        streamed < MAX_ORDER_BYTES + (MAX_PAGE_BYTES - MAX_ORDER_BYTES) / 2,
        "{streamed}"
    );
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn an_answer_about_the_whole_source_stops_the_checks_instead_of_asking_for_every_order() {
    let orange = HostileOrange::start().await;
    let hook = Receiver::start().await;
    let ws = workspace(&orange, &hook, "");
    let gone: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    orange.set_open_orders(gone.iter().map(String::as_str).chain(["stays"]));
    ws.once_ok().await;
    orange.set_list(&[&order("stays", "Current")]);

    // The API key refused: one detail call, then the cycle stops.
    for id in &gone {
        orange.answer(id, orange_error(403, 50));
    }
    orange.forget_seen();
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("Orange refused access"),
        "{}",
        text(&out)
    );
    assert_eq!(orange.detail_calls(), vec![format!("{TRACKING}/g0")]);

    // Orange unavailable: three orders fail past their retries (1 + 3
    // calls each), then the step stops; the last two are not asked.
    for id in &gone {
        orange.answer(id, orange_error(503, 5));
    }
    orange.forget_seen();
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let asked = orange.detail_calls();
    assert_eq!(asked.len(), 12, "{asked:?}");
    assert!(
        asked
            .iter()
            .all(|p| !p.ends_with("/g3") && !p.ends_with("/g4")),
        "{asked:?}"
    );
    assert!(hook.received().is_empty());
}
