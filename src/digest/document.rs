//! A digest as it is stored and sent: one JSON document (the body of a
//! webhook or http sink, README.md "Digests"), built once from the bodies
//! of the events it holds. Every sink renders its message from this.
//!
//! Orders come in three parts, each in the order its orders first changed
//! in the period: those that closed (or were removed), those at risk
//! (`order.due_soon`, `order.overdue`, `order.stalled`), then every other
//! change. An order is on one line however many events it had; news of a
//! source (`source.failing`...) follows on lines of its own.

use super::DigestSchedule;
use crate::event::EventType;
use crate::store::OverdueOrder;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};

/// The types that put an open order in the "at risk" part.
const AT_RISK: [&str; 4] = [
    "order.due_soon",
    "order.overdue",
    "order.stalled",
    OVERDUE_AT_BASELINE,
];
/// The "type" of an order's line that no event told of: it was past its
/// due date when the baseline first saw it.
const OVERDUE_AT_BASELINE: &str = "overdue_at_baseline";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// Always `digest`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was made (RFC 3339, UTC, seconds).
    pub timestamp: String,
    pub data: DigestData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestData {
    /// `dig_` and a hash of the sink and the period's start: the same on
    /// every attempt, and after a crash.
    pub id: String,
    pub sink: String,
    pub period: Period,
    /// How many events it holds.
    pub events: u64,
    /// Events by type.
    pub counts: BTreeMap<String, u64>,
    pub orders: Vec<OrderLine>,
    pub sources: Vec<SourceLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// RFC 3339, UTC.
    pub start: String,
    pub end: String,
    /// The `timezone` of the sink's `digest:`, to show times in.
    pub timezone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Closed,
    AtRisk,
    Changed,
}

impl Part {
    pub fn title(self) -> &'static str {
        match self {
            Part::Closed => "Closed",
            Part::AtRisk => "At risk",
            Part::Changed => "Changed",
        }
    }
}

/// One order's events in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub part: Part,
    pub source: String,
    pub order_id: String,
    /// The status before its first event of the period, if it had one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<String>,
    /// The status after its last event.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to: Option<String>,
    pub closed: bool,
    pub removed: bool,
    /// The due date of its last `order.due_soon` or `order.overdue`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub due: Option<String>,
    /// Its revision after its last event.
    pub revision: u64,
    /// Its events' types, oldest first.
    pub types: Vec<String>,
    /// Its events' ids, oldest first.
    pub ids: Vec<String>,
    /// When its last event was detected.
    pub last: String,
}

impl OrderLine {
    /// What happened to the order, in a few words: `Current → Closed`.
    pub fn summary(&self) -> String {
        let mut text = match (&self.from, &self.to) {
            (Some(from), Some(to)) if from != to => format!("{from} → {to}"),
            (_, Some(to)) => to.clone(),
            (Some(from), None) => format!("was {from}"),
            (None, None) => String::new(),
        };
        let mut add = |word: String| {
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(&word);
        };
        if self.removed {
            add("removed".to_owned());
        }
        for kind in AT_RISK {
            if self.types.iter().any(|t| t == kind) {
                let word = match kind {
                    OVERDUE_AT_BASELINE => "overdue since before the baseline".to_owned(),
                    _ => kind.trim_start_matches("order.").replace('_', " "),
                };
                add(match &self.due {
                    Some(due) if kind != "order.stalled" => format!("{word} (due {due})"),
                    _ => word,
                });
            }
        }
        if self.types.iter().any(|t| t == "order.updated") {
            add("updated".to_owned());
        }
        if self.ids.len() > 1 {
            add(format!("{} events", self.ids.len()));
        }
        text
    }
}

/// News of a source in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceLine {
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub timestamp: String,
    /// The event's own facts, in a few words.
    pub text: String,
}

/// The id of `sink`'s digest of the period starting at `start_ms` whose
/// first event has sequence `first_seq` (0: none). The sequence keeps two
/// digests of one period apart: an event committed just as its period's
/// digest was made (its commit began before the boundary) goes into one of
/// its own.
pub fn digest_id(sink: &str, start_ms: u64, first_seq: u64) -> String {
    let mut h = Sha256::new();
    h.update(b"digest\0");
    h.update(sink.as_bytes());
    h.update([0]);
    h.update(start_ms.to_be_bytes());
    h.update(first_seq.to_be_bytes());
    format!("dig_{}", hex::encode(&h.finalize()[..16]))
}

