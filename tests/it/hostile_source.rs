//! A hostile Orange: an API on 127.0.0.1 that answers what no real one
//! should (a `Retry-After` of 1e20, a token living for ever, the same page
//! whatever the offset, secrets echoed back), against the real binary.
//! Nothing it sends may panic orderwatch, stall a cycle for ever, or carry a
//! secret into a log, a dead letter or `/readyz`.

use crate::helpers::*;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use orderwatch::{ApiErrorKind, Config, MAX_LISTED_ORDERS, SourceClient};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIST_PATH: &str = "/order-tracking/b2b/v1/orders";
const TOKEN_PATH: &str = "/oauth/v3/token";

/// One request the hostile API got.
#[derive(Clone, Debug)]
struct Call {
    method: Method,
    path: String,
    offset: u64,
    headers: HeaderMap,
}

impl Call {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// What it answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

type Script = dyn Fn(&Call) -> Reply + Send + Sync;
/// The script, and every call answered so far.
type Served = (Arc<Script>, Arc<Mutex<Vec<Call>>>);

#[derive(Clone)]
struct Hostile {
    base: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Hostile {
    /// Serve `script` on 127.0.0.1:0 for the rest of the test.
    async fn start(script: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> Hostile {
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let state: Served = (Arc::new(script), calls.clone());
        let app = Router::new().fallback(answer).with_state(state);
        let base = format!("http://{}", serve(app).await);
        Hostile { base, calls }
    }

    fn calls_to(&self, path_suffix: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path.ends_with(path_suffix))
            .count()
    }
}

async fn answer(
    State((script, calls)): State<Served>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let offset = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("offset="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let call = Call {
        method,
        path: uri.path().to_owned(),
        offset,
        headers,
    };
    calls.lock().unwrap().push(call.clone());
    let reply = script(&call);
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        [("content-type", "application/json")],
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

fn token(expires_in: &str) -> Reply {
    Reply {
        status: 200,
        headers: Vec::new(),
        body: format!(
            r#"{{"token_type":"Bearer","access_token":"hostile-access-token-0001","expires_in":{expires_in}}}"#
        ),
    }
}

fn orders(ids: impl IntoIterator<Item = u64>) -> Reply {
    let list: Vec<Value> = ids
        .into_iter()
        .map(|id| json!({"id": id.to_string(), "status": "Current"}))
        .collect();
    Reply::json(200, Value::Array(list))
}

fn not_found() -> Reply {
    Reply::json(
        404,
        json!({"code": 60, "message": "Resource not found", "description": "no such order"}),
    )
}

/// A workspace with one tracking source on `base_url` and no sink.
fn workspace(base_url: &str, extra: &str) -> Workspace {
    Workspace::new(
        &source_yaml("tracking", "order-tracking", base_url, extra),
        "  []\n",
        "",
    )
}

/// Start the binary with `args` (and `env`, else `RUST_LOG=info`), its
/// stderr into the workspace's `run.log`.
fn spawn(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ws.log_path())
        .unwrap();
    tokio::process::Command::new(binary())
        .arg("--config")
        .arg(ws.config_path())
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn log_of(ws: &Workspace) -> String {
    std::fs::read_to_string(ws.log_path()).unwrap_or_default()
}

/// `Retry-After: 1e20` on a rate-limit answer (429, and 403 code 53) is
/// waited out for 10 minutes at most, in `once` and in `run`: the wait is
/// decided and logged, and the process lives on (it used to exit 101, or
/// lose its poller while `/healthz` stayed green).
#[tokio::test]
async fn a_huge_retry_after_is_clamped_not_a_panic() {
    for (status, command) in [(429, "once"), (403, "once"), (429, "run"), (403, "run")] {
        let api = Hostile::start(move |call: &Call| match call.path.as_str() {
            TOKEN_PATH => token("3600"),
            LIST_PATH => Reply::json(
                status,
                json!({"code": 53, "message": "Too many requests", "description": "slow down"}),
            )
            .with("retry-after", "1e20"),
            _ => not_found(),
        })
        .await;
        let ws = workspace(&api.base, "");
        let mut child = spawn(&ws, &[command], &[]);
        eventually(
            &format!("{command}: the clamped wait after {status}"),
            Duration::from_secs(30),
            || {
                let log = log_of(&ws);
                log.contains("rate limited by Orange: waiting") || log.contains("panicked")
            },
        )
        .await;
        let log = log_of(&ws);
        assert!(!log.contains("panicked"), "{command} {status}:\n{log}");
        assert!(log.contains("wait_ms=600000"), "{command} {status}:\n{log}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "{command} {status} exited:\n{log}"
        );
        if command == "run" {
            let exit = terminate(&mut child, Duration::from_secs(15)).await;
            assert_eq!(exit.code(), Some(0), "{}", log_of(&ws));
        } else {
            child.kill().await.unwrap();
        }
    }
}

/// A token whose `expires_in` overflows any clock (as a number or a
/// string, also absurd floats and negatives) is cached for 90 days at most:
/// `once` succeeds, and `run` keeps polling.
#[tokio::test]
async fn a_token_living_for_ever_is_clamped() {
    for expires_in in [
        "18446744073709551615",
        r#""18446744073709551615""#,
        "1e300",
        "-5",
        r#""NaN""#,
    ] {
        let api = Hostile::start(move |call: &Call| match call.path.as_str() {
            TOKEN_PATH => token(expires_in),
            LIST_PATH => orders(1..=3).with("x-total-count", "3"),
            _ => not_found(),
        })
        .await;
        let ws = workspace(&api.base, "");
        let out = ws.run(&["once"]).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "expires_in {expires_in}: {}",
            text(&out)
        );
    }

    let api = Hostile::start(|call: &Call| match call.path.as_str() {
        TOKEN_PATH => token("18446744073709551615"),
        LIST_PATH => orders(1..=3).with("x-total-count", "3"),
        _ => not_found(),
    })
    .await;
    let ws = workspace(&api.base, "");
    let mut child = ws.spawn_run();
    eventually("three cycles of run", Duration::from_secs(30), || {
        log_count(&ws, "poll cycle done") >= 3
    })
    .await;
    let log = log_of(&ws);
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(api.calls_to(TOKEN_PATH), 1, "the token is cached: {log}");
    terminate(&mut child, Duration::from_secs(15)).await;
}

/// An API that ignores `offset` and never sends a total: the cycle ends
/// after the first repeated page, with a plain error, and looks for no
/// vanished order (no detail call, no `order.removed`).
#[tokio::test]
async fn a_server_ignoring_offset_ends_the_cycle() {
    let ignore_offset = Arc::new(AtomicBool::new(false));
    let ignoring = ignore_offset.clone();
    let api = Hostile::start(move |call: &Call| match call.path.as_str() {
        TOKEN_PATH => token("3600"),
        LIST_PATH if ignoring.load(Ordering::SeqCst) => orders(1..=5),
        LIST_PATH => match call.offset {
            0 => orders(1..=5),
            5 => orders(6..=10),
            _ => orders([]),
        },
        _ => not_found(),
    })
    .await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &api.base,
            "    page_size: 5\n",
        ),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    ws.once_ok().await;
    assert_eq!(
        api.calls_to(LIST_PATH),
        3,
        "baseline: two pages and an empty one"
    );

    ignore_offset.store(true, Ordering::SeqCst);
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the listing did not end")
            && stderr.contains("same orders as the page before"),
        "{stderr}"
    );
    assert_eq!(api.calls_to(LIST_PATH), 5, "two more list calls, then stop");
    let details = api
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.method == Method::GET && c.path.starts_with(&format!("{LIST_PATH}/")))
        .count();
    assert_eq!(details, 0, "no vanish step");
    let events = ws.run(&["events", "--json"]).await;
    assert!(
        !String::from_utf8_lossy(&events.stdout).contains("order.removed"),
        "{}",
        text(&events)
    );
    assert!(hook.received().is_empty());
}

