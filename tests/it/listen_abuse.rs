//! The `listen` port under abuse, and `/healthz` when a loop dies: a
//! connection that does not send its request headers in time is dropped,
//! at most a bounded number are held, and a dead poller shows.

use crate::helpers::*;
use std::collections::HashSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `orderwatch run` with `listen` on port 0 and `env`, its simulator and
/// receiver (bind them: dropped, they stop serving).
struct Listening {
    sim: orderwatch_simulator::RunningSimulator,
    hook: Receiver,
    ws: Workspace,
    child: tokio::process::Child,
    addr: String,
}

async fn start_listening(env: &[(&str, &str)]) -> Listening {
    let sim = simulator(3).await;
    let hook = Receiver::start().await;
    let ws = current_tracking_workspace(&sim.base_url(), &hook.url, "", "listen: 127.0.0.1:0\n");
    let child = ws.spawn_run_with(env);
    let addr = health_addr(&ws).await;
    Listening {
        sim,
        hook,
        ws,
        child,
        addr,
    }
}

/// A well-behaved client is served; then SIGTERM stops the daemon cleanly.
async fn served_then_stopped(addr: &str, child: &mut tokio::process::Child) {
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        terminate(child, Duration::from_secs(15)).await.code(),
        Some(0)
    );
}

/// Reads until the server closes the connection (or resets it).
async fn closed_by_server(mut conn: TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn connections_without_request_headers_are_dropped() {
    let Listening {
        mut child,
        addr,
        sim: _sim,
        hook: _hook,
        ..
    } = start_listening(&[("ORDERWATCH_TEST_HEADER_READ_TIMEOUT", "1s")]).await;

    let idle = TcpStream::connect(&addr).await.unwrap();
    let mut half_sent = TcpStream::connect(&addr).await.unwrap();
    half_sent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: orderwatch\r\n")
        .await
        .unwrap();
    // Before, both were held for as long as the client liked.
    for conn in [idle, half_sent] {
        let dropped = tokio::time::timeout(Duration::from_secs(20), closed_by_server(conn)).await;
        assert_eq!(dropped, Ok(true), "the server kept the connection");
    }
    served_then_stopped(&addr, &mut child).await;
}

/// The process's TCP connections on local port `port`, from /proc.
fn connections_on(pid: u32, port: u16) -> usize {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|target| {
                    let t = target.to_string_lossy().into_owned();
                    Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 01: established (the listener itself is 0A).
            if local_port == Some(port)
                && f.get(3) == Some(&"01")
                && f.get(9).is_some_and(|i| inodes.contains(*i))
            {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test]
async fn at_most_the_cap_of_connections_is_held() {
    let Listening {
        mut child,
        addr,
        sim: _sim,
        hook: _hook,
        ..
    } = start_listening(&[("ORDERWATCH_TEST_MAX_CONNECTIONS", "8")]).await;
    let pid = child.id().unwrap();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();

    let mut held = Vec::new();
    for _ in 0..40 {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        held.push(conn);
    }
    eventually(
        "the cap of connections accepted",
        Duration::from_secs(20),
        || connections_on(pid, port) >= 8,
    )
    .await;
    // Before, all 40 were accepted and held.
    for _ in 0..20 {
        let n = connections_on(pid, port);
        assert!(n <= 8, "{n} connections held");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(held);
    served_then_stopped(&addr, &mut child).await;
}

#[tokio::test]
async fn a_dead_poller_fails_healthz_until_it_runs_again() {
    // Its first three runs die: down for 1 + 2 + 4 s, then it runs.
    let Listening {
        ws,
        mut child,
        addr,
        sim: _sim,
        hook: _hook,
        ..
    } = start_listening(&[("ORDERWATCH_TEST_POLLER_PANICS", "3")]).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let request = http.get(format!("http://{addr}{path}")).send();
        async move {
            let r = request.await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let down = loop {
        let (status, body) = get("/healthz").await;
        if status == 503 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/healthz never failed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        down.contains("poller `tracking`: stopped unexpectedly"),
        "{down}"
    );
    eventually_async("/healthz ok again", Duration::from_secs(60), || async {
        get("/healthz").await.0 == 200
    })
    .await;
    // Running again for real: it polls, so the source is ready.
    eventually_async(
        "the restarted poller polling",
        Duration::from_secs(30),
        || async { get("/readyz").await.0 == 200 },
    )
    .await;
    assert_eq!(
        terminate(&mut child, Duration::from_secs(15)).await.code(),
        Some(0)
    );
    assert!(log_count(&ws, "stopped unexpectedly") >= 3);
}
