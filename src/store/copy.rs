//! `orderwatch store copy --to URL`: a stopped sled store copied into an
//! empty postgres store, record for record, so that moving up needs no new
//! baseline: snapshots (with their listed flags), the outbox (each entry
//! due when it was, attempts kept), dead letters, the event log with its
//! bodies and delivery log, baseline marks, incremental cursors and source
//! health, the events kept for digests (and since when each sink's first
//! digest has waited), the timer index (what was told of each due date and stalled
//! status, and what is armed: rebuilding it instead would pass over what
//! came due while the store moved), and the event sequence, so the next
//! event follows the last.
//!
//! The sled store is opened as `run` would open it (so a running
//! orderwatch holding it makes the copy refuse, and an old schema is
//! upgraded first), and only read. The copy is one transaction on the
//! postgres side: it lands whole or not at all. A store that does not
//! open is `store salvage`'s work, before a copy.

use super::postgres::{CopyChunk, LoggedEvent, PgStore};
use super::{
    DeadLetter, LOCK_GRACE, META_EVENT_SEQ, OutboxEntry, SledStore, StoreError, keys, log,
    read_u64, refuse_files_in_the_way, timeline,
};
use std::path::Path;

/// Records sent to the database in one statement.
const CHUNK: usize = 1_000;

/// What was copied, table by table.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// The store copied into: host, port and database.
    pub at: String,
    pub tables: Vec<(&'static str, u64)>,
}

/// Copy the sled store in `from` into the (empty) postgres store at `to`.
pub fn copy(from: &Path, to: &str) -> Result<CopyReport, StoreError> {
    refuse_files_in_the_way(from)?;
    if !from.join("db").is_file() {
        return Err(StoreError::Missing {
            dir: from.to_owned(),
        });
    }
    let sled = SledStore::open(from, LOCK_GRACE)?;
    let target = PgStore::open(to, true)?;
    let mut import = target.import()?;
    let mut refused = false;
    let read = read_all(&sled, &mut |chunk| {
        refused = import.send(chunk).is_err();
        !refused
    });
    let finished = import.finish();
    match read {
        Ok(mut report) => finished.map(|()| {
            report.at = target.describe();
            report
        }),
        // The database's own refusal (not empty, unreachable) says more
        // than the reader stopping because of it.
        Err(e) if refused => Err(finished.err().unwrap_or(e)),
        Err(e) => Err(e),
    }
}

