//! The store's contract, one suite for every backend: each check takes a
//! freshly opened [`Store`] (through [`Backend::open`], which also opens the
//! same store again) and runs on sled (always) and on PostgreSQL (a fresh
//! database per check, on the server `pg.rs` finds or starts; skipped
//! without one unless `ORDERWATCH_PG_TESTS=1`).
//!
//! What it states: snapshots, outbox entries, the log, the baseline mark
//! and the sync state are committed together; one order's entries at one
//! sink leave in order; dead letters are buried and replayed; the log is
//! bounded and read in pages; each event's timeline; sources and sinks
//! listed once; what was committed survives opening the store again; the
//! timer index (`timers.rs`); quiet hours and digests (`digests.rs`);
//! orders by last change, deliveries completed together and the heads of
//! a due batch told at once (`by_change.rs`); and, for postgres, the
//! schema check.

mod by_change;
mod digests;
mod timers;

use crate::pg;
use orderwatch::{
    Commit, DeliveryStatus, EVENT_LOG_LEN, EventType, Leadership, NewEvent, Snapshot, Store,
    StoreError, SyncState, SyncUpdate, now_ms,
};
use std::time::{Duration, Instant};

/// Where a check's store lives; `open` opens it (again).
pub enum Backend {
    Sled(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    pub fn open(&self) -> Store {
        match self {
            Backend::Sled(dir) => Store::open(dir.path()).expect("the sled store opens"),
            Backend::Postgres(url) => {
                Store::open_postgres(url, true).expect("the postgres store opens")
            }
        }
    }
}

/// Each check as two tests: `store_contract::sled::NAME` and
/// `store_contract::postgres::NAME`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Backend::Sled(tempfile::tempdir().expect("temp dir")));
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let test = concat!("store_contract::postgres::", stringify!($name));
                    if let Some(url) = crate::pg::fresh_database(test) {
                        super::$name(&super::Backend::Postgres(url));
                    }
                }
            )*
        }
    };
}

contract!(
    commit_writes_snapshots_outbox_and_log_together,
    entries_of_one_order_stay_in_order,
    buried_entries_can_be_replayed,
    data_survives_reopening,
    the_event_log_is_bounded,
    the_listed_index_follows_every_snapshot_write,
    sources_and_outbox_sinks_are_listed_once_each,
    the_sync_state_moves_with_its_commit_and_survives_a_reopen,
    a_timeline_tells_each_event_and_each_sink_s_delivery,
    the_log_reads_in_pages_below_a_sequence,
    snapshots_read_in_pages_in_byte_order,
    baseline_health_and_bodies_move_with_their_commit,
    a_snapshot_hash_follows_each_commit,
    the_baseline_keeps_what_was_overdue_then_and_a_fired_timer_moves_on,
    a_fired_timer_commits_with_its_event_and_survives_a_reopen,
    a_rebuild_follows_the_snapshots_and_records_its_settings,
    a_quiet_entry_is_queued_for_the_end_of_the_quiet_hours,
    kept_events_become_one_digest_entry_once,
    a_sink_s_first_digest_remembers_since_when_it_waited,
    orders_by_change_follow_each_write_change_and_removal,
    deliveries_completed_together_leave_as_if_one_by_one,
    the_heads_of_a_due_batch_are_told_in_one_call,
);
use by_change::*;
use digests::*;
use timers::*;

fn snap(rev: u64, status: &str, order: &str) -> Snapshot {
    Snapshot {
        revision: rev,
        hash: Snapshot::hash_of(order),
        listed: true,
        status: Some(status.into()),
        changed_at: "2026-11-22T08:00:00Z".into(),
        order: order.into(),
    }
}

fn event(id: &str, order: &str, sinks: &[&str]) -> NewEvent {
    NewEvent {
        event_id: id.into(),
        event_type: EventType::StatusChanged,
        order_id: order.into(),
        json: format!("{{\"id\":\"{id}\"}}"),
        sinks: sinks.iter().map(|s| (*s).into()).collect(),
    }
}

