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
        store.changed.clear().unwrap();
        store.meta.insert(META_SCHEMA, &1u64.to_be_bytes()).unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
    assert_eq!(store.listed_ids("t").unwrap(), vec!["1".to_string()]);
    let version = store.meta.get(META_SCHEMA).unwrap().unwrap();
    assert_eq!(read_u64(&version), Some(SCHEMA_VERSION));
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

/// A store as a schema 1 or 2 release wrote it, record by record with
/// sled itself: three events (order 1 twice, order 2 once), the event JSON
/// inside each outbox entry and dead letter and again in the log. Returns
/// the three bodies.
pub(super) fn write_old_store(dir: &std::path::Path, version: u64) -> Vec<String> {
    let db = sled::Config::new().path(dir).open().unwrap();
    let tree = |name: &str| db.open_tree(name).unwrap();
    let (meta, snapshots, listed) = (tree("meta"), tree("snapshots"), tree("listed"));
    let (events, outbox, outbox_order, dead) = (
        tree("events"),
        tree("outbox"),
        tree("outbox_order"),
        tree("dead_letters"),
    );
    meta.insert(META_SCHEMA, &version.to_be_bytes()).unwrap();
    meta.insert(META_EVENT_SEQ, &3u64.to_be_bytes()).unwrap();
    meta.insert(baseline_key("t"), &1u64.to_be_bytes()).unwrap();
    let mut gone = snap(2, "Closed", "{\"id\":\"2\"}");
    gone.listed = false;
    gone.changed_at = "2026-11-21T08:00:00Z".into();
    snapshots
        .insert(
            keys::snapshot("t", "1"),
            snap(3, "Closed", "{\"id\":\"1\"}").encode(),
        )
        .unwrap();
    snapshots
        .insert(keys::snapshot("t", "2"), gone.encode())
        .unwrap();
    if version >= 2 {
        listed
            .insert(keys::snapshot("t", "1"), &[] as &[u8])
            .unwrap();
    }
    let bodies: Vec<String> = [("evt_1", "1"), ("evt_2", "1"), ("evt_3", "2")]
        .iter()
        .map(|(id, order)| status_event(id, "t", order, &[]).json)
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        events
            .insert((i as u64 + 1).to_be_bytes(), body.as_bytes())
            .unwrap();
    }
    let old_entry = |seq: u64, sink: &str, order: &str, attempts: u32| {
        serde_json::json!({
            "seq": seq, "sink": sink, "source": "t", "order_id": order,
            "event_id": format!("evt_{seq}"), "event_type": "order.status_changed",
            "attempts": attempts, "created_ms": 5, "last_error": null,
            "event": bodies[seq as usize - 1],
        })
    };
    for (seq, sink, order) in [(1, "hook", "1"), (1, "chat", "1"), (3, "hook", "2")] {
        let value = serde_json::to_vec(&old_entry(seq, sink, order, 0)).unwrap();
        outbox.insert(keys::outbox(sink, 7, seq), value).unwrap();
        outbox_order
            .insert(
                keys::order_index(sink, "t", order, seq),
                &7u64.to_be_bytes(),
            )
            .unwrap();
    }
    let letter = serde_json::json!({
        "entry": old_entry(2, "mail", "1", 3), "reason": "550 no such user", "dead_ms": 9,
    });
    dead.insert(
        keys::dead_letter("mail", 2),
        serde_json::to_vec(&letter).unwrap(),
    )
    .unwrap();
    db.flush().unwrap();
    bodies
}

/// The bodies of every entry of `sink`, in due order.
pub(super) fn due_bodies(store: &SledStore, sink: &str) -> Vec<Option<String>> {
    store
        .due(sink, u64::MAX, 100)
        .unwrap()
        .into_iter()
        .map(|d| d.body)
        .collect()
}

