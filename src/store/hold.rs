//! What the routes chose beyond "deliver now": an entry held for a route's
//! quiet hours (an outbox entry due when they end), and an event kept for
//! a sink's digest.
//!
//! Kept events wait in `digest_held` (`sink \0 seq` → [`OutboxEntry`]),
//! each holding a reference to its body like an outbox entry. When a
//! period ends, [`SledStore::make_digest`] turns them into one outbox
//! entry, in one transaction: the kept entries removed, their bodies let
//! go, a delivery-log record for each, and the digest's body and entry
//! written. A crash before it keeps every event; after it the digest is one
//! entry with a fixed id, delivered (and retried, and dead-lettered) like
//! any other.

use super::handle::Store;
use super::{META_EVENT_SEQ, OutboxEntry, SledStore, StoreError, keys, log, now_ms, read_u64};
use crate::event::EventType;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

/// Where one event goes at one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub sink: String,
    pub hold: Hold,
}

/// When an event routed to a sink leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Now.
    Now,
    /// At this unix ms: the end of a route's quiet hours.
    Until(u64),
    /// With the sink's digest, at the end of its period.
    Digest,
}

impl From<&str> for Routed {
    fn from(sink: &str) -> Routed {
        Routed {
            sink: sink.to_owned(),
            hold: Hold::Now,
        }
    }
}

impl From<String> for Routed {
    fn from(sink: String) -> Routed {
        Routed {
            sink,
            hold: Hold::Now,
        }
    }
}

/// An event kept for a digest, with its key and body.
#[derive(Debug, Clone)]
pub struct HeldEntry {
    pub(super) key: Vec<u8>,
    pub entry: OutboxEntry,
    /// The event JSON; `None` when a damaged store lost it.
    pub body: Option<String>,
}

/// A digest ready to be queued: its id and its body (the webhook JSON).
pub struct NewDigest<'a> {
    pub sink: &'a str,
    pub id: &'a str,
    pub json: &'a str,
    pub entries: &'a [HeldEntry],
}

/// `digest_first \0 sink` in `meta`: until a sink's first digest is made,
/// the unix ms from which its digest looks for what to say (its first run,
/// then the last boundary that found nothing); empty once it is made.
fn first_key(sink: &str) -> Vec<u8> {
    let mut k = b"digest_first\0".to_vec();
    k.extend_from_slice(sink.as_bytes());
    k
}

