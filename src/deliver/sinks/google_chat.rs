//! The google-chat sink: a Google Chat space's incoming webhook, one
//! message per event: a text line from the `template` and a `cardsV2` card
//! (a header, the facts, the changed fields old → new).
//!
//! With `thread_per_order` (the default) every message of one order carries
//! `thread.threadKey` `<source>/<order_id>`, and the URL gets
//! `messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`, so an order's
//! story is one thread, as the email sink threads it by `References`.
//!
//! The URL's `key` and `token` query parameters are credentials: the URL is
//! held as a [`Secret`] (and both values on their own), only its scheme and
//! host reach a log line or an error. Google Chat allows one message per
//! second per space: the sink's gate spaces a burst out; a 429 waits for
//! `Retry-After`.

use super::chat::{ChatHook, cut, shown, source_facts, status};
use super::{Deliver, SinkSettings, SinkType, own_template};
use crate::config::{Decoder, Fields, MILLI, opt};
use crate::deliver::DeliveryError;
use crate::deliver::gate::Gate;
use crate::deliver::template::{Escape, Role, Templates, default_name, mrkdwn_escape};
use crate::digest::Digest;
use crate::event::{Event, EventType};
use crate::secret::{Secret, redact_url};
use crate::shutdown::Shutdown;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const TYPE: SinkType = SinkType {
    name: "google-chat",
    keys: &["url", "template", "thread_per_order", "timeout"],
    defaults,
    decode,
};

/// The message text. `<...>` makes a link or a mention (`<users/all>`) in
/// Chat's text and a tag in a card's, so values escape `&`, `<` and `>`.
const TEXT: Role = Role::new("google-chat", Escape::Mrkdwn);

/// Google Chat's documented rate for a space's webhook.
const MIN_SPACING: Duration = Duration::from_secs(1);
/// What makes a reply go to the thread of its key, or start it.
const REPLY_OPTION: (&str, &str) = ("messageReplyOption", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD");
/// Google Chat's text limit is 4,096 characters; bytes are counted here.
const MAX_TEXT: usize = 4000;
/// The longest one card value may be, in bytes.
const MAX_VALUE: usize = 500;
/// The longest thread key sent, in bytes (Google Chat takes up to 4,000
/// characters).
const MAX_THREAD_KEY: usize = 1000;
/// Changed fields listed at most (a card takes 100 widgets); the rest are
/// counted.
const MAX_CHANGES: usize = 40;

/// A google-chat section, parsed.
#[derive(Debug, Clone)]
pub struct GoogleChatSettings {
    /// The URL to post to, `messageReplyOption` added when threading.
    url: Secret,
    /// `scheme://host[:port]`.
    host: String,
    template: Option<String>,
    thread_per_order: bool,
    timeout: Duration,
}

fn decode(d: &mut Decoder, f: &Fields) -> Option<Arc<dyn SinkSettings>> {
    let url = d.required(f, "url").and_then(|n| d.url(n, &f.path("url")));
    let template = opt!(d, f, "template", None, |n, p| d
        .template(n, &p, TEXT)
        .map(Some));
    let thread_per_order = opt!(d, f, "thread_per_order", true, |n, p| d.choice(
        n,
        &p,
        &[("true", true), ("false", false)]
    ));
    let timeout = opt!(d, f, "timeout", Duration::from_secs(15), |n, p| d
        .duration(n, &p, MILLI));
    let mut url = url?;
    let thread_per_order = thread_per_order?;
    // Each credential on its own too, so an answer quoting just one of them
    // (decoded or not) is still redacted.
    for (name, value) in url.query_pairs() {
        if name == "key" || name == "token" {
            let _ = Secret::new(value.into_owned());
        }
    }
    if thread_per_order {
        with_reply_option(&mut url);
    }
    Some(Arc::new(GoogleChatSettings {
        host: redact_url(&url),
        url: Secret::new(url.to_string()),
        template: template?,
        thread_per_order,
        timeout: timeout?,
    }))
}

/// The user's query as it was (`key`, `token`, anything else), with
/// `messageReplyOption` set to reply in the thread.
fn with_reply_option(url: &mut url::Url) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != REPLY_OPTION.0)
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(REPLY_OPTION.0, REPLY_OPTION.1);
}

impl SinkSettings for GoogleChatSettings {
    fn templates(&self) -> Vec<(Role, &'static str, &str)> {
        own_template(TEXT, "template", &self.template)
    }

