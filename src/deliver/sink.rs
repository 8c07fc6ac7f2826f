//! The sinks as one closed enum: static dispatch, one file per kind.

use super::DeliveryError;
use super::console::ConsoleSink;
use super::email::EmailSink;
use super::slack::SlackSink;
use super::template::Templates;
use super::webhook::WebhookSink;
use crate::config::{SinkConfig, SinkKind};
use crate::event::Event;
use crate::shutdown::Shutdown;
use std::sync::Arc;

pub enum Sink {
    Webhook(WebhookSink),
    Slack(SlackSink),
    Email(EmailSink),
    Console(ConsoleSink),
}

impl Sink {
    pub fn build(cfg: &SinkConfig, templates: &Arc<Templates>) -> Result<Sink, String> {
        let name = &cfg.name;
        match &cfg.kind {
            SinkKind::Webhook(w) => WebhookSink::new(name, w).map(Sink::Webhook),
            SinkKind::Slack(s) => SlackSink::new(name, s, templates.clone()).map(Sink::Slack),
            SinkKind::Email(e) => EmailSink::new(name, e, templates.clone()).map(Sink::Email),
            SinkKind::Console(_) => Ok(Sink::Console(ConsoleSink::new(name, templates.clone()))),
        }
    }

    /// Deliver one event; `json` is its stored JSON (the webhook body as it is).
    pub async fn deliver(&self, event_id: &str, json: &str) -> Result<(), DeliveryError> {
        match self {
            Sink::Webhook(w) => w.deliver(event_id, json).await,
            Sink::Slack(s) => s.deliver(&parse_event(json)?).await,
            Sink::Email(e) => e.deliver(&parse_event(json)?).await,
            Sink::Console(c) => c.deliver(&parse_event(json)?).await,
        }
    }

    /// Deliver one event unless `shutdown` fires before it starts; `None`
    /// when it did not start (a slack message waiting for its turn under
    /// the one-per-second rate has not started).
    pub async fn deliver_unless_stopped(
        &self,
        event_id: &str,
        json: &str,
        shutdown: &Shutdown,
    ) -> Option<Result<(), DeliveryError>> {
        if shutdown.is_stopping() {
            return None;
        }
        match self {
            Sink::Slack(s) => match parse_event(json) {
                Ok(event) => s.deliver_unless_stopped(&event, shutdown).await,
                Err(e) => Some(Err(e)),
            },
            _ => Some(self.deliver(event_id, json).await),
        }
    }

    /// The sink for logs: name and, for URLs, scheme and host only.
    pub fn describe(&self) -> String {
        match self {
            Sink::Webhook(w) => w.describe(),
            Sink::Slack(s) => s.name().to_owned(),
            Sink::Email(e) => e.name().to_owned(),
            Sink::Console(c) => c.name().to_owned(),
        }
    }
}

/// A stored event for the sinks that render it; one that no longer parses
/// will never deliver, so it is dead-lettered rather than retried.
fn parse_event(json: &str) -> Result<Event, DeliveryError> {
    serde_json::from_str(json)
        .map_err(|e| DeliveryError::permanent(format!("the stored event cannot be read: {e}")))
}
