//! The teams sink: Microsoft Teams through a Workflows webhook ("When a
//! Teams webhook request is received"), one Adaptive Card per event in the
//! `message` envelope Workflows accept.
//!
//! The card: a title line, the text, a FactSet of what the event is about
//! (source, order, status, revision, detected), the changed fields old →
//! new, and an "Open" button when the `link` template renders a URL. Teams
//! refuses a message over 28 KB, so the whole body is kept under
//! [`MAX_BODY`]: long values are cut on a character boundary and a long
//! change list ends with "… and N more".
//!
//! The URL is the credential (its `sig` signs the request), so it is held as
//! a [`Secret`] and only its scheme and host ever reach a log line or an
//! error. Answers are read as the webhook sink reads them: Workflows answer
//! 202 Accepted, which is a delivery.

use super::chat::{ChatHook, cut, shown, source_facts, status};
use super::{Deliver, SinkSettings, SinkType, own_template};
use crate::config::{Decoder, Fields, MILLI, opt};
use crate::deliver::DeliveryError;
use crate::deliver::template::{Escape, Role, Templates, default_name};
use crate::digest::{Digest, Part};
use crate::event::{Event, EventType};
use crate::secret::{Secret, redact_url};
use crate::shutdown::Shutdown;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const TYPE: SinkType = SinkType {
    name: "teams",
    keys: &["url", "title", "text", "link", "timeout"],
    defaults,
    decode,
};

/// The card's title line.
const TITLE: Role = Role::new("teams.title", Escape::Plain);
/// The text under it.
const TEXT: Role = Role::new("teams.text", Escape::Plain);
/// The URL the card's button opens; none when it renders empty.
const LINK: Role = Role::new("teams.link", Escape::Plain);

/// Teams refuses a message over 28 KB; this leaves room for the envelope's
/// transport overhead.
pub(crate) const MAX_BODY: usize = 27 * 1024;
/// The longest one value (a changed field, a fact) may be, in bytes.
const MAX_VALUE: usize = 1024;
/// The longest the title and the text may be, in bytes.
const MAX_TEXT: usize = 4096;
/// A longer `link` is left out rather than cut.
const MAX_LINK: usize = 2048;
/// Changed fields listed at most; the rest are counted.
const MAX_CHANGES: usize = 100;

/// A teams section, parsed.
#[derive(Debug, Clone)]
pub struct TeamsSettings {
    /// The whole URL is the credential: kept as a secret, shown as `host`.
    url: Secret,
    /// `scheme://host[:port]`.
    host: String,
    title: Option<String>,
    text: Option<String>,
    link: Option<String>,
    timeout: Duration,
}

fn decode(d: &mut Decoder, f: &Fields) -> Option<Arc<dyn SinkSettings>> {
    let url = d.required(f, "url").and_then(|n| d.url(n, &f.path("url")));
    let title = opt!(d, f, "title", None, |n, p| d
        .template(n, &p, TITLE)
        .map(Some));
    let text = opt!(d, f, "text", None, |n, p| d.template(n, &p, TEXT).map(Some));
    let link = opt!(d, f, "link", None, |n, p| d.template(n, &p, LINK).map(Some));
    let timeout = opt!(d, f, "timeout", Duration::from_secs(15), |n, p| d
        .duration(n, &p, MILLI));
    let url = url?;
    Some(Arc::new(TeamsSettings {
        host: redact_url(&url),
        url: Secret::new(url.to_string()),
        title: title?,
        text: text?,
        link: link?,
        timeout: timeout?,
    }))
}

impl SinkSettings for TeamsSettings {
    fn templates(&self) -> Vec<(Role, &'static str, &str)> {
        let mut own = own_template(TITLE, "title", &self.title);
        own.extend(own_template(TEXT, "text", &self.text));
        own.extend(own_template(LINK, "link", &self.link));
        own
    }

    fn build(&self, name: &str, templates: Arc<Templates>) -> Result<Box<dyn Deliver>, String> {
        Ok(Box::new(TeamsSink {
            name: name.to_owned(),
            hook: ChatHook::new("teams", name, &self.url, &self.host, self.timeout)?,
            templates,
        }))
    }
}