    fn build(&self, name: &str, templates: Arc<Templates>) -> Result<Box<dyn Deliver>, String> {
        Ok(Box::new(GoogleChatSink {
            name: name.to_owned(),
            hook: ChatHook::new("google-chat", name, &self.url, &self.host, self.timeout)?,
            thread_per_order: self.thread_per_order,
            templates,
            gate: Gate::new(MIN_SPACING),
        }))
    }
}

/// Renders the changes as bullet lines.
const CHANGES: &str =
    "{% for c in changes %}\n• `{{ c.path }}`: {{ c.from|show }} → {{ c.to|show }}{% endfor %}";

/// The built-in text of each event type (Chat's own `*bold*`).
fn defaults() -> Vec<(String, String)> {
    use EventType::*;
    let status = format!(
        "{{% if closed %}}✅{{% else %}}🔄{{% endif %}} Order *{{{{ order_id }}}}* ({{{{ source }}}}) is now *{{{{ to }}}}* (was {{{{ from }}}})\
         {{% if changes|length > 1 %}}{CHANGES}{{% endif %}}"
    );
    let updated = format!("✏️ Order *{{{{ order_id }}}}* ({{{{ source }}}}) was updated{CHANGES}");
    vec![
        (
            default_name(TEXT, Created),
            "🆕 Order *{{ order_id }}* ({{ source }}) is new{% if to %}, status *{{ to }}*{% endif %}"
                .into(),
        ),
        (default_name(TEXT, StatusChanged), status),
        (default_name(TEXT, Updated), updated),
        (
            default_name(TEXT, Removed),
            "🗑️ Order *{{ order_id }}* ({{ source }}) is no longer listed by the API".into(),
        ),
        (
            default_name(TEXT, DueSoon),
            "⏳ Order *{{ order_id }}* ({{ source }}) is due on *{{ due }}* and still *{{ to }}*".into(),
        ),
        (
            default_name(TEXT, Overdue),
            "⏰ Order *{{ order_id }}* ({{ source }}) is overdue: due *{{ due }}*, still *{{ to }}*".into(),
        ),
        (
            default_name(TEXT, Stalled),
            "🐌 Order *{{ order_id }}* ({{ source }}) has been *{{ to }}* since {{ since }}".into(),
        ),
        (
            default_name(TEXT, SourceFailing),
            "🚨 Source *{{ source }}* is failing since {{ since }} ({{ failures }} failed cycles): {{ error }}".into(),
        ),
        (
            default_name(TEXT, SourceRecovered),
            "🟢 Source *{{ source }}* has recovered: polls work again (failing since {{ since }}, {{ failures }} failed cycles)".into(),
        ),
        (
            default_name(TEXT, CredentialsExpiring),
            "🔑 The API key of source *{{ source }}* expires on *{{ expires }}*: ask Orange for a new one, then update `api_key` and `api_key_expires`".into(),
        ),
    ]
}

#[derive(Debug)]
pub struct GoogleChatSink {
    name: String,
    hook: ChatHook,
    thread_per_order: bool,
    templates: Arc<Templates>,
    /// Held across a send, so concurrent deliveries to one space queue up.
    gate: Gate,
}

impl GoogleChatSink {
    async fn send(&self, event: &Event, shutdown: &Shutdown) -> Option<Result<(), DeliveryError>> {
        let message = match self.message(event) {
            Ok(message) => message,
            Err(e) => return Some(Err(e)),
        };
        self.gate.paced(shutdown, self.hook.post(&message)).await
    }

    fn message(&self, event: &Event) -> Result<Value, DeliveryError> {
        let text = self
            .templates
            .render(&self.name, TEXT, event)
            .map_err(DeliveryError::permanent)?;
        let about = match event.order_id() {
            Some(_) => order_card(event),
            None => source_card(event),
        };
        let mut message = json!({
            "text": cut(&text, MAX_TEXT),
            "cardsV2": [{
                "cardId": format!("orderwatch-{}", event.data.id),
                "card": about.card,
            }],
        });
        if self.thread_per_order {
            message["thread"] = json!({ "threadKey": about.thread_key });
        }
        Ok(message)
    }
}

impl Deliver for GoogleChatSink {
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

