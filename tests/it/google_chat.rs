//! The google-chat sink through the binary, against a receiver that reads
//! requests as Google Chat does: the URL's `key` and `token` kept and
//! `messageReplyOption` added, text plus a `cardsV2` card, one thread per
//! order, messages a second apart, a 429's `Retry-After` waited out, and
//! neither credential in the log.

use crate::helpers::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI";
const TOKEN: &str = "qnGtiK7kM9fX1fB2vq0aZ3Pw4xRt5Yu6Io7Pa8Sd9Fg%3D";

#[derive(Clone, Debug)]
struct Message {
    query: String,
    body: Value,
    at: Instant,
}

#[derive(Default)]
struct Space {
    messages: Vec<Message>,
    /// Answers to give next, in order: (status, headers, body); 200 after.
    script: VecDeque<Answer>,
}

type Shared = Arc<Mutex<Space>>;
/// A scripted answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

async fn space() -> (Shared, String) {
    let shared: Shared = Arc::default();
    let app =
        Router::new()
            .route(
                "/v1/spaces/{space}/messages",
                post(
                    |State(s): State<Shared>,
                     RawQuery(query): RawQuery,
                     _: HeaderMap,
                     body: Bytes| async move {
                        let mut s = s.lock().unwrap();
                        s.messages.push(Message {
                            query: query.unwrap_or_default(),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            at: Instant::now(),
                        });
                        let (status, headers, text) =
                            s.script
                                .pop_front()
                                .unwrap_or((200, Vec::new(), "{}".to_owned()));
                        let mut response: Response =
                            (StatusCode::from_u16(status).unwrap(), text).into_response();
                        for (name, value) in headers {
                            response.headers_mut().insert(name, value.parse().unwrap());
                        }
                        response
                    },
                ),
            )
            .with_state(shared.clone());
    let url = format!(
        "http://{}/v1/spaces/AAAAq1/messages?key={KEY}&token={TOKEN}",
        serve(app).await
    );
    (shared, url)
}

fn sink_yaml(url: &str, extra: &str) -> String {
    format!("  - name: chat\n    type: google-chat\n    url: \"{url}\"\n{extra}")
}

fn messages(s: &Shared) -> Vec<Message> {
    s.lock().unwrap().messages.clone()
}

