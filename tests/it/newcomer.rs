//! What a newcomer meets first, through the real binary: the exact problem
//! lines of common config mistakes, what the store commands print (an
//! order's events, empty results said plainly), and the simulator keeping
//! `updatedAt` true to Orange.

use crate::config::SOURCE as SOURCE_ITEM;
use crate::helpers::*;
use orderwatch_simulator::RunningSimulator;
use serde_json::json;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// `check` on exactly these bytes, as `orderwatch.yaml` in a temp dir.
async fn check_bytes(bytes: &[u8]) -> (Output, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orderwatch.yaml");
    std::fs::write(&path, bytes).expect("write config");
    let out = run_binary(&path, &["check"], &[]).await;
    let lines = problem_lines(&out, &path);
    (out, lines)
}

/// The problem lines of stderr, the file's directory taken off, so they
/// read `orderwatch.yaml:LINE: ...`.
fn problem_lines(out: &Output, path: &Path) -> Vec<String> {
    let dir = format!("{}/", path.parent().expect("a dir").display());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .skip(1)
        .map(|l| l.trim().replace(&dir, ""))
        .collect()
}

#[tokio::test]
async fn config_mistakes_are_told_on_their_line_in_plain_words() {
    // A valid source (7 lines with `sources:`); each case breaks one thing
    // around it.
    let source = format!("sources:\n{SOURCE_ITEM}");
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "a tab indenting line 9",
            format!("state_dir: ./data\n{source}\tinterval: 5m\n").into_bytes(),
            vec!["orderwatch.yaml:9: not valid YAML: a tab in the indentation: YAML indents with spaces only"],
        ),
        (
            "a duplicate key",
            format!("state_dir: ./data\nstate_dir: ./other\n{source}").into_bytes(),
            vec!["orderwatch.yaml:2: not valid YAML: duplicate mapping key `state_dir` is not allowed here"],
        ),
        (
            "a byte that is not UTF-8",
            [
                b"state_dir: ./data\n".as_slice(),
                source.as_bytes(),
                b"    sort: caf\xe9\n",
            ]
            .concat(),
            vec!["orderwatch.yaml:9: not UTF-8 text (column 14 has a byte that is not UTF-8): save the file as UTF-8"],
        ),
        (
            "misspelt values, a URL without scheme, a broken template among them",
            format!(
                "{}sinks:\n  - name: hook\n    type: webhok\n    url: http://127.0.0.1:9/hook\n  - name: bare\n    type: webhook\n    url: 127.0.0.1:9/hook\n  - name: screen\n    type: console\n    template: \"{{{{ order_id \"\n",
                source.replace("api: order-tracking", "api: order-traking")
            )
            .into_bytes(),
            vec![
                "orderwatch.yaml:3: sources[0].api: must be one of: order-tracking, ordering, generic (did you mean `order-tracking`?)",
                "orderwatch.yaml:10: sinks[0].type: must be one of: webhook, slack, email, console, http, teams, google-chat, nats (did you mean `webhook`?)",
                "orderwatch.yaml:14: sinks[1].url: not a URL: it must start with http:// or https:// (for example https://hooks.example.com/orderwatch)",
                "orderwatch.yaml:17: sinks[2].template: not a valid template: syntax error: unexpected end of input, expected end of variable block (line 1 of the template)",
            ],
        ),
        (
            "a misspelt sink and event type in a route",
            format!(
                "{source}sinks:\n  - name: chat\n    type: console\nroutes:\n  - sinks: [chta]\n    events: [order.status_change]\n"
            )
            .into_bytes(),
            vec![
                "orderwatch.yaml:12: routes[0].sinks: unknown sink `chta` (did you mean `chat`?)",
                "orderwatch.yaml:13: routes[0].events: unknown event type `order.status_change` (one of: order.created, order.status_changed, order.updated, order.removed, order.due_soon, order.overdue, order.stalled, source.failing, source.recovered, source.credentials_expiring) (did you mean `order.status_changed`?)",
            ],
        ),
        (
            "a template that fails to render, beside an unknown key",
            format!(
                "{source}    intervall: 5m\nsinks:\n  - name: chat\n    type: slack\n    url: https://hooks.example.com/x\n    template: \"{{{{ order_id.upper() }}}}\"\n"
            )
            .into_bytes(),
            vec![
                "orderwatch.yaml:8: sources[0].intervall: unknown key `intervall` (did you mean `interval`?); known keys here: name, api, base_url, token_url, client_id, client_secret, api_key, interval, filters, sort, page_size, max_requests_per_minute, concurrency, timeout, retries, retry_backoff, first_poll, resource, incremental, path, id_field, status_field, watch, closed_statuses, alert_after, api_key_expires, due, stalled_after, timezone",
                "orderwatch.yaml:13: sinks[0].template: fails on a sample order.created event: unknown method: string has no method named upper (line 1 of the template)",
            ],
        ),
    ];
    for (what, bytes, expected) in cases {
        let (out, lines) = check_bytes(&bytes).await;
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert_eq!(lines, expected, "{what}: {}", text(&out));
    }
}

