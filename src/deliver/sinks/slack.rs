//! The slack sink: one incoming-webhook POST per event, in the shape Slack,
//! Mattermost, Rocket.Chat and Discord's `/slack` endpoint all accept.
//!
//! The webhook URL is the credential, so it is held as a [`Secret`] and only
//! its scheme and host ([`redact_url`]) ever reach a log line or an error.
//! Slack allows about one message per second per webhook: each sink keeps
//! its own gate so a burst of events is spaced out instead of rejected.

use super::{Deliver, SinkSettings, SinkType, own_template};
use crate::config::{Decoder, Fields, MILLI, opt};
use crate::deliver::gate::Gate;
use crate::deliver::template::{Role, Templates, default_name, mrkdwn_escape};
use crate::deliver::{DeliveryError, answer};
use crate::digest::{Digest, Part};
use crate::event::{Event, EventType};
use crate::secret::{Secret, redact_url};
use crate::shutdown::Shutdown;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::Duration;

/// Slack's documented rate for incoming webhooks.
const MIN_SPACING: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Enough of a receiver's answer to explain a failure, never a whole page.
/// Slack's answers that mean the webhook itself is gone or points nowhere.
const DEAD_WEBHOOK: [&str; 3] = ["no_service", "channel_not_found", "channel_is_archived"];

pub(crate) const TYPE: SinkType = SinkType {
    name: "slack",
    keys: &["url", "template", "timeout"],
    defaults,
    decode,
};

/// A slack section, parsed.
#[derive(Clone)]
pub struct SlackSettings {
    /// The whole URL is the credential: kept as a secret, shown as `host`.
    url: Secret,
    /// `scheme://host[:port]`.
    host: String,
    /// The URL's path, to scrub from a receiver's answer that echoes it.
    path: String,
    template: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSettings")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

fn decode(d: &mut Decoder, f: &Fields) -> Option<Arc<dyn SinkSettings>> {
    // Checked as a URL, kept as a secret: the path is the credential.
    let url = d.required(f, "url").and_then(|n| d.url(n, &f.path("url")));
    let template = opt!(d, f, "template", None, |n, p| d
        .template(n, &p, Role::Slack)
        .map(Some));
    let timeout = opt!(d, f, "timeout", Duration::from_secs(15), |n, p| d
        .duration(n, &p, MILLI));
    let url = url?;
    Some(Arc::new(SlackSettings {
        host: redact_url(&url),
        path: url.path().to_owned(),
        url: Secret::new(url.to_string()),
        template: template?,
        timeout: timeout?,
    }))
}

impl SinkSettings for SlackSettings {
    fn templates(&self) -> Vec<(Role, &'static str, &str)> {
        own_template(Role::Slack, "template", &self.template)
    }