/// An event as the webhook body, which the timeline decodes.
fn status_event(id: &str, source: &str, order: &str, sinks: &[&str]) -> NewEvent {
    let json = serde_json::json!({
        "type": "order.status_changed",
        "timestamp": "2026-11-22T08:00:00Z",
        "data": {
            "id": id, "source": source, "order_id": order,
            "from": "Current", "to": "Closed", "closed": true, "revision": 2,
            "changes": [], "order": {"id": order},
        },
    });
    NewEvent {
        event_id: id.into(),
        event_type: EventType::StatusChanged,
        order_id: order.into(),
        json: json.to_string(),
        sinks: sinks.iter().map(|s| (*s).into()).collect(),
    }
}

fn commit_events(store: &Store, source: &str, events: Vec<NewEvent>) {
    store
        .commit(&Commit {
            source: source.into(),
            events,
            ..Default::default()
        })
        .unwrap();
}

fn commit_writes_snapshots_outbox_and_log_together(b: &Backend) {
    let store = b.open();
    assert!(!store.has_baseline("t").unwrap());
    store
        .commit(&Commit {
            source: "t".into(),
            snapshots: vec![("1".into(), Some(snap(1, "Current", "{\"id\":\"1\"}")))],
            events: vec![event("evt_a", "1", &["hook", "chat"])],
            mark_baseline: true,
            ..Default::default()
        })
        .unwrap();
    assert!(store.has_baseline("t").unwrap());
    assert_eq!(
        store.snapshot("t", "1").unwrap().unwrap().status.as_deref(),
        Some("Current")
    );
    assert_eq!(store.outbox_depth("hook").unwrap(), 1);
    assert_eq!(store.outbox_depth("chat").unwrap(), 1);
    let due = store.due("hook", now_ms() + 1, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].entry.event_id, "evt_a");
    assert_eq!(store.recent_events().count(), 1);
    assert_eq!(
        store.listed_ids_except("t", |_| false).unwrap(),
        vec!["1".to_string()]
    );
}