/// `sink \0 seq`
pub(super) fn held_key(sink: &str, seq: u64) -> Vec<u8> {
    let mut k = keys::sink_prefix(sink);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Write `entry` where its hold puts it: the outbox (due now, or when the
/// quiet hours end: `max_age` then counts from there), or the digest's
/// kept events.
pub(super) fn place(
    outbox: &sled::transaction::TransactionalTree,
    outbox_order: &sled::transaction::TransactionalTree,
    digest_held: &sled::transaction::TransactionalTree,
    mut entry: OutboxEntry,
    hold: Hold,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let encode = |entry: &OutboxEntry| {
        serde_json::to_vec(entry)
            .map_err(|e| ConflictableTransactionError::Abort(StoreError::Damaged(e.to_string())))
    };
    let due = match hold {
        Hold::Digest => {
            digest_held.insert(held_key(&entry.sink, entry.seq), encode(&entry)?)?;
            return Ok(());
        }
        Hold::Now => entry.created_ms,
        Hold::Until(at) => at.max(entry.created_ms),
    };
    entry.created_ms = due;
    outbox.insert(keys::outbox(&entry.sink, due, entry.seq), encode(&entry)?)?;
    outbox_order.insert(
        keys::order_index(&entry.sink, &entry.source, &entry.order_id, entry.seq),
        &due.to_be_bytes(),
    )?;
    Ok(())
}

/// A kept event's record, if it decodes; one that does not is said when
/// `say` (when a digest is made, not on every look at the backlog).
fn kept_entry(bytes: &[u8], say: bool) -> Option<OutboxEntry> {
    match serde_json::from_slice(bytes) {
        Ok(entry) => Some(entry),
        Err(e) => {
            if say {
                tracing::warn!(
                    "an event kept for a digest cannot be read (a damaged store), and is left out: {e}"
                );
            }
            None
        }
    }
}

impl SledStore {
    /// The events kept for `sink`'s digest that were committed before
    /// `before_ms`, oldest first.
    pub(crate) fn held_for_digest(
        &self,
        sink: &str,
        before_ms: u64,
    ) -> Result<Vec<HeldEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.digest_held.scan_prefix(keys::sink_prefix(sink)) {
            let (k, v) = item?;
            // A record that no longer decodes (a damaged store) is passed
            // over: it must not keep every later digest from being made.
            let Some(entry) = kept_entry(&v, true) else {
                continue;
            };
            if entry.created_ms >= before_ms {
                continue;
            }
            let body = self.body(entry.seq)?;
            out.push(HeldEntry {
                key: k.to_vec(),
                entry,
                body,
            });
        }
        Ok(out)
    }

    /// When the first event kept for `sink`'s digest was committed (unix
    /// ms). One read (unless it is damaged): events are kept in sequence
    /// order, which is commit order.
    pub(crate) fn oldest_kept_for_digest(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        for item in self.digest_held.scan_prefix(keys::sink_prefix(sink)) {
            if let Some(entry) = kept_entry(&item?.1, false) {
                return Ok(Some(entry.created_ms));
            }
        }
        Ok(None)
    }

    /// Until `sink`'s first digest is made: since when it has been waiting
    /// for one (written as `now_ms` on the first call); `None` after.
    pub(crate) fn first_digest_since(
        &self,
        sink: &str,
        now_ms: u64,
        record: bool,
    ) -> Result<Option<u64>, StoreError> {
        let key = first_key(sink);
        match self.meta.get(&key)? {
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Ok(read_u64(&v).or(Some(now_ms))),
            None => {
                if record {
                    self.meta.insert(key, &now_ms.to_be_bytes())?;
                }
                Ok(Some(now_ms))
            }
        }
    }

    /// `sink`'s first digest is still to come: look again from `from_ms`.
    pub(crate) fn first_digest_from(&self, sink: &str, from_ms: u64) -> Result<(), StoreError> {
        self.meta.insert(first_key(sink), &from_ms.to_be_bytes())?;
        Ok(())
    }

    /// How many events are kept for `sink`'s digest.
    pub(crate) fn kept_for_digest(&self, sink: &str) -> Result<u64, StoreError> {
        Ok(self
            .digest_held
            .scan_prefix(keys::sink_prefix(sink))
            .count() as u64)
    }

    /// Turn `digest.entries` into one outbox entry of `digest.sink`, in one
    /// transaction. Returns `false` (and changes nothing) when they are no
    /// longer kept: another call made their digest already.
    pub(crate) fn make_digest(&self, digest: &NewDigest) -> Result<bool, StoreError> {
        let now = now_ms();
        let logged = super::timeline::encode_delivery(0, now);
        let trees = (
            &self.digest_held,
            &self.outbox,
            &self.outbox_order,
            &self.deliveries,
            &self.bodies,
            &self.body_refs,
            &self.events,
            &self.meta,
        );
        let made = trees.transaction(
            |(held, outbox, outbox_order, deliveries, bodies, body_refs, events, meta)| {
                for h in digest.entries {
                    if held.get(h.key.as_slice())?.is_none() {
                        return Ok(false);
                    }
                }
                for h in digest.entries {
                    held.remove(h.key.as_slice())?;
                    deliveries.insert(keys::delivery(h.entry.seq, digest.sink), &logged[..])?;
                    log::release_body(bodies, body_refs, events, h.entry.seq)?;
                }
                let seq = meta
                    .get(META_EVENT_SEQ)?
                    .and_then(|v| read_u64(&v))
                    .unwrap_or(0)
                    + 1;
                meta.insert(META_EVENT_SEQ, &seq.to_be_bytes())?;
                bodies.insert(&seq.to_be_bytes(), digest.json.as_bytes())?;
                body_refs.insert(&seq.to_be_bytes(), &1u32.to_be_bytes())?;
                // Digests have a lane of their own (no source, no order):
                // one sink's digests leave in the order they were made.
                let entry = OutboxEntry {
                    seq,
                    sink: digest.sink.to_owned(),
                    source: String::new(),
                    order_id: String::new(),
                    event_id: digest.id.to_owned(),
                    event_type: EventType::Digest,
                    attempts: 0,
                    created_ms: now,
                    last_error: None,
                };
                place(outbox, outbox_order, held, entry, Hold::Now)?;
                meta.insert(first_key(digest.sink), &[] as &[u8])?;
                Ok(true)
            },
        )?;
        Ok(made)
    }
}

impl Store {
    pub fn held_for_digest(
        &self,
        sink: &str,
        before_ms: u64,
    ) -> Result<Vec<HeldEntry>, StoreError> {
        self.with(|s| s.held_for_digest(sink, before_ms))
    }

    /// When the first event kept for `sink`'s digest was committed;
    /// `None` when none is.
    pub fn oldest_kept_for_digest(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        self.with(|s| s.oldest_kept_for_digest(sink))
    }

    /// Until `sink`'s first digest is made, since when it has waited for
    /// one; `record` writes `now_ms` as that time when there is none yet.
    pub fn first_digest_since(
        &self,
        sink: &str,
        now_ms: u64,
        record: bool,
    ) -> Result<Option<u64>, StoreError> {
        self.with(|s| s.first_digest_since(sink, now_ms, record))
    }

    pub fn first_digest_from(&self, sink: &str, from_ms: u64) -> Result<(), StoreError> {
        self.with(|s| s.first_digest_from(sink, from_ms))
    }

    /// How many events are kept for `sink`'s digest.
    pub fn kept_for_digest(&self, sink: &str) -> Result<u64, StoreError> {
        self.with(|s| s.kept_for_digest(sink))
    }

    pub fn make_digest(&self, digest: &NewDigest) -> Result<bool, StoreError> {
        self.with(|s| s.make_digest(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Commit, NewEvent};

    fn commit(store: &Store, id: &str, order: &str, sinks: Vec<Routed>) {
        store
            .commit(&Commit {
                source: "t".into(),
                events: vec![NewEvent {
                    event_id: id.into(),
                    event_type: EventType::StatusChanged,
                    order_id: order.into(),
                    json: format!("{{\"id\":\"{id}\"}}"),
                    sinks,
                }],
                ..Commit::default()
            })
            .unwrap();
    }

    #[test]
    fn a_damaged_kept_record_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let raw = store.opened().unwrap();
        raw.digest_held
            .insert(held_key("daily", 1), &b"not json"[..])
            .unwrap();
        let digest = Routed {
            sink: "daily".into(),
            hold: Hold::Digest,
        };
        commit(&store, "evt_2", "2", vec![digest]);
        assert!(store.oldest_kept_for_digest("daily").unwrap().is_some());
        let held = store.held_for_digest("daily", u64::MAX).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].entry.event_id, "evt_2");
    }
}
