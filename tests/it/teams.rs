//! The teams sink through the binary: an order's story arrives as Adaptive
//! Cards in the Workflows `message` envelope, a 202 is a delivery, a card
//! stays under Teams' 28 KB whatever the order holds, and the URL's `sig`
//! never reaches the output. The card is also parsed with the official
//! `adaptivecards` library (`receivers_teams_card_parses_with_adaptivecards`,
//! run by `.ci/run`).

use crate::helpers::*;
use serde_json::{Value, json};

/// The credential part of the URL, looked for in the output.
const SIG: &str = "Zq3sSigOfTheWorkflowXyZ0123456789abcdef";

fn teams_yaml(url: &str, extra: &str) -> String {
    format!(
        "  - name: teams\n    type: teams\n    url: \"{url}?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sig={SIG}\"\n{extra}"
    )
}

/// The Adaptive Card of a request, after checking the envelope around it.
fn card_of(got: &Received) -> Value {
    let body = got.json();
    assert_eq!(body["type"], "message", "{body}");
    let attachments = body["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1, "{body}");
    let a = &attachments[0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    assert!(a["contentUrl"].is_null(), "{body}");
    let card = a["content"].clone();
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(card["version"], "1.4");
    card
}

/// The facts of the card's `n`th FactSet, as (title, value).
fn facts(card: &Value, n: usize) -> Vec<(String, String)> {
    let sets: Vec<&Value> = card["body"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "FactSet")
        .collect();
    sets[n]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().to_owned(),
                f["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn fact(facts: &[(String, String)], title: &str) -> String {
    facts
        .iter()
        .find(|(t, _)| t == title)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no fact {title} in {facts:?}"))
}

#[tokio::test]
async fn an_order_story_arrives_as_cards_and_a_202_is_a_delivery() {
    let sim = simulator(0).await;
    let admin = Admin::new(&sim);
    admin
        .add(
            "order-tracking",
            json!({"id": "123456", "status": "Current"}),
        )
        .await;
    let hook = Receiver::start().await;
    // Workflows answer 202 Accepted.
    hook.script(&[202, 202]);
    let sinks = teams_yaml(
        &hook.url,
        "    link: \"https://portal.example.com/orders/{{ order_id }}\"\n",
    );
    let ws = notify_workspace(&sim, &sinks, "");
    let out = ws.run(&["once"]).await;
    assert!(once_summary(&out).contains("1 delivered"), "{}", text(&out));
    admin
        .patch("order-tracking", "123456", json!({"status": "Closed"}))
        .await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The 202 was a delivery: nothing is left to retry or dead-letter.
    assert!(
        once_summary(&out).contains("1 delivered, 0 to retry, 0 dead-lettered"),
        "{}",
        text(&out)
    );
    let got = hook.received();
    assert_eq!(got.len(), 2, "{}", text(&out));
    assert!(got.iter().all(|r| r.answered == 202));
    assert_eq!(got[1].header("content-type"), "application/json");

    let created = card_of(&got[0]);
    assert_eq!(created["body"][0]["text"], "Order 123456 is new");
    let closed = card_of(&got[1]);
    assert_eq!(closed["body"][0]["text"], "Order 123456 is now Closed");
    assert_eq!(closed["body"][0]["weight"], "Bolder");
    let about = facts(&closed, 0);
    assert_eq!(fact(&about, "Source"), "tracking");
    assert_eq!(fact(&about, "Order"), "123456");
    assert_eq!(fact(&about, "Status"), "Current → Closed");
    assert_eq!(fact(&about, "Revision"), "2");
    assert!(fact(&about, "Detected").ends_with('Z'), "{about:?}");
    assert_eq!(
        facts(&closed, 1),
        [("/status".to_owned(), "Current → Closed".to_owned())]
    );
    assert_eq!(closed["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(
        closed["actions"][0]["url"],
        "https://portal.example.com/orders/123456"
    );
    assert!(!text(&out).contains(SIG), "{}", text(&out));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_card_stays_under_28_kb_whatever_the_changes() {
    let sim = simulator(0).await;
    let admin = Admin::new(&sim);
    let fields: Vec<String> = (0..300).map(|i| format!("f{i}")).collect();
    let mut order = json!({"id": "big", "status": "Current"});
    for f in &fields {
        order[f] = json!("old");
    }
    admin.add("order-tracking", order).await;
    let hook = Receiver::start().await;
    let watch: Vec<String> = fields.iter().map(|f| format!("/{f}")).collect();
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            &format!("    watch: [{}]\n", watch.join(", ")),
        ),
        &teams_yaml(&hook.url, ""),
        "",
    );
    ws.once_ok().await;
    // 300 changed fields, one of them 200 KB of multi-byte text.
    let mut patch = json!({});
    for f in &fields {
        patch[f] = json!(format!("new value of {f} ").repeat(20));
    }
    patch["f0"] = json!("é\"\n".repeat(50_000));
    admin.patch("order-tracking", "big", patch).await;
    let out = ws.run(&["once"]).await;
    assert!(once_summary(&out).contains("1 delivered"), "{}", text(&out));

    let got = hook.received();
    assert_eq!(got.len(), 1, "{}", text(&out));
    assert!(
        got[0].body.len() < 28 * 1024,
        "the card is {} bytes",
        got[0].body.len()
    );
    let card = card_of(&got[0]);
    assert_eq!(card["body"][0]["text"], "Order big was updated");
    let changes = facts(&card, 1);
    assert!(
        changes.len() > 1 && changes.len() < 300,
        "{}",
        changes.len()
    );
    assert_eq!(changes[0].0, "/f0");
    assert!(
        changes[0].1.starts_with("old → é\"\n") && changes[0].1.ends_with('…'),
        "{}",
        &changes[0].1[..40]
    );
    let body = card["body"].as_array().unwrap();
    let last = body.last().unwrap()["text"].as_str().unwrap();
    assert_eq!(last, format!("… and {} more", 300 - changes.len()));
    sim.shutdown().await;
}

#[tokio::test]
async fn notify_test_sends_a_card_and_a_refusal_keeps_the_sig_secret() {
    let sim = simulator(0).await;
    let hook = Receiver::start().await;
    let ws = notify_workspace(&sim, &teams_yaml(&hook.url, ""), "");
    let out = ws.run(&["notify-test", "teams"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let card = card_of(&hook.received()[0]);
    assert_eq!(card["body"][0]["text"], "Order 123456 is now Closed");

    // A refusal is said, with the host but never the `sig`.
    hook.script(&[403]);
    let out = ws.run(&["notify-test", "teams"]).await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("HTTP 403"), "{said}");
    assert!(said.contains(&format!("http://{}", hook.addr())), "{said}");
    assert!(!said.contains(SIG), "{said}");
    sim.shutdown().await;
}

#[tokio::test]
#[ignore = "needs the adaptivecards library (npm ci in tests/receivers); .ci/run runs it"]
async fn receivers_teams_card_parses_with_adaptivecards() {
    let sim = simulator(0).await;
    let hook = Receiver::start().await;
    let sinks = teams_yaml(
        &hook.url,
        "    link: \"https://portal.example.com/orders/{{ order_id }}\"\n",
    );
    let ws = notify_workspace(&sim, &sinks, "");
    let out = ws.run(&["notify-test", "teams"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let tmp = tempfile::tempdir().unwrap();
    let capture = tmp.path().join("card.json");
    std::fs::write(&capture, &hook.received()[0].body).unwrap();

    let check = verify_card;
    let out = check(&capture);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Order 123456 is now Closed: 2 FactSet(s), 1 action(s)"
    );
    // The check can fail: a card with an element Teams does not know.
    let mut broken: Value = serde_json::from_slice(&hook.received()[0].body).unwrap();
    broken["attachments"][0]["content"]["body"][1]["type"] = json!("FactSheet");
    let bad = tmp.path().join("broken.json");
    std::fs::write(&bad, broken.to_string()).unwrap();
    assert!(!check(&bad).status.success(), "a broken card passed");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_source_event_gets_a_card_of_its_own() {
    let sim = simulator(0).await;
    let hook = Receiver::start().await;
    let ws = notify_workspace(&sim, &teams_yaml(&hook.url, ""), "");
    for (kind, title) in [
        ("source.failing", "Source tracking is failing"),
        ("source.recovered", "Source tracking has recovered"),
        (
            "source.credentials_expiring",
            "The API key of source tracking expires on 2026-12-15",
        ),
    ] {
        let out = ws.run(&["notify-test", "teams", "--event", kind]).await;
        assert_eq!(out.status.code(), Some(0), "{kind}: {}", text(&out));
        let card = card_of(hook.received().last().unwrap());
        assert_eq!(card["body"][0]["text"], title, "{card}");
        let facts = facts(&card, 0);
        assert_eq!(facts[0], ("Source".to_owned(), "tracking".to_owned()));
        // Nothing of an order: no order fact, no changes, no empty fields.
        assert!(
            facts.iter().all(|(t, v)| t != "Order" && !v.is_empty()),
            "{facts:?}"
        );
        match kind {
            "source.failing" => {
                assert!(facts.contains(&("Failed cycles".to_owned(), "12".to_owned())));
                let error = &facts.iter().find(|(t, _)| t == "Error").unwrap().1;
                assert!(error.contains("request id 0b7e5c1d"), "{error}");
            }
            "source.recovered" => {
                assert!(facts.contains(&(
                    "Failing since".to_owned(),
                    "2026-11-22T07:45:00Z".to_owned()
                )));
            }
            _ => assert!(facts.contains(&("API key expires".to_owned(), "2026-12-15".to_owned()))),
        }
    }
    sim.shutdown().await;
}
