//! Each sink's own retry policy and delivery rate, through the binary.

use crate::helpers::*;
use serde_json::Value;
use std::time::Duration;

fn dead_letters(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A sink with its own `delivery: {max_attempts}` gives up at its own count;
/// the sink beside it keeps the top-level one.
#[tokio::test]
async fn a_sink_with_its_own_max_attempts_dead_letters_at_its_own_count() {
    let sim = simulator(1).await;
    let own = Receiver::start().await;
    let shared = Receiver::start().await;
    own.script(&[500; 50]);
    shared.script(&[500; 50]);
    let sinks = format!(
        "{}    delivery: {{ max_attempts: 2 }}\n{}",
        webhook_sink_yaml("own", &own.url),
        webhook_sink_yaml("shared", &shared.url)
    );
    let ws = notify_workspace(&sim, &sinks, "");
    // The workspace's own `delivery:` section, with a top-level count.
    let yaml = std::fs::read_to_string(ws.config_path()).unwrap();
    let yaml = yaml.replace("delivery:\n", "delivery:\n  max_attempts: 4\n");
    std::fs::write(ws.config_path(), yaml).unwrap();
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(own.received().len(), 2, "{}", text(&out));
    assert_eq!(shared.received().len(), 4, "{}", text(&out));

    let out = ws.run(&["dead-letters", "list", "--json"]).await;
    let dead = dead_letters(&out);
    let attempts = |sink: &str| {
        dead.iter()
            .filter(|d| d["sink"] == sink)
            .map(|d| d["attempts"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    assert_eq!(attempts("own"), [2], "{}", text(&out));
    assert_eq!(attempts("shared"), [4], "{}", text(&out));
    sim.shutdown().await;
}

/// `max_per_minute` spreads a backlog out: every event arrives, in order
/// of its order's events, each start at least the cap's spacing after the
/// one before (a lower bound: a slow machine only widens the gaps).
#[tokio::test]
async fn max_per_minute_spaces_deliveries_out() {
    let sim = simulator(4).await;
    let rx = ArrivalRecorder::start(Duration::ZERO).await;
    // 120 a minute: one start every half second.
    let sinks = format!(
        "{}    max_per_minute: 120\n",
        webhook_sink_yaml("capped", &rx.url)
    );
    let ws = notify_workspace(&sim, &sinks, "");
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let arrivals = rx.arrivals();
    let mut ids: Vec<String> = arrivals
        .iter()
        .map(|a| {
            let event: Value = serde_json::from_slice(&a.body).unwrap();
            event["data"]["order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each order once: {ids:?}");
    for pair in arrivals.windows(2) {
        let gap = pair[1].at - pair[0].at;
        // Half a second apart at the sender; the margin absorbs a request
        // that was slow to arrive after an earlier one was quick.
        assert!(gap >= Duration::from_millis(300), "{gap:?}");
    }
    sim.shutdown().await;
}

/// A sink's `delivery:` is checked like the top-level one, with its path.
#[tokio::test]
async fn a_sinks_own_delivery_section_is_checked_with_its_path() {
    let sim = simulator(1).await;
    let sinks = format!(
        "{}    delivery: {{ backoff: {{ initial: 2h }}, max_attemps: 3 }}\n    max_per_minute: 0\n",
        webhook_sink_yaml("hook", "http://127.0.0.1:9/x")
    );
    let ws = notify_workspace(&sim, &sinks, "");
    let out = ws.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("sinks[0].delivery.max_attemps: unknown key")
            && said.contains("did you mean `max_attempts`"),
        "{said}"
    );
    assert!(
        said.contains("sinks[0].max_per_minute: must be between 1 and"),
        "{said}"
    );
    sim.shutdown().await;
}
