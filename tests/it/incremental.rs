//! Incremental sync through the binary against the simulator's Ordering
//! orders: a quiet cycle costs one call, changes are heard without a full
//! listing, ties on the cursor across a page boundary are read, removals
//! wait for the full listing, an unreadable cursor falls back to a full one,
//! a SIGKILL between pages loses nothing, and under churn what the receiver
//! was told ends as the simulator's state.

use crate::helpers::*;
use crate::ordering_orders::{ORDERS_API, all_orders, calls, events_of, orders_source};
use orderwatch_simulator::{self as simulator, RunningSimulator, SimOptions};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

const LIST: &str = "ordering-orders.list";

fn incremental_ws(sim: &RunningSimulator, hook: &Receiver, extra: &str) -> Workspace {
    interval_ws(sim, hook, "1m", extra)
}

fn interval_ws(sim: &RunningSimulator, hook: &Receiver, interval: &str, extra: &str) -> Workspace {
    Workspace::new(
        &orders_source("orders", &sim.base_url(), interval, extra),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    )
}

async fn list_calls(admin: &Admin) -> u64 {
    calls(&admin.stats().await, LIST)
}

#[tokio::test]
async fn a_quiet_cycle_costs_one_call_and_a_change_is_heard_without_a_full_listing() {
    let sim = simulator(1000).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = incremental_ws(&sim, &hook, "    incremental: {}\n");
    ws.once_ok().await;
    let full = list_calls(&admin).await;
    assert_eq!(
        full, 4,
        "the first cycle lists all 1,000 orders, 250 a page"
    );

    let token_calls = calls(&admin.stats().await, "token");
    ws.once_ok().await;
    assert_eq!(list_calls(&admin).await - full, 1, "a quiet cycle");
    assert_eq!(calls(&admin.stats().await, "token") - token_calls, 1);
    assert!(events_of(&hook).is_empty());

    let open = all_orders(&sim, "status=IN_PROGRESS").await;
    let id = open[0]["id"].as_str().unwrap();
    admin
        .patch(ORDERS_API, id, json!({"status": "COMPLETED"}))
        .await;
    let before = list_calls(&admin).await;
    ws.once_ok().await;
    assert_eq!(list_calls(&admin).await - before, 1);
    let events = events_of(&hook);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["data"]["order_id"], id);
    assert_eq!(events[0]["data"]["to"], "COMPLETED");
    assert_eq!(events[0]["data"]["closed"], true);
    sim.shutdown().await;
}

/// An order of the simulator with a given cursor.
fn order(id: &str, status: &str, updated_at: &str) -> Value {
    json!({"id": id, "status": status, "updatedAt": updated_at, "keyDates": {}})
}

