//! The nats sink: each event published to NATS JetStream, on a subject
//! rendered per event (`orderwatch.{{ source }}.{{ type }}` by default),
//! with the event JSON as the body (as a webhook receives it) and its id as
//! `Nats-Msg-Id`, so JetStream's duplicate window drops a redelivery.
//!
//! A delivery succeeds only on JetStream's publish acknowledgement: the
//! outbox entry stays until the stream has stored the message. The
//! connection is made at the first delivery, not at start-up, so orderwatch
//! starts (and queues) while the server is down; once connected, the client
//! reconnects by itself, and a delivery that gets no acknowledgement in time
//! is retried. The stream is checked once per connection (and created when
//! `create_stream: true`), and again after a publish finds no stream.
//!
//! Answers are read here: a server down, no stream listening, a stream of
//! another name capturing the subject, a missing acknowledgement and
//! JetStream's own errors retry; refused credentials, a message too large
//! for the server and a subject the event renders badly are permanent.

use super::{Deliver, SinkSettings, SinkType};
use crate::config::{Decoder, Fields, MILLI, opt, read_secret_file};
use crate::deliver::DeliveryError;
use crate::deliver::template::{Escape, Role, Templates, sample_outputs};
use crate::digest::Digest;
use crate::event::{Event, EventData, EventType};
use crate::secret::{Secret, redact, redact_url};
use crate::shutdown::Shutdown;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

pub(crate) const TYPE: SinkType = SinkType {
    name: "nats",
    keys: &[
        "url",
        "subject",
        "stream",
        "create_stream",
        "token",
        "username",
        "password",
        "creds_file",
        "timeout",
    ],
    // The subject always comes from the settings (the default included):
    // there is no built-in template per event type.
    defaults: Vec::new,
    decode,
};

/// The `subject` template: values as they are (a bad one fails the
/// subject check, whatever escaping would have made of it).
const SUBJECT: Role = Role::new("nats.subject", Escape::Plain);
const DEFAULT_SUBJECT: &str = "orderwatch.{{ source }}.{{ type }}";
/// A longer subject would make the publish line exceed the server's
/// control-line limit (4 KiB by default), and the server would drop the
/// connection instead of refusing the one message.
const MAX_SUBJECT_LEN: usize = 1024;
/// How much of a bad subject an error quotes.
const QUOTED_SUBJECT: usize = 80;

/// How the sink proves who it is; at most one way.
#[derive(Clone)]
enum Auth {
    None,
    Token(Secret),
    UserPassword {
        user: String,
        password: Secret,
    },
    /// A `.creds` file's contents (the user's JWT and nkey seed).
    Creds(Secret),
}

