//! The simulator of Orange's Order Tracking API v1 and Ordering API v2: the
//! public face (`SimOptions`, `start`, `RunningSimulator`) and the layout.
//!
//! Layout:
//! - `server`: the router, and the middleware that stamps request ids, counts
//!   calls, adds latency and injects status faults
//! - `token`: `POST /oauth/v3/token`
//! - `api`: list and detail of both APIs, and the credential checks before them
//! - `admin`: the `/_sim/...` endpoints tests script the simulator with
//! - `state`: everything shared between requests, and every mutation of orders
//! - `book`: one API's orders with their cached JSON and sorted views
//! - `fields`, `query`, `accept`: pure parsing and comparison
//! - `auth`, `ratelimit`, `faults`, `stats`, `changelog`, `requests`, `diff`,
//!   `errors`
//! - `generate`, `churn`: deterministic data and its drift over time

mod accept;
mod admin;
mod api;
mod auth;
mod book;
mod changelog;
mod churn;
mod diff;
mod errors;
mod faults;
mod fields;
mod generate;
mod query;
mod ratelimit;
mod requests;
mod server;
mod state;
mod stats;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The admin endpoints, as the start-up banner lists them: method, path
/// (`{api}` is `order-tracking`, `ordering` for Ordering's requests or
/// `ordering-orders` for its orders) and what it does.
pub const ADMIN_ENDPOINTS: &[(&str, &str, &str)] = &[
    ("POST", "/_sim/{api}/orders", "add an order (JSON body)"),
    (
        "PATCH",
        "/_sim/{api}/orders/{id}",
        "JSON merge patch an order",
    ),
    ("DELETE", "/_sim/{api}/orders/{id}", "remove an order"),
    (
        "POST",
        "/_sim/faults",
        r#"inject faults: {"status":503,"count":3}, {"latency_ms":200}, {"rate_limit_per_minute":10}, {"expire_tokens":true}, {"truncate_body":true,"count":1}"#,
    ),
    ("DELETE", "/_sim/faults", "clear every fault"),
    ("GET", "/_sim/stats", "calls served, by endpoint and status"),
    (
        "GET",
        "/_sim/changes",
        "every change made (by churn or admin), oldest first; ?since=SEQ for the later ones",
    ),
    (
        "GET",
        "/_sim/requests",
        "the last 100000 API calls served (token, list, detail), oldest first: seq, time (unix ms), method, path, query, status, client (token-N); ?since=SEQ for the later ones",
    ),
];

/// How a simulator is set up. `Default` gives the values `orderwatch simulate`
/// prints at start.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Orders generated at start in each API.
    pub orders: usize,
    /// Same seed, same orders and same churn sequence.
    pub seed: u64,
    /// Changes per second on average, across both APIs; 0 disables churn.
    pub churn: f64,
    pub client_id: String,
    pub client_secret: String,
    pub api_key: String,
    /// Lifetime of issued tokens (`expires_in` is its whole seconds).
    pub token_ttl: Duration,
    /// Budget of API calls per rolling minute; `None` is unlimited.
    pub rate_limit_per_minute: Option<u32>,
    /// The largest `limit` a list call is served (a larger one is served as
    /// this many). Orange's pages are small; raising it lets a tool that reads
    /// the whole list as one document (the benchmark's urlwatch job) do so.
    pub max_page_size: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            orders: 1000,
            seed: 1,
            churn: 0.0,
            client_id: "orderwatch-demo".to_owned(),
            client_secret: "demo-secret".to_owned(),
            api_key: "demo-api-key".to_owned(),
            token_ttl: Duration::from_secs(3600),
            rate_limit_per_minute: None,
            max_page_size: query::MAX_LIMIT,
        }
    }
}

/// A started simulator (listener bound, serving in a tokio task, churn task
/// running). Dropping it without `shutdown` still tells both tasks to stop,
/// but does not wait for them.
pub struct RunningSimulator {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    churn: Option<JoinHandle<()>>,
}

/// How long `shutdown` lets open connections finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl RunningSimulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, with no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop churning (the server goes on): the orders stay as they are, so a
    /// test can let a daemon settle and compare.
    pub async fn stop_churn(&mut self) {
        if let Some(task) = self.churn.take() {
            task.abort();
            // A step runs between awaits: once aborted, none is half done.
            let _ = task.await;
        }
    }

    /// Stop serving and churning, and wait for both tasks.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in [self.churn.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                // A client holding a connection open must not hang shutdown.
                abort.abort();
            }
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Bind `listen` (e.g. `127.0.0.1:0`) and start serving; returns once the
/// socket is bound. Generating the orders happens first, off the async
/// threads, so a large `orders` delays the return rather than the runtime.
pub async fn start(listen: SocketAddr, opts: SimOptions) -> std::io::Result<RunningSimulator> {
    let churn_rate = opts.churn;
    let seed = opts.seed;
    let sim = tokio::task::spawn_blocking(move || state::SimState::new(&opts))
        .await
        .map_err(std::io::Error::other)?;
    let sim = Arc::new(sim);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);

    let app = server::router(Arc::clone(&sim));
    let mut server_stop = stopped.clone();
    let server = tokio::spawn(async move {
        let signal = async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::error!(%error, "simulator server stopped");
        }
    });

    let churn = (churn_rate.is_finite() && churn_rate > 0.0).then(|| {
        let churner = churn::Churner::new(seed);
        tokio::spawn(churn::run(Arc::clone(&sim), churner, churn_rate, stopped))
    });

    tracing::info!(%addr, "simulator listening");
    Ok(RunningSimulator {
        addr,
        stop,
        server: Some(server),
        churn,
    })
}
