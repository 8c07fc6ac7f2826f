//! Orders in, notifications out: the core flow through the real binary.

use crate::helpers::*;
use serde_json::{Value, json};
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

fn tracking_workspace(base: &str, hook: &str, extra: &str) -> Workspace {
    Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            base,
            &format!(
                "    filters: {{ status: Current }}\n    sort: -id\n    page_size: 50\n{extra}"
            ),
        ),
        &webhook_sink_yaml("hook", hook),
        "",
    )
}

/// A tracking source whose baseline is recorded, and one of its Current
/// orders closed since: the next `once` has exactly one change to deliver.
struct OneClosing {
    sim: orderwatch_simulator::RunningSimulator,
    ws: Workspace,
    order_id: String,
}

async fn baseline_then_close(hook_url: &str) -> OneClosing {
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let ws = tracking_workspace(&sim.base_url(), hook_url, "");
    assert_eq!(ws.run(&["once"]).await.status.code(), Some(0));
    let current = admin.ids(TRACKING, "status=Current").await;
    admin
        .patch("order-tracking", &current[0], json!({"status": "Closed"}))
        .await;
    OneClosing {
        sim,
        ws,
        order_id: current[0].clone(),
    }
}

fn events_of(receiver: &Receiver) -> Vec<Value> {
    receiver.delivered().iter().map(|r| r.json()).collect()
}

#[tokio::test]
async fn baseline_is_silent_then_a_closing_arrives_once_signed() {
    let sim = simulator(120).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = tracking_workspace(&sim.base_url(), &hook.url, "");

    ws.once_ok().await;
    assert!(hook.received().is_empty(), "the baseline must be silent");

    let current = admin.ids(TRACKING, "status=Current").await;
    let id = &current[3];
    admin
        .patch("order-tracking", id, json!({"status": "Closed"}))
        .await;

    ws.once_ok().await;
    let got = hook.delivered();
    assert_eq!(got.len(), 1, "{got:?}");
    let event = got[0].json();
    assert_eq!(event["type"], "order.status_changed");
    assert_eq!(event["data"]["order_id"], id.as_str());
    assert_eq!(event["data"]["from"], "Current");
    assert_eq!(event["data"]["to"], "Closed");
    assert_eq!(event["data"]["closed"], true);
    assert_eq!(event["data"]["source"], "tracking");
    assert_eq!(event["data"]["order"]["status"], "Closed");
    assert_eq!(event["data"]["changes"][0]["path"], "/status");
    assert_eq!(
        got[0].header("webhook-id"),
        event["data"]["id"].as_str().unwrap()
    );
    assert_eq!(got[0].header("content-type"), "application/json");
    assert!(got[0].header("user-agent").starts_with("orderwatch/"));
    assert!(
        verify_signature(&got[0], WEBHOOK_SECRET),
        "signature must verify"
    );

    // What the store says about it.
    let out = ws.run(&["orders", "show", id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("status:     Closed"), "{shown}");
    assert!(shown.contains("revision:   1"), "{shown}");
    assert!(shown.contains("left the filtered list"), "{shown}");
    let out = ws.run(&["events", "--order", id]).await;
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("order.status_changed") && lines[0].contains("Current → Closed"),
        "{lines:?}"
    );
    let out = ws.run(&["orders", "show", "no-such-order"]).await;
    assert_eq!(out.status.code(), Some(1));

    // Nothing new: nothing more is said, and the closed order is not re-read.
    ws.once_ok().await;
    assert_eq!(hook.received().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn created_removed_and_watched_updates() {
    let sim = simulator(60).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = tracking_workspace(&sim.base_url(), &hook.url, "    watch: [/request/status]\n");
    ws.once_ok().await;

    let current = admin.ids(TRACKING, "status=Current").await;
    admin
        .add(
            "order-tracking",
            json!({"id": "999001", "status": "Current", "request": {"status": "New"}}),
        )
        .await;
    admin.delete("order-tracking", &current[0]).await;
    admin
        .patch(
            "order-tracking",
            &current[1],
            json!({"request": {"status": "In progress"}}),
        )
        .await;

    ws.once_ok().await;
    let events = events_of(&hook);
    let find = |t: &str| events.iter().find(|e| e["type"] == t).cloned();
    let created = find("order.created").expect("created");
    assert_eq!(created["data"]["order_id"], "999001");
    assert_eq!(created["data"]["to"], "Current");
    assert!(created["data"].get("from").is_none());
    let removed = find("order.removed").expect("removed");
    assert_eq!(removed["data"]["order_id"], current[0].as_str());
    assert_eq!(removed["data"]["from"], "Current");
    let updated = find("order.updated").expect("updated");
    assert_eq!(updated["data"]["order_id"], current[1].as_str());
    assert_eq!(updated["data"]["changes"][0]["path"], "/request/status");
    assert_eq!(updated["data"]["changes"][0]["to"], "In progress");
    assert_eq!(events.len(), 3, "{events:#?}");

    // The event log and the store agree.
    let out = ws.run(&["events", "--json"]).await;
    let logged: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged.len(), 3);
    let out = ws.run(&["orders", "list", "--json"]).await;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("\"order_id\":\"999001\""), "{listed}");
    assert!(!listed.contains(&format!("\"order_id\":\"{}\"", current[0])));
    sim.shutdown().await;
}

