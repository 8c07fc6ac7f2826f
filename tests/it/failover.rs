//! Failover under churn: two `orderwatch run` replicas on one postgres
//! store against a churning simulator; the leader of the source is killed
//! with SIGKILL at random moments 20 times (mid-poll, mid-commit,
//! mid-delivery, sometimes while the hook answers 503) and restarted at
//! once, so two replicas run again (the restarted one is a new holder, and
//! waits for the dead one's lease like the other); once, the leader is
//! frozen with SIGSTOP in the middle of a cycle until the other takes over,
//! then thawed. Then churn stops, one replica settles, and what the
//! receiver got is compared with the simulator's change log exactly
//! (`change_log::assert_told_exactly`). From the simulator's request log:
//! no two replicas ever polled the source at once, and the lead changed
//! hands at least once per kill.

use crate::change_log::{self, State};
use crate::helpers::*;
use crate::pg;
use orderwatch_simulator as simulator;
use rand::Rng;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const TRACKING: &str = "/order-tracking/b2b/v1/orders";
const KILLS: usize = 20;
/// The round after whose kill the leader is frozen once.
const FREEZE_AFTER: usize = 9;
const LEADS: &str = "leads source `tracking`";
const FOLLOWS: &str = "is polled by another orderwatch";

/// One API call as the simulator's request log has it.
#[derive(Debug, Clone)]
pub struct Call {
    seq: u64,
    time: u64,
    path: String,
    query: String,
    client: String,
    /// Not answered yet when read (or never).
    in_flight: bool,
}

impl Call {
    /// A call on the source (a list page or a detail), not a token call.
    fn on_the_source(&self) -> bool {
        self.path.starts_with(TRACKING)
    }

    /// The first page of a listing: where a poll cycle begins.
    fn starts_a_cycle(&self) -> bool {
        self.path == TRACKING
            && url::form_urlencoded::parse(self.query.as_bytes())
                .any(|(name, value)| name == "offset" && value == "0")
    }
}

/// The simulator's request log, read as it grows.
pub struct Requests {
    http: reqwest::Client,
    base: String,
    pub calls: Vec<Call>,
}

impl Requests {
    pub fn new(sim: &simulator::RunningSimulator) -> Requests {
        Requests {
            http: reqwest::Client::new(),
            base: sim.base_url(),
            calls: Vec::new(),
        }
    }

    /// Read the entries logged since the last read.
    pub async fn refresh(&mut self) {
        let since = self.last_seq();
        let entries: Vec<Value> = self
            .http
            .get(format!("{}/_sim/requests?since={since}", self.base))
            .send()
            .await
            .expect("the request log")
            .json()
            .await
            .expect("the request log is JSON");
        for e in entries {
            let seq = e["seq"].as_u64().expect("seq");
            assert_eq!(seq, self.last_seq() + 1, "no gap");
            self.calls.push(Call {
                seq,
                time: e["time"].as_u64().expect("time"),
                path: e["path"].as_str().unwrap_or_default().to_owned(),
                query: e["query"].as_str().unwrap_or_default().to_owned(),
                client: e["client"].as_str().unwrap_or("none").to_owned(),
                in_flight: e["status"].is_null(),
            });
        }
    }

