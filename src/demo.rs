//! `orderwatch demo`: the simulator (with orders changing on their own), the
//! daemon and a console sink in one process, with a generated config. No
//! credentials, no files: a newcomer sees real events within seconds.

use crate::app::{App, shutdown_signal};
use crate::config::{Config, LogConfig, LogFormat};
use orderwatch_simulator::{self as simulator, SimOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

/// Serve the simulator on `listen` with `opts` (its credentials are the
/// generated config's) and watch it until SIGINT or SIGTERM.
pub async fn run(listen: SocketAddr, opts: SimOptions) -> anyhow::Result<ExitCode> {
    // Quiet logs: the console sink's lines are the show. RUST_LOG still wins.
    crate::telemetry::init(&LogConfig {
        format: LogFormat::Text,
        level: "warn".to_owned(),
    });
    let stop = shutdown_signal();
    let (orders, churn) = (opts.orders, opts.churn);
    let (client_id, client_secret, api_key) = (
        opts.client_id.clone(),
        opts.client_secret.clone(),
        opts.api_key.clone(),
    );
    let sim = simulator::start(listen, opts).await?;
    let state = tempfile::Builder::new()
        .prefix("orderwatch-demo-")
        .tempdir()?;
    let yaml = format!(
        r#"state_dir: {state}
sources:
  - name: tracking
    api: order-tracking
    base_url: {base}
    client_id: {client_id}
    client_secret: {client_secret}
    api_key: {api_key}
    interval: 2s
    filters: {{ status: Current }}
    sort: -id
  - name: requests
    api: ordering
    base_url: {base}
    client_id: {client_id}
    client_secret: {client_secret}
    api_key: {api_key}
    interval: 2s
    closed_statuses: [COMPLETED]
  - name: orders
    api: ordering
    resource: orders
    base_url: {base}
    client_id: {client_id}
    client_secret: {client_secret}
    api_key: {api_key}
    interval: 2s
    incremental: {{ full_every: 1m }}
sinks:
  - name: console
    type: console
"#,
        state = state.path().display(),
        base = sim.base_url(),
    );
    let config = Config::parse(
        &yaml,
        Path::new("demo.yaml"),
        &HashMap::<String, String>::new(),
    )
    .map_err(|e| anyhow::anyhow!("the generated demo config is invalid (a bug): {e}"))?;
    let templates = crate::deliver::Templates::compile(&config)
        .map_err(|p| anyhow::anyhow!("the demo templates are invalid (a bug): {p:?}"))?;

    println!("orderwatch demo");
    println!(
        "  simulated Orange APIs: {}  ({} orders each, {} changes/s)",
        sim.base_url(),
        orders,
        churn
    );
    println!("  store: {} (removed on exit)", state.path().display());
    println!(
        "  the generated config (save it, change state_dir, and `orderwatch --config FILE run` against this simulator):"
    );
    for line in yaml.lines() {
        println!("    {line}");
    }
    println!(
        "Watching; the first poll records a silent baseline, changes follow within seconds. Ctrl-C stops."
    );
    println!();

    let app = App::build(config, std::sync::Arc::new(templates))?;
    app.run(stop).await?;
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
