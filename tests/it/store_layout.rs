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
