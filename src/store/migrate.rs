//! Opening a store an older release wrote upgrades it, in one go, to
//! [`SCHEMA_VERSION`]:
//! - schemas 1 and 2 kept the event JSON inside every outbox entry and dead
//!   letter (a string inside JSON, once per sink) and again in the log: each
//!   body moves to `bodies`, the entries lose their copy, the log keeps only
//!   which order each event is about, the by-order index is built from it,
//!   and `body_refs` is counted from the entries;
//! - schemas 1 to 3 had no `changed` index (the orders by the time of
//!   their last change), and schemas 2 to 4 kept the orders still listed in
//!   a `listed` tree of their own: `changed` is built from the snapshots'
//!   `changed_at` and listed flags, then `listed` is dropped.
//!
//! A crash part-way leaves the old version number, and the next open runs
//! every step again: each one is written in transactions of a slice of
//! records that convert only what is still in the old form (an entry's body
//! is written in the same transaction that drops it from the entry), and
//! what is derived (`body_refs`, `changed`) is rebuilt from scratch. The
//! new version is written last, after a flush; an older release then refuses
//! the store.

use super::{
    DeadLetter, META_SCHEMA, OutboxEntry, SCHEMA_VERSION, SledStore, StoreError, changed, keys,
    log, read_u64,
};
use serde::Deserialize;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::HashMap;
use std::ops::Bound;

/// Records converted per transaction: bounded memory on a large outbox.
const SLICE: usize = 256;

/// What an old outbox entry has beyond today's.
#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(default)]
    event: Option<String>,
}

#[derive(Deserialize)]
struct LegacyDeadLetter {
    entry: LegacyEntry,
}

/// What an old log record (the event JSON) says about its order.
#[derive(Deserialize)]
struct EventHead {
    data: EventHeadData,
}

#[derive(Deserialize)]
struct EventHeadData {
    source: String,
    order_id: String,
}

#[derive(Deserialize)]
struct SeqOf {
    seq: u64,
}

#[derive(Deserialize)]
struct DeadSeqOf {
    entry: SeqOf,
}

impl SledStore {
    pub(super) fn migrate(&self, found: u64) -> Result<(), StoreError> {
        tracing::info!(
            state_dir = %self.dir.display(),
            "upgrading the store from schema {found} to {SCHEMA_VERSION} (once; the older release will refuse it afterwards)"
        );
        if found < 3 {
            self.bodies_out_of_outbox()?;
            self.bodies_out_of_dead_letters()?;
            self.bodies_out_of_log()?;
            self.count_body_refs()?;
            self.drop_unreferenced_bodies()?;
        }
        if found < 5 {
            self.build_changed()?;
            // Only once the index that replaces it is whole: a crash before
            // this leaves the old version, and the next open builds it again.
            self.db.drop_tree("listed")?;
            checkpoint()?;
        }
        self.db.flush()?;
        self.meta
            .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
        self.meta.flush()?;
        Ok(())
    }

    /// Schemas 1 to 4 had no `changed` tree with listed flags: built from
    /// the snapshots' change times and flags, from scratch, in slices: one
    /// batch of every key would hold them all in memory.
    fn build_changed(&self) -> Result<(), StoreError> {
        self.changed.clear()?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for item in self.snapshots.iter() {
            let (k, v) = item?;
            if let Some((ms, listed)) = changed::place_of(&v) {
                batch.insert(keys::changed(ms, &k), changed::flag(listed));
                in_batch += 1;
            }
            if in_batch == 1000 {
                self.changed.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
                checkpoint()?;
            }
        }
        self.changed.apply_batch(batch)?;
        checkpoint()
    }

    /// Outbox entries that still carry their event: the body to `bodies`,
    /// the entry rewritten without it, together.
    fn bodies_out_of_outbox(&self) -> Result<(), StoreError> {
        self.convert(&self.outbox, "outbox entry", |value| {
            let legacy: LegacyEntry = serde_json::from_slice(value).ok()?;
            let entry: OutboxEntry = serde_json::from_slice(value).ok()?;
            Some((entry.seq, legacy.event, serde_json::to_vec(&entry).ok()?))
        })
    }

    fn bodies_out_of_dead_letters(&self) -> Result<(), StoreError> {
        self.convert(&self.dead_letters, "dead letter", |value| {
            let legacy: LegacyDeadLetter = serde_json::from_slice(value).ok()?;
            let dead: DeadLetter = serde_json::from_slice(value).ok()?;
            Some((
                dead.entry.seq,
                legacy.entry.event,
                serde_json::to_vec(&dead).ok()?,
            ))
        })
    }

