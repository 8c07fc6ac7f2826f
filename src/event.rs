//! An event: one change of one order, a date of an order coming or passing
//! (due soon, overdue, stalled in one status), or news about a source itself
//! (its cycles keep failing, it recovered, its API key expires soon), as
//! receivers see it.
//!
//! The JSON shape is the contract README.md "Events" documents: `type`,
//! `timestamp`, and `data` with `id` and `source`; an order event's `data`
//! has the order fields (and a timer's event `due` or `since`), a source
//! event's only its own (`since`, `failures`, `error`, `expires`).
//! `data.id` is derived from what the event is about (the order's revision
//! and change; the order, the type and the due date or status episode; the
//! source, the type and the failing episode or expiry date), so the same
//! event detected twice (after a crash, before the commit) has the same id
//! and receivers can deduplicate.
//!
//! [`EventData`] keeps one flat shape for both kinds, so the many places
//! that read an order event's fields read them as they always did; what a
//! kind does not have is left out of the JSON by [`Event`]'s serializer,
//! and the accessors ([`Event::order_id`]) answer `None` for it.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
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
    /// The order's due date is within its source's `due.warn_before`.
    #[serde(rename = "order.due_soon")]
    DueSoon,
    /// The order's due date has passed and it is still open.
    #[serde(rename = "order.overdue")]
    Overdue,
    /// The order's status has not changed for its source's `stalled_after`.
    #[serde(rename = "order.stalled")]
    Stalled,
    /// A source's cycles have all failed for `alert_after`.
    #[serde(rename = "source.failing")]
    SourceFailing,
    /// The first good cycle after `source.failing`.
    #[serde(rename = "source.recovered")]
    SourceRecovered,
    /// The source's `api_key_expires` is less than 30 days away.
    #[serde(rename = "source.credentials_expiring")]
    CredentialsExpiring,
    /// A sink's digest: the events of one period in one message. Not in
    /// [`EventType::ALL`]: routes choose the events that go into a digest,
    /// never the digest itself.
    #[serde(rename = "digest")]
    Digest,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::Created,
        EventType::StatusChanged,
        EventType::Updated,
        EventType::Removed,
        EventType::DueSoon,
        EventType::Overdue,
        EventType::Stalled,
        EventType::SourceFailing,
        EventType::SourceRecovered,
        EventType::CredentialsExpiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "order.created",
            EventType::StatusChanged => "order.status_changed",
            EventType::Updated => "order.updated",
            EventType::Removed => "order.removed",
            EventType::DueSoon => "order.due_soon",
            EventType::Overdue => "order.overdue",
            EventType::Stalled => "order.stalled",
            EventType::SourceFailing => "source.failing",
            EventType::SourceRecovered => "source.recovered",
            EventType::CredentialsExpiring => "source.credentials_expiring",
            EventType::Digest => "digest",
        }
    }

    /// Whether events of this type are about one order (and carry its
    /// fields), rather than about a source.
    pub fn is_about_an_order(self) -> bool {
        match self {
            EventType::Created
            | EventType::StatusChanged
            | EventType::Updated
            | EventType::Removed
            | EventType::DueSoon
            | EventType::Overdue
            | EventType::Stalled => true,
            EventType::SourceFailing
            | EventType::SourceRecovered
            | EventType::CredentialsExpiring
            | EventType::Digest => false,
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
                let names = EventType::ALL.map(EventType::as_str);
                format!("unknown event type `{s}` (one of: {})", names.join(", "))
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

/// The `data` object of an event. The order fields are those of order
/// events (empty in a source event, and not serialized there); the source
/// fields are those of source events (`None` in an order event).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct EventData {
    pub id: String,
    pub source: String,
    #[serde(default)]
    pub order_id: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub closed: bool,
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default)]
    pub order: Value,
    /// `source.failing`, `source.recovered`: when the failing began (RFC
    /// 3339), the first failed cycle after the last good one;
    /// `order.stalled`: when the order's status began.
    #[serde(default)]
    pub since: Option<String>,
    /// `order.due_soon`, `order.overdue`: the due date the event is about
    /// (RFC 3339, UTC, seconds: a plain date read in the source's timezone).
    #[serde(default)]
    pub due: Option<String>,
    /// `source.failing`: failed cycles in a row so far; `source.recovered`:
    /// how many had failed.
    #[serde(default)]
    pub failures: Option<u64>,
    /// `source.failing`: why the last cycle failed, with Orange's request id.
    #[serde(default)]
    pub error: Option<String>,
    /// `source.credentials_expiring`: the day the API key expires.
    #[serde(default)]
    pub expires: Option<String>,
}

