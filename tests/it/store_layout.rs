//! The store's layout through the real binary: an event's body is stored
//! once, whatever the number of sinks, and is exactly what a webhook
//! receives. The store is read afterwards with sled itself, as it is on
//! disk.

use crate::helpers::*;
use serde_json::json;
use std::path::Path;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

/// How many times `needle` occurs in the stored values of every tree.
fn occurrences_in_store(dir: &Path, needle: &[u8]) -> (usize, Vec<(String, usize)>) {
    let db = sled::open(dir).expect("the store opens with sled");
    let mut total = 0;
    let mut per_tree = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).expect("tree");
        let n: usize = tree
            .iter()
            .values()
            .map(|v| {
                let v = v.expect("value");
                v.windows(needle.len()).filter(|w| *w == needle).count()
            })
            .sum();
        if n > 0 {
            per_tree.push((String::from_utf8_lossy(&name).into_owned(), n));
        }
        total += n;
    }
    (total, per_tree)
}

#[tokio::test]
async fn an_event_s_body_is_stored_once_whatever_the_sinks() {
    let sim = simulator(20).await;
    let admin = Admin::new(&sim);
    let up = Receiver::start().await;
    let down = Receiver::start().await;
    down.script(&[503; 100]);
    let sinks = format!(
        "{}{}",
        webhook_sink_yaml("up", &up.url),
        webhook_sink_yaml("down", &down.url)
    );
    let ws = current_tracking_with_sinks(&sim.base_url(), &sinks);
    ws.once_ok().await;

    // A large, recognisable order: its bytes show where it is stored.
    let marker = "x7q".repeat(2000);
    let id = admin.ids(TRACKING, "status=Current").await[0].clone();
    admin
        .patch(
            "order-tracking",
            &id,
            json!({"status": "Closed", "notes": marker}),
        )
        .await;
    let out = ws.run(&["once", "--drain-timeout", "500ms"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "down keeps it queued: {}",
        text(&out)
    );
    let delivered = up.delivered();
    assert_eq!(delivered.len(), 1, "up got the closing");

    let data = ws.dir.path().join("data");
    let (total, per_tree) = occurrences_in_store(&data, marker.as_bytes());
    // The snapshot (the order as last read) and the event's body: not a copy
    // per sink, nor one more in the event log.
    assert_eq!(total, 2, "{per_tree:?}");
    {
        // Every handle goes at the end of the block: sled's lock with them.
        let db = sled::open(&data).unwrap();
        let bodies = db.open_tree("bodies").unwrap();
        assert_eq!(bodies.len(), 1);
        let (_, body) = bodies.iter().next().unwrap().unwrap();
        assert_eq!(
            body.as_ref(),
            delivered[0].body.as_ref(),
            "the stored body is the webhook body, byte for byte"
        );
    }
    assert!(verify_signature(&delivered[0], WEBHOOK_SECRET));

    // Once down recovers and delivers it, the body stays only as long as
    // the event log shows it: `orderwatch events` still prints it.
    down.clear_script();
    ws.once_ok().await;
    assert_eq!(down.delivered()[0].body, delivered[0].body);
    let out = ws.run(&["events", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end().as_bytes(),
        delivered[0].body.as_ref()
    );
    let db = sled::open(&data).unwrap();
    assert_eq!(
        db.open_tree("body_refs").unwrap().len(),
        0,
        "nothing refers to it now"
    );
    assert_eq!(db.open_tree("bodies").unwrap().len(), 1);
    sim.shutdown().await;
}

/// The key of an outbox entry as every schema so far wrote it: sink, a zero
/// byte, the due time and the sequence, big-endian.
fn outbox_key(sink: &str, due_ms: u64, seq: u64) -> Vec<u8> {
    let mut k = sink.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[tokio::test]
async fn a_schema_2_store_is_upgraded_and_its_outbox_delivered_byte_for_byte() {
    let sim = simulator(5).await;
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "", "");
    // An event as a schema 2 release stored it: its JSON inside the outbox
    // entry (a string inside JSON) and again in the log. Its key order and
    // spacing are this test's own, so only a byte-for-byte copy matches.
    let body = r#"{"type":"order.status_changed","timestamp":"2026-11-22T08:00:00Z","data":{"id":"evt_old","source":"tracking","order_id":"42","from":"Current","to":"Closed","closed":true,"revision":2,"changes":[],"order":{"id":"42","status":"Closed","note":"caf\u00e9 \"quoted\""}}}"#;
    {
        let db = sled::open(ws.dir.path().join("data")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", &2u64.to_be_bytes()).unwrap();
        meta.insert("event_seq", &1u64.to_be_bytes()).unwrap();
        db.open_tree("events")
            .unwrap()
            .insert(1u64.to_be_bytes(), body.as_bytes())
            .unwrap();
        let entry = json!({
            "seq": 1, "sink": "hook", "source": "tracking", "order_id": "42",
            "event_id": "evt_old", "event_type": "order.status_changed", "attempts": 0,
            "created_ms": 1, "last_error": null, "event": body,
        });
        db.open_tree("outbox")
            .unwrap()
            .insert(
                outbox_key("hook", 1, 1),
                serde_json::to_vec(&entry).unwrap(),
            )
            .unwrap();
        let mut index = b"hook\0tracking\0".to_vec();
        index.extend_from_slice(&2u32.to_be_bytes());
        index.extend_from_slice(b"42");
        index.extend_from_slice(&1u64.to_be_bytes());
        db.open_tree("outbox_order")
            .unwrap()
            .insert(index, &1u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    ws.once_ok().await;
    let delivered = hook.delivered();
    assert_eq!(
        delivered.len(),
        1,
        "the old entry, and nothing from the baseline"
    );
    assert_eq!(delivered[0].body.as_ref(), body.as_bytes());
    assert_eq!(delivered[0].header("webhook-id"), "evt_old");
    assert!(verify_signature(&delivered[0], WEBHOOK_SECRET));
    let out = ws.run(&["events", "--json"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), body);
    let db = sled::open(ws.dir.path().join("data")).unwrap();
    let version = db.open_tree("meta").unwrap().get("schema_version").unwrap();
    assert_eq!(
        version.as_deref(),
        Some(&orderwatch::SCHEMA_VERSION.to_be_bytes()[..])
    );
    sim.shutdown().await;
}
