//! The email sink: one multipart (text and HTML) mail per event over SMTP,
//! through lettre on tokio with rustls.
//!
//! Each mail uses its own connection, deliberately not lettre's pool:
//! lettre's async client bounds only the connect with its timeout, so the
//! whole exchange runs under our own deadline, and cancelling a pooled
//! connection mid-command would park it, out of step, for the next mail.
//! Notification mail is rare enough that a connection per mail costs nothing.
//!
//! The connection is ours too (lettre drives the SMTP on it): lettre reads
//! a server's reply line whole before it checks its length, so a server that
//! sends an endless line would grow the process without bound. Everything
//! read from the server passes through [`Bounded`], which fails the
//! exchange past [`MAX_SERVER_BYTES`].
//!
//! Header lines stay within RFC 5322's 998 characters whatever the order:
//! the subject is cut to [`MAX_SUBJECT_CHARS`] (lettre folds it at spaces),
//! and an id too long for a `Message-ID` is shortened with a hash of the
//! whole, so it stays distinct.
//!
//! Mails of one order thread together in mail clients: every mail refers to
//! a per-order root id `<order.{source}.{order_id}@orderwatch>`, and the mail
//! of `order.created` carries that root as its own `Message-ID`, so when the
//! creation was mailed the thread has a real first message. A source's
//! `source.recovered` mail answers the `source.failing` mail of the same
//! episode (both ids derive from the source and `since`). The SMTP password
//! lives in a [`Secret`](crate::secret::Secret) until lettre takes it, and no
//! error or log shows it.

use super::{Deliver, SinkSettings, SinkType, own_template};
use crate::config::{Decoder, Fields, MILLI, index, opt};
use crate::deliver::DeliveryError;
use crate::deliver::template::{Role, Templates, default_name};
use crate::digest::{Digest, Part};
use crate::event::{Event, EventType};
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use futures::future::BoxFuture;
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most one mail's exchange may read from the server. SMTP replies are
/// short (RFC 5321 caps a reply line at 512 bytes; EHLO lists a few dozen).
pub const MAX_SERVER_BYTES: u64 = 1024 * 1024;
/// The longest subject sent, in characters; longer ones end with "...".
pub const MAX_SUBJECT_CHARS: usize = 200;
/// How long the server may take to answer QUIT after taking a mail.
const QUIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// The longest encoded id part of a `Message-ID` kept as it is.
const MAX_ID_PART: usize = 128;

pub(crate) const TYPE: SinkType = SinkType {
    name: "email",
    keys: &["smtp", "from", "to", "subject", "body"],
    defaults,
    decode,
};

const SMTP: &[&str] = &[
    "host", "port", "tls", "username", "password", "ca_file", "timeout",
];

/// An email section, parsed: the addresses are mailboxes already.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    smtp: SmtpSettings,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: Option<String>,
    body: Option<String>,
}

#[derive(Debug, Clone)]
struct SmtpSettings {
    host: String,
    port: u16,
    tls: SmtpTls,
    username: Option<String>,
    password: Option<Secret>,
    /// A PEM file of CA certificates trusted besides the system's (a
    /// private mail relay's CA).
    ca_file: Option<PathBuf>,
    timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmtpTls {
    None,
    Starttls,
    Tls,
}

fn decode(d: &mut Decoder, f: &Fields) -> Option<Arc<dyn SinkSettings>> {
    let smtp = d
        .required(f, "smtp")
        .and_then(|n| smtp(d, n, &f.path("smtp")));
    let from = d
        .required(f, "from")
        .and_then(|n| address(d, n, &f.path("from")));
    let to = d.required(f, "to").and_then(|n| {
        let path = f.path("to");
        let list = d.strings(n, &path)?;
        if list.is_empty() {
            d.problem(&path, n.line, "needs at least one address");
            return None;
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, text) in list.iter().enumerate() {
            match mailbox(text) {
                Ok(mailbox) => out.push(mailbox),
                Err(message) => d.problem(index(&path, i), n.line, message),
            }
        }
        (out.len() == list.len()).then_some(out)
    });
    let subject = opt!(d, f, "subject", None, |n, p| d
        .template(n, &p, Role::EmailSubject)
        .map(Some));
    let body = opt!(d, f, "body", None, |n, p| d
        .template(n, &p, Role::EmailText)
        .map(Some));
    Some(Arc::new(EmailSettings {
        smtp: smtp?,
        from: from?,
        to: to?,
        subject: subject?,
        body: body?,
    }))
}

fn looks_like_address(text: &str) -> bool {
    let addr = match (text.find('<'), text.rfind('>')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text,
    };
    match addr.trim().split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains(' '),
        None => false,
    }
}

