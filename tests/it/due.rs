//! Due dates and stalled orders through the binary, on the timer: a due
//! date a few seconds ahead is told as `order.due_soon` and then
//! `order.overdue`, each exactly once under one id, across a restart of
//! `run` and across a SIGKILL, and the one whose time came while orderwatch
//! was down is told when it starts again; a moved date re-arms both; a
//! closed order never fires; an order whose status lasts `stalled_after` is
//! told `order.stalled` once per status; a baseline announces none of
//! them, and a garbage due date is a warning, said once.

use crate::helpers::*;
use orderwatch_simulator::RunningSimulator;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const WAIT: Duration = Duration::from_secs(60);

/// The distinct ids among the deliveries of `kind` about `order`: a
/// redelivery after a crash repeats an id, a second telling would not.
fn told(hook: &Receiver, kind: &str, order: &str) -> BTreeSet<String> {
    delivered_of_type(hook, kind)
        .iter()
        .filter(|e| e["data"]["order_id"] == order)
        .map(|e| e["data"]["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// RFC 3339 (UTC, seconds) `secs` from now.
fn in_secs(secs: u64) -> (SystemTime, String) {
    let at = SystemTime::now() + Duration::from_secs(secs);
    (at, humantime::format_rfc3339_seconds(at).to_string())
}

/// A tracking source of every order (open and closed) with `extra` keys.
fn workspace(sim: &RunningSimulator, hook: &Receiver, extra: &str) -> Workspace {
    Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), extra),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    )
}

const DUE: &str = "    due: { field: /keyDates/expectedAt, warn_before: 2s }\n";

async fn set_due(admin: &Admin, order: &str, due: &str) {
    admin
        .patch(
            "order-tracking",
            order,
            json!({"keyDates": {"expectedAt": due}}),
        )
        .await;
}

/// The simulator with `n` open orders (their ids), its admin API, a
/// receiver, and a workspace whose source has `extra` keys.
async fn setup(
    n: usize,
    extra: &str,
) -> (RunningSimulator, Admin, Vec<String>, Receiver, Workspace) {
    let sim = simulator(n).await;
    let admin = Admin::new(&sim);
    let ids = open_orders(&admin, n).await;
    let hook = Receiver::start().await;
    let ws = workspace(&sim, &hook, extra);
    (sim, admin, ids, hook, ws)
}

/// The first `n` orders of the tracking API, made open (`Current`).
async fn open_orders(admin: &Admin, n: usize) -> Vec<String> {
    let ids = admin.ids(TRACKING, "").await[..n].to_vec();
    for id in &ids {
        admin
            .patch("order-tracking", id, json!({"status": "Current"}))
            .await;
    }
    ids
}

async fn cycles_pass(ws: &Workspace, more: usize) {
    let target = log_count(ws, "poll cycle done") + more;
    eventually(&format!("{more} more poll cycles"), WAIT, || {
        log_count(ws, "poll cycle done") >= target
    })
    .await;
}

/// Wait until the wall clock is past `at` (a due date the test set).
async fn until(at: SystemTime) {
    eventually("the due date to pass", WAIT, || SystemTime::now() > at).await;
}

/// A change of another order, and its event delivered: what was due by
/// then has been evaluated (the timer runs after every poll).
async fn marker(admin: &Admin, hook: &Receiver, order: &str, n: u64) {
    admin
        .patch(
            "order-tracking",
            order,
            json!({"request": {"status": format!("marker {n}")}}),
        )
        .await;
    eventually(&format!("marker {n} delivered"), WAIT, || {
        delivered_of_type(hook, "order.updated")
            .iter()
            .any(|e| e["data"]["order"]["request"]["status"] == format!("marker {n}"))
    })
    .await;
}