fn entries_of_one_order_stay_in_order(b: &Backend) {
    let store = b.open();
    for id in ["evt_1", "evt_2"] {
        store
            .commit(&Commit {
                source: "t".into(),
                events: vec![event(id, "42", &["hook"])],
                ..Default::default()
            })
            .unwrap();
    }
    let due = store.due("hook", now_ms() + 1, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert!(store.is_first_of_order(&due[0].entry).unwrap());
    assert!(!store.is_first_of_order(&due[1].entry).unwrap());

    // The first fails and is rescheduled: it is still first of its order.
    let mut failed = due[0].entry.clone();
    failed.attempts = 1;
    store
        .reschedule(&due[0], &failed, now_ms() + 60_000)
        .unwrap();
    assert!(!store.is_first_of_order(&due[1].entry).unwrap());
    let due_now = store.due("hook", now_ms() + 1, 10).unwrap();
    assert_eq!(due_now.len(), 1);
    assert_eq!(due_now[0].entry.event_id, "evt_2");

    // Once the first is delivered, the second may go.
    let later = store.due("hook", now_ms() + 120_000, 10).unwrap();
    let first = later.iter().find(|d| d.entry.event_id == "evt_1").unwrap();
    assert_eq!(first.entry.attempts, 1);
    store.complete(first).unwrap();
    assert!(store.is_first_of_order(&due[1].entry).unwrap());
}

fn buried_entries_can_be_replayed(b: &Backend) {
    let store = b.open();
    store
        .commit(&Commit {
            source: "t".into(),
            events: vec![event("evt_x", "7", &["hook"])],
            ..Default::default()
        })
        .unwrap();
    let due = store.due("hook", now_ms() + 1, 10).unwrap();
    store.bury(&due[0], &due[0].entry, "410 Gone").unwrap();
    assert_eq!(store.outbox_depth("hook").unwrap(), 0);
    assert_eq!(store.dead_letter_count("hook").unwrap(), 1);
    assert_eq!(store.dead_letters().unwrap()[0].reason, "410 Gone");
    assert_eq!(store.replay(Some(&["evt_nope".to_string()])).unwrap(), 0);
    assert_eq!(store.replay(Some(&["evt_x".to_string()])).unwrap(), 1);
    assert_eq!(store.dead_letter_count("hook").unwrap(), 0);
    assert_eq!(store.outbox_depth("hook").unwrap(), 1);
}

fn data_survives_reopening(b: &Backend) {
    {
        let store = b.open();
        store
            .commit(&Commit {
                source: "t".into(),
                snapshots: vec![("9".into(), Some(snap(3, "Closed", "{}")))],
                ..Default::default()
            })
            .unwrap();
        store.flush().unwrap();
    }
    let store = b.open();
    assert_eq!(store.snapshot("t", "9").unwrap().unwrap().revision, 3);
}

fn the_event_log_is_bounded(b: &Backend) {
    let store = b.open();
    let events: Vec<NewEvent> = (0..(EVENT_LOG_LEN + 5))
        .map(|i| event(&format!("evt_{i}"), "1", &[]))
        .collect();
    store
        .commit(&Commit {
            source: "t".into(),
            events,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.recent_events().count() as u64, EVENT_LOG_LEN);
}

fn the_listed_index_follows_every_snapshot_write(b: &Backend) {
    let store = b.open();
    let mut gone = snap(2, "Closed", "{\"id\":\"2\"}");
    gone.listed = false;
    // Snapshots only (the cheap path) and with events (the full one).
    store
        .commit(&Commit {
            source: "t".into(),
            snapshots: vec![
                ("1".into(), Some(snap(1, "Current", "{\"id\":\"1\"}"))),
                ("2".into(), Some(snap(1, "Current", "{\"id\":\"2\"}"))),
                ("3".into(), Some(snap(1, "Current", "{\"id\":\"3\"}"))),
            ],
            ..Default::default()
        })
        .unwrap();
    store
        .commit(&Commit {
            source: "t".into(),
            snapshots: vec![("2".into(), Some(gone)), ("3".into(), None)],
            events: vec![event("evt_x", "2", &["hook"])],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        store.listed_ids_except("t", |_| false).unwrap(),
        vec!["1".to_string()]
    );
    let seen: std::collections::HashSet<String> = ["1".to_string()].into();
    assert!(
        store
            .listed_ids_except("t", |id| seen.contains(id))
            .unwrap()
            .is_empty()
    );
}

fn sources_and_outbox_sinks_are_listed_once_each(b: &Backend) {
    let store = b.open();
    for (source, id) in [("b", "1"), ("a", "1"), ("a", "2"), ("ab", "3")] {
        store
            .commit(&Commit {
                source: source.into(),
                snapshots: vec![(id.into(), Some(snap(1, "Current", "{}")))],
                events: vec![event(&format!("evt_{source}{id}"), id, &["hook", "chat"])],
                ..Default::default()
            })
            .unwrap();
    }
    assert_eq!(store.sources().unwrap(), ["a", "ab", "b"]);
    assert_eq!(store.outbox_sinks().unwrap(), ["chat", "hook"]);
}

fn the_sync_state_moves_with_its_commit_and_survives_a_reopen(b: &Backend) {
    let store = b.open();
    assert_eq!(store.sync_state("t").unwrap(), SyncState::default());
    store
        .commit(&Commit {
            source: "t".into(),
            snapshots: vec![("1".into(), Some(snap(1, "NEW", "{\"id\":\"1\"}")))],
            sync: Some(SyncUpdate {
                high_water: Some("2026-11-22T08:00:00Z".into()),
                last_full_ms: Some(5),
            }),
            ..Default::default()
        })
        .unwrap();
    // A later update of one field keeps the other.
    store
        .commit(&Commit {
            source: "t".into(),
            sync: Some(SyncUpdate {
                high_water: Some("2026-11-22T09:00:00Z".into()),
                last_full_ms: None,
            }),
            ..Default::default()
        })
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let store = b.open();
    assert_eq!(
        store.sync_state("t").unwrap(),
        SyncState {
            high_water: Some("2026-11-22T09:00:00Z".into()),
            last_full_ms: Some(5),
        }
    );
    assert!(store.snapshot("t", "1").unwrap().is_some());
    assert_eq!(store.sync_state("other").unwrap(), SyncState::default());
}

fn a_timeline_tells_each_event_and_each_sink_s_delivery(b: &Backend) {
    let store = b.open();
    let sinks = ["hook", "chat", "mail"];
    commit_events(&store, "t", vec![status_event("evt_1", "t", "1", &sinks)]);
    commit_events(
        &store,
        "t",
        vec![status_event("evt_other", "t", "10", &sinks)],
    );
    commit_events(&store, "u", vec![status_event("evt_u", "u", "1", &sinks)]);
    commit_events(
        &store,
        "t",
        vec![status_event("evt_2", "t", "1", &["hook"])],
    );

    let first = |sink: &str| {
        store
            .due(sink, now_ms() + 1, 10)
            .unwrap()
            .into_iter()
            .find(|d| d.entry.event_id == "evt_1")
            .unwrap()
    };
    store.complete(&first("hook")).unwrap();
    let chat = first("chat");
    let mut failed = chat.entry.clone();
    failed.attempts = 2;
    failed.last_error = Some("503".into());
    let retry_at = now_ms() + 60_000;
    store.reschedule(&chat, &failed, retry_at).unwrap();
    let mail = first("mail");
    store.bury(&mail, &mail.entry, "550 no such user").unwrap();

    let timeline = store.timeline("t", "1").unwrap();
    let ids: Vec<&str> = timeline.iter().map(|e| e.event.data.id.as_str()).collect();
    assert_eq!(ids, ["evt_1", "evt_2"], "oldest first, this order only");
    let states: Vec<(&str, DeliveryStatus, u32)> = timeline[0]
        .deliveries
        .iter()
        .map(|d| (d.sink.as_str(), d.state, d.attempts))
        .collect();
    assert_eq!(
        states,
        [
            ("chat", DeliveryStatus::Retrying, 2),
            ("hook", DeliveryStatus::Delivered, 1),
            ("mail", DeliveryStatus::DeadLettered, 0),
        ]
    );
    let chat_state = &timeline[0].deliveries[0];
    assert_eq!(chat_state.last_error.as_deref(), Some("503"));
    assert_eq!(chat_state.at_ms, Some(retry_at));
    assert_eq!(
        timeline[0].deliveries[2].last_error.as_deref(),
        Some("550 no such user")
    );
    assert!(timeline[0].deliveries[1].at_ms.is_some());
    assert_eq!(timeline[1].deliveries.len(), 1);
    assert_eq!(timeline[1].deliveries[0].state, DeliveryStatus::Queued);

    // The states serialise as the API shows them.
    let json = serde_json::to_value(&timeline[0].deliveries[2]).unwrap();
    assert_eq!(json["state"], "dead_lettered");
    assert!(store.timeline("t", "nope").unwrap().is_empty());
}

fn the_log_reads_in_pages_below_a_sequence(b: &Backend) {
    let store = b.open();
    store
        .commit(&Commit {
            source: "t".into(),
            events: vec![
                event("evt_a", "1", &[]),
                event("evt_b", "2", &[]),
                event("evt_c", "3", &[]),
            ],
            ..Default::default()
        })
        .unwrap();
    let page = |before| -> Vec<(u64, String)> {
        store
            .events_before(before)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let all = page(u64::MAX);
    let seqs: Vec<u64> = all.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs.len(), 3);
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert!(all[0].1.contains("evt_c"), "{all:?}");
    // A page starts strictly below the last one's end, and the recent
    // events are the same texts.
    let rest: Vec<u64> = page(seqs[0]).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(rest, seqs[1..]);
    assert!(page(seqs[2]).is_empty());
    let texts: Vec<String> = store.recent_events().map(Result::unwrap).collect();
    assert_eq!(texts, all.into_iter().map(|(_, t)| t).collect::<Vec<_>>());
}

fn snapshots_read_in_pages_in_byte_order(b: &Backend) {
    let store = b.open();
    // More than one page of the postgres reader, ids whose byte order is
    // not a locale's, and a neighbouring source whose name extends this one.
    let mut ids: Vec<String> = (0..1_200).map(|i| format!("id-{i:05}")).collect();
    ids.extend(["B", "a", "Z", "_x"].map(String::from));
    let snapshots = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                Some(snap(1, "Current", &format!("{{\"id\":\"{id}\"}}"))),
            )
        })
        .collect();
    store
        .commit(&Commit {
            source: "t".into(),
            snapshots,
            ..Default::default()
        })
        .unwrap();
    store
        .commit(&Commit {
            source: "tt".into(),
            snapshots: vec![("1".into(), Some(snap(1, "Current", "{}")))],
            ..Default::default()
        })
        .unwrap();
    let mut expected = ids.clone();
    expected.sort();
    let read: Vec<String> = store
        .snapshots_of("t")
        .map(|item| item.unwrap().0)
        .collect();
    assert_eq!(read, expected);
    let after: Vec<String> = store
        .snapshots_of_after("t", "id-00599")
        .map(|item| item.unwrap().0)
        .collect();
    assert_eq!(
        after,
        expected[expected.iter().position(|i| i == "id-00600").unwrap()..]
    );
    let (id, first) = store.snapshots_of("t").next().unwrap().unwrap();
    assert_eq!(id, "B");
    assert_eq!(first, snap(1, "Current", "{\"id\":\"B\"}"));
    assert_eq!(
        store.snapshot_hash("t", "a").unwrap(),
        Some((Snapshot::hash_of("{\"id\":\"a\"}"), true))
    );
    assert_eq!(store.snapshot_hash("t", "nope").unwrap(), None);
    assert_eq!(store.sources().unwrap(), ["t", "tt"]);
}