/// The built-in title and text of each event type; no link.
fn defaults() -> Vec<(String, String)> {
    use EventType::*;
    let titles = [
        (Created, "Order {{ order_id }} is new"),
        (StatusChanged, "Order {{ order_id }} is now {{ to }}"),
        (Updated, "Order {{ order_id }} was updated"),
        (Removed, "Order {{ order_id }} is no longer listed"),
        (DueSoon, "Order {{ order_id }} is due on {{ due }}"),
        (Overdue, "Order {{ order_id }} is overdue"),
        (
            Stalled,
            "Order {{ order_id }} has been {{ to }} since {{ since }}",
        ),
        (SourceFailing, "Source {{ source }} is failing"),
        (SourceRecovered, "Source {{ source }} has recovered"),
        (
            CredentialsExpiring,
            "The API key of source {{ source }} expires on {{ expires }}",
        ),
    ];
    let texts = [
        (
            Created,
            "A new order from {{ source }}{% if to %}, status {{ to }}{% endif %}.",
        ),
        (
            StatusChanged,
            "{% if closed %}The order is closed{% else %}The status changed{% endif %}: {{ from }} → {{ to }}.",
        ),
        (Updated, "{{ changes|length }} watched field(s) changed."),
        (
            Removed,
            "The API no longer lists this order; it was last seen as {{ from }}.",
        ),
        (
            DueSoon,
            "The order is due on {{ due }} and is still {{ to }}.",
        ),
        (
            Overdue,
            "The order was due on {{ due }} and is still {{ to }}.",
        ),
        (
            Stalled,
            "The order's status has been {{ to }} since {{ since }}.",
        ),
        (
            SourceFailing,
            "Every poll has failed since {{ since }} ({{ failures }} cycles). Nothing of this source is watched until it works again.",
        ),
        (
            SourceRecovered,
            "Polls work again after {{ failures }} failed cycles (failing since {{ since }}).",
        ),
        (
            CredentialsExpiring,
            "Ask Orange for a new API key, then update `api_key` and `api_key_expires`.",
        ),
    ];
    let mut all = Vec::new();
    for (kind, source) in titles {
        all.push((default_name(TITLE, kind), source.to_owned()));
    }
    for (kind, source) in texts {
        all.push((default_name(TEXT, kind), source.to_owned()));
    }
    for kind in EventType::ALL {
        all.push((default_name(LINK, kind), String::new()));
    }
    all
}

#[derive(Debug)]
pub struct TeamsSink {
    name: String,
    hook: ChatHook,
    templates: Arc<Templates>,
}

impl TeamsSink {
    async fn send(&self, event: &Event) -> Result<(), DeliveryError> {
        let message = self.message(event)?;
        self.hook.post(&message).await
    }

    fn message(&self, event: &Event) -> Result<Value, DeliveryError> {
        let render = |role| {
            self.templates
                .render(&self.name, role, event)
                .map_err(DeliveryError::permanent)
        };
        let title = render(TITLE)?;
        let text = render(TEXT)?;
        let link = render(LINK)?;
        let about = match event.order_id() {
            Some(_) => order_card(event),
            None => source_card(event),
        };
        Ok(card(&title, &text, link.trim(), &about))
    }
}

impl Deliver for TeamsSink {
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
        Box::pin(async move { Some(self.hook.post(&digest_card(digest)).await) })
    }
}

/// A digest's card: its title, the counts, a FactSet of the period, and a
/// line per order (part · source/order → what happened), under the same
/// size bound as an event's card.
fn digest_card(digest: &Digest) -> Value {
    let mut facts = vec![("Period", digest.period_text())];
    for (kind, n) in &digest.data.counts {
        facts.push(("Events", format!("{n} {kind}")));
    }
    let mut changes: Vec<(String, String)> = [Part::Closed, Part::AtRisk, Part::Changed]
        .into_iter()
        .flat_map(|part| {
            digest.part(part).map(move |l| {
                (
                    format!("{} · {}/{}", part.title(), l.source, l.order_id),
                    l.summary(),
                )
            })
        })
        .collect();
    changes.extend(digest.data.sources.iter().map(|s| {
        (
            format!("Source · {}", s.source),
            format!("{}: {}", s.kind, s.text),
        )
    }));
    let about = About { facts, changes };
    card(&digest.title(), &digest.counts_text(), "", &about)
}

