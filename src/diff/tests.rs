use super::*;
use proptest::prelude::*;

const T: &str = "2026-11-22T08:00:00Z";

fn rules() -> Rules {
    Rules {
        source: "tracking".into(),
        id_field: "/id".into(),
        status_field: "/status".into(),
        watch: vec!["/request/status".into()],
        closed_statuses: vec!["Closed".into()],
    }
}

fn obs(json: &str) -> Observed {
    let raw = RawValue::from_string(json.to_owned()).unwrap();
    observe(&raw, &rules()).unwrap()
}

fn baseline(json: &str) -> Snapshot {
    match first_seen(&obs(json), &rules(), false, T) {
        Outcome::Refreshed(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn observe_needs_an_object_with_an_id() {
    let r = rules();
    for bad in [
        "[1]",
        "\"x\"",
        "{\"status\":\"Current\"}",
        "{\"id\":\"\"}",
        "{\"id\":null}",
    ] {
        let raw = RawValue::from_string(bad.to_owned()).unwrap();
        assert!(observe(&raw, &r).is_err(), "{bad}");
    }
    let numeric = obs(r#"{"id":123,"status":"Current"}"#);
    assert_eq!(numeric.order_id, "123");
    assert_eq!(numeric.status.as_deref(), Some("Current"));
}

#[test]
fn baseline_is_silent_and_notify_announces() {
    let o = obs(r#"{"id":"1","status":"Current"}"#);
    assert!(matches!(first_seen(&o, &rules(), false, T), Outcome::Refreshed(s) if s.revision == 0));
    match first_seen(&o, &rules(), true, T) {
        Outcome::Changed(s, e) => {
            assert_eq!(s.revision, 1);
            assert_eq!(e.kind, EventType::Created);
            assert_eq!(e.data.to.as_deref(), Some("Current"));
            assert_eq!(e.data.from, None);
            assert!(!e.data.closed);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn identical_order_is_unchanged() {
    let json = r#"{"id":"1","status":"Current"}"#;
    assert_eq!(
        compare(&baseline(json), &obs(json), &rules(), true, T),
        Outcome::Unchanged
    );
}

#[test]
fn status_change_is_one_event_with_watched_changes() {
    let prev = baseline(r#"{"id":"1","status":"Current","request":{"status":"a"}}"#);
    let now = obs(r#"{"id":"1","status":"Closed","request":{"status":"b"}}"#);
    match compare(&prev, &now, &rules(), true, T) {
        Outcome::Changed(snap, e) => {
            assert_eq!(e.kind, EventType::StatusChanged);
            assert_eq!(e.data.from.as_deref(), Some("Current"));
            assert_eq!(e.data.to.as_deref(), Some("Closed"));
            assert!(e.data.closed);
            assert_eq!(e.data.revision, 1);
            assert_eq!(snap.revision, 1);
            let paths: Vec<&str> = e.data.changes.iter().map(|c| c.path.as_str()).collect();
            assert_eq!(paths, ["/status", "/request/status"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn watched_change_without_status_change_is_an_update() {
    let prev = baseline(r#"{"id":"1","status":"Current","request":{"status":"a"}}"#);
    let now = obs(r#"{"id":"1","status":"Current","request":{"status":"b"}}"#);
    match compare(&prev, &now, &rules(), true, T) {
        Outcome::Changed(_, e) => {
            assert_eq!(e.kind, EventType::Updated);
            assert_eq!(e.data.from, None);
            assert_eq!(e.data.changes.len(), 1);
            assert_eq!(e.data.changes[0].from, Value::String("a".into()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unwatched_change_refreshes_silently() {
    let prev = baseline(r#"{"id":"1","status":"Current","note":"x"}"#);
    let now = obs(r#"{"id":"1","status":"Current","note":"y"}"#);
    match compare(&prev, &now, &rules(), true, T) {
        Outcome::Refreshed(s) => {
            assert_eq!(s.revision, prev.revision);
            assert!(s.order.contains("\"y\""));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn leaving_the_list_unchanged_only_flips_listed() {
    let json = r#"{"id":"1","status":"Current"}"#;
    match compare(&baseline(json), &obs(json), &rules(), false, T) {
        Outcome::Refreshed(s) => assert!(!s.listed),
        other => panic!("{other:?}"),
    }
}

#[test]
fn removal_carries_the_last_state() {
    let prev = baseline(r#"{"id":"1","status":"Current"}"#);
    match removed("1", &prev, &rules(), T) {
        Outcome::Removed(e) => {
            assert_eq!(e.kind, EventType::Removed);
            assert_eq!(e.data.from.as_deref(), Some("Current"));
            assert_eq!(e.data.revision, 1);
            assert_eq!(e.data.order["id"], "1");
        }
        other => panic!("{other:?}"),
    }
}

fn status() -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), "[A-Za-z]{1,8}".prop_map(Some)]
}

fn order_json(id: &str, status: &Option<String>, watched: &str, other: &str) -> String {
    serde_json::json!({"id": id, "status": status, "request": {"status": watched}, "other": other})
        .to_string()
}

proptest! {
    #[test]
    fn no_event_for_an_identical_order(id in "[0-9]{1,6}", s in status(), w in ".{0,8}", o in ".{0,8}") {
        let json = order_json(&id, &s, &w, &o);
        prop_assert_eq!(compare(&baseline(&json), &obs(&json), &rules(), true, T), Outcome::Unchanged);
    }

    #[test]
    fn exactly_one_status_event_per_status_change(
        id in "[0-9]{1,6}", a in status(), b in status(), w1 in ".{0,4}", w2 in ".{0,4}", o in ".{0,8}"
    ) {
        let prev = baseline(&order_json(&id, &a, &w1, &o));
        let now = obs(&order_json(&id, &b, &w2, &o));
        let outcome = compare(&prev, &now, &rules(), true, T);
        match (&outcome, a == b, w1 == w2) {
            (Outcome::Changed(_, e), false, _) => {
                prop_assert_eq!(e.kind, EventType::StatusChanged);
                prop_assert_eq!(&e.data.from, &a);
                prop_assert_eq!(&e.data.to, &b);
            }
            (Outcome::Changed(_, e), true, false) => prop_assert_eq!(e.kind, EventType::Updated),
            (Outcome::Unchanged, true, true) => {}
            (other, _, _) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn ids_are_stable_across_runs(id in "[0-9]{1,6}", a in status(), b in status()) {
        prop_assume!(a != b);
        let prev = baseline(&order_json(&id, &a, "w", "o"));
        let now = obs(&order_json(&id, &b, "w", "o"));
        let first = compare(&prev, &now, &rules(), true, T);
        let again = compare(&prev, &now, &rules(), true, "2030-01-01T00:00:00Z");
        match (first, again) {
            (Outcome::Changed(_, e1), Outcome::Changed(_, e2)) => prop_assert_eq!(e1.data.id, e2.data.id),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
