//! Ordering's orders (`--ordering N`): side by side on one simulator of N
//! orders, the Orange calls and wall time of a quiet `orderwatch once`, a
//! full listing at page 100 and at page 250 against an incremental source;
//! then, on a simulator of `--ordering-latency M` orders, with the source
//! held to 60 calls a minute, the time from a closing (an order set to
//! COMPLETED through the admin API) to its webhook, for a full and an
//! incremental source, each with `run` on a one-minute interval.

use crate::{
    API_KEY, CLIENT_ID, CLIENT_SECRET, Deliveries, Row, Setup, SimClient, Simulator,
    WEBHOOK_SECRET, check_exit, measure, start_receiver,
};
use anyhow::Context;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const ORDERS: &str = "/ordering/b2b/v2/orders";
/// How long one closing may take to reach the receiver before the sample
/// is given up.
const CLOSING_TIMEOUT: Duration = Duration::from_secs(10 * 60);

struct Variant {
    name: &'static str,
    keys: &'static str,
}

const QUIET: [Variant; 3] = [
    Variant {
        name: "full, page 100",
        keys: "    page_size: 100\n",
    },
    Variant {
        name: "full, page 250",
        keys: "",
    },
    Variant {
        name: "incremental",
        keys: "    incremental: {}\n",
    },
];

fn config(dir: &Path, sim: &str, hook: &str, keys: &str, budget: u32) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let yaml = format!(
        "state_dir: {data}\nlog: {{ format: json, level: info }}\nsources:\n  - name: orders\n    api: ordering\n    resource: orders\n    base_url: {sim}\n    client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n    api_key: {API_KEY}\n    interval: 1m\n    max_requests_per_minute: {budget}\n{keys}sinks:\n  - name: hook\n    type: webhook\n    url: {hook}\n    secret: {WEBHOOK_SECRET}\n",
        data = dir.join("data").display(),
    );
    let path = dir.join(format!("budget{budget}.yaml"));
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// The set-up of one source's directory: `command` runs the binary with
/// its log there.
fn setup(binary: &Path, dir: &Path, sim: &SimClient, hook: &str) -> Setup {
    Setup {
        binary: binary.to_owned(),
        dir: dir.to_owned(),
        sim_base: sim.base.clone(),
        hook: hook.to_owned(),
        concurrency: 1,
        store: None,
    }
}

impl SimClient {
    /// Calls to Orange so far: the token endpoint and the orders' list and
    /// detail.
    async fn calls(&self) -> anyhow::Result<u64> {
        let stats: Value = self
            .http
            .get(format!("{}/_sim/stats", self.base))
            .send()
            .await?
            .json()
            .await?;
        let sum = |key: &str| {
            stats["by_endpoint"][key]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
                .unwrap_or(0)
        };
        Ok(sum("token") + sum("ordering-orders.list") + sum("ordering-orders.detail"))
    }

    /// An open order to close: the `skip`-th from the end of the listing
    /// as a full source reads it (by id), so a full listing reaches it last.
    async fn open_order(&self, skip: usize) -> anyhow::Result<String> {
        let page = self
            .list(&format!(
                "{ORDERS}?status=IN_PROGRESS&sort=-id&limit=1&offset={skip}"
            ))
            .await?;
        page.first()
            .and_then(|o| o["id"].as_str())
            .map(str::to_owned)
            .context("no open order")
    }