/// An address as lettre sends it, parsed once here.
fn mailbox(text: &str) -> Result<Mailbox, String> {
    if !looks_like_address(text) {
        return Err("not an email address".to_owned());
    }
    text.parse::<Mailbox>()
        .map_err(|e| format!("not a usable address: {e}"))
}

fn address(d: &mut Decoder, node: &crate::config::Node, path: &str) -> Option<Mailbox> {
    let text = d.nonempty_string(node, path)?;
    match mailbox(&text) {
        Ok(mailbox) => Some(mailbox),
        Err(message) => {
            d.problem(path, node.line, message);
            None
        }
    }
}

fn smtp(d: &mut Decoder, node: &crate::config::Node, path: &str) -> Option<SmtpSettings> {
    let f = d.map(node, path, SMTP)?;
    let host = d
        .required(&f, "host")
        .and_then(|n| d.nonempty_string(n, &f.path("host")));
    let tls = opt!(d, f, "tls", SmtpTls::Starttls, |n, p| d.choice(
        n,
        &p,
        &[
            ("none", SmtpTls::None),
            ("starttls", SmtpTls::Starttls),
            ("tls", SmtpTls::Tls)
        ]
    ));
    let default_port = match tls {
        Some(SmtpTls::Tls) => 465,
        Some(SmtpTls::None) => 25,
        _ => 587,
    };
    let port = opt!(d, f, "port", default_port, |n, p| d.uint(n, &p, 1, 65535));
    let username = opt!(d, f, "username", None, |n, p| d
        .nonempty_string(n, &p)
        .map(Some));
    let password = opt!(d, f, "password", None, |n, p| d.secret(n, &p).map(Some));
    let timeout = opt!(
        d,
        f,
        "timeout",
        std::time::Duration::from_secs(30),
        |n, p| d.duration(n, &p, MILLI)
    );
    let ca_file = opt!(d, f, "ca_file", None, |n, p| {
        let path = PathBuf::from(d.nonempty_string(n, &p)?);
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            Some(Some(path))
        } else {
            d.problem(
                &p,
                n.line,
                format!("{} is not a readable file", path.display()),
            );
            None
        }
    });
    if let (Some(SmtpTls::None), true) = (tls, f.has("username") || f.has("password")) {
        d.problem(
            f.path("tls"),
            f.get("tls").and_then(|n| n.line).or(f.line),
            "credentials are never sent in clear: use `starttls` or `tls` with a username and password",
        );
        return None;
    }
    let username = username?;
    let password = password?;
    if username.is_some() != password.is_some() {
        d.problem(path, f.line, "`username` and `password` go together");
        return None;
    }
    if let (Some(user), Some(password)) = (&username, &password) {
        // A server's answer may quote the AUTH PLAIN line it was sent.
        crate::secret::remember_sasl_plain(user, password);
    }
    Some(SmtpSettings {
        host: host?,
        port: port? as u16,
        tls: tls?,
        username,
        password,
        ca_file: ca_file?,
        timeout: timeout?,
    })
}

impl SinkSettings for EmailSettings {
    fn templates(&self) -> Vec<(Role, &'static str, &str)> {
        let mut own = own_template(Role::EmailSubject, "subject", &self.subject);
        own.extend(own_template(Role::EmailText, "body", &self.body));
        own
    }

    fn build(&self, name: &str, templates: Arc<Templates>) -> Result<Box<dyn Deliver>, String> {
        EmailSink::new(name, self, templates).map(|s| Box::new(s) as Box<dyn Deliver>)
    }
}

