//! The configuration through the real binary (`orderwatch --config FILE
//! check`): every broken config exits 2 and names its key path, all problems
//! are listed in one run, and no secret reaches the output. Then `check
//! --connect` against the simulator, and README's complete example config.

use crate::helpers::*;
use orderwatch::Config;
use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

/// README's configuration example ("A complete example"), copied verbatim:
/// the example users start from must stay a valid config.
const README_EXAMPLE: &str = include_str!("../fixtures/readme-configuration-example.yaml");

/// A valid config; each broken one below changes one thing in it. Nothing is
/// contacted by `check` without `--connect`, so the URLs need not answer.
pub(crate) const SOURCE: &str = concat!(
    "  - name: tracking\n",
    "    api: order-tracking\n",
    "    base_url: http://127.0.0.1:9\n",
    "    client_id: my-client\n",
    "    client_secret: my-secret\n",
    "    api_key: my-key\n",
);
const HOOK_SINK: &str = concat!(
    "  - name: hook\n",
    "    type: webhook\n",
    "    url: http://127.0.0.1:9/hook\n",
);
const ROUTES: &str = concat!("routes:\n", "  - sinks: [hook]\n",);

fn valid() -> String {
    with_sinks(HOOK_SINK)
}

fn with_sinks(sinks: &str) -> String {
    format!("sources:\n{SOURCE}sinks:\n{sinks}{ROUTES}")
}

/// Run `check` (plus `args`) on `yaml`, with `env` set for the process.
async fn check(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orderwatch.yaml");
    let yaml = format!("state_dir: {}\n{yaml}", dir.path().join("data").display());
    std::fs::write(&path, yaml).expect("write config");
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = run_binary(&path, &all, env).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

#[tokio::test]
async fn a_valid_config_checks_ok() {
    let (out, _) = check(&valid(), &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("config ok"));
}

#[tokio::test]
async fn each_broken_config_exits_2_and_names_its_key() {
    let email_in_clear = concat!(
        "  - name: mail\n",
        "    type: email\n",
        "    smtp:\n",
        "      host: smtp.example.com\n",
        "      tls: none\n",
        "      username: me\n",
        "      password: pw\n",
        "    from: orderwatch@example.com\n",
        "    to: [noc@example.com]\n",
    );
    // (what, config, what stderr must contain)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown key",
            valid().replace("api_key: my-key\n", "api_key: my-key\n    intervall: 5m\n"),
            vec!["sources[0].intervall", "did you mean `interval`"],
        ),
        (
            "missing key",
            valid().replace("    api_key: my-key\n", ""),
            vec!["sources[0].api_key", "missing"],
        ),
        (
            // humantime reads "5 minutes" (a space is allowed before the
            // unit), so the bad duration here is spelled out.
            "bad duration",
            valid().replace(
                "api_key: my-key\n",
                "api_key: my-key\n    interval: five minutes\n",
            ),
            vec!["sources[0].interval", "not a duration"],
        ),
        (
            "unset variable",
            valid().replace("client_id: my-client", "client_id: ${NOPE_NOT_SET}"),
            vec!["sources[0].client_id", "NOPE_NOT_SET"],
        ),
        (
            "route to an unknown sink",
            valid().replace("sinks: [hook]", "sinks: [hook, nowhere]"),
            vec!["routes[0].sinks", "nowhere"],
        ),
        (
            "duplicate source names",
            format!("sources:\n{SOURCE}{SOURCE}sinks:\n{HOOK_SINK}{ROUTES}"),
            vec!["sources[1].name", "duplicate", "tracking"],
        ),
        (
            "tls: none with credentials",
            with_sinks(&format!("{HOOK_SINK}{email_in_clear}")),
            vec!["sinks[1].smtp.tls", "never sent in clear"],
        ),
    ];
    for (what, yaml, expected) in cases {
        let (out, stderr) = check(&yaml, &[], &[]).await;
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert!(
            stderr.contains("orderwatch.yaml"),
            "{what}: names the file: {stderr}"
        );
        for needle in expected {
            assert!(stderr.contains(needle), "{what}: `{needle}` in: {stderr}");
        }
    }
}

#[tokio::test]
async fn a_yaml_syntax_error_gives_its_line() {
    // `state_dir` takes line 1; the key indented one space too far is on 5.
    let yaml = "sources:\n  - name: tracking\n    api: order-tracking\n     base_url: x\n";
    let (out, stderr) = check(yaml, &[], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr.contains("orderwatch.yaml:5: not valid YAML"),
        "the line, once: {stderr}"
    );
}