/// RFC 3339, UTC, seconds.
pub(crate) fn rfc3339(ms: u64) -> String {
    i64::try_from(ms / 1000)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

impl Digest {
    /// The digest of `held` (the events kept for `sink`: their types and
    /// bodies), for the period
    /// from `start_ms` to `end_ms` (its first event `first_seq`), made at
    /// `now_ms`, with the orders found
    /// overdue at a baseline (`overdue`, by source) among those at risk.
    /// Events whose body the store lost are counted but have no line.
    pub fn build(
        sink: &str,
        schedule: Option<&DigestSchedule>,
        (start_ms, end_ms): (u64, u64),
        first_seq: u64,
        held: &[(EventType, Option<&str>)],
        overdue: &[(String, OverdueOrder)],
        now_ms: u64,
    ) -> Digest {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut orders: Vec<OrderLine> = Vec::new();
        let mut line_of: HashMap<(String, String), usize> = HashMap::new();
        let mut sources = Vec::new();
        for (kind, body) in held {
            *counts.entry(kind.as_str().to_owned()).or_default() += 1;
            let Some(event) = body.and_then(|b| serde_json::from_str::<Told>(b).ok()) else {
                continue;
            };
            let kind = event.kind.as_str();
            let d = &event.data;
            if !event.kind.is_about_an_order() {
                sources.push(SourceLine {
                    source: d.source.clone(),
                    kind: kind.to_owned(),
                    id: d.id.clone(),
                    timestamp: event.timestamp.clone(),
                    text: source_text(&event),
                });
                continue;
            }
            let key = (d.source.clone(), d.order_id.clone());
            let index = *line_of.entry(key).or_insert_with(|| {
                orders.push(OrderLine {
                    part: Part::Changed,
                    source: d.source.clone(),
                    order_id: d.order_id.clone(),
                    from: d.from.clone(),
                    to: None,
                    closed: false,
                    removed: false,
                    due: None,
                    revision: 0,
                    types: Vec::new(),
                    ids: Vec::new(),
                    last: String::new(),
                });
                orders.len() - 1
            });
            let line = &mut orders[index];
            if d.to.is_some() {
                line.to.clone_from(&d.to);
            }
            line.closed = d.closed;
            line.removed |= kind == "order.removed";
            if d.due.is_some() {
                line.due.clone_from(&d.due);
            }
            line.revision = line.revision.max(d.revision);
            line.types.push(kind.to_owned());
            line.ids.push(d.id.clone());
            line.last.clone_from(&event.timestamp);
        }
        for line in &mut orders {
            line.part = if line.closed || line.removed {
                Part::Closed
            } else if line.types.iter().any(|t| AT_RISK.contains(&t.as_str())) {
                Part::AtRisk
            } else {
                Part::Changed
            };
        }
        // Orders found overdue at the baseline were never told: they join
        // the at-risk part of the first digest.
        for (source, o) in overdue {
            if line_of.contains_key(&(source.clone(), o.order_id.clone())) {
                continue;
            }
            orders.push(OrderLine {
                part: Part::AtRisk,
                source: source.clone(),
                order_id: o.order_id.clone(),
                from: None,
                to: None,
                closed: false,
                removed: false,
                due: Some(o.due.clone()),
                revision: 0,
                types: vec![OVERDUE_AT_BASELINE.to_owned()],
                ids: Vec::new(),
                last: String::new(),
            });
        }
        // Stable: each part keeps the order of first change.
        orders.sort_by_key(|l| l.part);
        Digest {
            kind: "digest".to_owned(),
            timestamp: rfc3339(now_ms),
            data: DigestData {
                id: digest_id(sink, start_ms, first_seq),
                sink: sink.to_owned(),
                period: Period {
                    start: rfc3339(start_ms),
                    end: rfc3339(end_ms),
                    timezone: schedule.map_or("UTC", |s| &s.timezone_name).to_owned(),
                },
                events: held.len() as u64,
                counts,
                orders,
                sources,
            },
        }
    }

    /// The lines of one part.
    pub fn part(&self, part: Part) -> impl Iterator<Item = &OrderLine> {
        self.data.orders.iter().filter(move |l| l.part == part)
    }

    /// `3 events: 2 order.status_changed, 1 order.created`.
    pub fn counts_text(&self) -> String {
        let counts: Vec<String> = self
            .data
            .counts
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        let n = self.data.events;
        let events = if n == 1 { "event" } else { "events" };
        format!("{n} {events}: {}", counts.join(", "))
    }

    /// `orderwatch digest for ops: 3 events, 2026-11-22 08:00 → 2026-11-23 08:00 (Europe/Paris)`.
    pub fn title(&self) -> String {
        let n = self.data.events;
        let events = if n == 1 { "event" } else { "events" };
        format!(
            "orderwatch digest for {}: {n} {events}, {}",
            self.data.sink,
            self.period_text()
        )
    }

    /// The digest as plain text, one line each: its title, the counts,
    /// then each part's orders and the sources' news. What console, email's
    /// text part and the text of chat messages show.
    pub fn text_lines(&self) -> Vec<String> {
        let mut out = vec![self.title(), self.counts_text()];
        for part in [Part::Closed, Part::AtRisk, Part::Changed] {
            let mut lines = self.part(part).peekable();
            if lines.peek().is_none() {
                continue;
            }
            out.push(String::new());
            out.push(format!("{}:", part.title()));
            for line in lines {
                out.push(format!(
                    "- {}/{}: {}",
                    line.source,
                    line.order_id,
                    line.summary()
                ));
            }
        }
        if !self.data.sources.is_empty() {
            out.push(String::new());
            out.push("Sources:".to_owned());
            for s in &self.data.sources {
                out.push(format!("- {} {}: {}", s.source, s.kind, s.text));
            }
        }
        out
    }

    /// The period in its time zone: `2026-11-22 08:00 → 2026-11-23 08:00 (Europe/Paris)`.
    pub fn period_text(&self) -> String {
        let p = &self.data.period;
        let local = |text: &str| -> String {
            let tz = jiff::tz::TimeZone::get(&p.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
            text.parse::<jiff::Timestamp>()
                .map(|t| t.to_zoned(tz).strftime("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|_| text.to_owned())
        };
        format!("{} → {} ({})", local(&p.start), local(&p.end), p.timezone)
    }
}

/// What a digest reads of a stored event: all but the order document and
/// the changes, which its lines do not show (skipped while parsing, never
/// built: a day's events are read in a fraction of the time).
#[derive(Deserialize)]
struct Told {
    #[serde(rename = "type")]
    kind: EventType,
    timestamp: String,
    data: ToldData,
}

#[derive(Deserialize)]
struct ToldData {
    id: String,
    source: String,
    #[serde(default)]
    order_id: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    closed: bool,
    #[serde(default)]
    revision: u64,
    #[serde(default)]
    due: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    failures: Option<u64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    expires: Option<String>,
}

fn source_text(event: &Told) -> String {
    let d = &event.data;
    match event.kind.as_str() {
        "source.failing" => format!(
            "failing since {} ({} failed cycles): {}",
            d.since.as_deref().unwrap_or("?"),
            d.failures.unwrap_or(0),
            d.error.as_deref().unwrap_or("")
        ),
        "source.recovered" => format!(
            "recovered (failing since {}, {} failed cycles)",
            d.since.as_deref().unwrap_or("?"),
            d.failures.unwrap_or(0)
        ),
        "source.credentials_expiring" => {
            format!("API key expires on {}", d.expires.as_deref().unwrap_or("?"))
        }
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::sample_event;

    fn body(kind: EventType, order_id: &str, to: Option<&str>, closed: bool) -> String {
        let mut e = sample_event(kind);
        e.data.order_id = order_id.into();
        e.data.id = format!("evt_{order_id}_{kind}");
        e.data.to = to.map(Into::into);
        e.data.closed = closed;
        serde_json::to_string(&e).unwrap()
    }

    #[test]
    fn closings_come_first_then_orders_at_risk_then_other_changes() {
        use EventType::{Created, Overdue, SourceFailing, StatusChanged, Updated};
        let bodies = [
            (Updated, body(Updated, "1", None, false)),
            (
                StatusChanged,
                body(StatusChanged, "2", Some("Closed"), true),
            ),
            (Overdue, body(Overdue, "3", Some("Current"), false)),
            (
                StatusChanged,
                body(StatusChanged, "1", Some("Delayed"), false),
            ),
            (SourceFailing, body(SourceFailing, "", None, false)),
        ];
        let held: Vec<(EventType, Option<&str>)> = bodies
            .iter()
            .map(|(k, b)| (*k, Some(b.as_str())))
            .chain([(Created, None)])
            .collect();
        let overdue = [(
            "tracking".to_owned(),
            OverdueOrder {
                order_id: "9".into(),
                due: "2026-11-01T00:00:00Z".into(),
            },
        )];
        let start = 1_795_550_400_000;
        let d = Digest::build(
            "ops",
            None,
            (start, start + 86_400_000),
            7,
            &held,
            &overdue,
            start,
        );
        let lines: Vec<(&str, Part)> = d
            .data
            .orders
            .iter()
            .map(|l| (l.order_id.as_str(), l.part))
            .collect();
        assert_eq!(
            lines,
            [
                ("2", Part::Closed),
                ("3", Part::AtRisk),
                ("9", Part::AtRisk),
                ("1", Part::Changed),
            ]
        );
        // Every event counts, the one whose body was lost too.
        assert_eq!(d.data.events, 6);
        assert_eq!(d.data.counts["order.status_changed"], 2);
        assert_eq!(d.data.counts["order.created"], 1);
        assert_eq!(d.data.sources.len(), 1);
        // One line for order 1's two events, its last status.
        let one = &d.data.orders[3];
        assert_eq!(one.ids.len(), 2);
        assert_eq!(one.to.as_deref(), Some("Delayed"));
        assert!(one.summary().contains("2 events"), "{}", one.summary());
        assert!(d.data.orders[2].summary().contains("before the baseline"));
        assert_eq!(d.data.id, digest_id("ops", start, 7));
        assert_ne!(d.data.id, digest_id("ops", start + 1, 7));
        assert_ne!(d.data.id, digest_id("ops", start, 8));
        assert_ne!(d.data.id, digest_id("other", start, 7));
        // As stored: a document that begins with its type, read back whole.
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.starts_with(r#"{"type":"digest""#), "{json}");
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let text = d.text_lines().join("\n");
        assert!(
            text.starts_with(
                "orderwatch digest for ops: 6 events, 2026-11-24 20:00 → 2026-11-25 20:00 (UTC)"
            ),
            "{text}"
        );
    }
}
