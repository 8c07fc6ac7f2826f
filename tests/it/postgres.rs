//! orderwatch on the postgres store, through the real binary: `once` and
//! `run` against the simulator and a receiver (a silent baseline, a change
//! delivered once and signed, a restart that announces nothing again),
//! `orders`, `events` and `dead-letters list|replay` answered from the
//! database, and a database that is down at start (a plain error without
//! its password) or goes away mid-run (the cycles fail plainly, then
//! carry on by themselves when it is back), a server of its own stopped
//! and started again under a running orderwatch, `run` killed and started
//! again (it leads once its old lease ran out), a dead replica's claimed
//! delivery made by the other once its claim ran out, and the `store`
//! key's checks.
//!
//! The server is `pg.rs`'s; without one these tests say they are skipped
//! (but the one whose database is down at start needs none).

use crate::helpers::*;
use crate::pg;
use serde_json::json;
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
/// The tests' server trusts local connections, so any password works: it
/// is here to be kept out of every message.
const PASSWORD: &str = "pg-Pa55word-kept-out-of-logs";

fn with_password(url: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("the database URL parses");
    parsed.set_password(Some(PASSWORD)).expect("a password");
    parsed.to_string()
}

fn postgres_workspace(base: &str, hook: &str, url: &str) -> Workspace {
    current_tracking_workspace(
        base,
        hook,
        "",
        &format!("listen: 127.0.0.1:0\nstore: {{ backend: postgres, url: \"{url}\" }}\n"),
    )
}

