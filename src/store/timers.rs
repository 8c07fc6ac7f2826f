//! The timer index: when each open order's due date comes near, passes, or
//! its status has lasted `stalled_after`, kept by fire time so that the
//! timer reads only what is due (a range up to now), never every snapshot.
//!
//! One tree, `timers`, with three kinds of keys:
//! - `0 fire_ms source \0 len(order_id) order_id kind` → nothing: the
//!   schedule, in fire-time order across sources
//! - `1 source \0 order_id` → [`TimerRecord`]: what the order's timers are
//!   about (its due date, its status and since when), what was already told
//!   of them, and which schedule keys are armed
//! - `2 source` → the due/stalled settings the source's index was built
//!   with (`timer.rs` rebuilds it when they change)
//!
//! The schedule and the records are written in the poll's own commit
//! transaction, beside the snapshots they follow ([`apply_orders`]); a
//! timer that fires is removed (or moved on: `due_soon` to `overdue`) in
//! the transaction that commits its event ([`fire`]), so a crash either
//! keeps both or neither, and the event, told again, has the same id.

use super::{SledStore, Snapshot, Store, StoreError, keys};
use crate::event::EventType;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

const SCHEDULE: u8 = 0;
const RECORD: u8 = 1;
const SETTINGS: u8 = 2;

/// Records and schedule keys written in one transaction by a rebuild.
const REBUILD_BATCH: usize = 1000;

/// What a timer tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerKind {
    DueSoon,
    Overdue,
    Stalled,
}

impl TimerKind {
    fn byte(self) -> u8 {
        match self {
            TimerKind::DueSoon => 1,
            TimerKind::Overdue => 2,
            TimerKind::Stalled => 3,
        }
    }

    fn from_byte(b: u8) -> Option<TimerKind> {
        match b {
            1 => Some(TimerKind::DueSoon),
            2 => Some(TimerKind::Overdue),
            3 => Some(TimerKind::Stalled),
            _ => None,
        }
    }

    pub fn event_type(self) -> EventType {
        match self {
            TimerKind::DueSoon => EventType::DueSoon,
            TimerKind::Overdue => EventType::Overdue,
            TimerKind::Stalled => EventType::Stalled,
        }
    }
}

/// An order's due date, read in its source's timezone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDate {
    /// Unix milliseconds (0 for a date before 1970).
    pub at_ms: u64,
    /// RFC 3339, UTC, seconds: what `data.due` says and the ids hash.
    pub text: String,
}

/// What the poller read of one order for its timers; the commit carries it
/// beside the order's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTimes {
    pub due: Option<DueDate>,
    pub status: Option<String>,
    /// Not in a closed status: closed orders have no timers.
    pub open: bool,
    /// When the status began, where the poller cannot say "now" (a rebuild
    /// reads the snapshot's last change); `None` is the commit's time.
    pub since_hint_ms: Option<u64>,
}

/// A source's timer settings, as milliseconds; `None` turns that kind off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerSettings {
    pub warn_before_ms: Option<u64>,
    pub stalled_after_ms: Option<u64>,
}

/// The timer part of a poll's commit: each written order's times (`None`
/// for a removed order).
#[derive(Debug, Clone, Default)]
pub struct TimerUpdate {
    pub settings: TimerSettings,
    pub orders: Vec<(String, Option<OrderTimes>)>,
}

/// What an order's timers are about and what was told of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRecord {
    #[serde(default)]
    pub due_ms: Option<u64>,
    #[serde(default)]
    pub due: Option<String>,
    #[serde(default)]
    pub told_soon: bool,
    #[serde(default)]
    pub told_overdue: bool,
    /// Past its date when first indexed at a baseline (or a rebuild): never
    /// announced, listed by [`SledStore::overdue_orders`] for a digest.
    #[serde(default)]
    pub quiet_overdue: bool,
    #[serde(default)]
    pub status: Option<String>,
    /// Unix milliseconds the status began.
    #[serde(default)]
    pub since_ms: u64,
    #[serde(default)]
    pub told_stalled: bool,
    /// The schedule keys armed for the order: `(kind, fire_ms)`.
    #[serde(default)]
    pub armed: Vec<(TimerKind, u64)>,
}