fn baseline_health_and_bodies_move_with_their_commit(b: &Backend) {
    let store = b.open();
    assert!(!store.has_baseline("t").unwrap());
    let health = orderwatch_health(3);
    store
        .commit(&Commit {
            source: "t".into(),
            mark_baseline: true,
            health: Some(health.clone()),
            events: vec![status_event("evt_1", "t", "1", &["hook"])],
            ..Default::default()
        })
        .unwrap();
    assert!(store.has_baseline("t").unwrap());
    assert!(!store.has_baseline("u").unwrap());
    assert_eq!(store.source_health("t").unwrap(), health);
    assert_eq!(store.source_health("u").unwrap(), Default::default());
    let due = store.due("hook", now_ms() + 1, 10).unwrap();
    assert_eq!(
        due[0].body.as_deref(),
        Some(status_event("evt_1", "t", "1", &[]).json.as_str()),
        "the body is exactly what was committed"
    );
    assert_eq!(
        store.next_due("hook").unwrap(),
        Some(due[0].entry.created_ms)
    );
    assert_eq!(store.next_due("other").unwrap(), None);
    // An entry delivered twice (its removal retried) is removed once.
    store.complete(&due[0]).unwrap();
    store.complete(&due[0]).unwrap();
    assert_eq!(store.outbox_depth("hook").unwrap(), 0);
    let timeline = store.timeline("t", "1").unwrap();
    assert_eq!(timeline[0].deliveries[0].state, DeliveryStatus::Delivered);
    assert_eq!(store.recent_events().count(), 1, "the log keeps its body");
}

