//! Which sinks an event goes to (README.md "Routes"): every sink of every
//! route the event matches, once each. With no routes, every sink gets
//! everything.
//!
//! Source events (`source.failing`...) are routed as order events are:
//! `sources:` and `events:` filters apply to them, a route with no filters
//! sends them, and a route with `from`, `to` or `match` never matches them,
//! since those filters say something about an order they do not have.
//!
//! The table is replaced whole when the config is reloaded: every poller
//! holds the same [`Router`], so a source that keeps running routes its next
//! event by the new table.

use crate::config::{Config, RouteConfig};
use crate::event::Event;
use serde_json::Value;
use std::sync::{Arc, RwLock};

pub struct Router {
    table: RwLock<Arc<Table>>,
}

struct Table {
    routes: Vec<RouteConfig>,
    all_sinks: Vec<String>,
}

impl Table {
    fn new(config: &Config) -> Table {
        Table {
            routes: config.routes.clone(),
            all_sinks: config.sinks.iter().map(|s| s.name.clone()).collect(),
        }
    }
}

impl Router {
    pub fn new(config: &Config) -> Router {
        Router {
            table: RwLock::new(Arc::new(Table::new(config))),
        }
    }

    /// Route by `config`'s routes and sinks from now on.
    pub fn replace(&self, config: &Config) {
        let table = Arc::new(Table::new(config));
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    /// The sinks for `event`, in config order, without repeats.
    pub fn sinks_for(&self, event: &Event) -> Vec<String> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        if table.routes.is_empty() {
            return table.all_sinks.clone();
        }
        let mut chosen: Vec<&str> = Vec::new();
        for route in table.routes.iter().filter(|r| matches(r, event)) {
            for sink in &route.sinks {
                if !chosen.contains(&sink.as_str()) {
                    chosen.push(sink);
                }
            }
        }
        // Keep the order of `sinks:` so output is predictable.
        table
            .all_sinks
            .iter()
            .filter(|s| chosen.contains(&s.as_str()))
            .cloned()
            .collect()
    }
}

fn matches(route: &RouteConfig, event: &Event) -> bool {
    let in_list = |list: &[String], value: Option<&str>| {
        list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
    };
    let about_the_order = || match event.order() {
        Some(order) => {
            in_list(&route.from, event.from())
                && in_list(&route.to, event.to())
                && route.matches.iter().all(|(pointer, expected)| {
                    order
                        .pointer(pointer)
                        .is_some_and(|v| same_value(v, expected))
                })
        }
        None => route.from.is_empty() && route.to.is_empty() && route.matches.is_empty(),
    };
    in_list(&route.sources, Some(&event.data.source))
        && (route.events.is_empty() || route.events.contains(&event.kind))
        && about_the_order()
}

/// YAML `match: {/priority: 1}` should match `"priority": "1"` and `1` alike.
fn same_value(actual: &Value, expected: &Value) -> bool {
    if actual == expected {
        return true;
    }
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    matches!((text(actual), text(expected)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventData, EventType, SourceFields};
    use std::collections::HashMap;
    use std::path::Path;

    fn config(routes: &str) -> Config {
        let yaml = format!(
            "sources: [{{name: t, api: order-tracking, base_url: 'http://127.0.0.1:1', client_id: a, client_secret: b, api_key: c}}]\n\
             sinks:\n  - {{name: hook, type: webhook, url: 'http://127.0.0.1:2/'}}\n  - {{name: chat, type: slack, url: 'http://127.0.0.1:3/x'}}\n  - {{name: mail, type: console}}\n{routes}"
        );
        Config::parse(&yaml, Path::new("t.yaml"), &HashMap::new()).unwrap()
    }

    fn event(kind: EventType, from: Option<&str>, to: Option<&str>, order: Value) -> Event {
        Event {
            kind,
            timestamp: "2026-11-22T08:00:00Z".into(),
            data: EventData {
                id: "evt_1".into(),
                source: "t".into(),
                order_id: "1".into(),
                from: from.map(Into::into),
                to: to.map(Into::into),
                closed: false,
                revision: 1,
                changes: vec![],
                order,
                ..EventData::default()
            },
        }
    }

    #[test]
    fn no_routes_means_every_sink() {
        let r = Router::new(&config(""));
        let e = event(EventType::Created, None, Some("Current"), Value::Null);
        assert_eq!(r.sinks_for(&e), ["hook", "chat", "mail"]);
    }

    #[test]
    fn the_routing_table() {
        let r = Router::new(&config(
            "routes:\n  - {sinks: [chat, mail], events: [order.status_changed], to: [Closed]}\n  - {sinks: [hook]}\n  - {sinks: [mail], match: {/priority: 1}}\n",
        ));
        let closed = event(
            EventType::StatusChanged,
            Some("Current"),
            Some("Closed"),
            serde_json::json!({"priority": "1"}),
        );
        assert_eq!(r.sinks_for(&closed), ["hook", "chat", "mail"]);
        let other = event(
            EventType::StatusChanged,
            Some("A"),
            Some("B"),
            serde_json::json!({"priority": "2"}),
        );
        assert_eq!(r.sinks_for(&other), ["hook"]);
        let prio = event(
            EventType::Updated,
            None,
            None,
            serde_json::json!({"priority": 1}),
        );
        assert_eq!(r.sinks_for(&prio), ["hook", "mail"]);
    }

    fn source_event(kind: EventType, source: &str) -> Event {
        Event::about_source(
            kind,
            source,
            "2026-11-22T07:45:00Z",
            "2026-11-22T08:00:00Z".into(),
            SourceFields::default(),
        )
    }

    #[test]
    fn source_events_follow_sources_and_events_filters_and_never_order_filters() {
        let r = Router::new(&config(
            "routes:\n  - {sinks: [hook]}\n  - {sinks: [chat], events: [source.failing], sources: [t]}\n  - {sinks: [mail], to: [Closed]}\n  - {sinks: [mail], from: [Current]}\n  - {sinks: [mail], match: {/priority: 1}}\n",
        ));
        let failing = source_event(EventType::SourceFailing, "t");
        assert_eq!(r.sinks_for(&failing), ["hook", "chat"]);
        let recovered = source_event(EventType::SourceRecovered, "t");
        assert_eq!(r.sinks_for(&recovered), ["hook"]);
        let elsewhere = source_event(EventType::SourceFailing, "u");
        assert_eq!(r.sinks_for(&elsewhere), ["hook"]);
        // With no routes at all, everything goes everywhere.
        let all = Router::new(&config(""));
        assert_eq!(all.sinks_for(&failing), ["hook", "chat", "mail"]);
    }

    #[test]
    fn from_and_source_filters() {
        let r = Router::new(&config(
            "routes:\n  - {sinks: [chat], from: [Current], sources: [t]}\n",
        ));
        assert_eq!(
            r.sinks_for(&event(
                EventType::StatusChanged,
                Some("Current"),
                Some("X"),
                Value::Null
            )),
            ["chat"]
        );
        assert!(
            r.sinks_for(&event(
                EventType::Created,
                None,
                Some("Current"),
                Value::Null
            ))
            .is_empty()
        );
    }
}