/// A nats section, parsed.
#[derive(Clone)]
pub struct NatsSettings {
    server: ServerAddr,
    /// `scheme://host[:port]`.
    host: String,
    subject: String,
    stream: String,
    /// The subjects a stream created by orderwatch listens on; `None`
    /// without `create_stream`.
    created_subjects: Option<String>,
    auth: Auth,
    timeout: Duration,
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSettings")
            .field("host", &self.host)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

fn decode(d: &mut Decoder, f: &Fields) -> Option<Arc<dyn SinkSettings>> {
    let server = d
        .required(f, "url")
        .and_then(|n| server_url(d, n, &f.path("url")));
    let subject = opt!(d, f, "subject", DEFAULT_SUBJECT.to_owned(), |n, p| {
        let text = d.template(n, &p, SUBJECT)?;
        if let Err(message) = subject_on_every_sample(&text) {
            d.problem(&p, n.line, message);
            return None;
        }
        Some(text)
    });
    let stream = d.required(f, "stream").and_then(|n| {
        let p = f.path("stream");
        let name = d.nonempty_string(n, &p)?;
        if let Err(message) = stream_name(&name) {
            d.problem(&p, n.line, message);
            return None;
        }
        Some(name)
    });
    let create = opt!(d, f, "create_stream", false, |n, p| d.choice(
        n,
        &p,
        &[("true", true), ("false", false)]
    ));
    let auth = auth(d, f);
    let timeout = opt!(d, f, "timeout", Duration::from_secs(10), |n, p| d
        .duration(n, &p, MILLI));
    let created_subjects = match (create?, &subject) {
        (false, _) => None,
        (true, Some(subject)) => match stream_subjects(subject) {
            Some(pattern) => Some(pattern),
            None => {
                d.problem(
                    f.path("create_stream"),
                    f.get("create_stream").and_then(|n| n.line),
                    format!(
                        "a stream orderwatch creates listens on the subject's fixed first tokens (`{DEFAULT_SUBJECT}` gives `orderwatch.>`), and this `subject` starts with a template value; start it with a fixed token, or create the stream yourself"
                    ),
                );
                return None;
            }
        },
        (true, None) => return None,
    };
    let (server, host) = server?;
    Some(Arc::new(NatsSettings {
        server,
        host,
        subject: subject?,
        stream: stream?,
        created_subjects,
        auth: auth?,
        timeout: timeout?,
    }))
}

/// `nats://` or `tls://`, with a host and no credentials: those have keys
/// of their own, which are kept as secrets.
fn server_url(
    d: &mut Decoder,
    n: &crate::config::Node,
    path: &str,
) -> Option<(ServerAddr, String)> {
    let text = d.nonempty_string(n, path)?;
    let problem = match url::Url::parse(text.trim()) {
        Ok(u) if !matches!(u.scheme(), "nats" | "tls") || !u.has_host() => {
            "must be a nats:// or tls:// URL with a host (for example nats://127.0.0.1:4222)"
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            "must not carry credentials: use `token`, `username`/`password` or `creds_file`"
        }
        Ok(u) if !matches!(u.path(), "" | "/") || u.query().is_some() => {
            "must be a server address only: no path or query (for example nats://127.0.0.1:4222)"
        }
        Ok(u) => {
            let host = redact_url(&u);
            match ServerAddr::from_url(u) {
                Ok(server) => return Some((server, host)),
                Err(_) => "not a NATS server address (for example nats://127.0.0.1:4222)",
            }
        }
        Err(_) => "not a URL (for example nats://127.0.0.1:4222)",
    };
    d.problem(path, n.line, problem);
    None
}

/// `token`, or `username` and `password`, or `creds_file`: one of them.
fn auth(d: &mut Decoder, f: &Fields) -> Option<Auth> {
    let methods: Vec<&str> = [
        ("token", f.has("token")),
        ("username/password", f.has("username") || f.has("password")),
        ("creds_file", f.has("creds_file")),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    if methods.len() > 1 {
        d.problem(
            f.path.clone(),
            f.line,
            format!(
                "give one way to authenticate to NATS, not {}: `token`, `username`/`password` or `creds_file`",
                methods.join(" and ")
            ),
        );
        return None;
    }
    if let Some(n) = f.get("token") {
        return d.secret(n, &f.path("token")).map(Auth::Token);
    }
    if let Some(n) = f.get("creds_file") {
        return creds_file(d, n, &f.path("creds_file")).map(Auth::Creds);
    }
    if !f.has("username") && !f.has("password") {
        return Some(Auth::None);
    }
    let user = d
        .required(f, "username")
        .and_then(|n| d.nonempty_string(n, &f.path("username")));
    let password = d
        .required(f, "password")
        .and_then(|n| d.secret(n, &f.path("password")));
    Some(Auth::UserPassword {
        user: user?,
        password: password?,
    })
}

/// The `.creds` file, read and checked now (a bad one is a config problem,
/// not a dead letter), its JWT and seed remembered as secrets.
fn creds_file(d: &mut Decoder, n: &crate::config::Node, path: &str) -> Option<Secret> {
    let file = d.nonempty_string(n, path)?;
    let text = match read_secret_file(std::path::Path::new(file.trim())) {
        Ok(text) => text,
        Err(e) => {
            d.problem(
                path,
                n.line,
                format!("cannot read the credentials file: {e}"),
            );
            return None;
        }
    };
    // Every line inside the file's BEGIN/END blocks is key material.
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("---") {
            inside = line.contains("BEGIN");
        } else if inside && !line.is_empty() {
            let _ = Secret::new(line);
        }
    }
    let secret = Secret::new(text);
    if ConnectOptions::with_credentials(secret.expose()).is_err() {
        d.problem(
            path,
            n.line,
            "not a NATS credentials file (it must hold a user JWT and an nkey seed, as `nsc` writes them)",
        );
        return None;
    }
    Some(secret)
}

/// JetStream's rule for stream names: no whitespace, `.`, `*`, `>` or path
/// separators.
fn stream_name(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err("a stream name has at most 255 characters".into());
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(
            "a stream name must not contain spaces, `.`, `*`, `>`, `/` or `\\` (for example ORDERWATCH)"
                .into(),
        );
    }
    Ok(())
}

