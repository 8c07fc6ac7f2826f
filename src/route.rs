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
//!
//! Each sink chosen also gets when the event leaves for it ([`Hold`]): now;
//! when a route's quiet hours end (`quiet_hours.rs`); or with the sink's
//! digest. When several routes choose one sink for an event, the earliest
//! of their times wins: a route that is not quiet sends it now, whatever a
//! quiet one would do, since "once each" means a held copy could never
//! follow. A digest sink keeps everything routed to it for its digest,
//! quiet hours or not.

mod quiet_hours;

pub use quiet_hours::QuietHours;

use crate::config::{Config, RouteConfig};
use crate::event::Event;
use crate::store::{Hold, Routed, now_ms};
use serde_json::Value;
use std::sync::{Arc, RwLock};

pub struct Router {
    table: RwLock<Arc<Table>>,
}

struct Table {
    routes: Vec<RouteConfig>,
    all_sinks: Vec<String>,
    /// The sinks with a `digest:`.
    digest_sinks: Vec<String>,
}

impl Table {
    fn new(config: &Config) -> Table {
        Table {
            routes: config.routes.clone(),
            all_sinks: config.sinks.iter().map(|s| s.name.clone()).collect(),
            digest_sinks: config
                .sinks
                .iter()
                .filter(|s| s.digest.is_some())
                .map(|s| s.name.clone())
                .collect(),
        }
    }

    fn hold(&self, sink: &str, quiet_until: Option<u64>) -> Hold {
        if self.digest_sinks.iter().any(|s| s == sink) {
            return Hold::Digest;
        }
        quiet_until.map_or(Hold::Now, Hold::Until)
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

    /// The sinks for `event`, in config order, without repeats, and when
    /// it leaves for each.
    pub fn sinks_for(&self, event: &Event) -> Vec<Routed> {
        self.sinks_at(event, now_ms())
    }

    fn sinks_at(&self, event: &Event, now: u64) -> Vec<Routed> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        if table.routes.is_empty() {
            return table
                .all_sinks
                .iter()
                .map(|s| Routed {
                    sink: s.clone(),
                    hold: table.hold(s, None),
                })
                .collect();
        }
        // Per chosen sink: `None` once a route wants it now, else the
        // earliest end of the quiet hours of the routes that chose it.
        let mut chosen: Vec<(&str, Option<u64>)> = Vec::new();
        for route in table.routes.iter().filter(|r| matches(r, event)) {
            let until = route.quiet_hours.as_ref().and_then(|q| q.release_ms(now));
            for sink in &route.sinks {
                match chosen.iter_mut().find(|(s, _)| *s == sink.as_str()) {
                    Some((_, held)) => {
                        *held = match (*held, until) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            _ => None,
                        }
                    }
                    None => chosen.push((sink, until)),
                }
            }
        }
        // Keep the order of `sinks:` so output is predictable.
        table
            .all_sinks
            .iter()
            .filter_map(|s| {
                let (_, until) = chosen.iter().find(|(c, _)| *c == s.as_str())?;
                Some(Routed {
                    sink: s.clone(),
                    hold: table.hold(s, *until),
                })
            })
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

    /// A sink chosen to deliver now, by name.
    impl PartialEq<&str> for Routed {
        fn eq(&self, name: &&str) -> bool {
            self.sink == *name && self.hold == Hold::Now
        }
    }

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

    #[test]
    fn quiet_hours_hold_what_their_route_chose_unless_another_route_wants_it_now() {
        let r = Router::new(&config(
            "routes:\n  - {sinks: [chat, mail], quiet_hours: {from: '20:00', to: '07:00', timezone: Europe/Paris}}\n  - {sinks: [hook, mail], events: [order.created]}\n",
        ));
        let e = event(EventType::StatusChanged, Some("A"), Some("B"), Value::Null);
        // 2026-11-24 21:00 in Paris: held until 07:00 there (06:00 UTC).
        let night = 1_795_550_400_000; // 2026-11-24T20:00:00Z
        let morning = 1_795_586_400_000; // 2026-11-25T06:00:00Z
        let held = r.sinks_at(&e, night);
        assert_eq!(
            held,
            [
                Routed {
                    sink: "chat".into(),
                    hold: Hold::Until(morning)
                },
                Routed {
                    sink: "mail".into(),
                    hold: Hold::Until(morning)
                },
            ]
        );
        // By day nothing is held.
        assert_eq!(r.sinks_at(&e, morning + 3_600_000), ["chat", "mail"]);
        // An event the second route matches too reaches `mail` now: that
        // route is not quiet. `chat` is still held.
        let created = event(EventType::Created, None, Some("A"), Value::Null);
        let both = r.sinks_at(&created, night);
        assert_eq!(both[0], "hook");
        assert_eq!(
            both[1],
            Routed {
                sink: "chat".into(),
                hold: Hold::Until(morning)
            }
        );
        assert_eq!(both[2], "mail");
    }

    #[test]
    fn a_digest_sink_keeps_what_is_routed_to_it() {
        let yaml = "sources: [{name: t, api: order-tracking, base_url: 'http://127.0.0.1:1', client_id: a, client_secret: b, api_key: c}]\n\
             sinks:\n  - {name: hook, type: webhook, url: 'http://127.0.0.1:2/', digest: {every: 24h, at: '08:00', timezone: Europe/Paris}}\n  - {name: mail, type: console}\n";
        let config = Config::parse(yaml, Path::new("t.yaml"), &HashMap::new()).unwrap();
        let r = Router::new(&config);
        let e = event(EventType::Created, None, Some("A"), Value::Null);
        assert_eq!(
            r.sinks_for(&e),
            [
                Routed {
                    sink: "hook".into(),
                    hold: Hold::Digest
                },
                Routed {
                    sink: "mail".into(),
                    hold: Hold::Now
                },
            ]
        );
    }
}
