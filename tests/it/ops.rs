//! Health, readiness and metrics of `orderwatch run`, over real HTTP.

use crate::helpers::*;
use std::process::Stdio;
use std::time::Duration;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let sim = simulator(50).await;
    let hook = Receiver::start().await;
    let port = free_port();
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    retries: 0\n",
        ),
        &webhook_sink_yaml("hook", &hook.url),
        &format!("listen: 127.0.0.1:{port}\n"),
    );
    let mut child = tokio::process::Command::new(binary())
        .arg("--config")
        .arg(ws.config_path())
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");

    let mut health = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while health.is_none() && std::time::Instant::now() < deadline {
        health = get(&format!("{base}/healthz")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health.map(|h| h.0), Some(200));

    let mut ready = (0, String::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ready.0 != 200 && std::time::Instant::now() < deadline {
        ready = get(&format!("{base}/readyz")).await.unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert!(ready.1.contains("tracking: ok"), "{}", ready.1);

    let (status, metrics) = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    for series in [
        "orderwatch_polls_total{source=\"tracking\",outcome=\"ok\"}",
        "orderwatch_poll_duration_seconds",
        "orderwatch_orders_tracked{source=\"tracking\"} 50",
        "orderwatch_api_requests_total{source=\"tracking\",status=\"200\"}",
        "orderwatch_outbox_depth{sink=\"hook\"}",
        "orderwatch_dead_letters{sink=\"hook\"}",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }

    // The simulator goes away: after 3 intervals without a good poll, not ready.
    sim.shutdown().await;
    let mut late = (0, String::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while late.0 != 503 && std::time::Instant::now() < deadline {
        late = get(&format!("{base}/readyz")).await.unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(late.0, 503, "{}", late.1);
    assert!(late.1.contains("tracking: not ready"), "{}", late.1);
    assert!(late.1.contains("last error"), "says why: {}", late.1);
    assert_eq!(
        get(&format!("{base}/healthz")).await.map(|h| h.0),
        Some(200),
        "still alive"
    );

    // The container's health check command agrees.
    let out = ws.run(&["healthcheck"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let out = ws.run(&["healthcheck"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[tokio::test]
async fn demo_shows_an_event_within_ten_seconds_and_stops_on_ctrl_c() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(binary())
        .arg("demo")
        .env_remove("ORDERWATCH_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let is_event = line.contains(" order.") && (line.contains('→'));
            seen.push(line);
            if is_event {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "no event line within 10 s:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("simulated Orange APIs: http://127.0.0.1:")),
        "{seen:?}"
    );
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "Ctrl-C stops the demo cleanly: {status:?}"
    );
}
