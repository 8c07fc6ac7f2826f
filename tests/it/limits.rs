//! Bounds on what comes from outside or from a config: an SMTP server that
//! never ends its banner line, an order id longer than a mail header line,
//! a `VAR_FILE` that is a FIFO or a device, a template that loops forever.

use crate::helpers::*;
use std::time::Duration;

fn email_workspace(base_url: &str, port: u16, rest: &str) -> Workspace {
    Workspace::new(
        &source_yaml("tracking", "order-tracking", base_url, ""),
        &format!(
            "  - name: mail\n    type: email\n    smtp: {{ host: 127.0.0.1, port: {port}, tls: none, timeout: 20s }}\n    from: ow@example.com\n    to: [noc@example.com]\n"
        ),
        rest,
    )
}

/// The peak resident memory of a running process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test]
async fn an_endless_smtp_banner_fails_the_delivery_without_eating_memory() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![b'a'; 64 * 1024];
                let _ = socket.write_all(b"220 ").await;
                // One line that never ends, as fast as the client reads.
                while socket.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    let sim = simulator(3).await;
    let ws = email_workspace(&sim.base_url(), port, "");
    ws.once_ok().await;
    Admin::new(&sim)
        .add(
            "order-tracking",
            serde_json::json!({"id": "555001", "status": "Current"}),
        )
        .await;
    let mut child = ws.spawn_run();
    eventually(
        "the delivery failing plainly",
        Duration::from_secs(60),
        || {
            log_count(
                &ws,
                "the server sent more than 1024 KiB during one mail's exchange",
            ) > 0
        },
    )
    .await;
    let peak_mib = peak_kib(child.id().unwrap()) / 1024;
    assert!(peak_mib < 256, "peak memory {peak_mib} MiB");
    assert_eq!(
        terminate(&mut child, Duration::from_secs(15)).await.code(),
        Some(0)
    );
}

#[tokio::test]
async fn mail_header_lines_stay_within_998_characters_whatever_the_order_id() {
    let (smtp, port) = smtp_server();
    let sim = simulator(3).await;
    let ws = email_workspace(&sim.base_url(), port, "");
    ws.once_ok().await;
    let long_id = "7".repeat(5000);
    Admin::new(&sim)
        .add(
            "order-tracking",
            serde_json::json!({"id": long_id, "status": "Current"}),
        )
        .await;
    ws.once_ok().await;
    let messages = smtp.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "one mail for the new order");
    let head = messages[0].split("\r\n\r\n").next().unwrap();
    for line in head.split("\r\n") {
        assert!(
            line.len() <= 998,
            "a header line of {} characters",
            line.len()
        );
    }
    let unfolded = head.replace("\r\n ", " ");
    assert!(
        unfolded.contains("Subject: [orderwatch] 7777"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("Message-ID: <order.tracking.7777"),
        "{unfolded}"
    );
}

#[tokio::test]
async fn secret_files_that_are_fifos_or_devices_are_refused_at_once() {
    let sim = simulator(1).await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), "")
            .replace(API_KEY, "${ORANGE_API_KEY}"),
        "",
        "",
    );
    let fifo = ws.dir.path().join("api-key.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path it is given.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    for path in [fifo.to_str().unwrap(), "/dev/zero"] {
        // Before, a FIFO hung `check` until a writer came and /dev/zero
        // read until memory ran out; run_binary's 120 s bound would fail.
        let out = run_binary(
            &ws.config_path(),
            &["check"],
            &[("ORANGE_API_KEY_FILE", path)],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("ORANGE_API_KEY_FILE") && err.contains("not a regular file"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn check_refuses_a_template_that_never_ends() {
    let sim = simulator(1).await;
    let ws = Workspace::new(
        &source_yaml("tracking", "order-tracking", &sim.base_url(), ""),
        "  - name: out\n    type: console\n    template: \"{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}\"\n",
        "",
    );
    let out = ws.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sinks[0].template") && err.contains("too much work"),
        "{err}"
    );
}