#[tokio::test]
async fn a_missing_config_says_where_one_is_looked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No --config and no $ORDERWATCH_CONFIG: ./orderwatch.yaml is tried.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(binary())
            .arg("check")
            .current_dir(dir.path())
            .env_remove("ORDERWATCH_CONFIG")
            .output(),
    )
    .await
    .expect("finished in time")
    .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "orderwatch.yaml: no such file. The config is the file given by --config, else $ORDERWATCH_CONFIG, else ./orderwatch.yaml; config.example.yaml, in orderwatch's source beside README.md, has every key to start from"
        ),
        "{stderr}"
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A workspace watching every tracking order of `sim`, with a console sink.
fn console_workspace(sim: &RunningSimulator) -> Workspace {
    Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        "  - name: screen\n    type: console\n",
        "",
    )
}

/// A small simulator, its admin API, and the ids of its open tracking orders.
async fn simulator_with_open_orders() -> (RunningSimulator, Admin, Vec<String>) {
    let sim = simulator(5).await;
    let admin = Admin::new(&sim);
    let ids = admin
        .ids("/order-tracking/b2b/v1/orders", "status=Current")
        .await;
    (sim, admin, ids)
}

#[tokio::test]
async fn empty_results_say_so_instead_of_an_empty_table() {
    let sim = simulator(5).await;
    // A store that exists and holds nothing: a filter no order matches
    // (without a store these commands say there is none: tests/it/readonly.rs).
    let ws = Workspace::new(
        &source_yaml(
            "tracking",
            "order-tracking",
            &sim.base_url(),
            "    filters: { status: NoSuchStatus }\n",
        ),
        "  - name: screen\n    type: console\n",
        "",
    );
    ws.once_ok().await;
    for (args, expected) in [
        (
            &["orders", "list"][..],
            "no orders in the store yet: the first poll of a source records them\n",
        ),
        (
            &["orders", "list", "--source", "tracking"][..],
            "no orders of source tracking in the store yet\n",
        ),
        (&["events"][..], "no events in the log yet\n"),
        (
            &["events", "--order", "100001"][..],
            "no events about order 100001 in the log\n",
        ),
        (&["dead-letters", "list"][..], "no dead letters\n"),
        // Machine-readable output is an empty stream, and nothing else.
        (&["dead-letters", "list", "--json"][..], ""),
        (&["events", "--json"][..], ""),
    ] {
        let out = ws.run(args).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        // Said on stderr: the result on stdout stays empty for scripts.
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{args:?}");
    }
    // A source name nobody knows is a typo, not an empty source.
    for args in [
        &["orders", "list", "--source", "nosuch"][..],
        &["orders", "show", "100001", "--source", "nosuch"][..],
    ] {
        let out = ws.run(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "no source named nosuch (sources: tracking)\n",
            "{args:?}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn orders_show_tells_the_events_about_the_order() {
    let (sim, admin, ids) = simulator_with_open_orders().await;
    let (id, other) = (&ids[0], &ids[1]);
    let ws = console_workspace(&sim);
    ws.once_ok().await;
    let out = ws.run(&["orders", "show", id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).ends_with(
            "events (newest first):\n  none in the log (a first poll records orders without events)\n"
        ),
        "{}",
        text(&out)
    );

    admin
        .patch("order-tracking", id, json!({"status": "Closed"}))
        .await;
    admin
        .patch("order-tracking", other, json!({"status": "Closed"}))
        .await;
    ws.once_ok().await;
    let events = ws.run(&["events", "--order", id]).await;
    let logged = stdout(&events);
    assert_eq!(logged.lines().count(), 1, "{}", text(&events));
    assert!(logged.contains("order.status_changed"), "{logged}");

    let out = ws.run(&["orders", "show", id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    let (_, tail) = shown
        .split_once("events (newest first):\n")
        .unwrap_or_else(|| panic!("an events part: {shown}"));
    // The very line `events --order` gives, and none about the other order.
    assert_eq!(tail, logged, "{shown}");
    assert!(tail.contains("Current → Closed"), "{shown}");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_console_line_of_a_removal_tells_the_last_status() {
    let (sim, admin, ids) = simulator_with_open_orders().await;
    let id = &ids[0];
    let ws = console_workspace(&sim);
    ws.once_ok().await;
    admin.delete("order-tracking", id).await;
    let out = ws.run(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = stdout(&out);
    let removal = lines
        .lines()
        .find(|l| l.contains("order.removed"))
        .unwrap_or_else(|| panic!("a removal line: {}", text(&out)));
    assert!(
        removal.ends_with(&format!("tracking {id} order.removed (was Current)")),
        "{removal}"
    );
    sim.shutdown().await;
}

/// The `/updatedAt` change of the simulator's log entries about `id`.
fn updated_at_changes(log: &[serde_json::Value], id: &str) -> Vec<(String, String)> {
    log.iter()
        .filter(|e| e["id"] == id && e["kind"] == "changed")
        .map(|e| {
            let stamp = e["changes"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["path"] == "/updatedAt"));
            let side = |key: &str| {
                stamp
                    .and_then(|c| c[key].as_str())
                    .unwrap_or("unchanged")
                    .to_owned()
            };
            (side("from"), side("to"))
        })
        .collect()
}

#[tokio::test]
async fn every_change_in_the_simulator_refreshes_updated_at() {
    let (sim, admin, ids) = simulator_with_open_orders().await;
    let id = &ids[0];
    admin
        .patch("order-tracking", id, json!({"status": "Closed"}))
        .await;
    let stamps = updated_at_changes(&admin.changes().await, id);
    assert_eq!(stamps.len(), 1, "{stamps:?}");
    let (from, to) = &stamps[0];
    let parse = |t: &str| humantime::parse_rfc3339(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    assert!(parse(to) > parse(from), "{stamps:?}");
    // A patch that sets `updatedAt` itself keeps its value.
    admin
        .patch(
            "order-tracking",
            id,
            json!({"status": "Current", "updatedAt": "2030-01-01T00:00:00Z"}),
        )
        .await;
    let stamps = updated_at_changes(&admin.changes().await, id);
    assert_eq!(stamps[1].1, "2030-01-01T00:00:00Z", "{stamps:?}");
    sim.shutdown().await;

    // Churn: an order's `updatedAt` tells when it last changed. (In whole
    // seconds, as the generated orders: a second change within the same
    // second leaves it as it is, and it is still true.)
    let sim = orderwatch_simulator::start(
        "127.0.0.1:0".parse().expect("an address"),
        orderwatch_simulator::SimOptions {
            orders: 20,
            churn: 50.0,
            ..Default::default()
        },
    )
    .await
    .expect("simulator starts");
    let admin = Admin::new(&sim);
    eventually_async("churn changes orders", Duration::from_secs(20), || async {
        let log = admin.changes().await;
        log.iter().filter(|e| e["kind"] == "changed").count() >= 20
    })
    .await;
    // The log first: a change after it only makes `updatedAt` later.
    let log = admin.changes().await;
    let mut checked = 0;
    for path in ["/order-tracking/b2b/v1/orders", "/ordering/b2b/v2/requests"] {
        for order in admin.orders(path, "offset=0").await {
            let Some(last) = log
                .iter()
                .rev()
                .find(|e| e["id"] == order["id"] && e["kind"] == "changed")
            else {
                continue;
            };
            let changed = parse(last["time"].as_str().unwrap_or_default());
            let updated = parse(order["updatedAt"].as_str().unwrap_or_default());
            // A stamp taken just before a second turned, logged just after.
            assert!(
                updated + Duration::from_secs(1) >= changed,
                "{order}\nlast change: {last}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "{log:?}");
    sim.shutdown().await;
}

/// Every command as its words (`orders list`), with the command itself.
fn leaf_commands(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let path = format!("{prefix}{}", sub.get_name());
        if sub.has_subcommands() {
            leaf_commands(sub, &format!("{path} "), out);
        } else {
            out.push((path, sub.clone()));
        }
    }
}

#[test]
fn every_command_and_option_has_help_and_a_readme_row() {
    use clap::CommandFactory;
    let mut root = orderwatch::Cli::command();
    root.build();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table: Vec<&str> = readme
        .split("\n## Commands\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Commands section")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .collect();
    let mut commands = Vec::new();
    leaf_commands(&root, "", &mut commands);
    let mut missing = Vec::new();
    for (path, cmd) in &commands {
        if cmd.get_about().is_none() {
            missing.push(format!("`{path}` has no help line"));
        }
        let rows: Vec<&&str> = table
            .iter()
            .filter(|row| row.starts_with(&format!("| `{path}")))
            .collect();
        if rows.is_empty() {
            missing.push(format!("`{path}` has no row in README's command table"));
        }
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let id = arg.get_id().as_str();
            if ["help", "version", "config"].contains(&id) {
                continue;
            }
            if arg.get_help().is_none() {
                missing.push(format!("`{path}`: `{id}` has no help"));
            }
            if let Some(long) = arg.get_long() {
                let flag = format!("--{long}");
                if !rows.iter().any(|row| row.contains(&flag)) {
                    missing.push(format!("`{path} {flag}` is not in its README row"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[tokio::test]
async fn commands_without_a_config_do_not_offer_config() {
    for command in ["simulate", "demo"] {
        let out = tokio::process::Command::new(binary())
            .args([command, "--help"])
            .output()
            .await
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let help = stdout(&out);
        assert!(!help.contains("--config"), "{command}: {help}");
        let out = tokio::process::Command::new(binary())
            .args([command, "--config", "orderwatch.yaml"])
            .output()
            .await
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{command}: {}", text(&out));
    }
    let out = tokio::process::Command::new(binary())
        .args(["simulate", "--help"])
        .output()
        .await
        .expect("runs");
    let help = stdout(&out);
    for shown in [
        "[default: orderwatch-demo]",
        "[default: demo-secret]",
        "[default: demo-api-key]",
        "(e.g. 30s, 5m, 1h) [default: 1h]",
    ] {
        assert!(help.contains(shown), "`{shown}` in: {help}");
    }
}

#[tokio::test]
async fn the_simulator_banner_lists_every_admin_endpoint_truthfully() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(binary())
        .args(["simulate", "--listen", "127.0.0.1:0", "--orders", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("simulate starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.starts_with("Ctrl-C");
            banner.push(line);
            if done {
                break;
            }
        }
    });
    read.await.expect("the banner in time");
    let banner_text = banner.join("\n");
    assert!(
        banner_text
            .contains("client_id=orderwatch-demo client_secret=demo-secret api_key=demo-api-key"),
        "{banner_text}"
    );
    let listed: Vec<(String, String)> = banner
        .iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let method = words.next()?;
            let url = words.next()?;
            ["GET", "POST", "PATCH", "DELETE"]
                .contains(&method)
                .then(|| (method.to_owned(), url.to_owned()))
        })
        .collect();
    let methods: Vec<&str> = listed.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        methods,
        [
            "POST", "PATCH", "DELETE", "POST", "DELETE", "GET", "GET", "GET"
        ],
        "{banner_text}"
    );
    // Each one, called as listed, does what it says (2xx), in this order.
    let http = reqwest::Client::new();
    for (method, url) in &listed {
        let url = url
            .replace("{api}", "order-tracking")
            .replace("{id}", "900001");
        let request = match method.as_str() {
            "POST" if url.ends_with("/orders") => http
                .post(&url)
                .json(&json!({"id": "900001", "status": "Current"})),
            "POST" => http.post(&url).json(&json!({"latency_ms": 0})),
            "PATCH" => http.patch(&url).json(&json!({"status": "Closed"})),
            "DELETE" => http.delete(&url),
            _ => http.get(&url),
        };
        let response = request.send().await.expect("the simulator answers");
        assert!(
            response.status().is_success(),
            "{method} {url}: {}",
            response.status()
        );
    }
    let _ = child.kill().await;
}

/// A churn rate that is not a finite number of changes per second is a usage
/// error, never a panic of the simulator's churn loop.
#[tokio::test]
async fn a_churn_rate_that_is_no_number_is_a_usage_error() {
    for command in ["simulate", "demo"] {
        for rate in ["NaN", "inf", "-1", "fast"] {
            let out = tokio::process::Command::new(binary())
                .args([
                    command,
                    &format!("--churn={rate}"),
                    "--listen",
                    "127.0.0.1:0",
                ])
                .output()
                .await
                .expect("runs");
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} --churn {rate}: {}",
                text(&out)
            );
            assert!(text(&out).contains("not a rate"), "{}", text(&out));
        }
    }
}