/// How an order's new times are weighed against what was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMode {
    /// A poll's commit; at the baseline, what is already due is not told.
    Poll { baseline: bool },
    /// A rebuild after the settings changed: a kind whose dates the old
    /// index already followed keeps its course (what is due and untold is
    /// told); any other, like a baseline, tells nothing already due.
    Rebuild {
        due_continues: bool,
        stalled_continues: bool,
    },
}

impl IndexMode {
    /// `(due, stalled)`: whether what is already due is passed over.
    fn quiet(self) -> (bool, bool) {
        match self {
            IndexMode::Poll { baseline } => (baseline, baseline),
            IndexMode::Rebuild {
                due_continues,
                stalled_continues,
            } => (!due_continues, !stalled_continues),
        }
    }
}

/// How a source's index is built again: under which settings, and how an
/// order's times are read from its snapshot.
#[derive(Clone, Copy)]
pub struct IndexBuild<'a> {
    /// The settings as the index records them; `None` when the source has
    /// no timers at all (the index is emptied).
    pub fingerprint: Option<&'a str>,
    pub settings: TimerSettings,
    pub mode: IndexMode,
    pub times: &'a dyn Fn(&Snapshot) -> Option<OrderTimes>,
}

/// A timer that fired, as the timer read it: the commit checks the order's
/// record is still this one (a poll may have moved the date meanwhile).
#[derive(Debug, Clone)]
pub struct FiredTimer {
    pub order_id: String,
    pub kind: TimerKind,
    pub fire_ms: u64,
    pub record: TimerRecord,
}

/// A due schedule entry, with what it is about.
#[derive(Debug, Clone)]
pub struct DueTimer {
    pub source: String,
    pub fired: FiredTimer,
    /// The order as last read; `None` if its snapshot is gone.
    pub snapshot: Option<Snapshot>,
}

/// An open order past its due date that was never announced: it was so
/// already when the baseline (or a rebuild) first indexed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueOrder {
    pub order_id: String,
    /// RFC 3339, UTC: the date it was due.
    pub due: String,
}

fn schedule_key(fire_ms: u64, source: &str, order_id: &str, kind: TimerKind) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 8 + source.len() + 1 + 4 + order_id.len() + 1);
    k.push(SCHEDULE);
    k.extend_from_slice(&fire_ms.to_be_bytes());
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(&(order_id.len() as u32).to_be_bytes());
    k.extend_from_slice(order_id.as_bytes());
    k.push(kind.byte());
    k
}

/// `(fire_ms, source, order_id, kind)` of a schedule key.
fn read_schedule_key(k: &[u8]) -> Option<(u64, String, String, TimerKind)> {
    let rest = k.strip_prefix(&[SCHEDULE])?;
    let fire_ms = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let rest = &rest[8..];
    let end = rest.iter().position(|b| *b == 0)?;
    let source = std::str::from_utf8(&rest[..end]).ok()?.to_owned();
    let rest = &rest[end + 1..];
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let order_id = std::str::from_utf8(rest.get(4..4 + len)?).ok()?.to_owned();
    let kind = TimerKind::from_byte(*rest.get(4 + len)?)?;
    (rest.len() == 5 + len).then_some((fire_ms, source, order_id, kind))
}

fn record_prefix(source: &str) -> Vec<u8> {
    let mut k = vec![RECORD];
    k.extend_from_slice(&keys::snapshot_prefix(source));
    k
}

fn record_key(source: &str, order_id: &str) -> Vec<u8> {
    let mut k = record_prefix(source);
    k.extend_from_slice(order_id.as_bytes());
    k
}

fn settings_key(source: &str) -> Vec<u8> {
    let mut k = vec![SETTINGS];
    k.extend_from_slice(source.as_bytes());
    k
}

