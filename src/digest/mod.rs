//! Digests: the events routed to a sink with `digest:` are kept in the
//! store and sent as one message per period (README.md "Digests").
//!
//! - `schedule`: when periods begin, in the digest's time zone
//! - `document`: the digest as stored and sent, built from the events' bodies
//!
//! The dispatcher calls [`roll_up`] on each pass over a digest sink: once
//! a period has ended, what was kept before it becomes one outbox entry
//! (the store does that in one transaction), which the dispatcher then
//! delivers like any event, with retries, backoff and dead letters. After
//! a stop across one or more boundaries, the first pass makes one digest of
//! everything kept before the current period, never one per missed period.

mod document;
mod schedule;

pub use document::{Digest, Part};
pub use schedule::DigestSchedule;

use crate::store::{NewDigest, Store, StoreError};
use tracing::{info, warn};

/// Make the digest of `sink` if a period with kept events has ended by
/// `now_ms`. Returns its id when one was made. A sink that no longer has a
/// `digest:` (a reloaded config) sends what it had kept at once.
pub fn roll_up(
    store: &Store,
    sink: &str,
    schedule: Option<&DigestSchedule>,
    now_ms: u64,
) -> Result<Option<String>, StoreError> {
    // Until its first digest, a digest sink also says which orders were
    // overdue at a baseline (no `order.overdue` told of them).
    let first_since = match schedule {
        Some(_) => store.first_digest_since(sink, now_ms, true)?,
        None => None,
    };
    let kept = store.oldest_kept_for_digest(sink)?;
    let Some(oldest) = kept.into_iter().chain(first_since).min() else {
        return Ok(None);
    };
    let end = schedule.map_or(now_ms.saturating_add(1), |s| s.period_start_ms(now_ms));
    if oldest >= end {
        return Ok(None);
    }
    let began = std::time::Instant::now();
    let held = store.held_for_digest(sink, end)?;
    let mut overdue = Vec::new();
    if first_since.is_some() {
        for source in store.sources()? {
            for order in store.overdue_orders(&source, now_ms)? {
                overdue.push((source.clone(), order));
            }
        }
    }
    if held.is_empty() && overdue.is_empty() {
        // Nothing to say for the periods passed: look again at the next.
        store.first_digest_from(sink, end)?;
        return Ok(None);
    }
    let first = held
        .iter()
        .map(|h| h.entry.created_ms)
        .chain(first_since)
        .min()
        .unwrap_or(oldest);
    let start = schedule.map_or(first, |s| s.period_start_ms(first));
    let lost = held.iter().filter(|h| h.body.is_none()).count();
    if lost > 0 {
        warn!(
            sink,
            lost,
            "events kept for a digest have lost their bodies (a damaged store): they are counted in it, without a line"
        );
    }
    let events: Vec<_> = held
        .iter()
        .map(|h| (h.entry.event_type, h.body.as_deref()))
        .collect();
    let first_seq = held.iter().map(|h| h.entry.seq).min().unwrap_or(0);
    let digest = Digest::build(
        sink,
        schedule,
        (start, end),
        first_seq,
        &events,
        &overdue,
        now_ms,
    );
    let json =
        serde_json::to_string(&digest).map_err(|e| StoreError::Damaged(format!("digest: {e}")))?;
    let rendered_ms = began.elapsed().as_millis() as u64;
    let made = store.make_digest(&NewDigest {
        sink,
        id: &digest.data.id,
        json: &json,
        entries: &held,
    })?;
    if !made {
        return Ok(None);
    }
    // `took_ms`: reading the kept events, rendering, and the transaction
    // that queues the digest; `rendered_ms` the first two (the bench reads
    // them).
    let took_ms = began.elapsed().as_millis() as u64;
    info!(sink, id = %digest.data.id, events = held.len(), bytes = json.len(), took_ms, rendered_ms, period_start = %digest.data.period.start, period_end = %digest.data.period.end, "digest made");
    Ok(Some(digest.data.id))
}

/// When `sink`'s next digest is due (unix ms): the end of the period of
/// its oldest kept event (or, before its first digest, of the time it began
/// waiting for one); `None` when there is nothing to wait for.
pub fn next_digest_ms(
    store: &Store,
    sink: &str,
    schedule: Option<&DigestSchedule>,
) -> Result<Option<u64>, StoreError> {
    let first_since = match schedule {
        Some(_) => store.first_digest_since(sink, u64::MAX, false)?,
        None => None,
    };
    let kept = store.oldest_kept_for_digest(sink)?;
    Ok(kept
        .into_iter()
        .chain(first_since.filter(|t| *t != u64::MAX))
        .min()
        .map(|oldest| schedule.map_or(oldest, |s| s.period_end_ms(oldest))))
}
