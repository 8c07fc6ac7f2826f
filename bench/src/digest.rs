//! The digest of a day: N events kept for a webhook sink's `digest:` (one
//! `once` commits them with a 24 h period), then the period made to end (the
//! config's `every` set to 1 s) and one `once` that makes and sends the
//! digest. What it measures, from the daemon's own "digest made" log line
//! (`took_ms`: reading the kept events, rendering the document, the
//! transaction that queues it) and the receiver's clock (from that line to
//! the digest's arrival): the time to render and send it (target ≤ 1 s at
//! 10,000 events).

use super::{
    API_KEY, CLIENT_ID, CLIENT_SECRET, Row, SimClient, Simulator, WEBHOOK_SECRET, bytes,
    check_exit, log_file, measure, secs,
};
use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// What arrived: when, and how many bytes.
type Arrivals = Arc<Mutex<Vec<(SystemTime, usize)>>>;

async fn arrive(State(got): State<Arrivals>, body: Bytes) -> StatusCode {
    got.lock().unwrap().push((SystemTime::now(), body.len()));
    StatusCode::OK
}

fn config(dir: &Path, sim: &str, hook: &str, every: &str) -> anyhow::Result<std::path::PathBuf> {
    let yaml = format!(
        "state_dir: {data}\nlog: {{ format: json, level: info }}\nsources:\n  - name: tracking\n    api: order-tracking\n    base_url: {sim}\n    client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n    api_key: {API_KEY}\n    interval: 5m\n    sort: id\n    page_size: 100\n    max_requests_per_minute: 1000000\n    concurrency: 2\nsinks:\n  - name: daily\n    type: webhook\n    url: {hook}\n    secret: {WEBHOOK_SECRET}\n    digest: {{ every: {every} }}\n",
        data = dir.join("data").display(),
    );
    let path = dir.join("digest.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}

fn once(binary: &Path, config: &Path, log: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(config)
        .arg("once")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log_file(log)?);
    Ok(cmd)
}

/// The last "digest made" line of a JSON log: its time, `took_ms`, `bytes`,
/// `events`, `rendered_ms`.
fn digest_made(log: &Path) -> Option<(SystemTime, u64, u64, u64, u64)> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let v: Value = serde_json::from_str(line).ok()?;
        if v["message"] != "digest made" {
            return None;
        }
        let at = humantime::parse_rfc3339(v["timestamp"].as_str()?).ok()?;
        Some((
            at,
            v["took_ms"].as_u64()?,
            v["bytes"].as_u64()?,
            v["events"].as_u64()?,
            v["rendered_ms"].as_u64()?,
        ))
    })
}

pub(crate) async fn day(
    binary: &Path,
    root: &Path,
    events: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let dir = root.join("digest");
    std::fs::create_dir_all(&dir)?;
    eprintln!("== digest of {events} events: starting the simulator");
    let sim = Simulator::start(binary, events, &dir.join("simulator.log"))?;
    let client = SimClient {
        http: reqwest::Client::new(),
        base: sim.base.clone(),
    };
    let got: Arrivals = Arc::default();
    // A day's digest is larger than axum's default limit of 2 MB.
    let app = Router::new()
        .route("/hook", post(arrive))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let log = dir.join("orderwatch.log");
    let day = config(&dir, &sim.base, &hook, "24h")?;
    eprintln!("   baseline, then {events} changes kept for a 24 h digest");
    check_exit(
        "digest baseline",
        &measure(once(binary, &day, &log)?, None).await?,
    )?;
    let mut all = client.orders(events).await?;
    all.truncate(events);
    client.flip(&mut all).await?;
    check_exit(
        "digest: keep",
        &measure(once(binary, &day, &log)?, None).await?,
    )?;
    if !got.lock().unwrap().is_empty() {
        bail!("the webhook got something before the period ended");
    }
    // The same store, a 1 s period: once the second in which the last event
    // was kept is over, every kept event's period has ended.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    eprintln!("   the period ends: make and send the digest");
    let ended = config(&dir, &sim.base, &hook, "1s")?;
    let m = measure(once(binary, &ended, &log)?, None).await?;
    check_exit("digest: send", &m)?;
    let arrivals = got.lock().unwrap().clone();
    let &[(arrived, size)] = arrivals.as_slice() else {
        bail!("{} webhooks for one digest", arrivals.len());
    };
    let (made_at, took_ms, doc_bytes, held, rendered_ms) =
        digest_made(&log).context("no \"digest made\" line in the log")?;
    if held != events as u64 {
        bail!("the digest holds {held} events, not {events}");
    }
    let sent = arrived.duration_since(made_at).unwrap_or_default();
    let took = Duration::from_millis(took_ms);
    let total = took + sent;
    rows.push(Row {
        n: events,
        phase: "digest of a day",
        wall: Some(total),
        cpu: None,
        rss_kb: Some(m.max_rss_kb),
        written: Some(bytes(m.written)),
        extra: format!(
            "{events} events in one digest: made in {} (read and render {}, then the transaction that queues it), sent in {} (to its arrival); **{} in all** (target ≤ 1 s); document {} ({} arrived); the whole `once` {}, CPU {}",
            secs(took),
            secs(Duration::from_millis(rendered_ms)),
            secs(sent),
            secs(total),
            bytes(doc_bytes),
            bytes(size as u64),
            secs(m.wall),
            secs(m.cpu),
        ),
        ..Default::default()
    });
    drop(sim);
    Ok(())
}
