//! The event log and the event bodies.
//!
//! Each event's JSON (exactly the webhook body) is stored once, in `bodies`
//! under its sequence. The log (`events`) holds only which order each event
//! is about, and each outbox entry and dead letter names the sequence. A
//! body stays while its event is in the log (the last [`EVENT_LOG_LEN`]) or
//! an entry refers to it, and whichever of a delivery or the log's trimming
//! lets go of a body last removes it.
//!
//! Who refers to a body: an event routed to two sinks or more has a count in
//! `body_refs` of its outbox entries and dead letters (burying and replaying
//! move an entry, so they keep the count). An event routed to one sink, by
//! far the common case, has no count: its log record names that sink, and
//! the trimming looks its one entry up (in `outbox_order`, or among the dead
//! letters) instead. That spares each such event a record written at commit
//! and removed again at delivery. A count of 1 (what an upgrade or a salvage
//! counts) means the same and is kept working.

use super::{EVENT_LOG_LEN, SledStore, StoreError, keys, read_u64};
use crate::event::Event;
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionalTree, UnabortableTransactionError,
};

/// The first byte of a log record; an old log held the event JSON itself,
/// which begins with `{`.
const RECORD: u8 = 3;
/// The first byte of a log record of an event routed to one sink, which the
/// record names (and which has no count in `body_refs`).
const RECORD_ONE_SINK: u8 = 4;

/// Which order a logged event is about, and the sink of its one entry when
/// it was routed to exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub source: String,
    pub order_id: String,
    pub sole_sink: Option<String>,
}

/// A log record: `RECORD`, the source's length, the source, the order id;
/// or `RECORD_ONE_SINK`, the source's and the order id's lengths, both, and
/// the sink.
pub(crate) fn encode_record(source: &str, order_id: &str, sole_sink: Option<&str>) -> Vec<u8> {
    let sink_len = sole_sink.map_or(0, |s| 4 + s.len());
    let mut out = Vec::with_capacity(5 + source.len() + order_id.len() + sink_len);
    out.push(if sole_sink.is_some() {
        RECORD_ONE_SINK
    } else {
        RECORD
    });
    out.extend_from_slice(&(source.len() as u32).to_be_bytes());
    out.extend_from_slice(source.as_bytes());
    if let Some(sink) = sole_sink {
        out.extend_from_slice(&(order_id.len() as u32).to_be_bytes());
        out.extend_from_slice(order_id.as_bytes());
        out.extend_from_slice(sink.as_bytes());
    } else {
        out.extend_from_slice(order_id.as_bytes());
    }
    out
}

/// A log record; `None` for anything else (an old record holding the event
/// JSON, or damage).
pub(crate) fn decode_record(bytes: &[u8]) -> Option<LogRecord> {
    let (&first, rest) = bytes.split_first()?;
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
    let (source, rest) = length_prefixed(rest)?;
    match first {
        RECORD => Some(LogRecord {
            source: text(source)?,
            order_id: text(rest)?,
            sole_sink: None,
        }),
        RECORD_ONE_SINK => {
            let (order_id, sink) = length_prefixed(rest)?;
            Some(LogRecord {
                source: text(source)?,
                order_id: text(order_id)?,
                sole_sink: Some(text(sink)?),
            })
        }
        _ => None,
    }
}

/// A u32 length, that many bytes, and the rest.
fn length_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = &bytes[4..];
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// One entry referring to `seq` is gone (delivered): count it down, and
/// remove the body once nothing refers to it and its event left the log.
/// Returns whether the event is still in the log.
pub(crate) fn release_body(
    bodies: &TransactionalTree,
    body_refs: &TransactionalTree,
    events: &TransactionalTree,
    seq: u64,
) -> Result<bool, UnabortableTransactionError> {
    let key = seq.to_be_bytes();
    let logged = events.get(key)?.is_some();
    // No count: the event went to this one sink, whose entry this was.
    if let Some(count) = body_refs.get(key)? {
        let left = count
            .as_ref()
            .try_into()
            .map_or(0, u32::from_be_bytes)
            .saturating_sub(1);
        if left > 0 {
            body_refs.insert(&key, &left.to_be_bytes())?;
            return Ok(logged);
        }
        body_refs.remove(&key)?;
    }
    if !logged {
        bodies.remove(&key)?;
    }
    Ok(logged)
}

/// Whether an outbox entry or a dead letter still refers to the body of
/// `seq`, which leaves the log now: its count, or, for an event routed to
/// one sink, that sink's entry. A record that does not decode (damage)
/// counts as referred to only by its count, as before there were records
/// naming a sink.
fn still_referred(
    trees: &TrimTrees<'_>,
    key: &[u8; 8],
    seq: u64,
    record: Option<&LogRecord>,
) -> Result<bool, UnabortableTransactionError> {
    if trees.body_refs.get(key)?.is_some() {
        return Ok(true);
    }
    let Some(LogRecord {
        source,
        order_id,
        sole_sink: Some(sink),
    }) = record
    else {
        return Ok(false);
    };
    Ok(trees
        .outbox_order
        .get(keys::order_index(sink, source, order_id, seq))?
        .is_some()
        || trees
            .dead_letters
            .get(keys::dead_letter(sink, seq))?
            .is_some())
}

/// The trees one event's trimming reads and writes, in one transaction (so
/// a delivery of the same event either sees the event still logged, or
/// finds its body's fate already decided).
struct TrimTrees<'a> {
    body_refs: &'a TransactionalTree,
    outbox_order: &'a TransactionalTree,
    dead_letters: &'a TransactionalTree,
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
            let record = decode_record(&v);
            let index = record
                .as_ref()
                .map(|r| keys::event_of_order(&r.source, &r.order_id, seq));
            let key = seq.to_be_bytes();
            (
                &self.events,
                &self.events_by_order,
                &self.bodies,
                &self.body_refs,
                &self.outbox_order,
                &self.dead_letters,
            )
                .transaction(
                    |(events, by_order, bodies, body_refs, outbox_order, dead_letters)| {
                        events.remove(&k)?;
                        if let Some(index) = &index {
                            by_order.remove(index.as_slice())?;
                        }
                        let trees = TrimTrees {
                            body_refs,
                            outbox_order,
                            dead_letters,
                        };
                        if !still_referred(&trees, &key, seq, record.as_ref())? {
                            bodies.remove(&k)?;
                        }
                        Ok::<_, ConflictableTransactionError<StoreError>>(())
                    },
                )?;
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
