//! A full disk under the store, through the real binary, on a small tmpfs
//! each test mounts for itself (and unmounts, also when it fails).
//!
//! Mounting needs root (or CAP_SYS_ADMIN): where it is not permitted, these
//! tests say "skipped: ..." on stderr and pass, unless
//! `ORDERWATCH_DISK_TESTS=1` is set (as CI does), which makes a skip a
//! failure. One case needs no mount: a snapshot file sled began and could
//! not finish, as a full disk leaves it, is made by hand.

use crate::helpers::*;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const DISK_FULL: &str = "the disk holding it is full";

/// A tmpfs of a few MiB, mounted for one test.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None`, saying why, where mounting is not permitted.
    fn mount(test: &str) -> Option<SmallDisk> {
        Self::mount_with(test, "size=8M")
    }

    fn mount_with(test: &str, options: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&mount)
            .output();
        let reason = match out {
            Ok(o) if o.status.success() => {
                return Some(SmallDisk { mount, _dir: dir });
            }
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => format!("cannot run mount: {e}"),
        };
        assert!(
            std::env::var("ORDERWATCH_DISK_TESTS").as_deref() != Ok("1"),
            "{test}: ORDERWATCH_DISK_TESTS=1 but a tmpfs cannot be mounted: {reason}"
        );
        // Written to stderr itself: the test harness captures `eprintln!`
        // of a passing test, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipped: {test}: cannot mount a small tmpfs here ({reason}); run as root, or set ORDERWATCH_DISK_TESTS=1 to make this a failure"
        );
        None
    }

    fn state_dir(&self) -> PathBuf {
        self.mount.join("data")
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("filler")
    }

    /// Write a file until the disk has no room left.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        for chunk in [64 * 1024, 4096, 1] {
            let bytes = vec![0xA5u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = std::process::Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.mount).status().is_ok_and(|s| s.success())
        };
        // Lazily when a process (a daemon being killed) still has it open.
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.mount.display());
        }
    }
}

/// A workspace whose store lives on `disk`.
fn workspace_on(disk: &SmallDisk, base: &str, hook: &str, rest: &str) -> Workspace {
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            base,
            "    filters: { status: Current }\n",
        ),
        // Long enough for a receiver that holds its answer while the disk
        // fills.
        &format!("{}    timeout: 300s\n", webhook_sink_yaml("hook", hook)),
        rest,
    );
    ws.set_state_dir(&disk.state_dir());
    ws
}

/// A baseline, three orders closed, then a cycle whose receiver refuses
/// everything: three notifications wait in the outbox, and the store's log
/// has grown past its last snapshot, so the next open writes one.
async fn three_waiting(admin: &Admin, ws: &Workspace, hook: &Receiver) -> Vec<String> {
    ws.once_ok().await;
    let closed: Vec<String> = admin.ids(TRACKING, "status=Current").await[..3].to_vec();
    for id in &closed {
        admin
            .patch("order-tracking", id, json!({"status": "Closed"}))
            .await;
    }
    hook.script(&[503; 500]);
    let out = ws.run(&["once", "--drain-timeout", "300ms"]).await;
    assert_eq!(out.status.code(), Some(3), "queued: {}", text(&out));
    closed
}

/// After the disk is freed, `once` delivers each waiting notification,
/// under the id it was first tried with.
async fn once_delivers(ws: &Workspace, hook: &Receiver, closed: &[String]) {
    let tried: std::collections::HashSet<String> = hook
        .received()
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    hook.clear_script();
    ws.once_ok().await;
    let mut got: Vec<String> = hook
        .delivered()
        .iter()
        .map(|r| {
            assert!(tried.contains(&r.header("webhook-id")), "same id");
            r.json()["data"]["order_id"].as_str().unwrap().to_owned()
        })
        .collect();
    got.sort();
    let mut want = closed.to_vec();
    want.sort();
    assert_eq!(got, want, "every waiting notification, once");
}

#[tokio::test]
async fn every_command_on_a_full_disk_leaves_the_store_openable() {
    let Some(disk) = SmallDisk::mount("every_command_on_a_full_disk_leaves_the_store_openable")
    else {
        return;
    };
    let sim = simulator(40).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = workspace_on(&disk, &sim.base_url(), &hook.url, "");
    let closed = three_waiting(&admin, &ws, &hook).await;

    disk.fill();
    let mut refused = 0;
    for args in [
        &["orders", "list"][..],
        &["events"][..],
        &["dead-letters", "list"][..],
        &["once"][..],
        &["orders", "list"][..],
    ] {
        let out = ws.run(args).await;
        let all = text(&out);
        assert!(!all.contains("panicked"), "{args:?}: {all}");
        if out.status.code() != Some(0) {
            assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
            assert!(
                all.contains(DISK_FULL) && !all.contains("salvage"),
                "{args:?}: says the disk is full, not that the store is damaged: {all}"
            );
            refused += 1;
        }
    }
    // `run` too: it cannot open the store either, and says so.
    let mut daemon = ws.spawn_run();
    let status = match tokio::time::timeout(Duration::from_secs(60), daemon.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => terminate(&mut daemon, Duration::from_secs(30)).await,
    };
    let log = std::fs::read_to_string(ws.log_path()).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    if !status.success() {
        assert!(log.contains(DISK_FULL) && !log.contains("salvage"), "{log}");
        refused += 1;
    }
    assert!(refused > 0, "the full disk refused at least one open");

    disk.free();
    once_delivers(&ws, &hook, &closed).await;
    sim.shutdown().await;
}