/// What a card says about one order: its facts, and its changed fields as
/// (path, "old → new"). Events about something else than an order get
/// their own function.
struct About {
    facts: Vec<(&'static str, String)>,
    changes: Vec<(String, String)>,
}

/// The FactSet and the changes of an order's event.
fn order_card(event: &Event) -> About {
    let d = &event.data;
    let status = status(event);
    let mut facts = vec![("Source", d.source.clone()), ("Order", d.order_id.clone())];
    if !status.is_empty() {
        facts.push(("Status", status));
    }
    facts.push(("Revision", d.revision.to_string()));
    facts.push(("Detected", event.timestamp.clone()));
    let changes = d
        .changes
        .iter()
        .map(|c| {
            (
                c.path.clone(),
                format!("{} → {}", shown(&c.from), shown(&c.to)),
            )
        })
        .collect();
    About { facts, changes }
}

/// The FactSet of an event about a source itself (`source.*`): what its
/// data holds, no changes.
fn source_card(event: &Event) -> About {
    let mut facts = vec![("Source", event.data.source.clone())];
    facts.extend(source_facts(event));
    facts.push(("Detected", event.timestamp.clone()));
    About {
        facts,
        changes: Vec::new(),
    }
}

/// The whole message: the Workflows envelope around the Adaptive Card,
/// under [`MAX_BODY`] whatever the event holds. Values are first cut to
/// their usual bounds; should escaping still make the card too large (an
/// order id of quotes and control characters), the bounds are halved until
/// it fits.
fn card(title: &str, text: &str, link: &str, about: &About) -> Value {
    let mut shrink = 1;
    loop {
        let bounds = (MAX_VALUE / shrink, MAX_TEXT / shrink);
        if let Some(message) = card_within(title, text, link, about, bounds) {
            return message;
        }
        if shrink >= 64 {
            // 16-byte values and 64-byte texts fit, escaped, many times over.
            return envelope(Vec::new(), Vec::new());
        }
        shrink *= 2;
    }
}

/// The card with values cut to `(value, text)` bytes, or `None` when even
/// without its changes it would not fit.
fn card_within(
    title: &str,
    text: &str,
    link: &str,
    about: &About,
    (max_value, max_text): (usize, usize),
) -> Option<Value> {
    let fact = |title: &str, value: &str| json!({ "title": cut(title, max_value), "value": cut(value, max_value) });
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": cut(title.trim(), max_text),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    if !text.trim().is_empty() {
        body.push(json!({ "type": "TextBlock", "text": cut(text.trim(), max_text), "wrap": true }));
    }
    let facts: Vec<Value> = about.facts.iter().map(|(t, v)| fact(t, v)).collect();
    body.push(json!({ "type": "FactSet", "facts": facts }));
    // A cut URL would lead nowhere: one too long for a button is left out.
    let mut actions = Vec::new();
    if !link.is_empty() && link.len() <= MAX_LINK {
        actions.push(json!({ "type": "Action.OpenUrl", "title": "Open", "url": link }));
    }
    // Room for the changes' heading, their FactSet and "… and N more".
    let reserve = 512;
    let base = envelope(body.clone(), actions.clone());
    let mut used = encoded_len(&base) + reserve;
    if used > MAX_BODY {
        return None;
    }
    if about.changes.is_empty() {
        return Some(base);
    }
    let mut listed = Vec::new();
    for (path, change) in &about.changes {
        let item = fact(path, change);
        let size = encoded_len(&item) + 1;
        if listed.len() == MAX_CHANGES || used + size > MAX_BODY {
            break;
        }
        used += size;
        listed.push(item);
    }
    let left = about.changes.len() - listed.len();
    body.push(json!({ "type": "TextBlock", "text": "Changes", "weight": "Bolder", "wrap": true, "spacing": "Medium" }));
    body.push(json!({ "type": "FactSet", "facts": listed }));
    if left > 0 {
        body.push(json!({ "type": "TextBlock", "text": format!("… and {left} more"), "isSubtle": true, "wrap": true }));
    }
    Some(envelope(body, actions))
}

fn encoded_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(MAX_BODY, |b| b.len())
}

fn envelope(body: Vec<Value>, actions: Vec<Value>) -> Value {
    let mut content = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": body,
    });
    if !actions.is_empty() {
        content["actions"] = Value::Array(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::sample_event;

    #[test]
    fn a_card_of_values_that_escaping_inflates_still_fits() {
        // A control character takes six bytes escaped (`\u0001`): the usual
        // bounds would make a card of about 60 KB.
        let hostile = "\u{1}".repeat(100_000);
        let mut event = sample_event(EventType::StatusChanged);
        event.data.order_id = hostile.clone();
        event.data.source = hostile.clone();
        let about = order_card(&event);
        let message = card(&hostile, &hostile, "", &about);
        let size = encoded_len(&message);
        assert!(size < MAX_BODY, "{size} bytes");
        let body = &message["attachments"][0]["content"]["body"];
        assert!(body[0]["text"].as_str().unwrap().ends_with('…'), "{body}");
        assert_eq!(body[3]["text"], "Changes", "{body}");
    }
}
