//! Orders by last change and deliveries completed together, as part of
//! the contract: the listing by change time follows every write, change
//! and removal, newest first across pages; several deliveries completed
//! in one call leave as if one by one, and a repeated call changes
//! nothing; the heads of their orders among a whole due batch are told in
//! one call, as one by one.

use super::{Backend, commit_events, status_event};
use orderwatch::{Commit, DeliveryStatus, EventType, NewEvent, Snapshot, Store, now_ms};

fn at(id: &str, changed_at: &str) -> (String, Option<Snapshot>) {
    let order = format!("{{\"id\":\"{id}\"}}");
    let snap = Snapshot {
        revision: 1,
        hash: Snapshot::hash_of(&order),
        listed: true,
        status: Some("Current".into()),
        changed_at: changed_at.into(),
        order,
    };
    (id.to_owned(), Some(snap))
}

fn write(store: &Store, snapshots: Vec<(String, Option<Snapshot>)>) {
    let commit = Commit {
        source: "t".into(),
        snapshots,
        ..Default::default()
    };
    store.commit(&commit).unwrap();
}

fn ids(store: &Store) -> Vec<String> {
    store
        .orders_by_change(None)
        .map(|o| o.unwrap().at.order_id)
        .collect()
}

pub(super) fn orders_by_change_follow_each_write_change_and_removal(b: &Backend) {
    let store = b.open();
    write(
        &store,
        vec![
            at("a", "2026-01-01T00:00:01Z"),
            at("b", "2026-01-01T00:00:02Z"),
            at("c", "2026-01-01T00:00:03Z"),
            at("d", "2026-01-01T00:00:03Z"),
        ],
    );
    assert_eq!(ids(&store), ["d", "c", "b", "a"]);

    // A change moves the order to the front, in the commit that carries
    // its event; its old place is gone.
    store
        .commit(&Commit {
            source: "t".into(),
            snapshots: vec![at("a", "2026-01-01T00:00:09Z")],
            events: vec![NewEvent {
                event_id: "evt_a".into(),
                event_type: EventType::StatusChanged,
                order_id: "a".into(),
                json: "{}".into(),
                sinks: vec!["hook".into()],
            }],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&store), ["a", "d", "c", "b"]);
    // Written again with the same change time: in place.
    write(&store, vec![at("c", "2026-01-01T00:00:03Z")]);
    assert_eq!(ids(&store), ["a", "d", "c", "b"]);
    // A removed order leaves the listing with its snapshot.
    write(&store, vec![("d".to_owned(), None)]);
    assert_eq!(ids(&store), ["a", "c", "b"]);

    // A page starts strictly below where the last one ended.
    let first: Vec<_> = store
        .orders_by_change(None)
        .take(2)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first[1].at.order_id, "c");
    assert_eq!(first[1].snapshot.changed_at, "2026-01-01T00:00:03Z");
    let rest: Vec<String> = store
        .orders_by_change(Some(&first[1].at))
        .map(|o| o.unwrap().at.order_id)
        .collect();
    assert_eq!(rest, ["b"]);
    // Across sources too, and survives a reopen.
    store
        .commit(&Commit {
            source: "u".into(),
            snapshots: vec![at("z", "2026-01-01T00:00:05Z")],
            ..Default::default()
        })
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let store = b.open();
    assert_eq!(ids(&store), ["a", "z", "c", "b"]);
}

pub(super) fn deliveries_completed_together_leave_as_if_one_by_one(b: &Backend) {
    let store = b.open();
    commit_events(
        &store,
        "t",
        vec![
            status_event("evt_a", "t", "1", &["hook", "chat"]),
            status_event("evt_b", "t", "2", &["hook"]),
        ],
    );
    let mut done = store.due("hook", now_ms() + 1, 10).unwrap();
    done.extend(store.due("chat", now_ms() + 1, 10).unwrap());
    assert_eq!(done.len(), 3);
    store.complete_all(&done).unwrap();
    // Once more (a retried removal): nothing changes.
    store.complete_all(&done).unwrap();
    assert_eq!(store.outbox_depth("hook").unwrap(), 0);
    assert_eq!(store.outbox_depth("chat").unwrap(), 0);
    // The bodies stay with the event log.
    assert_eq!(store.recent_events().count(), 2);
    let timeline = store.timeline("t", "1").unwrap();
    assert_eq!(timeline[0].deliveries.len(), 2);
    assert!(
        timeline[0]
            .deliveries
            .iter()
            .all(|d| d.state == DeliveryStatus::Delivered && d.attempts == 1)
    );
    store.complete_all(&[]).unwrap();
}

