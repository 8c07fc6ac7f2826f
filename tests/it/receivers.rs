//! A receiver's view: the signature verification that README.md shows, run
//! with the official Standard Webhooks libraries for Python and Node.
//!
//! They need `pip install standardwebhooks` and `npm ci` in tests/receivers,
//! so they are ignored by a plain `cargo test` (which says so) and run by
//! `.ci/run` after it installs both: `cargo test --test it receivers --
//! --ignored`. Asked for, a missing library is a failure.

use crate::helpers::*;
use std::path::Path;

async fn captured_webhook(dir: &Path) -> std::path::PathBuf {
    let sim = simulator(5).await;
    let hook = Receiver::start().await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        &webhook_sink_yaml("hook", &hook.url),
        "",
    );
    let out = ws.run(&["notify-test", "hook"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = &hook.received()[0];
    let headers: serde_json::Map<String, serde_json::Value> = got
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().into()))
        .collect();
    let capture =
        serde_json::json!({"headers": headers, "body": String::from_utf8_lossy(&got.body)});
    let path = dir.join("capture.json");
    std::fs::write(&path, capture.to_string()).unwrap();
    sim.shutdown().await;
    path
}

fn run_checker(program: &str, args: &[&str], dir: &Path) -> std::process::Output {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = stderr.contains("No module named 'standardwebhooks'")
        || stderr.contains("Cannot find package 'standardwebhooks'");
    assert!(
        !missing,
        "{program}: the standardwebhooks library is missing (pip install standardwebhooks; npm ci in tests/receivers):\n{stderr}"
    );
    out
}

/// Verify a captured webhook with `program script`: the right secret
/// passes, a wrong one fails (so the check can fail).
async fn verifies(program: &str, script: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let capture = captured_webhook(tmp.path()).await;
    let capture = capture.to_str().unwrap();
    let receivers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/receivers");
    let out = run_checker(program, &[script, WEBHOOK_SECRET, capture], &receivers);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("order.status_changed evt_"));
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let out = run_checker(program, &[script, wrong, capture], &receivers);
    assert!(!out.status.success(), "a wrong secret verified");
}

#[tokio::test]
#[ignore = "needs the standardwebhooks libraries (pip install standardwebhooks; npm ci in tests/receivers); .ci/run runs it"]
async fn python_standardwebhooks_verifies_our_signature() {
    verifies("python3", "verify.py").await;
}

#[tokio::test]
#[ignore = "needs the standardwebhooks libraries (pip install standardwebhooks; npm ci in tests/receivers); .ci/run runs it"]
async fn node_standardwebhooks_verifies_our_signature() {
    verifies("node", "verify.mjs").await;
}
