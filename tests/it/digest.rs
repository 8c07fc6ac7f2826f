//! Digests through the real binary: the events routed to a sink with
//! `digest:` arrive as one message per period (a signed webhook JSON
//! document, an email with an HTML table, a Slack and a Teams message), an
//! empty period sends nothing, and a SIGKILL neither loses the kept events
//! nor sends a digest again under another id. The first runs on the
//! postgres store too (skipped without a server, as `pg.rs` says).

use crate::api::{Api, TOKEN};
use crate::helpers::*;
use crate::pg;
use serde_json::json;
use std::time::{Duration, SystemTime};

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

/// The tracking source, and `sinks`; every order of the simulator is
/// watched; `top`: more top-level keys (the store).
fn workspace(sim_url: &str, sinks: &str, top: &str) -> Workspace {
    Workspace::new(
        &source_yaml("tracking", "order-tracking", sim_url, ""),
        sinks,
        top,
    )
}

fn digest_webhook(name: &str, url: &str, every: &str) -> String {
    format!(
        "{}    digest: {{ every: {every} }}\n",
        webhook_sink_yaml(name, url)
    )
}

fn email_digest(port: u16, every: &str) -> String {
    format!(
        "  - {{name: mail, type: email, smtp: {{host: 127.0.0.1, port: {port}, tls: none, timeout: 5s}}, from: ow@example.com, to: [noc@example.com], digest: {{every: {every}, timezone: Europe/Paris}}}}\n"
    )
}

/// Three changes of three orders: one closes, two change status.
async fn three_changes(admin: &Admin, ids: &[String]) {
    admin
        .patch("order-tracking", &ids[0], json!({"status": "InProgress"}))
        .await;
    admin
        .patch("order-tracking", &ids[1], json!({"status": "Closed"}))
        .await;
    admin
        .patch("order-tracking", &ids[2], json!({"status": "Delayed"}))
        .await;
}

fn unix_ms(rfc3339: &str) -> u128 {
    let t: jiff::Timestamp = rfc3339.parse().expect("an RFC 3339 time");
    t.as_millisecond() as u128
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test]
async fn three_changes_arrive_as_one_digest_and_an_empty_period_sends_nothing() {
    one_digest_then_an_empty_period("").await;
}

#[tokio::test]
async fn on_postgres_three_changes_arrive_as_one_digest_and_an_empty_period_sends_nothing() {
    let test =
        "digest::on_postgres_three_changes_arrive_as_one_digest_and_an_empty_period_sends_nothing";
    if let Some(url) = pg::fresh_database(test) {
        one_digest_then_an_empty_period(&format!(
            "store: {{ backend: postgres, url: \"{url}\" }}\n"
        ))
        .await;
    }
}