fn decode_record(bytes: &[u8]) -> Option<TimerRecord> {
    serde_json::from_slice(bytes).ok()
}

fn encode_record(r: &TimerRecord) -> Result<Vec<u8>, ConflictableTransactionError<StoreError>> {
    serde_json::to_vec(r)
        .map_err(|e| ConflictableTransactionError::Abort(StoreError::Damaged(e.to_string())))
}

/// The order's record after its new times: its status episode goes on while
/// the status stays, its due date's told flags while the date stays; `None`
/// when it has no timer left (closed, removed, or nothing configured).
pub fn next_record(
    old: Option<&TimerRecord>,
    new: Option<&OrderTimes>,
    settings: TimerSettings,
    now_ms: u64,
    mode: IndexMode,
) -> Option<TimerRecord> {
    let new = new.filter(|t| t.open)?;
    let (quiet_due, quiet_stalled) = mode.quiet();
    let mut r = TimerRecord {
        status: new.status.clone(),
        ..TimerRecord::default()
    };
    match old {
        Some(o) if o.status == new.status && o.since_ms > 0 => {
            r.since_ms = o.since_ms;
            r.told_stalled = o.told_stalled;
        }
        _ => {
            r.since_ms = new.since_hint_ms.unwrap_or(now_ms).max(1);
            if let Some(after) = settings.stalled_after_ms {
                r.told_stalled = quiet_stalled && now_ms >= r.since_ms.saturating_add(after);
            }
        }
    }
    if let (Some(warn), Some(due)) = (settings.warn_before_ms, &new.due) {
        r.due_ms = Some(due.at_ms);
        r.due = Some(due.text.clone());
        match old {
            Some(o) if o.due_ms == Some(due.at_ms) => {
                r.told_soon = o.told_soon;
                r.told_overdue = o.told_overdue;
                r.quiet_overdue = o.quiet_overdue;
            }
            _ if quiet_due => {
                r.told_soon = now_ms.saturating_add(warn) >= due.at_ms;
                r.told_overdue = now_ms >= due.at_ms;
                r.quiet_overdue = r.told_overdue;
            }
            // First seen (or moved) past its date: only `order.overdue`.
            _ => r.told_soon = now_ms >= due.at_ms,
        }
        if !r.told_soon {
            r.armed
                .push((TimerKind::DueSoon, due.at_ms.saturating_sub(warn)));
        } else if !r.told_overdue {
            r.armed.push((TimerKind::Overdue, due.at_ms));
        }
    }
    if let Some(after) = settings.stalled_after_ms {
        if !r.told_stalled {
            r.armed
                .push((TimerKind::Stalled, r.since_ms.saturating_add(after)));
        }
    } else if r.due_ms.is_none() {
        return None;
    }
    Some(r)
}

/// Write each order's new record, and move its schedule keys with it.
pub(super) fn apply_orders(
    tree: &TransactionalTree,
    source: &str,
    update: &TimerUpdate,
    mode: IndexMode,
    now_ms: u64,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    for (order_id, times) in &update.orders {
        let key = record_key(source, order_id);
        let old = tree.get(&key)?.and_then(|v| decode_record(&v));
        let new = next_record(old.as_ref(), times.as_ref(), update.settings, now_ms, mode);
        if old.is_none() && new.is_none() {
            continue;
        }
        let was = old.as_ref().map_or(&[][..], |o| o.armed.as_slice());
        let is = new.as_ref().map_or(&[][..], |n| n.armed.as_slice());
        for (kind, at) in was.iter().filter(|a| !is.contains(a)) {
            tree.remove(schedule_key(*at, source, order_id, *kind))?;
        }
        for (kind, at) in is.iter().filter(|a| !was.contains(a)) {
            tree.insert(schedule_key(*at, source, order_id, *kind), &[] as &[u8])?;
        }
        match &new {
            Some(r) if Some(r) != old.as_ref() => {
                tree.insert(key, encode_record(r)?)?;
            }
            Some(_) => {}
            None => {
                tree.remove(key)?;
            }
        }
    }
    Ok(())
}

