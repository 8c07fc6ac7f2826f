//! Bounds on what is read from Orange, through the simulator: an order
//! larger than `MAX_ORDER_BYTES` read by id is a plain error (exit 1, the
//! request id, no panic) and no event; once it is back to a sane size the
//! next cycle tells its change.

use crate::helpers::*;
use orderwatch::MAX_ORDER_BYTES;
use serde_json::json;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

#[tokio::test]
async fn an_order_over_max_order_bytes_read_by_id_is_a_plain_error() {
    let sim = simulator(30).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "", "");
    ws.once_ok().await;
    let id = admin.ids(TRACKING, "status=Current").await[0].clone();
    // The order closes (so it leaves the filtered list and is read by id)
    // and grows past the cap, a piece at a time (the admin API takes
    // bodies of a few MB).
    admin
        .patch("order-tracking", &id, json!({"status": "Closed"}))
        .await;
    let piece = "x".repeat(1 << 20);
    let pieces = MAX_ORDER_BYTES / piece.len() + 1;
    for n in 0..pieces {
        admin
            .patch("order-tracking", &id, json!({ format!("blob{n}"): piece }))
            .await;
    }
    let out = ws.run(&["once"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failure = stderr
        .lines()
        .find(|l| l.contains("poll cycle failed"))
        .unwrap_or_else(|| panic!("{}", text(&out)));
    assert!(
        failure.contains("the order is larger than orderwatch accepts")
            && failure.contains("request id "),
        "{failure}"
    );
    assert!(!stderr.contains("panicked"));
    assert!(hook.received().is_empty(), "no event from a refused answer");

    // Back to a sane size: the closing is told, once.
    let shrink: serde_json::Map<String, serde_json::Value> = (0..pieces)
        .map(|n| (format!("blob{n}"), serde_json::Value::Null))
        .collect();
    admin.patch("order-tracking", &id, shrink.into()).await;
    ws.once_ok().await;
    let got = hook.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["data"]["order_id"], id.as_str());
    assert_eq!(got[0].json()["data"]["to"], "Closed");
    sim.shutdown().await;
}
