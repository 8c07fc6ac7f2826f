//! Quiet hours through the real binary: what a quiet route matches is held
//! in the outbox until the quiet time ends, then delivered in order, while
//! another route's sink gets the same events at once; on either store
//! (postgres skipped without a server, as `pg.rs` says).

use crate::helpers::*;
use crate::pg;
use serde_json::json;
use std::time::{Duration, Instant, SystemTime};

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

/// `t` as `HH:MM:SS` in UTC.
fn clock(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[tokio::test]
async fn quiet_hours_hold_then_release_in_order_and_other_routes_get_theirs_at_once() {
    held_then_released("").await;
}

#[tokio::test]
async fn on_postgres_quiet_hours_hold_then_release_in_order_and_other_routes_get_theirs_at_once() {
    let test = "quiet_hours::on_postgres_quiet_hours_hold_then_release_in_order_and_other_routes_get_theirs_at_once";
    if let Some(url) = pg::fresh_database(test) {
        held_then_released(&format!("store: {{ backend: postgres, url: \"{url}\" }}\n")).await;
    }
}

/// `top`: more top-level keys (the store).
async fn held_then_released(top: &str) {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let quiet = Receiver::start().await;
    let loud = Receiver::start().await;
    // Quiet from a minute ago until 12 s from now (whole seconds, UTC).
    let start = SystemTime::now();
    let release = start + Duration::from_secs(12);
    let release_secs = release
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let release_at = Instant::now()
        + (SystemTime::UNIX_EPOCH + Duration::from_secs(release_secs))
            .duration_since(SystemTime::now())
            .unwrap_or_default();
    let routes = format!(
        "routes:\n  - sinks: [quiet]\n    quiet_hours: {{ from: \"{}\", to: \"{}\", timezone: UTC }}\n  - sinks: [loud]\n",
        clock(start - Duration::from_secs(60)),
        clock(release),
    );
    let sinks = format!(
        "{}{}",
        webhook_sink_yaml("quiet", &quiet.url),
        webhook_sink_yaml("loud", &loud.url)
    );
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &sinks,
        &format!("{routes}{top}"),
    );
    ws.once_ok().await;
    let ids = admin.ids(TRACKING, "status=Current").await;
    let child = ws.spawn_run();
    // One order changes twice (each change seen by its own poll), another once.
    let steps = [
        (&ids[0], "InProgress"),
        (&ids[1], "Delayed"),
        (&ids[0], "Closed"),
    ];
    for (n, (id, status)) in steps.iter().enumerate() {
        admin
            .patch("order-tracking", id, json!({ "status": status }))
            .await;
        eventually("the loud route's delivery", Duration::from_secs(20), || {
            loud.delivered().len() == n + 1
        })
        .await;
    }
    let loud_done = Instant::now();
    if loud_done < release_at {
        assert!(
            quiet.received().is_empty(),
            "delivered during the quiet hours"
        );
    }
    eventually(
        "the quiet route's deliveries",
        Duration::from_secs(40),
        || quiet.delivered().len() == 3,
    )
    .await;
    let held = quiet.delivered();
    for got in &held {
        // The clocks compared are two: a millisecond of slack.
        assert!(
            got.at + Duration::from_millis(5) >= release_at,
            "arrived before the quiet hours ended"
        );
    }
    // In order: the first order's two changes as they happened.
    let seen: Vec<(String, String)> = held
        .iter()
        .map(|r| {
            let d = &r.json()["data"];
            (
                d["order_id"].as_str().unwrap().to_owned(),
                d["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let first: Vec<&str> = seen
        .iter()
        .filter(|(id, _)| id == ids[0].as_str())
        .map(|(_, to)| to.as_str())
        .collect();
    assert_eq!(first, ["InProgress", "Closed"], "{seen:?}");
    assert!(
        seen.contains(&(ids[1].clone(), "Delayed".to_owned())),
        "{seen:?}"
    );
    // The same events, the same ids, at both sinks.
    let ids_of = |r: &[Received]| {
        let mut v: Vec<String> = r.iter().map(|r| r.header("webhook-id")).collect();
        v.sort();
        v
    };
    assert_eq!(ids_of(&held), ids_of(&loud.delivered()));
    stop_daemon(child).await;
    sim.shutdown().await;
}
