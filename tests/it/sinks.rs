//! The slack, email and console sinks and their templates, against real
//! servers on 127.0.0.1: an axum receiver standing in for a chat webhook and
//! an embedded SMTP server (mailin-embedded) that can refuse on demand.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orderwatch::{Config, DeliveryError, Event, EventType, Sink, Templates, sample_event};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET_PATH: &str = "/services/T000/B000/XSECRETX";

fn config(sinks: &str) -> Config {
    let text = format!(
        "sources: [{{name: s, api: order-tracking, base_url: \"http://127.0.0.1:1\", client_id: a, client_secret: b, api_key: c}}]\nsinks:\n{sinks}"
    );
    Config::parse(
        &text,
        Path::new("test.yaml"),
        &HashMap::<String, String>::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------- slack

#[derive(Clone)]
struct Received {
    at: Instant,
    path: String,
    headers: HeaderMap,
    body: serde_json::Value,
}

/// Status, `Retry-After`, body.
type Reply = (u16, Option<&'static str>, String);

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    /// 200 "ok" when unset.
    reply: Arc<Mutex<Option<Reply>>>,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn answer(&self, status: u16, retry_after: Option<&'static str>, body: &str) {
        *self.reply.lock().unwrap() = Some((status, retry_after, body.to_owned()));
    }
}

async fn hook(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    r.received.lock().unwrap().push(Received {
        at: Instant::now(),
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    let reply = r.reply.lock().unwrap().clone();
    match reply {
        None => "ok".into_response(),
        Some((status, retry_after, body)) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", secs.parse().unwrap());
            }
            response
        }
    }
}

/// A chat webhook receiver on a free port; returns its base URL.
async fn receiver() -> (Receiver, String) {
    let state = Receiver::default();
    let app = Router::new().fallback(hook).with_state(state.clone());
    (state, format!("http://{}", serve(app).await))
}

fn slack_sink(base: &str, template: Option<&str>) -> Sink {
    let template = template
        .map(|t| format!(", template: {}", serde_json::to_string(t).unwrap()))
        .unwrap_or_default();
    let c = config(&format!(
        "  - {{name: chat, type: slack, url: \"{base}{SECRET_PATH}\", timeout: 5s{template}}}\n"
    ));
    let templates = Arc::new(Templates::compile(&c).unwrap());
    Sink::build(&c.sinks[0], &templates).unwrap()
}

fn text_of(r: &Received) -> String {
    r.body["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn slack_posts_text_and_blocks_with_user_data_escaped() {
    let (rx, base) = receiver().await;
    let sink = slack_sink(&base, None);
    let mut event = sample_event(EventType::StatusChanged);
    event.data.order_id = "12<3>&4".into();
    sink.deliver(&event).await.unwrap();

    let got = rx.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, SECRET_PATH);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.headers["user-agent"],
        concat!("orderwatch/", env!("CARGO_PKG_VERSION"))
    );
    let text = text_of(r);
    assert_eq!(
        text,
        ":white_check_mark: Order *12&lt;3&gt;&amp;4* (tracking) is now *Closed* (was Current)"
    );
    assert_eq!(
        r.body["blocks"],
        serde_json::json!([{ "type": "section", "text": { "type": "mrkdwn", "text": text } }])
    );
}

#[tokio::test]
async fn slack_default_template_per_event_type_and_a_custom_one() {
    let (rx, base) = receiver().await;
    // One sink per event so the one-per-second gate does not slow the test.
    for kind in EventType::ALL {
        slack_sink(&base, None)
            .deliver(&sample_event(kind))
            .await
            .unwrap();
    }
    let texts: Vec<String> = rx.received().iter().map(text_of).collect();
    assert_eq!(
        texts,
        [
            ":new: Order *123456* (tracking) is new, status *Acknowledged*",
            ":white_check_mark: Order *123456* (tracking) is now *Closed* (was Current)",
            ":pencil2: Order *123456* (tracking) was updated\n• `/expectedDeliveryDate`: 2026-11-30 → 2026-12-04",
            ":wastebasket: Order *123456* (tracking) is no longer listed by the API",
            ":hourglass_flowing_sand: Order *123456* (tracking) is due on *2026-12-04T00:00:00Z* and still *Current*",
            ":alarm_clock: Order *123456* (tracking) is overdue: due *2026-12-04T00:00:00Z*, still *Current*",
            ":snail: Order *123456* (tracking) has been *Current* since 2026-11-08T08:00:00Z",
            ":rotating_light: Source *tracking* is failing since 2026-11-22T07:45:00Z (12 failed cycles): Orange answered with a server error (HTTP 503, code 5, request id 0b7e5c1d-52a4-4f0e-9d3c-6f2a8e1b4c7d): The service is temporarily unavailable",
            ":large_green_circle: Source *tracking* has recovered: polls work again (failing since 2026-11-22T07:45:00Z, 14 failed cycles)",
            ":key: The API key of source *tracking* expires on *2026-12-15*: ask Orange for a new one, then update `api_key` and `api_key_expires`",
        ]
    );

    let custom = slack_sink(
        &base,
        Some(
            "<https://portal.example/o/{{ order_id }}|{{ order_id }}> {{ type }} [{{ from }}] {{ order.product }}",
        ),
    );
    let mut event = sample_event(EventType::Created);
    event.data.order["product"] = "VPN <Galerie> & co".into();
    custom.deliver(&event).await.unwrap();
    let got = rx.received();
    assert_eq!(
        text_of(&got[EventType::ALL.len()]),
        "<https://portal.example/o/123456|123456> order.created [] VPN &lt;Galerie&gt; &amp; co"
    );
}

#[tokio::test]
async fn slack_sends_at_most_one_message_per_second_per_webhook() {
    let (rx, base) = receiver().await;
    let sink = slack_sink(&base, None);
    let event = sample_event(EventType::StatusChanged);
    sink.deliver(&event).await.unwrap();
    sink.deliver(&event).await.unwrap();
    let got = rx.received();
    assert_eq!(got.len(), 2);
    let spacing = got[1].at.duration_since(got[0].at);
    assert!(
        spacing >= Duration::from_secs(1),
        "second message after {spacing:?}"
    );
}

async fn slack_answer(status: u16, retry_after: Option<&'static str>, body: &str) -> DeliveryError {
    let (rx, base) = receiver().await;
    rx.answer(status, retry_after, body);
    let err = slack_sink(&base, None)
        .deliver(&sample_event(EventType::StatusChanged))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        !text.contains("XSECRETX") && !text.contains("/services"),
        "{text}"
    );
    assert!(
        text.contains("`chat`") && text.contains("127.0.0.1"),
        "{text}"
    );
    err
}

