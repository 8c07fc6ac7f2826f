//! What the card sinks (teams, google-chat) share: the webhook they post
//! JSON to, whose URL is a credential, and text for their cards: values cut
//! to a bound on a character boundary, a changed value and an order's
//! status as a reader wants them.

use crate::deliver::{DeliveryError, answer};
use crate::event::Event;
use crate::secret::Secret;
use serde_json::Value;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A chat webhook: one JSON POST per message, answers read as the webhook
/// sink reads them (2xx success; 408, 429 with its `Retry-After`, 5xx and
/// no answer retry; the rest is permanent).
pub(crate) struct ChatHook {
    /// `<type> sink `<name>` (scheme://host)`: how errors name it; never
    /// more of the URL.
    who: String,
    url: Secret,
    client: reqwest::Client,
}

impl std::fmt::Debug for ChatHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.who)
    }
}

impl ChatHook {
    pub(crate) fn new(
        kind: &str,
        name: &str,
        url: &Secret,
        host: &str,
        timeout: Duration,
    ) -> Result<ChatHook, String> {
        let who = format!("{kind} sink `{name}` ({host})");
        let client = answer::client(Default::default(), timeout, CONNECT_TIMEOUT.min(timeout))
            .map_err(|e| format!("{who}: {e}"))?;
        Ok(ChatHook {
            who,
            url: url.clone(),
            client,
        })
    }

    pub(crate) async fn post(&self, message: &Value) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(message).map_err(|e| {
            DeliveryError::permanent(format!("{}: cannot encode the message: {e}", self.who))
        })?;
        let request = self
            .client
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        answer::send(request, &self.who).await
    }
}

/// `text`, at most `max` bytes, cut on a character boundary and marked.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A changed value: strings bare, null as `(none)`, anything else as
/// compact JSON (as the templates' `show` filter writes it).
pub(crate) fn shown(value: &Value) -> String {
    match value {
        Value::Null => "(none)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An order event's status: `from → to`, the new order's status, or the
/// last one seen of a removed order; empty when it has none.
pub(crate) fn status(event: &Event) -> String {
    match (&event.data.from, &event.data.to) {
        (Some(from), Some(to)) => format!("{from} → {to}"),
        (None, Some(to)) => to.clone(),
        (Some(from), None) => format!("{from} (last seen)"),
        (None, None) => String::new(),
    }
}

/// What a source event's data says, as (label, value), in the order cards
/// show it: since, failed cycles, error, expiry; none of them empty.
pub(crate) fn source_facts(event: &Event) -> Vec<(&'static str, String)> {
    let d = &event.data;
    let mut facts = Vec::new();
    if let Some(since) = &d.since {
        facts.push(("Failing since", since.clone()));
    }
    if let Some(failures) = d.failures {
        facts.push(("Failed cycles", failures.to_string()));
    }
    if let Some(error) = &d.error {
        facts.push(("Error", error.clone()));
    }
    if let Some(expires) = &d.expires {
        facts.push(("API key expires", expires.clone()));
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_stays_on_a_character_boundary_and_within_its_bound() {
        let text = "é".repeat(100);
        let short = cut(&text, 51);
        assert!(short.len() <= 51, "{}", short.len());
        assert!(short.ends_with('…'));
        assert_eq!(cut("short", 51), "short");
    }
}
