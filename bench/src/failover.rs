//! Failover time (`--failover K`): two `orderwatch run` replicas on one
//! postgres database, the leader SIGKILLed K times; each time, from the
//! kill to the first cycle done by the new leader (its "poll cycle done"
//! log line, same clock), and to its "this orderwatch leads" line. The
//! killed replica is started again, as a follower, before the next kill.
//!
//! The kills are spread over the leader's cycle: kill i waits for a cycle
//! of the leader to end, then (i + 0.5) / K of an interval, so the lease
//! the new leader waits out is sometimes fresh, sometimes almost spent.

use crate::pg;
use crate::{Setup, Simulator, free_port, start_receiver, start_run};
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The lease a source's leader holds (src/leader.rs): two intervals, at
/// most one interval and a minute, at least 5 s.
pub fn lease(interval: Duration) -> Duration {
    (interval * 2)
        .min(interval + Duration::from_secs(60))
        .max(Duration::from_secs(5))
}

pub struct Failover {
    pub orders: usize,
    pub interval: Duration,
    /// Kill → the new leader's first "poll cycle done".
    pub first_cycle: Vec<Duration>,
    /// Kill → the new leader's "this orderwatch leads".
    pub takeover: Vec<Duration>,
}

impl Failover {
    pub fn target(&self) -> Duration {
        self.interval * 2 + lease(self.interval)
    }
}

struct Replica {
    setup: Setup,
    config: PathBuf,
    listen: String,
    child: Option<std::process::Child>,
}

impl Replica {
    fn log(&self) -> PathBuf {
        self.setup.dir.join("orderwatch.log")
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        self.child = Some(start_run(&self.setup, &self.config, &self.listen).await?);
        Ok(())
    }

    /// Whether `/metrics` says this replica leads the source.
    async fn leads(&self, http: &reqwest::Client) -> bool {
        let Ok(r) = http
            .get(format!("http://{}/metrics", self.listen))
            .send()
            .await
        else {
            return false;
        };
        let Ok(text) = r.text().await else {
            return false;
        };
        text.lines().any(|l| {
            l.starts_with("orderwatch_leader{")
                && l.contains("source=\"tracking\"")
                && l.trim_end().ends_with(" 1")
        })
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("the replica is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The time of the first line of `log` after `since` with this message
/// (or starting with it).
fn first_line_after(log: &Path, since: SystemTime, message: &str) -> Option<SystemTime> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .filter_map(|v| humantime::parse_rfc3339(v["timestamp"].as_str()?).ok())
        .find(|t| *t > since)
}

async fn wait_for_line(
    log: &Path,
    since: SystemTime,
    message: &str,
    timeout: Duration,
) -> Option<SystemTime> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(t) = first_line_after(log, since, message) {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

pub async fn measure(
    binary: &Path,
    root: &Path,
    server: &pg::Server,
    orders: usize,
    interval: Duration,
    kills: usize,
) -> anyhow::Result<Failover> {
    let dir = root.join("failover");
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "== failover: two replicas on postgres, {orders} orders, interval {} s, {kills} kills",
        interval.as_secs()
    );
    let sim = Simulator::start(binary, orders, &dir.join("simulator.log"))?;
    let (hook, _deliveries) = start_receiver().await?;
    let url = server.fresh_database("ow_bench_failover").await?;
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let setup = Setup {
            binary: binary.to_owned(),
            dir: dir.join(name),
            sim_base: sim.base.clone(),
            hook: hook.clone(),
            concurrency: 2,
            store: Some(url.clone()),
        };
        std::fs::create_dir_all(&setup.dir)?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let config = setup.config("run", &format!("{}s", interval.as_secs()), Some(&listen))?;
        replicas.push(Replica {
            setup,
            config,
            listen,
            child: None,
        });
    }
    // The first leads (its /readyz waits for its first poll); the second
    // then follows.
    for r in &mut replicas {
        r.start().await?;
    }
    let http = reqwest::Client::new();
    let target = interval * 2 + lease(interval);
    let timeout = target * 4 + Duration::from_secs(30);
    let mut result = Failover {
        orders,
        interval,
        first_cycle: Vec::new(),
        takeover: Vec::new(),
    };
    for i in 0..kills {
        // Exactly one leader, as /metrics says.
        let deadline = Instant::now() + timeout;
        let leader = loop {
            let mut leading = Vec::new();
            for (k, r) in replicas.iter().enumerate() {
                if r.leads(&http).await {
                    leading.push(k);
                }
            }
            if let [k] = leading[..] {
                break k;
            }
            if Instant::now() > deadline {
                bail!("failover: no single leader after {} s", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let follower = 1 - leader;
        let now = SystemTime::now();
        wait_for_line(&replicas[leader].log(), now, "poll cycle done", timeout)
            .await
            .context("failover: the leader did not finish a cycle")?;
        tokio::time::sleep(interval.mul_f64((i as f64 + 0.5) / kills as f64)).await;
        let killed_at = SystemTime::now();
        replicas[leader].kill()?;
        let log = replicas[follower].log();
        let done = wait_for_line(&log, killed_at, "poll cycle done", timeout)
            .await
            .with_context(|| {
                format!(
                    "failover: no cycle by the new leader within {} s of the kill",
                    timeout.as_secs()
                )
            })?;
        let first = done.duration_since(killed_at).unwrap_or_default();
        let took = first_line_after(&log, killed_at, "this orderwatch leads")
            .and_then(|t| t.duration_since(killed_at).ok());
        eprintln!(
            "   kill {}: first cycle of the new leader after {:.2} s (it took the lease after {})",
            i + 1,
            first.as_secs_f64(),
            took.map(|t| format!("{:.2} s", t.as_secs_f64()))
                .unwrap_or_else(|| "–".into())
        );
        result.first_cycle.push(first);
        if let Some(t) = took {
            result.takeover.push(t);
        }
        replicas[leader].start().await?;
    }
    drop(replicas);
    drop(sim);
    Ok(result)
}
