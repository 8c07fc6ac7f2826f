//! What a sink says when a delivery fails: try again later, or never.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth another attempt (408, 429, 5xx, timeouts, SMTP 4xx...).
    /// `retry_after` is the receiver's own hint, clamped by the worker.
    #[error("{reason}")]
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is (other 4xx, SMTP 5xx, a bad payload):
    /// the entry goes to the dead letters at once.
    #[error("{reason}")]
    Permanent { reason: String },
}

impl DeliveryError {
    pub fn retry(reason: impl Into<String>) -> Self {
        DeliveryError::Retry {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            reason: reason.into(),
        }
    }
}
