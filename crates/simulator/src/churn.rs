//! Orders drifting on their own: `churn` changes per second on average,
//! across both APIs. Mostly advances (a tracking order's request moves on or
//! the order closes; a request moves to its next step, and is archived once
//! completed), some new orders, a few removals.
//!
//! The sequence of changes comes from the seed alone, so two simulators with
//! the same seed and no admin calls make the same changes to the same orders
//! in the same order; only timestamps (`updatedAt`, `createdAt` of new
//! orders, the log's `time`) come from the clock. `Churner::step` makes one
//! change, so tests drive churn without timers.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::generate::{self, ORDERING_STEPS, TRACKING_CURRENT_STATES};
use super::state::{Api, SimState, lock};

/// Share of changes that advance an order, and that add one; the rest remove.
const ADVANCE_SHARE: f64 = 0.80;
const CREATE_SHARE: f64 = 0.15;
/// Random picks before giving up on finding an order that can advance (all
/// closed, say) and adding a new order instead.
const ADVANCE_TRIES: usize = 8;
/// Changes caught up in one tick at most, should the task have been starved.
const MAX_BURST: u64 = 10_000;

pub(crate) struct Churner {
    rng: StdRng,
}

impl Churner {
    pub(crate) fn new(seed: u64) -> Churner {
        Churner {
            rng: StdRng::seed_from_u64(seed ^ 0x6368_7572_6e00_0000),
        }
    }

    /// Make one change.
    pub(crate) fn step(&mut self, sim: &SimState) {
        let api = if self.rng.random_bool(0.5) {
            Api::OrderTracking
        } else {
            Api::Ordering
        };
        let roll: f64 = self.rng.random();
        let done = if roll < ADVANCE_SHARE {
            self.advance(sim, api)
        } else if roll < ADVANCE_SHARE + CREATE_SHARE {
            false
        } else {
            self.remove(sim, api)
        };
        if !done {
            self.create(sim, api);
        }
    }

    fn random_id(&mut self, sim: &SimState, api: Api) -> Option<String> {
        let book = sim.read_book(api);
        if book.len() == 0 {
            return None;
        }
        let index = self.rng.random_range(0..book.len());
        book.id_at(index).map(str::to_owned)
    }

    fn advance(&mut self, sim: &SimState, api: Api) -> bool {
        for _ in 0..ADVANCE_TRIES {
            let Some(id) = self.random_id(sim, api) else {
                return false;
            };
            let mut advanced = false;
            let rng = &mut self.rng;
            let _ = sim.update_order(api, &id, |order| {
                advanced = match api {
                    Api::OrderTracking => advance_tracking(order, rng),
                    Api::Ordering => advance_ordering(order),
                };
            });
            if advanced {
                return true;
            }
        }
        false
    }

    fn create(&mut self, sim: &SimState, api: Api) {
        let now = generate::now_secs();
        let order = {
            let mut ids = lock(&sim.ids);
            let book = sim.read_book(api);
            // An admin call may have taken the next id already.
            let id = loop {
                let id = match api {
                    Api::OrderTracking => ids.next_tracking(),
                    Api::Ordering => ids.next_ordering(now),
                };
                if !book.contains(&id) {
                    break id;
                }
            };
            match api {
                Api::OrderTracking => generate::tracking_order(&mut self.rng, &id, now, now, true),
                Api::Ordering => {
                    generate::ordering_request(&mut self.rng, &id, now, now, ORDERING_STEPS[0])
                }
            }
        };
        let _ = sim.create_order(api, &order);
    }

    fn remove(&mut self, sim: &SimState, api: Api) -> bool {
        match self.random_id(sim, api) {
            Some(id) => sim.remove_order(api, &id).is_ok(),
            None => false,
        }
    }
}