/// Full pages of new orders, for ever, and no total: the listing is cut at
/// the documented bound with a plain error, not read until memory runs out.
#[tokio::test]
async fn a_listing_that_never_ends_is_bounded() {
    const PAGE: u64 = 10_000;
    let api = Hostile::start(|call: &Call| match call.path.as_str() {
        TOKEN_PATH => token("3600"),
        LIST_PATH => orders(call.offset + 1..=call.offset + PAGE),
        _ => not_found(),
    })
    .await;
    let yaml = format!(
        "sources:\n  - name: tracking\n    api: order-tracking\n    base_url: {}\n    client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n    api_key: {API_KEY}\n    page_size: {PAGE}\n    max_requests_per_minute: 100000\n",
        api.base
    );
    let config = Config::parse(&yaml, Path::new("bound.yaml"), &HashMap::new()).unwrap();
    let client = SourceClient::new(&config.sources[0]).unwrap();
    let mut pages = client.pages();
    let mut read = 0u64;
    let error = loop {
        match pages.next().await {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("the endless listing ended after {read} pages"),
            Err(e) => break e,
        }
    };
    assert_eq!(error.kind, ApiErrorKind::Paging, "{error}");
    assert!(error.to_string().contains("1000000 orders"), "{error}");
    let max_pages = MAX_LISTED_ORDERS / PAGE;
    assert_eq!(read, max_pages - 1, "{error}");
    assert_eq!(api.calls_to(LIST_PATH) as u64, max_pages);
}