fn pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn each_order_is_one_thread_with_text_and_a_card() {
    let sim = simulator(0).await;
    let admin = Admin::new(&sim);
    for id in ["A-1", "B-2"] {
        admin
            .add("order-tracking", json!({"id": id, "status": "Current"}))
            .await;
    }
    let (space, url) = space().await;
    let ws = notify_workspace(&sim, &sink_yaml(&url, ""), "");
    ws.once_ok().await;
    admin
        .patch("order-tracking", "A-1", json!({"status": "Closed"}))
        .await;
    let out = ws.run(&["once"]).await;
    assert!(once_summary(&out).contains("1 delivered"), "{}", text(&out));

    let got = messages(&space);
    assert_eq!(got.len(), 3, "{got:?}");
    for m in &got {
        assert_eq!(
            pairs(&m.query),
            [
                ("key".to_owned(), KEY.to_owned()),
                ("token".to_owned(), TOKEN.replace("%3D", "=")),
                (
                    "messageReplyOption".to_owned(),
                    "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD".to_owned()
                ),
            ],
            "{}",
            m.query
        );
    }
    let keys: Vec<&str> = got
        .iter()
        .map(|m| m.body["thread"]["threadKey"].as_str().unwrap())
        .collect();
    // The closing of A-1 goes to the thread its creation started.
    assert_eq!(keys.iter().filter(|k| **k == "tracking/A-1").count(), 2);
    assert_eq!(keys.iter().filter(|k| **k == "tracking/B-2").count(), 1);

    let closed = &got[2].body;
    assert_eq!(
        closed["text"],
        "✅ Order *A-1* (tracking) is now *Closed* (was Current)"
    );
    let card = &closed["cardsV2"][0];
    assert!(
        card["cardId"]
            .as_str()
            .unwrap()
            .starts_with("orderwatch-evt_")
    );
    assert_eq!(card["card"]["header"]["title"], "Order A-1");
    assert_eq!(
        card["card"]["header"]["subtitle"],
        "tracking · order.status_changed"
    );
    let sections = card["card"]["sections"].as_array().unwrap();
    let labelled = |section: &Value| -> Vec<(String, String)> {
        section["widgets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let t = &w["decoratedText"];
                (
                    t["topLabel"].as_str().unwrap_or_default().to_owned(),
                    t["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let facts = labelled(&sections[0]);
    assert!(
        facts.contains(&("Status".to_owned(), "Current → Closed".to_owned())),
        "{facts:?}"
    );
    assert_eq!(sections[1]["header"], "Changes");
    assert_eq!(
        labelled(&sections[1]),
        [("/status".to_owned(), "Current → Closed".to_owned())]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn without_threads_the_url_and_body_are_left_alone_and_values_are_escaped() {
    let sim = simulator(0).await;
    let admin = Admin::new(&sim);
    admin
        .add(
            "order-tracking",
            json!({"id": "<users/all> & co", "status": "Current"}),
        )
        .await;
    let (space, url) = space().await;
    let ws = notify_workspace(&sim, &sink_yaml(&url, "    thread_per_order: false\n"), "");
    ws.once_ok().await;
    let got = messages(&space);
    assert_eq!(got.len(), 1);
    assert_eq!(
        pairs(&got[0].query),
        [
            ("key".to_owned(), KEY.to_owned()),
            ("token".to_owned(), TOKEN.replace("%3D", "=")),
        ]
    );
    assert!(got[0].body.get("thread").is_none(), "{}", got[0].body);
    // An order id cannot mention everyone in the space.
    let said = got[0].body["text"].as_str().unwrap();
    assert!(said.contains("*&lt;users/all&gt; &amp; co*"), "{said}");
    assert_eq!(
        got[0].body["cardsV2"][0]["card"]["header"]["title"],
        "Order &lt;users/all&gt; &amp; co"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn messages_are_a_second_apart_and_a_429_waits_for_retry_after() {
    let sim = simulator(4).await;
    let (space, url) = space().await;
    // The first message is refused with a Retry-After far longer than the
    // backoff (100 ms) and the pacing (1 s).
    space.lock().unwrap().script.push_back((
        429,
        vec![("retry-after", "3".to_owned())],
        "{\"error\": {\"code\": 429, \"status\": \"RESOURCE_EXHAUSTED\"}}".to_owned(),
    ));
    let ws = notify_workspace(&sim, &sink_yaml(&url, ""), "");
    let mut child = ws.spawn_run();
    eventually("all four orders told", Duration::from_secs(60), || {
        messages(&space).len() >= 5
    })
    .await;
    terminate(&mut child, Duration::from_secs(30)).await;

    let got = messages(&space);
    let first_key = &got[0].body["thread"]["threadKey"];
    let retried = got[1..]
        .iter()
        .position(|m| &m.body["thread"]["threadKey"] == first_key)
        .expect("the refused message is sent again")
        + 1;
    assert!(
        got[retried].at - got[0].at >= Duration::from_millis(2900),
        "retried {:?} after the 429",
        got[retried].at - got[0].at
    );
    for pair in got.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(950),
            "two messages {:?} apart",
            pair[1].at - pair[0].at
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_key_and_token_stay_out_of_the_log_even_when_echoed() {
    let sim = simulator(1).await;
    let (space, url) = space().await;
    let path_and_query = url.split_once("/v1/").unwrap().1.to_owned();
    space.lock().unwrap().script.push_back((
        400,
        Vec::new(),
        format!("{{\"error\": \"bad request to /v1/{path_and_query} with key {KEY}\"}}"),
    ));
    let ws = notify_workspace(&sim, &sink_yaml(&url, ""), "");
    let mut child = ws.spawn_run_with(&[("RUST_LOG", "debug")]);
    eventually("the refusal logged", Duration::from_secs(30), || {
        log_count(&ws, "HTTP 400") > 0
    })
    .await;
    terminate(&mut child, Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(ws.log_path()).unwrap();
    assert!(
        log.contains("google-chat sink `chat` (http://127.0.0.1:"),
        "{log}"
    );
    for secret in [KEY, TOKEN, &TOKEN.replace("%3D", "=")] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn notify_test_posts_a_sample_message() {
    let sim = simulator(0).await;
    let (space, url) = space().await;
    let ws = notify_workspace(&sim, &sink_yaml(&url, ""), "");
    let out = ws.run(&["notify-test", "chat"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = messages(&space);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["thread"]["threadKey"], "tracking/123456");
    assert_eq!(
        got[0].body["text"],
        "✅ Order *123456* (tracking) is now *Closed* (was Current)"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_source_event_is_told_in_the_sources_own_thread() {
    let sim = simulator(0).await;
    let (space, url) = space().await;
    let ws = notify_workspace(&sim, &sink_yaml(&url, ""), "");
    let out = ws
        .run(&["notify-test", "chat", "--event", "source.failing"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = messages(&space);
    assert_eq!(got.len(), 1);
    let body = &got[0].body;
    assert_eq!(body["thread"]["threadKey"], "tracking/");
    let said = body["text"].as_str().unwrap();
    assert!(
        said.starts_with(
            "🚨 Source *tracking* is failing since 2026-11-22T07:45:00Z (12 failed cycles): "
        ),
        "{said}"
    );
    let card = &body["cardsV2"][0]["card"];
    assert_eq!(card["header"]["title"], "Source tracking");
    assert_eq!(card["header"]["subtitle"], "source.failing");
    let labels: Vec<&str> = card["sections"][0]["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["decoratedText"]["topLabel"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["Failing since", "Failed cycles", "Error", "Detected"]
    );
    sim.shutdown().await;
}