/// Whether `subject` is one a message can be published to: dot-separated
/// non-empty tokens, no wildcards, no whitespace.
fn publish_subject(subject: &str) -> Result<(), String> {
    let problem = if subject.is_empty() {
        "it is empty"
    } else if subject.len() > MAX_SUBJECT_LEN {
        "it is longer than 1024 bytes"
    } else if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace"
    } else if subject.contains(['*', '>']) {
        "it contains a wildcard (`*` or `>`)"
    } else if subject.split('.').any(str::is_empty) {
        "it has an empty token (a leading, trailing or doubled `.`)"
    } else {
        return Ok(());
    };
    let quoted: String = subject.chars().take(QUOTED_SUBJECT).collect();
    let more = if quoted.len() < subject.len() {
        "…"
    } else {
        ""
    };
    Err(format!(
        "`{}{more}` is not a valid NATS subject: {problem}",
        quoted.escape_debug()
    ))
}

/// The subject, rendered for a sample event of every type, must be valid.
fn subject_on_every_sample(template: &str) -> Result<(), String> {
    for (kind, subject) in sample_outputs(SUBJECT, template)? {
        publish_subject(&subject).map_err(|e| {
            // Events about a source have no order: its fields render empty.
            let hint = if kind.as_str().starts_with("source.") {
                " (an event about a source has no order: give order fields a fallback, e.g. {{ order_id or \"source\" }})"
            } else {
                ""
            };
            format!("for a sample {kind} event, the subject {e}{hint}")
        })?;
    }
    Ok(())
}

/// What a created stream listens on: the template's fixed leading tokens
/// and `>` (an event type has a `.` of its own, so no `*` pattern fits), or
/// the subject itself when it is all fixed. `None` when it starts with a
/// value: a stream on `>` would capture every subject of the account.
fn stream_subjects(template: &str) -> Option<String> {
    let Some(at) = template.find('{') else {
        return Some(template.to_owned());
    };
    let fixed = &template[..at];
    let tokens = &fixed[..fixed.rfind('.')?];
    (!tokens.is_empty()).then(|| format!("{tokens}.>"))
}

impl SinkSettings for NatsSettings {
    fn templates(&self) -> Vec<(Role, &'static str, &str)> {
        vec![(SUBJECT, "subject", self.subject.as_str())]
    }

    fn build(&self, name: &str, templates: Arc<Templates>) -> Result<Box<dyn Deliver>, String> {
        Ok(Box::new(NatsSink {
            name: name.to_owned(),
            settings: self.clone(),
            templates,
            link: tokio::sync::Mutex::new(None),
        }))
    }
}

pub struct NatsSink {
    name: String,
    settings: NatsSettings,
    templates: Arc<Templates>,
    /// The connection, made at the first delivery; held while it is made so
    /// concurrent deliveries wait for one connection instead of racing.
    link: tokio::sync::Mutex<Option<Link>>,
}

/// A connection and what is known about the stream through it.
struct Link {
    jetstream: jetstream::Context,
    /// The stream was found (or created) since the last time a publish
    /// found none.
    stream_ready: bool,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("host", &self.settings.host)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    async fn publish(&self, event: &Event, json: &str) -> Result<(), DeliveryError> {
        let who = self.describe();
        let subject = self
            .templates
            .render(&self.name, SUBJECT, event)
            .and_then(|s| publish_subject(&s).map(|()| s))
            .map_err(|e| DeliveryError::permanent(format!("{who}: {e}")))?;
        self.publish_as(subject, &event.data.id, json).await
    }

    /// A digest is one message, its document the payload, its id the
    /// `Nats-Msg-Id`; its subject is the sink's `subject` rendered with the
    /// sink's name as `source` and `digest` as `type`.
    async fn publish_digest(&self, digest: &Digest, json: &str) -> Result<(), DeliveryError> {
        let who = self.describe();
        let about = Event {
            kind: EventType::Digest,
            timestamp: digest.timestamp.clone(),
            data: EventData {
                id: digest.data.id.clone(),
                source: digest.data.sink.clone(),
                ..EventData::default()
            },
        };
        let subject = self
            .templates
            .render(&self.name, SUBJECT, &about)
            .and_then(|s| publish_subject(&s).map(|()| s))
            .map_err(|e| DeliveryError::permanent(format!("{who}: {e}")))?;
        self.publish_as(subject, &digest.data.id, json).await
    }