#[tokio::test]
async fn slack_answers_are_classified() {
    match slack_answer(429, Some("7"), "rate_limited").await {
        DeliveryError::Retry { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    match slack_answer(400, None, "invalid_payload").await {
        DeliveryError::Permanent { reason } => {
            assert!(reason.contains("bug in orderwatch"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match slack_answer(404, None, "channel_not_found").await {
        DeliveryError::Permanent { reason } => {
            assert!(reason.contains("channel_not_found"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        slack_answer(410, None, "channel_is_archived").await,
        DeliveryError::Permanent { .. }
    ));
    assert!(matches!(
        slack_answer(403, None, "invalid_token").await,
        DeliveryError::Permanent { .. }
    ));
    assert!(matches!(
        slack_answer(500, None, "oops").await,
        DeliveryError::Retry { .. }
    ));
    assert!(matches!(
        slack_answer(503, None, "").await,
        DeliveryError::Retry { .. }
    ));
    assert!(matches!(
        slack_answer(408, None, "").await,
        DeliveryError::Retry { .. }
    ));
    // A receiver that echoes the request line must not leak the path either.
    let echo = format!("Cannot POST {SECRET_PATH}");
    assert!(matches!(
        slack_answer(404, None, &echo).await,
        DeliveryError::Permanent { .. }
    ));
    // Redirects are not followed: the token must not travel elsewhere.
    assert!(matches!(
        slack_answer(302, None, "").await,
        DeliveryError::Permanent { .. }
    ));
}

#[tokio::test]
async fn slack_unreachable_is_retried_and_the_url_stays_secret() {
    // Bind and drop, so the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = slack_sink(&format!("http://127.0.0.1:{port}"), None);
    let err = sink
        .deliver(&sample_event(EventType::Created))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Retry { .. }), "{err:?}");
    assert!(!err.to_string().contains("XSECRETX"), "{err}");
    assert!(!format!("{sink:?}").contains("XSECRETX"));
}

// ------------------------------------------------------------ templates

#[test]
fn a_broken_template_is_a_problem_naming_its_key_and_line() {
    let text = "sources: [{name: s, api: order-tracking, base_url: \"http://127.0.0.1:1\", client_id: a, client_secret: b, api_key: c}]\nsinks:\n  \
           - {name: out, type: console}\n  \
           - {name: chat, type: slack, url: \"http://127.0.0.1:1/x\", template: \"{{ order_id \"}\n";
    let problems = Config::parse(
        text,
        Path::new("test.yaml"),
        &HashMap::<String, String>::new(),
    )
    .unwrap_err()
    .problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "sinks[1].template");
    assert_eq!(problems[0].line, Some(4));
}

#[test]
fn a_missing_field_renders_empty() {
    let c = config("  - {name: out, type: console, template: \"[{{ from }}] → [{{ to }}]\"}\n");
    let t = Templates::compile(&c).unwrap();
    assert_eq!(
        t.render_console("out", &sample_event(EventType::Created))
            .unwrap(),
        "[] → [Acknowledged]"
    );
}

// ---------------------------------------------------------------- email

use crate::helpers::{SmtpRecorder, serve, smtp_server, tls_smtp_server};

fn email_sink(port: u16, tls: &str, extra: &str) -> Sink {
    let c = config(&format!(
        "  - {{name: mail, type: email, smtp: {{host: 127.0.0.1, port: {port}, tls: {tls}, timeout: 5s}}, from: \"orderwatch <ow@example.com>\", to: [noc@example.com, ops@example.com]{extra}}}\n"
    ));
    let templates = Arc::new(Templates::compile(&c).unwrap());
    Sink::build(&c.sinks[0], &templates).unwrap()
}

/// The header block of a received message, unfolded, names lowercased.
fn headers(message: &str) -> HashMap<String, String> {
    let head = message
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

/// The message with quoted-printable undone, to read the parts as text.
fn unquote(message: &str) -> String {
    let raw = message.replace("=\r\n", "");
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mail one event to a fresh server: its headers and its decoded text.
async fn mail_one(event: &Event) -> (HashMap<String, String>, String) {
    let (smtp, port) = smtp_server();
    email_sink(port, "none", "").deliver(event).await.unwrap();
    let messages = smtp.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    (headers(&messages[0]), unquote(&messages[0]))
}

#[tokio::test]
async fn a_source_recovery_mail_answers_its_failing_mail() {
    let failing = sample_event(EventType::SourceFailing);
    let (f, message) = mail_one(&failing).await;
    assert_eq!(f["subject"], "[orderwatch] source tracking is failing");
    assert_eq!(f["message-id"], format!("<{}@orderwatch>", failing.data.id));
    assert!(!f.contains_key("in-reply-to"), "{f:?}");
    assert!(message.contains("Last error: Orange answered"), "{message}");
    let (r, _) = mail_one(&sample_event(EventType::SourceRecovered)).await;
    assert_eq!(r["subject"], "[orderwatch] source tracking has recovered");
    assert_eq!(r["in-reply-to"], f["message-id"]);
    assert_eq!(r["references"], f["message-id"]);
    let (e, _) = mail_one(&sample_event(EventType::CredentialsExpiring)).await;
    assert!(!e.contains_key("in-reply-to"), "{e:?}");
}

#[tokio::test]
async fn email_is_multipart_with_thread_headers() {
    let event = sample_event(EventType::StatusChanged);
    let (h, message) = mail_one(&event).await;
    assert_eq!(h["subject"], "[orderwatch] 123456 is now Closed");
    assert_eq!(h["message-id"], format!("<{}@orderwatch>", event.data.id));
    assert_eq!(h["in-reply-to"], "<order.tracking.123456@orderwatch>");
    assert_eq!(h["references"], "<order.tracking.123456@orderwatch>");
    assert_eq!(h["auto-submitted"], "auto-generated");
    assert_eq!(h["x-orderwatch-event"], "order.status_changed");
    assert!(h["from"].contains("ow@example.com"), "{}", h["from"]);
    assert!(
        h["to"].contains("noc@example.com") && h["to"].contains("ops@example.com"),
        "{}",
        h["to"]
    );
    assert!(
        h["content-type"].starts_with("multipart/alternative"),
        "{}",
        h["content-type"]
    );
    let lower = message.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/plain"), "{message}");
    assert!(lower.contains("content-type: text/html"), "{message}");
    assert!(
        message.contains("is now Closed (was Current)."),
        "{message}"
    );
    assert!(message.contains("<strong>Closed</strong>"), "{message}");
}

#[tokio::test]
async fn email_of_a_created_order_is_the_thread_root() {
    let (h, _) = mail_one(&sample_event(EventType::Created)).await;
    assert_eq!(h["message-id"], "<order.tracking.123456@orderwatch>");
    assert!(
        !h.contains_key("in-reply-to") && !h.contains_key("references"),
        "{h:?}"
    );
    assert_eq!(h["x-orderwatch-event"], "order.created");
}

#[tokio::test]
async fn email_html_part_escapes_order_data() {
    let mut event = sample_event(EventType::Updated);
    event.data.changes[0].to = "<script>x</script>".into();
    let (_, message) = mail_one(&event).await;
    let (text, html) = message.split_once("Content-Type: text/html").unwrap();
    // Plain text is plain; in HTML the value must not become markup.
    assert!(text.contains("→ <script>x</script>"), "{text}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
}

#[tokio::test]
async fn email_custom_subject_and_body() {
    let (smtp, port) = smtp_server();
    let sink = email_sink(
        port,
        "none",
        ", subject: \"{{ source }}/{{ order_id }}: {{ to }}\", body: \"Hello {{ order.product }} [{{ from }}]\"",
    );
    sink.deliver(&sample_event(EventType::Created))
        .await
        .unwrap();
    let message = smtp.messages.lock().unwrap()[0].clone();
    assert_eq!(
        headers(&message)["subject"],
        "tracking/123456: Acknowledged"
    );
    let message = unquote(&message);
    assert!(
        message.contains("Hello Business VPN Galerie []"),
        "{message}"
    );
}

#[tokio::test]
async fn email_451_is_retried_and_550_is_permanent() {
    let (smtp, port) = smtp_server();
    *smtp.refuse_data.lock().unwrap() = Some((451, "try again later".into()));
    let err = email_sink(port, "none", "")
        .deliver(&sample_event(EventType::Created))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Retry { .. }), "{err:?}");
    assert!(
        err.to_string().contains("`mail`") && err.to_string().contains("451"),
        "{err}"
    );

    // Greylisting: the usual 4xx, at RCPT.
    let (smtp, port) = smtp_server();
    *smtp.refuse_rcpt.lock().unwrap() = Some((450, "greylisted, come back later".into()));
    let err = email_sink(port, "none", "")
        .deliver(&sample_event(EventType::Created))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Retry { .. }), "{err:?}");
    assert!(smtp.messages.lock().unwrap().is_empty());

    let (smtp, port) = smtp_server();
    *smtp.refuse_rcpt.lock().unwrap() = Some((550, "no such user".into()));
    let err = email_sink(port, "none", "")
        .deliver(&sample_event(EventType::Created))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Permanent { .. }), "{err:?}");
    assert!(smtp.messages.lock().unwrap().is_empty());
}

#[tokio::test]
async fn email_unreachable_server_is_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = email_sink(port, "none", "")
        .deliver(&sample_event(EventType::Created))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Retry { .. }), "{err:?}");
}

