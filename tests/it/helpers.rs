//! Shared test parts: the simulator on port 0, a recording webhook receiver,
//! configs in temp dirs, and the real `orderwatch` binary.

#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use orderwatch_simulator::{self as simulator, RunningSimulator, SimOptions};
use serde_json::Value;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "orderwatch-demo";
pub const CLIENT_SECRET: &str = "demo-secret";
pub const API_KEY: &str = "demo-api-key";
pub const WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Serve `app` on 127.0.0.1, a port the system picks, until the test ends.
pub async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

pub async fn simulator(orders: usize) -> RunningSimulator {
    simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimOptions {
            orders,
            ..SimOptions::default()
        },
    )
    .await
    .expect("simulator starts")
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The status the receiver answered.
    pub answered: u16,
    /// When the answer was sent (after any configured delay).
    pub answered_at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Statuses to answer next, in order; 200 once empty.
    script: VecDeque<u16>,
    /// Hold every answer this long (a slow receiver).
    delay: Duration,
}

/// A webhook receiver on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
    stop: Arc<tokio::sync::Notify>,
    server: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.notified().await })
                .await;
        });
        Receiver {
            url,
            state,
            stop,
            server: Arc::new(Mutex::new(Some(server))),
        }
    }

    pub fn addr(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/hook")
            .to_owned()
    }

    /// Stop serving; returns once the port is closed.
    pub async fn stop(&self) {
        self.stop.notify_one();
        let server = self.server.lock().unwrap().take();
        if let Some(server) = server {
            let _ = server.await;
        }
    }

    /// Answer these statuses to the next requests, then 200.
    pub fn script(&self, statuses: &[u16]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(statuses.iter().copied());
    }

    /// Answer every request only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Forget the statuses still scripted: 200 from now on.
    pub fn clear_script(&self) {
        self.state.lock().unwrap().script.clear();
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests answered with 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered < 300)
            .collect()
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    let (status, delay) = {
        let mut s = state.lock().unwrap();
        (s.script.pop_front().unwrap_or(200), s.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    state.lock().unwrap().received.push(Received {
        headers,
        body,
        at,
        answered: status,
        answered_at: Instant::now(),
    });
    StatusCode::from_u16(status).unwrap()
}

/// A tracking source that watches open orders (`filters: {status: Current}`,
/// plus `extra` source keys), one signed webhook sink, and `rest` top-level
/// YAML.
pub fn current_tracking_workspace(
    base_url: &str,
    hook_url: &str,
    extra: &str,
    rest: &str,
) -> Workspace {
    Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            base_url,
            &format!("    filters: {{ status: Current }}\n{extra}"),
        ),
        &webhook_sink_yaml("hook", hook_url),
        rest,
    )
}

/// The tracking source of [`current_tracking_workspace`] with any `sinks`
/// (YAML list items).
pub fn current_tracking_with_sinks(base_url: &str, sinks: &str) -> Workspace {
    Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            base_url,
            "    filters: { status: Current }\n",
        ),
        sinks,
        "",
    )
}

/// A source block for the simulator.
pub fn source_yaml(name: &str, api: &str, base_url: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    api: {api}\n    base_url: {base_url}\n    client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n    api_key: {API_KEY}\n    interval: 1s\n    retry_backoff: 50ms\n{extra}"
    )
}

pub fn webhook_sink_yaml(name: &str, url: &str) -> String {
    format!("  - name: {name}\n    type: webhook\n    url: {url}\n    secret: {WEBHOOK_SECRET}\n")
}