    /// Rewrite each record of `tree` that `convert` finds a body in
    /// (`(seq, body, the record without it)`), writing the body beside it.
    /// A record that does not decode is left as it is, and said.
    fn convert(
        &self,
        tree: &sled::Tree,
        what: &str,
        convert: impl Fn(&[u8]) -> Option<(u64, Option<String>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut after: Option<sled::IVec> = None;
        loop {
            let start = after.clone().map_or(Bound::Unbounded, Bound::Excluded);
            let mut slice = Vec::new();
            let mut last = None;
            for item in tree.range::<sled::IVec, _>((start, Bound::Unbounded)) {
                let (k, v) = item?;
                last = Some(k.clone());
                match convert(&v) {
                    Some((seq, Some(body), value)) => slice.push((k, seq, body, value)),
                    Some((_, None, _)) => {}
                    None => tracing::warn!(
                        "an old {what} does not decode: left as it was (`orderwatch store salvage` counts it)"
                    ),
                }
                if slice.len() == SLICE {
                    break;
                }
            }
            let Some(last) = last else {
                return Ok(());
            };
            (tree, &self.bodies).transaction(|(tree, bodies)| {
                for (k, seq, body, value) in &slice {
                    bodies.insert(&seq.to_be_bytes(), body.as_bytes())?;
                    tree.insert(k, value.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })?;
            checkpoint()?;
            if slice.len() < SLICE {
                return Ok(());
            }
            after = Some(last);
        }
    }

    /// Old log records are the event JSON: the body to `bodies`, the record
    /// to which order it is about, and the by-order index entry, together.
    fn bodies_out_of_log(&self) -> Result<(), StoreError> {
        let mut after: Option<sled::IVec> = None;
        loop {
            let start = after.clone().map_or(Bound::Unbounded, Bound::Excluded);
            let mut slice = Vec::new();
            let mut last = None;
            for item in self
                .events
                .range::<sled::IVec, _>((start, Bound::Unbounded))
            {
                let (k, v) = item?;
                last = Some(k.clone());
                if log::decode_record(&v).is_some() {
                    continue;
                }
                let (Some(seq), Ok(head)) = (read_u64(&k), serde_json::from_slice::<EventHead>(&v))
                else {
                    tracing::warn!("an old event log record does not decode: left as it was");
                    continue;
                };
                slice.push((k, seq, v, head.data));
                if slice.len() == SLICE {
                    break;
                }
            }
            let Some(last) = last else {
                return Ok(());
            };
            (&self.events, &self.bodies, &self.events_by_order).transaction(
                |(events, bodies, by_order)| {
                    for (k, seq, body, head) in &slice {
                        bodies.insert(k, body)?;
                        events.insert(k, log::encode_record(&head.source, &head.order_id))?;
                        by_order.insert(
                            keys::event_of_order(&head.source, &head.order_id, *seq),
                            &[] as &[u8],
                        )?;
                    }
                    Ok::<_, ConflictableTransactionError<StoreError>>(())
                },
            )?;
            checkpoint()?;
            if slice.len() < SLICE {
                return Ok(());
            }
            after = Some(last);
        }
    }

    /// `body_refs`, from scratch: the outbox entries and dead letters of
    /// each sequence.
    pub(super) fn count_body_refs(&self) -> Result<(), StoreError> {
        let mut refs: HashMap<u64, u32> = HashMap::new();
        for item in self.outbox.iter() {
            if let Ok(e) = serde_json::from_slice::<SeqOf>(&item?.1) {
                *refs.entry(e.seq).or_default() += 1;
            }
        }
        for item in self.dead_letters.iter() {
            if let Ok(d) = serde_json::from_slice::<DeadSeqOf>(&item?.1) {
                *refs.entry(d.entry.seq).or_default() += 1;
            }
        }
        // An event kept for a digest holds its body like an outbox entry.
        for item in self.digest_held.iter() {
            if let Ok(e) = serde_json::from_slice::<SeqOf>(&item?.1) {
                *refs.entry(e.seq).or_default() += 1;
            }
        }
        self.body_refs.clear()?;
        checkpoint()?;
        let mut batch = sled::Batch::default();
        for (i, (seq, n)) in refs.into_iter().enumerate() {
            batch.insert(&seq.to_be_bytes(), &n.to_be_bytes());
            if i % 1000 == 999 {
                self.body_refs.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        self.body_refs.apply_batch(batch)?;
        checkpoint()
    }

    /// A body neither logged nor referred to (none should be): removed, so
    /// nothing leaks.
    pub(super) fn drop_unreferenced_bodies(&self) -> Result<(), StoreError> {
        for item in self.bodies.iter() {
            let (k, _) = item?;
            if !self.events.contains_key(&k)? && !self.body_refs.contains_key(&k)? {
                self.bodies.remove(&k)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
thread_local! {
    /// Steps of a migration left before it stops as if the process died
    /// there; `None` lets it run to the end.
    pub(crate) static STEPS_BEFORE_CRASH: std::cell::Cell<Option<u32>> =
        const { std::cell::Cell::new(None) };
}

/// Between two steps of a migration: where a test stops it.
fn checkpoint() -> Result<(), StoreError> {
    #[cfg(test)]
    {
        let left = STEPS_BEFORE_CRASH.with(|c| c.get());
        if let Some(left) = left {
            if left == 0 {
                return Err(StoreError::Engine("stopped mid-migration".into()));
            }
            STEPS_BEFORE_CRASH.with(|c| c.set(Some(left - 1)));
        }
    }
    Ok(())
}
