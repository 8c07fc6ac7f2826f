//! The command line through the API: `orders`, `events`, `sources` and
//! `dead-letters` while `orderwatch run` holds the store, by themselves
//! (the config has `listen` and `api_token`) and with `--url`.

use crate::api::{Api, TOKEN};
use crate::helpers::*;
use serde_json::json;
use std::process::Output;
use std::time::Duration;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

/// A port free a moment ago: the CLI finds the daemon at the config's
/// `listen`, so it cannot be port 0.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn cli(ws: &Workspace, args: &[&str]) -> Output {
    run_binary(&ws.config_path(), args, &[("ORDERWATCH_API_TOKEN", TOKEN)]).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_commands_print_the_same_through_a_running_daemon() {
    let sim = simulator(12).await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    // One status change is dead-lettered (410), one order has two events.
    hook.script(&[410]);
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    first_poll: notify\n",
        ),
        &webhook_sink_yaml("hook", &hook.url),
        &format!(
            "listen: 127.0.0.1:{}\napi_token: ${{ORDERWATCH_API_TOKEN}}\n",
            free_port()
        ),
    );
    let mut child = ws.spawn_run_with(&[("ORDERWATCH_API_TOKEN", TOKEN)]);
    let api = Api::of(&ws).await;
    api.polled().await;
    let id = admin.ids(TRACKING, "").await[0].clone();
    admin
        .patch("order-tracking", &id, json!({"status": "Gone-Away"}))
        .await;
    eventually("every delivery tried", Duration::from_secs(30), || {
        hook.received().len() == 13
    })
    .await;
    let commands: Vec<Vec<&str>> = vec![
        vec!["orders", "list"],
        vec!["orders", "list", "--json"],
        vec!["orders", "list", "--source", "tracking"],
        vec!["orders", "show", &id],
        vec!["orders", "show", &id, "--source", "tracking"],
        vec!["events"],
        vec!["events", "--json", "--limit", "5"],
        vec!["events", "--order", &id],
        vec!["dead-letters", "list"],
        vec!["dead-letters", "list", "--json"],
    ];
    // While it runs: the store is held, the commands ask the daemon.
    let mut running = Vec::new();
    for args in &commands {
        let out = cli(&ws, args).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        running.push(stdout(&out));
    }
    let sources = cli(&ws, &["sources"]).await;
    assert_eq!(sources.status.code(), Some(0), "{}", text(&sources));
    assert!(stdout(&sources).contains("tracking"), "{}", text(&sources));
    assert!(stdout(&sources).contains(" ok "), "{}", text(&sources));
    let json = cli(&ws, &["sources", "--json"]).await;
    let line: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(line["health"], "ok");
    // A typo in --source is a usage error either way.
    let typo = cli(&ws, &["orders", "list", "--source", "trackin"]).await;
    assert_eq!(typo.status.code(), Some(2), "{}", text(&typo));
    assert!(text(&typo).contains("no source named trackin (sources: tracking)"));
    let missing = cli(&ws, &["orders", "show", "nosuch"]).await;
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));

    terminate(&mut child, Duration::from_secs(15)).await;
    // Stopped: the same commands read the store itself.
    for (args, through_api) in commands.iter().zip(&running) {
        let out = cli(&ws, args).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert_eq!(&stdout(&out), through_api, "{args:?} differs");
        assert!(!through_api.is_empty(), "{args:?} printed nothing");
    }
    let stopped = cli(&ws, &["sources"]).await;
    assert!(stdout(&stopped).contains("stopped"), "{}", text(&stopped));

    // Replay through the daemon, then the receiver has it.
    let mut child = ws.spawn_run_with(&[("ORDERWATCH_API_TOKEN", TOKEN)]);
    // run.log holds the first run's address too: wait for this run's.
    eventually("the second run listening", Duration::from_secs(30), || {
        log_count(&ws, "health and metrics on") == 2
    })
    .await;
    api.polled().await;
    let delivered = hook.delivered().len();
    let out = cli(&ws, &["dead-letters", "replay", "--all"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout(&out), "1 entry put back in the outbox\n");
    eventually("the replayed delivery", Duration::from_secs(20), || {
        hook.delivered().len() == delivered + 1
    })
    .await;
    crate::api::stop_and_check_log(&ws, &mut child).await;
}

#[tokio::test]
async fn url_and_token_errors_are_plain_and_never_show_the_token() {
    let sim = simulator(3).await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &webhook_sink_yaml("hook", &hook.url),
        &crate::api::api_rest(),
    );
    let mut child = crate::api::spawn_with_token(&ws);
    let api = Api::of(&ws).await;
    api.polled().await;
    // --url with the right token (from the variable), no config needed.
    let elsewhere = tempfile::tempdir().unwrap();
    let no_config = elsewhere.path().join("absent.yaml");
    let out = run_binary(
        &no_config,
        &["orders", "list", "--json", "--url", &api.base],
        &[("ORDERWATCH_API_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout(&out).lines().count(), 3, "{}", text(&out));

    let wrong = "wrong-token-but-long-enough-42";
    let out = run_binary(
        &no_config,
        &["events", "--url", &api.base, "--token", wrong],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("refused the token"), "{}", text(&out));
    assert!(!text(&out).contains(wrong), "{}", text(&out));

    terminate(&mut child, Duration::from_secs(15)).await;
    let out = run_binary(
        &no_config,
        &["sources", "--url", &api.base],
        &[("ORDERWATCH_API_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cannot reach the orderwatch API at {}", api.base)),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(TOKEN));
}
