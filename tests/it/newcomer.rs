//! What a newcomer meets first, through the real binary: the exact problem
//! lines of common config mistakes, what the store commands print (an
//! order's events, empty results said plainly), and the simulator keeping
//! `updatedAt` true to Orange.

use crate::config::SOURCE as SOURCE_ITEM;
use crate::helpers::*;
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
                "orderwatch.yaml:10: sinks[0].type: must be one of: webhook, slack, email, console (did you mean `webhook`?)",
                "orderwatch.yaml:14: sinks[1].url: not a URL: it must start with http:// or https:// (for example https://hooks.example.com/orderwatch)",
                "orderwatch.yaml:17: sinks[2].template: not a valid template: syntax error: unexpected end of input, expected end of variable block (line 1 of the template)",
            ],
        ),
        (
            "a template that fails to render, beside an unknown key",
            format!(
                "{source}    intervall: 5m\nsinks:\n  - name: chat\n    type: slack\n    url: https://hooks.example.com/x\n    template: \"{{{{ order.customer.name.first }}}}\"\n"
            )
            .into_bytes(),
            vec![
                "orderwatch.yaml:8: sources[0].intervall: unknown key `intervall` (did you mean `interval`?); known keys here: name, api, base_url, token_url, client_id, client_secret, api_key, interval, filters, sort, page_size, max_requests_per_minute, concurrency, timeout, retries, retry_backoff, first_poll, path, id_field, status_field, watch, closed_statuses",
                "orderwatch.yaml:13: sinks[0].template: fails on a sample order.created event: undefined value (line 1 of the template)",
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