    /// The seq of the last call read (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.calls.last().map_or(0, |c| c.seq)
    }

    /// The latest cycle start: its seq and client.
    fn last_cycle(&self) -> Option<(u64, String)> {
        self.calls
            .iter()
            .rev()
            .find(|c| c.starts_a_cycle())
            .map(|c| (c.seq, c.client.clone()))
    }

    /// Wait until a cycle begins after call `after`; returns its client.
    pub async fn next_cycle(&mut self, after: u64, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            self.refresh().await;
            if let Some((seq, client)) = self.last_cycle()
                && seq > after
            {
                return client;
            }
            assert!(Instant::now() < deadline, "no cycle began after {after}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What the request log says of the source's poll cycles.
#[derive(Debug)]
pub struct Cycles {
    pub count: usize,
    /// Cycle starts whose client is not the previous cycle's.
    pub takeovers: usize,
    /// Calls on the source by a client while another client's cycle ran.
    pub overlaps: Vec<String>,
    /// The longest time between two cycle starts, in ms.
    pub longest_gap_ms: u64,
}

/// A cycle, from the log alone: it begins with a client's list call at
/// offset 0, and runs through that client's last call on the source before
/// the next cycle begins (by whichever client). Token calls are not calls
/// on the source, and a client that never begins a cycle is no poller
/// (the test's own reads of the final states). So two replicas polled at
/// once exactly when a poller calls the source after another's cycle
/// began, before one of its own: each such call is an overlap.
pub fn cycles(calls: &[Call]) -> Cycles {
    let mut out = Cycles {
        count: 0,
        takeovers: 0,
        overlaps: Vec::new(),
        longest_gap_ms: 0,
    };
    let pollers: BTreeSet<&str> = calls
        .iter()
        .filter(|c| c.starts_a_cycle())
        .map(|c| c.client.as_str())
        .collect();
    let mut current: Option<&Call> = None;
    for call in calls
        .iter()
        .filter(|c| c.on_the_source() && pollers.contains(c.client.as_str()))
    {
        if call.starts_a_cycle() {
            out.count += 1;
            if let Some(previous) = current {
                out.longest_gap_ms = out.longest_gap_ms.max(call.time - previous.time);
                if previous.client != call.client {
                    out.takeovers += 1;
                }
            }
            current = Some(call);
        } else if let Some(cycle) = current
            && cycle.client != call.client
        {
            out.overlaps.push(format!(
                "call {} by {} ({}?{}) inside the cycle {} began at call {}",
                call.seq, call.client, call.path, call.query, cycle.client, cycle.seq
            ));
        }
    }
    out
}

/// The last thing a replica's log says of its leadership: true for leads.
fn leads_by_its_log(ws: &Workspace) -> Option<bool> {
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    log.lines().rev().find_map(|l| {
        if l.contains(LEADS) {
            Some(true)
        } else if l.contains(FOLLOWS) {
            Some(false)
        } else {
            None
        }
    })
}

fn leadership_lines(ws: &Workspace) -> usize {
    log_count(ws, LEADS) + log_count(ws, FOLLOWS)
}

pub fn signal(child: &tokio::process::Child, signal: libc::c_int) {
    let pid = child.id().expect("a running replica's pid") as libc::pid_t;
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// The replica that leads, once exactly one says so and a cycle began
/// after call `after` (a replica restarted after a kill has said where it
/// stands by then, so no stale line of the dead one is read).
async fn leader_polling(replicas: &[Workspace; 2], requests: &mut Requests, after: u64) -> usize {
    requests.next_cycle(after, Duration::from_secs(60)).await;
    let mut which = None;
    eventually(
        "exactly one replica leading",
        Duration::from_secs(30),
        || {
            let leads: Vec<usize> = (0..2)
                .filter(|&i| leads_by_its_log(&replicas[i]) == Some(true))
                .collect();
            which = leads.first().copied().filter(|_| leads.len() == 1);
            which.is_some()
        },
    )
    .await;
    which.unwrap_or_default()
}

/// Where the leader was: mid-poll when the simulator is answering a call
/// of the latest cycle's client on the source (read just before the kill;
/// a killed replica's calls stay unanswered, but are another client's),
/// else as its log says.
async fn phase(ws: &Workspace, requests: &mut Requests) -> &'static str {
    requests.refresh().await;
    let polling = requests.last_cycle().is_some_and(|(began, client)| {
        requests
            .calls
            .iter()
            .filter(|c| c.seq >= began && c.client == client)
            .any(|c| c.in_flight && c.on_the_source())
    });
    if polling {
        "mid-poll"
    } else {
        change_log::phase_by_log(ws)
    }
}

#[tokio::test]
#[ignore = "long: run by .ci/run separately"]
async fn replicas_fail_over_twenty_times_under_churn_and_tell_every_change_exactly() {
    let Some(url) = pg::fresh_database(
        "failover::replicas_fail_over_twenty_times_under_churn_and_tell_every_change_exactly",
    ) else {
        return;
    };
    let started = Instant::now();
    let mut sim = change_log::churning_simulator().await;
    let admin = Admin::new(&sim);
    let hook = Receiver::start().await;
    let replica = || {
        Workspace::new(
            &change_log::churned_source(&sim),
            &webhook_sink_yaml("hook", &hook.url),
            &format!("store: {{ backend: postgres, url: \"{url}\" }}\n"),
        )
    };
    let replicas = [replica(), replica()];
    // The baseline, taken by one `once` (which lets go of its lease).
    replicas[0].once_ok().await;
    let baseline = change_log::baseline(&replicas[0]).await;
    assert!(baseline.len() >= 100, "{}", baseline.len());
    let mut requests = Requests::new(&sim);

    let mut children = [replicas[0].spawn_run(), replicas[1].spawn_run()];
    let mut killed_in = BTreeMap::<&str, usize>::new();
    let mut after = 0;
    for round in 0..KILLS {
        let leader = leader_polling(&replicas, &mut requests, after).await;
        if round % 4 == 1 {
            hook.script(&[503, 503]);
        }
        let pause = rand::rng().random_range(0..1500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        *killed_in
            .entry(phase(&replicas[leader], &mut requests).await)
            .or_default() += 1;
        children[leader].start_kill().expect("SIGKILL");
        let status = children[leader].wait().await.unwrap();
        assert!(!status.success(), "killed, not exited");
        requests.refresh().await;
        after = requests.last_seq();
        let said = leadership_lines(&replicas[leader]);
        children[leader] = replicas[leader].spawn_run();
        eventually(
            "the restarted replica saying where it stands",
            Duration::from_secs(30),
            || leadership_lines(&replicas[leader]) > said,
        )
        .await;

        if round == FREEZE_AFTER {
            // Frozen just after its cycle's first page went out, so it has
            // the rest of the cycle to send when it is thawed.
            let leader = leader_polling(&replicas, &mut requests, after).await;
            let began = requests.last_cycle().map_or(0, |(seq, _)| seq);
            requests.next_cycle(began, Duration::from_secs(30)).await;
            signal(&children[leader], libc::SIGSTOP);
            let other = 1 - leader;
            let took = log_count(&replicas[other], LEADS);
            eventually(
                "the other replica taking over",
                Duration::from_secs(60),
                || log_count(&replicas[other], LEADS) > took,
            )
            .await;
            requests.refresh().await;
            let now = requests.last_seq();
            requests.next_cycle(now, Duration::from_secs(30)).await;
            let follows = log_count(&replicas[leader], FOLLOWS);
            signal(&children[leader], libc::SIGCONT);
            eventually(
                "the thawed replica following",
                Duration::from_secs(30),
                || log_count(&replicas[leader], FOLLOWS) > follows,
            )
            .await;
            requests.refresh().await;
            after = requests.last_seq();
        }
    }

    // Settle: churn stops; one replica goes (letting go of its lease if it
    // held it) and the other polls and drains until the receiver believes
    // what the simulator holds.
    sim.stop_churn().await;
    let expected: BTreeMap<String, State> = change_log::final_states(&admin).await;
    let [first, mut second] = children;
    stop_daemon(first).await;
    let settled = || change_log::settled(&hook, &baseline, &expected);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !settled() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And two more complete cycles, to be sure nothing else comes.
    let cycles_before = log_count(&replicas[1], "poll cycle done");
    eventually(
        "two cycles of the settled replica",
        Duration::from_secs(30),
        || log_count(&replicas[1], "poll cycle done") >= cycles_before + 2,
    )
    .await;
    let status = terminate(&mut second, Duration::from_secs(30)).await;
    assert!(status.success(), "clean exit: {status:?}");

    let compared = change_log::assert_told_exactly(&admin, &hook, &baseline, &expected).await;
    requests.refresh().await;
    let cycles = cycles(&requests.calls);
    let lost_mid_cycle: usize = replicas
        .iter()
        .map(|ws| log_count(ws, "lost its lease mid-cycle"))
        .sum();
    eprintln!(
        "failover: {KILLS} kills ({killed_in:?}) and one freeze in {:.0?}; {} cycles, {} takeovers, {} cycles given up for a lost lease, longest gap between cycle starts {} ms; {compared}",
        started.elapsed(),
        cycles.count,
        cycles.takeovers,
        lost_mid_cycle,
        cycles.longest_gap_ms,
    );
    assert!(
        cycles.overlaps.is_empty(),
        "two replicas polled at once: {:#?}",
        cycles.overlaps
    );
    assert!(cycles.takeovers >= KILLS, "{cycles:?}");
    assert!(compared.unique > 0, "churn made changes");
    sim.shutdown().await;
}
