//! A cycle that fails part-way through the listing, through the real binary:
//! no vanish events from an incomplete listing (they would be false: the
//! orders on the unread page did not vanish), but changes seen on the pages
//! that were read are real and are delivered (README.md "Delivery guarantees": no false events).

use crate::helpers::*;
use serde_json::{Value, json};

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const PAGE_SIZE: usize = 50;

/// Current orders only, in id order, so `Admin::ids` (also in id order) says
/// which page each order is on; no retries, so one injected 503 fails the
/// cycle.
fn workspace(base: &str, hook: &str) -> Workspace {
    Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            base,
            &format!(
                "    filters: {{ status: Current }}\n    sort: id\n    page_size: {PAGE_SIZE}\n    retries: 0\n    watch: [/priority]\n"
            ),
        ),
        &webhook_sink_yaml("hook", hook),
        "",
    )
}

/// The Current orders, checked to fill exactly three pages, so a fault at the
/// third page's offset fails the last page of the listing.
async fn current_orders_on_three_pages(admin: &Admin) -> Vec<String> {
    let current = admin.ids(TRACKING, "status=Current").await;
    assert!(
        (2 * PAGE_SIZE + 2..=3 * PAGE_SIZE).contains(&current.len()),
        "the test needs three pages of Current orders, even after one closes; got {}",
        current.len()
    );
    current
}

/// Fail every call for the third page (more times than the source retries).
async fn fail_page_three(admin: &Admin) {
    admin
        .fault(json!({"status": 503, "count": 5, "target": "list", "offset": 2 * PAGE_SIZE}))
        .await;
}

fn events_of(receiver: &Receiver) -> Vec<Value> {
    receiver.received().iter().map(|r| r.json()).collect()
}

#[tokio::test]
async fn a_cycle_failing_on_page_3_of_3_emits_nothing_and_exits_1() {
    let sim = simulator(150).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = workspace(&sim.base_url(), &hook.url);
    let current = current_orders_on_three_pages(&admin).await;

    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "baseline: {}", text(&out));

    // The closed order leaves the filtered list: only a complete listing can
    // tell it vanished.
    let closed = &current[10];
    admin
        .patch("order-tracking", closed, json!({"status": "Closed"}))
        .await;
    fail_page_three(&admin).await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        hook.received().is_empty(),
        "no vanish event from an incomplete listing: {:#?}",
        events_of(&hook)
    );
    let stats = admin.stats().await;
    assert_eq!(
        stats["by_endpoint"]["order-tracking.list"]["503"], 1,
        "the cycle failed on page 3, once: {stats}"
    );
    assert_eq!(
        stats["by_endpoint"]["order-tracking.detail"],
        json!({}),
        "no vanished order was even looked up: {stats}"
    );

    admin.clear_faults().await;
    ws.once_ok().await;
    let events = events_of(&hook);
    assert_eq!(events.len(), 1, "exactly the closing: {events:#?}");
    assert_eq!(events[0]["type"], "order.status_changed");
    assert_eq!(events[0]["data"]["order_id"], closed.as_str());
    assert_eq!(events[0]["data"]["to"], "Closed");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_change_on_page_1_is_delivered_though_page_3_fails() {
    let sim = simulator(150).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = workspace(&sim.base_url(), &hook.url);
    let current = current_orders_on_three_pages(&admin).await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "baseline: {}", text(&out));

    // On page 1 and still Current: a watched field changes. On page 2 an
    // order closes, which this failing cycle must not report.
    let updated = &current[5];
    let closed = &current[PAGE_SIZE + 5];
    admin
        .patch(
            "order-tracking",
            updated,
            json!({"priority": "orderwatch-test"}),
        )
        .await;
    admin
        .patch("order-tracking", closed, json!({"status": "Closed"}))
        .await;
    fail_page_three(&admin).await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let events = events_of(&hook);
    assert_eq!(events.len(), 1, "only the update: {events:#?}");
    assert_eq!(events[0]["type"], "order.updated");
    assert_eq!(events[0]["data"]["order_id"], updated.as_str());
    assert_eq!(events[0]["data"]["changes"][0]["path"], "/priority");
    assert_eq!(events[0]["data"]["changes"][0]["to"], "orderwatch-test");

    // The next complete cycle tells the closing, and not the update again.
    admin.clear_faults().await;
    ws.once_ok().await;
    let events = events_of(&hook);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1]["type"], "order.status_changed");
    assert_eq!(events[1]["data"]["order_id"], closed.as_str());
    sim.shutdown().await;
}
