//! Pure change detection: (last snapshot, order as read now) → what to store
//! and what to say. No I/O here; `poll` does the reading and the committing.
//!
//! One change of an order gives one event: a status change is
//! `order.status_changed` (its `changes` also list watched pointers that
//! changed with it); `order.updated` is for watched pointers changing while the
//! status did not. Other differences refresh the stored order silently.

mod order_id;
pub(crate) mod pointer;

use crate::event::{Change, Event, EventData, EventType};
use crate::store::Snapshot;
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::OnceLock;

/// What the diff needs of a source's config.
#[derive(Debug, Clone)]
pub struct Rules {
    pub source: String,
    pub id_field: String,
    pub status_field: String,
    pub watch: Vec<String>,
    pub closed_statuses: Vec<String>,
}

impl Rules {
    pub fn from_config(cfg: &crate::config::SourceConfig) -> Rules {
        Rules {
            source: cfg.name.clone(),
            id_field: cfg.id_field.clone(),
            status_field: cfg.status_field.clone(),
            watch: cfg.watch.clone(),
            closed_statuses: cfg.closed_statuses.clone(),
        }
    }

    fn is_closed(&self, status: Option<&str>) -> bool {
        status.is_some_and(|s| self.closed_statuses.iter().any(|c| c == s))
    }
}

/// An order as read from the API, with what the diff looks at.
#[derive(Debug, Clone)]
pub struct Observed {
    pub order_id: String,
    pub status: Option<String>,
    pub hash: u128,
    /// The JSON text exactly as the API sent it.
    pub raw: String,
    /// The parsed order, built on first use: a baseline or a change of an
    /// unwatched field never needs it, an event or a watched pointer does.
    value: OnceLock<Value>,
}

impl Observed {
    /// The order as a JSON value.
    pub fn value(&self) -> &Value {
        self.value
            .get_or_init(|| serde_json::from_str(&self.raw).unwrap_or(Value::Null))
    }
}

/// What a quiet cycle needs of an order: its id and the hash of its text.
/// Reads only the id from the text (no `Value` of the whole order). An
/// error says why the item is not an order orderwatch can follow.
pub fn identify(raw: &RawValue, rules: &Rules) -> Result<(String, u128), String> {
    if !raw.get().trim_start().starts_with('{') {
        return Err("the item is not a JSON object".to_owned());
    }
    let order_id = pointer::find(raw, &rules.id_field)
        .and_then(order_id::id_text)
        .ok_or_else(|| {
            format!(
                "the item has no usable id at {} (missing, null, empty or not a string or number)",
                rules.id_field
            )
        })?;
    Ok((order_id, Snapshot::hash_of(raw.get())))
}

/// Read an order: it must be a JSON object with an id at `id_field`.
pub fn observe(raw: &RawValue, rules: &Rules) -> Result<Observed, String> {
    let (order_id, hash) = identify(raw, rules)?;
    let status = match pointer::find(raw, &rules.status_field) {
        None => None,
        Some(found) => {
            let value: Value = serde_json::from_str(found.get())
                .map_err(|e| format!("an order is not valid JSON: {e}"))?;
            status_text(&value)
        }
    };
    Ok(Observed {
        status,
        hash,
        raw: raw.get().to_owned(),
        order_id,
        value: OnceLock::new(),
    })
}

