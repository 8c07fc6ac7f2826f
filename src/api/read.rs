//! The read endpoints: sources, orders and one order's timeline, the event
//! log, the outbox per sink, and the dead letters. Lists are paginated
//! ([`super::page`]); each page reads a bounded part of the store.

use super::page;
use super::{ApiError, ApiState, rfc3339, rfc3339_ms};
use crate::event::Event;
use crate::store::{ChangePosition, Snapshot};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::Arc;

/// Orders a page holds unless `limit` says otherwise, and at most.
pub const ORDERS_LIMIT: usize = 100;
pub const ORDERS_MAX_LIMIT: usize = 1000;
/// Events and dead letters a page holds by default, and at most.
pub const LIST_LIMIT: usize = 50;
pub const LIST_MAX_LIMIT: usize = 1000;
/// Snapshots one page of `orders` reads at most: with a filter that few
/// orders match, a page may hold fewer than `limit` (even none) and still
/// give a `next_cursor`, so no request reads a whole large store.
pub const ORDERS_SCAN: usize = 10_000;

/// Store reads are synchronous and a page may read thousands of records:
/// on a blocking thread, so the pollers and sinks sharing the runtime never
/// wait behind a reader.
async fn off_the_runtime<T: Send + 'static>(
    state: Arc<ApiState>,
    read: impl FnOnce(&ApiState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || read(&state))
        .await
        .unwrap_or_else(|_| Err(ApiError::internal()))
}

pub async fn sources(State(state): State<Arc<ApiState>>) -> Json<Value> {
    let statuses = state.readiness.statuses();
    let list: Vec<Value> = state
        .config
        .sources
        .iter()
        .map(|source| {
            let s = statuses.get(&source.name);
            let health = match s {
                None => "pending",
                Some(s) if s.pending => "pending",
                Some(s) if s.failing => "failing",
                Some(s) if s.ready => "ok",
                Some(_) => "late",
            };
            serde_json::json!({
                "name": source.name,
                "api": api_name(source.api),
                "interval": humantime::format_duration(source.interval).to_string(),
                "health": health,
                "polling": s.is_some_and(|s| s.polling),
                "consecutive_failures": s.map_or(0, |s| s.failures),
                "last_error": s.and_then(|s| s.last_error.clone()),
                "last_cycle_at": s.and_then(|s| s.last_cycle_at).map(rfc3339),
                "last_ok_at": s.and_then(|s| s.last_ok_at).map(rfc3339),
                "next_poll_at": s.and_then(|s| s.next_poll_at).map(rfc3339),
            })
        })
        .collect();
    Json(serde_json::json!({ "sources": list }))
}

fn api_name(api: crate::config::ApiKind) -> &'static str {
    match api {
        crate::config::ApiKind::OrderTracking => "order-tracking",
        crate::config::ApiKind::Ordering => "ordering",
        crate::config::ApiKind::Generic => "generic",
    }
}

#[derive(Deserialize)]
pub struct OrdersQuery {
    source: Option<String>,
    status: Option<String>,
    closed: Option<String>,
    q: Option<String>,
    id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    sort: Option<String>,
}

/// The order of a list of orders.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OrdersSort {
    /// The store's key order: source, then id.
    Id,
    /// The latest change first, by the store's index of change times.
    Changed,
}

/// One order in a list.
#[derive(Serialize)]
struct OrderItem {
    source: String,
    order_id: String,
    status: Option<String>,
    closed: bool,
    listed: bool,
    revision: u64,
    changed_at: String,
}

pub async fn orders(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<OrdersQuery>,
) -> Result<Json<Value>, ApiError> {
    off_the_runtime(state, move |state| orders_page(state, query)).await
}