/// An order event's `data` as it is sent: exactly these fields, in this
/// order (webhook signatures are over the bytes).
#[derive(Serialize)]
struct OrderData<'a> {
    id: &'a str,
    source: &'a str,
    order_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: &'a Option<String>,
    closed: bool,
    revision: u64,
    changes: &'a [Change],
    order: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    due: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: &'a Option<String>,
}

/// A source event's `data` as it is sent: no order fields at all.
#[derive(Serialize)]
struct SourceData<'a> {
    id: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failures: &'a Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: &'a Option<String>,
}

/// An event as delivered: the body of a webhook.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When orderwatch detected the change (RFC 3339, UTC, seconds).
    pub timestamp: String,
    pub data: EventData,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let d = &self.data;
        let mut out = serializer.serialize_struct("Event", 3)?;
        out.serialize_field("type", &self.kind)?;
        out.serialize_field("timestamp", &self.timestamp)?;
        if self.kind.is_about_an_order() {
            out.serialize_field(
                "data",
                &OrderData {
                    id: &d.id,
                    source: &d.source,
                    order_id: &d.order_id,
                    from: &d.from,
                    to: &d.to,
                    closed: d.closed,
                    revision: d.revision,
                    changes: &d.changes,
                    order: &d.order,
                    due: &d.due,
                    since: &d.since,
                },
            )?;
        } else {
            out.serialize_field(
                "data",
                &SourceData {
                    id: &d.id,
                    source: &d.source,
                    since: &d.since,
                    failures: &d.failures,
                    error: &d.error,
                    expires: &d.expires,
                },
            )?;
        }
        out.end()
    }
}

impl Event {
    /// The order the event is about; `None` for a source event.
    pub fn order_id(&self) -> Option<&str> {
        self.kind
            .is_about_an_order()
            .then_some(self.data.order_id.as_str())
    }

    /// The order as last read; `None` for a source event.
    pub fn order(&self) -> Option<&Value> {
        self.kind.is_about_an_order().then_some(&self.data.order)
    }

    /// The status before (`order.status_changed`, `order.removed`).
    pub fn from(&self) -> Option<&str> {
        self.data.from.as_deref()
    }

    /// The status now (`order.status_changed`, `order.created`).
    pub fn to(&self) -> Option<&str> {
        self.data.to.as_deref()
    }

    /// An event about a source, not an order: `since`, `failures`, `error`
    /// and `expires` as its type has them. `about` is what makes it this
    /// event and no other (the failing episode's `since`, the `expires`
    /// date): with the source and the type, it makes the id.
    pub fn about_source(
        kind: EventType,
        source: &str,
        about: &str,
        timestamp: String,
        fields: SourceFields,
    ) -> Event {
        Event {
            kind,
            timestamp,
            data: EventData {
                id: Event::derive_source_id(source, kind, about),
                source: source.to_owned(),
                since: fields.since,
                failures: fields.failures,
                error: fields.error,
                expires: fields.expires,
                ..EventData::default()
            },
        }
    }

    /// The deterministic id of an order's timer event (`order.due_soon`,
    /// `order.overdue`, `order.stalled`): a hash of the source, the order,
    /// the type and what it is about (the due date; the status and its
    /// `since`), so a crash between telling it and recording that it was
    /// told makes the same id again, and a moved date a new one.
    pub fn derive_timer_id(source: &str, order_id: &str, kind: EventType, about: &str) -> String {
        let mut h = Sha256::new();
        for part in ["timer", source, order_id, kind.as_str(), about] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        format!("evt_{}", hex::encode(&digest[..16]))
    }

    /// The deterministic id of a source event: a hash of the source, the
    /// type and what it is about (the `since` of a failing episode, the
    /// `expires` date), so telling it again after a crash reuses the id.
    pub fn derive_source_id(source: &str, kind: EventType, about: &str) -> String {
        let mut h = Sha256::new();
        for part in ["source", source, kind.as_str(), about] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        format!("evt_{}", hex::encode(&digest[..16]))
    }

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

/// The fields of a source event; those its type lacks stay `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceFields {
    pub since: Option<String>,
    pub failures: Option<u64>,
    pub error: Option<String>,
    pub expires: Option<String>,
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

