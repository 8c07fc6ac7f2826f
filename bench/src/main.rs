//! The end-to-end benchmark of orderwatch (BENCHMARKS.md tells how to read it).
//!
//! For each N it starts the real `orderwatch simulate` (release binary, a
//! child process on 127.0.0.1) with N orders in each API, a webhook receiver
//! inside this process that answers 200 at once, and measures the real
//! `orderwatch` binary as a child process:
//!
//! - `baseline`: `orderwatch once` on an empty store;
//! - `quiet`: `orderwatch once` again, nothing changed; plus what it wrote;
//! - `1% changed`: N/100 orders change status through the simulator's admin
//!   API, then `orderwatch once`, timed until the last webhook arrived;
//! - `dispatch`: 10,000 changes committed by one poll, delivered from the
//!   outbox; deliveries per second between the first and the last arrival;
//! - `run idle`: `orderwatch run` between polls, RSS and CPU over a window;
//! - `latency`: `orderwatch run` polling continuously; from the commit of the
//!   poll that saw a change (its "change detected" log line) to the webhook.
//! - `timer at rest` (with `--timer N`): N orders with due dates weeks ahead,
//!   `run` between polls; the time its timer spends evaluating per minute
//!   (`timer.rs`);
//! - `tiny page` (with `--tiny-page N`): an Orange inside this process that
//!   serves one page of N tiny orders (`[{"id":"0"},…]`, whatever the
//!   `limit`); `orderwatch once` on an empty store and quiet, peak RSS held
//!   against 64 MB plus a small multiple of the page's size.
//! - `digest of a day` (with `--digest N`, `digest.rs`): N events kept for a
//!   webhook sink's digest, then made and sent as one message.
//! - with `--backends sled,postgres`: baseline, quiet, 1% changed and
//!   dispatch again on a fresh PostgreSQL database (`pg.rs`: the server's
//!   CPU and WAL counted too), side by side with sled, against the targets;
//! - `failover` (with `--failover K`, `failover.rs`): two `run` replicas on
//!   one postgres database, the leader killed K times, the time to the new
//!   leader's first cycle.
//!
//! Wall time is measured here; CPU time (user + sys) and peak RSS come from
//! `wait4(2)` of the child; bytes written are the child's `ru_oublock` (512
//! byte blocks the kernel accounted as sent to storage, i.e. `write_bytes`
//! of /proc/PID/io) and the change of the store directory's size.
//!
//! urlwatch (if installed) runs the same data as one job that reads the whole
//! list as one document (`?limit=N`, the simulator started with
//! `--max-page-size N`), with a `format-json` filter.

mod digest;
mod failover;
mod ordering;
mod pg;
mod timer;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const CLIENT_ID: &str = "orderwatch-demo";
const CLIENT_SECRET: &str = "demo-secret";
const API_KEY: &str = "demo-api-key";
const WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const TRACKING: &str = "/order-tracking/b2b/v1/orders";
/// Events in the dispatch measurement.
const DISPATCH_EVENTS: usize = 10_000;

#[derive(Parser, Debug)]
#[command(about = "Benchmark orderwatch against its simulator (and urlwatch, if installed)")]
struct Args {
    /// Orders in the simulated API, one measurement series each
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    orders: Vec<usize>,
    /// Short idle window and few latency samples: a smoke run
    #[arg(long)]
    quick: bool,
    /// Seconds `run` is watched between polls (default 60, 5 with --quick)
    #[arg(long)]
    idle_secs: Option<u64>,
    /// Latency samples (default 20, 5 with --quick)
    #[arg(long)]
    latency_samples: Option<usize>,
    /// The source's `concurrency` (pages read ahead); orderwatch's default is 1
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
    /// The orderwatch binary (default: target/release/orderwatch of this repo,
    /// or of $CARGO_TARGET_DIR)
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The urlwatch command
    #[arg(long, default_value = "urlwatch")]
    urlwatch: String,
    /// Do not run urlwatch
    #[arg(long)]
    no_urlwatch: bool,
    /// A urlwatch run taking longer is stopped and reported as "> timeout"
    #[arg(long, default_value_t = 300)]
    urlwatch_timeout_secs: u64,
    /// Keep the work directory (stores, configs, logs) here
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Also measure one page of this many tiny orders (e.g. 200000)
    #[arg(long)]
    tiny_page: Option<usize>,
    /// Skip the simulator series (with --tiny-page: that row alone)
    #[arg(long)]
    no_series: bool,
    /// Also measure the digest of a day of this many events (e.g. 10000):
    /// made and sent in one message
    #[arg(long)]
    digest: Option<usize>,
    /// Also compare, on Ordering's orders at this many, a quiet `once` full
    /// (page 100, page 250) and incremental (e.g. 100000)
    #[arg(long)]
    ordering: Option<usize>,
    /// Orders for the closing-to-webhook time at 60 calls a minute that
    /// follows `--ordering`
    #[arg(long, default_value_t = 10_000)]
    ordering_latency: usize,
    /// Also measure the timer at rest: this many orders with due dates
    /// ahead, `run` watched between polls (e.g. 100000)
    #[arg(long)]
    timer: Option<usize>,
    /// Seconds the timer at rest is watched
    #[arg(long, default_value_t = 120)]
    timer_secs: u64,
    /// The stores each series runs on, side by side: `sled`, `postgres`
    /// (baseline, quiet, 1% changed and dispatch on each; idle and latency
    /// on sled only)
    #[arg(long, value_delimiter = ',', default_value = "sled")]
    backends: Vec<Backend>,
    /// Also measure failover: two `orderwatch run` replicas on one postgres
    /// database, the leader SIGKILLed this many times (e.g. 5)
    #[arg(long)]
    failover: Option<usize>,
    /// Orders in the simulator for the failover measurement
    #[arg(long, default_value_t = 1000)]
    failover_orders: usize,
    /// The source's interval (seconds) for the failover measurement
    #[arg(long, default_value_t = 2)]
    failover_interval_secs: u64,
    /// With postgres: print the statements that took the most time in each
    /// measurement, this many (pg_stat_statements)
    #[arg(long, default_value_t = 0)]
    pg_top: usize,
}

