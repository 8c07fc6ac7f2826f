//! Every API fault the simulator can inject, through `orderwatch once`, each
//! scenario with its own simulator, store and receiver (run side by side):
//!
//! 1. a baseline cycle (exit 0);
//! 2. the fault, and one cycle under it: the exit code README.md gives in
//!    "What happens when…" (0 if the cycle completes despite the fault, 1
//!    if it fails), a plain message
//!    on stderr that carries Orange's request id where Orange answered, no
//!    secret, no panic, and no event at all (nothing changed), except where
//!    orders really came or went mid-scan: then only those true changes;
//! 3. faults cleared and one real change made (an order closes): the next
//!    cycle exits 0 and delivers exactly the true changes.
//!
//! The table printed at the end is what README's "Delivery guarantees"
//! quotes.

use crate::helpers::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const ORDERS: usize = 100;
const PAGE: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// `POST /_sim/faults` with this body before the cycle.
    Inject(&'static str),
    /// Orders with the highest ids added once page 1 is served.
    AddMidScan,
    /// The orders with the highest ids removed once page 1 is served.
    DeleteMidScan,
}

struct Scenario {
    name: &'static str,
    fault: Fault,
    /// Extra source keys.
    extra: &'static str,
    exit: i32,
    /// Words the stderr of the faulty cycle must contain.
    says: &'static [&'static str],
    /// Whether Orange answered the failing call, so a request id is due.
    request_id: bool,
}

