//! Digests' and quiet hours' part of the contract: an entry held for a
//! route's quiet hours is an outbox entry due when they end (`max_age`
//! counting from then); events kept for a sink's digest wait outside its
//! outbox and become one entry, once, in one transaction; a sink's first
//! digest remembers since when it has waited.

use super::Backend;
use orderwatch::{Commit, EventType, Hold, NewDigest, NewEvent, Routed, Store, now_ms};

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

fn digest_of(sink: &str) -> Routed {
    Routed {
        sink: sink.into(),
        hold: Hold::Digest,
    }
}

pub(super) fn a_quiet_entry_is_queued_for_the_end_of_the_quiet_hours(b: &Backend) {
    let store = b.open();
    let later = now_ms() + 3_600_000;
    let held = Routed {
        sink: "chat".into(),
        hold: Hold::Until(later),
    };
    commit(&store, "evt_1", "1", vec![held, "hook".into()]);
    assert_eq!(store.due("hook", now_ms(), 10).unwrap().len(), 1);
    // Held: in the outbox (its depth counts it), due when the hours end.
    assert_eq!(store.outbox_depth("chat").unwrap(), 1);
    assert!(store.due("chat", later - 1, 10).unwrap().is_empty());
    let due = store.due("chat", later, 10).unwrap();
    assert_eq!(due.len(), 1);
    // `max_age` counts from the release.
    assert_eq!(due[0].entry.created_ms, later);
    assert_eq!(store.next_due("chat").unwrap(), Some(later));
}

pub(super) fn kept_events_become_one_digest_entry_once(b: &Backend) {
    let store = b.open();
    commit(&store, "evt_1", "1", vec![digest_of("daily")]);
    commit(
        &store,
        "evt_2",
        "2",
        vec![digest_of("daily"), "hook".into()],
    );
    assert_eq!(store.outbox_depth("daily").unwrap(), 0);
    assert_eq!(store.kept_for_digest("daily").unwrap(), 2);
    let oldest = store.oldest_kept_for_digest("daily").unwrap().unwrap();
    assert!(store.held_for_digest("daily", oldest).unwrap().is_empty());
    let held = store.held_for_digest("daily", u64::MAX).unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].entry.event_id, "evt_1");
    assert_eq!(held[1].body.as_deref(), Some("{\"id\":\"evt_2\"}"));
    let new = NewDigest {
        sink: "daily",
        id: "dig_1",
        json: "{\"type\":\"digest\"}",
        entries: &held,
    };
    assert!(store.make_digest(&new).unwrap());
    // Made once: the same events cannot make a second one.
    assert!(!store.make_digest(&new).unwrap());
    assert_eq!(store.kept_for_digest("daily").unwrap(), 0);
    assert_eq!(store.oldest_kept_for_digest("daily").unwrap(), None);
    let due = store.due("daily", now_ms(), 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].entry.event_id, "dig_1");
    assert_eq!(due[0].entry.event_type, EventType::Digest);
    assert_eq!(due[0].body.as_deref(), Some("{\"type\":\"digest\"}"));
    // The events' own bodies stay while the log or `hook` needs them.
    store.complete(&due[0]).unwrap();
    assert_eq!(store.outbox_depth("daily").unwrap(), 0);
    let log: Vec<String> = store.recent_events().map(Result::unwrap).collect();
    assert_eq!(log.len(), 2);
    let hook = store.due("hook", now_ms(), 10).unwrap();
    assert_eq!(hook[0].body.as_deref(), Some("{\"id\":\"evt_2\"}"));
}

pub(super) fn a_sink_s_first_digest_remembers_since_when_it_waited(b: &Backend) {
    let now = now_ms();
    {
        let store = b.open();
        assert_eq!(
            store.first_digest_since("daily", now, false).unwrap(),
            Some(now)
        );
        assert_eq!(
            store.first_digest_since("daily", now, true).unwrap(),
            Some(now)
        );
        assert_eq!(
            store.first_digest_since("daily", now + 5, true).unwrap(),
            Some(now)
        );
        store.first_digest_from("daily", now + 10).unwrap();
        store.flush().unwrap();
    }
    let store = b.open();
    assert_eq!(
        store.first_digest_since("daily", now + 20, true).unwrap(),
        Some(now + 10)
    );
    commit(&store, "evt_1", "1", vec![digest_of("daily")]);
    let held = store.held_for_digest("daily", u64::MAX).unwrap();
    let new = NewDigest {
        sink: "daily",
        id: "dig_1",
        json: "{}",
        entries: &held,
    };
    assert!(store.make_digest(&new).unwrap());
    assert_eq!(
        store.first_digest_since("daily", now + 30, true).unwrap(),
        None
    );
}