/// A store backend of the `--backends` series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    #[default]
    Sled,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Postgres => "postgres",
        }
    }
}

/// The tiny-page row's bound on peak RSS: 64 MB plus this many times the
/// page's size.
const TINY_PAGE_RSS_FACTOR: u64 = 8;

// ---------------------------------------------------------------------------
// Child processes, measured

/// What `wait4` said about one finished child, and the wall time we saw.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    wall: Duration,
    cpu: Duration,
    max_rss_kb: u64,
    /// `ru_oublock` × 512: bytes the kernel accounted as written to storage.
    written: u64,
    exit: Option<i32>,
    timed_out: bool,
}

/// Run `cmd` to its end (or `timeout`, then SIGKILL) and measure it. Blocks:
/// call it through `spawn_blocking`.
fn run_measured(mut cmd: Command, timeout: Option<Duration>) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let hwm = Arc::new(AtomicU64::new(0));
    // The watcher samples the child's VmHWM (the peak RSS of its own
    // address space) every 5 ms, and kills it at the timeout. wait4's
    // ru_maxrss is not used for the peak: Linux carries the parent's peak
    // over an exec, so it would report this process's peak for small children.
    let watcher = {
        let (done, killed, hwm) = (done.clone(), killed.clone(), hwm.clone());
        std::thread::spawn(move || {
            let deadline = timeout.map(|t| Instant::now() + t);
            while !done.load(Ordering::SeqCst) {
                if let Some(kb) = proc_status_kb(pid as u32, "VmHWM:") {
                    hwm.fetch_max(kb, Ordering::SeqCst);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    killed.store(true, Ordering::SeqCst);
                    // SAFETY: plain syscall on the pid of our own unreaped child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value for the kernel to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    drop(child);
    if rc < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    Ok(Measured {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kb: hwm.load(Ordering::SeqCst),
        written: usage.ru_oublock as u64 * 512,
        exit: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        timed_out: killed.load(Ordering::SeqCst),
    })
}

async fn measure(cmd: Command, timeout: Option<Duration>) -> anyhow::Result<Measured> {
    tokio::task::spawn_blocking(move || run_measured(cmd, timeout)).await?
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// (name, size, mtime) of each file of the store: equal before and after
/// means nothing was written to it.
fn store_files(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => out.push((e.path(), m.len(), m.modified().ok())),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

fn log_file(path: &Path) -> anyhow::Result<Stdio> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .into())
}

/// `/proc/PID/stat` utime + stime, in clock ticks; and VmRSS in kB.
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn proc_rss_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmRSS:")
}

/// A `kB` line of /proc/PID/status, e.g. `VmHWM:`.
fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `write_bytes` of /proc/PID/io.
fn proc_write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let line = io.lines().find(|l| l.starts_with("write_bytes:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

// ---------------------------------------------------------------------------
// The simulator, as a child process

struct Simulator {
    child: std::process::Child,
    base: String,
}

impl Simulator {
    fn start(binary: &Path, orders: usize, log: &Path) -> anyhow::Result<Simulator> {
        let mut child = Command::new(binary)
            .args(["simulate", "--listen", "127.0.0.1:0", "--seed", "1"])
            .args(["--orders", &orders.to_string()])
            .args(["--max-page-size", &orders.max(1000).to_string()])
            .stdout(Stdio::piped())
            .stderr(log_file(log)?)
            .spawn()
            .context("cannot start `orderwatch simulate`")?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut base = None;
        for line in lines.by_ref() {
            let line = line?;
            if let Some(rest) = line.split("listening on ").nth(1) {
                base = Some(rest.trim().to_owned());
                break;
            }
        }
        // Keep reading, so the simulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let base = base.context("the simulator did not say where it listens")?;
        Ok(Simulator { child, base })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulator's API and admin API, as the bench uses them.
struct SimClient {
    http: reqwest::Client,
    base: String,
}

impl SimClient {
    async fn token(&self) -> anyhow::Result<String> {
        let answer: Value = self
            .http
            .post(format!("{}/oauth/v3/token", self.base))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access_token")
    }

    /// One list call (`path?query`), authenticated as orderwatch would be.
    async fn list(&self, path_and_query: &str) -> anyhow::Result<Vec<Value>> {
        let token = self.token().await?;
        Ok(self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(token)
            .header("X-API-Key", API_KEY)
            .header("Accept", "application/json")
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Every tracking order: (id, status).
    async fn orders(&self, n: usize) -> anyhow::Result<Vec<(String, String)>> {
        let list = self
            .list(&format!("{TRACKING}?limit={}&sort=id", n.max(1)))
            .await?;
        Ok(list
            .iter()
            .map(|o| {
                (
                    o["id"].as_str().unwrap_or_default().to_owned(),
                    o["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }

    /// Flip the status of each order (Current ↔ Closed), 16 at a time.
    async fn flip(&self, orders: &mut [(String, String)]) -> anyhow::Result<()> {
        for (_, status) in orders.iter_mut() {
            *status = if status == "Current" {
                "Closed".into()
            } else {
                "Current".into()
            };
        }
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(orders.iter())
            .map(|(id, status)| async move {
                self.http
                    .patch(format!("{}/_sim/order-tracking/orders/{id}", self.base))
                    .json(&json!({ "status": status }))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            })
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

// ---------------------------------------------------------------------------
// The webhook receiver

#[derive(Default)]
struct Deliveries {
    count: AtomicU64,
    times: Mutex<Vec<Instant>>,
    /// (order id, when) of each delivery, while `record_orders` is set.
    orders: Mutex<Vec<(String, SystemTime)>>,
    record_orders: AtomicBool,
}

impl Deliveries {
    fn reset(&self) {
        self.count.store(0, Ordering::SeqCst);
        self.times.lock().unwrap().clear();
        self.orders.lock().unwrap().clear();
    }
    fn first_last(&self) -> Option<(Instant, Instant)> {
        let times = self.times.lock().unwrap();
        Some((*times.first()?, *times.last()?))
    }
}

async fn receive(State(d): State<Arc<Deliveries>>, _headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = Instant::now();
    if d.record_orders.load(Ordering::SeqCst) {
        let order_id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["data"]["order_id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        d.orders.lock().unwrap().push((order_id, SystemTime::now()));
    }
    d.times.lock().unwrap().push(now);
    d.count.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}

async fn start_receiver() -> anyhow::Result<(String, Arc<Deliveries>)> {
    let d = Arc::new(Deliveries::default());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(d.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, d))
}

// ---------------------------------------------------------------------------
// orderwatch and urlwatch set-ups

struct Setup {
    binary: PathBuf,
    dir: PathBuf,
    sim_base: String,
    hook: String,
    concurrency: u32,
    /// The postgres store's URL; sled in `dir/data` without it.
    store: Option<String>,
}

impl Setup {
    fn config(&self, name: &str, interval: &str, listen: Option<&str>) -> anyhow::Result<PathBuf> {
        let listen = listen.map(|l| format!("listen: {l}\n")).unwrap_or_default();
        let store = self
            .store
            .as_ref()
            .map(|url| format!("store: {{ backend: postgres, url: \"{url}\" }}\n"))
            .unwrap_or_default();
        let yaml = format!(
            "state_dir: {data}\n{store}{listen}log: {{ format: json, level: info }}\nsources:\n  - name: tracking\n    api: order-tracking\n    base_url: {base}\n    client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n    api_key: {API_KEY}\n    interval: {interval}\n    sort: id\n    page_size: 100\n    max_requests_per_minute: 1000000\n    concurrency: {c}\nsinks:\n  - name: hook\n    type: webhook\n    url: {hook}\n    secret: {WEBHOOK_SECRET}\n",
            data = self.dir.join("data").display(),
            base = self.sim_base,
            hook = self.hook,
            c = self.concurrency,
        );
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml)?;
        Ok(path)
    }

    fn command(&self, config: &Path, args: &[&str]) -> anyhow::Result<Command> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir.join("orderwatch.log"))?);
        Ok(cmd)
    }

    fn store_size(&self) -> u64 {
        dir_size(&self.dir.join("data"))
    }
}

struct Urlwatch {
    program: String,
    dir: PathBuf,
    timeout: Duration,
}

impl Urlwatch {
    async fn prepare(&self, sim: &SimClient, n: usize) -> anyhow::Result<()> {
        let token = sim.token().await?;
        let job = format!(
            "name: orders\nurl: \"{}{TRACKING}?limit={}&sort=id\"\nheaders:\n  Authorization: \"Bearer {token}\"\n  X-API-Key: \"{API_KEY}\"\n  Accept: application/json\nfilter:\n  - format-json\n",
            sim.base, n
        );
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.dir.join("urls.yaml"), job)?;
        // urlwatch writes its default config on first use; do it outside the
        // measurement.
        let mut cmd = self.command(&["--list"])?;
        cmd.stdout(Stdio::null());
        let m = measure(cmd, Some(Duration::from_secs(60))).await?;
        if m.exit != Some(0) {
            bail!(
                "`{} --list` failed (see {})",
                self.program,
                self.dir.display()
            );
        }
        Ok(())
    }

    fn command(&self, extra: &[&str]) -> anyhow::Result<Command> {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--urls")
            .arg(self.dir.join("urls.yaml"))
            .arg("--config")
            .arg(self.dir.join("urlwatch.yaml"))
            .arg("--hooks")
            .arg(self.dir.join("hooks.py"))
            .arg("--cache")
            .arg(self.dir.join("cache.db"))
            .args(extra)
            .stdout(log_file(&self.dir.join("report.txt"))?)
            .stderr(log_file(&self.dir.join("urlwatch.log"))?);
        Ok(cmd)
    }

    async fn run(&self) -> anyhow::Result<Measured> {
        measure(self.command(&[])?, Some(self.timeout)).await
    }
}

fn urlwatch_available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------
// Results

#[derive(Default)]
struct Row {
    n: usize,
    phase: &'static str,
    backend: Backend,
    wall: Option<Duration>,
    cpu: Option<Duration>,
    rss_kb: Option<u64>,
    written: Option<String>,
    extra: String,
    urlwatch: Option<Measured>,
    /// The database server's CPU over the run (postgres).
    server_cpu: Option<Duration>,
    /// Deliveries per second (dispatch).
    rate: Option<f64>,
    /// The statements that took the most time (postgres, `--pg-top`).
    statements: Vec<String>,
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.3} s", d.as_secs_f64())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn bytes(b: u64) -> String {
    if b < 10_240 {
        format!("{b} B")
    } else {
        format!("{:.1} MB", b as f64 / 1_048_576.0)
    }
}

fn print_table(rows: &[Row]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N | phase | wall | CPU (user+sys) | peak RSS | written to store | notes | urlwatch wall | urlwatch CPU | urlwatch peak RSS | orderwatch / urlwatch (wall) |"
    );
    let _ = writeln!(
        out,
        "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"
    );
    for r in rows {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        let (uw, uc, ur, ratio) = match &r.urlwatch {
            Some(u) if u.timed_out => (
                format!("> {}", secs(u.wall)),
                format!("> {}", secs(u.cpu)),
                format!("≥ {}", mb(u.max_rss_kb)),
                r.wall
                    .map(|w| format!("< {:.4}", w.as_secs_f64() / u.wall.as_secs_f64()))
                    .unwrap_or_else(|| "–".into()),
            ),
            Some(u) => (
                secs(u.wall),
                secs(u.cpu),
                mb(u.max_rss_kb),
                r.wall
                    .map(|w| format!("{:.3}", w.as_secs_f64() / u.wall.as_secs_f64()))
                    .unwrap_or_else(|| "–".into()),
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.n,
            match r.backend {
                Backend::Sled => r.phase.to_owned(),
                Backend::Postgres => format!("{} (postgres)", r.phase),
            },
            opt(r.wall.map(secs)),
            opt(r.cpu.map(secs)),
            opt(r.rss_kb.map(mb)),
            opt(r.written.clone()),
            r.extra,
            uw,
            uc,
            ur,
            ratio
        );
    }
    println!("\n{out}");
}

/// The first three fields of /proc/loadavg, as `uptime` shows them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "unknown".into())
}

/// sled and postgres side by side, and the postgres targets.
fn print_comparison(rows: &[Row], failover: Option<&failover::Failover>) {
    let find = |n: usize, phase: &str, backend: Backend| {
        rows.iter()
            .find(|r| r.n == n && r.phase == phase && r.backend == backend)
    };
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "–".into(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N | phase | sled wall | sled CPU | postgres wall | postgres: orderwatch CPU | server CPU | CPU together | postgres / sled, wall | postgres / sled, CPU (server included) |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ns: Vec<usize> = rows.iter().map(|r| r.n).collect();
    ns.sort_unstable();
    ns.dedup();
    for n in ns {
        for phase in ["baseline", "quiet", "1% changed", "dispatch"] {
            let (Some(s), Some(p)) = (
                find(n, phase, Backend::Sled),
                find(n, phase, Backend::Postgres),
            ) else {
                continue;
            };
            let together = p.cpu.map(|c| c + p.server_cpu.unwrap_or_default());
            let opt = |d: Option<Duration>| d.map(secs).unwrap_or_else(|| "–".into());
            let phase = match (s.rate, p.rate) {
                (Some(a), Some(b)) => format!("dispatch ({a:.0}/s, {b:.0}/s)"),
                _ => phase.to_owned(),
            };
            let _ = writeln!(
                out,
                "| {n} | {phase} | {} | {} | {} | {} | {} | {} | {} | {} |",
                opt(s.wall),
                opt(s.cpu),
                opt(p.wall),
                opt(p.cpu),
                opt(p.server_cpu),
                opt(together),
                ratio(p.wall, s.wall),
                ratio(together, s.cpu),
            );
        }
    }
    // The targets, at the largest N both ran.
    let mut targets = Vec::new();
    let largest = rows
        .iter()
        .filter(|r| r.backend == Backend::Postgres && r.phase == "quiet")
        .map(|r| r.n)
        .filter(|n| find(*n, "quiet", Backend::Sled).is_some())
        .max();
    let met = |ok: bool| if ok { "met" } else { "**not met**" };
    if let Some(n) = largest
        && let (Some(s), Some(p)) = (
            find(n, "quiet", Backend::Sled),
            find(n, "quiet", Backend::Postgres),
        )
        && let (Some(sw), Some(pw)) = (s.wall, p.wall)
    {
        targets.push(format!(
            "| {n} orders: quiet cycle on postgres ≤ 2 × sled's (wall) | {} against 2 × {} = {} | {} |",
            secs(pw),
            secs(sw),
            secs(sw * 2),
            met(pw <= sw * 2)
        ));
    }
    if let Some(p) = rows
        .iter()
        .rev()
        .find(|r| r.backend == Backend::Postgres && r.phase == "dispatch")
        && let Some(rate) = p.rate
    {
        targets.push(format!(
            "| {} orders: dispatch on postgres ≥ 2,000 deliveries/s | {rate:.0}/s | {} |",
            p.n,
            met(rate >= 2000.0)
        ));
    }
    if let Some(f) = failover {
        let mut v = f.first_cycle.clone();
        v.sort();
        if let (Some(min), Some(max)) = (v.first(), v.last()) {
            let median = v[v.len() / 2];
            targets.push(format!(
                "| failover ({} orders, interval {} s, lease {} s): kill → first cycle of the new leader ≤ 2 intervals + lease = {} (every kill) | {} kills: min {}, median {}, max {} | {} |",
                f.orders,
                f.interval.as_secs(),
                failover::lease(f.interval).as_secs(),
                secs(f.target()),
                v.len(),
                secs(*min),
                secs(median),
                secs(*max),
                met(*max <= f.target())
            ));
        }
        let mut t = f.takeover.clone();
        t.sort();
        if let (Some(min), Some(max)) = (t.first(), t.last()) {
            let _ = writeln!(
                out,
                "\nfailover: kill → the new leader's \"this orderwatch leads\": min {}, median {}, max {} ({} kills); kill → its first cycle done: {}",
                secs(*min),
                secs(t[t.len() / 2]),
                secs(*max),
                t.len(),
                v.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ")
            );
        }
    }
    if !targets.is_empty() {
        let _ = writeln!(out, "\n| target | result | met? |\n|---|---|---|");
        for t in targets {
            let _ = writeln!(out, "{t}");
        }
    }
    println!("{out}");
}

/// `--pg-top`: per postgres measurement, the statements that took the most time.
fn print_statements(rows: &[Row]) {
    for r in rows.iter().filter(|r| !r.statements.is_empty()) {
        println!(
            "postgres, {} orders, {}: the statements that took the most time",
            r.n, r.phase
        );
        for s in &r.statements {
            println!("  {s}");
        }
        println!();
    }
}

// ---------------------------------------------------------------------------
// The measurements

async fn wait_for_count(d: &Deliveries, expected: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if d.count.load(Ordering::SeqCst) >= expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Spawn `orderwatch run` and wait until /readyz says the first poll is done.
async fn start_run(
    setup: &Setup,
    config: &Path,
    listen: &str,
) -> anyhow::Result<std::process::Child> {
    let mut child = setup.command(config, &["run"])?.spawn()?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("http://{listen}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("orderwatch run did not get ready in 120 s");
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("orderwatch run exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stop_run(mut child: std::process::Child) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Times of "change detected" log lines per order id, from JSON logs.
fn detections(log: &Path) -> std::collections::HashMap<String, SystemTime> {
    let mut out = std::collections::HashMap::new();
    let Ok(text) = std::fs::read_to_string(log) else {
        return out;
    };
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["message"] != "change detected" {
            continue;
        }
        let (Some(ts), Some(id)) = (v["timestamp"].as_str(), v["order_id"].as_str()) else {
            continue;
        };
        if let Ok(t) = humantime::parse_rfc3339(ts) {
            out.insert(id.to_owned(), t);
        }
    }
    out
}

/// The postgres database one series runs on, and the server it is on.
struct Db<'a> {
    server: &'a pg::Server,
    name: String,
}

/// One measured `orderwatch once`, and on postgres the server's work
/// meanwhile and the statements that took its time.
struct Once {
    m: Measured,
    server: Option<pg::Work>,
    statements: Vec<String>,
}

async fn once(setup: &Setup, cfg: &Path, db: Option<&Db<'_>>, top: usize) -> anyhow::Result<Once> {
    let before = match db {
        Some(db) => {
            db.server.reset_statements().await;
            Some(db.server.counters().await?)
        }
        None => None,
    };
    let m = measure(setup.command(cfg, &["once"])?, None).await?;
    let (server, statements) = match (db, before) {
        (Some(db), Some(before)) => {
            db.server.settle(&db.name).await;
            let after = db.server.counters().await?;
            (
                Some(pg::Server::work(&before, &after)),
                db.server.top_statements(&db.name, top).await,
            )
        }
        _ => (None, Vec::new()),
    };
    Ok(Once {
        m,
        server,
        statements,
    })
}

impl Once {
    /// A row of this run: on postgres "written" is the server's WAL, and
    /// the notes start with the server's CPU.
    fn row(&self, n: usize, phase: &'static str, backend: Backend, extra: String) -> Row {
        let m = &self.m;
        let (written, extra) = match &self.server {
            None => (bytes(m.written), extra),
            Some(w) => (
                if w.wal_sync_time.is_zero() {
                    format!("WAL {} in {} syncs", bytes(w.wal_bytes), w.wal_syncs)
                } else {
                    format!(
                        "WAL {} in {} syncs, {} in them",
                        bytes(w.wal_bytes),
                        w.wal_syncs,
                        secs(w.wal_sync_time)
                    )
                },
                match w.cpu {
                    Some(cpu) => format!(
                        "server CPU {} (orderwatch + server {}); {extra}",
                        secs(cpu),
                        secs(cpu + m.cpu)
                    ),
                    None => format!("server CPU not counted (not on this machine); {extra}"),
                },
            ),
        };
        Row {
            n,
            phase,
            backend,
            wall: Some(m.wall),
            cpu: Some(m.cpu),
            rss_kb: Some(m.max_rss_kb),
            written: Some(written),
            extra,
            server_cpu: self.server.as_ref().and_then(|w| w.cpu),
            statements: self.statements.clone(),
            ..Default::default()
        }
    }
}

async fn store_size(setup: &Setup, db: Option<&Db<'_>>) -> u64 {
    match db {
        Some(db) => db.server.database_size(&db.name).await.unwrap_or(0),
        None => setup.store_size(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn series(
    args: &Args,
    binary: &Path,
    root: &Path,
    n: usize,
    last: bool,
    dispatch_here: bool,
    urlwatch: Option<&str>,
    server: Option<&pg::Server>,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let backend = if server.is_some() {
        Backend::Postgres
    } else {
        Backend::Sled
    };
    let dir = match backend {
        Backend::Sled => root.join(format!("n{n}")),
        Backend::Postgres => root.join(format!("n{n}-postgres")),
    };
    std::fs::create_dir_all(&dir)?;
    eprintln!("== N = {n}, {}: starting the simulator", backend.name());
    let sim = Simulator::start(binary, n, &dir.join("simulator.log"))?;
    let client = SimClient {
        http: reqwest::Client::new(),
        base: sim.base.clone(),
    };
    let (hook, deliveries) = start_receiver().await?;
    let db = server.map(|server| Db {
        server,
        name: format!("ow_bench_{n}"),
    });
    let store = match &db {
        Some(db) => Some(db.server.fresh_database(&db.name).await?),
        None => None,
    };
    let db = db.as_ref();
    let setup = Setup {
        binary: binary.to_owned(),
        dir: dir.clone(),
        sim_base: sim.base.clone(),
        hook,
        concurrency: args.concurrency,
        store,
    };
    let uw = urlwatch.map(|program| Urlwatch {
        program: program.to_owned(),
        dir: dir.join("urlwatch"),
        timeout: Duration::from_secs(args.urlwatch_timeout_secs),
    });
    let once_cfg = setup.config("once", "5m", None)?;
    let top = args.pg_top;

    // Baseline: empty store.
    eprintln!("   baseline cycle");
    let before = store_size(&setup, db).await;
    let run = once(&setup, &once_cfg, db, top).await?;
    check_exit("baseline", &run.m)?;
    let after = store_size(&setup, db).await;
    let mut baseline = run.row(
        n,
        "baseline",
        backend,
        format!("store {} → {}", bytes(before), bytes(after)),
    );

    // Quiet: nothing changed. The first `once` after a cycle that wrote
    // pays for sled's recovery on open (it replays the log and writes a new
    // page-table snapshot); the second is the steady state.
    eprintln!("   quiet cycles");
    let first = once(&setup, &once_cfg, db, 0).await?;
    check_exit("quiet", &first.m)?;
    let before = store_size(&setup, db).await;
    let run = once(&setup, &once_cfg, db, top).await?;
    check_exit("quiet", &run.m)?;
    let after = store_size(&setup, db).await;
    let first_note = match backend {
        Backend::Sled => format!(
            "{}, {} CPU, wrote {} (sled's snapshot on open)",
            secs(first.m.wall),
            secs(first.m.cpu),
            bytes(first.m.written)
        ),
        Backend::Postgres => format!(
            "{}, {} CPU, server CPU {}",
            secs(first.m.wall),
            secs(first.m.cpu),
            first
                .server
                .as_ref()
                .and_then(|w| w.cpu)
                .map(secs)
                .unwrap_or_else(|| "–".into())
        ),
    };
    let mut quiet = run.row(
        n,
        "quiet",
        backend,
        format!(
            "store size {}; the first quiet `once` after the baseline: {first_note}",
            if after == before {
                "unchanged".to_owned()
            } else {
                format!("{} → {}", bytes(before), bytes(after))
            },
        ),
    );

    if let Some(uw) = &uw {
        eprintln!("   urlwatch: first and quiet runs");
        uw.prepare(&client, n).await?;
        baseline.urlwatch = Some(uw.run().await?);
        quiet.urlwatch = Some(uw.run().await?);
    }
    rows.push(baseline);
    rows.push(quiet);

    // 1% changed.
    eprintln!("   1% changed");
    let all = client.orders(n).await?;
    let mut changed: Vec<(String, String)> = all.iter().step_by(100).cloned().collect();
    client.flip(&mut changed).await?;
    deliveries.reset();
    let started = Instant::now();
    let run = once(&setup, &once_cfg, db, top).await?;
    check_exit("1% changed", &run.m)?;
    let expected = changed.len() as u64;
    let got = deliveries.count.load(Ordering::SeqCst);
    let until_last = deliveries
        .first_last()
        .map(|(_, last)| last.duration_since(started));
    let mut one_percent = run.row(
        n,
        "1% changed",
        backend,
        format!(
            "{got}/{expected} webhooks; last arrived at {}",
            until_last.map(secs).unwrap_or_else(|| "–".into())
        ),
    );
    one_percent.wall = until_last.map(|u| u.max(run.m.wall));
    if got != expected {
        eprintln!("   WARNING: {got} deliveries, expected {expected}");
    }
    if let Some(uw) = &uw {
        eprintln!("   urlwatch: 1% changed");
        one_percent.urlwatch = Some(uw.run().await?);
    }
    rows.push(one_percent);

    // Dispatch throughput from a full outbox.
    if dispatch_here {
        eprintln!("   dispatch: {DISPATCH_EVENTS} events");
        let mut all = client.orders(n).await?;
        all.truncate(DISPATCH_EVENTS);
        client.flip(&mut all).await?;
        deliveries.reset();
        let run = once(&setup, &once_cfg, db, top).await?;
        check_exit("dispatch", &run.m)?;
        let got = deliveries.count.load(Ordering::SeqCst);
        let rate = deliveries.first_last().map(|(first, last)| {
            let span = last.duration_since(first).as_secs_f64();
            if span > 0.0 {
                (got.saturating_sub(1)) as f64 / span
            } else {
                f64::INFINITY
            }
        });
        let span = deliveries.first_last().map(|(f, l)| l.duration_since(f));
        let mut row = run.row(
            n,
            "dispatch",
            backend,
            format!(
                "{got} webhooks, **{:.0}/s** (first→last arrival); whole `once` {}",
                rate.unwrap_or(0.0),
                secs(run.m.wall)
            ),
        );
        row.wall = span;
        row.rate = rate;
        rows.push(row);
    }

    // Idle and latency are sled's: a running daemon on postgres is the
    // failover measurement's.
    if backend == Backend::Sled {
        idle(args, &setup, n, rows).await?;
        if last {
            latency(args, &setup, &client, n, &deliveries, rows).await?;
        }
    }
    drop(sim);
    Ok(())
}

async fn idle(args: &Args, setup: &Setup, n: usize, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    // Idle between polls: one poll at start, then nothing for an hour.
    let idle = Duration::from_secs(args.idle_secs.unwrap_or(if args.quick { 5 } else { 60 }));
    eprintln!("   run: idle for {} s", idle.as_secs());
    let listen = format!("127.0.0.1:{}", free_port()?);
    let cfg = setup.config("idle", "1h", Some(&listen))?;
    let child = start_run(setup, &cfg, &listen).await?;
    let pid = child.id();
    // Let the first cycle's tail (flush, dispatcher's first pass) settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu0 = proc_cpu_ticks(pid).unwrap_or(0);
    let rss0 = proc_rss_kb(pid).unwrap_or(0);
    let mut rss_max = rss0;
    let t0 = Instant::now();
    while t0.elapsed() < idle {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max = rss_max.max(proc_rss_kb(pid).unwrap_or(0));
    }
    let cpu1 = proc_cpu_ticks(pid).unwrap_or(0);
    let rss1 = proc_rss_kb(pid).unwrap_or(0);
    let cpu = Duration::from_secs_f64((cpu1 - cpu0) as f64 / clock_ticks() as f64);
    stop_run(child);
    rows.push(Row {
        n,
        phase: "run idle",
        wall: Some(t0.elapsed()),
        cpu: Some(cpu),
        rss_kb: Some(rss_max),
        written: None,
        extra: format!(
            "RSS {} at start, {} at end of the window; CPU {:.2}% of one core",
            mb(rss0),
            mb(rss1),
            100.0 * cpu.as_secs_f64() / t0.elapsed().as_secs_f64()
        ),
        ..Default::default()
    });
    Ok(())
}

async fn latency(
    args: &Args,
    setup: &Setup,
    client: &SimClient,
    n: usize,
    deliveries: &Deliveries,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    // Latency: poll continuously (interval 1 s), change one order at a time.
    let samples = args
        .latency_samples
        .unwrap_or(if args.quick { 5 } else { 20 });
    eprintln!("   run: latency, {samples} changes");
    let listen = format!("127.0.0.1:{}", free_port()?);
    let cfg = setup.config("latency", "1s", Some(&listen))?;
    let log = setup.dir.join("orderwatch.log");
    let child = start_run(setup, &cfg, &listen).await?;
    // Quiet polls of a running daemon: what it writes in 5 s (≈ cycles
    // back to back at 100,000 orders, one a second below that).
    let quiet_window = Duration::from_secs(if args.quick { 3 } else { 5 });
    let w0 = proc_write_bytes(child.id());
    let files0 = store_files(&setup.dir.join("data"));
    tokio::time::sleep(quiet_window).await;
    let w1 = proc_write_bytes(child.id());
    let files1 = store_files(&setup.dir.join("data"));
    let run_quiet_written = format!(
        "store files {}; process write_bytes {} (its log lines included)",
        if files0 == files1 {
            "untouched (size, mtime)"
        } else {
            "CHANGED"
        },
        match (w0, w1) {
            (Some(a), Some(b)) => bytes(b.saturating_sub(a)),
            _ => "unknown".into(),
        }
    );
    deliveries.reset();
    deliveries.record_orders.store(true, Ordering::SeqCst);
    let all = client.orders(n).await?;
    let mut since_patch = Vec::new();
    for (i, order) in all
        .iter()
        .skip(37)
        .step_by((n / samples.max(1)).max(1))
        .take(samples)
        .enumerate()
    {
        let mut one = vec![order.clone()];
        let patched = Instant::now();
        client.flip(&mut one).await?;
        if !wait_for_count(deliveries, i as u64 + 1, Duration::from_secs(60)).await {
            eprintln!("   WARNING: change {} was not delivered within 60 s", i + 1);
            break;
        }
        since_patch.push(patched.elapsed());
    }
    deliveries.record_orders.store(false, Ordering::SeqCst);
    stop_run(child);
    let seen = detections(&log);
    let mut latencies: Vec<Duration> = deliveries
        .orders
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(id, at)| at.duration_since(*seen.get(id)?).ok())
        .collect();
    latencies.sort();
    since_patch.sort();
    let median = |v: &[Duration]| v.get(v.len() / 2).copied();
    rows.push(Row {
        n,
        phase: "latency",
        wall: None,
        cpu: None,
        rss_kb: None,
        written: Some(format!(
            "{} s of quiet polls: {run_quiet_written}",
            quiet_window.as_secs()
        )),
        extra: format!(
            "**{}** median from the poll's commit (\"change detected\") to the webhook, {} samples, max {}; from the admin PATCH (waits for the next poll): median {}",
            median(&latencies).map(ms).unwrap_or_else(|| "–".into()),
            latencies.len(),
            latencies.last().copied().map(ms).unwrap_or_else(|| "–".into()),
            median(&since_patch).map(ms).unwrap_or_else(|| "–".into()),
        ),
        ..Default::default()
    });
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// An Orange that answers a token to anyone and serves `list` as the
/// whole listing at offset 0 (an empty page after it), with
/// `X-Total-Count`, as an API that ignores `limit` would.
async fn start_tiny_orange(list: Bytes, total: usize) -> anyhow::Result<String> {
    async fn token() -> ([(&'static str, &'static str); 1], &'static str) {
        (
            [("content-type", "application/json")],
            r#"{"token_type":"Bearer","access_token":"t","expires_in":3600}"#,
        )
    }
    let app = Router::new().route("/oauth/v3/token", post(token)).route(
        TRACKING,
        axum::routing::get(
            move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                let list = list.clone();
                async move {
                    let first = query
                        .unwrap_or_default()
                        .split('&')
                        .any(|p| p == "offset=0");
                    let body = if first {
                        list
                    } else {
                        Bytes::from_static(b"[]")
                    };
                    (
                        [
                            ("content-type", "application/json".to_owned()),
                            ("x-total-count", total.to_string()),
                        ],
                        body,
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(base)
}

/// One page of `n` tiny orders: `once` on an empty store, then quiet.
async fn tiny_page(
    binary: &Path,
    root: &Path,
    n: usize,
    concurrency: u32,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let dir = root.join(format!("tiny{n}"));
    std::fs::create_dir_all(&dir)?;
    eprintln!("== one page of {n} tiny orders");
    let mut list = String::from("[");
    for i in 0..n {
        if i > 0 {
            list.push(',');
        }
        let _ = write!(list, r#"{{"id":"{i}"}}"#);
    }
    list.push(']');
    let page_bytes = list.len() as u64;
    let base = start_tiny_orange(Bytes::from(list), n).await?;
    let (hook, _deliveries) = start_receiver().await?;
    let setup = Setup {
        binary: binary.to_owned(),
        dir: dir.clone(),
        sim_base: base,
        hook,
        concurrency,
        store: None,
    };
    let cfg = setup.config("once", "5m", None)?;
    let bound_kb = 64 * 1024 + TINY_PAGE_RSS_FACTOR * page_bytes / 1024;
    let note = |m: &Measured, more: &str| {
        format!(
            "one page of {n} tiny orders, {} of JSON; bound 64 MB + {TINY_PAGE_RSS_FACTOR} × page = {}: {}{more}",
            bytes(page_bytes),
            mb(bound_kb),
            if m.max_rss_kb <= bound_kb {
                "within"
            } else {
                "**over**"
            }
        )
    };
    eprintln!("   baseline cycle");
    let m = measure(setup.command(&cfg, &["once"])?, None).await?;
    check_exit("tiny page baseline", &m)?;
    rows.push(Row {
        n,
        phase: "tiny page: baseline",
        wall: Some(m.wall),
        cpu: Some(m.cpu),
        rss_kb: Some(m.max_rss_kb),
        written: Some(bytes(m.written)),
        extra: note(&m, ""),
        ..Default::default()
    });
    eprintln!("   quiet cycles");
    let first = measure(setup.command(&cfg, &["once"])?, None).await?;
    check_exit("tiny page quiet", &first)?;
    let m = measure(setup.command(&cfg, &["once"])?, None).await?;
    check_exit("tiny page quiet", &m)?;
    let more = format!(
        "; the first quiet `once` after the baseline: {}, peak RSS {}",
        secs(first.wall),
        mb(first.max_rss_kb)
    );
    rows.push(Row {
        n,
        phase: "tiny page: quiet",
        wall: Some(m.wall),
        cpu: Some(m.cpu),
        rss_kb: Some(m.max_rss_kb),
        written: Some(bytes(m.written)),
        extra: note(&m, &more),
        ..Default::default()
    });
    Ok(())
}

fn check_exit(phase: &str, m: &Measured) -> anyhow::Result<()> {
    if m.exit != Some(0) {
        bail!(
            "`orderwatch once` ({phase}) exited with {:?}; see orderwatch.log in the work directory",
            m.exit
        );
    }
    Ok(())
}

fn default_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/orderwatch")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = args.binary.clone().unwrap_or_else(default_binary);
    if !binary.is_file() {
        bail!(
            "no orderwatch binary at {} (build it with `cargo build --release`, or pass --binary)",
            binary.display()
        );
    }
    let urlwatch = if args.no_urlwatch {
        None
    } else if urlwatch_available(&args.urlwatch) {
        Some(args.urlwatch.as_str())
    } else {
        eprintln!("urlwatch not found (`pip install urlwatch==2.29`): its columns stay empty");
        None
    };
    let temp = tempfile::tempdir()?;
    let root = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => temp.path().to_owned(),
    };
    let mut orders = args.orders.clone();
    orders.sort_unstable();
    orders.dedup();
    // Dispatch is measured once, in the first series with enough orders.
    let dispatch_at = orders.iter().copied().find(|n| *n >= DISPATCH_EVENTS);
    let mut rows = Vec::new();
    let largest = orders.last().copied();
    if args.no_series {
        orders.clear();
    }
    let mut backends = args.backends.clone();
    backends.dedup();
    let load_at_start = load_average();
    let server = if (backends.contains(&Backend::Postgres) && !orders.is_empty())
        || args.failover.is_some()
    {
        eprintln!("starting PostgreSQL");
        Some(pg::Server::start().await?)
    } else {
        None
    };
    for n in &orders {
        for backend in &backends {
            series(
                &args,
                &binary,
                &root,
                *n,
                Some(*n) == largest,
                Some(*n) == dispatch_at,
                urlwatch.filter(|_| *backend == Backend::Sled),
                server.as_ref().filter(|_| *backend == Backend::Postgres),
                &mut rows,
            )
            .await?;
        }
    }
    if let Some(n) = args.tiny_page {
        tiny_page(&binary, &root, n, args.concurrency, &mut rows).await?;
    }
    if let Some(n) = args.digest {
        digest::day(&binary, &root, n, &mut rows).await?;
    }
    if let Some(n) = args.ordering {
        ordering::compare(&binary, &root, n, args.ordering_latency, &mut rows).await?;
    }
    if let Some(n) = args.timer {
        let window = Duration::from_secs(args.timer_secs);
        timer::at_rest(&binary, &root, n, window, &mut rows).await?;
    }
    let failover = match (args.failover, &server) {
        (Some(kills), Some(server)) if kills > 0 => Some(
            failover::measure(
                &binary,
                &root,
                server,
                args.failover_orders,
                Duration::from_secs(args.failover_interval_secs.max(1)),
                kills,
            )
            .await?,
        ),
        _ => None,
    };
    println!(
        "orderwatch bench: {}, source concurrency {}, page size 100; {}",
        binary.display(),
        args.concurrency,
        humantime::format_rfc3339_seconds(SystemTime::now())
    );
    println!(
        "load average (1, 5, 15 min) at start: {load_at_start}; at the end: {}",
        load_average()
    );
    if let Some(server) = &server {
        println!(
            "postgres: {}; server CPU {}",
            server.description,
            if server.counts_cpu() {
                "counted from /proc: the postmaster and all its processes, those that ended included (its children's CPU), from before the run until its connections were gone"
            } else {
                "not counted: the server is not on this machine"
            }
        );
    }
    print_table(&rows);
    if backends.len() > 1 || failover.is_some() {
        print_comparison(&rows, failover.as_ref());
    }
    print_statements(&rows);
    println!(
        "bench process peak RSS: {} (children's peaks are their own VmHWM, sampled every 5 ms)",
        proc_status_kb(std::process::id(), "VmHWM:")
            .map(mb)
            .unwrap_or_else(|| "unknown".into())
    );
    Ok(())
}