/// A `Current` order's request moves to its next state, or the order closes
/// (completed nine times in ten, else cancelled). False if already closed.
fn advance_tracking(order: &mut Value, rng: &mut StdRng) -> bool {
    if order.get("status").and_then(Value::as_str) != Some("Current") {
        return false;
    }
    let request_state = order.pointer("/request/status").and_then(Value::as_str);
    let position = TRACKING_CURRENT_STATES
        .iter()
        .position(|state| Some(*state) == request_state);
    let next_state = position.and_then(|at| TRACKING_CURRENT_STATES.get(at + 1));
    let (status, new_request_state) = match next_state {
        Some(next) if rng.random_bool(0.5) => ("Current", *next),
        _ if rng.random_bool(0.9) => ("Closed", "Completed"),
        _ => ("Closed", "Cancelled"),
    };
    if let Some(object) = order.as_object_mut() {
        object.insert("status".to_owned(), status.into());
    }
    if let Some(request) = order.get_mut("request").and_then(Value::as_object_mut) {
        request.insert("status".to_owned(), new_request_state.into());
    }
    true
}

/// A request moves to its next step; completed ones are archived. False if
/// already completed or on an unknown step.
fn advance_ordering(order: &mut Value) -> bool {
    let step = order.get("step").and_then(Value::as_str);
    let Some(at) = ORDERING_STEPS.iter().position(|s| Some(*s) == step) else {
        return false;
    };
    let Some(next) = ORDERING_STEPS.get(at + 1) else {
        return false;
    };
    let Some(object) = order.as_object_mut() else {
        return false;
    };
    object.insert("step".to_owned(), (*next).into());
    if at + 2 == ORDERING_STEPS.len() {
        object.insert("isArchived".to_owned(), true.into());
    }
    true
}

/// Run churn until `stop` turns true. Ticks are at most a quarter second
/// apart and each makes the changes due by then, so the rate holds on
/// average whatever it is.
pub(crate) async fn run(
    sim: Arc<SimState>,
    mut churner: Churner,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) {
    // `clamp` keeps a NaN (a rate of NaN from a library caller): such a rate
    // ticks at the slowest period rather than panicking.
    let period = (1.0 / rate).clamp(0.01, 0.25);
    let period = Duration::from_secs_f64(if period.is_nan() { 0.25 } else { period });
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut done: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            _ = ticker.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        for _ in 0..due.saturating_sub(done).min(MAX_BURST) {
            churner.step(&sim);
        }
        done = due;
    }
}

#[cfg(test)]
mod tests {
    use super::super::SimOptions;
    use super::*;

    fn sim(seed: u64) -> SimState {
        SimState::new(&SimOptions {
            orders: 200,
            seed,
            ..SimOptions::default()
        })
    }

    /// The log without its clock-dependent parts.
    fn log_shape(sim: &SimState) -> Vec<String> {
        lock(&sim.changes)
            .since(0)
            .iter()
            .map(|entry| {
                let paths: Vec<String> = entry
                    .changes
                    .iter()
                    .filter(|c| c.path != "/updatedAt")
                    .map(|c| format!("{}:{}>{}", c.path, c.from, c.to))
                    .collect();
                format!(
                    "{} {} {:?} {}",
                    entry.api,
                    entry.id,
                    entry.kind,
                    paths.join(";")
                )
            })
            .collect()
    }

    #[test]
    fn same_seed_same_churn() {
        let (a, b, c) = (sim(5), sim(5), sim(6));
        for (s, seed) in [(&a, 5), (&b, 5), (&c, 6)] {
            let mut churner = Churner::new(seed);
            for _ in 0..300 {
                churner.step(s);
            }
        }
        assert_eq!(log_shape(&a), log_shape(&b));
        assert_ne!(log_shape(&a), log_shape(&c));
        assert_eq!(log_shape(&a).len(), 300, "every step logs one change");
    }

    #[test]
    fn advances_follow_the_lifecycle() {
        let mut order = serde_json::json!({"step": "DELIVERY", "isArchived": false});
        assert!(advance_ordering(&mut order));
        assert_eq!(
            order,
            serde_json::json!({"step": "COMPLETED", "isArchived": true})
        );
        assert!(!advance_ordering(&mut order));

        let mut rng = StdRng::seed_from_u64(1);
        let mut order =
            serde_json::json!({"status": "Current", "request": {"status": "Acknowledged"}});
        while order["status"] == "Current" {
            assert!(advance_tracking(&mut order, &mut rng));
        }
        assert!(
            ["Completed", "Cancelled"].contains(&order["request"]["status"].as_str().unwrap_or(""))
        );
        assert!(!advance_tracking(&mut order, &mut rng));
    }
}
