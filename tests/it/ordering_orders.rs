//! Ordering's `/orders` as Orange publishes it: the simulator's collection
//! (schema, lifecycle, sorts on nested fields, `fields=`, the 250-item
//! limit), a source that needs only `api`, `resource`, credentials and an
//! interval, the 250-item pages of an `ordering` source, and a 400 that
//! names the parameter and is never asked again.

use crate::helpers::*;
use orderwatch_simulator::{self as simulator, RunningSimulator, SimOptions};
use serde_json::{Value, json};
use std::time::Duration;

pub const ORDERS: &str = "/ordering/b2b/v2/orders";
/// The simulator's admin name of Ordering's orders.
pub const ORDERS_API: &str = "ordering-orders";

/// One list call on `/orders`: status, headers and body.
pub async fn list(sim: &RunningSimulator, query: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{ORDERS}?{query}", sim.base_url()))
        .bearer_auth(Admin::new(sim).token().await)
        .header("X-API-Key", API_KEY)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap())
}

/// Every order `/orders` lists for `query`, page by page (250 at most each).
pub async fn all_orders(sim: &RunningSimulator, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let (status, _, page) = list(
            sim,
            &format!("{query}&sort=id&limit=250&offset={}", out.len()),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        let n = page.len();
        out.extend(page);
        if n < 250 {
            return out;
        }
    }
}

pub fn calls(stats: &Value, endpoint: &str) -> u64 {
    stats["by_endpoint"][endpoint]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

pub fn events_of(receiver: &Receiver) -> Vec<Value> {
    receiver.delivered().iter().map(|r| r.json()).collect()
}

/// A source on Ordering's orders with only what a user must give (and
/// `extra` keys).
pub fn orders_source(name: &str, base_url: &str, interval: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    api: ordering\n    resource: orders\n    base_url: {base_url}\n    client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n    api_key: {API_KEY}\n    interval: {interval}\n{extra}"
    )
}