    async fn publish_as(&self, subject: String, id: &str, json: &str) -> Result<(), DeliveryError> {
        let who = self.describe();
        let jetstream = self.ready().await?;
        let stream = &self.settings.stream;
        let message = PublishMessage::build()
            .payload(bytes::Bytes::copy_from_slice(json.as_bytes()))
            .message_id(id)
            // JetStream then refuses a subject another stream captures,
            // instead of storing the event where nobody looks.
            .expected_stream(stream);
        let sent = jetstream.send_publish(subject.clone(), message).await;
        let acked = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(ack) => {
                if ack.duplicate {
                    info!(sink = %who, stream = %ack.stream, id = %id, "JetStream already held this event (a redelivery): dropped as a duplicate");
                }
                Ok(())
            }
            Err(e) => {
                if e.kind() == PublishErrorKind::StreamNotFound {
                    self.forget_stream().await;
                }
                Err(publish_error(&who, stream, &subject, &e))
            }
        }
    }

    /// The JetStream context of a connection whose stream was found,
    /// connecting and checking first where needed.
    async fn ready(&self) -> Result<jetstream::Context, DeliveryError> {
        let mut link = self.link.lock().await;
        let link = match &mut *link {
            Some(link) => link,
            empty => empty.insert(Link {
                jetstream: self.connect().await?,
                stream_ready: false,
            }),
        };
        if !link.stream_ready {
            self.find_stream(&link.jetstream).await?;
            link.stream_ready = true;
        }
        Ok(link.jetstream.clone())
    }

    async fn forget_stream(&self) {
        if let Some(link) = &mut *self.link.lock().await {
            link.stream_ready = false;
        }
    }

    async fn connect(&self) -> Result<jetstream::Context, DeliveryError> {
        let who = self.describe();
        let options = match &self.settings.auth {
            Auth::None => ConnectOptions::new(),
            Auth::Token(token) => ConnectOptions::with_token(token.expose().to_owned()),
            Auth::UserPassword { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.expose().to_owned())
            }
            Auth::Creds(creds) => ConnectOptions::with_credentials(creds.expose())
                .map_err(|_| DeliveryError::permanent(format!("{who}: unreadable credentials")))?,
        };
        let events_of = who.clone();
        let client = options
            .name(concat!("orderwatch/", env!("CARGO_PKG_VERSION")))
            .connection_timeout(self.settings.timeout)
            .event_callback(move |event| {
                let who = events_of.clone();
                async move { log_event(&who, event) }
            })
            .connect(self.settings.server.clone())
            .await
            .map_err(|e| {
                let reason = format!("{who}: cannot connect: {}", redact(&e.to_string()));
                match e.kind() {
                    // The server said no to these credentials: sending the
                    // same ones again will not change its mind.
                    ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                        DeliveryError::permanent(format!(
                            "{reason} (the server refused the credentials)"
                        ))
                    }
                    _ => DeliveryError::retry(reason),
                }
            })?;
        let mut context = jetstream::new(client);
        context.set_timeout(self.settings.timeout);
        Ok(context)
    }

    /// The configured stream exists, or is created (`create_stream: true`).
    async fn find_stream(&self, jetstream: &jetstream::Context) -> Result<(), DeliveryError> {
        let who = self.describe();
        let name = &self.settings.stream;
        let found = match &self.settings.created_subjects {
            Some(subjects) => jetstream
                .get_or_create_stream(stream::Config {
                    name: name.clone(),
                    subjects: vec![subjects.clone()],
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map(drop)
                .map_err(|e| format!("cannot create stream `{name}` on `{subjects}`: {e}")),
            None => jetstream.get_stream(name).await.map(drop).map_err(|e| {
                let missing = matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND);
                if missing {
                    format!(
                        "stream `{name}` does not exist (create it, or set `create_stream: true`)"
                    )
                } else {
                    format!("cannot look up stream `{name}`: {e}")
                }
            }),
        };
        found.map_err(|e| DeliveryError::retry(format!("{who}: {}", redact(&e))))
    }
}

