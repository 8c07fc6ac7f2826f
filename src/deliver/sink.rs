//! The sinks as one closed enum: static dispatch, one file per kind.

use super::DeliveryError;
use super::webhook::WebhookSink;
use crate::config::{SinkConfig, SinkKind};
use crate::event::Event;

pub enum Sink {
    Webhook(WebhookSink),
}

impl Sink {
    pub fn build(cfg: &SinkConfig) -> Result<Sink, String> {
        match &cfg.kind {
            SinkKind::Webhook(w) => WebhookSink::new(&cfg.name, w).map(Sink::Webhook),
            other => Err(format!(
                "sink `{}`: type {} is not available",
                cfg.name,
                other.type_name()
            )),
        }
    }

    /// Deliver one event; `json` is its stored JSON, sent as it is.
    pub async fn deliver(&self, event_id: &str, json: &str) -> Result<(), DeliveryError> {
        match self {
            Sink::Webhook(w) => w.deliver(event_id, json).await,
        }
    }

    /// The sink for logs: name and, for URLs, scheme and host only.
    pub fn describe(&self) -> String {
        match self {
            Sink::Webhook(w) => w.describe(),
        }
    }
}

/// Parse a stored event for sinks that render it.
#[allow(dead_code)]
pub(crate) fn parse_event(json: &str) -> Result<Event, DeliveryError> {
    serde_json::from_str(json)
        .map_err(|e| DeliveryError::permanent(format!("the stored event cannot be read: {e}")))
}