const ECHO_CLIENT_ID: &str = "echo-client";
const ECHO_SECRET: &str = "Echoed-Client-Secret-4711";
const ECHO_KEY: &str = "Echoed-Api-Key-0815";
const CHAT_TOKEN: &str = "EchoedChatWebhookToken42";

/// Secrets the other side echoes are redacted before they reach a log (at
/// trace level), a dead letter or `/readyz`: a token endpoint quoting the
/// Basic header and the secret, an API error quoting the key and the
/// bearer token, a chat webhook answering with its own URL in upper case.
#[tokio::test]
async fn echoed_secrets_stay_out_of_logs_dead_letters_and_readyz() {
    // One API per source, so that each source meets one kind of echo.
    let tokens_api = Hostile::start(|call: &Call| match call.path.as_str() {
        TOKEN_PATH => Reply::json(
            401,
            json!({
                "error": "invalid_client",
                "error_description": format!(
                    "refused Authorization: {} (client secret {ECHO_SECRET})",
                    call.header("authorization")
                ),
            }),
        ),
        _ => not_found(),
    })
    .await;
    let keys_api = Hostile::start(|call: &Call| match call.path.as_str() {
        TOKEN_PATH => token("3600"),
        LIST_PATH => Reply::json(
            403,
            json!({
                "code": 50,
                "message": "Forbidden",
                "description": format!(
                    "key {} with {} is not subscribed",
                    call.header("x-api-key"),
                    call.header("authorization")
                ),
            }),
        ),
        _ => not_found(),
    })
    .await;
    let good_api = Hostile::start(|call: &Call| match call.path.as_str() {
        TOKEN_PATH => token("3600"),
        LIST_PATH => orders([1]).with("x-total-count", "1"),
        _ => not_found(),
    })
    .await;
    // A chat service that answers with the URL it was called on, shouting.
    let chat = Router::new().fallback(|headers: HeaderMap, uri: Uri| async move {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            StatusCode::NOT_FOUND,
            format!("NO WEBHOOK AT HTTP://{host}{uri}").to_uppercase(),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let chat_url = format!(
        "http://{}/services/T000/B000/{CHAT_TOKEN}",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, chat).await });

    let source = |name: &str, api: &Hostile, first_poll: &str| {
        format!(
            "  - name: {name}\n    api: order-tracking\n    base_url: {}\n    client_id: {ECHO_CLIENT_ID}\n    client_secret: ${{ECHO_SECRET}}\n    api_key: ${{ECHO_KEY}}\n    interval: 1s\n    retry_backoff: 10ms\n    first_poll: {first_poll}\n",
            api.base
        )
    };
    let ws = Workspace::new(
        &format!(
            "{}{}{}",
            source("tokens", &tokens_api, "baseline"),
            source("keys", &keys_api, "baseline"),
            source("good", &good_api, "notify")
        ),
        "  - { name: chat, type: slack, url: \"${CHAT_URL}\" }\n",
        "log: { level: trace }\nlisten: 127.0.0.1:0\n",
    );
    let env = [
        ("ECHO_SECRET", ECHO_SECRET),
        ("ECHO_KEY", ECHO_KEY),
        ("CHAT_URL", chat_url.as_str()),
        ("RUST_LOG", "trace"),
    ];
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{ECHO_CLIENT_ID}:{ECHO_SECRET}"));
    let secrets = [
        ECHO_SECRET.to_owned(),
        ECHO_KEY.to_owned(),
        basic,
        "hostile-access-token-0001".to_owned(),
        CHAT_TOKEN.to_owned(),
    ];
    let assert_clean = |what: &str, text: &str| {
        let lower = text.to_lowercase();
        for secret in &secrets {
            assert!(
                !lower.contains(&secret.to_lowercase()),
                "{what} shows {secret}:\n{text}"
            );
        }
    };

    let out = run_binary(&ws.config_path(), &["once"], &env).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let output = text(&out);
    assert_clean("once", &output);
    // The echoes did arrive, and were cut out.
    assert!(
        output.contains("refused Authorization: Basic [redacted]"),
        "{output}"
    );
    assert!(
        output.contains("key [redacted] with Bearer [redacted]"),
        "{output}"
    );

    let dead = run_binary(&ws.config_path(), &["dead-letters", "list", "--json"], &env).await;
    let dead_text = String::from_utf8_lossy(&dead.stdout).into_owned();
    assert!(dead_text.contains("NO WEBHOOK AT"), "{}", text(&dead));
    assert!(dead_text.contains("[redacted]"), "{}", text(&dead));
    assert_clean("dead letters", &text(&dead));

    let mut child = spawn(&ws, &["run"], &env);
    let readyz = format!("http://{}/readyz", health_addr(&ws).await);
    let seen = Arc::new(Mutex::new(String::new()));
    // The good source's first poll may end after the failing ones: wait
    // for /readyz to have settled on naming those two alone.
    eventually_async(
        "both failing sources, and only they, on /readyz",
        Duration::from_secs(30),
        || {
            let readyz = readyz.clone();
            let seen = seen.clone();
            async move {
                let Ok(r) = reqwest::get(&readyz).await else {
                    return false;
                };
                let body = r.text().await.unwrap_or_default();
                let done =
                    body.matches("the last poll failed").count() == 2 && !body.contains("good");
                *seen.lock().unwrap() = body;
                done
            }
        },
    )
    .await;
    let body = seen.lock().unwrap().clone();
    assert!(
        body.contains("tokens: not ready") && body.contains("keys: not ready"),
        "{body}"
    );
    assert_clean("/readyz", &body);
    for outside in ["invalid_client", "Forbidden", "subscribed", "redacted"] {
        assert!(
            !body.contains(outside),
            "/readyz carries outside text: {body}"
        );
    }
    assert!(!body.contains("good"), "only the failing sources: {body}");
    terminate(&mut child, Duration::from_secs(15)).await;
    assert_clean("run", &log_of(&ws));
}