pub(super) fn the_heads_of_a_due_batch_are_told_in_one_call(b: &Backend) {
    let store = b.open();
    commit_events(
        &store,
        "t",
        vec![
            status_event("evt_1", "t", "42", &["hook"]),
            status_event("evt_2", "t", "42", &["hook"]),
            status_event("evt_3", "t", "43", &["hook", "chat"]),
        ],
    );
    let mut due = store.due("hook", now_ms() + 1, 10).unwrap();
    due.extend(store.due("chat", now_ms() + 1, 10).unwrap());
    let ids: Vec<&str> = due.iter().map(|d| d.entry.event_id.as_str()).collect();
    assert_eq!(ids, ["evt_1", "evt_2", "evt_3", "evt_3"]);
    let heads = |order: &[usize]| {
        let entries: Vec<_> = order.iter().map(|&i| &due[i].entry).collect();
        store.are_first_of_order(&entries).unwrap()
    };
    // Each sink's order separately, the answers in the order asked, as
    // one by one.
    assert_eq!(heads(&[0, 1, 2, 3]), [true, false, true, true]);
    assert_eq!(heads(&[3, 1, 0]), [true, false, true]);
    for (i, d) in due.iter().enumerate() {
        assert_eq!(heads(&[i]), [store.is_first_of_order(&d.entry).unwrap()]);
    }
    assert!(store.are_first_of_order(&[]).unwrap().is_empty());
    // The head delivered, the next of its order leads.
    store.complete(&due[0]).unwrap();
    assert_eq!(heads(&[1, 2]), [true, true]);
}

/// Several sinks' entries of the same events completed together: an
/// event's body goes with the last entry that needed it (the log no longer
/// does), and stays while one of its entries is still queued.
#[test]
fn postgres_a_body_goes_with_the_last_of_its_entries_completed_together() {
    let Some(url) = crate::pg::fresh_database(
        "store_contract::by_change::postgres_a_body_goes_with_the_last_of_its_entries_completed_together",
    ) else {
        return;
    };
    let store = Store::open_postgres(&url, true).unwrap();
    commit_events(
        &store,
        "t",
        vec![
            status_event("evt_a", "t", "1", &["hook", "chat"]),
            status_event("evt_b", "t", "2", &["hook", "chat"]),
        ],
    );
    let mut due = store.due("hook", now_ms() + 1, 10).unwrap();
    due.extend(store.due("chat", now_ms() + 1, 10).unwrap());
    assert_eq!(due.len(), 4);
    // The log moves on past both events: only their entries need the bodies.
    let filler: Vec<NewEvent> = (0..orderwatch::EVENT_LOG_LEN)
        .map(|i| status_event(&format!("evt_f{i}"), "t", "9", &[]))
        .collect();
    commit_events(&store, "t", filler);
    let (a, b) = (due[0].entry.seq, due[1].entry.seq);
    let bodies = |seq: u64| {
        crate::pg::count_at(
            &url,
            &format!("SELECT count(*) FROM bodies WHERE seq = {seq}"),
        )
    };
    assert_eq!((bodies(a), bodies(b)), (1, 1));
    let hook_a = due
        .iter()
        .position(|d| d.entry.sink == "hook" && d.entry.seq == a);
    let hook_a = due.remove(hook_a.unwrap());
    store.complete(&hook_a).unwrap();
    assert_eq!(bodies(a), 1, "chat still needs evt_a's body");
    store.complete_all(&due).unwrap();
    assert_eq!((bodies(a), bodies(b)), (0, 0));
    assert_eq!(store.outbox_depth("hook").unwrap(), 0);
    assert_eq!(store.outbox_depth("chat").unwrap(), 0);
    let logged = crate::pg::count_at(
        &url,
        &format!("SELECT count(*) FROM deliveries WHERE seq IN ({a}, {b}) AND attempts = 1"),
    );
    assert_eq!(logged, 4);
}

/// A postgres store from before the change times (schema 4) gets them from
/// its snapshots when it is opened, and lists by change at once.
#[test]
fn postgres_schema_4_store_gets_its_change_times_on_open() {
    let Some(url) = crate::pg::fresh_database(
        "store_contract::by_change::postgres_schema_4_store_gets_its_change_times_on_open",
    ) else {
        return;
    };
    {
        let store = Store::open_postgres(&url, true).unwrap();
        write(
            &store,
            vec![
                at("a", "2026-01-01T00:00:02.500Z"),
                at("b", "2026-01-01T00:00:01Z"),
                at("c", "2025-12-31T23:59:59Z"),
                at("x", "not a time"),
            ],
        );
    }
    crate::pg::sql_at(
        &url,
        "DROP INDEX snapshots_changed; ALTER TABLE snapshots DROP COLUMN changed_ms;
         DELETE FROM schema_migrations WHERE version = 5",
    )
    .unwrap();
    let store = Store::open_postgres(&url, false).unwrap();
    // A time that does not read counts as the oldest, as on sled.
    assert_eq!(ids(&store), ["a", "b", "c", "x"]);
    let a = store.orders_by_change(None).next().unwrap().unwrap();
    assert_eq!(a.at.changed_ms, 1_767_225_602_500);
}