#[tokio::test]
async fn due_soon_then_overdue_once_each_across_a_restart_and_a_moved_date_re_arms() {
    let (sim, admin, ids, hook, ws) =
        setup(2, &format!("{DUE}    watch: [/request/status]\n")).await;
    let (order, other) = (&ids[0], &ids[1]);
    let daemon = ws.spawn_run();
    cycles_pass(&ws, 1).await;

    let (due_at, due) = in_secs(4);
    set_due(&admin, order, &due).await;
    eventually("order.due_soon delivered", WAIT, || {
        !told(&hook, "order.due_soon", order).is_empty()
    })
    .await;
    let soon = &delivered_of_type(&hook, "order.due_soon")[0];
    let data = &soon["data"];
    assert_eq!(data["order_id"], order.as_str());
    assert_eq!(data["source"], "tracking");
    assert_eq!(data["due"], due.as_str(), "{soon}");
    assert_eq!(data["to"], "Current");
    assert_eq!(data["closed"], false);
    assert_eq!(data["order"]["keyDates"]["expectedAt"], due.as_str());
    assert!(
        data.get("from").is_none() && data.get("since").is_none(),
        "{soon}"
    );
    assert!(
        told(&hook, "order.overdue", order).is_empty(),
        "overdue before its time"
    );
    // Another change of the order, its due date the same: nothing re-arms.
    marker(&admin, &hook, order, 0).await;

    // Down when the date passes: told when it starts again.
    stop_daemon(daemon).await;
    until(due_at).await;
    let daemon = ws.spawn_run();
    eventually("order.overdue delivered after the restart", WAIT, || {
        !told(&hook, "order.overdue", order).is_empty()
    })
    .await;
    marker(&admin, &hook, order, 1).await;
    marker(&admin, &hook, other, 2).await;
    cycles_pass(&ws, 2).await;
    assert_eq!(told(&hook, "order.due_soon", order).len(), 1);
    assert_eq!(told(&hook, "order.overdue", order).len(), 1);
    assert_eq!(delivered_of_type(&hook, "order.due_soon").len(), 1);
    assert_eq!(delivered_of_type(&hook, "order.overdue").len(), 1);
    let overdue = &delivered_of_type(&hook, "order.overdue")[0];
    assert_eq!(overdue["data"]["due"], due.as_str());
    assert_ne!(overdue["data"]["id"], data["id"]);

    // A moved date is a new due date: both again, under new ids.
    let (_, moved) = in_secs(3);
    set_due(&admin, order, &moved).await;
    eventually("the moved date overdue", WAIT, || {
        told(&hook, "order.overdue", order).len() == 2
    })
    .await;
    marker(&admin, &hook, other, 3).await;
    stop_daemon(daemon).await;
    let soon = delivered_of_type(&hook, "order.due_soon");
    assert_eq!(soon.len(), 2, "{soon:?}");
    assert_eq!(soon[1]["data"]["due"], moved.as_str());
    assert_eq!(told(&hook, "order.overdue", order).len(), 2);
    // None for the orders without a due date this close.
    for e in hook.delivered().iter().map(Received::json) {
        if e["type"] != "order.updated" {
            assert_eq!(e["data"]["order_id"], order.as_str(), "{e}");
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_sigkill_never_tells_a_due_date_twice_under_two_ids() {
    let (sim, admin, ids, hook, ws) =
        setup(2, &format!("{DUE}    watch: [/request/status]\n")).await;
    let (order, other) = (&ids[0], &ids[1]);
    let mut daemon = ws.spawn_run();
    cycles_pass(&ws, 1).await;
    let (due_at, due) = in_secs(3);
    set_due(&admin, order, &due).await;
    // Killed the moment the timer has committed due_soon: delivered or
    // not, the outbox keeps it, and the timer is not armed twice.
    eventually("order.due_soon committed", WAIT, || {
        log_count(&ws, "timer fired") >= 1
    })
    .await;
    daemon.start_kill().expect("SIGKILL");
    let _ = daemon.wait().await;
    until(due_at).await;
    let daemon = ws.spawn_run();
    eventually("both told", WAIT, || {
        !told(&hook, "order.due_soon", order).is_empty()
            && !told(&hook, "order.overdue", order).is_empty()
    })
    .await;
    marker(&admin, &hook, other, 1).await;
    cycles_pass(&ws, 2).await;
    stop_daemon(daemon).await;
    assert_eq!(told(&hook, "order.due_soon", order).len(), 1);
    assert_eq!(told(&hook, "order.overdue", order).len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_closed_order_never_fires_and_a_baseline_announces_none() {
    let (sim, admin, ids, hook, ws) = setup(
        4,
        "    due: { field: /keyDates/expectedAt, warn_before: 1h }\n    watch: [/request/status]\n",
    )
    .await;
    // Before the first poll: one long overdue, one due within warn_before.
    let past = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(86_400))
        .to_string();
    set_due(&admin, &ids[0], &past).await;
    let (_, near) = in_secs(1800);
    set_due(&admin, &ids[1], &near).await;
    let daemon = ws.spawn_run();
    cycles_pass(&ws, 1).await;

    // After the baseline: an order closed as its date comes says nothing,
    // and one first seen past its date gets overdue only.
    let (closes_at, soon) = in_secs(2);
    admin
        .patch(
            "order-tracking",
            &ids[2],
            json!({"keyDates": {"expectedAt": soon}, "status": "Closed"}),
        )
        .await;
    set_due(&admin, &ids[3], &past).await;
    eventually("the late order overdue", WAIT, || {
        !told(&hook, "order.overdue", &ids[3]).is_empty()
    })
    .await;
    until(closes_at).await;
    marker(&admin, &hook, &ids[3], 1).await;
    cycles_pass(&ws, 2).await;
    stop_daemon(daemon).await;
    for kind in ["order.due_soon", "order.overdue"] {
        for id in &ids[..3] {
            assert!(told(&hook, kind, id).is_empty(), "{kind} for {id}");
        }
    }
    assert!(told(&hook, "order.due_soon", &ids[3]).is_empty());
    assert_eq!(told(&hook, "order.overdue", &ids[3]).len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn stalled_once_per_status_again_after_a_change_and_another_stall() {
    let (sim, admin, ids, hook, ws) = setup(1, "    stalled_after: 3s\n").await;
    let order = ids[0].clone();
    let daemon = ws.spawn_run();
    eventually("order.stalled delivered", WAIT, || {
        !told(&hook, "order.stalled", &order).is_empty()
    })
    .await;
    let first = delivered_of_type(&hook, "order.stalled")[0].clone();
    let data = &first["data"];
    assert_eq!(data["to"], "Current", "{first}");
    let since = data["since"].as_str().expect("since");
    humantime::parse_rfc3339(since).expect("since is RFC 3339");
    assert!(data.get("due").is_none(), "{first}");

    // Still the same status: not told again.
    cycles_pass(&ws, 4).await;
    assert_eq!(told(&hook, "order.stalled", &order).len(), 1);

    admin
        .patch("order-tracking", &order, json!({"status": "Pending"}))
        .await;
    eventually("stalled again in the new status", WAIT, || {
        told(&hook, "order.stalled", &order).len() == 2
    })
    .await;
    cycles_pass(&ws, 4).await;
    stop_daemon(daemon).await;
    let stalled = delivered_of_type(&hook, "order.stalled");
    assert_eq!(stalled.len(), 2, "{stalled:?}");
    let again = &stalled[1]["data"];
    assert_eq!(again["to"], "Pending");
    assert!(again["since"].as_str().unwrap() > since, "{again}");
    assert_eq!(delivered_of_type(&hook, "order.status_changed").len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_due_date_that_is_not_a_date_is_warned_about_once() {
    let (sim, admin, ids, hook, ws) = setup(2, DUE).await;
    let daemon = ws.spawn_run();
    cycles_pass(&ws, 1).await;
    for id in &ids {
        admin
            .patch(
                "order-tracking",
                id,
                json!({"keyDates": {"expectedAt": "next week"}}),
            )
            .await;
    }
    cycles_pass(&ws, 3).await;
    stop_daemon(daemon).await;
    assert_eq!(log_count(&ws, "is not a date"), 1);
    assert!(hook.delivered().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn due_dates_turned_on_for_an_existing_store_tell_only_what_comes_due_later() {
    let (sim, admin, ids, hook, ws) = setup(2, "    watch: [/request/status]\n").await;
    let past =
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(60)).to_string();
    set_due(&admin, &ids[0], &past).await;
    // The baseline and a poll, with no timers configured.
    ws.once_ok().await;
    ws.once_ok().await;
    let (due_at, due) = in_secs(4);
    set_due(&admin, &ids[1], &due).await;
    ws.once_ok().await;

    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    let config = config.replace(
        "    watch: [/request/status]\n",
        &format!("    watch: [/request/status]\n{DUE}"),
    );
    std::fs::write(ws.config_path(), config).unwrap();
    let daemon = ws.spawn_run();
    eventually("the order due later told overdue", WAIT, || {
        !told(&hook, "order.overdue", &ids[1]).is_empty()
    })
    .await;
    until(due_at).await;
    marker(&admin, &hook, &ids[0], 1).await;
    cycles_pass(&ws, 2).await;
    stop_daemon(daemon).await;
    assert_eq!(log_count(&ws, "building the source's timer index"), 1);
    assert_eq!(told(&hook, "order.due_soon", &ids[1]).len(), 1);
    assert_eq!(told(&hook, "order.overdue", &ids[1]).len(), 1);
    for kind in ["order.due_soon", "order.overdue"] {
        assert!(
            told(&hook, kind, &ids[0]).is_empty(),
            "{kind} for the order past its date"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_reload_that_turns_due_on_arms_the_running_source() {
    let (sim, admin, ids, hook, ws) = setup(1, "    watch: [/request/status]\n").await;
    let daemon = ws.spawn_run();
    cycles_pass(&ws, 1).await;
    let (_, due) = in_secs(8);
    set_due(&admin, &ids[0], &due).await;
    cycles_pass(&ws, 1).await;

    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    let config = config.replace(
        "    watch: [/request/status]\n",
        &format!("    watch: [/request/status]\n{DUE}"),
    );
    std::fs::write(ws.config_path(), config).unwrap();
    let pid = daemon.id().expect("running").to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually("config reloaded", WAIT, || {
        log_count(&ws, "config reloaded") == 1
    })
    .await;
    eventually("due_soon and overdue after the reload", WAIT, || {
        !told(&hook, "order.due_soon", &ids[0]).is_empty()
            && !told(&hook, "order.overdue", &ids[0]).is_empty()
    })
    .await;
    stop_daemon(daemon).await;
    assert_eq!(delivered_of_type(&hook, "order.due_soon").len(), 1);
    assert_eq!(delivered_of_type(&hook, "order.overdue").len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn timer_events_are_routed_by_type_and_by_the_order_they_carry() {
    let sim = simulator(2).await;
    let admin = Admin::new(&sim);
    let ids = open_orders(&admin, 2).await;
    let (late, open, moved) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let sinks = [
        webhook_sink_yaml("late", &late.url),
        webhook_sink_yaml("open", &open.url),
        webhook_sink_yaml("moved", &moved.url),
    ]
    .concat();
    // `from` never matches an event that has none; `to` and `match` read
    // the order as the last poll saw it.
    let routes = format!(
        "routes:\n  \
         - {{sinks: [late], events: [order.overdue]}}\n  \
         - {{sinks: [open], to: [Current], match: {{/id: \"{}\"}}}}\n  \
         - {{sinks: [moved], from: [Current]}}\n",
        ids[0]
    );
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), DUE),
        &sinks,
        &routes,
    );
    let daemon = ws.spawn_run();
    cycles_pass(&ws, 1).await;
    let (_, due) = in_secs(3);
    for id in &ids {
        set_due(&admin, id, &due).await;
    }
    eventually("both overdue at late", WAIT, || {
        delivered_of_type(&late, "order.overdue").len() == 2
    })
    .await;
    eventually("the first order's two events at open", WAIT, || {
        !delivered_of_type(&open, "order.overdue").is_empty()
    })
    .await;
    cycles_pass(&ws, 2).await;
    stop_daemon(daemon).await;
    assert!(delivered_of_type(&late, "order.due_soon").is_empty());
    let at_open: Vec<_> = open.delivered().iter().map(Received::json).collect();
    assert_eq!(at_open.len(), 2, "{at_open:?}");
    assert!(
        at_open
            .iter()
            .all(|e| e["data"]["order_id"] == ids[0].as_str())
    );
    assert!(moved.delivered().is_empty());
    sim.shutdown().await;
}
