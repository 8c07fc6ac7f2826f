//! The story of one order, for the HTTP API: each of its events still in the
//! event log, oldest first, and for each the state of its delivery at every
//! sink it was routed to: still queued, being retried, delivered (from the
//! delivery log) or dead-lettered.
//!
//! Everything is a range scan or a key lookup: the order's events come from
//! the `events_by_order` index, its pending entries from `outbox_order`, its
//! deliveries from the `deliveries` log (keyed by sequence first) and its
//! dead letters by key, per sink.

use super::{DeadLetter, OutboxEntry, SledStore, StoreError, first_components, keys, read_u64};
use crate::event::Event;
use serde::Serialize;
use std::collections::HashMap;

/// One event of an order, and where its deliveries stand.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub seq: u64,
    pub event: Event,
    /// One per sink the event went to, in sink name order.
    pub deliveries: Vec<DeliveryState>,
}

/// Where the delivery of one event to one sink stands.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryState {
    pub sink: String,
    pub state: DeliveryStatus,
    /// Attempts so far: the failed ones while pending, all of them (the
    /// successful one included) once delivered.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Unix ms: when it was delivered or dead-lettered, or when the next
    /// attempt is due.
    pub at_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Pending, not attempted yet (or not failed yet).
    Queued,
    /// Pending after failed attempts.
    Retrying,
    Delivered,
    DeadLettered,
}

/// A delivery log record: attempts, then the unix ms it was delivered at.
pub(crate) fn encode_delivery(attempts: u32, at_ms: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&attempts.to_be_bytes());
    out[4..].copy_from_slice(&at_ms.to_be_bytes());
    out
}

pub(crate) fn decode_delivery(bytes: &[u8]) -> Option<(u32, u64)> {
    if bytes.len() != 12 {
        return None;
    }
    let attempts = u32::from_be_bytes(bytes[..4].try_into().ok()?);
    Some((attempts, read_u64(&bytes[4..])?))
}

impl SledStore {
    pub(crate) fn timeline(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<Vec<TimelineEntry>, StoreError> {
        let mut pending = self.pending_of_order(source, order_id)?;
        let dead_sinks = first_components(&self.dead_letters)?;
        let mut out = Vec::new();
        for item in self
            .events_by_order
            .scan_prefix(keys::event_order_prefix(source, order_id))
        {
            let (k, _) = item?;
            let Some(seq) = keys::tail_u64(&k) else {
                continue;
            };
            let Some(event) = self.logged_event(seq)? else {
                continue;
            };
            let mut deliveries = pending.remove(&seq).unwrap_or_default();
            for item in self.deliveries.scan_prefix(seq.to_be_bytes()) {
                let (k, v) = item?;
                let sink = String::from_utf8_lossy(&k[8..]).into_owned();
                let (attempts, at_ms) = decode_delivery(&v)
                    .ok_or_else(|| StoreError::Damaged(format!("delivery log of {seq}")))?;
                deliveries.push(DeliveryState {
                    sink,
                    state: DeliveryStatus::Delivered,
                    attempts,
                    last_error: None,
                    at_ms: Some(at_ms),
                });
            }
            for sink in &dead_sinks {
                let Some(v) = self.dead_letters.get(keys::dead_letter(sink, seq))? else {
                    continue;
                };
                let dead: DeadLetter = serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Damaged(format!("dead letter: {e}")))?;
                deliveries.push(DeliveryState {
                    sink: sink.clone(),
                    state: DeliveryStatus::DeadLettered,
                    attempts: dead.entry.attempts,
                    last_error: Some(dead.reason),
                    at_ms: Some(dead.dead_ms),
                });
            }
            deliveries.sort_by(|a, b| a.sink.cmp(&b.sink));
            out.push(TimelineEntry {
                seq,
                event,
                deliveries,
            });
        }
        Ok(out)
    }

    /// The pending outbox entries of one order, by sequence.
    fn pending_of_order(
        &self,
        source: &str,
        order_id: &str,
    ) -> Result<HashMap<u64, Vec<DeliveryState>>, StoreError> {
        let mut out: HashMap<u64, Vec<DeliveryState>> = HashMap::new();
        for sink in first_components(&self.outbox_order)? {
            for item in self
                .outbox_order
                .scan_prefix(keys::order_prefix(&sink, source, order_id))
            {
                let (k, v) = item?;
                let (Some(seq), Some(due_ms)) = (keys::tail_u64(&k), read_u64(&v)) else {
                    continue;
                };
                let Some(value) = self.outbox.get(keys::outbox(&sink, due_ms, seq))? else {
                    continue;
                };
                let entry: OutboxEntry = serde_json::from_slice(&value)
                    .map_err(|e| StoreError::Damaged(format!("outbox entry: {e}")))?;
                out.entry(seq).or_default().push(DeliveryState {
                    sink: sink.clone(),
                    state: if entry.attempts == 0 {
                        DeliveryStatus::Queued
                    } else {
                        DeliveryStatus::Retrying
                    },
                    attempts: entry.attempts,
                    last_error: entry.last_error,
                    at_ms: Some(due_ms),
                });
            }
        }
        Ok(out)
    }

    /// The logged event of `seq`, if it is still in the log; one that does
    /// not decode is left out (and said), not an error for the whole order.
    fn logged_event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        let Some(body) = self.events.get(seq.to_be_bytes())? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Event>(&body) {
            Ok(event) => Ok(Some(event)),
            Err(e) => {
                tracing::warn!(
                    seq,
                    "a logged event does not decode, left out of its order's timeline: {e}"
                );
                Ok(None)
            }
        }
    }
}
