//! One API's orders: each kept as its serialized JSON (what pages are built
//! from) plus its top-level scalar fields (what filters and sorts read), and
//! the sorted, filtered views that pages are cut from.
//!
//! Views are cached per (filters, sort) and kept up to date on every change
//! by a binary-search removal and insertion, instead of being rebuilt: with
//! churn running, a rebuild (sorting 100,000 orders) on every change would
//! make each page cost milliseconds. A view is built once, on the first list
//! call that asks for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use serde_json::Value;

use super::fields::{KeyInterner, Scalar, TopFields};
use super::query::{self, Filters, ListQuery, SortKey};

/// Cached views beyond this evict the least recently used one, so that a
/// client trying many filters cannot grow memory without bound.
const MAX_VIEWS: usize = 32;

#[derive(Debug)]
pub(crate) struct StoredOrder {
    pub(crate) id: Box<str>,
    pub(crate) json: Box<str>,
    pub(crate) fields: TopFields,
}

impl StoredOrder {
    fn key(&self) -> (&str, &TopFields) {
        (&self.id, &self.fields)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BookError {
    #[error("an order must be a JSON object")]
    NotAnObject,
    #[error("an order must have a non-empty string \"id\"")]
    MissingId,
    #[error("order {0} already exists")]
    Exists(String),
    #[error("no order {0}")]
    NotFound(String),
    #[error("an order's id cannot change (from {from} to {to})")]
    IdChanged { from: String, to: String },
}

struct View {
    filters: Filters,
    sort: Vec<SortKey>,
    items: Vec<Arc<StoredOrder>>,
    last_used: AtomicU64,
}

impl View {
    fn remove(&mut self, order: &Arc<StoredOrder>) {
        if !query::matches(&self.filters, &order.fields) {
            return;
        }
        let found = self
            .items
            .binary_search_by(|probe| query::compare_orders(&self.sort, probe.key(), order.key()));
        match found {
            Ok(at) if Arc::ptr_eq(&self.items[at], order) => {
                self.items.remove(at);
            }
            // Cannot happen while the view is sorted; a linear search keeps
            // the view right even if it does.
            _ => self.items.retain(|item| !Arc::ptr_eq(item, order)),
        }
    }

    fn insert(&mut self, order: &Arc<StoredOrder>) {
        if !query::matches(&self.filters, &order.fields) {
            return;
        }
        let at = self
            .items
            .binary_search_by(|probe| query::compare_orders(&self.sort, probe.key(), order.key()))
            .unwrap_or_else(|at| at);
        self.items.insert(at, Arc::clone(order));
    }
}

/// One page of a list answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    /// The JSON array, built by concatenating cached order documents.
    pub(crate) body: String,
    pub(crate) result_count: usize,
    pub(crate) total_count: usize,
}

#[derive(Default)]
pub(crate) struct OrderBook {
    /// In insertion order, with removals filled by the last order: churn
    /// picks orders by index, so this order must not depend on hashing.
    orders: Vec<Arc<StoredOrder>>,
    positions: HashMap<Box<str>, usize>,
    keys: KeyInterner,
    views: HashMap<String, View>,
    clock: AtomicU64,
    /// Index nested fields too (by their dotted path), for sorts such as
    /// `keyDates.expectedAt`; the other collections keep top-level ones,
    /// which keeps 100,000 orders' index small.
    nested: bool,
}

impl OrderBook {
    pub(crate) fn with_nested_fields() -> OrderBook {
        OrderBook {
            nested: true,
            ..OrderBook::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.orders.len()
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.positions.contains_key(id)
    }

    /// The id of the order at `index` (0..len), for churn's random picks.
    pub(crate) fn id_at(&self, index: usize) -> Option<&str> {
        self.orders.get(index).map(|order| &*order.id)
    }

    pub(crate) fn json(&self, id: &str) -> Option<&str> {
        let at = *self.positions.get(id)?;
        self.orders.get(at).map(|order| &*order.json)
    }

    /// The order as a JSON value, parsed from its cached text.
    pub(crate) fn value(&self, id: &str) -> Option<Value> {
        serde_json::from_str(self.json(id)?).ok()
    }

    fn store(&mut self, value: &Value) -> Result<Arc<StoredOrder>, BookError> {
        let object = value.as_object().ok_or(BookError::NotAnObject)?;
        let id = match object.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.as_str(),
            _ => return Err(BookError::MissingId),
        };
        Ok(Arc::new(StoredOrder {
            id: id.into(),
            // Serializing a `Value` cannot fail: its keys are strings.
            json: serde_json::to_string(value).unwrap_or_default().into(),
            fields: if self.nested {
                TopFields::from_object_nested(object, &mut self.keys)
            } else {
                TopFields::from_object(object, &mut self.keys)
            },
        }))
    }