/// Send every record of `sled` to `send`, which answers false once the
/// copy has failed.
fn read_all(
    sled: &SledStore,
    send: &mut dyn FnMut(CopyChunk) -> bool,
) -> Result<CopyReport, StoreError> {
    let mut report = CopyReport::default();
    let stopped = || StoreError::Engine("the copy stopped: the database refused it".into());
    let count = |report: &mut CopyReport, table: &'static str, n: usize| match report
        .tables
        .iter_mut()
        .find(|(t, _)| *t == table)
    {
        Some((_, total)) => *total += n as u64,
        None => report.tables.push((table, n as u64)),
    };

    for source in sled.sources()? {
        let mut rows = Vec::with_capacity(CHUNK);
        for item in sled.snapshots_of(&source) {
            rows.push(item?);
            if rows.len() == CHUNK {
                count(&mut report, "snapshots", rows.len());
                if !send(CopyChunk::Snapshots(
                    source.clone(),
                    std::mem::take(&mut rows),
                )) {
                    return Err(stopped());
                }
            }
        }
        count(&mut report, "snapshots", rows.len());
        if !rows.is_empty() && !send(CopyChunk::Snapshots(source.clone(), rows)) {
            return Err(stopped());
        }
    }

    let mut max_seq = 0u64;
    let mut bodies = Vec::new();
    for item in sled.bodies.iter() {
        let (k, v) = item?;
        let Some(seq) = read_u64(&k) else { continue };
        let body = String::from_utf8(v.to_vec())
            .map_err(|e| StoreError::Damaged(format!("event body {seq}: {e}")))?;
        max_seq = max_seq.max(seq);
        bodies.push((seq, body));
        if bodies.len() == CHUNK {
            count(&mut report, "bodies", bodies.len());
            if !send(CopyChunk::Bodies(std::mem::take(&mut bodies))) {
                return Err(stopped());
            }
        }
    }
    count(&mut report, "bodies", bodies.len());
    if !bodies.is_empty() && !send(CopyChunk::Bodies(bodies)) {
        return Err(stopped());
    }

    let mut events = Vec::new();
    for item in sled.events.iter() {
        let (k, v) = item?;
        let (Some(seq), Some((source, order_id))) = (read_u64(&k), log::decode_record(&v)) else {
            continue;
        };
        // The log names the order; the event's id and type are in its body.
        let Some(body) = sled.body(seq)? else {
            continue;
        };
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        max_seq = max_seq.max(seq);
        events.push(LoggedEvent {
            seq,
            event_id: parsed["data"]["id"].as_str().unwrap_or_default().to_owned(),
            event_type: parsed["type"].as_str().unwrap_or_default().to_owned(),
            source,
            order_id,
        });
        if events.len() == CHUNK {
            count(&mut report, "events", events.len());
            if !send(CopyChunk::Events(std::mem::take(&mut events))) {
                return Err(stopped());
            }
        }
    }
    count(&mut report, "events", events.len());
    if !events.is_empty() && !send(CopyChunk::Events(events)) {
        return Err(stopped());
    }

    let mut outbox = Vec::new();
    for item in sled.outbox.iter() {
        let (k, v) = item?;
        let entry: OutboxEntry = serde_json::from_slice(&v)
            .map_err(|e| StoreError::Damaged(format!("outbox entry: {e}")))?;
        let due = keys::outbox_due(&k).unwrap_or(entry.created_ms);
        max_seq = max_seq.max(entry.seq);
        outbox.push((entry, due));
    }
    count(&mut report, "outbox", outbox.len());
    if !outbox.is_empty() && !send(CopyChunk::Outbox(outbox)) {
        return Err(stopped());
    }

    let dead: Vec<DeadLetter> = sled.dead_letters()?;
    max_seq = dead.iter().map(|d| d.entry.seq).fold(max_seq, u64::max);
    count(&mut report, "dead_letters", dead.len());
    if !dead.is_empty() && !send(CopyChunk::DeadLetters(dead)) {
        return Err(stopped());
    }

    let mut deliveries = Vec::new();
    for item in sled.deliveries.iter() {
        let (k, v) = item?;
        let (Some(seq), Some((attempts, at_ms))) =
            (k.get(..8).and_then(read_u64), timeline::decode_delivery(&v))
        else {
            continue;
        };
        let sink = String::from_utf8_lossy(&k[8..]).into_owned();
        deliveries.push((seq, sink, attempts, at_ms));
    }
    count(&mut report, "deliveries", deliveries.len());
    if !deliveries.is_empty() && !send(CopyChunk::Deliveries(deliveries)) {
        return Err(stopped());
    }

    let named = |prefix: &[u8]| -> Result<Vec<(String, sled::IVec)>, StoreError> {
        let mut out = Vec::new();
        for item in sled.meta.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k[prefix.len()..]).into_owned(), v));
        }
        Ok(out)
    };
    let baselines: Vec<(String, u64)> = named(b"baseline\0")?
        .into_iter()
        .map(|(source, v)| (source, read_u64(&v).unwrap_or(0)))
        .collect();
    // What does not decode reads as "none yet" (as the sled store reads
    // it): the next cycle is then a full one, or the source well.
    let sync: Vec<_> = named(b"sync\0")?
        .into_iter()
        .filter_map(|(source, v)| Some((source, serde_json::from_slice(&v).ok()?)))
        .collect();
    let health: Vec<_> = named(b"health\0")?
        .into_iter()
        .filter_map(|(source, v)| Some((source, serde_json::from_slice(&v).ok()?)))
        .collect();
    count(&mut report, "baselines", baselines.len());
    count(&mut report, "sync_state", sync.len());
    count(&mut report, "source_health", health.len());
    let mut held = Vec::new();
    for item in sled.digest_held.iter() {
        let (_, v) = item?;
        // As a digest reads them: a record that does not decode is left out.
        if let Ok(entry) = serde_json::from_slice::<OutboxEntry>(&v) {
            max_seq = max_seq.max(entry.seq);
            held.push(entry);
        }
    }
    // Since when each sink's first digest has waited; empty once made.
    let first: Vec<(String, Option<u64>)> = named(b"digest_first\0")?
        .into_iter()
        .map(|(sink, v)| (sink, read_u64(&v)))
        .collect();
    count(&mut report, "digest_held", held.len());
    count(&mut report, "digest_first", first.len());
    let timers = sled.timer_rows()?;
    count(&mut report, "timers", timers.records.len());
    count(&mut report, "timer_schedule", timers.schedule.len());
    count(&mut report, "timer_settings", timers.settings.len());
    for chunk in [
        CopyChunk::Baselines(baselines),
        CopyChunk::Sync(sync),
        CopyChunk::Health(health),
        CopyChunk::Timers(timers),
        CopyChunk::Digests { held, first },
    ] {
        if !send(chunk) {
            return Err(stopped());
        }
    }
    let event_seq = sled
        .meta
        .get(META_EVENT_SEQ)?
        .and_then(|v| read_u64(&v))
        .unwrap_or(0)
        .max(max_seq);
    if !send(CopyChunk::Done { event_seq }) {
        return Err(stopped());
    }
    Ok(report)
}