async fn one_digest_then_an_empty_period(top: &str) {
    let sim = simulator(12).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let (mail, port) = smtp_server();
    let sinks = format!(
        "{}{}",
        digest_webhook("hook", &hook.url, "5s"),
        email_digest(port, "5s")
    );
    let ws = workspace(&sim.base_url(), &sinks, top);
    ws.once_ok().await;
    let ids = admin.ids(TRACKING, "status=Current").await;
    assert!(ids.len() >= 4, "{ids:?}");
    let child = ws.spawn_run();
    three_changes(&admin, &ids).await;

    eventually("the digest", Duration::from_secs(30), || {
        hook.delivered().len() == 1 && mail.messages.lock().unwrap().len() == 1
    })
    .await;
    let got = &hook.delivered()[0];
    assert!(
        verify_signature(got, WEBHOOK_SECRET),
        "signed like any webhook"
    );
    let digest = got.json();
    assert_eq!(digest["type"], "digest", "{digest}");
    let data = &digest["data"];
    assert_eq!(got.header("webhook-id"), data["id"].as_str().unwrap());
    assert!(data["id"].as_str().unwrap().starts_with("dig_"), "{data}");
    assert_eq!(data["sink"], "hook");
    assert_eq!(data["events"], 3, "{data}");
    assert_eq!(data["counts"], json!({"order.status_changed": 3}));
    // One line per order, the closing first.
    let orders = data["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 3, "{data}");
    assert_eq!(orders[0]["order_id"], ids[1].as_str());
    assert_eq!(orders[0]["part"], "closed");
    assert_eq!(orders[0]["to"], "Closed");
    let mut changed: Vec<&str> = orders[1..]
        .iter()
        .map(|o| {
            assert_eq!(o["part"], "changed", "{o}");
            o["order_id"].as_str().unwrap()
        })
        .collect();
    changed.sort_unstable();
    let mut expected = vec![ids[0].as_str(), ids[2].as_str()];
    expected.sort_unstable();
    assert_eq!(changed, expected);
    // No single event reached the webhook: only the digest.
    assert_eq!(hook.received().len(), 1);

    // The mail: the HTML part holds a table of the three orders.
    let message = mail.messages.lock().unwrap()[0].clone();
    let unfolded = message.replace("=\r\n", "").replace("=3D", "=");
    assert!(unfolded.contains("Content-Type: text/html"), "{message}");
    assert!(unfolded.contains("<table"), "{message}");
    assert!(unfolded.contains("Content-Type: text/plain"), "{message}");
    for id in &ids[..3] {
        assert!(
            unfolded.contains(&format!("<strong>{id}</strong>")),
            "{message}"
        );
    }
    assert!(
        unfolded.contains("Subject: [orderwatch] orderwatch digest for mail"),
        "{message}"
    );

    // The next period passes with nothing in it; then one change makes the
    // digest after it, holding only that change: nothing was sent between.
    let end = unix_ms(data["period"]["end"].as_str().unwrap());
    eventually("an empty period to pass", Duration::from_secs(30), || {
        now_ms() > end + 5_500
    })
    .await;
    admin
        .patch("order-tracking", &ids[3], json!({"status": "Closed"}))
        .await;
    eventually("the second digest", Duration::from_secs(30), || {
        hook.delivered().len() == 2
    })
    .await;
    let second = hook.delivered()[1].json();
    assert_eq!(second["data"]["events"], 1, "{second}");
    assert_eq!(second["data"]["orders"][0]["order_id"], ids[3].as_str());
    assert!(unix_ms(second["data"]["period"]["start"].as_str().unwrap()) > end);
    assert_ne!(second["data"]["id"], data["id"]);
    assert_eq!(hook.received().len(), 2, "an empty period sent something");
    eventually("the second mail", Duration::from_secs(30), || {
        mail.messages.lock().unwrap().len() == 2
    })
    .await;
    stop_daemon(child).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_sigkill_loses_no_kept_event_and_a_digest_is_sent_again_under_its_id() {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    // A period far longer than the test: the kill lands inside it.
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &digest_webhook("hook", &hook.url, "24h"),
        &format!("listen: 127.0.0.1:0\napi_token: {TOKEN}\n"),
    );
    ws.once_ok().await;
    let ids = admin.ids(TRACKING, "status=Current").await;
    let mut child = ws.spawn_run();
    three_changes(&admin, &ids).await;
    eventually(
        "the three changes committed",
        Duration::from_secs(30),
        || log_count(&ws, "change detected") == 3,
    )
    .await;
    // The API tells they are kept: not in the outbox, not lost.
    let outbox = Api::of(&ws).await.ok("/outbox").await;
    let sink = &outbox["sinks"][0];
    assert_eq!(sink["name"], "hook", "{outbox}");
    assert_eq!(sink["kept_for_digest"], 3, "{outbox}");
    assert_eq!(sink["depth"], 0, "{outbox}");
    child.start_kill().expect("SIGKILL");
    assert!(!child.wait().await.unwrap().success(), "killed, not exited");
    assert!(hook.received().is_empty(), "sent before its period ended");

    // The same store with a 1s period: the kept events are in the store,
    // the period they were kept in has ended, so the next start makes
    // their digest. The receiver refuses it first; killed again after that
    // attempt, the digest comes back after the restart under the same id.
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(ws.config_path(), config.replace("every: 24h", "every: 1s")).unwrap();
    hook.script(&[503; 1000]);
    let mut child = ws.spawn_run();
    eventually("a refused attempt", Duration::from_secs(30), || {
        !hook.received().is_empty()
    })
    .await;
    child.start_kill().expect("SIGKILL");
    assert!(!child.wait().await.unwrap().success(), "killed, not exited");
    let refused = hook.received()[0].clone();
    assert_eq!(refused.answered, 503);
    hook.clear_script();
    let child = ws.spawn_run();
    eventually("the digest delivered", Duration::from_secs(30), || {
        !hook.delivered().is_empty()
    })
    .await;
    let delivered = hook.delivered()[0].clone();
    assert_eq!(delivered.header("webhook-id"), refused.header("webhook-id"));
    assert!(verify_signature(&delivered, WEBHOOK_SECRET));
    let data = &delivered.json()["data"];
    assert_eq!(data["events"], 3, "{data}");
    assert_eq!(data["orders"].as_array().unwrap().len(), 3, "{data}");
    // Byte for byte the same document: it was made once.
    assert_eq!(delivered.body, refused.body);
    // Nothing else: one digest, never two.
    let ids_seen: std::collections::HashSet<String> = hook
        .received()
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(ids_seen.len(), 1, "{ids_seen:?}");
    stop_daemon(child).await;
    sim.shutdown().await;
}

/// Every order announced (`first_poll: notify`) to a Slack and a Teams sink
/// that each send a 1s digest (and, given their receivers, a Google Chat
/// and an http sink that do too).
fn chat_digest_workspace(
    sim: &orderwatch_simulator::RunningSimulator,
    slack: &str,
    teams: &str,
    more: Option<(&str, &str)>,
) -> Workspace {
    let mut sinks = format!(
        "{}    digest: {{ every: 1s }}\n  - name: teams\n    type: teams\n    url: \"{teams}?sig=s3cr3t\"\n    digest: {{ every: 1s }}\n",
        slack_sink_yaml("chat", slack)
    );
    if let Some((gchat, http)) = more {
        sinks.push_str(&format!(
            "  - name: gchat\n    type: google-chat\n    url: \"{gchat}?key=k3y&token=t0ken\"\n    digest: {{ every: 1s }}\n  - name: tickets\n    type: http\n    url: {http}\n    body: '{{\"order\": {{{{ order_id|tojson }}}}}}'\n    digest: {{ every: 1s }}\n"
        ));
    }
    notify_workspace(sim, &sinks, "")
}

#[tokio::test]
async fn slack_gets_mrkdwn_teams_a_card_google_chat_text_and_http_the_document() {
    let sim = simulator(3).await;
    let slack = Receiver::start().await;
    let teams = Receiver::start().await;
    let gchat = Receiver::start().await;
    let http = Receiver::start().await;
    let ws = chat_digest_workspace(&sim, &slack.url, &teams.url, Some((&gchat.url, &http.url)));
    let child = ws.spawn_run();
    eventually("the four digests", Duration::from_secs(30), || {
        [&slack, &teams, &gchat, &http]
            .iter()
            .all(|r| !r.delivered().is_empty())
    })
    .await;
    let ids = Admin::new(&sim).ids(TRACKING, "").await;
    let message = slack.delivered()[0].json();
    let text = message["text"].as_str().unwrap();
    assert!(
        text.starts_with("orderwatch digest for chat: 3 events"),
        "{message}"
    );
    assert_eq!(message["blocks"][0]["type"], "header", "{message}");
    let sections: Vec<&str> = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["text"]["type"] == "mrkdwn")
        .map(|b| b["text"]["text"].as_str().unwrap())
        .collect();
    let all = sections.join("\n");
    assert!(all.contains("3 events: 3 order.created"), "{all}");
    for id in &ids {
        assert!(all.contains(&format!("`tracking/{id}`")), "{all}");
    }
    let card = teams.delivered()[0].json();
    let content = &card["attachments"][0]["content"];
    assert_eq!(content["type"], "AdaptiveCard", "{card}");
    let body = content["body"].to_string();
    assert!(
        body.contains("orderwatch digest for teams: 3 events"),
        "{body}"
    );
    for id in &ids {
        assert!(body.contains(&format!("tracking/{id}")), "{body}");
    }
    // Google Chat: one text message, in no order's thread.
    let message = gchat.delivered()[0].json();
    let text = message["text"].as_str().unwrap();
    assert!(
        text.starts_with("orderwatch digest for gchat: 3 events"),
        "{message}"
    );
    assert!(message.get("thread").is_none(), "{message}");
    for id in &ids {
        assert!(text.contains(&format!("- tracking/{id}: ")), "{text}");
    }
    // http: the document itself, not the sink's one-event body.
    let got = &http.delivered()[0];
    assert_eq!(got.header("content-type"), "application/json");
    let doc = got.json();
    assert_eq!(doc["type"], "digest", "{doc}");
    assert_eq!(doc["data"]["sink"], "tickets");
    assert_eq!(doc["data"]["events"], 3);
    for r in [&slack, &teams, &gchat, &http] {
        assert_eq!(r.delivered().len(), 1);
    }
    stop_daemon(child).await;
    sim.shutdown().await;
}