const SMTP_PASSWORD: &str = "Echoed-Smtp-Password-77";

/// The password an SMTP server echoes in its refusal is redacted from the
/// dead letter and the log.
#[tokio::test]
async fn an_smtp_server_echoing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpRecorder::default();
    *smtp.refuse_login.lock().unwrap() = Some(535);
    let (port, cert_path) = tls_smtp_server(smtp, dir.path());

    let sim = simulator(1).await;
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    first_poll: notify\n",
        ),
        &format!(
            "  - {{ name: mail, type: email, smtp: {{ host: localhost, port: {port}, tls: starttls, username: ops, password: \"${{SMTP_PASSWORD}}\", ca_file: {}, timeout: 5s }}, from: ow@example.com, to: [noc@example.com] }}\n",
            cert_path.display()
        ),
        "",
    );
    let env = [("SMTP_PASSWORD", SMTP_PASSWORD), ("RUST_LOG", "trace")];
    let out = run_binary(&ws.config_path(), &["once"], &env).await;
    let dead = run_binary(&ws.config_path(), &["dead-letters", "list", "--json"], &env).await;
    let dead_text = String::from_utf8_lossy(&dead.stdout).into_owned();
    assert!(dead_text.contains("535"), "{}\n{}", text(&dead), text(&out));
    assert!(dead_text.contains("[redacted]"), "{}", text(&dead));
    for shown in [text(&out), text(&dead)] {
        assert!(
            !shown.to_lowercase().contains(&SMTP_PASSWORD.to_lowercase()),
            "{shown}"
        );
    }
}