/// A disk with no room for even the store's directory (tmpfs counts files
/// and directories too): `once` says the disk is full, and does not call
/// for salvage; with room, it creates the store and takes its baseline.
#[tokio::test]
async fn a_new_store_on_a_full_disk_says_the_disk_is_full() {
    let Some(disk) = SmallDisk::mount_with(
        "a_new_store_on_a_full_disk_says_the_disk_is_full",
        "size=8M,nr_inodes=16",
    ) else {
        return;
    };
    let sim = simulator(10).await;
    let hook = Receiver::start().await;
    let ws = workspace_on(&disk, &sim.base_url(), &hook.url, "");
    let taken: Vec<PathBuf> = (0..)
        .map(|i| disk.mount.join(format!("taken-{i}")))
        .take_while(|p| std::fs::create_dir(p).is_ok())
        .collect();
    assert!(!taken.is_empty());
    let out = ws.run(&["once"]).await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains(DISK_FULL) && !all.contains("salvage"), "{all}");

    for p in &taken {
        std::fs::remove_dir(p).unwrap();
    }
    ws.once_ok().await;
    sim.shutdown().await;
}

/// What sled leaves when a full disk stops it writing a snapshot (a
/// zero-byte `snap.<LSN>.generating`, named after every finished one), made
/// by hand: no command calls the store corrupt, salvage copies it, and the
/// waiting notifications are delivered.
#[tokio::test]
async fn a_snapshot_sled_could_not_finish_does_not_make_the_store_corrupt() {
    let sim = simulator(40).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "", "");
    let closed = three_waiting(&admin, &ws, &hook).await;
    let data = ws.dir.path().join("data");
    let leftover = data.join("snap.7FFFFFFFFFFFFFFF.generating");
    std::fs::write(&leftover, b"").unwrap();

    // Salvage never changes the old store: the file is cleared in its copy.
    let to = ws.dir.path().join("salvaged");
    let out = ws
        .run(&["store", "salvage", "--to", to.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("0 record(s) lost"), "{}", text(&out));
    assert!(leftover.exists(), "the old store is not changed");

    let out = ws.run(&["orders", "list"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!leftover.exists(), "the unfinished snapshot is gone");
    once_delivers(&ws, &hook, &closed).await;
    sim.shutdown().await;
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// A daemon on `disk` past its first poll, with its health address.
async fn daemon_on(
    disk: &SmallDisk,
    sim: &orderwatch_simulator::RunningSimulator,
    hook_url: &str,
) -> (Workspace, tokio::process::Child, String) {
    let ws = workspace_on(disk, &sim.base_url(), hook_url, "listen: 127.0.0.1:0\n");
    let daemon = ws.spawn_run();
    let addr = health_addr(&ws).await;
    eventually("the first poll", Duration::from_secs(30), || {
        log_count(&ws, "poll cycle done") > 0
    })
    .await;
    (ws, daemon, format!("http://{addr}"))
}

/// Fill the disk, close `closing` orders, and grow every open order (a
/// large field no one watches) until the store's log needs room it cannot
/// get and `/readyz` says so.
async fn fill_until_the_store_fails(
    disk: &SmallDisk,
    admin: &Admin,
    base: &str,
    closing: usize,
) -> Vec<String> {
    disk.fill();
    let open = admin.ids(TRACKING, "status=Current").await;
    let (closed, growing) = open.split_at(closing);
    for id in closed {
        admin
            .patch("order-tracking", id, json!({"status": "Closed"}))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 0.. {
        assert!(Instant::now() < deadline, "the store never ran out of room");
        let note = format!("{round}").repeat(8000);
        for id in growing {
            admin
                .patch("order-tracking", id, json!({"note": note}))
                .await;
        }
        // Each round gives the daemon a few polls to write it.
        let round_ends = Instant::now() + Duration::from_secs(3);
        while Instant::now() < round_ends {
            if get(&format!("{base}/readyz"))
                .await
                .1
                .contains("store: failing")
            {
                return closed.to_vec();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unreachable!()
}

#[tokio::test]
async fn run_on_a_disk_that_fills_fails_plainly_and_recovers_by_itself() {
    let Some(disk) =
        SmallDisk::mount("run_on_a_disk_that_fills_fails_plainly_and_recovers_by_itself")
    else {
        return;
    };
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let (ws, mut daemon, base) = daemon_on(&disk, &sim, &hook.url).await;
    let closed = fill_until_the_store_fails(&disk, &admin, &base, 3).await;

    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("store: failing") && body.contains(DISK_FULL),
        "{body}"
    );
    // Alive, and saying what is wrong: a restart would not give it room.
    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("store: failing") && body.contains(DISK_FULL),
        "{body}"
    );
    eventually("a poll failing plainly", Duration::from_secs(30), || {
        log_count(
            &ws,
            &format!("poll cycle failed: the store cannot be written: {DISK_FULL}"),
        ) > 0
    })
    .await;

    disk.free();
    eventually_async("healthy again", Duration::from_secs(60), || async {
        get(&format!("{base}/healthz")).await.1 == "ok\n"
    })
    .await;
    eventually("every closing delivered", Duration::from_secs(60), || {
        let got: std::collections::HashSet<String> = hook
            .delivered()
            .iter()
            .map(|r| {
                r.json()["data"]["order_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        closed.iter().all(|id| got.contains(id))
    })
    .await;
    let mut per_id: std::collections::BTreeMap<String, usize> = Default::default();
    for r in hook.delivered() {
        *per_id.entry(r.header("webhook-id")).or_default() += 1;
    }
    assert!(
        per_id.values().all(|n| *n <= 2),
        "at most once more after the disk came back: {per_id:?}"
    );
    assert!(log_count(&ws, "the store can be written again") > 0);

    let status = terminate(&mut daemon, Duration::from_secs(30)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(ws.log_path()).unwrap()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn stopping_while_the_disk_is_full_says_what_was_not_written() {
    let Some(disk) = SmallDisk::mount("stopping_while_the_disk_is_full_says_what_was_not_written")
    else {
        return;
    };
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let (ws, mut daemon, base) = daemon_on(&disk, &sim, &hook.url).await;
    fill_until_the_store_fails(&disk, &admin, &base, 1).await;

    let status = terminate(&mut daemon, Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(ws.log_path()).unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("could not write the store at")
            && log.contains(DISK_FULL)
            && log.contains("the next poll detects those changes again"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // Once there is room, the store opens.
    disk.free();
    let out = ws.run(&["orders", "list"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    sim.shutdown().await;
}

/// A webhook receiver that holds every answer until `open` is called, then
/// answers 200; it records the `webhook-id` of each request answered.
#[derive(Clone)]
struct GatedReceiver {
    url: String,
    gate: tokio::sync::watch::Sender<bool>,
    arrived: Arc<std::sync::atomic::AtomicUsize>,
    answered: Arc<Mutex<Vec<String>>>,
}

impl GatedReceiver {
    async fn start() -> GatedReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = GatedReceiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            gate: tokio::sync::watch::channel(false).0,
            arrived: Default::default(),
            answered: Default::default(),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(Self::answer))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    async fn answer(
        axum::extract::State(me): axum::extract::State<GatedReceiver>,
        headers: axum::http::HeaderMap,
    ) -> axum::http::StatusCode {
        me.arrived.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = me.gate.subscribe().wait_for(|open| *open).await;
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        me.answered.lock().unwrap().push(id);
        axum::http::StatusCode::OK
    }

    fn arrived(&self) -> usize {
        self.arrived.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }

    fn answered(&self) -> Vec<String> {
        self.answered.lock().unwrap().clone()
    }
}

/// A delivery in flight when the store fails: the receiver accepts it, the
/// store cannot remove the entry. It is not delivered again while the disk
/// is full, nor after, once the removal went through.
#[tokio::test]
async fn a_delivery_the_store_cannot_record_is_not_repeated() {
    let Some(disk) = SmallDisk::mount("a_delivery_the_store_cannot_record_is_not_repeated") else {
        return;
    };
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let hook = GatedReceiver::start().await;
    let (ws, mut daemon, base) = daemon_on(&disk, &sim, &hook.url).await;
    let first = admin.ids(TRACKING, "status=Current").await[0].clone();
    admin
        .patch("order-tracking", &first, json!({"status": "Closed"}))
        .await;
    eventually("the delivery in flight", Duration::from_secs(30), || {
        hook.arrived() > 0
    })
    .await;
    // The orders left open grow until the store fails; the closing is
    // still waiting for its answer.
    fill_until_the_store_fails(&disk, &admin, &base, 0).await;
    hook.open();
    eventually("the receiver's answer", Duration::from_secs(30), || {
        !hook.answered().is_empty()
    })
    .await;

    disk.free();
    eventually_async("healthy again", Duration::from_secs(60), || async {
        get(&format!("{base}/healthz")).await.1 == "ok\n"
    })
    .await;
    // A later change, delivered after the store is back: by then the first
    // entry has been dealt with (a sink's passes take the oldest first).
    let second = admin.ids(TRACKING, "status=Current").await[0].clone();
    admin
        .patch("order-tracking", &second, json!({"status": "Closed"}))
        .await;
    eventually(
        "the later change delivered",
        Duration::from_secs(60),
        || hook.answered().len() > 1,
    )
    .await;
    let answered = hook.answered();
    let first_id = &answered[0];
    assert_eq!(
        answered.iter().filter(|id| *id == first_id).count(),
        1,
        "the first delivery is not repeated: {answered:?}"
    );
    assert!(log_count(&ws, "delivered, but its outbox entry could not be removed") > 0);
    let status = terminate(&mut daemon, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0));
    sim.shutdown().await;
}