    fn order_event() -> Event {
        Event {
            kind: EventType::StatusChanged,
            timestamp: "2026-11-22T08:00:00Z".into(),
            data: EventData {
                id: "evt_1".into(),
                source: "tracking".into(),
                order_id: "123".into(),
                from: Some("Current".into()),
                to: Some("Closed".into()),
                closed: true,
                revision: 4,
                changes: vec![Change {
                    path: "/status".into(),
                    from: "Current".into(),
                    to: "Closed".into(),
                }],
                order: serde_json::json!({"id": "123", "status": "Closed"}),
                ..EventData::default()
            },
        }
    }

    #[test]
    fn an_order_event_is_sent_exactly_as_before_source_events_existed() {
        let json = serde_json::to_string(&order_event()).unwrap();
        assert_eq!(
            json,
            r#"{"type":"order.status_changed","timestamp":"2026-11-22T08:00:00Z","data":{"id":"evt_1","source":"tracking","order_id":"123","from":"Current","to":"Closed","closed":true,"revision":4,"changes":[{"path":"/status","from":"Current","to":"Closed"}],"order":{"id":"123","status":"Closed"}}}"#
        );
        let mut created = order_event();
        created.kind = EventType::Created;
        created.data.from = None;
        let json = serde_json::to_string(&created).unwrap();
        assert!(
            json.contains(r#""order_id":"123","to":"Closed","closed""#),
            "{json}"
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, created);
        assert_eq!(back.order_id(), Some("123"));
    }

    #[test]
    fn a_source_event_has_its_own_fields_and_no_order_fields() {
        let e = Event::about_source(
            EventType::SourceFailing,
            "tracking",
            "2026-11-22T07:45:00Z",
            "2026-11-22T08:00:00Z".into(),
            SourceFields {
                since: Some("2026-11-22T07:45:00Z".into()),
                failures: Some(12),
                error: Some(
                    "Orange answered with a server error (HTTP 503, request id r-1)".into(),
                ),
                expires: None,
            },
        );
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"type":"source.failing","timestamp":"2026-11-22T08:00:00Z","data":{{"id":"{}","source":"tracking","since":"2026-11-22T07:45:00Z","failures":12,"error":"Orange answered with a server error (HTTP 503, request id r-1)"}}}}"#,
                e.data.id
            )
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.order_id(), None);
        assert_eq!(back.order(), None);
    }

    #[test]
    fn source_event_ids_depend_on_source_type_and_what_they_are_about() {
        let id = |source, kind, about| Event::derive_source_id(source, kind, about);
        let failing = id("t", EventType::SourceFailing, "2026-11-22T07:45:00Z");
        assert_eq!(
            failing,
            id("t", EventType::SourceFailing, "2026-11-22T07:45:00Z")
        );
        assert!(failing.starts_with("evt_") && failing.len() == 36);
        for other in [
            id("u", EventType::SourceFailing, "2026-11-22T07:45:00Z"),
            id("t", EventType::SourceRecovered, "2026-11-22T07:45:00Z"),
            id("t", EventType::SourceFailing, "2026-11-22T07:46:00Z"),
        ] {
            assert_ne!(failing, other);
        }
    }

    #[test]
    fn a_timer_event_carries_the_order_fields_and_its_date() {
        let mut due = order_event();
        due.kind = EventType::Overdue;
        due.data.from = None;
        due.data.to = Some("Current".into());
        due.data.closed = false;
        due.data.changes = vec![];
        due.data.due = Some("2026-11-21T23:00:00Z".into());
        let json = serde_json::to_string(&due).unwrap();
        assert!(
            json.contains(
                r#""order":{"id":"123","status":"Closed"},"due":"2026-11-21T23:00:00Z"}"#
            ),
            "{json}"
        );
        assert!(!json.contains("since"), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, due);
        assert_eq!(back.order_id(), Some("123"));
    }

    #[test]
    fn timer_event_ids_depend_on_order_type_and_what_they_are_about() {
        let id = |order, kind, about| Event::derive_timer_id("t", order, kind, about);
        let a = id("1", EventType::DueSoon, "2026-07-03T00:00:00Z");
        assert_eq!(a, id("1", EventType::DueSoon, "2026-07-03T00:00:00Z"));
        assert!(a.starts_with("evt_") && a.len() == 36);
        for other in [
            id("2", EventType::DueSoon, "2026-07-03T00:00:00Z"),
            id("1", EventType::Overdue, "2026-07-03T00:00:00Z"),
            id("1", EventType::DueSoon, "2026-07-04T00:00:00Z"),
            Event::derive_source_id("t", EventType::DueSoon, "2026-07-03T00:00:00Z"),
        ] {
            assert_ne!(a, other);
        }
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
