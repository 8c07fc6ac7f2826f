//! What a receiver got, compared exactly with the simulator's change log,
//! for the tests that churn the simulator and disturb the daemon (the crash
//! loop, the replicas' failover), and the churning simulator they share:
//!
//! - every change is delivered: a poller sees states, not transitions
//!   (README.md "Events"), so for every order the state the receiver was last told
//!   (the baseline in the store, then each event by revision) must be the
//!   order's final state in the simulator (its status, or gone);
//! - nothing is invented: each `order.created` is for an order the log
//!   shows created, each `order.removed` for one it shows removed, each
//!   status change lands on a status the order really had, and each event's
//!   `from` is the state the previous event (or the baseline) left;
//! - duplicates only under the same `webhook-id`, with the same content;
//! - per-order order: among first deliveries, revisions increase per order
//!   and have no gaps.

use crate::helpers::*;
use orderwatch_simulator::{self as simulator, RunningSimulator, SimOptions};
use rand::Rng;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

const TRACKING: &str = "/order-tracking/b2b/v1/orders";

/// A simulator of 120 orders a random seed churns, each API call taking
/// 60 ms: a cycle (token, 5+ pages, details) spans a good part of a 1 s
/// interval, so many kills land mid-poll.
pub async fn churning_simulator() -> RunningSimulator {
    let sim = simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimOptions {
            orders: 120,
            seed: rand::rng().random(),
            // Across both APIs: about two changes a second to tracking orders.
            churn: 4.0,
            ..SimOptions::default()
        },
    )
    .await
    .expect("simulator starts");
    Admin::new(&sim)
        .fault(serde_json::json!({"latency_ms": 60}))
        .await;
    sim
}

/// The tracking source the churn tests poll: every order, in pages of 25.
pub fn churned_source(sim: &RunningSimulator) -> String {
    source_yaml(
        "tracking",
        "order-tracking",
        &sim.base_url(),
        "    sort: -id\n    page_size: 25\n",
    )
}

/// Where a daemon was when killed, roughly, from its log's last line.
pub fn phase_by_log(ws: &Workspace) -> &'static str {
    let log = std::fs::read_to_string(ws.log_path()).unwrap_or_default();
    let last = log.lines().last().unwrap_or_default();
    if last.contains("change detected") {
        "mid-commit"
    } else if last.contains("delivered") || last.contains("will retry") {
        "mid-delivery"
    } else if last.contains("poll cycle done") {
        "between cycles"
    } else {
        "mid-poll or starting"
    }
}

/// What the receiver was told of one order, in revision order.
#[derive(Debug, Clone, PartialEq)]
struct Told {
    revision: u64,
    kind: String,
    from: Option<String>,
    to: Option<String>,
}

/// The state of an order: its status, or `None` when it is gone.
pub type State = Option<String>;

/// Per order, its status and revision as the store recorded them.
pub type Baseline = BTreeMap<String, (String, u64)>;

/// The baseline, exactly as the store of `ws` recorded it.
pub async fn baseline(ws: &Workspace) -> Baseline {
    let out = ws.run(&["orders", "list", "--json"]).await;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["order_id"].as_str().unwrap().to_owned(),
                (
                    v["status"].as_str().unwrap().to_owned(),
                    v["revision"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Every tracking order's status in the simulator now.
pub async fn final_states(admin: &Admin) -> BTreeMap<String, State> {
    let mut out = BTreeMap::new();
    for status in ["Current", "Closed"] {
        for id in admin.ids(TRACKING, &format!("status={status}")).await {
            out.insert(id, Some(status.to_owned()));
        }
    }
    out
}

/// The first delivery of each event id, in arrival order, and the number of
/// deliveries in all.
fn first_deliveries(hook: &Receiver) -> (Vec<(String, Value)>, usize) {
    let delivered = hook.delivered();
    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut firsts = Vec::new();
    for r in &delivered {
        let id = r.header("webhook-id");
        let e = r.json();
        assert_eq!(
            id,
            e["data"]["id"].as_str().unwrap(),
            "webhook-id is data.id"
        );
        match seen.get(&id) {
            Some(first) => {
                // A duplicate: the same change, only the timestamp may differ.
                for field in ["order_id", "revision", "from", "to", "source"] {
                    assert_eq!(
                        first["data"][field], e["data"][field],
                        "duplicate {id} differs"
                    );
                }
                assert_eq!(first["type"], e["type"]);
            }
            None => {
                seen.insert(id.clone(), e.clone());
                firsts.push((id, e));
            }
        }
    }
    (firsts, delivered.len())
}

/// Per order, what the receiver was told, in arrival order.
fn told(firsts: &[(String, Value)]) -> BTreeMap<String, Vec<Told>> {
    let mut out: BTreeMap<String, Vec<Told>> = BTreeMap::new();
    for (_, e) in firsts {
        let d = &e["data"];
        out.entry(d["order_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(Told {
                revision: d["revision"].as_u64().unwrap(),
                kind: e["type"].as_str().unwrap().to_owned(),
                from: d["from"].as_str().map(str::to_owned),
                to: d["to"].as_str().map(str::to_owned),
            });
    }
    out
}

/// The state the receiver ends up believing, from the baseline and events.
fn believed(baseline: &Baseline, told: &BTreeMap<String, Vec<Told>>) -> BTreeMap<String, State> {
    let mut out: BTreeMap<String, State> = baseline
        .iter()
        .map(|(id, (status, _))| (id.clone(), Some(status.clone())))
        .collect();
    for (id, events) in told {
        if let Some(last) = events.last() {
            let state = match last.kind.as_str() {
                "order.removed" => None,
                _ => last.to.clone(),
            };
            out.insert(id.clone(), state);
        }
    }
    out.retain(|_, s| s.is_some());
    out
}

/// Whether the receiver believes `expected` by now: what a test waits for
/// once churn stopped.
pub fn settled(hook: &Receiver, baseline: &Baseline, expected: &BTreeMap<String, State>) -> bool {
    let (firsts, _) = first_deliveries(hook);
    believed(baseline, &told(&firsts)) == *expected
}

/// What the comparison counted.
#[derive(Debug)]
pub struct Compared {
    /// Tracking changes in the simulator's log.
    pub changes: usize,
    /// Of those, the ones that create, remove or change the status.
    pub status_changes: usize,
    /// Orders the receiver was told something of.
    pub orders_changed: usize,
    /// Distinct events, and deliveries in all.
    pub unique: usize,
    pub deliveries: usize,
}

impl Compared {
    pub fn duplicates(&self) -> usize {
        self.deliveries - self.unique
    }
}

impl fmt::Display for Compared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tracking changes logged ({} creating, removing or changing status), {} orders changed, {} events, {} deliveries, {} duplicates",
            self.changes,
            self.status_changes,
            self.orders_changed,
            self.unique,
            self.deliveries,
            self.duplicates()
        )
    }
}