fn orderwatch_health(failures: u64) -> orderwatch::SourceHealth {
    orderwatch::SourceHealth {
        failing_since_ms: Some(1_700_000_000_000),
        failures,
        failing_told: true,
        expiry_told: Some("2028-06-30".into()),
    }
}

/// A database whose schema is newer than this orderwatch knows is refused
/// plainly and left alone; reading needs a store and creates none.
#[test]
fn postgres_refuses_a_newer_schema_and_an_empty_database_for_reading() {
    let Some(url) = pg::fresh_database(
        "store_contract::postgres_refuses_a_newer_schema_and_an_empty_database_for_reading",
    ) else {
        return;
    };
    let err = Store::open_postgres(&url, false)
        .err()
        .expect("nothing to read");
    assert!(matches!(err, StoreError::NoPostgresStore { .. }), "{err}");
    assert_eq!(
        pg::count_at(
            &url,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        0,
        "reading created nothing"
    );
    drop(Store::open_postgres(&url, true).expect("created"));
    assert!(Store::open_postgres(&url, false).is_ok());
    let applied = pg::count_at(&url, "SELECT count(*)::bigint FROM schema_migrations");
    pg::sql_at(&url, "INSERT INTO schema_migrations (version) VALUES (99)").unwrap();
    let err = Store::open_postgres(&url, true)
        .err()
        .expect("newer schema");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::PostgresSchema { found: 99, .. }),
        "{text}"
    );
    assert!(text.contains("schema version 99"), "{text}");
    assert_eq!(
        pg::count_at(&url, "SELECT count(*)::bigint FROM schema_migrations"),
        applied + 1,
        "nothing was changed"
    );
}

