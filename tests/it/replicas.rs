//! Two `orderwatch run` on one postgres store, through the real binary:
//! one leads the source (and says so), the other follows, is ready and
//! says who leads; each change is delivered once between them; when the
//! leader is killed (SIGKILL, no goodbye), the follower takes over within
//! the lease and tells the next change, once; a due date's due_soon and
//! overdue are told once each between the two; a leader thawed mid-cycle
//! after the other took over sends no more calls.

use crate::failover::{Requests, cycles, signal};
use crate::helpers::*;
use crate::pg;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

fn replica(base: &str, hook: &str, url: &str) -> Workspace {
    replica_with(base, hook, url, "")
}

/// `one` started and leading, then `two` started and following.
pub(crate) async fn lead_then_follow(
    one: &Workspace,
    two: &Workspace,
) -> (tokio::process::Child, tokio::process::Child) {
    let first = one.spawn_run();
    eventually("the first replica leading", Duration::from_secs(30), || {
        log_count(one, "leads source `tracking`") == 1
    })
    .await;
    let second = two.spawn_run();
    eventually(
        "the second replica following",
        Duration::from_secs(30),
        || log_count(two, "is polled by another orderwatch") == 1,
    )
    .await;
    (first, second)
}

/// A replica whose source has `extra` keys.
fn replica_with(base: &str, hook: &str, url: &str, extra: &str) -> Workspace {
    current_tracking_workspace(
        base,
        hook,
        extra,
        &format!("listen: 127.0.0.1:0\nstore: {{ backend: postgres, url: \"{url}\" }}\n"),
    )
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// How many times each event id reached the hook.
fn deliveries_by_id(hook: &Receiver) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in hook.delivered() {
        *out.entry(r.header("webhook-id")).or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn two_replicas_share_the_work_and_a_follower_takes_over_from_a_dead_leader() {
    let Some(url) = pg::fresh_database(
        "replicas::two_replicas_share_the_work_and_a_follower_takes_over_from_a_dead_leader",
    ) else {
        return;
    };
    let sim = simulator(20).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let (one, two) = (
        replica(&sim.base_url(), &hook.url, &url),
        replica(&sim.base_url(), &hook.url, &url),
    );
    let mut first = one.spawn_run();
    eventually("the first replica leading", Duration::from_secs(30), || {
        log_count(&one, "leads source `tracking`") == 1
    })
    .await;
    let second = two.spawn_run();
    eventually(
        "the second replica following",
        Duration::from_secs(30),
        || log_count(&two, "is polled by another orderwatch") == 1,
    )
    .await;
    let (health_one, health_two) = (health_addr(&one).await, health_addr(&two).await);
    eventually_async("the follower ready", Duration::from_secs(30), || async {
        get(&format!("http://{health_two}/readyz")).await.0 == 200
    })
    .await;
    let (_, metrics) = get(&format!("http://{health_two}/metrics")).await;
    assert!(
        metrics.contains("orderwatch_leader{source=\"tracking\"} 0"),
        "{metrics}"
    );
    let (_, metrics) = get(&format!("http://{health_one}/metrics")).await;
    assert!(
        metrics.contains("orderwatch_leader{source=\"tracking\"} 1"),
        "{metrics}"
    );

    let current = admin.ids(TRACKING, "status=Current").await;
    for id in &current[..3] {
        admin
            .patch("order-tracking", id, json!({"status": "Closed"}))
            .await;
    }
    eventually("three closings delivered", Duration::from_secs(30), || {
        deliveries_by_id(&hook).len() == 3
    })
    .await;

    // The leader dies without a word: its lease runs out, the follower
    // takes over and tells the next change.
    first.kill().await.expect("SIGKILL the leader");
    eventually("the follower taking over", Duration::from_secs(60), || {
        log_count(&two, "leads source `tracking`") == 1
    })
    .await;
    admin
        .patch("order-tracking", &current[3], json!({"status": "Closed"}))
        .await;
    eventually(
        "the next closing delivered",
        Duration::from_secs(30),
        || deliveries_by_id(&hook).len() == 4,
    )
    .await;
    stop_daemon(second).await;
    let told = deliveries_by_id(&hook);
    assert!(told.values().all(|n| *n == 1), "each once: {told:?}");
    let orders: Vec<String> = hook
        .delivered()
        .iter()
        .map(|r| {
            r.json()["data"]["order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for id in &current[..4] {
        assert_eq!(orders.iter().filter(|o| *o == id).count(), 1, "{orders:?}");
    }
    sim.shutdown().await;
}

/// A leader frozen (SIGSTOP) long enough for its lease to run out: the
/// follower takes over and tells the change; thawed, the former leader
/// finds it follows now, and nothing is told twice.
#[tokio::test]
async fn a_paused_leader_resumes_as_a_follower_and_tells_nothing_twice() {
    let Some(url) = pg::fresh_database(
        "replicas::a_paused_leader_resumes_as_a_follower_and_tells_nothing_twice",
    ) else {
        return;
    };
    let sim = simulator(20).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let (one, two) = (
        replica(&sim.base_url(), &hook.url, &url),
        replica(&sim.base_url(), &hook.url, &url),
    );
    let (first, second) = lead_then_follow(&one, &two).await;
    let pid = first.id().expect("the leader's pid") as libc::pid_t;
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    eventually("the follower taking over", Duration::from_secs(60), || {
        log_count(&two, "leads source `tracking`") == 1
    })
    .await;
    let current = admin.ids(TRACKING, "status=Current").await;
    admin
        .patch("order-tracking", &current[0], json!({"status": "Closed"}))
        .await;
    eventually(
        "the change told by the new leader",
        Duration::from_secs(30),
        || deliveries_by_id(&hook).len() == 1,
    )
    .await;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    eventually(
        "the former leader following",
        Duration::from_secs(30),
        || log_count(&one, "is polled by another orderwatch") >= 1,
    )
    .await;
    admin
        .patch("order-tracking", &current[1], json!({"status": "Closed"}))
        .await;
    eventually("the next change told", Duration::from_secs(30), || {
        deliveries_by_id(&hook).len() == 2
    })
    .await;
    stop_daemon(first).await;
    stop_daemon(second).await;
    let told = deliveries_by_id(&hook);
    assert!(told.values().all(|n| *n == 1), "each once: {told:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_due_date_is_told_once_between_two_replicas() {
    let Some(url) = pg::fresh_database("replicas::a_due_date_is_told_once_between_two_replicas")
    else {
        return;
    };
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let due_keys = "    due: { field: /keyDates/expectedAt, warn_before: 2s }\n";
    let (one, two) = (
        replica_with(&sim.base_url(), &hook.url, &url, due_keys),
        replica_with(&sim.base_url(), &hook.url, &url, due_keys),
    );
    let (first, second) = lead_then_follow(&one, &two).await;
    let current = admin.ids(TRACKING, "status=Current").await;
    let at = std::time::SystemTime::now() + Duration::from_secs(4);
    let due = humantime::format_rfc3339_seconds(at).to_string();
    admin
        .patch(
            "order-tracking",
            &current[0],
            json!({"keyDates": {"expectedAt": due}}),
        )
        .await;
    eventually("order.overdue delivered", Duration::from_secs(60), || {
        !delivered_of_type(&hook, "order.overdue").is_empty()
    })
    .await;
    // A little longer: nothing more comes of it from either replica.
    let one_more = log_count(&one, "poll cycle done") + 2;
    eventually("two more cycles", Duration::from_secs(30), || {
        log_count(&one, "poll cycle done") >= one_more
    })
    .await;
    stop_daemon(second).await;
    stop_daemon(first).await;
    assert_eq!(delivered_of_type(&hook, "order.due_soon").len(), 1);
    assert_eq!(delivered_of_type(&hook, "order.overdue").len(), 1);
    assert_eq!(log_count(&two, "the timer could not tell"), 0);
    assert_eq!(log_count(&two, "timer fired"), 0);
    sim.shutdown().await;
}

/// A leader frozen (SIGSTOP) just after its cycle's first call, and thawed
/// once the other replica took over: it finds its lease ran out before its
/// next call, sends none, says it gave the cycle up, and follows. From the
/// simulator's side, no call of its came inside the new leader's cycles.
#[tokio::test]
async fn a_leader_thawed_mid_cycle_gives_the_cycle_up_before_its_next_call() {
    let Some(url) = pg::fresh_database(
        "replicas::a_leader_thawed_mid_cycle_gives_the_cycle_up_before_its_next_call",
    ) else {
        return;
    };
    let sim = simulator(60).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let pages = "    page_size: 10\n";
    let (one, two) = (
        replica_with(&sim.base_url(), &hook.url, &url, pages),
        replica_with(&sim.base_url(), &hook.url, &url, pages),
    );
    let (first, second) = lead_then_follow(&one, &two).await;
    // Six pages of 200 ms each: the cycle is mid-way for over a second.
    admin.fault(json!({"latency_ms": 200})).await;
    let mut requests = Requests::new(&sim);
    requests.refresh().await;
    let before = requests.last_seq();
    requests.next_cycle(before, Duration::from_secs(30)).await;
    signal(&first, libc::SIGSTOP);
    eventually("the follower taking over", Duration::from_secs(60), || {
        log_count(&two, "leads source `tracking`") == 1
    })
    .await;
    requests.refresh().await;
    let now = requests.last_seq();
    requests.next_cycle(now, Duration::from_secs(30)).await;
    signal(&first, libc::SIGCONT);
    eventually(
        "the thawed leader giving its cycle up",
        Duration::from_secs(30),
        || log_count(&one, "lost its lease mid-cycle") == 1,
    )
    .await;
    eventually(
        "the thawed leader following",
        Duration::from_secs(30),
        || log_count(&one, "is polled by another orderwatch") >= 1,
    )
    .await;
    stop_daemon(first).await;
    stop_daemon(second).await;
    requests.refresh().await;
    let cycles = cycles(&requests.calls);
    assert!(cycles.overlaps.is_empty(), "{:#?}", cycles.overlaps);
    assert_eq!(cycles.takeovers, 1, "{cycles:?}");
    assert_eq!(log_count(&one, "poll cycle failed"), 0);
    sim.shutdown().await;
}
