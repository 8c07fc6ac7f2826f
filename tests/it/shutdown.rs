//! Stopping within bounds: after SIGTERM no delivery starts, those in
//! flight get `shutdown_grace` and are then abandoned (their entries stay
//! queued, same ids), and the process exits 0 soon after the grace, however
//! slow the receivers and however long the backlog.

use crate::helpers::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn ids(arrivals: &[Arrival]) -> BTreeSet<String> {
    arrivals
        .iter()
        .map(|a| {
            a.headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn sigterm_abandons_slow_deliveries_after_the_grace_and_they_are_retried_under_the_same_ids()
{
    let sim = simulator(5).await;
    let hook = ArrivalRecorder::start(Duration::from_secs(300)).await;
    let grace = Duration::from_secs(2);
    let ws = notify_workspace(
        &sim,
        &format!(
            "  - name: hook\n    type: webhook\n    url: {}\n    secret: {WEBHOOK_SECRET}\n    timeout: 90s\n",
            hook.url
        ),
        "shutdown_grace: 2s\n",
    );
    let mut child = ws.spawn_run();
    eventually(
        "all five deliveries in flight",
        Duration::from_secs(30),
        || hook.arrivals().len() == 5,
    )
    .await;
    let in_flight = ids(&hook.arrivals());

    let signalled = Instant::now();
    // Before, SIGTERM waited for the sink's 90 s timeout.
    let status = terminate(&mut child, grace + Duration::from_secs(8)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        hook.arrivals().iter().all(|a| a.at < signalled),
        "a delivery started after the signal"
    );
    let log = std::fs::read_to_string(ws.log_path()).unwrap();
    assert!(log.contains("were abandoned"), "{log}");
    assert!(log.contains("store flushed; stopped"), "{log}");

    // The abandoned entries stayed queued and go out again, same ids.
    hook.set_delay(Duration::ZERO);
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let again: Vec<Arrival> = hook
        .arrivals()
        .into_iter()
        .filter(|a| a.at > signalled)
        .collect();
    assert_eq!(ids(&again), in_flight);
    assert!(once_summary(&out).contains("5 delivered"), "{}", text(&out));
}

#[tokio::test]
async fn sigterm_does_not_wait_for_a_chat_backlog() {
    let sim = simulator(30).await;
    let chat = ArrivalRecorder::start(Duration::ZERO).await;
    let ws = notify_workspace(&sim, &slack_sink_yaml("chat", &chat.url), "");
    let mut child = ws.spawn_run();
    eventually("the backlog being sent", Duration::from_secs(30), || {
        chat.arrivals().len() >= 2
    })
    .await;
    let signalled = Instant::now();
    // Before, the 30 messages went out at one per second after the signal.
    let status = terminate(&mut child, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    let sent = chat.arrivals();
    let after = sent.iter().filter(|a| a.at >= signalled).count();
    // At most the one message already on its way when the signal came.
    assert!(after <= 1, "{after} messages started after the signal");

    // The rest are still queued: `once` with a short drain says how many.
    let out = ws.run(&["once", "--drain-timeout", "1s"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let summary = once_summary(&out);
    let queued: usize = summary
        .split_once(" still queued")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no queued count in {summary:?}"));
    let told: BTreeSet<String> = chat
        .arrivals()
        .iter()
        .map(|a| String::from_utf8_lossy(&a.body).into_owned())
        .collect();
    assert_eq!(told.len() + queued, 30, "{summary}");
}
