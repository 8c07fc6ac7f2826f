//! Reloading the config of a running `orderwatch run` (SIGHUP and
//! `POST /api/v1/reload`): a good config takes effect at once (sinks added
//! and changed, sources removed, templates replaced), a bad one changes
//! nothing and says why, and nothing queued in the outbox is lost.

use crate::api::{Api, TOKEN, api_rest, spawn_with_token};
use crate::helpers::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const WAIT: Duration = Duration::from_secs(30);

/// Write the config anew, as [`Workspace::new`] lays it out (same store).
fn rewrite(ws: &Workspace, sources: &str, sinks: &str, rest: &str) {
    let yaml = format!(
        "state_dir: {}\nsources:\n{sources}sinks:\n{sinks}delivery:\n  backoff: {{ initial: 100ms, max: 1s }}\n{rest}",
        ws.dir.path().join("data").display()
    );
    std::fs::write(ws.config_path(), yaml).expect("write config");
}

fn templated_slack(name: &str, url: &str, template: &str) -> String {
    format!(
        "{}    template: \"{template}\"\n",
        slack_sink_yaml(name, url)
    )
}

fn texts(r: &Receiver) -> Vec<String> {
    r.delivered()
        .iter()
        .map(|d| d.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn order_ids(r: &Receiver) -> Vec<String> {
    r.delivered()
        .iter()
        .map(|d| {
            d.json()["data"]["order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The value of `orderwatch_config_reloads_total{outcome="..."}`, 0 if absent.
async fn reloads(api: &Api, outcome: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", api.base))
        .await
        .expect("metrics answer")
        .text()
        .await
        .unwrap_or_default();
    let series = format!("orderwatch_config_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// List calls the simulator answered, in all.
fn lists(stats: &Value) -> u64 {
    stats["by_endpoint"]["order-tracking.list"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

async fn reload(api: &Api) -> (u16, Value) {
    api.post("/reload", json!({})).await
}

/// Rewrite the config and reload it, which must succeed: what changed.
async fn reload_ok(api: &Api, ws: &Workspace, sources: &str, sinks: &str) -> Value {
    rewrite(ws, sources, sinks, &api_rest());
    let (status, body) = reload(api).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn an_added_sink_gets_the_next_change_and_a_changed_template_is_used() {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let chat = Receiver::start().await;
    let late = Receiver::start().await;
    let source = source_yaml("tracking", "order-tracking", &sim.base_url(), "");
    let ws = Workspace::new(
        &source,
        &templated_slack("chat", &chat.url, "first {{ order_id }}"),
        &api_rest(),
    );
    let mut child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    let ids = admin.ids(TRACKING, "status=Current").await;
    let (one, two) = (&ids[0], &ids[1]);

    admin
        .patch("order-tracking", one, json!({"status": "Closed"}))
        .await;
    eventually("the first change told", WAIT, || {
        texts(&chat).contains(&format!("first {one}"))
    })
    .await;
    let starts = log_count(&ws, "orderwatch running");

    rewrite(
        &ws,
        &source,
        &format!(
            "{}{}",
            templated_slack("chat", &chat.url, "second {{ order_id }} is {{ to }}"),
            webhook_sink_yaml("late", &late.url)
        ),
        &api_rest(),
    );
    let (status, body) = reload(&api).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sinks"]["added"], json!(["late"]), "{body}");
    assert_eq!(body["sinks"]["changed"], json!(["chat"]), "{body}");
    assert_eq!(body["sinks"]["removed"], json!([]), "{body}");
    // The source did not change: its poller runs on undisturbed.
    assert_eq!(
        body["sources"],
        json!({"added": [], "removed": [], "changed": []}),
        "{body}"
    );
    assert_eq!(body["routes_changed"], json!(true), "{body}");
    assert_eq!(body["needs_restart"], json!([]), "{body}");

    admin
        .patch("order-tracking", two, json!({"status": "Closed"}))
        .await;
    eventually("the added sink told of the next change", WAIT, || {
        order_ids(&late).contains(two)
    })
    .await;
    eventually("the new template used", WAIT, || {
        texts(&chat).contains(&format!("second {two} is Closed"))
    })
    .await;
    assert_eq!(
        order_ids(&late),
        std::slice::from_ref(two),
        "the added sink got only what came after it"
    );
    assert!(
        !texts(&chat).iter().any(|t| t == &format!("first {two}")),
        "the old template was used after the reload: {:?}",
        texts(&chat)
    );
    assert_eq!(log_count(&ws, "orderwatch running"), starts, "restarted");
    assert_eq!(log_count(&ws, "config reloaded"), 1);
    assert_eq!(reloads(&api, "ok").await, 1);
    assert_eq!(reloads(&api, "error").await, 0);
    // Pause and resume reach the added sink through the API.
    let (status, body) = api.post("/sinks/late/pause", json!({})).await;
    assert_eq!(status, 200, "{body}");
    terminate(&mut child, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn a_removed_source_is_no_longer_polled_nor_awaited_by_readyz() {
    let kept = simulator(5).await;
    let gone = simulator(5).await;
    let hook = Receiver::start().await;
    let kept_source = source_yaml("kept", "order-tracking", &kept.base_url(), "");
    let gone_source = source_yaml("gone", "order-tracking", &gone.base_url(), "");
    let ws = Workspace::new(
        &format!("{kept_source}{gone_source}"),
        &webhook_sink_yaml("hook", &hook.url),
        &api_rest(),
    );
    let mut child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;

    // The source to be removed fails every cycle: /readyz soon says so.
    let gone_admin = Admin::new(&gone);
    gone_admin
        .fault(json!({"status": 500, "count": 1_000_000, "target": "list"}))
        .await;
    let readyz = || async {
        let r = reqwest::get(format!("{}/readyz", api.base)).await.unwrap();
        let code = r.status().as_u16();
        (code, r.text().await.unwrap_or_default())
    };
    eventually_async("/readyz naming the failing source", WAIT, || async {
        let (code, text) = readyz().await;
        code == 503 && text.contains("gone")
    })
    .await;

    rewrite(
        &ws,
        &kept_source,
        &webhook_sink_yaml("hook", &hook.url),
        &api_rest(),
    );
    let (status, body) = reload(&api).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sources"]["removed"], json!(["gone"]), "{body}");
    assert_eq!(body["sources"]["changed"], json!([]), "{body}");
    assert_eq!(body["sinks"]["changed"], json!([]), "{body}");
    // The answer comes once the removed poller has stopped.
    let gone_after = lists(&gone_admin.stats().await);
    let kept_admin = Admin::new(&kept);
    let kept_after = lists(&kept_admin.stats().await);
    eventually_async("three more cycles of the kept source", WAIT, || async {
        lists(&kept_admin.stats().await) >= kept_after + 3
    })
    .await;
    assert_eq!(
        lists(&gone_admin.stats().await),
        gone_after,
        "the removed source was polled after the reload"
    );
    let (code, text) = readyz().await;
    assert_eq!(code, 200, "{text}");
    assert!(!text.contains("gone"), "{text}");
    let sources = api.ok("/sources").await;
    let names: Vec<&str> = sources["sources"]
        .as_array()
        .map(|l| l.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["kept"], "{sources}");
    let (status, body) = api.post("/sources/gone/poll", json!({})).await;
    assert_eq!(status, 404, "{body}");
    terminate(&mut child, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn a_changed_source_polls_by_its_new_settings_and_fixed_keys_wait_for_a_restart() {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let hourly = source_yaml("tracking", "order-tracking", &sim.base_url(), "")
        .replace("interval: 1s", "interval: 1h");
    let sinks = webhook_sink_yaml("hook", &hook.url);
    let ws = Workspace::new(&hourly, &sinks, &api_rest());
    let mut child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;

    // Every second instead of every hour; and a key only a restart applies.
    let every_second = hourly.replace("interval: 1h", "interval: 1s");
    rewrite(
        &ws,
        &every_second,
        &sinks,
        &format!("{}shutdown_grace: 3s\n", api_rest()),
    );
    let (status, body) = reload(&api).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sources"]["changed"], json!(["tracking"]), "{body}");
    assert_eq!(body["needs_restart"], json!(["shutdown_grace"]), "{body}");
    let after = lists(&admin.stats().await);
    eventually_async("cycles at the new interval", WAIT, || async {
        lists(&admin.stats().await) >= after + 3
    })
    .await;
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    assert!(
        log.contains("take effect only after a restart: shutdown_grace"),
        "{log}"
    );
    let sources = api.ok("/sources").await;
    assert_eq!(sources["sources"][0]["interval"], json!("1s"), "{sources}");
    terminate(&mut child, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn a_bad_config_changes_nothing_and_sighup_reloads_like_the_api() {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let added = Receiver::start().await;
    let source = source_yaml("tracking", "order-tracking", &sim.base_url(), "");
    let sinks = webhook_sink_yaml("hook", &hook.url);
    let ws = Workspace::new(&source, &sinks, &api_rest());
    let mut child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    let ids = admin.ids(TRACKING, "status=Current").await;

    // Two problems: a bad interval, and a route to a sink that is not there.
    rewrite(
        &ws,
        &source.replace("interval: 1s", "interval: soon"),
        &format!("{sinks}{}", webhook_sink_yaml("added", &added.url)),
        &format!("{}routes:\n  - sinks: [nowhere]\n", api_rest()),
    );
    let (status, body) = reload(&api).await;
    assert_eq!(status, 400, "{body}");
    let paths: Vec<&str> = body["problems"]
        .as_array()
        .map(|l| l.iter().filter_map(|p| p["path"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(paths.len(), 2, "{body}");
    assert!(paths.contains(&"sources[0].interval"), "{body}");
    assert!(paths.iter().any(|p| p.starts_with("routes[0]")), "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing changed")
    );

    // The old config runs on: the old sink delivers, the new one gets nothing.
    admin
        .patch("order-tracking", &ids[0], json!({"status": "Closed"}))
        .await;
    eventually("the old sink still delivers", WAIT, || {
        order_ids(&hook).contains(&ids[0])
    })
    .await;
    assert!(added.received().is_empty());
    assert_eq!(reloads(&api, "error").await, 1);
    assert_eq!(reloads(&api, "ok").await, 0);
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    assert!(
        log.contains("config not reloaded, nothing changed"),
        "{log}"
    );
    assert!(log.contains("sources[0].interval"), "{log}");

    // SIGHUP: the same problems, logged; then a good config, applied.
    let pid = child.id().expect("running").to_string();
    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    };
    assert!(hup());
    eventually("the signal's reload refused", WAIT, || {
        log_count(&ws, "config not reloaded, nothing changed") == 2
    })
    .await;
    rewrite(
        &ws,
        &source,
        &format!("{sinks}{}", webhook_sink_yaml("added", &added.url)),
        &api_rest(),
    );
    assert!(hup());
    eventually("the signal's reload applied", WAIT, || {
        log_count(&ws, "config reloaded") == 1
    })
    .await;
    admin
        .patch("order-tracking", &ids[1], json!({"status": "Closed"}))
        .await;
    eventually("the sink added by SIGHUP delivers", WAIT, || {
        order_ids(&added).contains(&ids[1])
    })
    .await;
    assert_eq!(reloads(&api, "error").await, 2);
    assert_eq!(reloads(&api, "ok").await, 1);
    let status = terminate(&mut child, Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "SIGHUP must not end the process");
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    assert!(!log.contains(TOKEN), "the token reached the log");
}

#[tokio::test]
async fn entries_queued_across_reloads_all_arrive_once_under_their_ids() {
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let console = "  - name: screen\n    type: console\n";
    let source = source_yaml("tracking", "order-tracking", &sim.base_url(), "");
    let ws = Workspace::new(
        &source,
        &format!("{}{console}", webhook_sink_yaml("hook", &hook.url)),
        &api_rest(),
    );
    let mut child = spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    // The receiver is down (503 to everything) while three changes queue.
    hook.script(&[503; 1000]);
    let ids = admin.ids(TRACKING, "status=Current").await;
    for id in &ids[..3] {
        admin
            .patch("order-tracking", id, json!({"status": "Closed"}))
            .await;
    }
    let attempted = || -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for r in hook.received() {
            *seen.entry(r.header("webhook-id")).or_insert(0) += 1;
        }
        seen
    };
    eventually("each change attempted", WAIT, || attempted().len() == 3).await;
    let queued: Vec<String> = attempted().into_keys().collect();

    // Removed: its entries stay queued.
    rewrite(&ws, &source, console, &api_rest());
    let (status, body) = reload(&api).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sinks"]["removed"], json!(["hook"]), "{body}");
    let outbox = api.ok("/outbox").await;
    assert!(outbox.to_string().contains("hook"), "{outbox}");

    // Back, changed (a header more), and the receiver up again.
    hook.clear_script();
    // The sink again, with an `X-Team` header to tell who delivered.
    let with_team = |team: &str| {
        let hook_yaml = webhook_sink_yaml("hook", &hook.url);
        format!("{hook_yaml}    headers: {{ X-Team: {team} }}\n{console}")
    };
    let body = reload_ok(&api, &ws, &source, &with_team("network")).await;
    assert_eq!(body["sinks"]["added"], json!(["hook"]), "{body}");
    eventually("every queued entry delivered", WAIT, || {
        hook.delivered().len() >= 3
    })
    .await;
    let mut delivered: Vec<String> = hook
        .delivered()
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    delivered.sort();
    assert_eq!(delivered, queued, "each entry once, under its first id");
    assert!(
        hook.delivered()
            .iter()
            .all(|r| r.header("x-team") == "network"),
        "delivered by the reloaded sink"
    );
    // A change of the sink in place keeps delivering, and nothing is doubled.
    let body = reload_ok(&api, &ws, &source, &with_team("field")).await;
    assert_eq!(body["sinks"]["changed"], json!(["hook"]), "{body}");
    admin
        .patch("order-tracking", &ids[3], json!({"status": "Closed"}))
        .await;
    eventually("the next change through the changed sink", WAIT, || {
        hook.delivered()
            .iter()
            .any(|r| r.header("x-team") == "field")
    })
    .await;
    assert_eq!(hook.delivered().len(), 4, "one delivery per change");
    terminate(&mut child, Duration::from_secs(15)).await;
}
