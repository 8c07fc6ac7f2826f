//! `orderwatch store copy --to URL` through the real binary: a sled store
//! with a baseline, a dead letter and an entry still queued is copied into
//! an empty PostgreSQL database; `once` on postgres then records no new
//! baseline, delivers the queued entry under its id, shows the dead
//! letter, and tells the next change once. A second copy into the same
//! (now full) database is refused, as is a copy while the store is in use.
//! The timer index comes along: a due date told `order.due_soon` on sled
//! is not told again on postgres, and its `order.overdue` still comes,
//! once, with no rebuild of the index. So do the events kept for a
//! digest: the first digest on postgres holds them.

use crate::helpers::*;
use crate::pg;
use serde_json::json;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

fn postgres_store(url: &str) -> String {
    format!("store: {{ backend: postgres, url: \"{url}\" }}\n")
}

#[tokio::test]
async fn a_copied_store_carries_on_on_postgres_without_a_new_baseline() {
    let Some(url) = pg::fresh_database(
        "store_copy::a_copied_store_carries_on_on_postgres_without_a_new_baseline",
    ) else {
        return;
    };
    let sim = simulator(20).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "", "listen: 127.0.0.1:0\n");
    ws.once_ok().await;
    let current = admin.ids(TRACKING, "status=Current").await;

    // A change the hook refuses for good: a dead letter.
    hook.script(&[410]);
    admin
        .patch("order-tracking", &current[0], json!({"status": "Closed"}))
        .await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A change the hook keeps failing: still queued.
    hook.script(&[503; 500]);
    admin
        .patch("order-tracking", &current[1], json!({"status": "Closed"}))
        .await;
    let out = ws.run(&["once", "--drain-timeout", "1s"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let queued_id = hook
        .received()
        .last()
        .expect("an attempt")
        .header("webhook-id");

    // In use: refused, nothing copied.
    let running = ws.spawn_run();
    health_addr(&ws).await;
    let out = ws.run(&["store", "copy", "--to", &url]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("in use"), "{}", text(&out));
    stop_daemon(running).await;
    // (The hook still failed it meanwhile: the entry is queued.)
    hook.clear_script();

    let out = ws.run(&["store", "copy", "--to", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("snapshots"), "{said}");
    assert!(!said.contains(&url), "the URL is not echoed: {said}");

    // Now on postgres: no new baseline, the queued entry under its id, the
    // dead letter kept.
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!("{config}{}", postgres_store(&url)),
    )
    .unwrap();
    ws.once_ok().await;
    let with_id: Vec<_> = hook
        .delivered()
        .into_iter()
        .filter(|r| r.header("webhook-id") == queued_id)
        .collect();
    assert_eq!(with_id.len(), 1, "delivered once, under its id");
    assert!(
        hook.delivered()
            .iter()
            .all(|r| r.json()["type"] != "order.created"),
        "no new baseline announced anything"
    );
    let out = ws.run(&["dead-letters", "list", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dead = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains(&current[0]), "{dead}");
    let out = ws.run(&["events", "--json"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    // The next change: once, after the copied ones (a later revision).
    let delivered = hook.delivered().len();
    admin
        .patch("order-tracking", &current[2], json!({"status": "Closed"}))
        .await;
    ws.once_ok().await;
    let got = hook.delivered();
    assert_eq!(got.len(), delivered + 1, "one more");
    assert_eq!(
        got.last().unwrap().json()["data"]["order_id"],
        current[2].as_str()
    );
    assert!(verify_signature(got.last().unwrap(), WEBHOOK_SECRET));
    ws.once_ok().await;
    assert_eq!(hook.delivered().len(), delivered + 1, "and only once");

    // A second copy into the now full database is refused.
    std::fs::write(ws.config_path(), &config).unwrap();
    let out = ws.run(&["store", "copy", "--to", &url]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_copied_store_keeps_what_its_timers_told_and_what_they_still_will() {
    let Some(url) = pg::fresh_database(
        "store_copy::a_copied_store_keeps_what_its_timers_told_and_what_they_still_will",
    ) else {
        return;
    };
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(
        &sim.base_url(),
        &hook.url,
        "    due: { field: /keyDates/expectedAt, warn_before: 1h }\n",
        "",
    );
    ws.once_ok().await;
    let current = admin.ids(TRACKING, "status=Current").await;
    let order = current[0].as_str();
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(3);
    let due = humantime::format_rfc3339_seconds(at).to_string();
    admin
        .patch(
            "order-tracking",
            order,
            json!({"keyDates": {"expectedAt": due}}),
        )
        .await;
    // Within warn_before when first seen: due_soon now, overdue armed.
    ws.once_ok().await;
    assert_eq!(delivered_of_type(&hook, "order.due_soon").len(), 1);
    assert!(delivered_of_type(&hook, "order.overdue").is_empty());

    let out = ws.run(&["store", "copy", "--to", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("timer_schedule"), "{}", text(&out));
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!("{config}{}", postgres_store(&url)),
    )
    .unwrap();
    eventually(
        "the due date to pass",
        std::time::Duration::from_secs(30),
        || std::time::SystemTime::now() > at,
    )
    .await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !text(&out).contains("building the source's timer index"),
        "the copied index is used as it is: {}",
        text(&out)
    );
    let overdue = delivered_of_type(&hook, "order.overdue");
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    assert_eq!(overdue[0]["data"]["order_id"], order);
    assert_eq!(overdue[0]["data"]["due"], due.as_str());
    assert_eq!(delivered_of_type(&hook, "order.due_soon").len(), 1);
    ws.once_ok().await;
    assert_eq!(delivered_of_type(&hook, "order.overdue").len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_copied_store_keeps_the_events_kept_for_a_digest() {
    let Some(url) =
        pg::fresh_database("store_copy::a_copied_store_keeps_the_events_kept_for_a_digest")
    else {
        return;
    };
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    // A period far longer than the test: the events stay kept on sled.
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &format!(
            "{}    digest: {{ every: 24h }}\n",
            webhook_sink_yaml("hook", &hook.url)
        ),
        "",
    );
    ws.once_ok().await;
    let ids = admin.ids(TRACKING, "status=Current").await;
    for id in &ids[..2] {
        admin
            .patch("order-tracking", id, json!({"status": "Delayed"}))
            .await;
    }
    ws.once_ok().await;
    assert!(hook.received().is_empty(), "kept, not sent");

    let out = ws.run(&["store", "copy", "--to", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("digest_held"), "{}", text(&out));
    // On postgres with a 1s period: the period they were kept in has
    // ended, so the first start makes their digest.
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!(
            "{}{}",
            config.replace("every: 24h", "every: 1s"),
            postgres_store(&url)
        ),
    )
    .unwrap();
    let child = ws.spawn_run();
    eventually(
        "the digest delivered",
        std::time::Duration::from_secs(30),
        || !hook.delivered().is_empty(),
    )
    .await;
    stop_daemon(child).await;
    let digest = hook.delivered()[0].json();
    assert_eq!(digest["type"], "digest", "{digest}");
    assert_eq!(digest["data"]["events"], 2, "{digest}");
    sim.shutdown().await;
}