fn a_snapshot_hash_follows_each_commit(b: &Backend) {
    let store = b.open();
    let commit = |snapshots: Vec<(String, Option<Snapshot>)>| {
        store
            .commit(&Commit {
                source: "t".into(),
                snapshots,
                ..Default::default()
            })
            .unwrap()
    };
    commit(vec![
        ("1".into(), Some(snap(1, "Current", "{\"v\":1}"))),
        ("2".into(), Some(snap(1, "Current", "{\"v\":2}"))),
    ]);
    let hash = |id: &str| store.snapshot_hash("t", id).unwrap();
    assert_eq!(hash("1"), Some((Snapshot::hash_of("{\"v\":1}"), true)));
    // Changed, removed, added and no longer listed: each read as committed.
    let mut unlisted = snap(2, "Closed", "{\"v\":3}");
    unlisted.listed = false;
    commit(vec![
        ("1".into(), Some(unlisted)),
        ("2".into(), None),
        ("3".into(), Some(snap(1, "Current", "{\"v\":4}"))),
    ]);
    assert_eq!(hash("1"), Some((Snapshot::hash_of("{\"v\":3}"), false)));
    assert_eq!(hash("2"), None);
    assert_eq!(hash("3"), Some((Snapshot::hash_of("{\"v\":4}"), true)));
    assert_eq!(store.snapshot_hash("u", "1").unwrap(), None);
    // Opened again: the same answers, from the store itself.
    drop(store);
    let again = b.open();
    assert_eq!(
        again.snapshot_hash("t", "1").unwrap(),
        Some((Snapshot::hash_of("{\"v\":3}"), false))
    );
    assert_eq!(again.snapshot_hash("t", "2").unwrap(), None);
}

/// Two stores on one database, as two orderwatch processes hold them.
fn two_replicas(url: &str) -> (Store, Store) {
    (
        Store::open_postgres(url, true).unwrap(),
        Store::open_postgres(url, true).unwrap(),
    )
}

/// Wait (polling, with a deadline) until `store` leads `source`.
fn until_it_leads(store: &Store, source: &str, lease: Duration) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.lead(source, lease).unwrap() != Leadership::Leads {
        assert!(Instant::now() < deadline, "never took the lead");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sled_always_leads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.lead("t", Duration::from_secs(1)).unwrap(),
        Leadership::Leads
    );
}