    /// A digest is one text message, in no order's thread: its lines as
    /// console shows them, cut to what one message holds.
    fn deliver_digest<'a>(
        &'a self,
        digest: &'a Digest,
        _: &'a str,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        let message = json!({ "text": cut(&digest.text_lines().join("\n"), MAX_TEXT) });
        Box::pin(async move { self.gate.paced(shutdown, self.hook.post(&message)).await })
    }
}

/// What a message says about one order: its card and its thread.
struct About {
    card: Value,
    thread_key: String,
}

/// The card and the thread key of an order's event. Events about
/// something else than an order get their own function.
fn order_card(event: &Event) -> About {
    let d = &event.data;
    let line = |label: &str, text: &str| json!({ "decoratedText": { "topLabel": label, "text": value(text), "wrapText": true } });
    let status = status(event);
    let mut facts = vec![line("Source", &d.source)];
    if !status.is_empty() {
        facts.push(line("Status", &status));
    }
    facts.push(line("Revision", &d.revision.to_string()));
    facts.push(line("Detected", &event.timestamp));
    let mut sections = vec![json!({ "widgets": facts })];
    if !d.changes.is_empty() {
        let mut widgets: Vec<Value> = d
            .changes
            .iter()
            .take(MAX_CHANGES)
            .map(|c| line(&c.path, &format!("{} → {}", shown(&c.from), shown(&c.to))))
            .collect();
        if d.changes.len() > MAX_CHANGES {
            let left = d.changes.len() - MAX_CHANGES;
            widgets.push(json!({ "decoratedText": { "text": format!("… and {left} more") } }));
        }
        sections.push(json!({ "header": "Changes", "widgets": widgets }));
    }
    let card = json!({
        "header": {
            "title": value(&format!("Order {}", d.order_id)),
            "subtitle": value(&format!("{} · {}", d.source, event.kind.as_str())),
        },
        "sections": sections,
    });
    About {
        card,
        thread_key: thread_key(&d.source, &d.order_id),
    }
}

/// The card of an event about a source itself (`source.*`), in the
/// source's own thread: `<source>/`, the key of an order without an id
/// (an order always has one).
fn source_card(event: &Event) -> About {
    let d = &event.data;
    let line = |label: &str, text: &str| json!({ "decoratedText": { "topLabel": label, "text": value(text), "wrapText": true } });
    let mut facts: Vec<Value> = source_facts(event)
        .iter()
        .map(|(label, text)| line(label, text))
        .collect();
    facts.push(line("Detected", &event.timestamp));
    let card = json!({
        "header": {
            "title": value(&format!("Source {}", d.source)),
            "subtitle": value(event.kind.as_str()),
        },
        "sections": [{ "widgets": facts }],
    });
    About {
        card,
        thread_key: thread_key(&d.source, ""),
    }
}

/// `<source>/<order_id>`; past [`MAX_THREAD_KEY`] bytes its start, `~` and
/// a 128-bit hash of the whole, so two long ids still get two threads.
fn thread_key(source: &str, order_id: &str) -> String {
    let key = format!("{source}/{order_id}");
    if key.len() <= MAX_THREAD_KEY {
        return key;
    }
    let hash = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
    let mut end = MAX_THREAD_KEY - 33;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}~{hash:032x}", &key[..end])
}

/// A card value: cut to [`MAX_VALUE`], and escaped, since card text is
/// read as HTML.
fn value(text: &str) -> String {
    mrkdwn_escape(&cut(text, MAX_VALUE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_order_id_gets_a_bounded_thread_key_of_its_own() {
        let long = "é".repeat(2000);
        let a = thread_key("tracking", &format!("{long}a"));
        let b = thread_key("tracking", &format!("{long}b"));
        assert!(a.len() <= MAX_THREAD_KEY, "{}", a.len());
        assert!(a.starts_with("tracking/é"));
        assert_ne!(a, b);
        assert_eq!(thread_key("tracking", "123456"), "tracking/123456");
    }

    #[test]
    fn the_reply_option_is_added_and_the_credentials_kept() {
        let mut url =
            url::Url::parse("https://chat.googleapis.com/v1/spaces/S/messages?key=K%2B1&token=T%3D&messageReplyOption=X")
                .unwrap();
        with_reply_option(&mut url);
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("key".into(), "K+1".into()),
                ("token".into(), "T=".into()),
                (
                    "messageReplyOption".into(),
                    "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD".into()
                ),
            ]
        );
    }
}