/// A failed publish, said plainly and sorted into retry or permanent.
fn publish_error(who: &str, stream: &str, subject: &str, e: &PublishError) -> DeliveryError {
    let jetstream_code = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(jetstream::Error::error_code);
    let text = redact(&e.to_string());
    match e.kind() {
        PublishErrorKind::StreamNotFound => DeliveryError::retry(format!(
            "{who}: no stream listens on `{subject}` (no responders): does stream `{stream}` exist and cover it?"
        )),
        PublishErrorKind::TimedOut => DeliveryError::retry(format!(
            "{who}: no acknowledgement from JetStream in time (server down or unreachable?)"
        )),
        PublishErrorKind::MaxPayloadExceeded => {
            DeliveryError::permanent(format!("{who}: the event is too large: {text}"))
        }
        _ if jetstream_code == Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) => {
            DeliveryError::permanent(format!("{who}: the event is too large: {text}"))
        }
        _ if jetstream_code == Some(ErrorCode::STREAM_NOT_MATCH) => DeliveryError::retry(format!(
            "{who}: `{subject}` is captured by another stream than `{stream}`"
        )),
        _ => DeliveryError::retry(format!("{who}: publish failed: {text}")),
    }
}

/// The client's own news of its connection, in the log.
fn log_event(who: &str, event: async_nats::Event) {
    use async_nats::Event::*;
    let text = redact(&event.to_string());
    match event {
        Connected => info!(sink = %who, "NATS connection: {text}"),
        Closed | Draining => info!(sink = %who, "NATS connection: {text}"),
        _ => warn!(sink = %who, "NATS connection: {text}"),
    }
}

impl Deliver for NatsSink {
    fn describe(&self) -> String {
        format!("{} ({})", self.name, self.settings.host)
    }

    fn deliver<'a>(
        &'a self,
        event: &'a Event,
        json: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move { Some(self.publish(event, json).await) })
    }

    fn deliver_digest<'a>(
        &'a self,
        digest: &'a Digest,
        json: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move { Some(self.publish_digest(digest, json).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked_as_nats_reads_them() {
        assert!(publish_subject("orderwatch.tracking.order.created").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a\nb"] {
            assert!(publish_subject(bad).is_err(), "{bad:?}");
        }
        assert!(publish_subject(&"a".repeat(MAX_SUBJECT_LEN + 1)).is_err());
        let long = format!("{} x", "a".repeat(200));
        let message = publish_subject(&long).unwrap_err();
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn a_created_stream_covers_the_fixed_tokens() {
        assert_eq!(
            stream_subjects(DEFAULT_SUBJECT).as_deref(),
            Some("orderwatch.>")
        );
        assert_eq!(
            stream_subjects("ow.orders.{{ order_id }}").as_deref(),
            Some("ow.orders.>")
        );
        assert_eq!(
            stream_subjects("fixed.subject").as_deref(),
            Some("fixed.subject")
        );
        assert_eq!(stream_subjects("{{ source }}.x"), None);
        assert_eq!(stream_subjects("ow{{ source }}.x"), None);
    }

    #[test]
    fn publish_errors_are_sorted_into_retry_or_permanent() {
        let sorted = |e: PublishError| publish_error("bus (nats://nats:4222)", "S", "a.b", &e);
        let retries = |e| matches!(sorted(e), DeliveryError::Retry { .. });
        let jetstream_error = |code: u16| {
            let json = serde_json::json!({"code": 400, "err_code": code, "description": "refused"});
            let error: jetstream::Error = serde_json::from_value(json).expect("an API error");
            PublishError::with_source(PublishErrorKind::Other, error)
        };
        for kind in [
            PublishErrorKind::StreamNotFound,
            PublishErrorKind::TimedOut,
            PublishErrorKind::BrokenPipe,
            PublishErrorKind::MaxAckPending,
        ] {
            assert!(retries(PublishError::new(kind)), "{kind:?}");
        }
        assert!(!retries(PublishError::new(
            PublishErrorKind::MaxPayloadExceeded
        )));
        // Too large for the stream, read from JetStream's own error code.
        assert!(!retries(jetstream_error(10054)));
        // Captured by another stream; out of resources.
        assert!(retries(jetstream_error(10060)));
        assert!(retries(jetstream_error(10023)));
        let missing = sorted(PublishError::new(PublishErrorKind::StreamNotFound)).to_string();
        assert!(missing.starts_with("bus (nats://nats:4222): "), "{missing}");
        assert!(missing.contains("stream `S`"), "{missing}");
    }

    #[test]
    fn stream_names_follow_jetstream() {
        assert!(stream_name("ORDERWATCH_events-1").is_ok());
        for bad in ["a.b", "a b", "a*", "a>", "a/b"] {
            assert!(stream_name(bad).is_err(), "{bad}");
        }
    }
}
