//! Orders drifting on their own: `churn` changes per second on average,
//! across both APIs. Mostly advances (a tracking order's request moves on or
//! the order closes; a request moves to its next step, and is archived once
//! completed; an Ordering order moves NEW → IN_PROGRESS ⇄
//! AWAITING_CUSTOMER_ACTION → COMPLETED, some are cancelled, and a delivery
//! slips from ON_TRACK to DELAYED with its expected date moved), some new
//! orders, a few removals.
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
use serde_json::json;

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
        let api = Api::ALL[self.rng.random_range(0..Api::ALL.len())];
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
                    Api::OrderingOrders => advance_order(order, rng, generate::now_secs()),
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
                    Api::OrderingOrders => ids.next_order(now),
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
                Api::OrderingOrders => {
                    generate::ordering_order(&mut self.rng, &id, now, now, "NEW")
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

/// An open Ordering order takes its next step of a realistic lifecycle:
/// NEW is accepted (or, rarely, cancelled); IN_PROGRESS waits on the
/// customer, slips (DELAYED, expected date moved later), completes or is
/// cancelled; AWAITING_CUSTOMER_ACTION goes back to IN_PROGRESS. False if
/// the order is closed. `updatedAt` is the state's to refresh.
fn advance_order(order: &mut Value, rng: &mut StdRng, now: u64) -> bool {
    let status = order.get("status").and_then(Value::as_str).unwrap_or("");
    let roll: f64 = rng.random();
    let next = match status {
        "NEW" if roll < 0.9 => "IN_PROGRESS",
        "NEW" => "CANCELLED",
        "IN_PROGRESS" if roll < 0.25 => "AWAITING_CUSTOMER_ACTION",
        "IN_PROGRESS" if roll < 0.5 => return slip_delivery(order, rng),
        "IN_PROGRESS" if roll < 0.92 => "COMPLETED",
        "IN_PROGRESS" => "CANCELLED",
        "AWAITING_CUSTOMER_ACTION" => "IN_PROGRESS",
        _ => return false,
    };
    let (step, sub_step) = generate::order_stage(next);
    let Some(object) = order.as_object_mut() else {
        return false;
    };
    object.insert("status".to_owned(), next.into());
    object.insert("step".to_owned(), step.into());
    object.insert("subStep".to_owned(), sub_step.into());
    let delivery = match next {
        "AWAITING_CUSTOMER_ACTION" => Some("ON_HOLD"),
        "COMPLETED" => Some("ON_TRACK"),
        // Back from the customer: on track again, unless it had slipped.
        "IN_PROGRESS" if object.get("deliveryStatus") == Some(&json!("ON_HOLD")) => {
            Some("ON_TRACK")
        }
        _ => None,
    };
    if let Some(delivery) = delivery {
        object.insert("deliveryStatus".to_owned(), delivery.into());
    }
    if next == "COMPLETED" || next == "CANCELLED" {
        object.insert("isOverdue".to_owned(), false.into());
        let key = if next == "COMPLETED" {
            "completedAt"
        } else {
            "cancelledAt"
        };
        if let Some(dates) = object.get_mut("keyDates").and_then(Value::as_object_mut) {
            dates.insert(key.to_owned(), generate::rfc3339(now).into());
        }
    }
    true
}

/// An IN_PROGRESS order's delivery slips: DELAYED, and its expected date
/// moves one to four weeks later (overdue once the old date had passed).
fn slip_delivery(order: &mut Value, rng: &mut StdRng) -> bool {
    let expected = order
        .pointer("/keyDates/expectedAt")
        .and_then(Value::as_str)
        .and_then(|text| humantime::parse_rfc3339(text).ok())
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let Some(expected) = expected else {
        return false;
    };
    let later = expected + rng.random_range(7..29) * 86_400;
    let overdue = expected < generate::now_secs();
    let Some(object) = order.as_object_mut() else {
        return false;
    };
    object.insert("deliveryStatus".to_owned(), "DELAYED".into());
    object.insert("isOverdue".to_owned(), overdue.into());
    if let Some(dates) = object.get_mut("keyDates").and_then(Value::as_object_mut) {
        dates.insert("expectedAt".to_owned(), generate::rfc3339(later).into());
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

    /// A logged value, with times (which follow the clock) blanked.
    fn shape(value: &Value) -> String {
        match value.as_str() {
            Some(text) if humantime::parse_rfc3339(text).is_ok() => "<time>".to_owned(),
            _ => value.to_string(),
        }
    }

    /// The log without its clock-dependent parts: two simulators churned a
    /// moment apart stamp different times (updatedAt, completedAt, a slipped
    /// expectedAt) when a second turns between them.
    fn log_shape(sim: &SimState) -> Vec<String> {
        lock(&sim.changes)
            .since(0)
            .iter()
            .map(|entry| {
                let paths: Vec<String> = entry
                    .changes
                    .iter()
                    .filter(|c| c.path != "/updatedAt")
                    .map(|c| format!("{}:{}>{}", c.path, shape(&c.from), shape(&c.to)))
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

    #[test]
    fn ordering_orders_close_or_slip() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut closed = 0;
        let mut slipped = 0;
        for _ in 0..200 {
            let mut order = serde_json::json!({"status": "NEW", "deliveryStatus": "ON_TRACK",
                "keyDates": {"expectedAt": "2026-03-01T00:00:00Z"}});
            let mut steps = 0;
            while advance_order(&mut order, &mut rng, 1_800_000_000) {
                steps += 1;
                if order["deliveryStatus"] == "DELAYED" {
                    slipped += 1;
                    assert_ne!(order["keyDates"]["expectedAt"], "2026-03-01T00:00:00Z");
                }
                assert!(steps < 1000, "an order's lifecycle ends");
            }
            let status = order["status"].as_str().unwrap_or_default();
            assert!(["COMPLETED", "CANCELLED"].contains(&status), "{status}");
            closed += 1;
        }
        assert_eq!(closed, 200);
        assert!(slipped > 0);
    }
}
