//! Secret hygiene: a full cycle at trace level with every kind of secret
//! configured; none may appear in output, errors or `Debug` of the config.

use crate::helpers::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use orderwatch_simulator::{self as simulator, SimOptions};
use serde_json::json;
use std::sync::{Arc, Mutex};

const CLIENT_SECRET: &str = "cs-Secret-4711-xyz";
const API_KEY: &str = "ak-Secret-0815-xyz";
const SMTP_PASSWORD: &str = "smtp-Secret-pw-42";
const SLACK_PATH_TOKEN: &str = "XoXbSecretSlackToken123";
const HOOK_SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3Itd2ViaG9vaw==";

/// A token endpoint in front of the simulator's, remembering the tokens it
/// handed out so the test knows what to look for.
#[derive(Clone)]
struct TokenProxy {
    upstream: String,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn proxy_token(
    State(p): State<TokenProxy>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut req = reqwest::Client::new()
        .post(format!("{}/oauth/v3/token", p.upstream))
        .body(body);
    for (k, v) in headers.iter() {
        if k == "authorization" || k == "content-type" || k == "accept" {
            req = req.header(k.as_str(), v.as_bytes());
        }
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(t) = v["access_token"].as_str()
    {
        p.seen.lock().unwrap().push(t.to_owned());
    }
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        text,
    )
}

#[tokio::test]
async fn no_secret_reaches_logs_output_or_debug() {
    let sim = simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimOptions {
            orders: 30,
            client_secret: CLIENT_SECRET.into(),
            api_key: API_KEY.into(),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let admin = Admin::new(&sim);
    let proxy = TokenProxy {
        upstream: sim.base_url(),
        seen: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!("http://{}/oauth/v3/token", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/oauth/v3/token", post(proxy_token))
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let hook = Receiver::start().await;
    let chat = Receiver::start().await;
    let slack_url = format!(
        "http://{}/services/T000/B000/{SLACK_PATH_TOKEN}",
        chat.addr()
    );
    // An SMTP port nobody listens on: the mail sink fails and logs its error.
    let smtp_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"state_dir: {state}
log: {{ level: trace }}
sources:
  - name: tracking
    api: order-tracking
    base_url: {base}
    token_url: {token_url}
    client_id: {CLIENT_ID}
    client_secret: ${{ORANGE_CLIENT_SECRET}}
    api_key: ${{ORANGE_API_KEY}}
    filters: {{ status: Current }}
    retry_backoff: 10ms
sinks:
  - {{ name: hook, type: webhook, url: "{hook}", secret: "${{HOOK_SECRET}}" }}
  - {{ name: chat, type: slack, url: "${{SLACK_URL}}" }}
  - name: mail
    type: email
    smtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: starttls, username: ops, password: "${{SMTP_PASSWORD}}", timeout: 2s }}
    from: orderwatch@example.com
    to: [noc@example.com]
delivery: {{ backoff: {{ initial: 100ms, max: 200ms }} }}
"#,
        state = dir.path().join("data").display(),
        base = sim.base_url(),
        hook = hook.url,
    );
    let config = dir.path().join("orderwatch.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let env = [
        ("ORANGE_CLIENT_SECRET", CLIENT_SECRET),
        ("ORANGE_API_KEY", API_KEY),
        ("HOOK_SECRET", HOOK_SECRET),
        ("SLACK_URL", slack_url.as_str()),
        ("SMTP_PASSWORD", SMTP_PASSWORD),
        ("RUST_LOG", "trace"),
    ];

    // A known order (the helpers' id lookup uses the default credentials).
    admin
        .add(
            "order-tracking",
            json!({"id": "777001", "status": "Current"}),
        )
        .await;
    let mut outputs = Vec::new();
    let out = run_binary(&config, &["check", "--connect"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    outputs.push(text(&out));
    let out = run_binary(&config, &["once"], &env).await;
    outputs.push(text(&out));
    admin
        .patch("order-tracking", "777001", json!({"status": "Closed"}))
        .await;
    admin.fault(json!({"expire_tokens": true})).await;
    let out = run_binary(&config, &["once", "--drain-timeout", "3s"], &env).await;
    outputs.push(text(&out));
    assert_eq!(
        hook.delivered().len(),
        1,
        "the cycle really ran: {}",
        outputs.join("\n")
    );
    assert_eq!(chat.delivered().len(), 1, "the chat sink really ran");
    let out = run_binary(&config, &["notify-test", "mail"], &env).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "the mail sink failed, and said so: {}",
        text(&out)
    );
    outputs.push(text(&out));
    // Wrong secrets make error messages: they must not echo what was sent.
    let wrong = [
        ("ORANGE_CLIENT_SECRET", "cs-Wrong-Secret-999"),
        ("ORANGE_API_KEY", API_KEY),
    ];
    let out = run_binary(
        &config,
        &["check", "--connect"],
        &[&env[2..], &wrong[..]].concat(),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    outputs.push(text(&out));

    let parsed = orderwatch::Config::parse(
        &yaml,
        std::path::Path::new("x.yaml"),
        &env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::HashMap<_, _>>(),
    )
    .unwrap();
    outputs.push(format!("{parsed:?}"));

    let tokens = proxy.seen.lock().unwrap().clone();
    assert!(
        tokens.len() >= 2,
        "tokens were issued and renewed: {tokens:?}"
    );
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    };
    let mut secrets: Vec<String> = vec![
        CLIENT_SECRET.into(),
        "cs-Wrong-Secret-999".into(),
        API_KEY.into(),
        SMTP_PASSWORD.into(),
        SLACK_PATH_TOKEN.into(),
        HOOK_SECRET.into(),
        HOOK_SECRET.trim_start_matches("whsec_").into(),
        basic,
    ];
    secrets.extend(tokens);
    // Signatures are derived from the secret: they must not be logged either.
    secrets.extend(
        hook.received()
            .iter()
            .map(|r| r.header("webhook-signature")),
    );
    let all = outputs.join("\n");
    assert!(
        all.contains("TRACE") || all.contains("trace"),
        "trace logging was on"
    );
    for secret in &secrets {
        assert!(!all.contains(secret.as_str()), "a secret leaked: {secret}");
    }
    sim.shutdown().await;
}
