//! The http sink through the binary: a body template with `tojson` makes
//! valid JSON whatever an order id holds, sent with the configured method
//! and content type; a body that would not be JSON is a config problem.

use crate::helpers::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

type Requests = Arc<Mutex<Vec<(Method, HeaderMap, Bytes)>>>;

/// A receiver that takes any method and records it.
async fn api() -> (Requests, String) {
    let requests: Requests = Arc::default();
    let app = Router::new()
        .route(
            "/{*path}",
            any(
                |State(r): State<Requests>, method: Method, headers: HeaderMap, body: Bytes| async move {
                    r.lock().unwrap().push((method, headers, body));
                    StatusCode::CREATED
                },
            ),
        )
        .with_state(requests.clone());
    let url = format!("http://{}/tickets", serve(app).await);
    (requests, url)
}

#[tokio::test]
async fn a_json_body_survives_an_order_id_with_quotes_and_newlines() {
    let sim = simulator(0).await;
    let admin = Admin::new(&sim);
    let id = "PO \"42\"\nline two\\end";
    admin
        .add(
            "order-tracking",
            json!({"id": id, "status": "Current", "product": "VPN <b>"}),
        )
        .await;
    let (requests, url) = api().await;
    let body = r#"{"order": {{ order_id|tojson }}, "was": {{ from|tojson }}, "now": {{ to|tojson }}, "product": {{ order.product|tojson }}, "type": "{{ type }}"}"#;
    let sinks = format!(
        "  - name: tickets\n    type: http\n    url: {url}\n    method: PUT\n    headers: {{ X-Team: network }}\n    body: {}\n",
        serde_json::to_string(body).unwrap()
    );
    let ws = notify_workspace(&sim, &sinks, "");
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let got = requests.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{}", text(&out));
    let (method, headers, bytes) = &got[0];
    assert_eq!(method, Method::PUT);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-team"], "network");
    let sent: Value = serde_json::from_slice(bytes).expect("the body is JSON");
    assert_eq!(
        sent,
        json!({"order": id, "was": null, "now": "Current", "product": "VPN <b>", "type": "order.created"})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_body_that_would_not_be_json_is_a_config_problem_naming_its_key() {
    let sim = simulator(0).await;
    let sinks = "  - name: hook\n    type: webhook\n    url: http://127.0.0.1:9/x\n  - name: tickets\n    type: http\n    url: http://127.0.0.1:9/t\n    body: '{\"product\": {{ order.product }}}'\n";
    let ws = notify_workspace(&sim, sinks, "");
    let out = ws.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(
            "sinks[1].body: the content type is JSON, but the body rendered for a sample"
        ),
        "{said}"
    );
    // Another content type takes any text.
    let sinks = sinks.replace("    body:", "    content_type: text/plain\n    body:");
    let ws = notify_workspace(&sim, &sinks, "");
    let out = ws.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    sim.shutdown().await;
}