fn status_text(status: &Value) -> Option<String> {
    match status {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// What to do with one order.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing to write.
    Unchanged,
    /// Store the new snapshot; nothing to say.
    Refreshed(Snapshot),
    /// Store the new snapshot and emit the event.
    Changed(Snapshot, Box<Event>),
    /// Delete the snapshot and emit the event.
    Removed(Box<Event>),
}

/// A new order (no snapshot yet): a silent baseline, or `order.created`.
pub fn first_seen(now: &Observed, rules: &Rules, announce: bool, timestamp: &str) -> Outcome {
    if !announce {
        return Outcome::Refreshed(snapshot_of(now, 0, true, timestamp));
    }
    let event = make_event(
        EventType::Created,
        rules,
        now,
        1,
        None,
        now.status.clone(),
        Vec::new(),
        now.value(),
        timestamp,
    );
    Outcome::Changed(snapshot_of(now, 1, true, timestamp), Box::new(event))
}

/// Compare an order with its snapshot. `listed` says whether it came from the
/// list (true) or from a detail call after it left the list (false).
pub fn compare(
    prev: &Snapshot,
    now: &Observed,
    rules: &Rules,
    listed: bool,
    timestamp: &str,
) -> Outcome {
    if prev.hash == now.hash {
        if prev.listed == listed {
            return Outcome::Unchanged;
        }
        let mut snap = prev.clone();
        snap.listed = listed;
        return Outcome::Refreshed(snap);
    }
    let old: Value = serde_json::from_str(&prev.order).unwrap_or(Value::Null);
    let mut changes = Vec::new();
    let status_changed = prev.status != now.status;
    if status_changed {
        changes.push(Change {
            path: rules.status_field.clone(),
            from: prev.status.clone().map_or(Value::Null, Value::String),
            to: now.status.clone().map_or(Value::Null, Value::String),
        });
    }
    for pointer in &rules.watch {
        if *pointer == rules.status_field {
            continue;
        }
        let before = old.pointer(pointer).cloned().unwrap_or(Value::Null);
        let after = now.value().pointer(pointer).cloned().unwrap_or(Value::Null);
        if before != after {
            changes.push(Change {
                path: pointer.clone(),
                from: before,
                to: after,
            });
        }
    }
    if changes.is_empty() {
        let mut snap = snapshot_of(now, prev.revision, listed, &prev.changed_at);
        snap.changed_at = prev.changed_at.clone();
        return Outcome::Refreshed(snap);
    }
    let kind = if status_changed {
        EventType::StatusChanged
    } else {
        EventType::Updated
    };
    let revision = prev.revision + 1;
    let (from, to) = if status_changed {
        (prev.status.clone(), now.status.clone())
    } else {
        (None, None)
    };
    let event = make_event(
        kind,
        rules,
        now,
        revision,
        from,
        to,
        changes,
        now.value(),
        timestamp,
    );
    Outcome::Changed(
        snapshot_of(now, revision, listed, timestamp),
        Box::new(event),
    )
}

/// The order is gone (its detail answered 404).
pub fn removed(order_id: &str, prev: &Snapshot, rules: &Rules, timestamp: &str) -> Outcome {
    let order: Value = serde_json::from_str(&prev.order).unwrap_or(Value::Null);
    let revision = prev.revision + 1;
    let id = Event::derive_id(
        &rules.source,
        order_id,
        EventType::Removed,
        revision,
        prev.status.as_deref(),
        None,
        &[],
    );
    Outcome::Removed(Box::new(Event {
        kind: EventType::Removed,
        timestamp: timestamp.to_owned(),
        data: EventData {
            id,
            source: rules.source.clone(),
            order_id: order_id.to_owned(),
            from: prev.status.clone(),
            to: None,
            closed: false,
            revision,
            changes: Vec::new(),
            order,
            ..EventData::default()
        },
    }))
}

fn snapshot_of(now: &Observed, revision: u64, listed: bool, timestamp: &str) -> Snapshot {
    Snapshot {
        revision,
        hash: now.hash,
        listed,
        status: now.status.clone(),
        changed_at: timestamp.to_owned(),
        order: now.raw.clone(),
    }
}

#[allow(clippy::too_many_arguments)]
fn make_event(
    kind: EventType,
    rules: &Rules,
    now: &Observed,
    revision: u64,
    from: Option<String>,
    to: Option<String>,
    changes: Vec<Change>,
    order: &Value,
    timestamp: &str,
) -> Event {
    let id = Event::derive_id(
        &rules.source,
        &now.order_id,
        kind,
        revision,
        from.as_deref(),
        to.as_deref(),
        &changes,
    );
    let closed = matches!(kind, EventType::StatusChanged | EventType::Created)
        && rules.is_closed(to.as_deref());
    Event {
        kind,
        timestamp: timestamp.to_owned(),
        data: EventData {
            id,
            source: rules.source.clone(),
            order_id: now.order_id.clone(),
            from,
            to,
            closed,
            revision,
            changes,
            order: order.clone(),
            ..EventData::default()
        },
    }
}

#[cfg(test)]
mod tests;