#[tokio::test]
async fn every_problem_is_listed_in_one_run() {
    let yaml = valid()
        .replace(
            "    api_key: my-key\n",
            "    intervall: 5m\n    timeout: soon\n",
        )
        .replace("client_id: my-client", "client_id: ${NOPE_NOT_SET}");
    let (out, stderr) = check(&yaml, &[], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for path in [
        "sources[0].intervall",
        "sources[0].api_key",
        "sources[0].timeout",
        "sources[0].client_id",
    ] {
        assert!(stderr.contains(path), "`{path}` in: {stderr}");
    }
    assert!(stderr.contains("4 problems"), "{stderr}");
}

#[tokio::test]
async fn secrets_from_variables_never_appear_in_errors() {
    let yaml = valid().replace(
        "url: http://127.0.0.1:9/hook\n",
        "url: http://127.0.0.1:9/hook\n    secret: ${HOOK_SECRET}\n",
    );
    let (out, stderr) = check(&yaml, &[], &[("HOOK_SECRET", "super-secret-value")]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr.contains("sinks[0].secret"), "{stderr}");
    assert!(!text(&out).contains("super-secret-value"), "{}", text(&out));

    // The same through HOOK_SECRET_FILE, the Docker-secrets way.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hook-secret");
    std::fs::write(&file, "file-secret-value\n").expect("write secret");
    let file = file.to_str().expect("utf-8 path");
    let (out, stderr) = check(&yaml, &[], &[("HOOK_SECRET_FILE", file)]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr.contains("sinks[0].secret"), "{stderr}");
    assert!(!text(&out).contains("file-secret-value"), "{}", text(&out));
}

#[tokio::test]
async fn check_connect_reaches_each_source() {
    let sim = simulator(20).await;
    let base = sim.base_url();
    let sources = source_yaml("tracking", "order-tracking", &base, "")
        + &source_yaml("requests", "ordering", &base, "");
    let (out, _) = check(&format!("sources:\n{sources}"), &["--connect"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["tracking", "requests"] {
        assert!(
            stdout.contains(&format!("source {name}: ok")),
            "{name}: {stdout}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn check_connect_with_a_wrong_secret_says_so_plainly() {
    let sim = simulator(20).await;
    let secret = "wrong-secret-4d1e";
    let sources = source_yaml("tracking", "order-tracking", &sim.base_url(), "").replace(
        &format!("client_secret: {CLIENT_SECRET}"),
        &format!("client_secret: {secret}"),
    );
    assert!(sources.contains(secret), "the config has the wrong secret");
    let (out, _) = check(&format!("sources:\n{sources}"), &["--connect"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("source tracking: FAILED"), "{all}");
    assert!(all.contains("client_secret"), "says what to check: {all}");
    assert!(!all.contains(secret), "{all}");
    sim.shutdown().await;
}

#[test]
fn the_readme_configuration_example_parses_and_is_the_one_in_readme() {
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&format!("```yaml\n{README_EXAMPLE}```")),
        "README's complete example and tests/fixtures/readme-configuration-example.yaml differ"
    );
    let env: HashMap<String, String> = [
        ("ORANGE_CLIENT_ID", "client"),
        ("ORANGE_CLIENT_SECRET", "secret"),
        ("ORANGE_API_KEY", "key"),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/x",
        ),
        ("SMTP_USER", "user"),
        ("SMTP_PASSWORD", "password"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::parse(
        README_EXAMPLE,
        Path::new("readme-configuration-example.yaml"),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let source = &config.sources[0];
    assert_eq!(source.name, "tracking");
    assert_eq!(source.client_id, "client");
    assert_eq!(
        source.filters,
        vec![("status".to_owned(), "Current".to_owned())]
    );
    assert_eq!(source.watch, vec!["/request/status".to_owned()]);
    let sinks: Vec<(&str, &str)> = config
        .sinks
        .iter()
        .map(|s| (s.name.as_str(), s.type_name))
        .collect();
    assert_eq!(
        sinks,
        [("ops", "webhook"), ("chat", "slack"), ("mail", "email")]
    );
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.delivery.max_attempts, 30);

    // Each variable is really used: without them, each is named.
    let err = Config::parse(
        README_EXAMPLE,
        Path::new("readme-configuration-example.yaml"),
        &HashMap::new(),
    )
    .expect_err("variables are required");
    let message = err.to_string();
    for name in env.keys() {
        assert!(message.contains(name.as_str()), "{name}: {message}");
    }
}