#[tokio::test]
async fn orders_sharing_the_marks_cursor_across_a_page_boundary_are_all_read() {
    let sim = simulator(0).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    const NEWEST: &str = "2030-01-01T00:00:00.000Z";
    for id in ["A1", "B2", "C3"] {
        admin.add(ORDERS_API, order(id, "NEW", NEWEST)).await;
    }
    for i in 0..5 {
        let at = format!("2026-0{}-01T00:00:00.000Z", i + 1);
        admin
            .add(ORDERS_API, order(&format!("Z{i}"), "NEW", &at))
            .await;
    }
    // No overlap: only the tie itself carries the read past page one.
    let ws = incremental_ws(
        &sim,
        &hook,
        "    page_size: 2\n    incremental: { overlap: 0s }\n",
    );
    ws.once_ok().await;
    let before = list_calls(&admin).await;
    // A change that keeps the cursor as it was (the patch sets it itself).
    admin
        .patch(
            ORDERS_API,
            "C3",
            json!({"status": "IN_PROGRESS", "updatedAt": NEWEST}),
        )
        .await;
    ws.once_ok().await;
    let events = events_of(&hook);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["data"]["order_id"], "C3");
    // Page one (A1, B2) ends on the mark itself, so page two is read; it
    // ends older than the mark, so the cycle stops there.
    assert_eq!(list_calls(&admin).await - before, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn removals_and_orders_leaving_a_filtered_listing_wait_for_the_full_listing() {
    let sim = simulator(200).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let source = |full_every: &str| {
        format!(
            "    filters: {{ status: IN_PROGRESS }}\n    incremental: {{ full_every: {full_every} }}\n"
        )
    };
    let ws = incremental_ws(&sim, &hook, &source("1h"));
    ws.once_ok().await;
    let open = all_orders(&sim, "status=IN_PROGRESS").await;
    let (gone, closing) = (
        open[0]["id"].as_str().unwrap(),
        open[1]["id"].as_str().unwrap(),
    );
    admin.delete(ORDERS_API, gone).await;
    admin
        .patch(ORDERS_API, closing, json!({"status": "COMPLETED"}))
        .await;
    ws.once_ok().await;
    assert!(
        events_of(&hook).is_empty(),
        "an incremental cycle does not see orders leave: {:#?}",
        events_of(&hook)
    );

    // Once a full listing is due, its vanish step tells both.
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        config.replace(&source("1h"), &source("1s")),
    )
    .unwrap();
    eventually_async(
        "the full listing tells both",
        Duration::from_secs(30),
        || {
            let (ws, hook) = (&ws, &hook);
            async move {
                ws.once_ok().await;
                events_of(hook).len() >= 2
            }
        },
    )
    .await;
    let events = events_of(&hook);
    let by_order: HashMap<&str, &Value> = events
        .iter()
        .map(|e| (e["data"]["order_id"].as_str().unwrap(), e))
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(by_order[gone]["type"], "order.removed");
    assert_eq!(by_order[closing]["data"]["to"], "COMPLETED");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_order_without_a_readable_cursor_makes_the_cycle_a_full_one_said_once() {
    let sim = simulator(300).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = incremental_ws(&sim, &hook, "    incremental: {}\n");
    ws.once_ok().await;
    // Sorted newest first as text, "yesterday" comes before every date.
    admin.add(ORDERS_API, order("Y1", "NEW", "yesterday")).await;
    let gone = all_orders(&sim, "").await[5]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin.delete(ORDERS_API, &gone).await;
    let before = list_calls(&admin).await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert_eq!(said.matches("has no RFC 3339 time").count(), 1, "{said}");
    assert_eq!(list_calls(&admin).await - before, 2, "all 300 orders read");
    let events = events_of(&hook);
    let removed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "order.removed")
        .collect();
    assert_eq!(removed.len(), 1, "the vanish step ran: {events:#?}");
    assert_eq!(removed[0]["data"]["order_id"], gone.as_str());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_kill_between_pages_leaves_the_mark_behind_and_loses_no_change() {
    let sim = simulator(200).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = interval_ws(
        &sim,
        &hook,
        "1h",
        "    page_size: 5\n    watch: [/customerReference]\n    incremental: { overlap: 0s }\n",
    );
    ws.once_ok().await;
    // 30 changes, each stamped later than the one before: six pages of
    // changes, newest first.
    let changed: Vec<String> = all_orders(&sim, "")
        .await
        .iter()
        .take(30)
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &changed {
        admin
            .patch(
                ORDERS_API,
                id,
                json!({"customerReference": format!("#K-{id}")}),
            )
            .await;
    }
    admin.fault(json!({"latency_ms": 300})).await;
    let mut run = ws.spawn_run();
    // The first page is committed (its events are delivered) while the
    // later pages are still being read: kill it there.
    eventually("the first page's events", Duration::from_secs(30), || {
        !hook.delivered().is_empty()
    })
    .await;
    run.kill().await.unwrap();
    let told: HashSet<String> = events_of(&hook)
        .iter()
        .map(|e| e["data"]["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        told.len() < changed.len(),
        "the kill landed after the last page ({} of {} told)",
        told.len(),
        changed.len()
    );

    admin.clear_faults().await;
    ws.once_ok().await;
    let told: HashSet<String> = events_of(&hook)
        .iter()
        .map(|e| e["data"]["order_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: HashSet<String> = changed.into_iter().collect();
    assert_eq!(told, expected);
    sim.shutdown().await;
}

/// What the receiver believes of each order from its events alone
/// (`first_poll: notify` announces every order): its last status, or gone.
fn believed(hook: &Receiver) -> BTreeMap<String, String> {
    let mut last: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    let mut ids = HashSet::new();
    for r in hook.delivered() {
        // Duplicates come under the same webhook-id.
        if !ids.insert(r.header("webhook-id")) {
            continue;
        }
        let e = r.json();
        let d = &e["data"];
        let revision = d["revision"].as_u64().unwrap();
        let state = match e["type"].as_str().unwrap() {
            "order.removed" => None,
            _ => d["order"]["status"].as_str().map(str::to_owned),
        };
        let entry = last
            .entry(d["order_id"].as_str().unwrap().to_owned())
            .or_insert((0, None));
        if revision >= entry.0 {
            *entry = (revision, state);
        }
    }
    last.into_iter()
        .filter_map(|(id, (_, state))| Some((id, state?)))
        .collect()
}

#[tokio::test]
async fn under_churn_what_the_receiver_was_told_ends_as_the_simulators_state() {
    let mut sim = simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimOptions {
            orders: 300,
            churn: 30.0,
            seed: 11,
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    // Small pages, so scans span several pages while orders change under
    // them; a short overlap and frequent full listings; a budget that lets
    // a full listing of pages of 10 take well under a second.
    let ws = interval_ws(
        &sim,
        &hook,
        "1s",
        "    page_size: 10\n    max_requests_per_minute: 6000\n    first_poll: notify\n    incremental: { overlap: 1s, full_every: 4s }\n",
    );
    let mut run = ws.spawn_run();
    eventually_async(
        "churn made 80 changes to orders",
        Duration::from_secs(60),
        || {
            let admin = &admin;
            async move {
                admin
                    .changes()
                    .await
                    .iter()
                    .filter(|c| c["api"] == ORDERS_API)
                    .count()
                    >= 80
            }
        },
    )
    .await;
    sim.stop_churn().await;
    let truth: BTreeMap<String, String> = all_orders(&sim, "")
        .await
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_owned(),
                o["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    eventually(
        "the receiver agrees with the simulator",
        Duration::from_secs(60),
        || believed(&hook) == truth,
    )
    .await;
    terminate(&mut run, Duration::from_secs(20)).await;
    // Each order's revisions arrive without gaps.
    let mut revisions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for r in hook.delivered() {
        if ids.insert(r.header("webhook-id")) {
            let e = r.json();
            revisions
                .entry(e["data"]["order_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(e["data"]["revision"].as_u64().unwrap());
        }
    }
    for (id, revs) in &revisions {
        assert!(
            revs.windows(2).all(|w| w[1] == w[0] + 1),
            "order {id}: {revs:?}"
        );
    }
    sim.shutdown().await;
}