fn orders_page(state: &ApiState, query: OrdersQuery) -> Result<Json<Value>, ApiError> {
    let limit = page::limit(query.limit.as_deref(), ORDERS_LIMIT, ORDERS_MAX_LIMIT)?;
    let closed = match query.closed.as_deref() {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::bad_request("closed must be true or false")),
    };
    let sort = match query.sort.as_deref().map(str::trim) {
        None | Some("") | Some("id") => OrdersSort::Id,
        Some("changed") => OrdersSort::Changed,
        Some(_) => return Err(ApiError::bad_request("sort must be id or changed")),
    };
    let in_store = state.store.sources()?;
    let sources = match query.source.as_deref().filter(|s| !s.is_empty()) {
        Some(name) => vec![known_source(state, &in_store, name)?],
        None => in_store,
    };
    let needle = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_lowercase);
    let status = query.status.as_deref().filter(|s| !s.is_empty());
    let id = query.id.as_deref().filter(|s| !s.is_empty());

    let wanted = |source: &str, order_id: &str, snap: &Snapshot| -> bool {
        if status.is_some() && snap.status.as_deref() != status {
            return false;
        }
        if closed.is_some_and(|c| c != is_closed(state, source, snap)) {
            return false;
        }
        match &needle {
            None => true,
            Some(q) => {
                order_id.to_lowercase().contains(q.as_str())
                    || snap.order.to_lowercase().contains(q.as_str())
            }
        }
    };

    let mut items = Vec::new();
    // An exact id is a direct read in each source, not a scan.
    if let Some(id) = id {
        for source in &sources {
            if let Some(snap) = state.store.snapshot(source, id)?
                && wanted(source, id, &snap)
            {
                items.push(item(state, source, id, &snap));
            }
        }
        return Ok(Json(
            serde_json::json!({ "orders": items, "next_cursor": null }),
        ));
    }

    // By change time, the cursor is the last order's place in the index.
    // An order that changes during a walk moves to its new time, almost
    // always above the cursor: the rest of the walk passes it over (a new
    // walk shows it first). Unchanged orders are each shown once.
    if sort == OrdersSort::Changed {
        let below: Option<ChangePosition> = page::decode(query.cursor.as_deref())?;
        let mut last: Option<ChangePosition> = None;
        let mut more = false;
        for (scanned, row) in state.store.orders_by_change(below.as_ref()).enumerate() {
            if items.len() == limit || scanned == ORDERS_SCAN {
                more = true;
                break;
            }
            let row = row?;
            let (source, order_id) = (&row.at.source, &row.at.order_id);
            if sources.contains(source) && wanted(source, order_id, &row.snapshot) {
                items.push(item(state, source, order_id, &row.snapshot));
            }
            last = Some(row.at);
        }
        return Ok(orders_answer(items, more, last));
    }

    let after: Option<(String, String)> = page::decode(query.cursor.as_deref())?;
    let mut scanned = 0;
    let mut last: Option<(String, String)> = None;
    let mut more = false;
    'sources: for source in &sources {
        let rows = match &after {
            Some((s, _)) if source < s => continue,
            Some((s, id)) if source == s => state.store.snapshots_of_after(source, id),
            _ => state.store.snapshots_of(source),
        };
        for row in rows {
            if items.len() == limit || scanned == ORDERS_SCAN {
                more = true;
                break 'sources;
            }
            let (order_id, snap) = row?;
            scanned += 1;
            if wanted(source, &order_id, &snap) {
                items.push(item(state, source, &order_id, &snap));
            }
            last = Some((source.clone(), order_id));
        }
    }
    Ok(orders_answer(items, more, last))
}

/// A page of orders; its cursor names `last` when there may be more.
fn orders_answer<T: Serialize>(items: Vec<OrderItem>, more: bool, last: Option<T>) -> Json<Value> {
    let next_cursor = match (more, last) {
        (true, Some(at)) => Some(page::encode(&at)),
        _ => None,
    };
    Json(serde_json::json!({ "orders": items, "next_cursor": next_cursor }))
}

/// A source the config or the store knows, else a 404 naming the known ones.
fn known_source(state: &ApiState, in_store: &[String], name: &str) -> Result<String, ApiError> {
    if state.config.source(name).is_some() || in_store.iter().any(|s| s == name) {
        return Ok(name.to_owned());
    }
    let mut known: Vec<&str> = state
        .config
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for s in in_store {
        if !known.contains(&s.as_str()) {
            known.push(s);
        }
    }
    Err(ApiError::not_found(format!(
        "no source named {name} (sources: {})",
        known.join(", ")
    )))
}