    fn build(&self, name: &str, templates: Arc<Templates>) -> Result<Box<dyn Deliver>, String> {
        SlackSink::new(name, self, templates).map(|s| Box::new(s) as Box<dyn Deliver>)
    }
}

/// Renders the changes as mrkdwn bullet lines.
const SLACK_CHANGES: &str =
    "{% for c in changes %}\n• `{{ c.path }}`: {{ c.from|show }} → {{ c.to|show }}{% endfor %}";

/// The built-in message of each event type.
fn defaults() -> Vec<(String, String)> {
    use EventType::*;
    let status = format!(
        "{{% if closed %}}:white_check_mark:{{% else %}}:arrows_counterclockwise:{{% endif %}} \
         Order *{{{{ order_id }}}}* ({{{{ source }}}}) is now *{{{{ to }}}}* (was {{{{ from }}}})\
         {{% if changes|length > 1 %}}{SLACK_CHANGES}{{% endif %}}"
    );
    let updated = format!(
        "{}{SLACK_CHANGES}",
        ":pencil2: Order *{{ order_id }}* ({{ source }}) was updated"
    );
    vec![
        (
            default_name(Role::Slack, Created),
            ":new: Order *{{ order_id }}* ({{ source }}) is new{% if to %}, status *{{ to }}*{% endif %}".into(),
        ),
        (default_name(Role::Slack, StatusChanged), status),
        (default_name(Role::Slack, Updated), updated),
        (
            default_name(Role::Slack, Removed),
            ":wastebasket: Order *{{ order_id }}* ({{ source }}) is no longer listed by the API".into(),
        ),
        (
            default_name(Role::Slack, DueSoon),
            ":hourglass_flowing_sand: Order *{{ order_id }}* ({{ source }}) is due on *{{ due }}* and still *{{ to }}*".into(),
        ),
        (
            default_name(Role::Slack, Overdue),
            ":alarm_clock: Order *{{ order_id }}* ({{ source }}) is overdue: due *{{ due }}*, still *{{ to }}*".into(),
        ),
        (
            default_name(Role::Slack, Stalled),
            ":snail: Order *{{ order_id }}* ({{ source }}) has been *{{ to }}* since {{ since }}".into(),
        ),
        (
            default_name(Role::Slack, SourceFailing),
            ":rotating_light: Source *{{ source }}* is failing since {{ since }} ({{ failures }} failed cycles): {{ error }}".into(),
        ),
        (
            default_name(Role::Slack, SourceRecovered),
            ":large_green_circle: Source *{{ source }}* has recovered: polls work again (failing since {{ since }}, {{ failures }} failed cycles)".into(),
        ),
        (
            default_name(Role::Slack, CredentialsExpiring),
            ":key: The API key of source *{{ source }}* expires on *{{ expires }}*: ask Orange for a new one, then update `api_key` and `api_key_expires`".into(),
        ),
    ]
}

pub struct SlackSink {
    name: String,
    url: Secret,
    /// `scheme://host[:port]`: all that logs and errors show of the URL.
    host: String,
    /// The URL's path, to scrub from a receiver's answer that echoes it.
    path: String,
    client: reqwest::Client,
    templates: Arc<Templates>,
    /// Held across a send, so concurrent deliveries to one webhook queue up
    /// behind each other.
    gate: Gate,
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
    pub fn new(name: &str, cfg: &SlackSettings, templates: Arc<Templates>) -> Result<Self, String> {
        let host = cfg.host.clone();
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
            path: cfg.path.clone(),
            client,
            templates,
            gate: Gate::new(MIN_SPACING),
        })
    }

    /// Post the event's message, at least a second after the previous one,
    /// unless `shutdown` fires while the message waits for its turn: then it
    /// is not sent at all (`None`).
    async fn send(&self, event: &Event, shutdown: &Shutdown) -> Option<Result<(), DeliveryError>> {
        let body = match self.payload(event) {
            Ok(body) => body,
            Err(e) => return Some(Err(e)),
        };
        self.gate.paced(shutdown, self.post(body)).await
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
            .map_err(|e| {
                DeliveryError::retry(format!("{}: {}", self.who(), answer::transport_error(e)))
            })?;
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
        if answer::worth_retrying(status) {
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

impl Deliver for SlackSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn deliver<'a>(
        &'a self,
        event: &'a Event,
        _: &'a str,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(self.send(event, shutdown))
    }

    fn deliver_digest<'a>(
        &'a self,
        digest: &'a Digest,
        _: &'a str,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let body = match self.digest_payload(digest) {
                Ok(body) => body,
                Err(e) => return Some(Err(e)),
            };
            self.gate.paced(shutdown, self.post(body)).await
        })
    }
}

/// Slack takes at most 50 blocks and 3,000 characters of text in one.
const MAX_BLOCKS: usize = 50;
const MAX_SECTION: usize = 2900;

/// A digest in mrkdwn: a header, the counts, then a section per part with
/// a line per order (user data escaped); sections longer than a block
/// holds are split, and past the last block the rest is counted.
fn digest_blocks(digest: &Digest) -> (String, Vec<serde_json::Value>) {
    use serde_json::json;
    let e = mrkdwn_escape;
    let title = digest.title();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": super::chat::cut(&title, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": e(&digest.counts_text())}}),
    ];
    let mut lines: Vec<String> = Vec::new();
    for part in [Part::Closed, Part::AtRisk, Part::Changed] {
        let mut first = true;
        for line in digest.part(part) {
            if first {
                lines.push(format!("*{}*", part.title()));
                first = false;
            }
            lines.push(format!(
                "• `{}/{}` {}",
                e(&line.source).replace('`', "'"),
                e(&line.order_id).replace('`', "'"),
                e(&line.summary())
            ));
        }
    }
    if !digest.data.sources.is_empty() {
        lines.push("*Sources*".to_owned());
        for s in &digest.data.sources {
            lines.push(format!("• {} {}: {}", e(&s.source), e(&s.kind), e(&s.text)));
        }
    }
    let mut section = String::new();
    let mut left = lines.len();
    for line in &lines {
        if section.len() + line.len() + 1 > MAX_SECTION && !section.is_empty() {
            if blocks.len() + 2 >= MAX_BLOCKS {
                break;
            }
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": section}}));
            section = String::new();
        }
        if !section.is_empty() {
            section.push('\n');
        }
        section.push_str(&super::chat::cut(line, MAX_SECTION));
        left -= 1;
    }
    if left > 0 {
        section.push_str(&format!("\n… and {left} more lines"));
    }
    if !section.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": section}}));
    }
    (e(&title), blocks)
}

impl SlackSink {
    fn digest_payload(&self, digest: &Digest) -> Result<Vec<u8>, DeliveryError> {
        let (text, blocks) = digest_blocks(digest);
        let payload = serde_json::json!({ "text": text, "blocks": blocks });
        serde_json::to_vec(&payload).map_err(|e| {
            DeliveryError::permanent(format!("{}: cannot encode the payload: {e}", self.who()))
        })
    }
}