fn stdout_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn once_and_run_on_postgres_tell_each_change_once_and_answer_the_cli() {
    let Some(url) = pg::fresh_database(
        "postgres::once_and_run_on_postgres_tell_each_change_once_and_answer_the_cli",
    ) else {
        return;
    };
    let url = with_password(&url);
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = postgres_workspace(&sim.base_url(), &hook.url, &url);

    ws.once_ok().await;
    assert!(hook.received().is_empty(), "the baseline is silent");
    let current = admin.ids(TRACKING, "status=Current").await;
    let out = ws.run(&["orders", "list", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout_lines(&out).len(), current.len(), "{}", text(&out));
    assert!(
        !ws.dir.path().join("data").exists(),
        "nothing was written to state_dir"
    );

    admin
        .patch("order-tracking", &current[0], json!({"status": "Closed"}))
        .await;
    ws.once_ok().await;
    let got = hook.delivered();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].json()["data"]["order_id"], current[0].as_str());
    assert_eq!(got[0].json()["data"]["to"], "Closed");
    assert!(verify_signature(&got[0], WEBHOOK_SECRET));
    let out = ws.run(&["events", "--json"]).await;
    let events = stdout_lines(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains(&got[0].header("webhook-id")),
        "{events:?}"
    );
    let out = ws.run(&["orders", "show", &current[0]]).await;
    assert!(text(&out).contains("Closed"), "{}", text(&out));

    // Refused for good: a dead letter, listed and replayed from postgres.
    hook.script(&[410]);
    admin
        .patch("order-tracking", &current[1], json!({"status": "Closed"}))
        .await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = ws.run(&["dead-letters", "list", "--json"]).await;
    let dead = stdout_lines(&out);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains(&current[1]), "{dead:?}");
    let out = ws.run(&["dead-letters", "replay", "--all"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    ws.once_ok().await;
    assert_eq!(hook.delivered().len(), 2);
    let out = ws.run(&["dead-letters", "list", "--json"]).await;
    assert!(stdout_lines(&out).is_empty(), "{}", text(&out));

    // The daemon: the next change once; a restart announces nothing again.
    let running = ws.spawn_run();
    health_addr(&ws).await;
    admin
        .patch("order-tracking", &current[2], json!({"status": "Closed"}))
        .await;
    eventually(
        "the change delivered by run",
        Duration::from_secs(30),
        || hook.delivered().len() == 3,
    )
    .await;
    stop_daemon(running).await;
    ws.once_ok().await;
    assert_eq!(hook.delivered().len(), 3, "nothing told twice");
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    assert!(!log.contains(PASSWORD), "{log}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_postgres_that_is_down_at_start_is_a_plain_error_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("postgres://orderwatch:{PASSWORD}@127.0.0.1:{port}/orders_db");
    let sim = simulator(5).await;
    let hook = Receiver::start().await;
    let ws = postgres_workspace(&sim.base_url(), &hook.url, &url);
    for args in [
        &["once"][..],
        &["orders", "list"],
        &["dead-letters", "list"],
    ] {
        let out = ws.run(args).await;
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains(&format!("postgres://127.0.0.1:{port}/orders_db")),
            "names host, port and database: {said}"
        );
        assert!(said.contains("cannot be reached"), "{said}");
        assert!(!said.contains(PASSWORD), "{said}");
        assert!(!said.contains("orderwatch:"), "no user either: {said}");
        assert!(!said.contains("panicked"), "{said}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_postgres_that_goes_away_mid_run_fails_the_cycles_plainly_then_carries_on() {
    let Some(url) = pg::fresh_database(
        "postgres::a_postgres_that_goes_away_mid_run_fails_the_cycles_plainly_then_carries_on",
    ) else {
        return;
    };
    let proxy = pg::Proxy::start(&url).await;
    let sim = simulator(20).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = postgres_workspace(
        &sim.base_url(),
        &hook.url,
        &with_password(&proxy.url_through(&url)),
    );
    let running = ws.spawn_run();
    eventually("the baseline committed", Duration::from_secs(30), || {
        pg::try_count_at(&url, "SELECT count(*) FROM baselines") == Ok(1)
    })
    .await;

    proxy.cut();
    let current = admin.ids(TRACKING, "status=Current").await;
    admin
        .patch("order-tracking", &current[0], json!({"status": "Closed"}))
        .await;
    eventually(
        "a cycle failing on the store",
        Duration::from_secs(30),
        || log_count(&ws, "cannot be reached") > 0,
    )
    .await;
    assert!(hook.received().is_empty(), "nothing told while it is away");

    proxy.restore();
    eventually(
        "the change delivered after all",
        Duration::from_secs(60),
        || hook.delivered().len() == 1,
    )
    .await;
    assert_eq!(
        hook.delivered()[0].json()["data"]["order_id"],
        current[0].as_str()
    );
    assert!(log_count(&ws, "the store can be reached again") > 0);
    stop_daemon(running).await;
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    assert!(!log.contains(PASSWORD), "{log}");
    assert_eq!(hook.delivered().len(), 1, "once");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_store_key_is_checked_before_anything_is_opened() {
    let sim = simulator(1).await;
    let hook = Receiver::start().await;
    for (store, says) in [
        ("{ backend: postgres }", "store.url"),
        ("{ backend: sled, url: \"postgres://h/db\" }", "store.url"),
        ("{ backend: mysql }", "store.backend"),
        (
            "{ backend: postgres, url: \"https://u:Pw-0ut-of-sight@h/db\" }",
            "store.url",
        ),
        ("{ engine: sled }", "store.engine"),
    ] {
        let ws = current_tracking_workspace(
            &sim.base_url(),
            &hook.url,
            "",
            &format!("store: {store}\n"),
        );
        let out = ws.run(&["check"]).await;
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{store}: {said}");
        assert!(said.contains(says), "{store}: {said}");
        assert!(!said.contains("Pw-0ut-of-sight"), "{said}");
    }
    sim.shutdown().await;
}

/// `run` killed (SIGKILL: its lease stays behind) and started again: once
/// the old lease ran out, the new process leads and tells the change made
/// meanwhile, once, under its deterministic id.
#[tokio::test]
async fn run_killed_and_started_again_carries_on_after_its_old_lease() {
    let Some(url) =
        pg::fresh_database("postgres::run_killed_and_started_again_carries_on_after_its_old_lease")
    else {
        return;
    };
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = postgres_workspace(&sim.base_url(), &hook.url, &url);
    let mut running = ws.spawn_run();
    eventually("the baseline committed", Duration::from_secs(30), || {
        pg::try_count_at(&url, "SELECT count(*) FROM baselines") == Ok(1)
    })
    .await;
    running.kill().await.expect("SIGKILL");
    let current = admin.ids(TRACKING, "status=Current").await;
    admin
        .patch("order-tracking", &current[0], json!({"status": "Closed"}))
        .await;
    let again = ws.spawn_run();
    eventually(
        "the change told after the restart",
        Duration::from_secs(60),
        || hook.delivered().len() == 1,
    )
    .await;
    stop_daemon(again).await;
    assert_eq!(hook.delivered().len(), 1);
    assert_eq!(
        pg::count_at(&url, "SELECT count(*) FROM leases"),
        0,
        "a clean stop lets go of its leases"
    );
    sim.shutdown().await;
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// `url` (a cluster's admin URL) for its database `db`, with [`PASSWORD`].
fn database_url(url: &str, db: &str) -> String {
    let mut parsed = url::Url::parse(&with_password(url)).expect("the database URL parses");
    parsed.set_path(&format!("/{db}"));
    parsed.to_string()
}

/// The server itself stopped (`pg_ctl stop -m fast`) for several cycles
/// while orders change, then started again: each cycle fails with one
/// plain line naming the store (no password, no panic), `/readyz` is 503
/// meanwhile, and the same process carries on once the server is back,
/// telling each change made meanwhile once, and nothing else.
#[tokio::test]
async fn a_postgres_restarted_mid_run_loses_nothing_and_invents_nothing() {
    let Some(cluster) = pg::private_cluster(
        "postgres::a_postgres_restarted_mid_run_loses_nothing_and_invents_nothing",
    ) else {
        return;
    };
    pg::admin_sql(&cluster.url(), "CREATE DATABASE orders").expect("a database");
    let url = database_url(&cluster.url(), "orders");
    let store_named = format!(
        "the postgres store postgres://127.0.0.1:{}/orders",
        cluster.port
    );
    let sim = simulator(20).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = postgres_workspace(&sim.base_url(), &hook.url, &url);
    let mut running = ws.spawn_run();
    let health = health_addr(&ws).await;
    let readyz = format!("http://{health}/readyz");
    eventually("the baseline committed", Duration::from_secs(30), || {
        pg::try_count_at(&url, "SELECT count(*) FROM baselines") == Ok(1)
    })
    .await;
    let current = admin.ids(TRACKING, "status=Current").await;
    assert!(current.len() >= 4, "{current:?}");
    admin
        .patch("order-tracking", &current[0], json!({"status": "Closed"}))
        .await;
    eventually(
        "the first change delivered",
        Duration::from_secs(30),
        || hook.delivered().len() == 1,
    )
    .await;
    eventually_async("ready before the stop", Duration::from_secs(30), || async {
        get(&readyz).await.0 == 200
    })
    .await;
    let seen_before = admin.changes().await.len();

    cluster.stop().expect("pg_ctl stop -m fast");
    let failed_before = log_count(&ws, "poll cycle failed");
    // One order closed per failed cycle, over several of them.
    for (n, id) in current[1..4].iter().enumerate() {
        admin
            .patch("order-tracking", id, json!({"status": "Closed"}))
            .await;
        eventually(
            "a cycle failing on the store",
            Duration::from_secs(30),
            || log_count(&ws, "poll cycle failed") > failed_before + n + 1,
        )
        .await;
    }
    let (status, body) = get(&readyz).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store: failing for"), "{body}");
    assert!(body.contains(&store_named), "{body}");
    assert!(!body.contains(PASSWORD), "{body}");
    assert_eq!(hook.delivered().len(), 1, "nothing told while it is down");
    assert!(
        running.try_wait().expect("its status").is_none(),
        "orderwatch keeps running while the store is down"
    );

    cluster.start().expect("pg_ctl start");
    eventually(
        "the changes made meanwhile delivered",
        Duration::from_secs(60),
        || hook.delivered().len() >= 4,
    )
    .await;
    // Two more full cycles: nothing else comes.
    let done = log_count(&ws, "poll cycle done");
    eventually("two more cycles", Duration::from_secs(30), || {
        log_count(&ws, "poll cycle done") >= done + 2
    })
    .await;
    eventually_async("ready again", Duration::from_secs(30), || async {
        get(&readyz).await.0 == 200
    })
    .await;
    assert!(
        running.try_wait().expect("its status").is_none(),
        "the same process carried on"
    );
    stop_daemon(running).await;

    // What the simulator changed while the store was down, against what
    // was told after: each change once, under its own id, nothing else.
    let changed_meanwhile: std::collections::BTreeSet<String> = admin.changes().await
        [seen_before..]
        .iter()
        .filter(|c| c["api"] == "order-tracking")
        .map(|c| c["id"].as_str().expect("an id").to_owned())
        .collect();
    let expected: std::collections::BTreeSet<String> = current[1..4].iter().cloned().collect();
    assert_eq!(changed_meanwhile, expected);
    let got = hook.delivered();
    assert_eq!(got.len(), 4, "each change once");
    let told: Vec<(String, String, String)> = got[1..]
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["data"]["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                body["data"]["to"].as_str().unwrap_or_default().to_owned(),
                r.header("webhook-id"),
            )
        })
        .collect();
    let told_orders: std::collections::BTreeSet<String> =
        told.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(told_orders, expected, "{told:?}");
    assert!(told.iter().all(|(_, to, _)| to == "Closed"), "{told:?}");
    let ids: std::collections::BTreeSet<String> =
        got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 4, "{told:?}");
    assert!(got.iter().all(|r| verify_signature(r, WEBHOOK_SECRET)));

    // The log: one plain line per failed cycle, naming the store only.
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("poll cycle failed"))
        .collect();
    assert!(failed.len() >= 3, "{log}");
    for line in &failed {
        assert!(line.contains(&store_named), "{line}");
        assert!(
            line.contains("cannot be reached") || line.contains("cannot be used right now"),
            "{line}"
        );
    }
    assert!(log.contains("the store can be reached again"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    sim.shutdown().await;
}

/// Two replicas; the one whose delivery is in flight (the receiver slow
/// to answer) outlives its claim's length, renewing it, and the other
/// leaves it alone; then it is killed (SIGKILL): the other delivers the
/// entry once the claim ran out, under the same webhook-id, and the
/// order's next event only after it.
#[tokio::test]
async fn a_dead_replica_s_claimed_delivery_is_made_by_the_other_after_its_claim() {
    let Some(url) = pg::fresh_database(
        "postgres::a_dead_replica_s_claimed_delivery_is_made_by_the_other_after_its_claim",
    ) else {
        return;
    };
    /// The store's claim on a due entry (src/store/postgres/write.rs).
    const CLAIM: Duration = Duration::from_secs(15);
    let sim = simulator(10).await;
    let admin = Admin::new(&sim);
    // Slower than the claim.
    let hook = ArrivalRecorder::start(Duration::from_secs(25)).await;
    // `/note` watched: its change is an `order.updated`. The sink waits
    // longer than the receiver takes.
    let replica = || {
        Workspace::new(
            &source_yaml(
                "tracking",
                "order-tracking",
                &sim.base_url(),
                "    filters: { status: Current }\n    watch: [/note]\n",
            ),
            &format!("{}    timeout: 40s\n", webhook_sink_yaml("hook", &hook.url)),
            &format!("store: {{ backend: postgres, url: \"{url}\" }}\n"),
        )
    };
    let (one, two) = (replica(), replica());
    let (first, second) = crate::replicas::lead_then_follow(&one, &two).await;
    eventually("the baseline committed", Duration::from_secs(30), || {
        pg::try_count_at(&url, "SELECT count(*) FROM baselines") == Ok(1)
    })
    .await;
    let current = admin.ids(TRACKING, "status=Current").await;
    let order = current[0].clone();
    admin
        .patch("order-tracking", &order, json!({"note": "first"}))
        .await;
    eventually("the first event in flight", Duration::from_secs(30), || {
        hook.arrivals().len() == 1
    })
    .await;
    let started = hook.arrivals()[0].at;
    let first_id = hook.arrivals()[0].headers["webhook-id"].clone();
    // Its claimant, by the process id in its holder name.
    let claimant = pg::count_at(
        &url,
        "SELECT substring(claimed_by from '/([0-9]+)/[0-9a-f]+$')::bigint FROM outbox
         WHERE claimed_by IS NOT NULL",
    );
    admin
        .patch("order-tracking", &order, json!({"status": "Closed"}))
        .await;
    eventually(
        "the order's next event queued behind it",
        Duration::from_secs(30),
        || pg::count_at(&url, "SELECT count(*) FROM outbox") == 2,
    )
    .await;
    // Past the claim's length, with its claimant alive: nobody else tried.
    tokio::time::sleep(
        (started + CLAIM + Duration::from_secs(3))
            .saturating_duration_since(std::time::Instant::now()),
    )
    .await;
    assert_eq!(hook.arrivals().len(), 1, "a live replica's claim holds");

    hook.set_delay(Duration::ZERO);
    let (mut dead, survivor, survivor_ws) = if i64::from(first.id().expect("a pid")) == claimant {
        (first, second, &two)
    } else {
        assert_eq!(i64::from(second.id().expect("a pid")), claimant);
        (second, first, &one)
    };
    dead.kill().await.expect("SIGKILL");
    let killed = std::time::Instant::now();
    eventually(
        "the entry delivered by the other replica",
        Duration::from_secs(60),
        || hook.arrivals().len() == 3,
    )
    .await;
    eventually("the outbox emptied", Duration::from_secs(30), || {
        pg::count_at(&url, "SELECT count(*) FROM outbox") == 0
    })
    .await;
    stop_daemon(survivor).await;

    let arrivals = hook.arrivals();
    assert_eq!(arrivals.len(), 3, "nothing else was sent");
    let kinds: Vec<(String, String)> = arrivals
        .iter()
        .map(|a| {
            let body: serde_json::Value = serde_json::from_slice(&a.body).expect("JSON");
            (
                body["type"].as_str().unwrap_or_default().to_owned(),
                a.headers["webhook-id"]
                    .to_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let first_id = first_id.to_str().unwrap_or_default().to_owned();
    assert_eq!(kinds[0], ("order.updated".to_owned(), first_id.clone()));
    assert_eq!(
        kinds[1], kinds[0],
        "the same delivery, the same id: {kinds:?}"
    );
    assert_eq!(kinds[2].0, "order.status_changed", "{kinds:?}");
    assert_ne!(kinds[2].1, first_id, "{kinds:?}");
    // Taken over only once the dead replica's claim ran out: it renewed
    // it until its death, so no sooner than a claim's length less a
    // renewal's period after it, and never before the claim first made.
    assert!(
        arrivals[1].at >= killed + CLAIM - Duration::from_secs(5)
            && arrivals[1].at >= started + CLAIM,
        "retried {:?} after the kill",
        arrivals[1].at - killed
    );
    assert!(arrivals[2].at >= arrivals[1].at, "in order per order");
    assert!(
        log_count(survivor_ws, "poll cycle failed") == 0,
        "the survivor's cycles all went through"
    );
    sim.shutdown().await;
}

/// The server with `ssl = on` and a certificate made here: with
/// `sslmode=require` and that certificate named as the CA, orderwatch's
/// connections are encrypted (the server's `pg_stat_ssl` says so) and a
/// change is delivered; with another CA named, the connection is refused
/// with an error that says why and names no password.
#[tokio::test]
async fn tls_to_postgres_trusts_the_named_ca_and_refuses_another() {
    let Some(cluster) =
        pg::private_cluster("postgres::tls_to_postgres_trusts_the_named_ca_and_refuses_another")
    else {
        return;
    };
    let server =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("a certificate");
    cluster
        .serve_tls(&server.cert.pem(), &server.signing_key.serialize_pem())
        .expect("the server with TLS");
    pg::admin_sql(&cluster.url(), "CREATE DATABASE orders").expect("a database");
    let certs = tempfile::tempdir().expect("a temp dir");
    let (ca, wrong) = (certs.path().join("ca.pem"), certs.path().join("wrong.pem"));
    std::fs::write(&ca, server.cert.pem()).expect("write the CA");
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("another");
    std::fs::write(&wrong, other.cert.pem()).expect("write the other CA");
    let url = |root: &std::path::Path| {
        format!(
            "{}?sslmode=require&sslrootcert={}",
            database_url(&cluster.url(), "orders"),
            root.display()
        )
    };
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;

    let ws = postgres_workspace(&sim.base_url(), &hook.url, &url(&ca));
    let running = ws.spawn_run();
    let plain = database_url(&cluster.url(), "orders");
    eventually("the baseline committed", Duration::from_secs(30), || {
        pg::try_count_at(&plain, "SELECT count(*) FROM baselines") == Ok(1)
    })
    .await;
    let of_orderwatch = |ssl: bool| {
        pg::count_at(
            &cluster.url(),
            &format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = 'orderwatch' AND s.ssl = {ssl}"
            ),
        )
    };
    assert!(
        of_orderwatch(true) >= 1,
        "orderwatch's connections are encrypted"
    );
    assert_eq!(of_orderwatch(false), 0, "and none is not");
    let current = admin.ids(TRACKING, "status=Current").await;
    admin
        .patch("order-tracking", &current[0], json!({"status": "Closed"}))
        .await;
    eventually("the change delivered", Duration::from_secs(30), || {
        hook.delivered().len() == 1
    })
    .await;
    stop_daemon(running).await;

    let ws = postgres_workspace(&sim.base_url(), &hook.url, &url(&wrong));
    let out = ws.run(&["once"]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "the postgres store postgres://127.0.0.1:{}/orders cannot be reached",
            cluster.port
        )),
        "{said}"
    );
    assert!(said.contains("certificate"), "{said}");
    assert!(said.contains("sslrootcert"), "says what to do: {said}");
    assert!(!said.contains(PASSWORD), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    assert_eq!(hook.delivered().len(), 1, "nothing more told");
    sim.shutdown().await;
}