/// A flush in the middle of a run (the timer's, after it fired; a replay)
/// keeps this replica's leases; closing the store at the end lets go, so
/// another replica takes over at once.
#[test]
fn postgres_a_flush_keeps_the_leases_and_closing_lets_go() {
    let Some(url) =
        pg::fresh_database("store_contract::postgres_a_flush_keeps_the_leases_and_closing_lets_go")
    else {
        return;
    };
    let (a, b) = two_replicas(&url);
    let long = Duration::from_secs(60);
    assert_eq!(a.lead("t", long).unwrap(), Leadership::Leads);
    a.flush().unwrap();
    let Leadership::Follows { .. } = b.lead("t", long).unwrap() else {
        panic!("a flush let go of the lease");
    };
    a.close().unwrap();
    assert_eq!(b.lead("t", long).unwrap(), Leadership::Leads);
}

#[test]
fn postgres_replicas_one_leads_and_a_former_leader_can_never_commit() {
    let Some(url) = pg::fresh_database(
        "store_contract::postgres_replicas_one_leads_and_a_former_leader_can_never_commit",
    ) else {
        return;
    };
    let (a, b) = two_replicas(&url);
    let short = Duration::from_millis(300);
    assert_eq!(a.lead("t", short).unwrap(), Leadership::Leads);
    let Leadership::Follows { holder } = b.lead("t", short).unwrap() else {
        panic!("two leaders");
    };
    assert!(!holder.is_empty());
    assert_eq!(b.lead("u", short).unwrap(), Leadership::Leads, "per source");
    let change = |store: &Store, rev: u64| {
        store.commit(&Commit {
            source: "t".into(),
            snapshots: vec![("1".into(), Some(snap(rev, "Current", "{}")))],
            events: vec![event(&format!("evt_{rev}"), "1", &["hook"])],
            ..Default::default()
        })
    };
    change(&a, 1).unwrap();
    // A stops renewing (paused, cut off): B takes over once the lease ran
    // out, and A's next commit is refused, writing nothing.
    until_it_leads(&b, "t", Duration::from_secs(60));
    let err = change(&a, 2).expect_err("fenced");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert_eq!(b.snapshot("t", "1").unwrap().unwrap().revision, 1);
    assert_eq!(b.outbox_depth("hook").unwrap(), 1, "nothing of A's commit");
    let Leadership::Follows { .. } = a.lead("t", short).unwrap() else {
        panic!("A still leads");
    };
    change(&b, 2).unwrap();
    assert_eq!(a.snapshot("t", "1").unwrap().unwrap().revision, 2);
}

#[test]
fn postgres_replicas_do_not_take_each_other_s_claimed_deliveries() {
    let Some(url) = pg::fresh_database(
        "store_contract::postgres_replicas_do_not_take_each_other_s_claimed_deliveries",
    ) else {
        return;
    };
    let (a, b) = two_replicas(&url);
    commit_events(
        &a,
        "t",
        vec![
            status_event("evt_1", "t", "1", &["hook"]),
            status_event("evt_2", "t", "2", &["hook"]),
        ],
    );
    let now = now_ms() + 1;
    let mine = a.due("hook", now, 10).unwrap();
    assert_eq!(mine.len(), 2);
    assert!(b.due("hook", now, 10).unwrap().is_empty(), "claimed by A");
    assert!(
        a.due("hook", now, 10).unwrap().len() == 2,
        "A's own claims are A's"
    );
    assert!(
        b.next_due("hook").unwrap().unwrap() > now,
        "B waits for A's claims to run out"
    );
    // A fails one for now: rescheduled, it is anyone's when due again.
    let mut failed = mine[0].entry.clone();
    failed.attempts = 1;
    a.reschedule(&mine[0], &failed, now_ms()).unwrap();
    let taken = b.due("hook", now_ms() + 1, 10).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].entry.event_id, mine[0].entry.event_id);
    assert_eq!(taken[0].entry.attempts, 1);
    b.complete(&taken[0]).unwrap();
    a.complete(&mine[1]).unwrap();
    assert_eq!(a.outbox_depth("hook").unwrap(), 0);
}
