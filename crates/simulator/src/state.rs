//! Everything the simulator's requests share, and every mutation of orders:
//! a mutation changes a book and records the change log entry under the
//! book's write lock, so the log's order is the order changes happened in.
//! Locks are `std::sync` ones and are never held across an `.await`; the
//! order is always book, then change log.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde_json::Value;

use super::SimOptions;
use super::auth::TokenStore;
use super::book::{BookError, OrderBook};
use super::changelog::{ChangeKind, ChangeLog};
use super::diff;
use super::faults::Faults;
use super::generate::{self, IdSource};
use super::ratelimit::RateLimiter;
use super::requests::RequestLog;
use super::server::RequestIds;
use super::stats::Stats;

/// The field Orange refreshes on every change of an order.
const UPDATED_AT: &str = "updatedAt";

/// Which collection of the two Orange APIs: Order Tracking's orders, and
/// Ordering's requests and its (commercial) orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Api {
    OrderTracking,
    Ordering,
    OrderingOrders,
}

impl Api {
    pub(crate) const ALL: [Api; 3] = [Api::OrderTracking, Api::Ordering, Api::OrderingOrders];

    /// The name used in admin paths, the change log, faults and stats.
    /// `ordering` stays the requests (as before the orders were served).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Api::OrderTracking => "order-tracking",
            Api::Ordering => "ordering",
            Api::OrderingOrders => "ordering-orders",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.name() == name)
    }
}

/// The credentials a client must present.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) api_key: String,
    pub(crate) token_ttl: Duration,
}

pub(crate) struct SimState {
    pub(crate) credentials: Credentials,
    /// The budget from the options, restored when faults are cleared.
    pub(crate) configured_rate_limit: Option<u32>,
    /// The largest `limit` a list call is served.
    pub(crate) max_page_size: usize,
    tracking: RwLock<OrderBook>,
    ordering: RwLock<OrderBook>,
    ordering_orders: RwLock<OrderBook>,
    pub(crate) tokens: Mutex<TokenStore>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) rate: Mutex<RateLimiter>,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) changes: Mutex<ChangeLog>,
    pub(crate) requests: Mutex<RequestLog>,
    pub(crate) request_ids: RequestIds,
    /// Where new order ids come from after the generated ones; churn uses it.
    pub(crate) ids: Mutex<IdSource>,
}

/// Why an order mutation was refused.
pub(crate) type MutationError = BookError;

impl SimState {
    pub(crate) fn new(opts: &SimOptions) -> SimState {
        let mut ids = IdSource::new(opts.orders);
        let mut tracking = OrderBook::default();
        let mut rng = generate::tracking_rng(opts.seed);
        for order in generate::tracking_orders_from(&mut rng, &mut ids, opts.orders) {
            // Generated ids are distinct, so this cannot fail; skipping an
            // order is the safe answer if it ever did.
            let _ = tracking.create(&order);
        }
        let mut ordering = OrderBook::default();
        let mut rng = generate::ordering_rng(opts.seed);
        for request in generate::ordering_requests_from(&mut rng, &mut ids, opts.orders) {
            let _ = ordering.create(&request);
        }
        // Nested fields are indexed too: Orange sorts orders on
        // `keyDates.expectedAt` as readily as on `updatedAt`.
        let mut ordering_orders = OrderBook::with_nested_fields();
        let mut rng = generate::orders_rng(opts.seed);
        for order in generate::ordering_orders_from(&mut rng, &mut ids, opts.orders) {
            let _ = ordering_orders.create(&order);
        }
        // Build the default view now, so the first list call is as fast as
        // the others.
        let default_query = super::query::ListQuery::parse(None);
        if let Ok(query) = default_query {
            tracking.page(&query);
            ordering.page(&query);
            ordering_orders.page(&query);
        }
        SimState {
            credentials: Credentials {
                client_id: opts.client_id.clone(),
                client_secret: opts.client_secret.clone(),
                api_key: opts.api_key.clone(),
                token_ttl: opts.token_ttl,
            },
            configured_rate_limit: opts.rate_limit_per_minute,
            max_page_size: opts.max_page_size,
            tracking: RwLock::new(tracking),
            ordering: RwLock::new(ordering),
            ordering_orders: RwLock::new(ordering_orders),
            tokens: Mutex::new(TokenStore::default()),
            faults: Mutex::new(Faults::default()),
            rate: Mutex::new(RateLimiter::new(opts.rate_limit_per_minute)),
            stats: Mutex::new(Stats::default()),
            changes: Mutex::new(ChangeLog::default()),
            requests: Mutex::new(RequestLog::default()),
            request_ids: RequestIds::new(),
            ids: Mutex::new(ids),
        }
    }

    fn book(&self, api: Api) -> &RwLock<OrderBook> {
        match api {
            Api::OrderTracking => &self.tracking,
            Api::Ordering => &self.ordering,
            Api::OrderingOrders => &self.ordering_orders,
        }
    }

    pub(crate) fn read_book(&self, api: Api) -> RwLockReadGuard<'_, OrderBook> {
        read(self.book(api))
    }

    pub(crate) fn write_book(&self, api: Api) -> RwLockWriteGuard<'_, OrderBook> {
        write(self.book(api))
    }

    /// Add an order; returns its JSON.
    pub(crate) fn create_order(&self, api: Api, order: &Value) -> Result<String, MutationError> {
        let mut book = self.write_book(api);
        book.create(order)?;
        let id = order.get("id").and_then(Value::as_str).unwrap_or_default();
        lock(&self.changes).record(api, id, ChangeKind::Created, Vec::new());
        Ok(book.json(id).unwrap_or_default().to_owned())
    }

    /// Apply `change` to an order; returns its JSON afterwards. A change that
    /// changes nothing is not logged. Like Orange, any change of an order
    /// that has an `updatedAt` sets it to now, unless the change set it
    /// itself (a test placing an order in time).
    pub(crate) fn update_order(
        &self,
        api: Api,
        id: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<String, MutationError> {
        let mut book = self.write_book(api);
        let before = book
            .value(id)
            .ok_or_else(|| BookError::NotFound(id.to_owned()))?;
        let mut after = before.clone();
        change(&mut after);
        if after != before
            && after.get(UPDATED_AT) == before.get(UPDATED_AT)
            && let Some(stamp) = after.get_mut(UPDATED_AT)
        {
            let previous = before.get(UPDATED_AT).and_then(Value::as_str);
            *stamp = Value::String(generate::next_stamp(previous));
        }
        let changes = diff::leaf_changes(&before, &after);
        if !changes.is_empty() {
            book.replace(id, &after)?;
            lock(&self.changes).record(api, id, ChangeKind::Changed, changes);
        }
        Ok(book.json(id).unwrap_or_default().to_owned())
    }

    pub(crate) fn remove_order(&self, api: Api, id: &str) -> Result<(), MutationError> {
        let mut book = self.write_book(api);
        book.remove(id)?;
        lock(&self.changes).record(api, id, ChangeKind::Removed, Vec::new());
        Ok(())
    }
}

// A panic elsewhere while a lock was held must not turn every later request
// into a panic too: the data under these locks stays consistent between
// statements, so a poisoned lock is still used.

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