fn is_closed(state: &ApiState, source: &str, snap: &Snapshot) -> bool {
    match (state.config.source(source), &snap.status) {
        (Some(cfg), Some(status)) => cfg.closed_statuses.iter().any(|c| c == status),
        _ => false,
    }
}

fn item(state: &ApiState, source: &str, order_id: &str, snap: &Snapshot) -> OrderItem {
    OrderItem {
        source: source.to_owned(),
        order_id: order_id.to_owned(),
        status: snap.status.clone(),
        closed: is_closed(state, source, snap),
        listed: snap.listed,
        revision: snap.revision,
        changed_at: snap.changed_at.clone(),
    }
}

/// One order as last read, and its timeline.
pub async fn order(
    State(state): State<Arc<ApiState>>,
    Path((source, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    off_the_runtime(state, move |state| order_story(state, &source, &id)).await
}

fn order_story(state: &ApiState, source: &str, id: &str) -> Result<Json<Value>, ApiError> {
    let Some(snap) = state.store.snapshot(source, id)? else {
        return Err(ApiError::not_found(format!(
            "no order {id} of source {source} in the store"
        )));
    };
    let order: Value = serde_json::from_str(&snap.order).unwrap_or(Value::Null);
    let timeline = timeline(state, source, id)?;
    let summary = item(state, source, id, &snap);
    Ok(Json(serde_json::json!({
        "source": summary.source,
        "order_id": summary.order_id,
        "status": summary.status,
        "closed": summary.closed,
        "listed": summary.listed,
        "revision": summary.revision,
        "changed_at": summary.changed_at,
        "order": order,
        "timeline": timeline,
    })))
}

/// Every logged event of one order, oldest first, each with its delivery
/// to each sink: queued, retrying (attempts, last error), delivered (when,
/// after how many attempts) or dead-lettered.
fn timeline(state: &ApiState, source: &str, id: &str) -> Result<Vec<Value>, ApiError> {
    let entries = state.store.timeline(source, id)?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let deliveries: Vec<Value> = entry
                .deliveries
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "sink": d.sink,
                        "state": d.state,
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                        "at": d.at_ms.map(rfc3339_ms),
                    })
                })
                .collect();
            serde_json::json!({
                "seq": entry.seq,
                "event": entry.event,
                "deliveries": deliveries,
            })
        })
        .collect())
}

#[derive(Deserialize)]
pub struct EventsQuery {
    source: Option<String>,
    order: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The event log, newest first; the cursor is the log position of the last
/// event shown.
pub async fn events(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    off_the_runtime(state, move |state| events_page(state, query)).await
}

fn events_page(state: &ApiState, query: EventsQuery) -> Result<Json<Value>, ApiError> {
    let limit = page::limit(query.limit.as_deref(), LIST_LIMIT, LIST_MAX_LIMIT)?;
    // The cursor is the log sequence of the last event shown: the next page
    // starts below it, wherever the log's trimming has got to.
    let before: u64 = page::decode::<u64>(query.cursor.as_deref())?.unwrap_or(u64::MAX);
    let kind = match query.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(
            k.parse::<crate::event::EventType>()
                .map_err(ApiError::bad_request)?,
        ),
        None => None,
    };
    let source = query.source.as_deref().filter(|s| !s.is_empty());
    let order = query.order.as_deref().filter(|s| !s.is_empty());
    let mut events: Vec<Box<RawValue>> = Vec::new();
    let mut last_seq = None;
    let mut more = false;
    for item in state.store.events_before(before) {
        let (seq, text) = item?;
        let Ok(event) = serde_json::from_str::<Event>(&text) else {
            continue;
        };
        let wanted = source.is_none_or(|s| s == event.data.source)
            && order.is_none_or(|o| o == event.data.order_id)
            && kind.is_none_or(|k| k == event.kind);
        if !wanted {
            continue;
        }
        if events.len() == limit {
            more = true;
            break;
        }
        // The stored text itself: each event exactly as delivered.
        let Ok(raw) = RawValue::from_string(text) else {
            continue;
        };
        events.push(raw);
        last_seq = Some(seq);
    }
    let next_cursor = match (more, last_seq) {
        (true, Some(seq)) => Some(page::encode(&seq)),
        _ => None,
    };
    Ok(Json(
        serde_json::json!({ "events": events, "next_cursor": next_cursor }),
    ))
}