    pub(crate) fn create(&mut self, value: &Value) -> Result<(), BookError> {
        let order = self.store(value)?;
        if self.contains(&order.id) {
            return Err(BookError::Exists(order.id.to_string()));
        }
        for view in self.views.values_mut() {
            view.insert(&order);
        }
        self.positions.insert(order.id.clone(), self.orders.len());
        self.orders.push(order);
        Ok(())
    }

    /// Replace the order whose id `value` carries.
    pub(crate) fn replace(&mut self, id: &str, value: &Value) -> Result<(), BookError> {
        let order = self.store(value)?;
        if &*order.id != id {
            return Err(BookError::IdChanged {
                from: id.to_owned(),
                to: order.id.to_string(),
            });
        }
        let at = *self
            .positions
            .get(id)
            .ok_or_else(|| BookError::NotFound(id.to_owned()))?;
        let old = std::mem::replace(&mut self.orders[at], Arc::clone(&order));
        for view in self.views.values_mut() {
            view.remove(&old);
            view.insert(&order);
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, id: &str) -> Result<(), BookError> {
        let at = self
            .positions
            .remove(id)
            .ok_or_else(|| BookError::NotFound(id.to_owned()))?;
        let old = self.orders.swap_remove(at);
        if let Some(moved) = self.orders.get(at) {
            self.positions.insert(moved.id.clone(), at);
        }
        for view in self.views.values_mut() {
            view.remove(&old);
        }
        Ok(())
    }

    /// The page, if the view it comes from is already built (a read lock is
    /// enough for this, the common case).
    pub(crate) fn cached_page(&self, query: &ListQuery) -> Option<Page> {
        let view = self.views.get(&query.view_key())?;
        view.last_used.store(
            self.clock.fetch_add(1, AtomicOrdering::Relaxed),
            AtomicOrdering::Relaxed,
        );
        Some(cut_page(&view.items, query.offset, query.limit))
    }

    /// The page, building its view first if needed (needs a write lock).
    pub(crate) fn page(&mut self, query: &ListQuery) -> Page {
        let key = query.view_key();
        if !self.views.contains_key(&key) {
            self.evict_if_full();
            let view = self.build_view(&query.filters, &query.sort);
            self.views.insert(key.clone(), view);
        }
        self.cached_page(query).unwrap_or_else(|| Page {
            body: "[]".to_owned(),
            result_count: 0,
            total_count: 0,
        })
    }

    fn evict_if_full(&mut self) {
        if self.views.len() < MAX_VIEWS {
            return;
        }
        let oldest = self
            .views
            .iter()
            .min_by_key(|(_, view)| view.last_used.load(AtomicOrdering::Relaxed))
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.views.remove(&key);
        }
    }

