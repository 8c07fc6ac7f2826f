//! The email sink: one multipart (text and HTML) mail per event over SMTP,
//! through lettre on tokio with rustls.
//!
//! Each mail uses its own connection, deliberately not lettre's pool:
//! lettre's async client bounds only the connect with its timeout, so the
//! whole exchange runs under our own deadline, and cancelling a pooled
//! connection mid-command would park it, out of step, for the next mail.
//! Notification mail is rare enough that a connection per mail costs nothing.
//!
//! Mails of one order thread together in mail clients: every mail refers to
//! a per-order root id `<order.{source}.{order_id}@orderwatch>`, and the mail
//! of `order.created` carries that root as its own `Message-ID`, so when the
//! creation was mailed the thread has a real first message. The SMTP password
//! lives in a [`Secret`](crate::secret::Secret) until lettre takes it, and no
//! error or log shows it.

use super::DeliveryError;
use super::template::Templates;
use crate::config::{EmailConfig, SmtpTls};
use crate::event::{Event, EventType};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Arc;

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

pub struct EmailSink {
    name: String,
    /// `smtp://host:port`: what logs and errors show of the server.
    server: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
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
    pub fn new(name: &str, cfg: &EmailConfig, templates: Arc<Templates>) -> Result<Self, String> {
        let smtp = &cfg.smtp;
        let server = format!("smtp://{}:{}", smtp.host, smtp.port);
        let who = format!("email sink `{name}` ({server})");
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| format!("{who}: `from` is not a usable address: {e}"))?;
        let to = cfg
            .to
            .iter()
            .map(|a| a.parse::<Mailbox>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{who}: a `to` address is not usable: {e}"))?;
        let builder = match (smtp.tls, &smtp.ca_file) {
            // The config refuses credentials with `none`, so nothing secret
            // ever crosses an unencrypted connection.
            (SmtpTls::None, _) => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            }
            (SmtpTls::Starttls, None) => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                    .map_err(|e| format!("{who}: cannot set up STARTTLS: {e}"))?
            }
            (SmtpTls::Tls, None) => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .map_err(|e| format!("{who}: cannot set up TLS: {e}"))?,
            (mode, Some(ca_file)) => {
                let params = tls_with_ca(&smtp.host, ca_file).map_err(|e| format!("{who}: {e}"))?;
                let tls = if mode == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                };
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host).tls(tls)
            }
        };
        let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(EmailSink {
            name: name.to_owned(),
            server,
            from,
            to,
            transport: builder.build(),
            timeout: smtp.timeout,
            templates,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn deliver(&self, event: &Event) -> Result<(), DeliveryError> {
        let message = self.message(event)?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.classify(&e)),
            // Possibly after the server took the mail: a retry may duplicate
            // it (same Message-ID), which beats losing it.
            Err(_) => Err(DeliveryError::retry(format!(
                "{}: no answer within {}",
                self.who(),
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    /// The mail for one event, headers and both parts.
    fn message(&self, event: &Event) -> Result<Message, DeliveryError> {
        let mail = self
            .templates
            .render_email(&self.name, event)
            .map_err(DeliveryError::permanent)?;
        let root = thread_root(&event.data.source, &event.data.order_id);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject)
            .header(AutoSubmitted)
            .header(OrderwatchEvent(event.kind.as_str()))
            .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")).to_owned());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder = if event.kind == EventType::Created {
            builder.message_id(Some(root))
        } else {
            builder
                .message_id(Some(format!("<{}@orderwatch>", id_part(&event.data.id))))
                .in_reply_to(root.clone())
                .references(root)
        };
        builder
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
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

/// The id every mail about one order refers to.
pub fn thread_root(source: &str, order_id: &str) -> String {
    format!(
        "<order.{}.{}@orderwatch>",
        id_part(source),
        id_part(order_id)
    )
}

/// Text made safe for the left part of a Message-ID (RFC 5322 dot-atom
/// text, without dots so no two can meet): anything else becomes `=XX` per
/// byte, so distinct inputs stay distinct and nothing can close the `<…>` or
/// start a new header.
fn id_part(text: &str) -> String {
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
}