/// A timer fired: remove its schedule key, note what was told, and arm
/// what follows (`overdue` after `due_soon`). Aborts with
/// [`StoreError::TimerMoved`] when the order's record changed since the
/// timer read it.
pub(super) fn fire(
    tree: &TransactionalTree,
    source: &str,
    fired: &FiredTimer,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let key = record_key(source, &fired.order_id);
    let at = schedule_key(fired.fire_ms, source, &fired.order_id, fired.kind);
    let current = tree.get(&key)?.and_then(|v| decode_record(&v));
    if current.as_ref() != Some(&fired.record) || tree.get(&at)?.is_none() {
        return Err(ConflictableTransactionError::Abort(StoreError::TimerMoved));
    }
    let mut r = fired.record.clone();
    tree.remove(at)?;
    r.armed.retain(|a| *a != (fired.kind, fired.fire_ms));
    match fired.kind {
        TimerKind::DueSoon => {
            r.told_soon = true;
            if let Some(due) = r.due_ms.filter(|_| !r.told_overdue) {
                r.armed.push((TimerKind::Overdue, due));
                tree.insert(
                    schedule_key(due, source, &fired.order_id, TimerKind::Overdue),
                    &[] as &[u8],
                )?;
            }
        }
        TimerKind::Overdue => r.told_overdue = true,
        TimerKind::Stalled => r.told_stalled = true,
    }
    tree.insert(key, encode_record(&r)?)?;
    Ok(())
}

