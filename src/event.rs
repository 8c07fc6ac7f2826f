//! An event: one change of one order, as receivers see it.
//!
//! The JSON shape is the contract README.md "Events" documents. `data.id` is derived
//! from the source, the order id, the revision and what changed, so the same
//! change detected twice (after a crash, before the commit) has the same id
//! and receivers can deduplicate.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "order.created")]
    Created,
    #[serde(rename = "order.status_changed")]
    StatusChanged,
    #[serde(rename = "order.updated")]
    Updated,
    #[serde(rename = "order.removed")]
    Removed,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Created,
        EventType::StatusChanged,
        EventType::Updated,
        EventType::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "order.created",
            EventType::StatusChanged => "order.status_changed",
            EventType::Updated => "order.updated",
            EventType::Removed => "order.removed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown event type `{s}` (one of: order.created, order.status_changed, order.updated, order.removed)"
                )
            })
    }
}

/// One changed JSON pointer of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub from: Value,
    pub to: Value,
}

/// The `data` object of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    pub id: String,
    pub source: String,
    pub order_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub closed: bool,
    pub revision: u64,
    pub changes: Vec<Change>,
    pub order: Value,
}

/// An event as delivered: the body of a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When orderwatch detected the change (RFC 3339, UTC, seconds).
    pub timestamp: String,
    pub data: EventData,
}

impl Event {
    /// The deterministic event id: a hash of what identifies the change.
    ///
    /// The revision alone would do for one store, but hashing the states too
    /// means a store rebuilt from scratch does not reuse an id for a
    /// different change.
    pub fn derive_id(
        source: &str,
        order_id: &str,
        kind: EventType,
        revision: u64,
        from: Option<&str>,
        to: Option<&str>,
        changes: &[Change],
    ) -> String {
        let mut h = Sha256::new();
        for part in [source, order_id, kind.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(revision.to_be_bytes());
        for part in [from, to] {
            h.update(part.unwrap_or("\u{0}none").as_bytes());
            h.update([0]);
        }
        for c in changes {
            h.update(c.path.as_bytes());
            h.update([0]);
            h.update(c.from.to_string().as_bytes());
            h.update([0]);
            h.update(c.to.to_string().as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        format!("evt_{}", hex::encode(&digest[..16]))
    }
}

/// Now, as RFC 3339 UTC with whole seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert!("order.closed".parse::<EventType>().is_err());
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = Event::derive_id(
            "s",
            "1",
            EventType::StatusChanged,
            2,
            Some("Current"),
            Some("Closed"),
            &[],
        );
        let b = Event::derive_id(
            "s",
            "1",
            EventType::StatusChanged,
            2,
            Some("Current"),
            Some("Closed"),
            &[],
        );
        let c = Event::derive_id(
            "s",
            "1",
            EventType::StatusChanged,
            3,
            Some("Current"),
            Some("Closed"),
            &[],
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("evt_") && a.len() == 36);
    }
}
