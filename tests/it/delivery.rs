//! Sinks side by side, and `notify-test`.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

fn delivered_ids(r: &Receiver) -> Vec<String> {
    r.received()
        .iter()
        .map(|x| {
            x.json()["data"]["order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_slow_sink_does_not_hold_the_others_back() {
    let sim = simulator(40).await;
    let admin = Admin::new(&sim);
    let slow = Receiver::start().await;
    let fast = Receiver::start().await;
    let hold = Duration::from_secs(8);
    slow.set_delay(hold);
    let sinks = format!(
        "{}    timeout: 30s\n{}",
        webhook_sink_yaml("slow", &slow.url),
        webhook_sink_yaml("fast", &fast.url)
    );
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    filters: { status: Current }\n",
        ),
        &sinks,
        "",
    );
    assert_eq!(ws.run(&["once"]).await.status.code(), Some(0));
    let mut child = ws.spawn_run();
    let ids = admin.ids(TRACKING, "status=Current").await;
    admin
        .patch("order-tracking", &ids[0], json!({"status": "Closed"}))
        .await;
    eventually(
        "the fast sink gets the first closing",
        Duration::from_secs(20),
        || delivered_ids(&fast).contains(&ids[0]),
    )
    .await;
    admin
        .patch("order-tracking", &ids[1], json!({"status": "Closed"}))
        .await;
    eventually(
        "the fast sink gets the second closing",
        Duration::from_secs(20),
        || delivered_ids(&fast).contains(&ids[1]),
    )
    .await;
    let fast_second = fast
        .received()
        .into_iter()
        .find(|r| r.json()["data"]["order_id"] == ids[1].as_str())
        .unwrap();
    // The slow receiver is still holding its first request, or answered it
    // only after the fast one got the second event.
    match slow.received().first() {
        None => {}
        Some(first) => assert!(
            fast_second.at < first.answered_at,
            "the fast sink waited for the slow one"
        ),
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn notify_test_sends_a_sample_through_the_real_sink() {
    let sim = simulator(5).await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    let out = ws.run(&["notify-test", "hook"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("delivered"),
        "{}",
        text(&out)
    );
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["type"], "order.status_changed");
    assert!(verify_signature(&got[0], WEBHOOK_SECRET));

    hook.script(&[410]);
    let out = ws.run(&["notify-test", "hook"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("permanent"),
        "{}",
        text(&out)
    );

    let out = ws.run(&["notify-test", "nope"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hook"),
        "lists the sinks: {}",
        text(&out)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_template_error_is_a_config_error_at_start() {
    let sim = simulator(5).await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        "  - name: chat\n    type: slack\n    url: http://127.0.0.1:9/x\n    template: \"{{ order_id \"\n",
        "",
    );
    let out = ws.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sinks[0].template"),
        "{}",
        text(&out)
    );
    let out = ws.run(&["once"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "never reaches the network: {}",
        text(&out)
    );
    let stats = Admin::new(&sim).stats().await;
    assert_eq!(stats["total"], 0, "{stats}");
    sim.shutdown().await;
}

#[tokio::test]
async fn entries_for_a_sink_no_longer_configured_are_reported_at_start() {
    let sim = simulator(20).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    hook.script(&[503; 50]);
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "", "");
    ws.once_ok().await;
    let ids = admin.ids(TRACKING, "status=Current").await;
    admin
        .patch("order-tracking", &ids[0], json!({"status": "Closed"}))
        .await;
    let out = ws.run(&["once", "--drain-timeout", "1s"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // The sink is renamed: its queued entry must not wait unseen.
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(ws.config_path(), config.replace("name: hook", "name: ops")).unwrap();
    let out = ws.run(&["once", "--drain-timeout", "1s"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("queued for sink `hook`, which is not in the config"),
        "{}",
        text(&out)
    );
    sim.shutdown().await;
}
