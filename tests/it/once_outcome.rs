//! What `once` ends with: by its drain timeout whatever the receivers do,
//! and an exit code and summary that say when notifications went to the
//! dead letters.

use crate::helpers::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn once_ends_by_its_drain_timeout_with_a_chat_backlog() {
    let sim = simulator(30).await;
    let chat = ArrivalRecorder::start(Duration::ZERO).await;
    let ws = notify_workspace(&sim, &slack_sink_yaml("chat", &chat.url), "");
    let started = Instant::now();
    let out = ws.run(&["once", "--drain-timeout", "3s"]).await;
    // Before, it sent all 30 at one per second (29 s) and exited 0.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "ran {:?}",
        started.elapsed()
    );
    let summary = once_summary(&out);
    let sent = chat.arrivals().len();
    assert!(sent < 30, "{sent} sent");
    assert!(
        summary.contains(&format!("{} still queued", 30 - sent)),
        "{summary} ({sent} sent)"
    );
}

#[tokio::test]
async fn once_exits_1_and_says_so_when_notifications_were_dead_lettered() {
    let sim = simulator(2).await;
    let hook = Receiver::start().await;
    hook.script(&[410]);
    let ws = notify_workspace(&sim, &webhook_sink_yaml("hook", &hook.url), "");
    let out = ws.run(&["once"]).await;
    // Before, this was exit 0: a script saw "ok".
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = once_summary(&out);
    assert!(
        summary.contains(
            "1 of 1 source(s) polled; 1 delivered, 0 to retry, 1 dead-lettered, 0 still queued"
        ),
        "{}",
        text(&out)
    );
    assert!(summary.contains("dead-letters list"), "{summary}");
    // The next run has nothing new: exit 0 again.
    ws.once_ok().await;
}
