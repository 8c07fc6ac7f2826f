//! Source health through the binary: a source whose every cycle fails is
//! told once as `source.failing` (with the plain error and Orange's request
//! id), however many cycles fail and across a restart of `run`; its first
//! good cycle is told once as `source.recovered`; an API key expiring within
//! 30 days is told once across runs; `once` alone never tells a failing
//! source; routes send source events by `events:`, never by order filters;
//! an http sink's JSON body is checked against source events too, and
//! `notify-test --event` sends a sample of one.

use crate::helpers::*;
use serde_json::json;
use std::time::{Duration, SystemTime};

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const WAIT: Duration = Duration::from_secs(60);

/// The requests of one event type a receiver got (every attempt).
fn of_type(hook: &Receiver, kind: &str) -> Vec<Received> {
    hook.received()
        .into_iter()
        .filter(|r| r.json()["type"] == kind)
        .collect()
}

/// Wait for `more` cycles to end with `outcome` ("poll cycle failed" or
/// "poll cycle done") after those already in the log.
async fn cycles_pass(ws: &Workspace, outcome: &str, more: usize) {
    let target = log_count(ws, outcome) + more;
    eventually(&format!("{more} more `{outcome}`"), WAIT, || {
        log_count(ws, outcome) >= target
    })
    .await;
}

#[tokio::test]
async fn a_failing_source_is_told_once_across_a_restart_then_its_recovery_once() {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "    alert_after: 1s\n", "");
    ws.once_ok().await;

    // Orange refuses the key from now on: every cycle fails at once.
    admin.fault(json!({"reject_api_key": true})).await;
    // The first attempt to tell it fails: the retry must carry the same id.
    hook.script(&[503]);
    let daemon = ws.spawn_run();
    eventually("source.failing delivered", WAIT, || {
        !delivered_of_type(&hook, "source.failing").is_empty()
    })
    .await;
    cycles_pass(&ws, "poll cycle failed", 5).await;

    let failing = delivered_of_type(&hook, "source.failing");
    assert_eq!(failing.len(), 1, "{failing:?}");
    let failing = &failing[0];
    let data = &failing["data"];
    assert_eq!(data["source"], "tracking");
    let failures = data["failures"].as_u64().expect("failures");
    assert!(failures >= 2, "{failing}");
    let since = data["since"].as_str().expect("since");
    humantime::parse_rfc3339(since).expect("since is RFC 3339");
    let error = data["error"].as_str().expect("error");
    assert!(
        error.contains("API key") && error.contains("HTTP 403") && error.contains("request id "),
        "{error}"
    );
    assert!(!error.contains(API_KEY), "{error}");
    for field in ["order_id", "order", "changes", "revision", "closed"] {
        assert!(data.get(field).is_none(), "{field} in {failing}");
    }
    let attempts = of_type(&hook, "source.failing");
    assert_eq!(attempts.len(), 2, "one failed attempt, one delivery");
    for r in &attempts {
        assert_eq!(r.header("webhook-id"), data["id"].as_str().unwrap());
        assert!(verify_signature(r, WEBHOOK_SECRET));
    }

    // A restart while still failing does not tell it again.
    stop_daemon(daemon).await;
    let daemon = ws.spawn_run();
    cycles_pass(&ws, "poll cycle failed", 4).await;
    assert_eq!(of_type(&hook, "source.failing").len(), 2, "told again");

    admin.clear_faults().await;
    eventually("source.recovered delivered", WAIT, || {
        !delivered_of_type(&hook, "source.recovered").is_empty()
    })
    .await;
    cycles_pass(&ws, "poll cycle done", 3).await;
    stop_daemon(daemon).await;

    let recovered = delivered_of_type(&hook, "source.recovered");
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let back = &recovered[0]["data"];
    assert_eq!(back["since"], since, "{back}");
    // Counted across the restart: 5 after the alert, 4 after the restart.
    assert!(
        back["failures"].as_u64().unwrap() >= failures + 9,
        "{back} after {failing}"
    );
    assert!(back.get("error").is_none(), "{back}");
    assert_eq!(of_type(&hook, "source.failing").len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn once_alone_never_tells_a_failing_source_but_the_durable_count_does() {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "    alert_after: 0s\n", "");
    ws.once_ok().await;
    admin.fault(json!({"reject_api_key": true})).await;

    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        delivered_of_type(&hook, "source.failing").is_empty(),
        "one failed cycle is not a failing source"
    );
    // A second `once` is the second failed cycle in a row, as the store says.
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failing = delivered_of_type(&hook, "source.failing");
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0]["data"]["failures"], 2);
    // The event log tells it in a line of its own.
    let out = ws.run(&["events"]).await;
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = log.lines().next().unwrap_or_default();
    assert!(
        line.contains("source.failing") && line.contains(", 2 failed cycles"),
        "{log}"
    );
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(delivered_of_type(&hook, "source.failing").len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_api_key_expiring_within_thirty_days_is_told_once_across_two_runs() {
    let sim = simulator(5).await;
    let hook = Receiver::start().await;
    let in_ten_days = SystemTime::now() + Duration::from_secs(10 * 24 * 3600);
    let date = humantime::format_rfc3339_seconds(in_ten_days).to_string()[..10].to_owned();
    let ws = current_tracking_workspace(
        &sim.base_url(),
        &hook.url,
        &format!("    api_key_expires: {date}\n"),
        "",
    );
    for _ in 0..2 {
        let daemon = ws.spawn_run();
        eventually("source.credentials_expiring delivered", WAIT, || {
            !delivered_of_type(&hook, "source.credentials_expiring").is_empty()
        })
        .await;
        cycles_pass(&ws, "poll cycle done", 3).await;
        stop_daemon(daemon).await;
    }
    let told = delivered_of_type(&hook, "source.credentials_expiring");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["data"]["source"], "tracking");
    assert_eq!(told[0]["data"]["expires"], date.as_str());
    assert!(told[0]["data"].get("order_id").is_none(), "{}", told[0]);
    sim.shutdown().await;
}

