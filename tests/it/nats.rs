//! The nats sink against a real `nats-server -js`, started by each test on
//! a free port with its own store: what arrives on the stream (compared with
//! the simulator's change log), JetStream's duplicate window after a SIGKILL
//! between the publish and its acknowledgement, a server down at start, a
//! missing stream, authentication, and `notify-test`.
//!
//! The server is found as `$ORDERWATCH_NATS_SERVER` or `nats-server` on the
//! PATH or in /usr/sbin (Debian: `apt-get install nats-server`). Without it these tests say
//! they are skipped, unless `ORDERWATCH_NATS_TESTS=1` (as `.ci/run` sets it),
//! which makes a missing server a failure. The config checks need no server.

use crate::helpers::*;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const STREAM: &str = "ORDERWATCH";
const TOKEN: &str = "nats-token-Ows7c2Lq9x";
const PASSWORD: &str = "nats-password-Vb3kR8mZ";

/// The `nats-server` binary, or `None` (said as a skip) when it is absent
/// and not required.
fn nats_server_binary(test: &str) -> Option<PathBuf> {
    let found = match std::env::var_os("ORDERWATCH_NATS_SERVER") {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file()),
    };
    if found.is_none() {
        assert!(
            std::env::var("ORDERWATCH_NATS_TESTS").as_deref() != Ok("1"),
            "ORDERWATCH_NATS_TESTS=1 but no nats-server (set ORDERWATCH_NATS_SERVER or put it on the PATH; Debian: apt-get install nats-server)"
        );
        skipped(
            test,
            "no nats-server on the PATH (apt-get install nats-server; ORDERWATCH_NATS_TESTS=1 makes this a failure)",
        );
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// How a test's server wants clients to authenticate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServerAuth {
    None,
    Token,
    UserPassword,
}

/// A `nats-server` with JetStream, its config and store in a temp dir,
/// stopped when dropped.
struct NatsServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    auth: ServerAuth,
    /// The `.creds` file the test's own client uses, in operator mode.
    creds: Option<String>,
    child: Option<std::process::Child>,
}

impl NatsServer {
    /// A server on a free port, not started yet.
    fn new(test: &str, auth: ServerAuth) -> Option<NatsServer> {
        let binary = nats_server_binary(test)?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let auth_block = match auth {
            ServerAuth::None => String::new(),
            ServerAuth::Token => format!("authorization {{\n  token: \"{TOKEN}\"\n}}\n"),
            ServerAuth::UserPassword => format!(
                "authorization {{\n  users: [ {{ user: \"orderwatch\", password: \"{PASSWORD}\" }} ]\n}}\n"
            ),
        };
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n{auth_block}",
            dir.path().join("store").display()
        );
        std::fs::write(dir.path().join("nats.conf"), config).expect("write nats.conf");
        Some(NatsServer {
            binary,
            dir,
            port,
            auth,
            creds: None,
            child: None,
        })
    }

    /// A server, started and answering JetStream requests.
    async fn started(test: &str, auth: ServerAuth) -> Option<NatsServer> {
        let mut server = NatsServer::new(test, auth)?;
        server.start().await;
        Some(server)
    }

    async fn start(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats.log");
        let child = std::process::Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        eventually_async("nats-server answering", Duration::from_secs(30), || async {
            match self.try_connect().await {
                // JetStream answers (that no such stream exists).
                Ok(js) => matches!(
                    js.get_stream("READINESS_PROBE").await.map_err(|e| e.kind()),
                    Err(jetstream::context::GetStreamErrorKind::JetStream(_))
                ),
                Err(_) => false,
            }
        })
        .await;
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn try_connect(&self) -> Result<jetstream::Context, async_nats::ConnectError> {
        let options = match self.auth {
            ServerAuth::None if self.creds.is_some() => {
                let creds = self.creds.as_deref().unwrap_or_default();
                async_nats::ConnectOptions::with_credentials(creds).expect("a creds file")
            }
            ServerAuth::None => async_nats::ConnectOptions::new(),
            ServerAuth::Token => async_nats::ConnectOptions::with_token(TOKEN.into()),
            ServerAuth::UserPassword => async_nats::ConnectOptions::with_user_and_password(
                "orderwatch".into(),
                PASSWORD.into(),
            ),
        };
        let client = options.connect(self.url()).await?;
        Ok(jetstream::new(client))
    }

    /// A JetStream client of this server, for the test's own look.
    async fn jetstream(&self) -> jetstream::Context {
        self.try_connect().await.expect("the test connects")
    }

    async fn create_stream(&self, subjects: &str) {
        self.create_named_stream(STREAM, subjects).await;
    }

    async fn create_named_stream(&self, name: &str, subjects: &str) {
        self.jetstream()
            .await
            .create_stream(jetstream::stream::Config {
                name: name.into(),
                subjects: vec![subjects.into()],
                ..Default::default()
            })
            .await
            .expect("stream created");
    }
}

