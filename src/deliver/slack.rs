//! The slack sink: one incoming-webhook POST per event, in the shape Slack,
//! Mattermost, Rocket.Chat and Discord's `/slack` endpoint all accept.
//!
//! The webhook URL is the credential, so it is held as a [`Secret`] and only
//! its scheme and host ([`redact_url`]) ever reach a log line or an error.
//! Slack allows about one message per second per webhook: each sink keeps
//! its own gate so a burst of events is spaced out instead of rejected.

use super::DeliveryError;
use super::answer;
use super::template::Templates;
use crate::config::SlackConfig;
use crate::event::Event;
use crate::secret::{Secret, redact_url};
use crate::shutdown::Shutdown;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Slack's documented rate for incoming webhooks.
const MIN_SPACING: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Enough of a receiver's answer to explain a failure, never a whole page.
/// Slack's answers that mean the webhook itself is gone or points nowhere.
const DEAD_WEBHOOK: [&str; 3] = ["no_service", "channel_not_found", "channel_is_archived"];

pub struct SlackSink {
    name: String,
    url: Secret,
    /// `scheme://host[:port]`: all that logs and errors show of the URL.
    host: String,
    /// The URL's path, to scrub from a receiver's answer that echoes it.
    path: String,
    client: reqwest::Client,
    templates: Arc<Templates>,
    /// When the last message to this webhook finished; held across a send so
    /// concurrent deliveries to one webhook queue up behind each other.
    last_send: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for SlackSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSink")
            .field("name", &self.name)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl SlackSink {
    pub fn new(name: &str, cfg: &SlackConfig, templates: Arc<Templates>) -> Result<Self, String> {
        // Never echo the parse error's input: it would be the credential.
        let url = url::Url::parse(cfg.url.expose())
            .map_err(|_| format!("slack sink `{name}`: the url is not a valid URL"))?;
        let host = redact_url(&url);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(cfg.timeout))
            .timeout(cfg.timeout)
            .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                format!("slack sink `{name}` ({host}): cannot build an HTTP client: {e}")
            })?;
        Ok(SlackSink {
            name: name.to_owned(),
            url: cfg.url.clone(),
            host,
            path: url.path().to_owned(),
            client,
            templates,
            last_send: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Post the event's message, at least a second after the previous one.
    pub async fn deliver(&self, event: &Event) -> Result<(), DeliveryError> {
        match self.deliver_unless_stopped(event, &Shutdown::never()).await {
            Some(outcome) => outcome,
            None => Err(DeliveryError::retry(format!(
                "{}: not sent: orderwatch is stopping",
                self.who()
            ))),
        }
    }

    /// [`Self::deliver`], unless `shutdown` fires while the message waits for
    /// its turn: then it is not sent at all (`None`).
    pub async fn deliver_unless_stopped(
        &self,
        event: &Event,
        shutdown: &Shutdown,
    ) -> Option<Result<(), DeliveryError>> {
        let body = match self.payload(event) {
            Ok(body) => body,
            Err(e) => return Some(Err(e)),
        };
        let mut last = tokio::select! {
            biased;
            _ = shutdown.stopped() => return None,
            last = self.last_send.lock() => last,
        };
        if let Some(previous) = *last {
            tokio::select! {
                biased;
                _ = shutdown.stopped() => return None,
                _ = tokio::time::sleep_until(previous + MIN_SPACING) => {}
            }
        }
        let outcome = self.post(body).await;
        // Counted from the end of the exchange, so the receiver too sees the
        // messages at least a second apart, whatever the latency.
        *last = Some(Instant::now());
        Some(outcome)
    }

    fn payload(&self, event: &Event) -> Result<Vec<u8>, DeliveryError> {
        let text = self
            .templates
            .render_slack(&self.name, event)
            .map_err(DeliveryError::permanent)?;
        // `text` is the fallback for notifications and clients without blocks.
        let payload = serde_json::json!({
            "text": text,
            "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": text } }],
        });
        serde_json::to_vec(&payload).map_err(|e| {
            DeliveryError::permanent(format!("{}: cannot encode the payload: {e}", self.who()))
        })
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), DeliveryError> {
        let response = self
            .client
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::retry(format!("{}: {}", self.who(), describe(e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = answer::retry_after(response.headers());
        let answer = self.scrub(&answer::excerpt(response).await);
        self.classify(status, retry_after, &answer)
    }

    fn classify(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        answer: &str,
    ) -> Result<(), DeliveryError> {
        let who = self.who();
        let said = if answer.is_empty() {
            String::new()
        } else {
            format!(": {answer}")
        };
        let code = status.as_u16();
        if code == 429 {
            return Err(DeliveryError::Retry {
                reason: format!("{who}: rate limited (HTTP 429){said}"),
                retry_after,
            });
        }
        if code == 408 || status.is_server_error() {
            return Err(DeliveryError::Retry {
                reason: format!("{who}: HTTP {code}{said}"),
                retry_after,
            });
        }
        if code == 400 && answer.contains("invalid_payload") {
            return Err(DeliveryError::permanent(format!(
                "{who}: Slack refused the payload as invalid: this is a bug in orderwatch, please report it (HTTP 400{said})"
            )));
        }
        if (code == 404 || code == 410)
            && let Some(reason) = DEAD_WEBHOOK.iter().find(|r| answer.contains(**r))
        {
            // Every later event to this sink will fail the same way: say so loudly.
            tracing::error!(
                sink = %self.name,
                receiver = %self.host,
                reason,
                "the chat webhook no longer works ({reason}): events for this sink go to the dead letters until its URL is fixed"
            );
            return Err(DeliveryError::permanent(format!(
                "{who}: the webhook no longer works: {reason} (HTTP {code})"
            )));
        }
        if status.is_redirection() {
            return Err(DeliveryError::permanent(format!(
                "{who}: HTTP {code}: redirects are not followed; configure the final URL"
            )));
        }
        Err(DeliveryError::permanent(format!(
            "{who}: HTTP {code}{said}"
        )))
    }

    fn who(&self) -> String {
        format!("slack sink `{}` ({})", self.name, self.host)
    }

    /// A receiver's answer as one clean line, without the URL's path should
    /// it echo the request ("Cannot POST /services/...").
    fn scrub(&self, answer: &str) -> String {
        let mut text = answer.to_owned();
        if self.path.len() > 1 {
            text = text.replace(&self.path, "[redacted]");
        }
        text.trim().to_owned()
    }
}

/// A transport error without the URL reqwest would put in its message.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