#[tokio::test]
async fn the_orders_collection_is_shaped_like_the_published_schema() {
    let sim = simulator(300).await;
    let (status, headers, page) = list(&sim, "").await;
    assert_eq!(status, 200);
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 250, "the default page is 250");
    assert_eq!(headers["x-total-count"], "300");
    for order in page {
        for field in [
            "id",
            "status",
            "step",
            "subStep",
            "deliveryStatus",
            "isOverdue",
            "createdAt",
            "updatedAt",
        ] {
            assert!(order.get(field).is_some(), "{field} in {order}");
        }
        assert!(order.pointer("/keyDates/expectedAt").is_some(), "{order}");
        let href = order.pointer("/_links/self/href").and_then(Value::as_str);
        assert_eq!(
            href,
            Some(format!("{ORDERS}/{}", order["id"].as_str().unwrap()).as_str())
        );
    }

    // Sorts on any field, nested ones named with dots.
    for (sort, pointer, descending) in [
        ("-updatedAt", "/updatedAt", true),
        ("keyDates.expectedAt", "/keyDates/expectedAt", false),
    ] {
        let (status, _, page) = list(&sim, &format!("sort={sort}&limit=250")).await;
        assert_eq!(status, 200);
        let values: Vec<&str> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.pointer(pointer).and_then(Value::as_str).unwrap())
            .collect();
        let mut sorted = values.clone();
        sorted.sort();
        if descending {
            sorted.reverse();
        }
        assert_eq!(values, sorted, "sort={sort}");
    }

    // A partial answer.
    let (_, _, page) = list(&sim, "fields=id,keyDates.expectedAt&limit=3").await;
    for order in page.as_array().unwrap() {
        let keys: Vec<&String> = order.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "keyDates"], "{order}");
        assert_eq!(order["keyDates"].as_object().unwrap().len(), 1, "{order}");
    }

    // More than 250 is refused as Orange does, naming the parameter.
    let (status, _, body) = list(&sim, "limit=251").await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 28);
    assert!(
        body["description"].as_str().unwrap().contains("\"limit\""),
        "{body}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn updated_at_follows_every_change_and_churn_walks_the_lifecycle() {
    let mut sim = simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimOptions {
            orders: 60,
            churn: 400.0,
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let admin = Admin::new(&sim);
    eventually_async("churn changed 40 orders", Duration::from_secs(30), || {
        let admin = &admin;
        async move {
            admin
                .changes()
                .await
                .iter()
                .filter(|c| c["api"] == ORDERS_API && c["kind"] != "created")
                .count()
                >= 40
        }
    })
    .await;
    sim.stop_churn().await;
    let changes: Vec<Value> = admin
        .changes()
        .await
        .into_iter()
        .filter(|c| c["api"] == ORDERS_API)
        .collect();
    let paths: Vec<String> = changes
        .iter()
        .flat_map(|c| c["changes"].as_array().cloned().unwrap_or_default())
        .map(|c| format!("{}={}", c["path"].as_str().unwrap_or(""), c["to"]))
        .collect();
    let every_change_stamps = changes.iter().filter(|c| c["kind"] == "changed").all(|c| {
        c["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["path"] == "/updatedAt")
    });
    assert!(every_change_stamps, "{changes:#?}");
    assert!(paths.iter().any(|p| p.starts_with("/status=")), "{paths:?}");

    // An admin change is stamped too.
    let order = all_orders(&sim, "").await.remove(0);
    let id = order["id"].as_str().unwrap();
    admin
        .patch(ORDERS_API, id, json!({"customerReference": "#PATCHED"}))
        .await;
    let after = all_orders(&sim, "").await;
    let after = after.iter().find(|o| o["id"] == id).unwrap();
    assert!(
        after["updatedAt"].as_str().unwrap() > order["updatedAt"].as_str().unwrap(),
        "{order} then {after}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_source_with_only_api_resource_credentials_and_interval_hears_closings_status_changes_and_slips()
 {
    let sim = simulator(600).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &orders_source("orders", &sim.base_url(), "1m", ""),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    ws.once_ok().await;
    // 600 orders in pages of 250: three calls, not the six of 100.
    assert_eq!(calls(&admin.stats().await, "ordering-orders.list"), 3);

    let in_progress = all_orders(&sim, "status=IN_PROGRESS").await;
    let on_track: Vec<&Value> = in_progress
        .iter()
        .filter(|o| o["deliveryStatus"] == "ON_TRACK")
        .collect();
    let (closing, slipping) = (on_track[0]["id"].as_str().unwrap(), on_track[1]);
    let new = all_orders(&sim, "status=NEW").await;
    let starting = new[0]["id"].as_str().unwrap();
    admin
        .patch(
            ORDERS_API,
            closing,
            json!({"status": "COMPLETED", "step": "ORDER_ACCEPTANCE"}),
        )
        .await;
    admin
        .patch(
            ORDERS_API,
            slipping["id"].as_str().unwrap(),
            json!({"deliveryStatus": "DELAYED", "keyDates": {"expectedAt": "2027-02-01T00:00:00Z"}}),
        )
        .await;
    admin
        .patch(ORDERS_API, starting, json!({"status": "IN_PROGRESS"}))
        .await;
    ws.once_ok().await;

    let events = events_of(&hook);
    assert_eq!(events.len(), 3, "{events:#?}");
    let of = |id: &str| {
        events
            .iter()
            .find(|e| e["data"]["order_id"] == id)
            .unwrap_or_else(|| panic!("no event for {id}: {events:#?}"))
    };
    let closed = of(closing);
    assert_eq!(closed["type"], "order.status_changed");
    assert_eq!(closed["data"]["to"], "COMPLETED");
    assert_eq!(closed["data"]["closed"], true);
    let slipped = of(slipping["id"].as_str().unwrap());
    assert_eq!(slipped["type"], "order.updated");
    let paths: Vec<&str> = slipped["data"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/deliveryStatus", "/keyDates/expectedAt"]);
    let started = of(starting);
    assert_eq!(started["data"]["from"], "NEW");
    assert_eq!(started["data"]["to"], "IN_PROGRESS");
    assert_eq!(started["data"]["closed"], false);

    // `check --connect` reads the same first page.
    let out = ws.run(&["check", "--connect"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("first page: 250 orders of 600"),
        "{}",
        text(&out)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_ordering_page_size_above_250_is_a_config_error() {
    for resource in ["requests", "orders"] {
        let ws = Workspace::new(
            &source_yaml(
                "o",
                "ordering",
                "http://127.0.0.1:9",
                &format!("    resource: {resource}\n    page_size: 251\n"),
            ),
            &webhook_sink_yaml("hook", "http://127.0.0.1:9/hook"),
            "",
        );
        let out = ws.run(&["check"]).await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("sources[0].page_size") && said.contains("250"),
            "{said}"
        );
    }
    // Order Tracking publishes no limit: its pages may be larger.
    let ws = Workspace::new(
        &source_yaml(
            "t",
            "order-tracking",
            "http://127.0.0.1:9",
            "    page_size: 500\n",
        ),
        &webhook_sink_yaml("hook", "http://127.0.0.1:9/hook"),
        "",
    );
    assert_eq!(ws.run(&["check"]).await.status.code(), Some(0));
}

#[tokio::test]
async fn a_400_fails_the_cycle_at_once_names_the_parameter_and_is_never_retried() {
    let sim = simulator(300).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    // A generic source may ask for any page size: Orange answers 400.
    let ws = Workspace::new(
        &source_yaml(
            "orders",
            "generic",
            &sim.base_url(),
            &format!(
                "    path: {ORDERS}\n    id_field: /id\n    status_field: /status\n    page_size: 500\n    retries: 3\n"
            ),
        ),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("query parameter `limit`"), "{said}");
    assert!(
        said.contains("HTTP 400") && said.contains("code 28"),
        "{said}"
    );
    assert_eq!(calls(&admin.stats().await, "ordering-orders.list"), 1);
    sim.shutdown().await;
}
