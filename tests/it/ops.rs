//! Health, readiness and metrics of `orderwatch run`, over real HTTP.

use crate::helpers::*;
use std::process::Stdio;
use std::time::Duration;

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let sim = simulator(50).await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    retries: 0\n",
        ),
        &webhook_sink_yaml("hook", &hook.url),
        "listen: 127.0.0.1:0\n",
    );
    let mut child = ws.spawn_run();
    // Port 0: the daemon binds before it runs and logs the port it got.
    let base = format!("http://{}", health_addr(&ws).await);

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
    // Every series says what it counts.
    for name in [
        "orderwatch_polls_total",
        "orderwatch_poll_duration_seconds",
        "orderwatch_orders_tracked",
        "orderwatch_api_requests_total",
        "orderwatch_outbox_depth",
        "orderwatch_dead_letters",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "no description of {name} in\n{metrics}"
        );
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
    assert!(
        late.1.contains("the last poll failed"),
        "says why: {}",
        late.1
    );
    assert_eq!(
        get(&format!("{base}/healthz")).await.map(|h| h.0),
        Some(200),
        "still alive"
    );

    // The container's health check command agrees. With port 0 in the
    // config only the log knows the port: it asks for --url.
    let out = ws.run(&["healthcheck"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("pass --url"), "{}", text(&out));
    let healthz = format!("{base}/healthz");
    let out = ws.run(&["healthcheck", "--url", &healthz]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let out = ws.run(&["healthcheck", "--url", &healthz]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[tokio::test]
async fn demo_shows_an_event_within_ten_seconds_from_each_source_soon_after_and_stops_on_ctrl_c() {
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
    // Each of its sources (Order Tracking, Ordering requests, Ordering
    // orders read incrementally) tells its changes: an event line is
    // `TIME SOURCE ORDER TYPE …`.
    let source_of = |line: &str| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 3 && fields[3].starts_with("order.")).then(|| fields[1].to_owned())
    };
    let mut told: std::collections::BTreeSet<String> =
        seen.iter().filter_map(|l| source_of(l)).collect();
    let all_told = tokio::time::timeout(Duration::from_secs(30), async {
        while told.len() < 3 {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    told.extend(source_of(&line));
                    seen.push(line);
                }
                _ => return false,
            }
        }
        true
    })
    .await;
    assert_eq!(
        all_told,
        Ok(true),
        "not every source told a change within 30 s: {told:?}\n{}",
        seen.join("\n")
    );
    assert_eq!(
        told.into_iter().collect::<Vec<_>>(),
        ["orders", "requests", "tracking"]
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

#[tokio::test]
async fn the_example_config_passes_check_with_its_variables_set() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("data");
    let env = [
        ("ORANGE_CLIENT_ID", "id"),
        ("ORANGE_CLIENT_SECRET", "secret"),
        ("ORANGE_API_KEY", "key"),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/X",
        ),
        ("SMTP_USER", "user"),
        ("SMTP_PASSWORD", "pw"),
        ("ORDERWATCH_STATE_DIR", state.to_str().unwrap()),
    ];
    let out = run_binary(&example, &["check"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 source(s), 3 sink(s), 2 route(s)"),
        "{}",
        text(&out)
    );
    // Without them, every unset variable is named.
    let out = run_binary(&example, &["check"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for var in [
        "ORANGE_CLIENT_ID",
        "ORANGE_API_KEY",
        "WEBHOOK_SECRET",
        "SLACK_WEBHOOK_URL",
        "SMTP_PASSWORD",
    ] {
        assert!(err.contains(var), "{var} not named:\n{err}");
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let sim = simulator(10).await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &webhook_sink_yaml("hook", &hook.url),
        "log: { format: json, level: info }\n",
    );
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let cycle = lines
        .iter()
        .find(|l| l["message"] == "poll cycle done")
        .expect("one line per poll cycle");
    assert_eq!(cycle["source"], "tracking");
    assert_eq!(cycle["orders"], 10);
    assert!(cycle["duration_ms"].is_u64());
    sim.shutdown().await;
}
