//! Receivers that go away for several retry rounds and come back, with a
//! running `orderwatch run`: every event is delivered in the end, attempts
//! are spaced by the backoff (lower bounds from arrival instants: initial
//! doubling, minus the 20% jitter), retries of different events are not
//! synchronised, and nothing is dead-lettered before `max_attempts`.

use crate::helpers::*;
use mailin_embedded::Server;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

const INITIAL_MS: u64 = 100;
/// Workspace's delivery backoff: `{ initial: 100ms, max: 1s }`.
const MAX_MS: u64 = 1000;
const MAX_ATTEMPTS: u32 = 30;
/// Due times are whole milliseconds; a sleep never ends early.
const SLACK_MS: f64 = 3.0;

/// Added under Workspace's `delivery:` (which sets the backoff).
fn delivery() -> String {
    format!("  max_attempts: {MAX_ATTEMPTS}\n  max_age: 1h\n")
}

/// The wait before attempt `n + 1` after `n` failures, without jitter.
fn backoff_ms(failures: u32) -> f64 {
    let exp = INITIAL_MS.saturating_mul(1 << (failures - 1).min(20));
    exp.min(MAX_MS) as f64
}

/// Check the gaps between consecutive attempts of each event (each attempt
/// before the last failed): at least the backoff minus 20%.
fn check_spacing(attempts: &BTreeMap<String, Vec<Instant>>) -> usize {
    let mut checked = 0;
    for (id, times) in attempts {
        for (i, pair) in times.windows(2).enumerate() {
            let gap = pair[1].duration_since(pair[0]).as_secs_f64() * 1000.0;
            let floor = 0.8 * backoff_ms(i as u32 + 1) - SLACK_MS;
            assert!(
                gap >= floor,
                "{id}: attempt {} came {gap:.1} ms after the previous, backoff floor {floor:.1} ms",
                i + 2
            );
            checked += 1;
        }
    }
    checked
}

/// The second attempts of different events must not all land together.
fn check_desynchronised(attempts: &BTreeMap<String, Vec<Instant>>, start: Instant) {
    let millis: Vec<f64> = attempts
        .values()
        .filter_map(|t| t.get(1))
        .map(|t| t.duration_since(start).as_secs_f64() * 1000.0)
        .collect();
    assert!(millis.len() >= 5, "{millis:?}");
    let distinct: HashSet<u64> = millis.iter().map(|ms| *ms as u64).collect();
    let spread = millis.iter().cloned().fold(f64::MIN, f64::max)
        - millis.iter().cloned().fold(f64::MAX, f64::min);
    println!(
        "second attempts of {} events: {} distinct milliseconds, spread {spread:.1} ms",
        millis.len(),
        distinct.len()
    );
    // Their due times differ by the jitter (±20% of 100 ms); a loaded
    // machine may still serve several in one pass, so only "not all in the
    // same millisecond" is asserted.
    assert!(distinct.len() >= 2, "retries in lock-step: {millis:?}");
}

