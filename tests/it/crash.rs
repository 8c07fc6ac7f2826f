//! Crash safety: `orderwatch run` killed with SIGKILL again and again while
//! orders change; every change still reaches the receiver, duplicates only
//! under the same `webhook-id`, and nothing is invented.

use crate::helpers::*;
use rand::Rng;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

#[tokio::test]
async fn sigkill_mid_cycle_and_mid_delivery_loses_nothing() {
    let sim = simulator(150).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    // Delivery answers slowly now and then, so kills land mid-delivery too.
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "    page_size: 20\n", "");
    ws.once_ok().await;

    let mut candidates = admin.ids(TRACKING, "status=Current").await;
    let mut closed: Vec<String> = Vec::new();
    let kills = 8;
    for round in 0..kills {
        let mut child = ws.spawn_run();
        // Close a few orders while it runs (each order changes once).
        for _ in 0..3 {
            if let Some(id) = candidates.pop() {
                admin
                    .patch("order-tracking", &id, json!({"status": "Closed"}))
                    .await;
                closed.push(id);
            }
            let pause = rand::rng().random_range(50..400);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        if round % 3 == 1 {
            hook.script(&[503]);
        }
        let pause = rand::rng().random_range(100..1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.start_kill().expect("SIGKILL");
        let status = child.wait().await.unwrap();
        assert!(!status.success(), "killed, not exited");
    }

    // Let it settle: every closing must arrive.
    let mut child = ws.spawn_run();
    let expected: HashSet<String> = closed.iter().cloned().collect();
    let hook2 = hook.clone();
    let done = move || {
        let got: HashSet<String> = hook2
            .delivered()
            .iter()
            .map(|r| {
                r.json()["data"]["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        expected.is_subset(&got)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Signal a daemon that is up and has polled, not one still starting.
    let log_path = ws.log_path();
    let cycles = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .matches("poll cycle done")
            .count()
    };
    let before = cycles(&log_path);
    eventually(
        "a poll cycle of the final run",
        Duration::from_secs(30),
        || cycles(&log_path) > before,
    )
    .await;
    let status = terminate(&mut child, Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}\n{log}");

    let delivered = hook.delivered();
    let mut ids_per_change: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for r in &delivered {
        let e = r.json();
        let order = e["data"]["order_id"].as_str().unwrap().to_owned();
        assert!(
            closed.contains(&order),
            "an event for an order that did not change: {e}"
        );
        assert_eq!(e["type"], "order.status_changed", "{e}");
        assert_eq!(e["data"]["to"], "Closed");
        assert_eq!(r.header("webhook-id"), e["data"]["id"].as_str().unwrap());
        ids_per_change
            .entry((order, e["type"].as_str().unwrap().to_owned()))
            .or_default()
            .insert(r.header("webhook-id"));
    }
    for id in &closed {
        let ids = ids_per_change.get(&(id.clone(), "order.status_changed".into()));
        let ids = ids.unwrap_or_else(|| panic!("closing of {id} never delivered\n{log}"));
        assert_eq!(ids.len(), 1, "one change, one id: {ids:?}");
    }
    println!(
        "crash test: {kills} kills, {} changes, {} deliveries, {} duplicates",
        closed.len(),
        delivered.len(),
        delivered.len() - closed.len()
    );
    sim.shutdown().await;
}