impl SledStore {
    /// Schedule entries due at `now_ms` (fire time up to it), earliest
    /// first, at most `limit`, each with its order's record and snapshot.
    /// An entry whose record is gone or no longer arms it (left by a crash
    /// in an older layout, or damaged) is removed on the way.
    pub fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<DueTimer>, StoreError> {
        let start = vec![SCHEDULE];
        let mut end = vec![SCHEDULE];
        end.extend_from_slice(&now_ms.to_be_bytes());
        end.push(0xff);
        let mut out = Vec::new();
        for item in self.timers.range(start..end) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item?;
            let found = read_schedule_key(&k).and_then(|(fire_ms, source, order_id, kind)| {
                let record = self
                    .timers
                    .get(record_key(&source, &order_id))
                    .ok()
                    .flatten()
                    .and_then(|v| decode_record(&v))?;
                record.armed.contains(&(kind, fire_ms)).then_some(DueTimer {
                    source,
                    fired: FiredTimer {
                        order_id,
                        kind,
                        fire_ms,
                        record,
                    },
                    snapshot: None,
                })
            });
            match found {
                Some(mut due) => {
                    due.snapshot = self.snapshot(&due.source, &due.fired.order_id)?;
                    out.push(due);
                }
                None => {
                    self.timers.remove(&k)?;
                }
            }
        }
        Ok(out)
    }

    /// When the earliest armed timer fires (unix ms), if any.
    pub fn next_timer(&self) -> Result<Option<u64>, StoreError> {
        let start = vec![SCHEDULE];
        let end = vec![RECORD];
        Ok(match self.timers.range(start..end).next() {
            Some(item) => read_schedule_key(&item?.0).map(|(at, ..)| at),
            None => None,
        })
    }

    /// The settings `source`'s index was built with, as [`rebuild_timers`]
    /// stored them; `None` before its first build (a store from before
    /// timers existed, or a source new to them).
    ///
    /// [`rebuild_timers`]: SledStore::rebuild_timers
    pub fn timer_settings(&self, source: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .timers
            .get(settings_key(source))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The sources that have timer settings recorded.
    pub fn timer_sources(&self) -> Result<Vec<String>, StoreError> {
        self.timers
            .scan_prefix([SETTINGS])
            .map(|item| {
                let (k, _) = item?;
                Ok(String::from_utf8_lossy(&k[1..]).into_owned())
            })
            .collect()
    }

    /// Build `source`'s index again from its snapshots, with one scan.
    /// Records the settings (`build.fingerprint`) last, so a rebuild cut
    /// short by a crash is done again at the next start.
    pub fn rebuild_timers(
        &self,
        source: &str,
        build: &IndexBuild<'_>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let IndexBuild {
            fingerprint,
            settings,
            mode,
            times,
        } = *build;
        let mut batch = TimerUpdate {
            settings,
            orders: Vec::new(),
        };
        let flush = |batch: &mut TimerUpdate| -> Result<(), StoreError> {
            if batch.orders.is_empty() {
                return Ok(());
            }
            self.timers
                .transaction(|tree| apply_orders(tree, source, batch, mode, now_ms))?;
            batch.orders.clear();
            Ok(())
        };
        for item in self.snapshots_of(source) {
            let (order_id, snapshot) = item?;
            let t = if fingerprint.is_some() {
                times(&snapshot)
            } else {
                None
            };
            batch.orders.push((order_id, t));
            if batch.orders.len() >= REBUILD_BATCH {
                flush(&mut batch)?;
            }
        }
        flush(&mut batch)?;
        // Records of orders that have no snapshot any more.
        let prefix = record_prefix(source);
        for item in self.timers.scan_prefix(&prefix) {
            let (k, _) = item?;
            let order_id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if self.snapshot_hash(source, &order_id)?.is_none() {
                batch.orders.push((order_id, None));
            }
        }
        flush(&mut batch)?;
        match fingerprint {
            Some(f) => self.timers.insert(settings_key(source), f.as_bytes())?,
            None => self.timers.remove(settings_key(source))?,
        };
        Ok(())
    }

    /// Open orders of `source` past their due date at `now_ms` that were
    /// never announced as overdue: the baseline (or a rebuild) found them
    /// so already. A digest lists them instead.
    pub fn overdue_orders(
        &self,
        source: &str,
        now_ms: u64,
    ) -> Result<Vec<OverdueOrder>, StoreError> {
        let prefix = record_prefix(source);
        let mut out = Vec::new();
        for item in self.timers.scan_prefix(&prefix) {
            let (k, v) = item?;
            let Some(r) = decode_record(&v) else { continue };
            if let (true, Some(at), Some(due)) = (r.quiet_overdue, r.due_ms, r.due)
                && at <= now_ms
            {
                out.push(OverdueOrder {
                    order_id: String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    due,
                });
            }
        }
        Ok(out)
    }
}

/// The timer index through the handle the rest of orderwatch holds.
impl Store {
    pub fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<DueTimer>, StoreError> {
        self.with(|s| s.due_timers(now_ms, limit))
    }

    pub fn next_timer(&self) -> Result<Option<u64>, StoreError> {
        self.with(|s| s.next_timer())
    }

    pub fn timer_settings(&self, source: &str) -> Result<Option<String>, StoreError> {
        self.with(|s| s.timer_settings(source))
    }

    pub fn timer_sources(&self) -> Result<Vec<String>, StoreError> {
        self.with(|s| s.timer_sources())
    }

    pub fn rebuild_timers(
        &self,
        source: &str,
        build: &IndexBuild<'_>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.with(|s| s.rebuild_timers(source, build, now_ms))
    }

