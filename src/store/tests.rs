use super::*;

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
        sinks: sinks.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn commit_writes_snapshots_outbox_and_log_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!store.has_baseline("t").unwrap());
    store
        .commit(&Commit {
            source: "t".into(),
            snapshots: vec![("1".into(), Some(snap(1, "Current", "{\"id\":\"1\"}")))],
            events: vec![event("evt_a", "1", &["hook", "chat"])],
            mark_baseline: true,
            sync: None,
            health: None,
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
    assert_eq!(store.listed_ids("t").unwrap(), vec!["1".to_string()]);
}

#[test]
fn entries_of_one_order_stay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
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

#[test]
fn buried_entries_can_be_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
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

#[test]
fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .commit(&Commit {
                source: "t".into(),
                snapshots: vec![("9".into(), Some(snap(3, "Closed", "{}")))],
                ..Default::default()
            })
            .unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.snapshot("t", "9").unwrap().unwrap().revision, 3);
}

#[test]
fn a_second_open_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path())
        .err()
        .expect("second open must fail");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
        store
            .meta
            .insert(META_SCHEMA, &99u64.to_be_bytes())
            .unwrap();
        store.flush().unwrap();
    }
    let err = Store::open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, StoreError::Schema { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("99"));
}

#[test]
fn the_event_log_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
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

#[test]
fn the_listed_index_follows_every_snapshot_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
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
    assert_eq!(store.listed_ids("t").unwrap(), vec!["1".to_string()]);
    let seen: std::collections::HashSet<String> = ["1".to_string()].into();
    assert!(
        store
            .listed_ids_except("t", |id| seen.contains(id))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_schema_1_store_gets_its_listed_index_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
        let mut gone = snap(2, "Closed", "{\"id\":\"2\"}");
        gone.listed = false;
        store
            .commit(&Commit {
                source: "t".into(),
                snapshots: vec![
                    ("1".into(), Some(snap(1, "Current", "{\"id\":\"1\"}"))),
                    ("2".into(), Some(gone)),
                ],
                ..Default::default()
            })
            .unwrap();
        // What a schema 1 store looks like: no index, version 1.
        store.listed.clear().unwrap();
        store.meta.insert(META_SCHEMA, &1u64.to_be_bytes()).unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
    assert_eq!(store.listed_ids("t").unwrap(), vec!["1".to_string()]);
    let version = store.meta.get(META_SCHEMA).unwrap().unwrap();
    assert_eq!(read_u64(&version), Some(SCHEMA_VERSION));
}

#[test]
fn sources_and_outbox_sinks_are_listed_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
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

#[test]
fn reading_needs_an_existing_store_and_creates_none() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("data");
    let err = Store::open_existing(&missing)
        .err()
        .expect("no store there");
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(!missing.exists());
    drop(Store::open(&missing).unwrap());
    assert!(Store::open_existing(&missing).is_ok());
}

#[test]
fn a_file_in_the_way_of_state_dir_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for dir in [file.clone(), file.join("data")] {
        for err in [
            Store::open(&dir).err().expect("refused"),
            Store::open_existing(&dir).err().expect("refused"),
        ] {
            match &err {
                StoreError::NotADirectory { file: f, .. } => assert_eq!(*f, file),
                other => panic!("{other}"),
            }
            assert!(!err.to_string().contains("salvage"), "{err}");
        }
    }
}

#[test]
fn the_sync_state_moves_with_its_commit_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
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
    let store = Store::open(dir.path()).unwrap();
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

fn status_event(id: &str, source: &str, order: &str, sinks: &[&str]) -> NewEvent {
    let event = crate::event::Event {
        kind: EventType::StatusChanged,
        timestamp: "2026-11-22T08:00:00Z".into(),
        data: crate::event::EventData {
            id: id.into(),
            source: source.into(),
            order_id: order.into(),
            from: Some("Current".into()),
            to: Some("Closed".into()),
            closed: true,
            revision: 2,
            changes: Vec::new(),
            order: serde_json::json!({"id": order}),
            ..crate::event::EventData::default()
        },
    };
    NewEvent {
        event_id: id.into(),
        event_type: EventType::StatusChanged,
        order_id: order.into(),
        json: serde_json::to_string(&event).unwrap(),
        sinks: sinks.iter().map(|s| s.to_string()).collect(),
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

#[test]
fn a_timeline_tells_each_event_and_each_sink_s_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
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

#[test]
fn the_delivery_log_and_order_index_are_pruned_with_the_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    commit_events(
        &store,
        "t",
        vec![status_event("evt_old", "t", "old", &["hook"])],
    );
    let due = store.due("hook", now_ms() + 1, 10).unwrap();
    store.complete(&due[0]).unwrap();
    assert_eq!(store.timeline("t", "old").unwrap().len(), 1);
    let opened = store.opened().unwrap();
    assert_eq!(opened.deliveries.len(), 1);

    let events: Vec<NewEvent> = (0..EVENT_LOG_LEN)
        .map(|i| status_event(&format!("evt_{i}"), "t", "new", &[]))
        .collect();
    commit_events(&store, "t", events);
    assert!(store.timeline("t", "old").unwrap().is_empty());
    assert_eq!(opened.deliveries.len(), 0, "its delivery went with it");
    assert_eq!(opened.events_by_order.len() as u64, EVENT_LOG_LEN);
    assert_eq!(
        store.timeline("t", "new").unwrap().len() as u64,
        EVENT_LOG_LEN
    );
}