/// Compare what `hook` got with the simulator's change log, given the
/// baseline the store started from and the final states: panics on the
/// first difference (see the module's comment for what is asserted).
pub async fn assert_told_exactly(
    admin: &Admin,
    hook: &Receiver,
    baseline: &Baseline,
    expected: &BTreeMap<String, State>,
) -> Compared {
    let changes: Vec<Value> = admin
        .changes()
        .await
        .into_iter()
        .filter(|c| c["api"] == "order-tracking")
        .collect();
    let (firsts, deliveries) = first_deliveries(hook);
    let told = told(&firsts);

    // Every change delivered: the receiver believes the final state.
    let believed = believed(baseline, &told);
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(id, s)| believed.get(*id) != Some(s))
        .map(|(id, s)| (id, s, believed.get(id)))
        .chain(
            believed
                .iter()
                .filter(|(id, _)| !expected.contains_key(*id))
                .map(|(id, s)| (id, &None, Some(s))),
        )
        .collect();
    assert!(wrong.is_empty(), "(order, final, believed): {wrong:?}");

    // Nothing invented; order kept; no gaps.
    let statuses_of = |id: &str| -> BTreeSet<String> {
        changes
            .iter()
            .filter(|c| c["id"] == id)
            .flat_map(|c| c["changes"].as_array().cloned().unwrap_or_default())
            .filter(|l| l["path"] == "/status")
            .filter_map(|l| l["to"].as_str().map(str::to_owned))
            .collect()
    };
    let logged = |id: &str, kind: &str| changes.iter().any(|c| c["id"] == id && c["kind"] == kind);
    for (id, events) in &told {
        let (mut state, mut revision) = match baseline.get(id) {
            Some((status, rev)) => (Some(status.clone()), *rev),
            None => (None, 0),
        };
        for e in events {
            assert_eq!(
                e.revision,
                revision + 1,
                "{id}: revisions in order, no gap: {events:?}"
            );
            revision = e.revision;
            match e.kind.as_str() {
                "order.created" => {
                    assert!(
                        state.is_none() && logged(id, "created"),
                        "{id}: created? {events:?}"
                    );
                }
                "order.removed" => {
                    assert!(logged(id, "removed"), "{id}: removed? {events:?}");
                    assert_eq!(e.from, state, "{id}: {events:?}");
                }
                "order.status_changed" => {
                    assert_eq!(e.from, state, "{id}: from the state last told: {events:?}");
                    let to = e.to.clone().unwrap_or_default();
                    assert!(
                        statuses_of(id).contains(&to),
                        "{id}: never had status {to}: {events:?}"
                    );
                }
                other => panic!("{id}: unexpected {other}: {events:?}"),
            }
            state = match e.kind.as_str() {
                "order.removed" => None,
                _ => e.to.clone(),
            };
        }
    }
    let status_changes = changes
        .iter()
        .filter(|c| {
            c["kind"] != "changed"
                || c["changes"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|l| l["path"] == "/status"))
        })
        .count();
    Compared {
        changes: changes.len(),
        status_changes,
        orders_changed: told.len(),
        unique: firsts.len(),
        deliveries,
    }
}
