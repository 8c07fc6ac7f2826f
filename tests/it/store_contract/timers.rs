//! The timer index's part of the contract: what a commit's timers arm,
//! what a fired timer does to its order's record (moved on with its event,
//! refused when a poll changed the record in between), the index rebuilt
//! from the snapshots with its settings recorded, and all of it surviving
//! a reopen.

use super::{Backend, snap};
use orderwatch::{
    Commit, DueDate, IndexBuild, IndexMode, OrderTimes, Snapshot, Store, StoreError, TimerKind,
    TimerSettings, TimerUpdate, now_ms,
};

const DAY: u64 = 86_400_000;

const BOTH: TimerSettings = TimerSettings {
    warn_before_ms: Some(3 * DAY),
    stalled_after_ms: Some(14 * DAY),
};

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

/// A commit of `orders` (id, due date in ms) as a poll makes it.
fn poll_commit(orders: &[(&str, Option<u64>)], baseline: bool) -> Commit {
    Commit {
        source: "t".into(),
        snapshots: orders
            .iter()
            .map(|(id, _)| {
                let order = format!("{{\"id\":\"{id}\"}}");
                (id.to_string(), Some(snap(1, "Current", &order)))
            })
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

fn fire(store: &Store, fired: orderwatch::FiredTimer) -> Result<(), StoreError> {
    store.commit(&Commit {
        source: "t".into(),
        fired: vec![fired],
        ..Default::default()
    })
}

pub(super) fn the_baseline_keeps_what_was_overdue_then_and_a_fired_timer_moves_on(b: &Backend) {
    let store = b.open();
    let now = now_ms();
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

    // A poll moves the date meanwhile: the fired timer is refused, and
    // nothing of its commit is written.
    let stale = due[0].fired.clone();
    store
        .commit(&poll_commit(&[("soon", Some(now + 9 * DAY))], false))
        .unwrap();
    let refused = fire(&store, stale);
    assert!(
        matches!(refused, Err(StoreError::TimerMoved)),
        "{refused:?}"
    );
    let due = store.due_timers(now + 6 * DAY, 10).unwrap();
    assert_eq!(due[0].fired.kind, TimerKind::DueSoon);
    // Fired twice from one reading: the second is refused.
    fire(&store, due[0].fired.clone()).unwrap();
    assert!(matches!(
        fire(&store, due[0].fired.clone()),
        Err(StoreError::TimerMoved)
    ));
    let due = store.due_timers(now + 9 * DAY, 10).unwrap();
    assert_eq!(due.len(), 1, "due_soon moved on to overdue");
    assert_eq!(due[0].fired.kind, TimerKind::Overdue);
    assert_eq!(store.overdue_orders("t", now).unwrap().len(), 1);

    // Removed: no record, no timer.
    store
        .commit(&Commit {
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

pub(super) fn a_fired_timer_commits_with_its_event_and_survives_a_reopen(b: &Backend) {
    let now = now_ms();
    {
        let store = b.open();
        store
            .commit(&poll_commit(&[("a", Some(now + 10 * DAY))], false))
            .unwrap();
        let due = store.due_timers(now + 7 * DAY, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].fired.kind, TimerKind::DueSoon);
        store
            .commit(&Commit {
                source: "t".into(),
                events: vec![super::event("evt_soon", "a", &["hook"])],
                fired: vec![due[0].fired.clone()],
                ..Default::default()
            })
            .unwrap();
        store.flush().unwrap();
    }
    let store = b.open();
    assert_eq!(store.outbox_depth("hook").unwrap(), 1);
    // Told: what is due next is the overdue, then the stall.
    let due = store.due_timers(now + 10 * DAY, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].fired.kind, TimerKind::Overdue);
    assert_eq!(due[0].fired.fire_ms, now + 10 * DAY);
    let due = store.due_timers(now + 15 * DAY, 10).unwrap();
    let kinds: Vec<TimerKind> = due.iter().map(|d| d.fired.kind).collect();
    assert_eq!(kinds, [TimerKind::Overdue, TimerKind::Stalled]);
}

pub(super) fn a_rebuild_follows_the_snapshots_and_records_its_settings(b: &Backend) {
    let store = b.open();
    let now = now_ms();
    let order = |id: &str| format!("{{\"id\":\"{id}\",\"due\":\"{}\"}}", now + 2 * DAY);
    store
        .commit(&Commit {
            source: "t".into(),
            snapshots: ["1", "2"]
                .iter()
                .map(|id| (id.to_string(), Some(snap(1, "Current", &order(id)))))
                .collect(),
            mark_baseline: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.timer_settings("t").unwrap(), None);
    assert!(store.timer_sources().unwrap().is_empty());
    let read = |_: &Snapshot| Some(times(Some(now + 2 * DAY), "Current"));
    let build = IndexBuild {
        fingerprint: Some("due=3d"),
        settings: BOTH,
        mode: IndexMode::Rebuild {
            due_continues: true,
            stalled_continues: true,
        },
        times: &read,
    };
    store.rebuild_timers("t", &build, now).unwrap();
    assert_eq!(
        store.timer_settings("t").unwrap().as_deref(),
        Some("due=3d")
    );
    assert_eq!(store.timer_sources().unwrap(), ["t"]);
    // Within warn_before and the index continuing: due now, both orders.
    let due = store.due_timers(now, 10).unwrap();
    let mut ids: Vec<&str> = due.iter().map(|d| d.fired.order_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["1", "2"]);

    // An order gone from the snapshots loses its timers at the next build.
    store
        .commit(&Commit {
            source: "t".into(),
            snapshots: vec![("2".into(), None)],
            ..Default::default()
        })
        .unwrap();
    store.rebuild_timers("t", &build, now).unwrap();
    let due = store.due_timers(now, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].fired.order_id, "1");

    // No timers for the source any more: the index and its settings go.
    let off = IndexBuild {
        fingerprint: None,
        settings: TimerSettings::default(),
        ..build
    };
    store.rebuild_timers("t", &off, now).unwrap();
    assert_eq!(store.timer_settings("t").unwrap(), None);
    assert_eq!(store.next_timer().unwrap(), None);
}