    /// Open orders of `source` past their due date at `now_ms` that no
    /// `order.overdue` told of, because the baseline (or a rebuild) found
    /// them past it already: what a digest lists as overdue at the start.
    pub fn overdue_orders(
        &self,
        source: &str,
        now_ms: u64,
    ) -> Result<Vec<OverdueOrder>, StoreError> {
        self.with(|s| s.overdue_orders(source, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    fn times(due_ms: Option<u64>, status: &str) -> OrderTimes {
        OrderTimes {
            due: due_ms.map(|at_ms| DueDate {
                at_ms,
                text: at_ms.to_string(),
            }),
            status: Some(status.into()),
            open: true,
            since_hint_ms: None,
        }
    }

    const BOTH: TimerSettings = TimerSettings {
        warn_before_ms: Some(3 * DAY),
        stalled_after_ms: Some(14 * DAY),
    };
    const POLL: IndexMode = IndexMode::Poll { baseline: false };

    fn snapshot(order_id: &str, status: &str) -> Snapshot {
        let order = format!("{{\"id\":\"{order_id}\"}}");
        Snapshot {
            revision: 1,
            hash: Snapshot::hash_of(&order),
            listed: true,
            status: Some(status.into()),
            changed_at: "2026-11-22T08:00:00Z".into(),
            order,
        }
    }

    /// A commit of `orders` (id, due date in ms) as a poll makes it.
    fn poll_commit(orders: &[(&str, Option<u64>)], baseline: bool) -> super::super::Commit {
        super::super::Commit {
            source: "t".into(),
            snapshots: orders
                .iter()
                .map(|(id, _)| (id.to_string(), Some(snapshot(id, "Current"))))
                .collect(),
            timers: Some(TimerUpdate {
                settings: BOTH,
                orders: orders
                    .iter()
                    .map(|(id, due)| (id.to_string(), Some(times(*due, "Current"))))
                    .collect(),
            }),
            mark_baseline: baseline,
            ..Default::default()
        }
    }

    #[test]
    fn the_baseline_keeps_what_was_overdue_then_and_a_fired_timer_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = super::super::now_ms();
        store
            .commit(&poll_commit(
                &[("late", Some(now - DAY)), ("soon", Some(now + DAY))],
                true,
            ))
            .unwrap();
        let overdue = store.overdue_orders("t", now).unwrap();
        assert_eq!(overdue.len(), 1);
        assert_eq!(overdue[0].order_id, "late");
        // Within warn_before at the baseline: not told, overdue armed.
        assert!(store.due_timers(now, 10).unwrap().is_empty());
        let due = store.due_timers(now + DAY, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].fired.kind, TimerKind::Overdue);
        assert_eq!(due[0].snapshot.as_ref().unwrap().revision, 1);
        assert_eq!(store.next_timer().unwrap(), Some(now + DAY));

        // A poll moves the date meanwhile: the fired timer is refused.
        let stale = due[0].fired.clone();
        store
            .commit(&poll_commit(&[("soon", Some(now + 9 * DAY))], false))
            .unwrap();
        let refused = store.commit(&super::super::Commit {
            source: "t".into(),
            fired: vec![stale],
            ..Default::default()
        });
        assert!(
            matches!(refused, Err(StoreError::TimerMoved)),
            "{refused:?}"
        );
        let due = store.due_timers(now + 6 * DAY, 10).unwrap();
        assert_eq!(due[0].fired.kind, TimerKind::DueSoon);
        store
            .commit(&super::super::Commit {
                source: "t".into(),
                fired: vec![due[0].fired.clone()],
                ..Default::default()
            })
            .unwrap();
        let due = store.due_timers(now + 9 * DAY, 10).unwrap();
        assert_eq!(due.len(), 1, "due_soon moved on to overdue");
        assert_eq!(due[0].fired.kind, TimerKind::Overdue);
        assert_eq!(store.overdue_orders("t", now).unwrap().len(), 1);

        // Removed: no record, no timer.
        store
            .commit(&super::super::Commit {
                source: "t".into(),
                snapshots: vec![("late".into(), None), ("soon".into(), None)],
                timers: Some(TimerUpdate {
                    settings: BOTH,
                    orders: vec![("late".into(), None), ("soon".into(), None)],
                }),
                ..Default::default()
            })
            .unwrap();
        assert!(store.overdue_orders("t", now).unwrap().is_empty());
        assert!(store.due_timers(u64::MAX - 1, 10).unwrap().is_empty());
        assert_eq!(store.next_timer().unwrap(), None);
    }

    #[test]
    fn schedule_keys_read_back_and_sort_by_fire_time() {
        let a = schedule_key(5, "src", "a\0b", TimerKind::Overdue);
        assert_eq!(
            read_schedule_key(&a),
            Some((5, "src".into(), "a\0b".into(), TimerKind::Overdue))
        );
        assert!(a < schedule_key(6, "a", "a", TimerKind::DueSoon));
        assert_eq!(read_schedule_key(&a[..a.len() - 1]), None);
    }

    #[test]
    fn a_new_order_arms_due_soon_then_stalled() {
        let now = 100 * DAY;
        let r = next_record(
            None,
            Some(&times(Some(now + 10 * DAY), "Current")),
            BOTH,
            now,
            POLL,
        )
        .unwrap();
        assert_eq!(
            r.armed,
            [
                (TimerKind::DueSoon, now + 7 * DAY),
                (TimerKind::Stalled, now + 14 * DAY)
            ]
        );
        assert_eq!(r.since_ms, now);
    }

    #[test]
    fn first_seen_past_its_date_arms_only_overdue_and_a_baseline_nothing() {
        let now = 100 * DAY;
        let late = times(Some(now - DAY), "Current");
        let r = next_record(None, Some(&late), BOTH, now, POLL).unwrap();
        assert!(r.told_soon && !r.told_overdue);
        assert_eq!(r.armed[0], (TimerKind::Overdue, now - DAY));
        let b = next_record(
            None,
            Some(&late),
            BOTH,
            now,
            IndexMode::Poll { baseline: true },
        )
        .unwrap();
        assert!(b.told_soon && b.told_overdue && b.quiet_overdue);
        assert_eq!(b.armed, [(TimerKind::Stalled, now + 14 * DAY)]);
    }

    #[test]
    fn the_same_date_keeps_what_was_told_and_a_moved_one_re_arms() {
        let now = 100 * DAY;
        let mut told = next_record(
            None,
            Some(&times(Some(now + DAY), "Current")),
            BOTH,
            now,
            POLL,
        )
        .unwrap();
        told.told_soon = true;
        let same = next_record(
            Some(&told),
            Some(&times(Some(now + DAY), "Current")),
            BOTH,
            now + 1,
            POLL,
        )
        .unwrap();
        assert!(same.told_soon);
        assert_eq!(same.armed[0], (TimerKind::Overdue, now + DAY));
        let moved = next_record(
            Some(&told),
            Some(&times(Some(now + 9 * DAY), "Current")),
            BOTH,
            now + 1,
            POLL,
        )
        .unwrap();
        assert!(!moved.told_soon);
        assert_eq!(moved.armed[0], (TimerKind::DueSoon, now + 6 * DAY));
    }

    #[test]
    fn a_new_status_is_a_new_episode_and_closed_orders_have_no_timers() {
        let now = 100 * DAY;
        let mut r = next_record(None, Some(&times(None, "Current")), BOTH, now, POLL).unwrap();
        r.told_stalled = true;
        let same = next_record(
            Some(&r),
            Some(&times(None, "Current")),
            BOTH,
            now + DAY,
            POLL,
        )
        .unwrap();
        assert!(same.told_stalled && same.since_ms == now);
        let next = next_record(
            Some(&r),
            Some(&times(None, "Pending")),
            BOTH,
            now + DAY,
            POLL,
        )
        .unwrap();
        assert!(!next.told_stalled);
        assert_eq!(next.armed, [(TimerKind::Stalled, now + 15 * DAY)]);
        let mut closed = times(Some(now + DAY), "Closed");
        closed.open = false;
        assert_eq!(next_record(Some(&r), Some(&closed), BOTH, now, POLL), None);
        assert_eq!(next_record(Some(&r), None, BOTH, now, POLL), None);
        let off = TimerSettings::default();
        assert_eq!(
            next_record(None, Some(&times(Some(now), "Current")), off, now, POLL),
            None
        );
    }
}