impl NatsServer {
    /// Kill the server; its store stays for the next [`Self::start`].
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message in the stream, as a consumer reads it.
#[derive(Debug)]
struct Stored {
    subject: String,
    msg_id: String,
    body: Value,
}

/// How many messages the stream holds; 0 when it does not exist.
async fn stream_count(js: &jetstream::Context) -> u64 {
    match js.get_stream(STREAM).await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Every message of the stream, read from the start by a consumer.
async fn stored_messages(js: &jetstream::Context) -> Vec<Stored> {
    let mut stream = js.get_stream(STREAM).await.expect("the stream exists");
    let count = stream.info().await.expect("stream info").state.messages as usize;
    if count == 0 {
        return Vec::new();
    }
    let reader = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a consumer");
    let mut batch = reader
        .batch()
        .max_messages(count)
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .expect("a batch");
    let mut out = Vec::new();
    while out.len() < count {
        let Some(message) = batch.next().await else {
            break;
        };
        let message = message.expect("a message");
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push(Stored {
            subject: message.subject.to_string(),
            msg_id,
            body: serde_json::from_slice(&message.payload).expect("the body is JSON"),
        });
    }
    assert_eq!(out.len(), count, "the consumer read the whole stream");
    out
}

fn nats_sink_yaml(url: &str, extra: &str) -> String {
    format!("  - name: bus\n    type: nats\n    url: {url}\n    stream: {STREAM}\n{extra}")
}

fn tracking_workspace(sim: &orderwatch_simulator::RunningSimulator, sinks: &str) -> Workspace {
    Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    filters: { status: Current }\n",
        ),
        sinks,
        "",
    )
}

/// A simulator of 30 orders whose baseline is recorded, through a nats
/// sink on `url` with `extra` keys.
async fn recorded_baseline(
    url: &str,
    extra: &str,
) -> (orderwatch_simulator::RunningSimulator, Admin, Workspace) {
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let ws = tracking_workspace(&sim, &nats_sink_yaml(url, extra));
    ws.once_ok().await;
    (sim, admin, ws)
}

/// The orders the simulator's change log says were changed.
async fn changed_orders(admin: &Admin) -> BTreeSet<String> {
    admin
        .changes()
        .await
        .iter()
        .filter(|c| c["kind"] == "changed")
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect()
}