/// The built-in subjects of each event type, and the text and HTML bodies
/// that serve every type (they branch inside).
fn defaults() -> Vec<(String, String)> {
    use EventType::*;
    vec![
        (
            default_name(Role::EmailSubject, Created),
            "[orderwatch] {{ order_id }} is new{% if to %} ({{ to }}){% endif %}".into(),
        ),
        (
            default_name(Role::EmailSubject, StatusChanged),
            "[orderwatch] {{ order_id }} is now {{ to }}".into(),
        ),
        (
            default_name(Role::EmailSubject, Updated),
            "[orderwatch] {{ order_id }} was updated".into(),
        ),
        (
            default_name(Role::EmailSubject, Removed),
            "[orderwatch] {{ order_id }} is no longer listed".into(),
        ),
        (
            default_name(Role::EmailSubject, DueSoon),
            "[orderwatch] {{ order_id }} is due on {{ due }}".into(),
        ),
        (
            default_name(Role::EmailSubject, Overdue),
            "[orderwatch] {{ order_id }} is overdue (due {{ due }})".into(),
        ),
        (
            default_name(Role::EmailSubject, Stalled),
            "[orderwatch] {{ order_id }} has been {{ to }} since {{ since }}".into(),
        ),
        (
            default_name(Role::EmailSubject, SourceFailing),
            "[orderwatch] source {{ source }} is failing".into(),
        ),
        (
            default_name(Role::EmailSubject, SourceRecovered),
            "[orderwatch] source {{ source }} has recovered".into(),
        ),
        (
            default_name(Role::EmailSubject, CredentialsExpiring),
            "[orderwatch] the API key of source {{ source }} expires on {{ expires }}".into(),
        ),
        (default_name(Role::EmailText, Created), EMAIL_TEXT.into()),
        (default_name(Role::EmailHtml, Created), EMAIL_HTML.into()),
        (
            default_name(Role::EmailText, SourceFailing),
            EMAIL_SOURCE_TEXT.into(),
        ),
        (
            default_name(Role::EmailHtml, SourceFailing),
            EMAIL_SOURCE_HTML.into(),
        ),
    ]
}

/// The mail about a source (not an order), text part.
const EMAIL_SOURCE_TEXT: &str = "\
{% if type == 'source.failing' -%}
Source {{ source }} is failing: every poll since {{ since }} has failed ({{ failures }} failed cycles so far).

Last error: {{ error }}