/// Per sink: entries waiting, events kept for its digest, the oldest due
/// time, paused, dead letters and the last failure. Sinks no longer configured but with entries
/// waiting are listed too (`configured: false`).
pub async fn outbox(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let mut names: Vec<(String, Option<&'static str>)> = state
        .config
        .sinks
        .iter()
        .map(|s| (s.name.clone(), Some(s.type_name)))
        .collect();
    for name in state.store.outbox_sinks()? {
        if !names.iter().any(|(n, _)| *n == name) {
            names.push((name, None));
        }
    }
    let mut sinks = Vec::new();
    for (name, kind) in names {
        let control = state.sinks.get(&name);
        let last_error = control.and_then(|c| c.last_error());
        sinks.push(serde_json::json!({
            "name": name,
            "type": kind,
            "configured": kind.is_some(),
            "depth": state.store.outbox_depth(&name)?,
            "kept_for_digest": state.store.kept_for_digest(&name)?,
            "oldest_due_at": state.store.next_due(&name)?.map(rfc3339_ms),
            "paused": control.is_some_and(|c| c.is_paused()),
            "dead_letters": state.store.dead_letter_count(&name)?,
            "last_error": last_error.as_ref().map(|(_, e)| e.clone()),
            "last_error_at": last_error.map(|(at, _)| rfc3339(at)),
        }));
    }
    Ok(Json(serde_json::json!({ "sinks": sinks })))
}

#[derive(Deserialize)]
pub struct DeadLettersQuery {
    sink: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// One dead letter as the API and `dead-letters list --json` show it.
pub fn dead_letter_json(dead: &crate::store::DeadLetter) -> Value {
    let e = &dead.entry;
    serde_json::json!({
        "id": format!("{}:{}", e.sink, e.seq),
        "sink": e.sink,
        "event_id": e.event_id,
        "type": e.event_type,
        "source": e.source,
        "order_id": e.order_id,
        "attempts": e.attempts,
        "reason": dead.reason,
        "dead_at": rfc3339_ms(dead.dead_ms),
    })
}

/// The dead letters in key order (sink, then sequence).
pub async fn dead_letters(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<DeadLettersQuery>,
) -> Result<Json<Value>, ApiError> {
    off_the_runtime(state, move |state| dead_letters_page(state, query)).await
}

fn dead_letters_page(state: &ApiState, query: DeadLettersQuery) -> Result<Json<Value>, ApiError> {
    let limit = page::limit(query.limit.as_deref(), LIST_LIMIT, LIST_MAX_LIMIT)?;
    let after: Option<(String, u64)> = page::decode(query.cursor.as_deref())?;
    let sink = query.sink.as_deref().filter(|s| !s.is_empty());
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for dead in state.store.dead_letters()? {
        let e = &dead.entry;
        if sink.is_some_and(|s| s != e.sink) {
            continue;
        }
        if let Some((s, seq)) = &after
            && (e.sink.as_str(), e.seq) <= (s.as_str(), *seq)
        {
            continue;
        }
        if out.len() == limit {
            more = true;
            break;
        }
        out.push(dead_letter_json(&dead));
        last = Some((e.sink.clone(), e.seq));
    }
    let next_cursor = match (more, last) {
        (true, Some(at)) => Some(page::encode(&at)),
        _ => None,
    };
    Ok(Json(
        serde_json::json!({ "dead_letters": out, "next_cursor": next_cursor }),
    ))
}