#[tokio::test]
async fn webhook_receiver_failing_then_down_then_back_gets_everything() {
    let sim = simulator(60).await;
    let admin = Admin::new(&sim);
    let first = Receiver::start().await;
    let addr = first.addr();
    let ws = current_tracking_workspace(&sim.base_url(), &first.url, "", &delivery());
    ws.once_ok().await;

    // Up but failing: three rounds of 503 for each of 10 events.
    first.script(&[503; 30]);
    let start = Instant::now();
    let daemon = ws.spawn_run();
    let closed = close_orders(&admin, 10).await;
    eventually("three failed rounds", Duration::from_secs(30), || {
        first.received().len() >= 30
    })
    .await;
    // Then down: connections refused for at least two more rounds each.
    first.stop().await;
    let refused = || log_count(&ws, "could not connect");
    eventually("two refused rounds", Duration::from_secs(30), || {
        refused() >= 20
    })
    .await;
    let second = Receiver::start_on(&addr).await;
    let wanted: HashSet<String> = closed.iter().cloned().collect();
    eventually("every event delivered", Duration::from_secs(60), || {
        let got: HashSet<String> = second
            .delivered()
            .iter()
            .map(|r| r.json()["data"]["order_id"].as_str().unwrap().to_owned())
            .collect();
        got == wanted
    })
    .await;
    stop_daemon(daemon).await;

    let mut attempts: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for r in first.received().iter().chain(second.received().iter()) {
        attempts
            .entry(r.header("webhook-id"))
            .or_default()
            .push(r.at);
    }
    let failed = first.received().len();
    assert!(failed >= 30, "{failed}");
    let gaps = check_spacing(&attempts);
    check_desynchronised(&attempts, start);
    let out = ws.run(&["dead-letters", "list"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        out.stdout.is_empty(),
        "nothing dead-lettered: {}",
        text(&out)
    );
    let max_seen = attempts.values().map(Vec::len).max().unwrap_or(0);
    println!(
        "webhook outage: {} events, {failed} answered 503, {} refused, {} delivered, {gaps} gaps checked, at most {max_seen} recorded attempts per event (max_attempts {MAX_ATTEMPTS})",
        attempts.len(),
        refused(),
        second.delivered().len()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn past_max_attempts_is_a_dead_letter_and_replay_delivers_it() {
    let sim = simulator(40).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "", "  max_attempts: 4\n");
    ws.once_ok().await;
    let closed = close_orders(&admin, 1).await;
    hook.script(&[503; 4]);
    let out = ws.run(&["once", "--drain-timeout", "20s"]).await;
    // Dead-lettered during the run: exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(hook.received().len(), 4, "exactly max_attempts attempts");
    let out = ws.run(&["dead-letters", "list", "--json"]).await;
    let dead: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one line");
    assert_eq!(dead["attempts"], 4);
    assert_eq!(dead["order_id"], closed[0].as_str());
    let out = ws.run(&["dead-letters", "replay", "--all"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    ws.once_ok().await;
    let delivered = hook.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].header("webhook-id"),
        hook.received()[0].header("webhook-id")
    );
    sim.shutdown().await;
}

// ---------------------------------------------------------------- SMTP

#[tokio::test]
async fn smtp_server_down_then_refusing_then_up_gets_every_mail() {
    let sim = simulator(40).await;
    let admin = Admin::new(&sim);
    // A free port with nothing listening yet: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = format!(
        "  - name: mail\n    type: email\n    smtp: {{ host: 127.0.0.1, port: {port}, tls: none, timeout: 5s }}\n    from: ow@example.com\n    to: [noc@example.com]\n"
    );
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    filters: { status: Current }\n",
        ),
        &sink,
        &delivery(),
    );
    ws.once_ok().await;
    let daemon = ws.spawn_run();
    let closed = close_orders(&admin, 6).await;
    let retries = || log_count(&ws, "delivery failed, will retry");
    eventually("three refused rounds", Duration::from_secs(30), || {
        retries() >= 18
    })
    .await;
    let down_retries = retries();

    // Up, but answering 451 to the next 12 messages, then accepting.
    let smtp = SmtpRecorder::default();
    *smtp.refuse_next.lock().unwrap() = 12;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("rebind the port");
    let mut server = Server::new(smtp.clone());
    server.with_name("mx.test").with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    eventually("every mail accepted", Duration::from_secs(60), || {
        let accepted = smtp.messages.lock().unwrap();
        closed
            .iter()
            .all(|id| accepted.iter().any(|m| m.contains(id.as_str())))
    })
    .await;
    stop_daemon(daemon).await;
    let out = ws.run(&["dead-letters", "list"]).await;
    assert!(
        out.stdout.is_empty(),
        "nothing dead-lettered: {}",
        text(&out)
    );
    let arrivals = smtp.arrivals.lock().unwrap().clone();
    assert!(
        arrivals.len() >= 18,
        "12 refused + 6 accepted: {}",
        arrivals.len()
    );
    // The server cannot tell which event a refused DATA was for (refused
    // before the content), so spacing is checked on the whole: 12 refusals
    // of 6 events need at least the first two backoff rounds between the
    // first arrival and the last.
    let span = arrivals
        .last()
        .unwrap()
        .duration_since(arrivals[0])
        .as_secs_f64()
        * 1000.0;
    // Each event failed at least once while the server was down, so the
    // event with two refusals (12 refusals, 6 events: one has two at least)
    // waited at least backoff(2) + backoff(3) between its first refusal and
    // its acceptance, minus jitter.
    let floor = 0.8 * (backoff_ms(2) + backoff_ms(3)) - SLACK_MS;
    assert!(
        span >= floor,
        "arrivals over {span:.1} ms, at least {floor:.1} ms of backoff expected"
    );
    let accepted = smtp.messages.lock().unwrap().len();
    assert_eq!(accepted, closed.len(), "one mail per change");
    println!(
        "smtp outage: {} events, {down_retries} refused connections, 12 answered 451, {accepted} accepted, arrivals over {span:.0} ms",
        closed.len()
    );
    sim.shutdown().await;
}