/// What `write_old_store` wrote, as today's schema holds it.
fn assert_upgraded(store: &SledStore, bodies: &[String]) {
    let version = store.meta.get(META_SCHEMA).unwrap().unwrap();
    assert_eq!(read_u64(&version), Some(SCHEMA_VERSION));
    let stored: Vec<String> = store
        .bodies
        .iter()
        .map(|i| String::from_utf8(i.unwrap().1.to_vec()).unwrap())
        .collect();
    assert_eq!(stored, bodies, "each body once, byte for byte");
    for tree in [&store.outbox, &store.dead_letters] {
        for item in tree.iter() {
            let value: serde_json::Value = serde_json::from_slice(&item.unwrap().1).unwrap();
            let entry = value.get("entry").unwrap_or(&value);
            assert!(entry.get("event").is_none(), "no body inside: {value}");
        }
    }
    let refs: Vec<(u64, u32)> = store
        .body_refs
        .iter()
        .map(|i| {
            let (k, v) = i.unwrap();
            (
                read_u64(&k).unwrap(),
                u32::from_be_bytes(v.as_ref().try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(refs, [(1, 2), (2, 1), (3, 1)]);
    let recent: Vec<String> = store.recent_events().map(Result::unwrap).collect();
    assert_eq!(
        recent,
        [bodies[2].clone(), bodies[1].clone(), bodies[0].clone()]
    );
    assert_eq!(
        due_bodies(store, "hook"),
        [Some(bodies[0].clone()), Some(bodies[2].clone())]
    );
    let timeline = store.timeline("t", "1").unwrap();
    assert_eq!(timeline.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(timeline[0].deliveries.len(), 2);
    assert_eq!(
        timeline[1].deliveries[0].state,
        DeliveryStatus::DeadLettered
    );
    assert_eq!(timeline[1].deliveries[0].attempts, 3);
    assert_eq!(store.timeline("t", "2").unwrap().len(), 1);
    assert_eq!(store.listed_ids("t").unwrap(), ["1".to_string()]);
    assert_eq!(store.dead_letters().unwrap()[0].reason, "550 no such user");
    let by_change: Vec<String> = store
        .orders_by_change(None)
        .map(|o| o.unwrap().at.order_id)
        .collect();
    assert_eq!(by_change, ["1", "2"], "the latest change first");
}

#[test]
fn schema_1_and_2_stores_are_upgraded_on_open() {
    for version in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let bodies = write_old_store(dir.path(), version);
        let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
        assert_upgraded(&store, &bodies);
        drop(store);
        // Opened again, it is a store of today's schema like any other.
        let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
        assert_upgraded(&store, &bodies);
    }
}

#[test]
fn an_upgrade_stopped_part_way_opens_and_upgrades_again() {
    let mut stopped = 0;
    for steps in 0.. {
        let dir = tempfile::tempdir().unwrap();
        let bodies = write_old_store(dir.path(), 1);
        migrate::STEPS_BEFORE_CRASH.with(|c| c.set(Some(steps)));
        let first = SledStore::open(dir.path(), LOCK_GRACE);
        migrate::STEPS_BEFORE_CRASH.with(|c| c.set(None));
        match first {
            Ok(store) => {
                assert_upgraded(&store, &bodies);
                break;
            }
            Err(e) => {
                assert!(e.to_string().contains("stopped mid-migration"), "{e}");
                stopped += 1;
            }
        }
        let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
        assert_upgraded(&store, &bodies);
    }
    assert!(stopped >= 5, "stopped at each of the steps: {stopped}");
}

#[test]
fn each_body_is_stored_once_and_goes_when_nothing_refers_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = store.opened().unwrap();
    commit_events(
        &store,
        "t",
        vec![status_event("evt_slow", "t", "9", &["slow"])],
    );
    commit_events(
        &store,
        "t",
        vec![
            status_event("evt_a", "t", "1", &["hook", "chat"]),
            status_event("evt_b", "t", "2", &["hook", "chat"]),
        ],
    );
    assert_eq!(s.bodies.len(), 3, "one body per event, whatever the sinks");
    assert_eq!(s.events.len(), 3);

    // hook delivers both; chat buries one, which is replayed.
    for d in store.due("hook", now_ms() + 1, 10).unwrap() {
        assert!(d.body.is_some());
        store.complete(&d).unwrap();
    }
    let chat = store.due("chat", now_ms() + 1, 10).unwrap();
    store.complete(&chat[0]).unwrap();
    store.bury(&chat[1], &chat[1].entry, "410 Gone").unwrap();
    assert_eq!(store.replay(None).unwrap(), 1);
    let replayed = store.due("chat", now_ms() + 1, 10).unwrap();
    assert_eq!(
        replayed[0].body.as_deref(),
        Some(status_event("evt_b", "t", "2", &[]).json.as_str())
    );
    store.complete(&replayed[0]).unwrap();
    // Still in the log: the bodies stay for `orderwatch events`.
    assert_eq!(s.bodies.len(), 3);
    assert_eq!(s.body_refs.len(), 1, "only the slow sink's entry is left");

    // The log moves on past all three; only the pending one keeps its body.
    let later: Vec<NewEvent> = (0..EVENT_LOG_LEN)
        .map(|i| status_event(&format!("evt_{i}"), "t", "new", &[]))
        .collect();
    commit_events(&store, "t", later);
    assert_eq!(store.recent_events().count() as u64, EVENT_LOG_LEN);
    assert_eq!(s.bodies.len() as u64, EVENT_LOG_LEN + 1);
    let slow = store.due("slow", now_ms() + 1, 10).unwrap();
    assert!(slow[0].body.as_deref().unwrap().contains("evt_slow"));
    store.complete(&slow[0]).unwrap();
    assert_eq!(s.bodies.len() as u64, EVENT_LOG_LEN, "nothing left behind");
    assert_eq!(s.body_refs.len(), 0);
    assert!(
        s.bodies
            .iter()
            .keys()
            .all(|k| s.events.contains_key(k.unwrap()).unwrap())
    );
}

#[test]
fn deliveries_completed_together_leave_as_if_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = store.opened().unwrap();
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
    // Once more (a retried removal): nothing is counted down twice.
    store.complete_all(&done).unwrap();
    assert_eq!(s.outbox_len(), 0);
    assert_eq!(s.outbox_order.len(), 0);
    assert_eq!(s.body_refs.len(), 0, "every reference released, once");
    assert_eq!(s.bodies.len(), 2, "the bodies stay with the event log");
}

#[test]
fn an_entry_whose_body_is_lost_is_due_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    commit_events(
        &store,
        "t",
        vec![status_event("evt_a", "t", "1", &["hook"])],
    );
    let s = store.opened().unwrap();
    s.bodies.remove(1u64.to_be_bytes()).unwrap();
    let due = store.due("hook", now_ms() + 1, 10).unwrap();
    assert_eq!(
        due.len(),
        1,
        "still due: the dispatcher buries it, saying why"
    );
    assert!(due[0].body.is_none());
    assert!(store.timeline("t", "1").unwrap().is_empty());
}
