//! A configured sink, built from its settings, behind one trait.

use super::DeliveryError;
use super::sinks::Deliver;
use super::template::Templates;
use crate::config::SinkConfig;
use crate::digest::Digest;
use crate::event::Event;
use crate::shutdown::Shutdown;
use std::sync::Arc;

#[derive(Debug)]
pub struct Sink {
    inner: Box<dyn Deliver>,
}

impl Sink {
    pub fn build(cfg: &SinkConfig, templates: &Arc<Templates>) -> Result<Sink, String> {
        let inner = cfg.settings.build(&cfg.name, templates.clone())?;
        Ok(Sink { inner })
    }

    /// Deliver one event now.
    pub async fn deliver(&self, event: &Event) -> Result<(), DeliveryError> {
        let json = serde_json::to_string(event)
            .map_err(|e| DeliveryError::permanent(format!("the event cannot be encoded: {e}")))?;
        self.deliver_stored(&json).await
    }

    /// Deliver one stored event; `json` is its JSON (the webhook body as it is).
    pub async fn deliver_stored(&self, json: &str) -> Result<(), DeliveryError> {
        match self.deliver_unless_stopped(json, &Shutdown::never()).await {
            Some(outcome) => outcome,
            None => Err(DeliveryError::retry(format!(
                "{}: not sent: orderwatch is stopping",
                self.describe()
            ))),
        }
    }

    /// Deliver one stored event unless `shutdown` fires before it starts;
    /// `None` when it did not start.
    pub async fn deliver_unless_stopped(
        &self,
        json: &str,
        shutdown: &Shutdown,
    ) -> Option<Result<(), DeliveryError>> {
        if shutdown.is_stopping() {
            return None;
        }
        if is_digest(json) {
            return match parse_digest(json) {
                Ok(digest) => self.inner.deliver_digest(&digest, json, shutdown).await,
                Err(e) => Some(Err(e)),
            };
        }
        match parse_event(json) {
            Ok(event) => self.inner.deliver(&event, json, shutdown).await,
            Err(e) => Some(Err(e)),
        }
    }

    /// The sink for logs: name and, for URLs, scheme and host only.
    pub fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Whether a stored body is a digest: its document begins with its type,
/// as orderwatch writes it.
fn is_digest(json: &str) -> bool {
    json.starts_with(r#"{"type":"digest""#)
}

fn parse_digest(json: &str) -> Result<Digest, DeliveryError> {
    serde_json::from_str(json)
        .map_err(|e| DeliveryError::permanent(format!("the stored digest cannot be read: {e}")))
}

/// A stored event; one that no longer parses will never deliver, so it is
/// dead-lettered rather than retried.
fn parse_event(json: &str) -> Result<Event, DeliveryError> {
    serde_json::from_str(json)
        .map_err(|e| DeliveryError::permanent(format!("the stored event cannot be read: {e}")))
}