#[tokio::test]
async fn ordering_step_change() {
    let sim = simulator(40).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml("requests", "ordering", &sim.base_url(), ""),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    assert_eq!(ws.run(&["once"]).await.status.code(), Some(0));
    let ids = admin.ids("/ordering/b2b/v2/requests", "step=REQUEST").await;
    admin
        .patch("ordering", &ids[0], json!({"step": "VALIDATION"}))
        .await;
    ws.once_ok().await;
    let events = events_of(&hook);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["type"], "order.status_changed");
    assert_eq!(events[0]["data"]["from"], "REQUEST");
    assert_eq!(events[0]["data"]["to"], "VALIDATION");
    assert_eq!(events[0]["data"]["changes"][0]["path"], "/step");
    assert_eq!(events[0]["data"]["closed"], false);
    sim.shutdown().await;
}

#[tokio::test]
async fn first_poll_notify_announces_every_order() {
    let sim = simulator(30).await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml(
            "requests",
            "ordering",
            &sim.base_url(),
            "    first_poll: notify\n",
        ),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    ws.once_ok().await;
    let events = events_of(&hook);
    assert_eq!(events.len(), 30);
    assert!(events.iter().all(|e| e["type"] == "order.created"));
    sim.shutdown().await;
}

#[tokio::test]
async fn retries_keep_one_webhook_id() {
    let hook = Receiver::start().await;
    let OneClosing { sim, ws, .. } = baseline_then_close(&hook.url).await;
    hook.script(&[500, 500]);

    let out = ws.run(&["once", "--drain-timeout", "20s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = hook.received();
    assert_eq!(all.len(), 3, "two failures then success");
    assert_eq!(all.iter().filter(|r| r.answered == 200).count(), 1);
    let ids: Vec<String> = all.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0] && i.starts_with("evt_")),
        "{ids:?}"
    );
    // Backoff spaces the attempts (100ms initial, doubling, ±20%).
    assert!(all[1].at.duration_since(all[0].at) >= Duration::from_millis(80));
    assert!(all[2].at.duration_since(all[1].at) >= Duration::from_millis(160));
    sim.shutdown().await;
}

#[tokio::test]
async fn receiver_down_then_back_gets_it_exactly_once() {
    // Take a free port, then close it: the receiver is "down".
    let probe = Receiver::start().await;
    let addr = probe.addr();
    probe.stop().await;
    let OneClosing { sim, ws, order_id } =
        baseline_then_close(&format!("http://{addr}/hook")).await;

    let out = ws.run(&["once", "--drain-timeout", "1s"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "queued, not lost: {}",
        text(&out)
    );

    let hook = Receiver::start_on(&addr).await;
    // The entry is due after its backoff (≤ 1s); `once` waits for it.
    let out = ws.run(&["once", "--drain-timeout", "10s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = hook.delivered();
    assert_eq!(got.len(), 1, "delivered exactly once");
    assert_eq!(got[0].json()["data"]["order_id"], order_id.as_str());
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(hook.received().len(), 1, "not re-detected under a new id");
    sim.shutdown().await;
}

#[tokio::test]
async fn permanent_failure_goes_to_dead_letters_and_replays() {
    let hook = Receiver::start().await;
    let OneClosing { sim, ws, .. } = baseline_then_close(&hook.url).await;
    hook.script(&[410]);
    let out = ws.run(&["once"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a dead letter during the run is exit 1: {}",
        text(&out)
    );
    let out = ws.run(&["dead-letters", "list", "--json"]).await;
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
        .expect("one dead letter");
    let dead: Value = serde_json::from_str(&line).unwrap();
    assert!(dead["reason"].as_str().unwrap().contains("410"), "{dead}");
    let event_id = dead["event_id"].as_str().unwrap().to_owned();

    let out = ws.run(&["dead-letters", "replay", &event_id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    ws.once_ok().await;
    let ok = hook.delivered();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].header("webhook-id"), event_id);
    let out = ws.run(&["dead-letters", "list", "--json"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
    sim.shutdown().await;
}
