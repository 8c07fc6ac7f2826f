//! The command line (README.md "Commands"): `orderwatch [--config FILE] COMMAND`.
//!
//! Exit codes: 0 ok, 1 runtime failure (for `once`: a poll failed, or
//! notifications were dead-lettered), 2 bad config or usage, 3 (`once`)
//! deliveries still queued.

use crate::app::{App, shutdown_signal};
use crate::config::Config;
use crate::deliver::Templates;
use crate::inspect;
use crate::telemetry;
use clap::{Args, Parser, Subcommand};
use orderwatch_simulator::{self as simulator, SimOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "orderwatch",
    version,
    about = "Watches your Orange Business orders and tells you when they change"
)]
pub struct Cli {
    /// The config file [default: $ORDERWATCH_CONFIG, then ./orderwatch.yaml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The daemon: poll every source on its interval, deliver, serve health and metrics
    Run,
    /// One poll of every source, then deliver until the outbox is empty
    ///
    /// Ends with a summary line. Exit codes: 0 every poll succeeded and
    /// nothing due is left; 1 a poll failed, or notifications went to the
    /// dead letters during the run; 3 deliveries are still queued (kept for
    /// the next run, not lost).
    Once {
        /// How long to keep delivering after the polls; at the deadline,
        /// deliveries in flight are abandoned and stay queued
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        drain_timeout: Duration,
    },
    /// Validate the config, listing every problem (and with --connect, reach each source)
    Check {
        /// Also get a token and read one page from each source
        #[arg(long)]
        connect: bool,
    },
    /// Send a sample event to one sink now and print the result
    NotifyTest {
        /// The sink's name, as in the config
        sink: String,
        /// The type of the sample event, e.g. source.failing to see how the
        /// sink tells a failing source
        #[arg(long, value_name = "TYPE", default_value = "order.status_changed")]
        event: crate::event::EventType,
    },
    /// The orders the store tracks
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// The event log, newest first
    Events {
        /// Only the events about this order id
        #[arg(long, value_name = "ID")]
        order: Option<String>,
        /// Show at most this many events
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// One JSON object per line, each event as delivered
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Each source's health, last cycle, next poll and last error (from a running orderwatch)
    Sources {
        /// One JSON object per line, as GET /api/v1/sources gives them
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Entries that could not be delivered, and putting them back
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// Work on the store itself
    #[command(subcommand)]
    Store(StoreCommand),
    /// Serve a simulator of both Orange APIs (no config needed)
    Simulate(SimulateArgs),
    /// Simulator + daemon + console output in one process, no config or credentials needed
    Demo(DemoArgs),
    /// Ask a running orderwatch's /healthz (for container health checks)
    Healthcheck {
        /// The URL to ask [default: /healthz on the config's `listen` address]
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrdersCommand {
    /// Every order the store tracks: source, id, status, revision, last change
    List {
        /// Only the orders of this source
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// One JSON object per line (source, order_id, status, revision, changed_at)
        #[arg(long)]
        json: bool,
        /// The order of the list: `id` (source, then id) or `changed` (the latest change first)
        #[arg(long, value_enum, default_value = "id")]
        sort: OrdersSort,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// One order: its last state and the events about it
    Show {
        /// The order's id
        id: String,
        /// Only in this source (an id may exist in several)
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// How `orders list` orders its rows (the API's `sort`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrdersSort {
    Id,
    Changed,
}

#[derive(Subcommand, Debug)]
pub enum DeadLettersCommand {
    /// Every dead letter, with its reason
    List {
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Put entries back in the outbox, under their original event ids
    Replay {
        /// Event ids, or SINK:SEQ as `dead-letters list` shows them
        ids: Vec<String>,
        /// Every dead letter
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// Asking a running orderwatch through its API instead of reading the
/// store (which it holds). Without `--url`, a store held by a running
/// orderwatch whose config has `listen` and `api_token` is asked there.
#[derive(Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// Ask the running orderwatch at URL (e.g. http://127.0.0.1:9464) through its API
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The API token [default: $ORDERWATCH_API_TOKEN, then the config's api_token]; the variable is safer (a flag shows in `ps`)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ORDERWATCH_API_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

impl RemoteArgs {
    fn remote(&self) -> inspect::Remote<'_> {
        inspect::Remote {
            url: self.url.as_deref(),
            token: self.token.as_deref(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy what is readable of a store that will not open (above all the
    /// undelivered outbox) into a new store at DIR; the old one is only read
    Salvage {
        /// The new store's directory (new or empty)
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The old store [default: the config's state_dir]
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
    /// Copy the configured sled store (stopped) into an empty PostgreSQL
    /// database, so moving to `store: {backend: postgres}` needs no new
    /// baseline; the sled store is only read
    Copy {
        /// The database to fill: postgres://user[:password]@host[:port]/db
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// The address to serve on
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Orders in each API
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// Same seed, same orders and same churn
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Changes per second across all orders (0: only the admin endpoints change orders)
    // Negative numbers reach parse_rate, which says what a rate is, instead
    // of clap taking `-1` for an unknown flag.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate, allow_negative_numbers = true)]
    pub churn: f64,
    /// The OAuth client id the token endpoint accepts
    #[arg(long, default_value_t = SimOptions::default().client_id)]
    pub client_id: String,
    /// The OAuth client secret the token endpoint accepts
    #[arg(long, default_value_t = SimOptions::default().client_secret)]
    pub client_secret: String,
    /// The X-API-Key the APIs accept
    #[arg(long, default_value_t = SimOptions::default().api_key)]
    pub api_key: String,
    /// Lifetime of the tokens it gives (e.g. 30s, 5m, 1h)
    #[arg(long, value_name = "DURATION", default_value_t = SimOptions::default().token_ttl.into())]
    pub token_ttl: humantime::Duration,
    /// Answer 429 (code 53) past this many API calls a minute [default: no limit]
    #[arg(long, value_name = "N")]
    pub rate_limit_per_minute: Option<u32>,
    /// Largest `limit` a list call is served (larger ones are cut to it)
    #[arg(long, default_value_t = 1000)]
    pub max_page_size: usize,
    #[command(flatten)]
    pub no_config: NoConfig,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Orders in each simulated API
    #[arg(long, default_value_t = 200)]
    pub orders: usize,
    /// Changes per second
    #[arg(long, default_value_t = 2.0, value_parser = parse_rate, allow_negative_numbers = true)]
    pub churn: f64,
    /// Where the simulator listens (port 0: any free port)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub no_config: NoConfig,
}

/// Takes the place of the global `--config` in commands that read no
/// config: not offered in their help, and refused if given after them.
#[derive(Args, Debug, Clone)]
pub struct NoConfig {
    #[arg(long = "config", id = "config", hide = true, value_parser = no_config)]
    config: Option<String>,
}

fn no_config(_: &str) -> Result<String, String> {
    Err("this command reads no config file".to_owned())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("not a duration ({e}); examples: 30s, 5m"))
}

/// A rate of changes per second: a finite number, 0 or more.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err("not a rate: a number of changes per second, 0 or more (e.g. 2, 0.5)".into()),
    }
}

fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// Load the config and compile its templates, or print every problem and
/// give exit code 2: a bad config never reaches the network.
fn load(cli: &Cli) -> Result<(Config, Arc<Templates>), ExitCode> {
    let path = crate::config::resolve_path(cli.config.as_deref());
    let config = Config::load(&path).map_err(|e| {
        eprint!("{e}");
        exit(2)
    })?;
    match Templates::compile(&config) {
        Ok(t) => Ok((config, Arc::new(t))),
        Err(problems) => {
            eprint!(
                "{}",
                crate::config::ConfigError {
                    file: path,
                    problems
                }
            );
            Err(exit(2))
        }
    }
}

/// Run the command `cli` names, to its exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(code) => code,
        // `orderwatch events | head` closing the pipe is not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            exit(0)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit(1)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Simulate(args) => {
            telemetry::init_default();
            return simulate(args.clone()).await;
        }
        Command::Demo(args) => {
            let opts = SimOptions {
                orders: args.orders,
                churn: args.churn,
                ..SimOptions::default()
            };
            return crate::demo::run(args.listen, opts).await;
        }
        Command::Orders(_)
        | Command::Events { .. }
        | Command::Sources { .. }
        | Command::DeadLetters(_) => {
            return inspect_command(&cli).await;
        }
        // With --from, salvage needs no config (it may be what is broken).
        Command::Store(StoreCommand::Salvage {
            to,
            from: Some(from),
        }) => return Ok(salvage(from, to)),
        _ => {}
    }
    let (config, templates) = match load(&cli) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    telemetry::init(&config.log);
    match cli.command {
        Command::Run => {
            let stop = shutdown_signal();
            // Bound before anything runs: a port that is taken fails the
            // start, and the log names the address (the port `listen: ...:0`
            // was given).
            let mut app = match App::build(config, templates) {
                Ok(app) => app,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(exit(1));
                }
            };
            app.reload_from(crate::config::resolve_path(cli.config.as_deref()));
            if let Err(e) = app.bind().await {
                eprintln!("error: {e:#}");
                return Ok(exit(1));
            }
            app.run(stop).await?;
            Ok(exit(0))
        }
        Command::Once { drain_timeout } => {
            let app = App::build(config, templates)?;
            let report = app.once(drain_timeout).await?;
            println!("{report}");
            Ok(exit(report.outcome.exit_code()))
        }
        Command::Check { connect } => check(&config, connect).await,
        Command::NotifyTest { sink, event } => {
            crate::app::notify_test(&config, templates, &sink, event).await
        }
        Command::Healthcheck { url } => healthcheck(&config, url).await,
        Command::Store(StoreCommand::Salvage { to, from }) => {
            Ok(salvage(from.as_deref().unwrap_or(&config.state_dir), &to))
        }
        Command::Store(StoreCommand::Copy { to }) => Ok(copy(&config, to).await),
        Command::Simulate(_)
        | Command::Demo(_)
        | Command::Orders(_)
        | Command::Events { .. }
        | Command::Sources { .. }
        | Command::DeadLetters(_) => Ok(exit(2)),
    }
}

/// `orders`, `events`, `sources`, `dead-letters`: from the store, or
/// through a running orderwatch's API.
async fn inspect_command(cli: &Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config.as_deref();
    macro_rules! backend {
        ($remote:expr, $stopped_ok:expr) => {
            match inspect::backend(config, &$remote.remote(), $stopped_ok).await {
                Ok(b) => b,
                Err(code) => return Ok(code),
            }
        };
    }
    match &cli.command {
        Command::Orders(OrdersCommand::List {
            source,
            json,
            sort,
            remote,
        }) => {
            let backend = backend!(remote, false);
            inspect::orders_list(backend, source.as_deref(), *json, *sort).await
        }
        Command::Orders(OrdersCommand::Show { id, source, remote }) => {
            inspect::orders_show(backend!(remote, false), id, source.as_deref()).await
        }
        Command::Events {
            order,
            limit,
            json,
            remote,
        } => inspect::events(backend!(remote, false), order.as_deref(), *limit, *json).await,
        Command::Sources { json, remote } => inspect::sources(backend!(remote, true), *json).await,
        Command::DeadLetters(DeadLettersCommand::List { json, remote }) => {
            inspect::dead_letters_list(backend!(remote, false), *json).await
        }
        Command::DeadLetters(DeadLettersCommand::Replay { ids, all, remote }) => {
            inspect::dead_letters_replay(backend!(remote, false), ids, *all).await
        }
        _ => Ok(exit(2)),
    }
}

async fn check(config: &Config, connect: bool) -> anyhow::Result<ExitCode> {
    println!(
        "config ok: {} source(s), {} sink(s), {} route(s)",
        config.sources.len(),
        config.sinks.len(),
        config.routes.len()
    );
    if !connect {
        return Ok(exit(0));
    }
    let mut failed = false;
    for source in &config.sources {
        let client = match crate::source::SourceClient::new(source) {
            Ok(c) => c,
            Err(e) => {
                println!("source {}: FAILED: {e}", source.name);
                failed = true;
                continue;
            }
        };
        match client.page(0).await {
            Ok(page) => {
                let total = page.total.map(|t| format!(" of {t}")).unwrap_or_default();
                println!(
                    "source {}: ok (token obtained, first page: {} orders{total})",
                    source.name,
                    page.orders.len()
                );
            }
            Err(e) => {
                println!("source {}: FAILED: {e}", source.name);
                failed = true;
            }
        }
    }
    Ok(exit(if failed { 2 } else { 0 }))
}

/// `orderwatch store salvage`: counts per tree on stdout, problems on stderr.
fn salvage(from: &std::path::Path, to: &std::path::Path) -> ExitCode {
    println!("salvaging {} into {} ...", from.display(), to.display());
    match crate::store::salvage::salvage(from, to) {
        Ok(report) => {
            println!(
                "{:<14} {:>9} {:>11} {:>9}  READ TO THE END",
                "TREE", "COPIED", "UNREADABLE", "DAMAGED"
            );
            for t in &report.trees {
                println!(
                    "{:<14} {:>9} {:>11} {:>9}  {}",
                    t.name,
                    t.copied,
                    t.unreadable,
                    t.damaged,
                    if t.complete { "yes" } else { "NO" }
                );
            }
            for note in &report.notes {
                println!("note: {note}");
            }
            println!(
                "done: the new store is {} ({} record(s) lost); {} was not changed. Point state_dir at the new store, then start orderwatch.",
                to.display(),
                report.lost(),
                from.display()
            );
            exit(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit(1)
        }
    }
}

/// `orderwatch store copy`: counts per table on stdout, problems on stderr.
async fn copy(config: &Config, to: String) -> ExitCode {
    if config.store != crate::config::StoreConfig::Sled {
        eprintln!(
            "error: the config's store is not sled: `store copy` copies the sled store in state_dir (point the config at it with `store: {{ backend: sled }}`, or drop the `store` key)"
        );
        return exit(2);
    }
    // The URL may carry a password: known to the redactor before any
    // message could quote it.
    let to = crate::secret::Secret::database_url(to);
    let from = config.state_dir.clone();
    println!("copying the sled store in {} ...", from.display());
    // The copy feeds the database from a thread that may block.
    let copied =
        tokio::task::spawn_blocking(move || crate::store::copy::copy(&from, to.expose())).await;
    match copied {
        Ok(Ok(report)) => {
            println!("{:<14} {:>9}", "TABLE", "COPIED");
            for (table, n) in &report.tables {
                println!("{table:<14} {n:>9}");
            }
            println!(
                "done: {} holds a copy of {}, which was not changed. Point the config at it (store: {{ backend: postgres, url: ... }}), then start orderwatch: no new baseline is needed.",
                report.at,
                config.state_dir.display()
            );
            exit(0)
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            exit(1)
        }
        Err(e) => {
            eprintln!("error: the copy stopped: {e}");
            exit(1)
        }
    }
}

async fn healthcheck(config: &Config, url: Option<String>) -> anyhow::Result<ExitCode> {
    let url = match (url, config.listen) {
        (Some(u), _) => u,
        (None, Some(addr)) if addr.port() == 0 => {
            // The port is the system's choice at each start: only the
            // daemon's log knows it.
            eprintln!(
                "the config's `listen` ({addr}) lets the system choose the port at start: pass --url with the address `orderwatch run` logged (\"health and metrics on http://...\")"
            );
            return Ok(exit(2));
        }
        (None, Some(mut addr)) => {
            // A daemon listening on 0.0.0.0 is reached on loopback.
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}/healthz")
        }
        (None, None) => {
            eprintln!("no `listen` address in the config and no --url");
            return Ok(exit(2));
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => Ok(exit(0)),
        Ok(r) => {
            eprintln!("unhealthy: HTTP {}", r.status().as_u16());
            Ok(exit(1))
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            Ok(exit(1))
        }
    }
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let opts = simulator::SimOptions {
        orders: args.orders,
        seed: args.seed,
        churn: args.churn,
        client_id: args.client_id,
        client_secret: args.client_secret,
        api_key: args.api_key,
        token_ttl: args.token_ttl.into(),
        rate_limit_per_minute: args.rate_limit_per_minute,
        max_page_size: args.max_page_size,
    };
    let (client_id, client_secret, api_key) = (
        opts.client_id.clone(),
        opts.client_secret.clone(),
        opts.api_key.clone(),
    );
    let stop = shutdown_signal();
    let sim = simulator::start(args.listen, opts).await?;
    println!("Orange API simulator listening on {}", sim.base_url());
    println!(
        "  order tracking: {}/order-tracking/b2b/v1/orders",
        sim.base_url()
    );
    println!(
        "  ordering:       {}/ordering/b2b/v2/requests",
        sim.base_url()
    );
    println!(
        "                  {}/ordering/b2b/v2/orders",
        sim.base_url()
    );
    println!("  token:          {}/oauth/v3/token", sim.base_url());
    println!(
        "  credentials:    client_id={client_id} client_secret={client_secret} api_key={api_key}"
    );
    println!("  admin ({{api}} is order-tracking, ordering (requests) or ordering-orders):");
    for (method, path, effect) in simulator::ADMIN_ENDPOINTS {
        println!("    {method:<6} {}{path}  {effect}", sim.base_url());
    }
    println!("Ctrl-C stops it.");
    stop.await;
    sim.shutdown().await;
    Ok(exit(0))
}