    fn build_view(&self, filters: &Filters, sort: &[SortKey]) -> View {
        // Extract the sort values once per order rather than on every one of
        // the n·log n comparisons.
        let mut keyed: Vec<(Vec<Option<&Scalar>>, &Arc<StoredOrder>)> = self
            .orders
            .iter()
            .filter(|order| query::matches(filters, &order.fields))
            .map(|order| {
                let values = sort
                    .iter()
                    .map(|key| order.fields.get(&key.field))
                    .collect();
                (values, order)
            })
            .collect();
        keyed.sort_unstable_by(|(a_values, a), (b_values, b)| {
            query::compare_extracted(sort, (&a.id, a_values), (&b.id, b_values))
        });
        View {
            filters: filters.clone(),
            sort: sort.to_vec(),
            items: keyed
                .into_iter()
                .map(|(_, order)| Arc::clone(order))
                .collect(),
            last_used: AtomicU64::new(self.clock.fetch_add(1, AtomicOrdering::Relaxed)),
        }
    }
}

fn cut_page(items: &[Arc<StoredOrder>], offset: usize, limit: usize) -> Page {
    let start = offset.min(items.len());
    let end = start.saturating_add(limit).min(items.len());
    let page = &items[start..end];
    let size = page.iter().map(|order| order.json.len() + 1).sum::<usize>() + 2;
    let mut body = String::with_capacity(size);
    body.push('[');
    for (i, order) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&order.json);
    }
    body.push(']');
    Page {
        body,
        result_count: page.len(),
        total_count: items.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn book_of(n: usize) -> OrderBook {
        let mut book = OrderBook::default();
        for i in 0..n {
            let status = if i % 5 == 0 { "Closed" } else { "Current" };
            let order = json!({"id": format!("{:06}", 100_001 + i), "status": status, "n": i % 7});
            book.create(&order).unwrap();
        }
        book
    }

    fn ids(page: &Page) -> Vec<String> {
        let items: Vec<Value> = serde_json::from_str(&page.body).unwrap();
        items
            .iter()
            .map(|item| item["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn q(raw: &str) -> ListQuery {
        ListQuery::parse(Some(raw)).unwrap()
    }

    #[test]
    fn pages_cover_the_view_without_overlap() {
        let mut book = book_of(25);
        let first = book.page(&q("limit=10"));
        let last = book.page(&q("limit=10&offset=20"));
        let beyond = book.page(&q("limit=10&offset=30"));
        assert_eq!((first.result_count, first.total_count), (10, 25));
        assert_eq!(ids(&first)[0], "100001");
        assert_eq!(last.result_count, 5);
        assert_eq!(ids(&last)[4], "100025");
        assert_eq!(
            (
                beyond.body.as_str(),
                beyond.result_count,
                beyond.total_count
            ),
            ("[]", 0, 25)
        );
    }

    #[test]
    fn views_follow_changes() {
        let mut book = book_of(20);
        let before = book.page(&q("status=Current&sort=-n&limit=1000"));
        assert_eq!(before.total_count, 16);
        book.replace(
            "100002",
            &json!({"id": "100002", "status": "Closed", "n": 1}),
        )
        .unwrap();
        book.remove("100003").unwrap();
        book.create(&json!({"id": "200000", "status": "Current", "n": 6}))
            .unwrap();
        let cached = book
            .cached_page(&q("status=Current&sort=-n&limit=1000"))
            .unwrap();
        // A freshly built view must agree with the incrementally kept one.
        book.views.clear();
        let rebuilt = book.page(&q("status=Current&sort=-n&limit=1000"));
        assert_eq!(cached, rebuilt);
        assert_eq!(rebuilt.total_count, 15);
        assert!(!ids(&rebuilt).contains(&"100002".to_owned()));
        assert_eq!(ids(&rebuilt)[0], "100007", "n=6 ties break by id");
    }

    #[test]
    fn refuses_bad_orders() {
        let mut book = book_of(1);
        assert_eq!(book.create(&json!([1])), Err(BookError::NotAnObject));
        assert_eq!(book.create(&json!({"id": 5})), Err(BookError::MissingId));
        assert_eq!(
            book.create(&json!({"id": "100001"})),
            Err(BookError::Exists("100001".into()))
        );
        assert!(matches!(
            book.replace("100001", &json!({"id": "9"})),
            Err(BookError::IdChanged { .. })
        ));
        assert_eq!(book.remove("nope"), Err(BookError::NotFound("nope".into())));
    }

    #[test]
    fn removal_keeps_positions_right() {
        let mut book = book_of(3);
        book.remove("100001").unwrap();
        assert_eq!(
            book.json("100003").map(|j| j.contains("100003")),
            Some(true)
        );
        assert_eq!(book.len(), 2);
        assert!(book.value("100002").is_some());
    }

    #[test]
    fn serves_a_page_of_100_000_orders() {
        let orders = super::super::generate::tracking_orders(7, 100_000);
        let mut book = OrderBook::default();
        for order in &orders {
            book.create(order).unwrap();
        }
        let page = book.page(&q("sort=-id&offset=50000&limit=100"));
        assert_eq!((page.result_count, page.total_count), (100, 100_000));
        let ids = ids(&page);
        let mut expected: Vec<String> = orders
            .iter()
            .map(|o| o["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        expected.sort();
        expected.reverse();
        assert_eq!(ids, expected[50_000..50_100]);
        let current = book.page(&q("status=Current&limit=0")).total_count;
        let closed = book.page(&q("status=Closed&limit=0")).total_count;
        assert_eq!(current + closed, 100_000);
    }
}
