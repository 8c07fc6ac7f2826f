//! The event log and the event bodies.
//!
//! Each event's JSON (exactly the webhook body) is stored once, in `bodies`
//! under its sequence. The log (`events`) holds only which order each event
//! is about, and each outbox entry and dead letter names the sequence. A
//! body stays while its event is in the log (the last [`EVENT_LOG_LEN`]) or
//! an entry refers to it: `body_refs` counts the outbox entries and dead
//! letters of each sequence (burying and replaying move an entry, so they
//! keep the count), and whichever of a delivery or the log's trimming lets
//! go of a body last removes it.

use super::{EVENT_LOG_LEN, SledStore, StoreError, keys, read_u64};
use crate::event::Event;
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionalTree, UnabortableTransactionError,
};

/// The first byte of a log record; an old log held the event JSON itself,
/// which begins with `{`.
const RECORD: u8 = 3;

/// A log record: which order the event is about (`RECORD`, the source's
/// length, the source, the order id).
pub(crate) fn encode_record(source: &str, order_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + source.len() + order_id.len());
    out.push(RECORD);
    out.extend_from_slice(&(source.len() as u32).to_be_bytes());
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(order_id.as_bytes());
    out
}

/// `(source, order_id)` of a log record; `None` for anything else (an old
/// record holding the event JSON, or damage).
pub(crate) fn decode_record(bytes: &[u8]) -> Option<(String, String)> {
    let (&first, rest) = bytes.split_first()?;
    if first != RECORD || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    let source = rest.get(4..4 + len)?;
    let order = rest.get(4 + len..)?;
    Some((
        std::str::from_utf8(source).ok()?.to_owned(),
        std::str::from_utf8(order).ok()?.to_owned(),
    ))
}

/// One entry referring to `seq` is gone (delivered): count it down, and
/// remove the body once nothing refers to it and its event left the log.
pub(crate) fn release_body(
    bodies: &TransactionalTree,
    body_refs: &TransactionalTree,
    events: &TransactionalTree,
    seq: u64,
) -> Result<(), UnabortableTransactionError> {
    let key = seq.to_be_bytes();
    let left = body_refs
        .get(key)?
        .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
        .unwrap_or(0)
        .saturating_sub(1);
    if left > 0 {
        body_refs.insert(&key, &left.to_be_bytes())?;
        return Ok(());
    }
    body_refs.remove(&key)?;
    if events.get(key)?.is_none() {
        bodies.remove(&key)?;
    }
    Ok(())
}

impl SledStore {
    /// The body of `seq`, if the store has it.
    pub(crate) fn body(&self, seq: u64) -> Result<Option<String>, StoreError> {
        match self.bodies.get(seq.to_be_bytes())? {
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|e| StoreError::Damaged(format!("event body {seq}: {e}"))),
            None => Ok(None),
        }
    }

    /// The logged event of `seq`, if it is still in the log; one that does
    /// not decode is left out (and said), not an error for its whole order.
    pub(crate) fn logged_event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        if !self.events.contains_key(seq.to_be_bytes())? {
            return Ok(None);
        }
        let Some(body) = self.bodies.get(seq.to_be_bytes())? else {
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

    /// Drop the events older than the last [`EVENT_LOG_LEN`], with their
    /// entries in the by-order index, their deliveries, and their bodies
    /// unless an outbox entry or dead letter still refers to them.
    pub(crate) fn trim_event_log(&self, last_seq: u64) -> Result<(), StoreError> {
        let Some(keep_from) = last_seq.checked_sub(EVENT_LOG_LEN) else {
            return Ok(());
        };
        for item in self.events.range(..=keep_from.to_be_bytes()) {
            let (k, v) = item?;
            let Some(seq) = read_u64(&k) else {
                self.events.remove(k)?;
                continue;
            };
            let index = decode_record(&v).map(|(s, o)| keys::event_of_order(&s, &o, seq));
            (
                &self.events,
                &self.events_by_order,
                &self.bodies,
                &self.body_refs,
            )
                .transaction(|(events, by_order, bodies, body_refs)| {
                    events.remove(&k)?;
                    if let Some(index) = &index {
                        by_order.remove(index.as_slice())?;
                    }
                    if body_refs.get(&k)?.is_none() {
                        bodies.remove(&k)?;
                    }
                    Ok::<_, ConflictableTransactionError<StoreError>>(())
                })?;
        }
        // Keyed by sequence first: the deliveries of every trimmed event.
        let end = keep_from.saturating_add(1).to_be_bytes();
        for item in self.deliveries.range(..end) {
            self.deliveries.remove(item?.0)?;
        }
        Ok(())
    }

    /// The most recent events, newest first, as stored JSON.
    pub fn recent_events(&self) -> impl Iterator<Item = Result<String, StoreError>> + use<> {
        self.events_before(u64::MAX)
            .map(|item| item.map(|(_, json)| json))
    }

    /// The logged events whose sequence is below `before`, newest first,
    /// with their sequence: a page of the log starts where the last ended,
    /// even once the event it ended on has left the log.
    pub fn events_before(
        &self,
        before: u64,
    ) -> impl Iterator<Item = Result<(u64, String), StoreError>> + use<> {
        let bodies = self.bodies.clone();
        self.events
            .range(..before.to_be_bytes())
            .rev()
            .filter_map(move |item| {
                let seq = match item {
                    Ok((k, _)) => read_u64(&k)?,
                    Err(e) => return Some(Err(e.into())),
                };
                match bodies.get(seq.to_be_bytes()) {
                    Ok(Some(v)) => Some(
                        String::from_utf8(v.to_vec())
                            .map(|json| (seq, json))
                            .map_err(|e| StoreError::Damaged(format!("event log: {e}"))),
                    ),
                    Ok(None) => None,
                    Err(e) => Some(Err(e.into())),
                }
            })
    }
}