fn scenarios() -> Vec<Scenario> {
    let s = |name, fault, exit, says, request_id| Scenario {
        name,
        fault,
        extra: "",
        exit,
        says,
        request_id,
    };
    use Fault::*;
    vec![
        s(
            "503 x2 (within retries)",
            Inject(r#"{"status":503,"count":2}"#),
            0,
            &[],
            false,
        ),
        s(
            "500 x8 (past 3 retries)",
            Inject(r#"{"status":500,"count":8}"#),
            1,
            &[
                "server error",
                "still so after 3 retries",
                "HTTP 500",
                "code 1",
            ],
            true,
        ),
        s(
            "504 x8 on page 2",
            Inject(r#"{"status":504,"count":8,"target":"list","offset":20}"#),
            1,
            &[
                "server error",
                "still so after 3 retries",
                "HTTP 504",
                "code 6",
            ],
            true,
        ),
        s(
            "403/53 x1, no Retry-After",
            Inject(r#"{"status":403,"count":1}"#),
            0,
            &["rate limited by Orange: waiting"],
            false,
        ),
        s(
            "429/53 x2, Retry-After 1",
            Inject(r#"{"status":429,"count":2,"retry_after":1}"#),
            0,
            &["rate limited by Orange: waiting"],
            false,
        ),
        s(
            "429/53 x10, Retry-After 0 (past patience)",
            Inject(r#"{"status":429,"count":10,"retry_after":0}"#),
            1,
            &["kept answering 'too many requests'", "HTTP 429", "code 53"],
            true,
        ),
        Scenario {
            extra: "    timeout: 300ms\n",
            ..s(
                "latency 800ms > timeout 300ms",
                Inject(r#"{"latency_ms":800}"#),
                1,
                &["did not answer in time", "still so after 3 retries"],
                false,
            )
        },
        Scenario {
            extra: "    timeout: 2s\n",
            ..s(
                "latency 100ms < timeout 2s",
                Inject(r#"{"latency_ms":100}"#),
                0,
                &[],
                false,
            )
        },
        s(
            "truncated body",
            Inject(r#"{"truncate_body":true}"#),
            1,
            &["not the JSON expected", "not a JSON array of orders"],
            true,
        ),
        s(
            "non-JSON body",
            Inject(r#"{"non_json":true}"#),
            1,
            &["not the JSON expected", "not a JSON array of orders"],
            true,
        ),
        s(
            "empty page at offset 40 of 100",
            Inject(r#"{"empty_page_at_offset":40}"#),
            0,
            &[],
            false,
        ),
        s(
            "X-Total-Count +50",
            Inject(r#"{"total_count_delta":50}"#),
            0,
            &[],
            false,
        ),
        s(
            "X-Total-Count -50",
            Inject(r#"{"total_count_delta":-50}"#),
            0,
            &[],
            false,
        ),
        s(
            "3 orders added at the front mid-scan",
            AddMidScan,
            0,
            &[],
            false,
        ),
        s(
            "3 orders deleted at the front mid-scan",
            DeleteMidScan,
            0,
            &[],
            false,
        ),
        s(
            "token endpoint 503 x8",
            Inject(r#"{"status":503,"count":8,"target":"token"}"#),
            1,
            &["server error", "HTTP 503"],
            true,
        ),
        s(
            "token endpoint 401",
            Inject(r#"{"status":401,"target":"token"}"#),
            1,
            &["refused the client credentials", "HTTP 401"],
            true,
        ),
        s(
            "API key rejected",
            Inject(r#"{"reject_api_key":true}"#),
            1,
            &["Orange refused access: the API key is wrong"],
            true,
        ),
    ]
}

/// What one scenario did, for the table.
struct Outcome {
    name: &'static str,
    exit: i32,
    faulty_events: usize,
    detail_calls: u64,
    recovery_events: usize,
}

fn calls(stats: &Value, endpoint: &str) -> u64 {
    stats["by_endpoint"][endpoint]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

fn summary(r: &Received) -> (String, String, String) {
    let e = r.json();
    (
        e["type"].as_str().unwrap_or_default().to_owned(),
        e["data"]["order_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        e["data"]["to"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn run_scenario(sc: Scenario) -> Outcome {
    let started = std::time::Instant::now();
    let sim = simulator(ORDERS).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    // A budget above the default 60/min: the empty-page and lying-total
    // scenarios read every unseen order by id (see the table).
    let extra = format!(
        "    sort: -id\n    page_size: {PAGE}\n    max_requests_per_minute: 600\n{}",
        sc.extra
    );
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), &extra),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    let out = ws.run(&["once"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: baseline {}",
        sc.name,
        text(&out)
    );
    // Ids sorted ascending: the last ones lead a `-id` listing.
    let all_ids = admin.ids(TRACKING, "status=Current").await;
    let mut listing = all_ids.clone();
    listing.extend(admin.ids(TRACKING, "status=Closed").await);
    listing.sort();
    // After the admin's own list calls, so counts are the cycle's alone.
    let before = admin.stats().await;
    let mut expected: BTreeSet<(String, String, String)> = BTreeSet::new();
    let out = match sc.fault {
        Fault::Inject(body) => {
            admin.fault(serde_json::from_str(body).unwrap()).await;
            ws.run(&["once"]).await
        }
        Fault::AddMidScan | Fault::DeleteMidScan => {
            admin.fault(json!({"latency_ms": 300})).await;
            let config = ws.config_path();
            let cycle = tokio::spawn(async move { run_binary(&config, &["once"], &[]).await });
            let list_calls = calls(&before, "order-tracking.list");
            let admin_ref = &admin;
            eventually_async("page 1 served", Duration::from_secs(30), || async move {
                calls(&admin_ref.stats().await, "order-tracking.list") > list_calls
            })
            .await;
            if sc.fault == Fault::AddMidScan {
                for n in 0..3 {
                    let id = format!("1009{n:02}");
                    admin
                        .add(
                            "order-tracking",
                            json!({"id": id, "status": "Current", "request": {"status": "Acknowledged"}}),
                        )
                        .await;
                    expected.insert(("order.created".into(), id, "Current".into()));
                }
            } else {
                for id in listing.iter().rev().take(3) {
                    admin.delete("order-tracking", id).await;
                    expected.insert(("order.removed".into(), id.clone(), String::new()));
                }
            }
            cycle.await.unwrap()
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(sc.exit), "{}: {all}", sc.name);
    for words in sc.says {
        assert!(stderr.contains(words), "{}: `{words}` in {all}", sc.name);
    }
    if sc.exit == 1 {
        let failure = stderr
            .lines()
            .find(|l| l.contains("poll cycle failed"))
            .unwrap_or_else(|| panic!("{}: no failure line in {all}", sc.name));
        assert_eq!(
            failure.contains("request id "),
            sc.request_id,
            "{}: request id in `{failure}`",
            sc.name
        );
    }
    for secret in [CLIENT_SECRET, API_KEY, "Bearer ", "panicked"] {
        assert!(!stderr.contains(secret), "{}: `{secret}` in {all}", sc.name);
    }
    let faulty: Vec<_> = hook.received().iter().map(summary).collect();
    let faulty_events = faulty.len();
    match sc.fault {
        // Nothing changed: nothing may be said.
        Fault::Inject(_) => assert!(faulty.is_empty(), "{}: false events {faulty:?}", sc.name),
        // Orders really came or went during the cycle: it may tell them.
        _ => assert!(
            faulty.iter().all(|e| expected.contains(e)),
            "{}: false events {faulty:?}",
            sc.name
        ),
    }
    let after = admin.stats().await;
    let detail_calls =
        calls(&after, "order-tracking.detail") - calls(&before, "order-tracking.detail");

    // Recovery: faults gone, one order closes; exactly the true changes.
    admin.clear_faults().await;
    let closing = all_ids
        .iter()
        .find(|id| !expected.iter().any(|(_, e, _)| e == *id))
        .expect("a Current order");
    admin
        .patch("order-tracking", closing, json!({"status": "Closed"}))
        .await;
    expected.insert((
        "order.status_changed".into(),
        closing.clone(),
        "Closed".into(),
    ));
    let out = ws.run(&["once"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: recovery {}",
        sc.name,
        text(&out)
    );
    // Both cycles together: every true change exactly once, nothing else.
    let got: Vec<(String, String, String)> = hook.delivered().iter().map(summary).collect();
    let got_set: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(
        got.len(),
        got_set.len(),
        "{}: no duplicates: {got:?}",
        sc.name
    );
    assert_eq!(got_set, expected, "{}: exactly the true changes", sc.name);
    sim.shutdown().await;
    println!("{}: {:.1} s", sc.name, started.elapsed().as_secs_f64());
    Outcome {
        name: sc.name,
        exit: sc.exit,
        faulty_events,
        detail_calls,
        recovery_events: got.len() - faulty_events,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_fault_matrix() {
    let runs = scenarios()
        .into_iter()
        .map(|sc| tokio::spawn(run_scenario(sc)));
    let mut outcomes = Vec::new();
    for run in runs.collect::<Vec<_>>() {
        match run.await {
            Ok(o) => outcomes.push(o),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    println!("fault matrix: {} scenarios", outcomes.len());
    println!(
        "{:<44} {:>4} {:>13} {:>12} {:>15}",
        "scenario", "exit", "events", "detail calls", "recovery events"
    );
    for o in &outcomes {
        println!(
            "{:<44} {:>4} {:>13} {:>12} {:>15}",
            o.name, o.exit, o.faulty_events, o.detail_calls, o.recovery_events
        );
    }
    let failed = outcomes.iter().filter(|o| o.exit == 1).count();
    println!(
        "completed: {}, failed the cycle (exit 1): {failed}, false events: 0, recovered: {}",
        outcomes.len() - failed,
        outcomes.len()
    );
}