#[tokio::test]
async fn routes_send_source_events_by_type_never_by_order_filters() {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let (alerts, closings, everything) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let sinks = [
        webhook_sink_yaml("alerts", &alerts.url),
        webhook_sink_yaml("closings", &closings.url),
        webhook_sink_yaml("everything", &everything.url),
    ]
    .concat();
    let routes = "routes:\n  \
        - {sinks: [alerts], events: [source.failing]}\n  \
        - {sinks: [closings], from: [Current], to: [Closed]}\n  \
        - {sinks: [closings], match: {/status: Closed}}\n  \
        - {sinks: [everything]}\n";
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    alert_after: 1s\n",
        ),
        &sinks,
        routes,
    );
    ws.once_ok().await;
    admin.fault(json!({"reject_api_key": true})).await;
    let daemon = ws.spawn_run();
    eventually("source.failing at alerts", WAIT, || {
        !delivered_of_type(&alerts, "source.failing").is_empty()
    })
    .await;
    admin.clear_faults().await;
    // An order closing proves the order filters route at all.
    let id = admin.ids(TRACKING, "status=Current").await.remove(0);
    admin
        .patch("order-tracking", &id, json!({"status": "Closed"}))
        .await;
    eventually("the closing and the recovery at everything", WAIT, || {
        !delivered_of_type(&everything, "source.recovered").is_empty()
            && !delivered_of_type(&everything, "order.status_changed").is_empty()
    })
    .await;
    eventually("the closing at closings", WAIT, || {
        !closings.delivered().is_empty()
    })
    .await;
    stop_daemon(daemon).await;

    let types = |r: &Receiver| -> Vec<String> {
        r.delivered()
            .iter()
            .map(|d| d.json()["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(types(&alerts), ["source.failing"]);
    assert_eq!(types(&closings), ["order.status_changed"]);
    let all = types(&everything);
    assert_eq!(
        all.iter().filter(|t| t.starts_with("source.")).count(),
        2,
        "{all:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_http_body_must_be_json_for_source_events_too() {
    let sinks = |body: &str| {
        format!(
            "  - name: tickets\n    type: http\n    url: http://127.0.0.1:9/t\n    body: {}\n",
            serde_json::to_string(body).unwrap()
        )
    };
    let source = source_yaml("tracking", "order-tracking", "http://127.0.0.1:9", "");
    let bare = Workspace::new(
        &source,
        &sinks(r#"{"order": {{ order_id|tojson }}, "revision": {{ revision }}}"#),
        "",
    );
    let out = bare.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "sinks[0].body: the content type is JSON, but the body rendered for a sample source.failing event is not JSON"
        ),
        "{}",
        text(&out)
    );
    let quoted = Workspace::new(
        &source,
        &sinks(
            r#"{"order": {{ order_id|tojson }}, "revision": {{ revision|tojson }}, "error": {{ error|tojson }}}"#,
        ),
        "",
    );
    let out = quoted.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn notify_test_sends_a_sample_source_event() {
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace("http://127.0.0.1:9", &hook.url, "", "");
    let out = ws
        .run(&["notify-test", "hook", "--event", "source.failing"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = hook.delivered();
    assert_eq!(got.len(), 1);
    let event = got[0].json();
    assert_eq!(event["type"], "source.failing");
    assert_eq!(event["data"]["source"], "tracking");
    assert!(event["data"]["error"].is_string(), "{event}");
    assert!(event["data"].get("order_id").is_none(), "{event}");

    let out = ws
        .run(&["notify-test", "hook", "--event", "source.down"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("source.failing"), "{}", text(&out));
}
