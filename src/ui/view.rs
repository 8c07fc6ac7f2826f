//! The page templates (files beside this one, compiled in), minijinja with
//! HTML auto-escaping on: every value from an order or from outside is
//! text, never markup. And the one filter the pages need: a time as
//! "3 min ago".

use minijinja::{Environment, Value};
use std::time::SystemTime;

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("login.html", include_str!("templates/login.html")),
    ("orders.html", include_str!("templates/orders.html")),
    ("order.html", include_str!("templates/order.html")),
    ("sources.html", include_str!("templates/sources.html")),
    ("sinks.html", include_str!("templates/sinks.html")),
    (
        "dead_letters.html",
        include_str!("templates/dead_letters.html"),
    ),
    ("error.html", include_str!("templates/error.html")),
];

pub const STYLESHEET: &str = include_str!("templates/style.css");

/// The compiled templates. They are ours and fixed: one that does not
/// compile fails the unit test below, not a request.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // The names end in .html, which minijinja auto-escapes; set it anyway so
    // no renamed template ever renders order data as markup.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "a UI template does not compile");
        }
    }
    env.add_filter("ago", |at: Value| -> String {
        at.as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .map(|t| relative(t, SystemTime::now()))
            .unwrap_or_default()
    });
    // Names and ids in links: percent-encoded whole, so an id holding `/`,
    // `?` or `#` still names one order.
    env.add_filter("urlencode", |text: String| -> String {
        percent_encode(&text)
    });
    env
}

/// Every byte but the unreserved ones of RFC 3986 as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `at` seen from `now`: "just now", "12 s ago", "3 min ago", "in 40 s",
/// "2 h ago", "5 d ago".
pub fn relative(at: SystemTime, now: SystemTime) -> String {
    let (secs, past) = match now.duration_since(at) {
        Ok(d) => (d.as_secs(), true),
        Err(e) => (e.duration().as_secs(), false),
    };
    let amount = match secs {
        0..=1 => return "just now".to_owned(),
        2..=59 => format!("{secs} s"),
        60..=3_599 => format!("{} min", secs / 60),
        3_600..=86_399 => format!("{} h", secs / 3_600),
        _ => format!("{} d", secs / 86_400),
    };
    if past {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_template_compiles() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn every_page_renders_a_sample_and_escapes_what_it_shows() {
        let env = environment();
        let hostile = "<script>x</script>";
        let samples = [
            (
                "login.html",
                serde_json::json!({"csrf": "c", "refused": hostile}),
            ),
            (
                "error.html",
                serde_json::json!({"csrf": "c", "status": 404, "message": hostile}),
            ),
            (
                "orders.html",
                serde_json::json!({"csrf": "c", "nav": "orders", "filter": {"q": hostile},
                "sources": ["tracking"], "next": "/ui/orders?cursor=x", "paged": true,
                "orders": [{"source": "tracking", "order_id": hostile, "status": hostile, "closed": false,
                    "listed": true, "revision": 2, "changed_at": "2026-01-01T00:00:00Z"}]}),
            ),
            (
                "order.html",
                serde_json::json!({"csrf": "c", "nav": "orders", "document": hostile,
                "summary": {"source": "tracking", "order_id": "A", "status": "Done", "closed": true,
                    "listed": false, "revision": 3, "changed_at": "2026-01-01T00:00:00Z"},
                "timeline": [{"seq": 1, "event": {"type": "order.status_changed", "timestamp": "2026-01-01T00:00:00Z",
                    "data": {"from": "Open", "to": hostile, "closed": false, "revision": 3,
                        "changes": [{"path": "/status", "from": "Open", "to": hostile}]}},
                    "deliveries": [{"sink": "hook", "state": "retrying", "attempts": 2, "last_error": hostile, "at": null}]}]}),
            ),
            (
                "sources.html",
                serde_json::json!({"csrf": "c", "nav": "sources", "sources": [{"name": "tracking",
                "api": "order-tracking", "interval": "1m", "health": "failing", "polling": false,
                "consecutive_failures": 2, "last_error": hostile, "last_cycle_at": "2026-01-01T00:00:00Z",
                "last_ok_at": null, "next_poll_at": "2026-01-01T00:01:00Z"}]}),
            ),
            (
                "sinks.html",
                serde_json::json!({"csrf": "c", "nav": "sinks", "sinks": [{"name": "hook",
                "type": "webhook", "configured": true, "depth": 1, "oldest_due_at": null, "paused": true,
                "dead_letters": 1, "last_error": hostile, "last_error_at": "2026-01-01T00:00:00Z"}]}),
            ),
            (
                "dead_letters.html",
                serde_json::json!({"csrf": "c", "nav": "dead-letters", "next": null, "paged": false,
                "dead_letters": [{"id": "hook:1", "sink": "hook", "type": "order.created", "source": "tracking",
                    "order_id": "A", "attempts": 1, "reason": hostile, "dead_at": "2026-01-01T00:00:00Z"}]}),
            ),
        ];
        for (name, context) in samples {
            let page = env
                .get_template(name)
                .and_then(|t| t.render(&context))
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(page.contains("&lt;script&gt;"), "{name}: {page}");
            assert!(!page.contains(hostile), "{name}: {page}");
        }
    }

    #[test]
    fn ids_in_links_are_encoded_whole() {
        assert_eq!(percent_encode("ORD-1_a.b~"), "ORD-1_a.b~");
        assert_eq!(percent_encode("a/b?c#d é"), "a%2Fb%3Fc%23d%20%C3%A9");
    }

    #[test]
    fn times_read_as_people_say_them() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s| relative(now - Duration::from_secs(s), now);
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(12), "12 s ago");
        assert_eq!(ago(185), "3 min ago");
        assert_eq!(ago(7_300), "2 h ago");
        assert_eq!(ago(5 * 86_400), "5 d ago");
        assert_eq!(relative(now + Duration::from_secs(40), now), "in 40 s");
    }
}
