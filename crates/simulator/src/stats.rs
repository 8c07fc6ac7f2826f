//! Counts of API calls served (token, list and detail of each API; not the
//! admin endpoints), by endpoint and HTTP status: `GET /_sim/stats`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::state::Api;

/// The endpoint an API call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Token,
    List(Api),
    Detail(Api),
}

impl Endpoint {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::List(Api::OrderTracking) => "order-tracking.list",
            Endpoint::Detail(Api::OrderTracking) => "order-tracking.detail",
            Endpoint::List(Api::Ordering) => "ordering.list",
            Endpoint::Detail(Api::Ordering) => "ordering.detail",
            Endpoint::List(Api::OrderingOrders) => "ordering-orders.list",
            Endpoint::Detail(Api::OrderingOrders) => "ordering-orders.detail",
        }
    }

    pub(crate) fn api(self) -> Option<Api> {
        match self {
            Endpoint::Token => None,
            Endpoint::List(api) | Endpoint::Detail(api) => Some(api),
        }
    }
}

const ALL_KEYS: [&str; 7] = [
    "token",
    "order-tracking.list",
    "order-tracking.detail",
    "ordering.list",
    "ordering.detail",
    "ordering-orders.list",
    "ordering-orders.detail",
];

#[derive(Debug, Default)]
pub(crate) struct Stats {
    total: u64,
    by_endpoint: BTreeMap<&'static str, BTreeMap<u16, u64>>,
}

impl Stats {
    pub(crate) fn record(&mut self, endpoint: Endpoint, status: u16) {
        self.total += 1;
        *self
            .by_endpoint
            .entry(endpoint.key())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// `{"total":N,"by_endpoint":{"token":{"200":3},...}}`, every endpoint
    /// present even when it has no calls yet.
    pub(crate) fn to_json(&self) -> Value {
        let mut by_endpoint = Map::new();
        for key in ALL_KEYS {
            let counts: Map<String, Value> = self
                .by_endpoint
                .get(key)
                .into_iter()
                .flatten()
                .map(|(status, count)| (status.to_string(), Value::from(*count)))
                .collect();
            by_endpoint.insert(key.to_owned(), Value::Object(counts));
        }
        json!({ "total": self.total, "by_endpoint": by_endpoint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_endpoint_and_status() {
        let mut stats = Stats::default();
        stats.record(Endpoint::Token, 200);
        stats.record(Endpoint::Token, 200);
        stats.record(Endpoint::Token, 401);
        stats.record(Endpoint::List(Api::Ordering), 200);
        let json = stats.to_json();
        assert_eq!(json["total"], 4);
        assert_eq!(
            json["by_endpoint"]["token"],
            serde_json::json!({"200": 2, "401": 1})
        );
        assert_eq!(json["by_endpoint"]["ordering.list"]["200"], 1);
        assert_eq!(
            json["by_endpoint"]["order-tracking.detail"],
            serde_json::json!({})
        );
    }
}
