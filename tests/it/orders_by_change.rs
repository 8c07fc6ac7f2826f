//! `GET /api/v1/orders?sort=changed` and `orders list --sort changed`
//! through a running orderwatch: the latest change first across pages, by
//! the store's index of change times, and what a walk does with an order
//! that changes while it pages; the first on the postgres store too
//! (skipped without a server, as `pg.rs` says).

use crate::api::{Api, TOKEN, api_rest, spawn_with_token, stop_and_check_log};
use crate::helpers::*;
use crate::pg;
use serde_json::{Value, json};
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

/// Every page of `path` (which has its query already), limit 2, in order,
/// from the start or from `cursor`.
async fn walk_from(api: &Api, path: &str, mut cursor: Option<String>) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    loop {
        let mut url = format!("{path}&limit=2");
        if let Some(c) = cursor.take() {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = api.ok(&url).await;
        pages.push(page["orders"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return pages,
        }
        assert!(pages.len() < 20, "the walk ends: {pages:?}");
    }
}

async fn walk(api: &Api, path: &str) -> Vec<Vec<Value>> {
    walk_from(api, path, None).await
}

fn ids(orders: &[Value]) -> Vec<String> {
    orders
        .iter()
        .map(|o| o["order_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Change `id` in the simulator, poll now, and wait until the store has
/// the change; then wait for the clock's next second, so the next change
/// is strictly later (change times are RFC 3339 seconds).
pub async fn change(admin: &Admin, api: &Api, id: &str, status: &str) {
    admin
        .patch("order-tracking", id, json!({ "status": status }))
        .await;
    let (code, _) = api.post("/sources/tracking/poll", json!({})).await;
    assert_eq!(code, 202);
    let path = format!("/orders/tracking/{id}");
    eventually_async(
        "the change is in the store",
        Duration::from_secs(30),
        || async { api.ok(&path).await["status"] == status },
    )
    .await;
    let order = api.ok(&path).await;
    let changed_at = order["changed_at"].as_str().unwrap_or_default().to_owned();
    next_second(&changed_at).await;
}

pub async fn next_second(after: &str) {
    eventually(
        "the clock moves past a second",
        Duration::from_secs(5),
        || {
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string()
                .as_str()
                > after
        },
    )
    .await;
}

#[tokio::test]
async fn orders_by_last_change_page_newest_first_across_pages() {
    newest_first_across_pages("").await;
}

#[tokio::test]
async fn on_postgres_orders_by_last_change_page_newest_first_across_pages() {
    let test = "orders_by_change::on_postgres_orders_by_last_change_page_newest_first_across_pages";
    if let Some(url) = pg::fresh_database(test) {
        newest_first_across_pages(&format!("store: {{ backend: postgres, url: \"{url}\" }}\n"))
            .await;
    }
}

/// `top`: more top-level keys (the store).
async fn newest_first_across_pages(top: &str) {
    let sim = simulator(6).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), "")
            .replace("interval: 1s", "interval: 1h"),
        &webhook_sink_yaml("hook", &hook.url),
        &format!("{}{top}", api_rest()),
    );
    let mut child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    let all = admin.ids(TRACKING, "").await;
    assert_eq!(all.len(), 6);
    let baseline = api.ok("/orders?limit=1").await;
    next_second(baseline["orders"][0]["changed_at"].as_str().unwrap()).await;

    // Changed in an order that is neither the ids' nor their reverse.
    let order = [&all[3], &all[0], &all[4], &all[1]];
    for (n, id) in order.iter().enumerate() {
        change(&admin, &api, id, &format!("Step-{n}")).await;
    }

    let pages = walk(&api, "/orders?sort=changed").await;
    assert!(pages.iter().all(|p| p.len() <= 2), "{pages:?}");
    let walked: Vec<Value> = pages.concat();
    let walked_ids = ids(&walked);
    let newest_first: Vec<String> = order.iter().rev().map(|s| s.to_string()).collect();
    assert_eq!(walked_ids[..4], newest_first[..], "{walked_ids:?}");
    // The two unchanged orders follow (same baseline time: by id,
    // descending), each once.
    assert_eq!(walked_ids[4..], [all[5].clone(), all[2].clone()]);
    let times: Vec<&str> = walked
        .iter()
        .map(|o| o["changed_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // Filters apply within that order.
    let filtered = ids(&walk(&api, "/orders?sort=changed&status=Step-2")
        .await
        .concat());
    assert_eq!(filtered, [all[4].clone()]);
    let found = ids(&walk(&api, &format!("/orders?sort=changed&q={}", all[0]))
        .await
        .concat());
    assert_eq!(found, [all[0].clone()]);
    // Without `sort`, the key order as before.
    let mut by_key = all.clone();
    by_key.sort();
    assert_eq!(
        ids(&walk(&api, "/orders?source=tracking").await.concat()),
        by_key
    );
    // A bad sort, and a cursor of the other order, are refused.
    let (code, body) = api.get("/orders?sort=newest").await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("sort"), "{body}");
    let key_cursor = api.ok("/orders?limit=1").await["next_cursor"].clone();
    let (code, _) = api
        .get(&format!(
            "/orders?sort=changed&cursor={}",
            key_cursor.as_str().unwrap()
        ))
        .await;
    assert_eq!(code, 400);

    // An order that changes during a walk moves to the front, behind the
    // cursor: the rest of the walk does not show it; every order that did
    // not change is shown once.
    let first = api.ok("/orders?sort=changed&limit=2").await;
    assert_eq!(ids(first["orders"].as_array().unwrap()), newest_first[..2]);
    let moved = newest_first[2].clone();
    change(&admin, &api, &moved, "Step-late").await;
    let cursor = first["next_cursor"].as_str().map(str::to_owned);
    let rest = ids(&walk_from(&api, "/orders?sort=changed", cursor)
        .await
        .concat());
    assert_eq!(
        rest,
        [newest_first[3].clone(), all[5].clone(), all[2].clone()]
    );
    let fresh = ids(&walk(&api, "/orders?sort=changed").await.concat());
    assert_eq!(fresh[0], moved, "a new walk shows it first: {fresh:?}");

    // The command line lists the same, through the running daemon and
    // from the stopped store.
    let listed = |out: &std::process::Output| -> Vec<String> {
        let lines = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows: Vec<Value> = lines
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        ids(&rows)
    };
    let through_api = run_binary(
        &ws.config_path(),
        &[
            "orders", "list", "--sort", "changed", "--json", "--url", &api.base,
        ],
        &[("ORDERWATCH_API_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(through_api.status.code(), Some(0), "{}", text(&through_api));
    assert_eq!(listed(&through_api), fresh);
    stop_and_check_log(&ws, &mut child).await;
    let from_store = run_binary(
        &ws.config_path(),
        &["orders", "list", "--sort", "changed", "--json"],
        &[("ORDERWATCH_API_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(from_store.status.code(), Some(0), "{}", text(&from_store));
    assert_eq!(listed(&from_store), fresh);
    sim.shutdown().await;
}