orderwatch keeps polling, and says so when the source recovers.
{%- elif type == 'source.recovered' -%}
Source {{ source }} has recovered: its polls work again (failing since {{ since }}, {{ failures }} failed cycles).
{%- else -%}
The API key of source {{ source }} expires on {{ expires }} (Orange's keys last two years). Ask Orange for a new key, then update api_key and api_key_expires in the config.
{%- endif %}

Event:     {{ type }} {{ id }}
Detected:  {{ timestamp }}

-- 
Sent by orderwatch.
";

/// The mail about a source, HTML part.
const EMAIL_SOURCE_HTML: &str = "\
<!DOCTYPE html>
<html><body style=\"font-family: sans-serif\">
{%- if type == 'source.failing' %}
<p>Source <strong>{{ source }}</strong> is failing: every poll since {{ since }} has failed ({{ failures }} failed cycles so far).</p>
<p>Last error: <code>{{ error }}</code></p>
<p>orderwatch keeps polling, and says so when the source recovers.</p>
{%- elif type == 'source.recovered' %}
<p>Source <strong>{{ source }}</strong> has recovered: its polls work again (failing since {{ since }}, {{ failures }} failed cycles).</p>
{%- else %}
<p>The API key of source <strong>{{ source }}</strong> expires on <strong>{{ expires }}</strong> (Orange's keys last two years). Ask Orange for a new key, then update <code>api_key</code> and <code>api_key_expires</code> in the config.</p>
{%- endif %}
<p style=\"color: #666; font-size: smaller\">{{ type }} {{ id }} · detected {{ timestamp }}<br>Sent by orderwatch.</p>
</body></html>
";

/// The sentence that opens a mail, shared by the text and HTML bodies.
const EMAIL_TEXT: &str = "\
Order {{ order_id }} (source {{ source }})
{%- if type == 'order.created' %} is new{% if to %}, with status {{ to }}{% endif %}.
{%- elif type == 'order.status_changed' %} is now {{ to }} (was {{ from }}).
{%- elif type == 'order.updated' %} was updated.
{%- elif type == 'order.due_soon' %} is due on {{ due }} and still {{ to }}.
{%- elif type == 'order.overdue' %} is overdue: it was due on {{ due }} and is still {{ to }}.
{%- elif type == 'order.stalled' %} has been {{ to }} since {{ since }}.
{%- else %} is no longer listed by the API.
{%- endif %}
{% if changes %}
Changes:
{%- for c in changes %}
  {{ c.path }}: {{ c.from|show }} → {{ c.to|show }}
{%- endfor %}
{% endif %}
Event:     {{ type }} {{ id }}
Revision:  {{ revision }}
Detected:  {{ timestamp }}

-- 
Sent by orderwatch.
";

const EMAIL_HTML: &str = "\
<!DOCTYPE html>
<html><body style=\"font-family: sans-serif\">
<p>Order <strong>{{ order_id }}</strong> (source {{ source }})
{%- if type == 'order.created' %} is new{% if to %}, with status <strong>{{ to }}</strong>{% endif %}.
{%- elif type == 'order.status_changed' %} is now <strong>{{ to }}</strong> (was {{ from }}).
{%- elif type == 'order.updated' %} was updated.
{%- elif type == 'order.due_soon' %} is due on <strong>{{ due }}</strong> and still {{ to }}.
{%- elif type == 'order.overdue' %} is <strong>overdue</strong>: it was due on {{ due }} and is still {{ to }}.
{%- elif type == 'order.stalled' %} has been <strong>{{ to }}</strong> since {{ since }}.
{%- else %} is no longer listed by the API.
{%- endif %}</p>
{%- if changes %}
<table cellpadding=\"4\" style=\"border-collapse: collapse\">
<tr><th align=\"left\">Field</th><th align=\"left\">Was</th><th align=\"left\">Now</th></tr>
{%- for c in changes %}
<tr><td><code>{{ c.path }}</code></td><td>{{ c.from|show }}</td><td>{{ c.to|show }}</td></tr>
{%- endfor %}
</table>
{%- endif %}
<p style=\"color: #666; font-size: smaller\">{{ type }} {{ id }} · revision {{ revision }} · detected {{ timestamp }}<br>Sent by orderwatch.</p>
</body></html>
";

/// TLS that trusts the system's roots and the CAs of `ca_file`.
fn tls_with_ca(host: &str, ca_file: &std::path::Path) -> Result<TlsParameters, String> {
    let pem = std::fs::read(ca_file)
        .map_err(|e| format!("cannot read ca_file {}: {e}", ca_file.display()))?;
    let cert = Certificate::from_pem(&pem).map_err(|e| {
        format!(
            "ca_file {} is not a PEM certificate: {e}",
            ca_file.display()
        )
    })?;
    TlsParameters::builder(host.to_owned())
        .add_root_certificate(cert)
        .build_rustls()
        .map_err(|e| format!("cannot set up TLS: {e}"))
}

/// How the connection is protected.
enum Security {
    /// Clear text: the config refuses credentials with it.
    None,
    /// STARTTLS, required: a server that does not offer it is an error.
    Starttls(TlsParameters),
    /// TLS from the first byte (port 465).
    Tls(TlsParameters),
}

pub struct EmailSink {
    name: String,
    /// `smtp://host:port`: what logs and errors show of the server.
    server: String,
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    /// The EHLO name: this machine's host name, as lettre's default.
    hello: ClientId,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// The deadline for a whole exchange, connect to QUIT.
    timeout: std::time::Duration,
    templates: Arc<Templates>,
}

impl std::fmt::Debug for EmailSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSink")
            .field("name", &self.name)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl EmailSink {
    pub fn new(name: &str, cfg: &EmailSettings, templates: Arc<Templates>) -> Result<Self, String> {
        let smtp = &cfg.smtp;
        let server = format!("smtp://{}:{}", smtp.host, smtp.port);
        let who = format!("email sink `{name}` ({server})");
        let params = || match &smtp.ca_file {
            Some(ca_file) => tls_with_ca(&smtp.host, ca_file).map_err(|e| format!("{who}: {e}")),
            None => TlsParameters::new(smtp.host.clone())
                .map_err(|e| format!("{who}: cannot set up TLS: {e}")),
        };
        let security = match smtp.tls {
            SmtpTls::None => Security::None,
            SmtpTls::Starttls => Security::Starttls(params()?),
            SmtpTls::Tls => Security::Tls(params()?),
        };
        let credentials = match (&smtp.username, &smtp.password) {
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.clone(), password.expose().to_owned()))
            }
            _ => None,
        };
        Ok(EmailSink {
            name: name.to_owned(),
            server,
            host: smtp.host.clone(),
            port: smtp.port,
            security,
            credentials,
            hello: ClientId::default(),
            from: cfg.from.clone(),
            to: cfg.to.clone(),
            timeout: smtp.timeout,
            templates,
        })
    }

    async fn send(&self, event: &Event) -> Result<(), DeliveryError> {
        let message = self.message(event)?;
        self.send_message(message).await
    }

    async fn send_message(&self, message: Message) -> Result<(), DeliveryError> {
        let envelope = message.envelope().clone();
        let bytes = message.formatted();
        match tokio::time::timeout(self.timeout, self.exchange(&envelope, &bytes)).await {
            Ok(Ok(mut conn)) => {
                // The mail is accepted: a server slow to answer QUIT, or
                // failing it, changes nothing, so it cannot cause a retry.
                let _ = tokio::time::timeout(QUIT_WAIT, conn.quit()).await;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            // Possibly after the server took the mail: a retry may duplicate
            // it (same Message-ID), which beats losing it.
            Err(_) => Err(DeliveryError::retry(format!(
                "{}: no answer within {}",
                self.who(),
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    /// Connect, say EHLO, secure, log in, send: lettre's own steps, on a
    /// connection whose reads are bounded. The connection is returned for
    /// the QUIT.
    async fn exchange(
        &self,
        envelope: &Envelope,
        mail: &[u8],
    ) -> Result<AsyncSmtpConnection, DeliveryError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| DeliveryError::retry(format!("{}: cannot connect: {e}", self.who())))?;
        let peer = tcp
            .peer_addr()
            .map_err(|e| DeliveryError::retry(format!("{}: cannot connect: {e}", self.who())))?;
        let bounded = BoundedRead::new(tcp, peer);
        let smtp = |e: lettre::transport::smtp::Error| self.classify(&e);
        let mut conn = match &self.security {
            Security::Tls(params) => {
                let encrypted = Encrypted::connect(bounded, params.clone(), peer)
                    .await
                    .map_err(smtp)?;
                AsyncSmtpConnection::connect_with_transport(Box::new(encrypted), &self.hello).await
            }
            Security::None | Security::Starttls(_) => {
                AsyncSmtpConnection::connect_with_transport(Box::new(bounded), &self.hello).await
            }
        }
        .map_err(smtp)?;
        if let Security::Starttls(params) = &self.security {
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(smtp)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(smtp)?;
        }
        conn.send(envelope, mail).await.map_err(smtp)?;
        Ok(conn)
    }

    /// The mail for one event, headers and both parts.
    fn message(&self, event: &Event) -> Result<Message, DeliveryError> {
        let mail = self
            .templates
            .render_email(&self.name, event)
            .map_err(DeliveryError::permanent)?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(shorten_subject(&mail.subject))
            .header(AutoSubmitted)
            .header(OrderwatchEvent(event.kind.as_str()))
            .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")).to_owned());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let own_id = format!("<{}@orderwatch>", id_part(&event.data.id));
        builder = match (event.kind, replies_to(event)) {
            (EventType::Created, Some(root)) => builder.message_id(Some(root)),
            (_, Some(root)) => builder
                .message_id(Some(own_id))
                .in_reply_to(root.clone())
                .references(root),
            (_, None) => builder.message_id(Some(own_id)),
        };
        builder
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|e| {
                DeliveryError::permanent(format!("{}: cannot build the mail: {e}", self.who()))
            })
    }

    /// The mail of a digest: a table of its orders in the HTML part, its
    /// lines in the text part, a Message-ID of its own (its id: a retried
    /// digest is the same mail).
    fn digest_message(&self, digest: &Digest) -> Result<Message, DeliveryError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(shorten_subject(&format!("[orderwatch] {}", digest.title())))
            .header(AutoSubmitted)
            .header(OrderwatchEvent("digest"))
            .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")).to_owned())
            .message_id(Some(format!("<{}@orderwatch>", id_part(&digest.data.id))));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let text = digest.text_lines().join("\n") + "\n";
        builder
            .multipart(MultiPart::alternative_plain_html(text, digest_html(digest)))
            .map_err(|e| {
                DeliveryError::permanent(format!("{}: cannot build the mail: {e}", self.who()))
            })
    }

    /// Only an SMTP 5xx is final. A 4xx, and anything on the way
    /// (connection, TLS, timeout, a server that stopped offering STARTTLS),
    /// may pass later; a mail we cannot even form was refused before sending.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> DeliveryError {
        // The server's text may quote what it was sent, the password too.
        let reason = crate::secret::redact(&format!("{}: {e}", self.who()));
        if e.is_permanent() {
            DeliveryError::permanent(reason)
        } else {
            DeliveryError::retry(reason)
        }
    }

    fn who(&self) -> String {
        format!("email sink `{}` ({})", self.name, self.server)
    }
}