/// A temp dir with `orderwatch.yaml` and the store beside it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new(sources: &str, sinks: &str, rest: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let yaml = format!(
            "state_dir: {}\nsources:\n{sources}sinks:\n{sinks}delivery:\n  backoff: {{ initial: 100ms, max: 1s }}\n{rest}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("orderwatch.yaml"), yaml).expect("write config");
        Workspace { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("orderwatch.yaml")
    }

    /// Point the config's `state_dir` at `to` instead of `data` here.
    pub fn set_state_dir(&self, to: &Path) {
        let config = std::fs::read_to_string(self.config_path()).expect("read config");
        let config = config.replace(
            &format!("state_dir: {}", self.dir.path().join("data").display()),
            &format!("state_dir: {}", to.display()),
        );
        std::fs::write(self.config_path(), config).expect("write config");
    }

    /// Start `orderwatch run` with this config as a child process; its
    /// stderr goes to `run.log` in the workspace (appended across runs).
    pub fn spawn_run(&self) -> tokio::process::Child {
        self.spawn_run_with(&[])
    }

    /// [`Self::spawn_run`] with more environment variables.
    pub fn spawn_run_with(&self, env: &[(&str, &str)]) -> tokio::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open run.log");
        tokio::process::Command::new(binary())
            .arg("--config")
            .arg(self.config_path())
            .arg("run")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("orderwatch run starts")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("run.log")
    }

    /// `orderwatch once`, which must succeed (exit 0).
    pub async fn once_ok(&self) {
        let out = self.run(&["once"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }

    /// Run the real binary with this config; waits for it to exit.
    pub async fn run(&self, args: &[&str]) -> Output {
        run_binary(&self.config_path(), args, &[]).await
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_orderwatch")
}

pub async fn run_binary(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(binary());
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("orderwatch finished in time")
        .expect("orderwatch runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The simulator's admin API.
pub struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    pub fn new(sim: &RunningSimulator) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: sim.base_url(),
        }
    }

    pub async fn patch(&self, api: &str, id: &str, patch: Value) {
        let r = self
            .http
            .patch(format!("{}/_sim/{api}/orders/{id}", self.base))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "patch {id}: {}", r.status());
    }

    pub async fn add(&self, api: &str, order: Value) {
        let r = self
            .http
            .post(format!("{}/_sim/{api}/orders", self.base))
            .json(&order)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "add: {}", r.status());
    }

    pub async fn delete(&self, api: &str, id: &str) {
        let r = self
            .http
            .delete(format!("{}/_sim/{api}/orders/{id}", self.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "delete {id}: {}", r.status());
    }

    pub async fn fault(&self, fault: Value) {
        let r = self
            .http
            .post(format!("{}/_sim/faults", self.base))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "fault: {}", r.status());
    }

    /// `DELETE /_sim/faults`: every fault gone (expired tokens stay expired).
    pub async fn clear_faults(&self) {
        let r = self
            .http
            .delete(format!("{}/_sim/faults", self.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "clear faults: {}", r.status());
    }

    pub async fn changes(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_sim/changes", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_sim/stats", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Ids of the orders of `api` matching a filter such as `status=Current`.
    pub async fn ids(&self, path: &str, query: &str) -> Vec<String> {
        self.orders(path, query)
            .await
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A bearer token from the simulator's token endpoint.
    pub async fn token(&self) -> String {
        let token: Value = self
            .http
            .post(format!("{}/oauth/v3/token", self.base))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["access_token"].as_str().unwrap().to_owned()
    }

    /// The orders (at most 1,000) the API at `path` lists for `query`.
    pub async fn orders(&self, path: &str, query: &str) -> Vec<Value> {
        let token = self.token().await;
        let list: Vec<Value> = self
            .http
            .get(format!("{}{path}?{query}&limit=1000&sort=id", self.base))
            .bearer_auth(token)
            .header("X-API-Key", API_KEY)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list
    }
}

/// Close the first `n` Current orders of the tracking API; their ids.
pub async fn close_orders(admin: &Admin, n: usize) -> Vec<String> {
    let path = "/order-tracking/b2b/v1/orders";
    let ids: Vec<String> = admin.ids(path, "status=Current").await[..n].to_vec();
    for id in &ids {
        admin
            .patch(
                "order-tracking",
                id,
                serde_json::json!({"status": "Closed"}),
            )
            .await;
    }
    ids
}

/// Verify a Standard Webhooks signature independently of orderwatch's code.
pub fn verify_signature(r: &Received, secret: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    let signed = format!(
        "{}.{}.{}",
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        String::from_utf8_lossy(&r.body)
    );
    mac.update(signed.as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// The events of one type a receiver took (answered 2xx), as JSON.
pub fn delivered_of_type(hook: &Receiver, kind: &str) -> Vec<Value> {
    hook.delivered()
        .iter()
        .map(Received::json)
        .filter(|e| e["type"] == kind)
        .collect()
}

/// Wait for a condition, polling, up to a deadline (no fixed sleeps).
pub async fn eventually<F: FnMut() -> bool>(what: &str, timeout: Duration, mut check: F) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// How many times `needle` occurs in the workspace's `run.log`.
pub fn log_count(ws: &Workspace, needle: &str) -> usize {
    std::fs::read_to_string(ws.log_path())
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// Wait for a condition checked by an async call, up to a deadline.
pub async fn eventually_async<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Say that a test did not check what its name says, and why, where
/// `cargo test` shows it without `--nocapture`: libtest captures what the
/// print macros write, not a direct write to the process's stderr. A test
/// that may skip at run time says so in its name too (`..._unless_root`);
/// one whose condition is known beforehand is `#[ignore = "reason"]`.
pub fn skipped(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "test {test} ... skipped: {reason}");
}

/// Whether this process can read files it has no permission for (root):
/// then permission tests prove nothing and are skipped.
pub fn permissions_are_bypassed() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let probe = dir.path().join("probe");
    std::fs::write(&probe, "x").expect("write probe");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    std::fs::read(&probe).is_ok()
}

/// A real SMTP server's handler (mailin) that records what it gets and
/// refuses on demand.
#[derive(Clone, Default)]
pub struct SmtpRecorder {
    /// Every accepted message, as received.
    pub messages: Arc<Mutex<Vec<String>>>,
    /// When each DATA command arrived, refused or not.
    pub arrivals: Arc<Mutex<Vec<Instant>>>,
    /// Refuse every recipient / every DATA with this code and text.
    pub refuse_rcpt: Arc<Mutex<Option<(u16, String)>>>,
    pub refuse_data: Arc<Mutex<Option<(u16, String)>>>,
    /// Answer 451 (temporary) to this many more DATA commands.
    pub refuse_next: Arc<Mutex<usize>>,
    /// The user and password of every successful AUTH PLAIN.
    pub logins: Arc<Mutex<Vec<(String, String)>>>,
    /// Refuse every login with this code, quoting the user and password it
    /// got (a server that echoes what it was sent).
    pub refuse_login: Arc<Mutex<Option<u16>>>,
    /// The message being received on this connection.
    current: Vec<u8>,
}

impl mailin_embedded::Handler for SmtpRecorder {
    fn auth_plain(
        &mut self,
        _authz: &str,
        user: &str,
        password: &str,
    ) -> mailin_embedded::Response {
        if let Some(code) = *self.refuse_login.lock().unwrap() {
            return mailin_embedded::Response::custom(
                code,
                format!("5.7.8 no user {user} with password {password}"),
            );
        }
        self.logins
            .lock()
            .unwrap()
            .push((user.to_owned(), password.to_owned()));
        mailin_embedded::response::AUTH_OK
    }

    fn rcpt(&mut self, _to: &str) -> mailin_embedded::Response {
        match self.refuse_rcpt.lock().unwrap().clone() {
            Some((code, text)) => mailin_embedded::Response::custom(code, text),
            None => mailin_embedded::response::OK,
        }
    }

    // Refused at DATA, not after the content: mailin stays in its data
    // state after a refused end of data and would not answer the QUIT.
    fn data_start(&mut self, _: &str, _: &str, _: bool, _: &[String]) -> mailin_embedded::Response {
        self.arrivals.lock().unwrap().push(Instant::now());
        if let Some((code, text)) = self.refuse_data.lock().unwrap().clone() {
            return mailin_embedded::Response::custom(code, text);
        }
        let mut refuse = self.refuse_next.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return mailin_embedded::Response::custom(451, "try again later".to_owned());
        }
        self.current.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let message = String::from_utf8_lossy(&self.current).into_owned();
        self.messages.lock().unwrap().push(message);
        mailin_embedded::response::OK
    }
}

/// An SMTP server on a free port, serving on its own thread for the rest of
/// the test binary's life.
pub fn smtp_server() -> (SmtpRecorder, u16) {
    let handler = SmtpRecorder::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = mailin_embedded::Server::new(handler.clone());
    server.with_name("mx.test").with_tcp_listener(listener);
    std::thread::spawn(move || {
        // Ends only on a listener error, which the test then sees as a refused mail.
        let _ = server.serve();
    });
    (handler, port)
}

/// An SMTP server offering STARTTLS and AUTH PLAIN, with a certificate for
/// `localhost` written to `dir`: its port, and the certificate's path (the
/// `ca_file` that trusts it).
pub fn tls_smtp_server(handler: SmtpRecorder, dir: &Path) -> (u16, PathBuf) {
    use mailin_embedded::{AuthMechanism, SslConfig};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = mailin_embedded::Server::new(handler);
    server
        .with_name("localhost")
        .with_ssl(SslConfig::SelfSigned {
            cert_path: cert_path.display().to_string(),
            key_path: key_path.display().to_string(),
        })
        .unwrap()
        .with_auth(AuthMechanism::Plain)
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (port, cert_path)
}

/// Send SIGTERM to a child and wait (up to `within`) for it to exit.
pub async fn terminate(
    child: &mut tokio::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    let pid = child.id().expect("running");
    let term = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(term.success());
    tokio::time::timeout(within, child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap()
}

/// Stop `orderwatch run` with SIGTERM; it must exit cleanly within 30 s.
pub async fn stop_daemon(mut child: tokio::process::Child) {
    let status = terminate(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
}

/// One request as it arrived at an [`ArrivalRecorder`], before any answer.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type ArrivalState = (Arc<Mutex<Vec<Arrival>>>, Arc<Mutex<Duration>>);

/// A receiver that records each request the moment it arrives (the
/// [`Receiver`] records answers), then holds it `delay` and answers 200:
/// what a test of deliveries in flight needs.
#[derive(Clone)]
pub struct ArrivalRecorder {
    pub url: String,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    delay: Arc<Mutex<Duration>>,
}

impl ArrivalRecorder {
    pub async fn start(delay: Duration) -> ArrivalRecorder {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let delay = Arc::new(Mutex::new(delay));
        let state = (arrivals.clone(), delay.clone());
        let app = Router::new()
            .route(
                "/{*path}",
                post(
                    |State((arrivals, delay)): State<ArrivalState>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        arrivals.lock().unwrap().push(Arrival {
                            at: Instant::now(),
                            headers,
                            body,
                        });
                        let wait = *delay.lock().unwrap();
                        tokio::time::sleep(wait).await;
                        StatusCode::OK
                    },
                ),
            )
            .with_state(state);
        let url = format!("http://{}/hook", serve(app).await);
        ArrivalRecorder {
            url,
            arrivals,
            delay,
        }
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }
}

/// The summary line `once` prints on stdout.
pub fn once_summary(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("once: "))
        .unwrap_or_default()
        .to_owned()
}

/// The address `orderwatch run` serves health and metrics on, from its log
/// (the config says port 0).
pub async fn health_addr(ws: &Workspace) -> String {
    let mut addr = String::new();
    eventually(
        "the health server listening",
        Duration::from_secs(30),
        || {
            let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
            match log.split("health and metrics on http://").nth(1) {
                Some(rest) => {
                    addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    true
                }
                None => false,
            }
        },
    )
    .await;
    addr
}

/// Every order of the simulator's tracking API announced
/// (`first_poll: notify`) to `sinks`, with `rest` top-level YAML.
pub fn notify_workspace(sim: &RunningSimulator, sinks: &str, rest: &str) -> Workspace {
    Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    first_poll: notify\n",
        ),
        sinks,
        rest,
    )
}

/// A captured teams message (`path`) checked by tests/receivers/verify-card.mjs,
/// which parses its Adaptive Card with the official `adaptivecards`
/// package; that package must be installed (`npm ci` there).
pub fn verify_card(path: &Path) -> Output {
    let receivers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/receivers");
    let out = std::process::Command::new("node")
        .args(["verify-card.mjs", path.to_str().unwrap()])
        .current_dir(&receivers)
        .output()
        .unwrap_or_else(|e| panic!("node does not run: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("Cannot find module"),
        "the adaptivecards library is missing (npm ci in tests/receivers):\n{stderr}"
    );
    out
}

pub fn slack_sink_yaml(name: &str, url: &str) -> String {
    format!("  - name: {name}\n    type: slack\n    url: {url}\n")
}
