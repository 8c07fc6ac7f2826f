//! Order JSON from the API through the diff: arbitrary bytes, read as the
//! poller reads a list item (a `RawValue`), then `observe`, then `compare`
//! against a snapshot of another arbitrary order (and of itself), and
//! `removed`. Nothing may panic; events must serialise; the same change must
//! give the same event id twice (receivers deduplicate on it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use orderwatch::diff::{self, Outcome, Rules};
use serde_json::value::RawValue;

fn rules(status_field: &str) -> Rules {
    Rules {
        source: "fuzz".into(),
        id_field: "/id".into(),
        status_field: status_field.into(),
        watch: vec!["/request/status".into(), "/a~1b/0".into(), "".into()],
        closed_statuses: vec!["Closed".into()],
    }
}

fn check(outcome: &Outcome) {
    match outcome {
        Outcome::Changed(_, event) | Outcome::Removed(event) => {
            let json = serde_json::to_string(event).expect("an event serialises");
            let back: serde_json::Value = serde_json::from_str(&json).expect("and reads back");
            assert_eq!(back["data"]["id"], event.data.id.as_str());
        }
        Outcome::Unchanged | Outcome::Refreshed(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // Two orders: before and after the first 0xff byte (never in UTF-8).
    let (a, b) = match data.iter().position(|&x| x == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let (Ok(prev_raw), Ok(now_raw)) = (
        serde_json::from_slice::<Box<RawValue>>(a),
        serde_json::from_slice::<Box<RawValue>>(b),
    ) else {
        return;
    };
    for status_field in ["/status", "/request/status", ""] {
        let rules = rules(status_field);
        let now = match diff::observe(&now_raw, &rules) {
            Ok(now) => now,
            Err(message) => {
                assert!(!message.is_empty());
                continue;
            }
        };
        assert!(!now.order_id.is_empty());
        let created = diff::first_seen(&now, &rules, true, "2026-01-01T00:00:00Z");
        check(&created);
        let Ok(prev) = diff::observe(&prev_raw, &rules) else {
            continue;
        };
        let Outcome::Refreshed(snapshot) =
            diff::first_seen(&prev, &rules, false, "2026-01-01T00:00:00Z")
        else {
            panic!("a silent first sight is a plain snapshot");
        };
        for listed in [true, false] {
            let once = diff::compare(&snapshot, &now, &rules, listed, "2026-01-01T00:00:01Z");
            let twice = diff::compare(&snapshot, &now, &rules, listed, "2026-01-01T00:00:02Z");
            check(&once);
            // The same change detected twice (after a crash) has the same id.
            if let (Outcome::Changed(_, e1), Outcome::Changed(_, e2)) = (&once, &twice) {
                assert_eq!(e1.data.id, e2.data.id);
                assert_eq!(e1.data.revision, snapshot.revision + 1);
            }
        }
        check(&diff::removed(
            &now.order_id,
            &snapshot,
            &rules,
            "2026-01-01T00:00:03Z",
        ));
    }
});