#[tokio::test]
#[ignore = "needs the adaptivecards library (npm ci in tests/receivers); .ci/run runs it"]
async fn receivers_teams_digest_card_parses_with_adaptivecards() {
    let sim = simulator(3).await;
    let slack = Receiver::start().await;
    let teams = Receiver::start().await;
    let ws = chat_digest_workspace(&sim, &slack.url, &teams.url, None);
    let child = ws.spawn_run();
    eventually("the teams digest", Duration::from_secs(30), || {
        !teams.delivered().is_empty()
    })
    .await;
    stop_daemon(child).await;
    let tmp = tempfile::tempdir().unwrap();
    let capture = tmp.path().join("digest-card.json");
    std::fs::write(&capture, &teams.delivered()[0].body).unwrap();
    let out = verify_card(&capture);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.trim()
            .starts_with("orderwatch digest for teams: 3 events"),
        "{said}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_order_overdue_at_the_baseline_is_in_the_first_digest_only() {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ids = admin.ids(TRACKING, "status=Current").await;
    admin
        .patch(
            "order-tracking",
            &ids[0],
            json!({"keyDates": {"expectedAt": "2020-01-01T00:00:00Z"}}),
        )
        .await;
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    due: { field: /keyDates/expectedAt, warn_before: 1s }\n",
        ),
        &digest_webhook("hook", &hook.url, "2s"),
        "",
    );
    // The baseline tells nothing of it, not even `order.overdue`.
    ws.once_ok().await;
    let child = ws.spawn_run();
    // No change at all: the first digest holds it by itself.
    eventually("the first digest", Duration::from_secs(30), || {
        !hook.delivered().is_empty()
    })
    .await;
    let data = hook.delivered()[0].json()["data"].clone();
    let line = data["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["order_id"] == ids[0].as_str())
        .unwrap_or_else(|| panic!("{data}"))
        .clone();
    assert_eq!(line["part"], "at_risk", "{line}");
    assert_eq!(line["types"], json!(["overdue_at_baseline"]), "{line}");
    assert_eq!(line["due"], "2020-01-01T00:00:00Z", "{line}");
    assert_eq!(data["events"], 0, "{data}");
    // Told once: a later digest (of a change) does not list it again.
    admin
        .patch("order-tracking", &ids[1], json!({"status": "Closed"}))
        .await;
    eventually("the second digest", Duration::from_secs(30), || {
        hook.delivered().len() == 2
    })
    .await;
    let second = hook.delivered()[1].json();
    let orders = second["data"]["orders"].as_array().unwrap().clone();
    assert_eq!(orders.len(), 1, "{second}");
    assert_eq!(orders[0]["order_id"], ids[1].as_str());
    stop_daemon(child).await;
    sim.shutdown().await;
}