/// One message per changed order, each its event: subject, id header and
/// body as promised, no id twice.
async fn assert_one_message_per_change(js: &jetstream::Context, admin: &Admin) {
    let stored = stored_messages(js).await;
    let changed = changed_orders(admin).await;
    let ids: BTreeSet<&str> = stored.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "an event id twice: {stored:?}");
    let orders: BTreeSet<String> = stored
        .iter()
        .map(|m| {
            m.body["data"]["order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(orders, changed, "{stored:?}");
    assert_eq!(stored.len(), changed.len(), "{stored:?}");
    for m in &stored {
        assert_eq!(m.subject, "orderwatch.tracking.order.status_changed");
        assert_eq!(m.body["type"], "order.status_changed");
        assert_eq!(m.body["data"]["id"], m.msg_id.as_str());
        assert_eq!(m.body["data"]["to"], "Closed");
    }
}

#[tokio::test]
async fn changes_arrive_on_a_created_stream_once_each_as_the_simulator_logged_them() {
    let test = "nats::changes_arrive_on_a_created_stream_once_each_as_the_simulator_logged_them";
    let Some(server) = NatsServer::started(test, ServerAuth::None).await else {
        return;
    };
    let (sim, admin, ws) = recorded_baseline(&server.url(), "    create_stream: true\n").await;
    let js = server.jetstream().await;
    assert!(
        js.get_stream(STREAM).await.is_err(),
        "the baseline sends nothing, creates nothing"
    );

    close_orders(&admin, 4).await;
    ws.once_ok().await;
    assert_one_message_per_change(&js, &admin).await;
    let info = js
        .get_stream(STREAM)
        .await
        .expect("created")
        .info()
        .await
        .expect("info")
        .clone();
    assert_eq!(info.config.subjects, vec!["orderwatch.>".to_owned()]);

    // Nothing changed since: nothing more arrives.
    ws.once_ok().await;
    assert_eq!(stream_count(&js).await, 4);
    sim.shutdown().await;
}

/// A relay between orderwatch and the server that, armed, holds back all
/// the server says after the first publish of an event: the stream stores
/// the messages, and their acknowledgements never reach orderwatch.
struct AckHolder {
    addr: std::net::SocketAddr,
    armed: Arc<AtomicBool>,
    release: tokio::sync::watch::Sender<bool>,
}

impl AckHolder {
    async fn start(upstream: u16) -> AckHolder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("bound");
        let armed = Arc::new(AtomicBool::new(true));
        let (release, released) = tokio::sync::watch::channel(false);
        let (hold, holding) = tokio::sync::watch::channel(false);
        let hold = Arc::new(hold);
        let is_armed = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let (armed, hold) = (is_armed.clone(), hold.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        // Set before the publish is passed on, so its
                        // acknowledgement cannot overtake the hold.
                        let publishes = buf[..n].windows(15).any(|w| w == b"PUB orderwatch.");
                        if publishes && armed.load(Ordering::SeqCst) {
                            let _ = hold.send(true);
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let (mut holding, mut released) = (holding.clone(), released.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = server_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if *holding.borrow_and_update() {
                            let _ = released.wait_for(|r| *r).await;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        AckHolder {
            addr,
            armed,
            release,
        }
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Pass everything from now on.
    fn open(&self) {
        self.armed.store(false, Ordering::SeqCst);
        let _ = self.release.send(true);
    }
}

#[tokio::test]
async fn a_sigkill_before_the_acknowledgements_redelivers_and_jetstream_keeps_one_each() {
    let test =
        "nats::a_sigkill_before_the_acknowledgements_redelivers_and_jetstream_keeps_one_each";
    let Some(server) = NatsServer::started(test, ServerAuth::None).await else {
        return;
    };
    server.create_stream("orderwatch.>").await;
    let relay = AckHolder::start(server.port).await;
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let ws = tracking_workspace(&sim, &nats_sink_yaml(&relay.url(), "    timeout: 60s\n"));
    ws.once_ok().await;
    close_orders(&admin, 5).await;

    let js = server.jetstream().await;
    let mut child = ws.spawn_run();
    eventually_async(
        "the stream stores the five events",
        Duration::from_secs(60),
        || async { stream_count(&js).await == 5 },
    )
    .await;
    // Stored by JetStream, unacknowledged to orderwatch: the outbox still
    // holds all five when the process dies.
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("killed");
    assert_eq!(log_count(&ws, "dropped as a duplicate"), 0);

    relay.open();
    let mut child = ws.spawn_run();
    eventually(
        "five redeliveries dropped as duplicates",
        Duration::from_secs(60),
        || log_count(&ws, "dropped as a duplicate") == 5,
    )
    .await;
    let status = terminate(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    // Nothing left queued: `once` has nothing to wait for.
    ws.once_ok().await;
    assert_eq!(stream_count(&js).await, 5);
    assert_one_message_per_change(&js, &admin).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_server_down_at_start_or_restarted_is_retried_and_each_event_delivered_once() {
    let test = "nats::a_server_down_at_start_or_restarted_is_retried_and_each_event_delivered_once";
    let Some(mut server) = NatsServer::new(test, ServerAuth::None) else {
        return;
    };
    let (sim, admin, ws) =
        recorded_baseline(&server.url(), "    create_stream: true\n    timeout: 2s\n").await;
    close_orders(&admin, 3).await;

    let mut child = ws.spawn_run();
    eventually(
        "a refused connection, retried",
        Duration::from_secs(60),
        || log_count(&ws, "bus (nats://127.0.0.1") > 0 && log_count(&ws, "cannot connect") >= 2,
    )
    .await;
    server.start().await;
    let js = server.jetstream().await;
    eventually_async(
        "the three events on the stream",
        Duration::from_secs(60),
        || async { stream_count(&js).await == 3 },
    )
    .await;
    assert_one_message_per_change(&js, &admin).await;

    // The server goes away under a connected client and comes back (its
    // store, and the stream, kept): the client reconnects by itself.
    server.stop();
    let failed_before = log_count(&ws, "delivery failed, will retry");
    close_orders(&admin, 2).await;
    eventually(
        "deliveries failing while the server is down",
        Duration::from_secs(60),
        || log_count(&ws, "delivery failed, will retry") >= failed_before + 2,
    )
    .await;
    server.start().await;
    let js = server.jetstream().await;
    eventually_async(
        "the two later events on the stream",
        Duration::from_secs(60),
        || async { stream_count(&js).await == 5 },
    )
    .await;
    let status = terminate(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    assert_one_message_per_change(&js, &admin).await;
    sim.shutdown().await;
}

/// Two closings through a sink that gives up after three attempts; the
/// reasons of their dead letters, once `once` has buried both.
async fn reasons_after_three_attempts(server: &NatsServer) -> Vec<String> {
    let (sim, admin, ws) = recorded_baseline(
        &server.url(),
        "    delivery: { max_attempts: 3, backoff: { initial: 50ms, max: 100ms } }\n",
    )
    .await;
    let closed: BTreeSet<String> = close_orders(&admin, 2).await.into_iter().collect();
    let out = ws.run(&["once", "--drain-timeout", "30s"]).await;
    assert_eq!(out.status.code(), Some(1), "dead-lettered: {}", text(&out));

    let out = ws.run(&["dead-letters", "list", "--json"]).await;
    let dead: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let orders: BTreeSet<String> = dead
        .iter()
        .map(|d| d["order_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(orders, closed, "{dead:?}");
    sim.shutdown().await;
    dead.iter()
        .map(|d| {
            assert_eq!(d["attempts"], 3, "{d}");
            let reason = d["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("bus (nats://127.0.0.1"), "{reason}");
            reason.to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_missing_stream_is_retried_then_dead_lettered_and_never_created() {
    let test = "nats::a_missing_stream_is_retried_then_dead_lettered_and_never_created";
    let Some(server) = NatsServer::started(test, ServerAuth::None).await else {
        return;
    };
    for reason in reasons_after_three_attempts(&server).await {
        assert!(
            reason.contains("stream `ORDERWATCH` does not exist"),
            "{reason}"
        );
    }
    let js = server.jetstream().await;
    assert!(
        js.get_stream(STREAM).await.is_err(),
        "created without create_stream"
    );
}

#[tokio::test]
async fn a_subject_another_stream_captures_is_retried_then_dead_lettered_unstored() {
    let test = "nats::a_subject_another_stream_captures_is_retried_then_dead_lettered_unstored";
    let Some(server) = NatsServer::started(test, ServerAuth::None).await else {
        return;
    };
    server.create_stream("elsewhere.>").await;
    server.create_named_stream("OTHER", "orderwatch.>").await;
    for reason in reasons_after_three_attempts(&server).await {
        assert!(
            reason.contains("is captured by another stream than `ORDERWATCH`"),
            "{reason}"
        );
    }
    let js = server.jetstream().await;
    let mut other = js.get_stream("OTHER").await.expect("OTHER");
    assert_eq!(other.info().await.expect("info").state.messages, 0);
    assert_eq!(stream_count(&js).await, 0);
}

#[tokio::test]
async fn a_subject_an_event_renders_badly_is_a_dead_letter_naming_the_sink() {
    let test = "nats::a_subject_an_event_renders_badly_is_a_dead_letter_naming_the_sink";
    let Some(server) = NatsServer::started(test, ServerAuth::None).await else {
        return;
    };
    server.create_stream("ow.>").await;
    let (sim, admin, ws) = recorded_baseline(
        &server.url(),
        "    subject: \"ow.{{ source }}.{{ order.status or 'none' }}\"\n",
    )
    .await;
    let id = admin.ids(TRACKING, "status=Current").await[0].clone();
    admin
        .patch("order-tracking", &id, json!({"status": "On hold"}))
        .await;
    let out = ws.run(&["once", "--drain-timeout", "30s"]).await;
    assert_eq!(out.status.code(), Some(1), "dead-lettered: {}", text(&out));
    let out = ws.run(&["dead-letters", "list", "--json"]).await;
    let dead: Value = serde_json::from_slice(&out.stdout).expect("one dead letter");
    assert_eq!(dead["attempts"], 1, "permanent: no retry");
    let reason = dead["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("bus (nats://127.0.0.1"), "{reason}");
    assert!(
        reason.contains("`ow.tracking.On hold` is not a valid NATS subject"),
        "{reason}"
    );
    assert_eq!(stream_count(&server.jetstream().await).await, 0);
    sim.shutdown().await;
}

/// `notify-test bus` with this config and environment.
async fn notify_test(ws: &Workspace, env: &[(&str, &str)]) -> std::process::Output {
    run_binary(&ws.config_path(), &["notify-test", "bus"], env).await
}

/// `notify-test` against a server that wants credentials, given in the
/// sink's `keys` through `${var}` or `${var}_FILE` (`right_env`): it
/// publishes, and with `wrong` as `var` it is a plain permanent error that
/// shows neither secret. What the stream holds after the right one.
async fn credentials_are_sent_and_stay_secret(
    server: &NatsServer,
    keys: &str,
    right_env: &[(&str, &str)],
    (var, right, wrong): (&str, &str, &str),
) -> Vec<Stored> {
    let sim = simulator(5).await;
    let sink = format!("    create_stream: true\n{keys}");
    let ws = tracking_workspace(&sim, &nats_sink_yaml(&server.url(), &sink));
    // At trace level, where the client library logs its CONNECT.
    let trace = [("RUST_LOG", "trace")];
    let env: Vec<(&str, &str)> = right_env.iter().chain(&trace).copied().collect();
    let out = notify_test(&ws, &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(right), "{}", text(&out));
    let stored = stored_messages(&server.jetstream().await).await;

    let out = notify_test(&ws, &[(var, wrong), trace[0]]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("bus (nats://127.0.0.1"), "{said}");
    assert!(
        said.contains("the server refused the credentials"),
        "{said}"
    );
    assert!(said.contains("permanent"), "{said}");
    assert!(!said.contains(wrong) && !said.contains(right), "{said}");
    sim.shutdown().await;
    stored
}

#[tokio::test]
async fn token_auth_notify_test_publishes_and_a_wrong_token_is_a_plain_error() {
    let test = "nats::token_auth_notify_test_publishes_and_a_wrong_token_is_a_plain_error";
    let Some(server) = NatsServer::started(test, ServerAuth::Token).await else {
        return;
    };
    // The token from a file, the Docker-secrets way.
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("nats-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
    let token_file = token_file.to_str().expect("a UTF-8 path");
    let stored = credentials_are_sent_and_stay_secret(
        &server,
        "    token: ${NATS_TOKEN}\n",
        &[("NATS_TOKEN_FILE", token_file)],
        ("NATS_TOKEN", TOKEN, "wrong-nats-token-Zq81mX"),
    )
    .await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        stored[0].subject,
        "orderwatch.tracking.order.status_changed"
    );
    assert_eq!(stored[0].body["data"]["id"], stored[0].msg_id.as_str());
    assert!(stored[0].msg_id.starts_with("evt_"), "{stored:?}");
}

#[tokio::test]
async fn user_and_password_auth_publishes_and_a_wrong_password_stays_secret() {
    let test = "nats::user_and_password_auth_publishes_and_a_wrong_password_stays_secret";
    let Some(server) = NatsServer::started(test, ServerAuth::UserPassword).await else {
        return;
    };
    let stored = credentials_are_sent_and_stay_secret(
        &server,
        "    username: orderwatch\n    password: ${NATS_PASSWORD}\n",
        &[("NATS_PASSWORD", PASSWORD)],
        ("NATS_PASSWORD", PASSWORD, "wrong-nats-password-Hk27"),
    )
    .await;
    assert_eq!(stored.len(), 1, "{stored:?}");
}

// ------------------------------------------------ config, no server needed

/// `check`'s problems for one nats sink section.
async fn check_problems(extra: &str) -> String {
    let sim = simulator(1).await;
    let ws = tracking_workspace(&sim, &nats_sink_yaml("nats://127.0.0.1:4222", extra));
    let out = ws.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    sim.shutdown().await;
    text(&out)
}

#[tokio::test]
async fn two_ways_to_authenticate_are_a_config_error_without_the_secrets() {
    let said = check_problems(
        "    token: tok-Secret-Value-91\n    username: ow\n    password: pw-Secret-Value-92\n",
    )
    .await;
    assert!(said.contains("sinks[0]"), "{said}");
    assert!(
        said.contains("give one way to authenticate to NATS, not token and username/password"),
        "{said}"
    );
    assert!(!said.contains("Secret-Value"), "{said}");
    let said = check_problems("    password: pw-Secret-Value-93\n").await;
    assert!(said.contains("sinks[0].username"), "{said}");
    assert!(!said.contains("Secret-Value"), "{said}");
}

#[tokio::test]
async fn subjects_streams_and_urls_are_checked_before_the_network() {
    let said = check_problems("    subject: \"orderwatch.{{ source }}..x\"\n").await;
    assert!(said.contains("sinks[0].subject"), "{said}");
    assert!(said.contains("is not a valid NATS subject"), "{said}");
    let said = check_problems("    subject: \"ow.{{ source }}.{{ order_id }}\"\n").await;
    assert!(
        said.contains("for a sample source.failing event, the subject `ow.tracking.`"),
        "{said}"
    );
    assert!(said.contains("give order fields a fallback"), "{said}");
    let said = check_problems("    subject: \"{{ source }}.x\"\n    create_stream: true\n").await;
    assert!(said.contains("sinks[0].create_stream"), "{said}");
    let said = check_problems("    creds_file: /nonexistent/user.creds\n").await;
    assert!(said.contains("sinks[0].creds_file"), "{said}");
    assert!(said.contains("cannot read the credentials file"), "{said}");

    let sim = simulator(1).await;
    let ws = tracking_workspace(
        &sim,
        "  - name: bus\n    type: nats\n    url: nats://ow:Url-Secret-77@127.0.0.1:4222\n    stream: a.b\n",
    );
    let out = ws.run(&["check"]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("sinks[0].url"), "{said}");
    assert!(said.contains("must not carry credentials"), "{said}");
    assert!(said.contains("sinks[0].stream"), "{said}");
    assert!(!said.contains("Url-Secret-77"), "{said}");
    sim.shutdown().await;
}

// ------------------------------------------------ creds_file, operator mode

/// A NATS JWT: `claims` (with `nats` as given) signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: Value) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let claims = json!({
        "jti": format!("{name}{now}").to_uppercase(),
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let signature = issuer.sign(signed.as_bytes()).expect("signed");
    format!("{signed}.{}", b64(&signature))
}

/// A server in operator mode (one account, JetStream on) and a `.creds`
/// file of a user of that account.
struct OperatorMode {
    server: NatsServer,
    creds: String,
}

impl OperatorMode {
    async fn start(test: &str) -> Option<OperatorMode> {
        let mut server = NatsServer::new(test, ServerAuth::None)?;
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        // JetStream needs a system account in operator mode.
        let system = nkeys::KeyPair::new_account();
        let user = nkeys::KeyPair::new_user();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            "ow-operator",
            json!({"type": "operator", "version": 2}),
        );
        let unlimited = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        });
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            "ow-account",
            json!({"type": "account", "version": 2, "limits": unlimited}),
        );
        let system_jwt = jwt(
            &operator,
            &system.public_key(),
            "SYS",
            json!({"type": "account", "version": 2}),
        );
        let user_jwt = jwt(
            &account,
            &user.public_key(),
            "ow-user",
            json!({"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
        );
        let seed = user.seed().expect("a seed");
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        let conf = server.dir.path().join("nats.conf");
        let mut config = std::fs::read_to_string(&conf).expect("nats.conf");
        config.push_str(&format!(
            "operator: {operator_jwt}\nsystem_account: {system}\nresolver: MEMORY\nresolver_preload: {{\n  {account}: {account_jwt}\n  {system}: {system_jwt}\n}}\n",
            account = account.public_key(),
            system = system.public_key(),
        ));
        std::fs::write(&conf, config).expect("write nats.conf");
        server.creds = Some(creds.clone());
        server.start().await;
        Some(OperatorMode { server, creds })
    }
}

#[tokio::test]
async fn a_creds_file_authenticates_and_its_seed_stays_secret() {
    let test = "nats::a_creds_file_authenticates_and_its_seed_stays_secret";
    let Some(OperatorMode { server, creds }) = OperatorMode::start(test).await else {
        return;
    };
    let sim = simulator(5).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let creds_path = dir.path().join("orderwatch.creds");
    std::fs::write(&creds_path, &creds).expect("write creds");
    let sink = format!(
        "    create_stream: true\n    creds_file: {}\n",
        creds_path.display()
    );
    let ws = tracking_workspace(&sim, &nats_sink_yaml(&server.url(), &sink));
    let out = notify_test(&ws, &[("RUST_LOG", "trace")]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let seed = creds
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a user seed");
    assert!(!said.contains(seed), "{said}");
    assert_eq!(stream_count(&server.jetstream().await).await, 1);

    // The JWT with another user's seed: it cannot sign for that user.
    let stranger = nkeys::KeyPair::new_user().seed().expect("a seed");
    std::fs::write(&creds_path, creds.replace(seed, &stranger)).expect("write creds");
    let out = notify_test(&ws, &[("RUST_LOG", "trace")]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("the server refused the credentials"),
        "{said}"
    );
    assert!(!said.contains(seed) && !said.contains(&stranger), "{said}");
    assert_eq!(stream_count(&server.jetstream().await).await, 1);
    sim.shutdown().await;
}