    async fn close(&self, id: &str) -> anyhow::Result<()> {
        self.http
            .patch(format!("{}/_sim/ordering-orders/orders/{id}", self.base))
            .json(&json!({"status": "COMPLETED"}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

pub(crate) async fn compare(
    binary: &Path,
    root: &Path,
    n: usize,
    latency_n: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    eprintln!("== Ordering orders, {n}");
    let sim_process = Simulator::start(binary, n, &root.join(format!("ordering-sim-{n}.log")))?;
    let sim = SimClient {
        http: reqwest::Client::new(),
        base: sim_process.base.clone(),
    };
    let (hook, deliveries) = start_receiver().await?;
    for (i, variant) in QUIET.iter().enumerate() {
        let dir = root.join(format!("ordering-{n}-{i}"));
        let cfg = config(&dir, &sim.base, &hook, variant.keys, 1_000_000)?;
        eprintln!("   {}: baseline", variant.name);
        let m = measure(
            setup(binary, &dir, &sim, &hook).command(&cfg, &["once"])?,
            None,
        )
        .await?;
        check_exit("ordering baseline", &m)?;
        eprintln!("   {}: quiet", variant.name);
        let before = sim.calls().await?;
        let m = measure(
            setup(binary, &dir, &sim, &hook).command(&cfg, &["once"])?,
            None,
        )
        .await?;
        check_exit("ordering quiet", &m)?;
        let calls = sim.calls().await? - before;
        rows.push(Row {
            n,
            phase: match i {
                0 => "orders quiet: full, page 100",
                1 => "orders quiet: full, page 250",
                _ => "orders quiet: incremental",
            },
            wall: Some(m.wall),
            cpu: Some(m.cpu),
            rss_kb: Some(m.max_rss_kb),
            extra: format!("{calls} Orange calls (token included)"),
            ..Default::default()
        });
    }
    drop(sim_process);

    eprintln!("== Ordering orders, {latency_n}, held to 60 calls a minute");
    let sim_process = Simulator::start(
        binary,
        latency_n,
        &root.join(format!("ordering-sim-{latency_n}.log")),
    )?;
    let sim = SimClient {
        http: reqwest::Client::new(),
        base: sim_process.base.clone(),
    };
    for (i, variant) in QUIET.iter().enumerate().skip(1) {
        let dir = root.join(format!("ordering-latency-{latency_n}-{i}"));
        let cfg = config(&dir, &sim.base, &hook, variant.keys, 1_000_000)?;
        let m = measure(
            setup(binary, &dir, &sim, &hook).command(&cfg, &["once"])?,
            None,
        )
        .await?;
        check_exit("ordering baseline", &m)?;
        let taken = closing(binary, &dir, &sim, &hook, &deliveries, variant, i).await?;
        rows.push(Row {
            n: latency_n,
            phase: if i == 1 {
                "orders closing → webhook at 60 calls/min: full, page 250"
            } else {
                "orders closing → webhook at 60 calls/min: incremental"
            },
            wall: taken,
            extra: format!(
                "`run`, interval 1m, max_requests_per_minute 60; one closing made 5 s after start, of an order at the end of the listing{}",
                if taken.is_none() {
                    ": not heard in time"
                } else {
                    ""
                }
            ),
            ..Default::default()
        });
    }
    Ok(())
}

/// `run` held to 60 calls a minute; one order closed 5 s after it started;
/// the time until its webhook arrived.
async fn closing(
    binary: &Path,
    dir: &Path,
    sim: &SimClient,
    hook: &str,
    deliveries: &Arc<Deliveries>,
    variant: &Variant,
    skip: usize,
) -> anyhow::Result<Option<Duration>> {
    eprintln!("   {}: a closing at 60 calls a minute", variant.name);
    let cfg = config(dir, &sim.base, hook, variant.keys, 60)?;
    deliveries.reset();
    let mut child = setup(binary, dir, sim, hook)
        .command(&cfg, &["run"])?
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let id = sim.open_order(skip).await?;
    sim.close(&id).await?;
    let closed = Instant::now();
    let mut taken = None;
    while closed.elapsed() < CLOSING_TIMEOUT {
        if deliveries.count.load(Ordering::SeqCst) > 0 {
            let arrived = deliveries
                .times
                .lock()
                .map(|t| t.first().copied())
                .ok()
                .flatten();
            taken = arrived.map(|at| at.saturating_duration_since(closed));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(taken)
}