#[tokio::test]
async fn starttls_is_required_never_skipped() {
    // This server offers no STARTTLS: the mail must not go out in clear.
    let (smtp, port) = smtp_server();
    let err = email_sink(port, "starttls", "")
        .deliver(&sample_event(EventType::Created))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Retry { .. }), "{err:?}");
    assert!(smtp.messages.lock().unwrap().is_empty());
}

#[tokio::test]
async fn email_to_a_server_that_goes_silent_is_retried() {
    // Greets, then never answers: lettre alone would wait forever.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"220 mx.test ESMTP\r\n").await;
            held.push(socket);
        }
    });
    let c = config(&format!(
        "  - {{name: mail, type: email, smtp: {{host: 127.0.0.1, port: {port}, tls: none, timeout: 1s}}, from: ow@example.com, to: [noc@example.com]}}\n"
    ));
    let templates = Arc::new(Templates::compile(&c).unwrap());
    let sink = Sink::build(&c.sinks[0], &templates).unwrap();
    let err = sink
        .deliver(&sample_event(EventType::Created))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Retry { .. }), "{err:?}");
    assert!(err.to_string().contains("no answer within 1s"), "{err}");
}

/// STARTTLS against a server that offers it, with a certificate from a
/// private CA trusted through `ca_file`, and credentials sent only inside TLS.
#[tokio::test]
async fn email_over_starttls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let handler = SmtpRecorder::default();
    let (port, cert_path) = tls_smtp_server(handler.clone(), dir.path());

    let sink_with = |ca: &str| {
        let c = config(&format!(
            "  - {{name: mail, type: email, smtp: {{host: localhost, port: {port}, tls: starttls, username: ops, password: pw-123, timeout: 5s{ca}}}, from: ow@example.com, to: [noc@example.com]}}\n"
        ));
        let templates = Arc::new(Templates::compile(&c).unwrap());
        Sink::build(&c.sinks[0], &templates).unwrap()
    };

    // Without the CA the certificate is not trusted: a retry, nothing sent.
    let untrusting = sink_with("");
    let err = untrusting
        .deliver(&sample_event(EventType::StatusChanged))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Retry { .. }), "{err:?}");
    assert!(handler.messages.lock().unwrap().is_empty());
    assert!(
        handler.logins.lock().unwrap().is_empty(),
        "no credentials before TLS"
    );

    let trusting = sink_with(&format!(", ca_file: {}", cert_path.display()));
    trusting
        .deliver(&sample_event(EventType::StatusChanged))
        .await
        .expect("delivered over STARTTLS");
    let messages = handler.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].contains("Subject: [orderwatch] 123456 is now Closed"),
        "{}",
        messages[0]
    );
    assert_eq!(
        handler.logins.lock().unwrap().clone(),
        vec![("ops".to_owned(), "pw-123".to_owned())]
    );
}