impl Deliver for EmailSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn deliver<'a>(
        &'a self,
        event: &'a Event,
        _: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move { Some(self.send(event).await) })
    }

    fn deliver_digest<'a>(
        &'a self,
        digest: &'a Digest,
        _: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move {
            Some(match self.digest_message(digest) {
                Ok(message) => self.send_message(message).await,
                Err(e) => Err(e),
            })
        })
    }
}

/// A digest's HTML part: the title and counts, then one table of every
/// order (part, source, order, what happened, last change) and the
/// sources' news. Every value is HTML-escaped.
fn digest_html(digest: &Digest) -> String {
    use std::fmt::Write;
    let e = |text: &str| minijinja::HtmlEscape(text).to_string();
    let mut html =
        String::from("<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n");
    let _ = writeln!(html, "<h2>{}</h2>", e(&digest.title()));
    let _ = writeln!(html, "<p>{}</p>", e(&digest.counts_text()));
    if !digest.data.orders.is_empty() {
        html.push_str("<table cellpadding=\"4\" style=\"border-collapse: collapse\">\n<thead><tr><th align=\"left\">Part</th><th align=\"left\">Source</th><th align=\"left\">Order</th><th align=\"left\">What happened</th><th align=\"left\">Last change</th></tr></thead>\n<tbody>\n");
        for part in [Part::Closed, Part::AtRisk, Part::Changed] {
            for line in digest.part(part) {
                let _ = writeln!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td><strong>{}</strong></td><td>{}</td><td>{}</td></tr>",
                    e(part.title()),
                    e(&line.source),
                    e(&line.order_id),
                    e(&line.summary()),
                    e(&line.last)
                );
            }
        }
        html.push_str("</tbody>\n</table>\n");
    }
    if !digest.data.sources.is_empty() {
        html.push_str("<h3>Sources</h3>\n<ul>\n");
        for s in &digest.data.sources {
            let _ = writeln!(
                html,
                "<li><strong>{}</strong> {}: {}</li>",
                e(&s.source),
                e(&s.kind),
                e(&s.text)
            );
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</body></html>\n");
    html
}

/// The id every mail about one order refers to.
/// The mail an event's mail answers: its order's first one (for
/// `order.created`, the very id it takes), or for `source.recovered` the
/// mail that said the source was failing. `None`: a mail of its own.
fn replies_to(event: &Event) -> Option<String> {
    if let Some(order_id) = event.order_id() {
        return Some(thread_root(&event.data.source, order_id));
    }
    match (event.kind, &event.data.since) {
        (EventType::SourceRecovered, Some(since)) => {
            let failing =
                Event::derive_source_id(&event.data.source, EventType::SourceFailing, since);
            Some(format!("<{}@orderwatch>", id_part(&failing)))
        }
        _ => None,
    }
}

pub fn thread_root(source: &str, order_id: &str) -> String {
    format!(
        "<order.{}.{}@orderwatch>",
        id_part(source),
        id_part(order_id)
    )
}

/// A subject of at most [`MAX_SUBJECT_CHARS`] characters.
fn shorten_subject(subject: &str) -> String {
    if subject.chars().count() <= MAX_SUBJECT_CHARS {
        return subject.to_owned();
    }
    let mut short: String = subject.chars().take(MAX_SUBJECT_CHARS - 3).collect();
    short.push_str("...");
    short
}

/// Text made safe for the left part of a Message-ID (RFC 5322 dot-atom
/// text, without dots so no two can meet): anything else becomes `=XX` per
/// byte, so distinct inputs stay distinct and nothing can close the `<…>` or
/// start a new header. Past [`MAX_ID_PART`] characters the start is kept
/// and the rest replaced by `~` and a 128-bit hash of the whole text.
fn id_part(text: &str) -> String {
    let full = escape_id(text);
    if full.len() <= MAX_ID_PART {
        return full;
    }
    let mut cut = MAX_ID_PART / 2;
    // Never split an `=XX` escape.
    while let Some(pos) = full[..cut].rfind('=').filter(|p| p + 3 > cut) {
        cut = pos;
    }
    let hash = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
    format!("{}~{hash:032x}", &full[..cut])
}

fn escape_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let plain = b.is_ascii_alphanumeric() || b"!#$%&'*+-/?^_`{|}~".contains(&b);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// A stream to the SMTP server whose reads fail past [`MAX_SERVER_BYTES`];
/// writes pass through. It also answers lettre's `peer_addr`.
#[derive(Debug)]
struct Bounded<T> {
    inner: T,
    peer: SocketAddr,
    left: u64,
}

/// The TCP connection, as lettre sees it for `none` and `starttls` (it
/// starts TLS on it itself).
type BoundedRead = Bounded<tokio::net::TcpStream>;

/// For `tls: tls`: TLS on top of the bounded TCP connection, made by
/// lettre's own TLS set-up (so the same verification applies) and handed
/// back to it as a plain stream, since lettre can only start TLS itself
/// after the banner.
type Encrypted = Bounded<tokio_util::compat::Compat<LettreStream>>;

#[allow(deprecated)]
type LettreStream = lettre::transport::smtp::client::AsyncNetworkStream;

impl<T> Bounded<T> {
    fn new(inner: T, peer: SocketAddr) -> Self {
        Bounded {
            inner,
            peer,
            left: MAX_SERVER_BYTES,
        }
    }
}

impl Encrypted {
    async fn connect(
        bounded: BoundedRead,
        params: TlsParameters,
        peer: SocketAddr,
    ) -> Result<Self, lettre::transport::smtp::Error> {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        #[allow(deprecated)]
        let mut stream = LettreStream::use_existing_tokio1(Box::new(bounded));
        stream.upgrade_tls(params).await?;
        Ok(Bounded::new(stream.compat(), peer))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Bounded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "the server sent more than {} KiB during one mail's exchange",
                MAX_SERVER_BYTES / 1024
            ))));
        }
        let max = usize::try_from(this.left)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(max));
        let polled = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.advance(n);
        this.left -= n as u64;
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Bounded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T> AsyncTokioStream for Bounded<T>
where
    T: AsyncRead + AsyncWrite + Send + Sync + Unpin + std::fmt::Debug,
{
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders and
/// other robots must not answer these mails.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// `X-Orderwatch-Event: order.status_changed`, for mail filters.
#[derive(Clone)]
struct OrderwatchEvent(&'static str);

impl Header for OrderwatchEvent {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Orderwatch-Event")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let kind: EventType = s.trim().parse()?;
        Ok(OrderwatchEvent(kind.as_str()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_parts_cannot_break_out_of_a_message_id() {
        assert_eq!(id_part("123456"), "123456");
        assert_eq!(id_part("a b<c>@d.\r\n"), "a=20b=3Cc=3E=40d=2E=0D=0A");
        assert_eq!(
            thread_root("tracking", "42"),
            "<order.tracking.42@orderwatch>"
        );
        // `=` itself is escaped, so the encoding stays one-to-one.
        assert_ne!(id_part("="), id_part("=3D"));
    }

    #[test]
    fn long_ids_and_subjects_are_shortened_and_stay_distinct() {
        let long = "9".repeat(5000);
        let other = format!("{}8", "9".repeat(4999));
        let part = id_part(&long);
        assert!(part.len() <= MAX_ID_PART, "{part}");
        assert_ne!(part, id_part(&other));
        // An escape is never cut in half.
        let escaped = id_part(&"é".repeat(100));
        let kept = escaped.split('~').next().unwrap();
        assert_eq!(kept.len() % 3, 0, "{escaped}");
        let subject = shorten_subject(&"x".repeat(5000));
        assert_eq!(subject.chars().count(), MAX_SUBJECT_CHARS);
        assert!(subject.ends_with("..."));
        assert_eq!(shorten_subject("short"), "short");
    }
}
