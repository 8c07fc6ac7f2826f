//! Message templates of the sinks (minijinja).
//!
//! Every template is compiled once at start-up and test-rendered against a
//! sample event of each type, so a typo in the config is a config problem,
//! not a dead letter at 3 a.m. The event's fields are the variables, at top
//! level: `type`, `timestamp`, `id`, `source`; for an order event
//! `order_id`, `from`, `to`, `closed`, `revision`, `changes` (each `{path,
//! from, to}`) and `order`; for a source event `since`, `failures`, `error`
//! and `expires`. A field the event lacks is left out of the context, so it
//! is undefined and renders empty, and so does anything read through it
//! (`order.product` on a source event); `none` (a JSON null in the order)
//! renders empty too.
//!
//! Escaping is done where values are written, never on the template's own
//! text: slack templates escape values for mrkdwn (`&`, `<`, `>`), so a user
//! can still write `<https://portal|link>` in a template while an order field
//! cannot inject one; the default HTML mail body escapes values as HTML; the
//! console line, the mail subject and the text body are plain.
//!
//! A render is bounded in work ([`FUEL`], minijinja's instruction budget)
//! and in output ([`MAX_OUTPUT`]): a loop inside a loop fails the start-up
//! check (and `check`) with a plain message instead of spinning, and no
//! event can make a message without bound.

use super::sinks::SINK_TYPES;
use crate::config::{Config, Problem};
use crate::event::{Change, Event, EventData, EventType, SourceFields};
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, HtmlEscape, Output, State, escape_formatter};
use std::collections::HashMap;
use std::fmt::Write as _;

/// What a template is for: the prefix of its name in the environment, and
/// how values are escaped where it writes them. A sink module names its own
/// roles with [`Role::new`], so a new sink needs nothing here; the first
/// sinks' roles are kept as associated constants under their old names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    prefix: &'static str,
    escape: Escape,
}

/// How a template's values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As they are.
    Plain,
    /// `&`, `<` and `>` as entities: Slack's mrkdwn, and any chat text where
    /// `<...>` makes a link or a mention.
    Mrkdwn,
    /// As HTML.
    Html,
}

impl Escape {
    /// Its tag at the start of a template's name, which is all minijinja's
    /// auto-escape callback is given.
    fn tag(self) -> &'static str {
        match self {
            Escape::Plain => "plain",
            Escape::Mrkdwn => MRKDWN,
            Escape::Html => "html",
        }
    }

    fn of_name(name: &str) -> AutoEscape {
        match name.split('|').next().unwrap_or_default() {
            MRKDWN => AutoEscape::Custom(MRKDWN),
            "html" => AutoEscape::Html,
            _ => AutoEscape::None,
        }
    }
}

#[allow(non_upper_case_globals)]
impl Role {
    /// A slack message (mrkdwn).
    pub const Slack: Role = Role::new("slack", Escape::Mrkdwn);
    /// A console line.
    pub const Console: Role = Role::new("console", Escape::Plain);
    /// A mail's subject.
    pub const EmailSubject: Role = Role::new("email.subject", Escape::Plain);
    /// A mail's text part (an email sink's `body`).
    pub const EmailText: Role = Role::new("email.text", Escape::Plain);
    /// A mail's HTML part (built in only).
    pub const EmailHtml: Role = Role::new("email.html", Escape::Html);
    /// A request body (the http sink's `body`): values as they are, or
    /// quoted as JSON with the `tojson` filter.
    pub const Body: Role = Role::new("body", Escape::Plain);

    /// A role of its own for a sink: `prefix` must be unique among roles.
    pub const fn new(prefix: &'static str, escape: Escape) -> Role {
        Role { prefix, escape }
    }

    fn prefix(self) -> &'static str {
        self.prefix
    }

    /// The start of the name of every template of this role.
    fn tag(self) -> String {
        format!("{}|{}", self.escape.tag(), self.prefix)
    }
}

const MRKDWN: &str = "mrkdwn";

/// The instructions one render may execute: the built-in templates need a
/// few thousand for an event with a hundred changes.
pub const FUEL: u64 = 2_000_000;
/// The largest output of one render, in bytes.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// The rendered parts of one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    /// One line: CR and LF are replaced, so a field cannot add a header.
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The templates of every sink, compiled and checked.
pub struct Templates {
    env: Environment<'static>,
    /// Sink name → role → the name of its own template in `env`. A role
    /// missing here uses the built-in default for the event's type.
    custom: HashMap<String, HashMap<RoleKey, String>>,
}

type RoleKey = &'static str;

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("sinks", &self.custom.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Templates {
    /// Compile the templates of every slack, email and console sink, and
    /// render each against a sample event of every type. Every problem found
    /// is returned, each naming the key (`sinks[2].subject`).
    pub fn compile(config: &Config) -> Result<Templates, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut env = environment();
        if let Err(message) = add_defaults(&mut env) {
            problems.push(Problem {
                path: String::new(),
                line: None,
                message,
            });
        }
        let mut custom = HashMap::new();
        let mut keys = Vec::new();
        for (i, sink) in config.sinks.iter().enumerate() {
            let mut roles = HashMap::new();
            for (role, key, source) in sink.settings.templates() {
                let name = format!("{}:sink:{}", role.tag(), sink.name);
                match add_checked(&mut env, &name, source) {
                    Ok(()) => {
                        roles.insert(role.prefix(), name.clone());
                        keys.push((format!("sinks[{i}].{key}"), name));
                    }
                    Err(message) => problems.push(Problem {
                        path: format!("sinks[{i}].{key}"),
                        line: None,
                        message,
                    }),
                }
            }
            custom.insert(sink.name.clone(), roles);
        }
        // Test-render only once everything is added: a render needs `&env`.
        for (path, name) in keys {
            if let Err(message) = render_samples(&env, &name).map(drop) {
                problems.push(Problem {
                    path,
                    line: None,
                    message,
                });
            }
        }
        if problems.is_empty() {
            Ok(Templates { env, custom })
        } else {
            Err(problems)
        }
    }

    /// The Slack message text (mrkdwn), order data escaped.
    pub fn render_slack(&self, sink: &str, event: &Event) -> Result<String, String> {
        self.render(sink, Role::Slack, event)
    }

    /// The console line: always one line, without control characters, so
    /// order data can neither split it nor drive the terminal.
    pub fn render_console(&self, sink: &str, event: &Event) -> Result<String, String> {
        let line = self.render(sink, Role::Console, event)?;
        Ok(line
            .trim_end_matches(['\r', '\n'])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect())
    }

    /// Subject, text part and HTML part of the mail for this event.
    ///
    /// A configured `body` is a text template: the text part is its output,
    /// and the HTML part is the same output HTML-escaped in a pre-wrapped
    /// block, so nothing in it can become markup.
    pub fn render_email(&self, sink: &str, event: &Event) -> Result<RenderedMail, String> {
        let subject = self.render(sink, Role::EmailSubject, event)?;
        let subject = subject
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let subject = subject.collect::<Vec<_>>().join(" ");
        let text = self.render(sink, Role::EmailText, event)?;
        let html = if self.has_custom(sink, Role::EmailText) {
            let mut html = String::from(
                "<!DOCTYPE html>\n<html><body><div style=\"white-space: pre-wrap; font-family: sans-serif\">",
            );
            let _ = write!(html, "{}", HtmlEscape(&text));
            html.push_str("</div></body></html>\n");
            html
        } else {
            self.render(sink, Role::EmailHtml, event)?
        };
        Ok(RenderedMail {
            subject,
            text,
            html,
        })
    }

    fn has_custom(&self, sink: &str, role: Role) -> bool {
        self.custom
            .get(sink)
            .is_some_and(|roles| roles.contains_key(role.prefix()))
    }

    /// The output of `sink`'s template for `role`, or the built-in one.
    pub(crate) fn render(&self, sink: &str, role: Role, event: &Event) -> Result<String, String> {
        let roles = self.custom.get(sink).ok_or_else(|| {
            format!("sink `{sink}` has no templates (not a slack, email or console sink)")
        })?;
        let name = match roles.get(role.prefix()) {
            Some(name) => name.clone(),
            None => default_name(role, event.kind),
        };
        render_named(&self.env, &name, event).map_err(|e| {
            format!(
                "sink `{sink}`: the {} template failed: {}",
                role.prefix(),
                describe(&e)
            )
        })
    }
}

/// Compile one template of the config on its own and render it against a
/// sample event of every type: the config reader calls this for each
/// template key, so its problem is listed with the others, with its line.
pub fn check_template(role: Role, source: &str) -> Result<(), String> {
    sample_outputs(role, source).map(drop)
}

/// What the template writes for a sample event of every type, or its
/// first problem.
pub(crate) fn sample_outputs(role: Role, source: &str) -> Result<Vec<(EventType, String)>, String> {
    let mut env = environment();
    let name = format!("{}:check", role.tag());
    add_checked(&mut env, &name, source)?;
    render_samples(&env, &name)
}

fn add_checked(env: &mut Environment<'static>, name: &str, source: &str) -> Result<(), String> {
    env.add_template_owned(name.to_owned(), source.to_owned())
        .map_err(|e| format!("not a valid template: {}", describe(&e)))
}

/// Render the template against a sample of every event type; the first
/// failure is the problem.
fn render_samples(
    env: &Environment<'static>,
    name: &str,
) -> Result<Vec<(EventType, String)>, String> {
    EventType::ALL
        .into_iter()
        .map(|kind| {
            render_named(env, name, &sample_event(kind))
                .map(|out| (kind, out))
                .map_err(|e| format!("fails on a sample {kind} event: {}", describe(&e)))
        })
        .collect()
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(Escape::of_name);
    env.set_formatter(format_value);
    env.set_fuel(Some(FUEL));
    // `{{ order.product }}` on a source event (no `order`) renders empty
    // rather than failing: a template written for orders still serves.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.add_filter("show", show);
    env.add_filter("tojson", tojson);
    env.add_filter("length", length);
    env
}

/// minijinja's `length`, but 0 for a field the event lacks: `{% if
/// changes|length > 1 %}` in a template written for orders must not fail
/// on a source event, which has no `changes`.
fn length(value: Value) -> Result<usize, Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(0);
    }
    value.len().ok_or_else(|| {
        Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("cannot calculate length of value of type {}", value.kind()),
        )
    })
}

/// The `tojson` filter: the value as JSON text, a missing one as `null`, so
/// a body template makes valid JSON whatever an order holds.
fn tojson(value: Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Ok(Value::from_safe_string("null".to_owned()));
    }
    serde_json::to_string(&value)
        .map(Value::from_safe_string)
        .map_err(|e| Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))
}

/// Writes one `{{ value }}`: none as nothing, and mrkdwn escaping for slack.
fn format_value(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    // A JSON null in the order reads better as nothing than as "none".
    let value = if value.is_none() {
        &Value::UNDEFINED
    } else {
        value
    };
    match state.auto_escape() {
        AutoEscape::Custom(MRKDWN) if !value.is_safe() => {
            out.write_str(&mrkdwn_escape(&value.to_string()))?;
            Ok(())
        }
        AutoEscape::Custom(MRKDWN) => {
            write!(out, "{value}")?;
            Ok(())
        }
        _ => escape_formatter(out, state, value),
    }
}

/// The `show` filter: a changed value as a reader wants it — strings bare,
/// a missing value as `(none)`, anything else as compact JSON.
fn show(value: Value) -> String {
    if value.is_none() || value.is_undefined() {
        return "(none)".to_owned();
    }
    if let Some(s) = value.as_str() {
        return s.to_owned();
    }
    serde_json::to_string(&value).unwrap_or_else(|_| value.to_string())
}

/// Slack's mrkdwn control characters: the only three it asks to escape.
pub fn mrkdwn_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A minijinja error for a user: what went wrong and on which line of the
/// template, without the environment's internal template name.
fn describe(e: &Error) -> String {
    let mut text = match (e.kind(), e.detail()) {
        (minijinja::ErrorKind::OutOfFuel, _) => format!(
            "the template does too much work (more than {FUEL} steps for one event; a loop inside a loop?)"
        ),
        (minijinja::ErrorKind::WriteFailure, _) => format!(
            "the template's output is larger than {} KiB",
            MAX_OUTPUT / 1024
        ),
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    if let Some(line) = e.line() {
        let _ = write!(text, " (line {line} of the template)");
    }
    text
}

fn render_named(env: &Environment<'static>, name: &str, event: &Event) -> Result<String, Error> {
    let mut out = BoundedOutput::default();
    env.get_template(name)?
        .render_captured_to(context(event), &mut out)?;
    // Escaping works on whole values, so the output is valid UTF-8; a cut
    // cannot happen (a write past the bound fails the whole render).
    String::from_utf8(out.bytes).map_err(|_| {
        Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "the output is not valid UTF-8",
        )
    })
}

/// A render's output that refuses to grow past [`MAX_OUTPUT`].
#[derive(Default)]
struct BoundedOutput {
    bytes: Vec<u8>,
}

impl std::io::Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT {
            return Err(std::io::Error::other("template output too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The variables of a template: every field the event has, at top level;
/// `from` and `to` only when the event has them, and a source event none of
/// the order fields, so what it lacks is undefined.
fn context(event: &Event) -> Value {
    let d = &event.data;
    let mut vars = serde_json::Map::new();
    vars.insert("type".into(), event.kind.as_str().into());
    vars.insert("timestamp".into(), event.timestamp.clone().into());
    vars.insert("id".into(), d.id.clone().into());
    vars.insert("source".into(), d.source.clone().into());
    let mut optional = |name: &str, value: Option<serde_json::Value>| {
        if let Some(value) = value {
            vars.insert(name.into(), value);
        }
    };
    optional("since", d.since.clone().map(Into::into));
    optional("failures", d.failures.map(Into::into));
    optional("error", d.error.clone().map(Into::into));
    optional("expires", d.expires.clone().map(Into::into));
    optional("due", d.due.clone().map(Into::into));
    if event.kind.is_about_an_order() {
        optional("from", d.from.clone().map(Into::into));
        optional("to", d.to.clone().map(Into::into));
        vars.insert("order_id".into(), d.order_id.clone().into());
        vars.insert("closed".into(), d.closed.into());
        vars.insert("revision".into(), d.revision.into());
        let changes = d
            .changes
            .iter()
            .map(|c| serde_json::json!({ "path": c.path, "from": c.from, "to": c.to }));
        vars.insert("changes".into(), changes.collect::<Vec<_>>().into());
        vars.insert("order".into(), d.order.clone());
    }
    Value::from_serialize(&vars)
}

/// The environment's name of the built-in template of `role` for `kind`.
pub(crate) fn default_name(role: Role, kind: EventType) -> String {
    match role {
        // One text and one HTML body serve every order type, and one pair
        // every source type; they branch inside.
        Role::EmailText | Role::EmailHtml if kind.is_about_an_order() => {
            format!("{}:default", role.tag())
        }
        Role::EmailText | Role::EmailHtml => format!("{}:default:source", role.tag()),
        _ => format!("{}:default:{}", role.tag(), kind.as_str()),
    }
}

fn add_defaults(env: &mut Environment<'static>) -> Result<(), String> {
    for (name, source) in SINK_TYPES.iter().flat_map(|t| (t.defaults)()) {
        env.add_template_owned(name.clone(), source).map_err(|e| {
            format!(
                "built-in template {name} is broken (a bug in orderwatch): {}",
                describe(&e)
            )
        })?;
    }
    Ok(())
}

/// A realistic event of the given type, for checking templates at start-up
/// and for `notify-test`.
pub fn sample_event(kind: EventType) -> Event {
    if !kind.is_about_an_order() {
        return sample_source_event(kind);
    }
    let (from, to, revision, changes) = match kind {
        EventType::Created => (None, Some("Acknowledged"), 1, vec![]),
        EventType::StatusChanged => (
            Some("Current"),
            Some("Closed"),
            4,
            vec![Change {
                path: "/status".into(),
                from: "Current".into(),
                to: "Closed".into(),
            }],
        ),
        EventType::Updated => (
            None,
            None,
            3,
            vec![Change {
                path: "/expectedDeliveryDate".into(),
                from: "2026-11-30".into(),
                to: "2026-12-04".into(),
            }],
        ),
        // As a real removal: `from` is the last status seen.
        EventType::Removed => (Some("Current"), None, 5, vec![]),
        // A timer's event is about the order as it stands: `to` is its
        // status, nothing changed.
        EventType::DueSoon | EventType::Overdue | EventType::Stalled => {
            (None, Some("Current"), 3, vec![])
        }
        EventType::SourceFailing
        | EventType::SourceRecovered
        | EventType::CredentialsExpiring
        | EventType::Digest => (None, None, 0, vec![]),
    };
    let source = "tracking";
    let order_id = "123456";
    let order = serde_json::json!({
        "id": order_id,
        "status": to.unwrap_or("Current"),
        "customerReference": "PO-2026-0042",
        "product": "Business VPN Galerie",
        "site": { "city": "Rennes", "country": "FR" },
        "expectedDeliveryDate": "2026-12-04",
    });
    let (due, since) = match kind {
        EventType::DueSoon | EventType::Overdue => (Some("2026-12-04T00:00:00Z"), None),
        EventType::Stalled => (None, Some("2026-11-08T08:00:00Z")),
        _ => (None, None),
    };
    let id = match due.or(since) {
        Some(about) => Event::derive_timer_id(source, order_id, kind, about),
        None => Event::derive_id(source, order_id, kind, revision, from, to, &changes),
    };
    Event {
        kind,
        timestamp: "2026-11-22T08:00:00Z".into(),
        data: EventData {
            id,
            source: source.into(),
            order_id: order_id.into(),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            closed: to == Some("Closed"),
            revision,
            changes,
            order,
            due: due.map(str::to_owned),
            since: since.map(str::to_owned),
            ..EventData::default()
        },
    }
}

/// A realistic source event: a source failing for a quarter of an hour
/// with Orange unavailable, recovering, or its API key soon expiring.
fn sample_source_event(kind: EventType) -> Event {
    let since = "2026-11-22T07:45:00Z";
    let fields = match kind {
        EventType::SourceFailing => SourceFields {
            since: Some(since.into()),
            failures: Some(12),
            error: Some(
                "Orange answered with a server error (HTTP 503, code 5, request id 0b7e5c1d-52a4-4f0e-9d3c-6f2a8e1b4c7d): The service is temporarily unavailable"
                    .into(),
            ),
            expires: None,
        },
        EventType::SourceRecovered => SourceFields {
            since: Some(since.into()),
            failures: Some(14),
            ..SourceFields::default()
        },
        _ => SourceFields {
            expires: Some("2026-12-15".into()),
            ..SourceFields::default()
        },
    };
    let about = fields.expires.as_deref().unwrap_or(since).to_owned();
    Event::about_source(
        kind,
        "tracking",
        &about,
        "2026-11-22T08:00:00Z".into(),
        fields,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Env;
    use std::path::Path;

    fn config(sinks: &str) -> Config {
        let text = format!(
            "sources: [{{name: s, api: order-tracking, base_url: \"http://127.0.0.1:1\", client_id: a, client_secret: b, api_key: c}}]\nsinks:\n{sinks}"
        );
        Config::parse(&text, Path::new("test.yaml"), &Env::<String, String>::new())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn defaults() -> Templates {
        let c = config(
            "  - {name: chat, type: slack, url: \"https://hooks.example.com/services/T/B/X\"}\n  \
               - {name: out, type: console}\n  \
               - {name: mail, type: email, smtp: {host: localhost, tls: none}, from: a@example.com, to: [b@example.com]}\n",
        );
        Templates::compile(&c).unwrap_or_else(|p| panic!("{p:?}"))
    }

    #[test]
    fn defaults_render_every_type() {
        let t = defaults();
        for kind in EventType::ALL.into_iter().filter(|k| k.is_about_an_order()) {
            let e = sample_event(kind);
            let slack = t.render_slack("chat", &e).unwrap();
            let line = t.render_console("out", &e).unwrap();
            let mail = t.render_email("mail", &e).unwrap();
            assert!(slack.contains("*123456*"), "{slack}");
            assert!(!line.contains('\n'), "{line}");
            assert!(
                mail.subject.starts_with("[orderwatch] 123456"),
                "{}",
                mail.subject
            );
            assert!(
                mail.text.contains("Order 123456 (source tracking)"),
                "{}",
                mail.text
            );
            assert!(
                mail.html.contains("<strong>123456</strong>"),
                "{}",
                mail.html
            );
        }
        let e = sample_event(EventType::StatusChanged);
        assert_eq!(
            t.render_slack("chat", &e).unwrap(),
            ":white_check_mark: Order *123456* (tracking) is now *Closed* (was Current)"
        );
        assert_eq!(
            t.render_console("out", &e).unwrap(),
            "2026-11-22T08:00:00Z tracking 123456 order.status_changed Current → Closed"
        );
        assert_eq!(
            t.render_email("mail", &e).unwrap().subject,
            "[orderwatch] 123456 is now Closed"
        );
        let updated = t
            .render_console("out", &sample_event(EventType::Updated))
            .unwrap();
        assert_eq!(
            updated,
            "2026-11-22T08:00:00Z tracking 123456 order.updated /expectedDeliveryDate: 2026-11-30 → 2026-12-04"
        );
    }

    #[test]
    fn source_events_have_readable_defaults_everywhere() {
        let t = defaults();
        let failing = sample_event(EventType::SourceFailing);
        let error = failing.data.error.clone().unwrap();
        assert_eq!(
            t.render_slack("chat", &failing).unwrap(),
            format!(
                ":rotating_light: Source *tracking* is failing since 2026-11-22T07:45:00Z (12 failed cycles): {error}"
            )
        );
        assert_eq!(
            t.render_console("out", &failing).unwrap(),
            format!(
                "2026-11-22T08:00:00Z tracking source.failing failing since 2026-11-22T07:45:00Z (12 failed cycles): {error}"
            )
        );
        let mail = t.render_email("mail", &failing).unwrap();
        assert_eq!(mail.subject, "[orderwatch] source tracking is failing");
        assert!(
            mail.text.starts_with(&format!(
                "Source tracking is failing: every poll since 2026-11-22T07:45:00Z has failed (12 failed cycles so far).\n\nLast error: {error}\n"
            )),
            "{}",
            mail.text
        );
        assert!(
            mail.html.contains("<strong>tracking</strong> is failing"),
            "{}",
            mail.html
        );

        let recovered = sample_event(EventType::SourceRecovered);
        assert_eq!(
            t.render_console("out", &recovered).unwrap(),
            "2026-11-22T08:00:00Z tracking source.recovered recovered (failing since 2026-11-22T07:45:00Z, 14 failed cycles)"
        );
        let mail = t.render_email("mail", &recovered).unwrap();
        assert_eq!(mail.subject, "[orderwatch] source tracking has recovered");
        assert!(mail.text.starts_with("Source tracking has recovered: its polls work again (failing since 2026-11-22T07:45:00Z, 14 failed cycles).\n"), "{}", mail.text);

        let expiring = sample_event(EventType::CredentialsExpiring);
        assert_eq!(
            t.render_slack("chat", &expiring).unwrap(),
            ":key: The API key of source *tracking* expires on *2026-12-15*: ask Orange for a new one, then update `api_key` and `api_key_expires`"
        );
        let mail = t.render_email("mail", &expiring).unwrap();
        assert_eq!(
            mail.subject,
            "[orderwatch] the API key of source tracking expires on 2026-12-15"
        );
        assert!(!mail.text.contains("Revision"), "{}", mail.text);
    }

    #[test]
    fn order_templates_render_source_events_with_the_order_fields_empty() {
        let c = config(
            "  - {name: out, type: console, template: \"{{ type }} [{{ order_id }}][{{ order.product }}][{{ order.site.city }}][{{ changes|length }}][{% for c in changes %}x{% endfor %}][{{ failures }}]\"}\n",
        );
        let t = Templates::compile(&c).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(
            t.render_console("out", &sample_event(EventType::SourceFailing))
                .unwrap(),
            "source.failing [][][][0][][12]"
        );
    }

    #[test]
    fn text_body_reads_well() {
        let mail = defaults()
            .render_email("mail", &sample_event(EventType::StatusChanged))
            .unwrap();
        let expected_start = "Order 123456 (source tracking) is now Closed (was Current).\n\nChanges:\n  /status: Current → Closed\n\nEvent:     order.status_changed evt_";
        assert!(mail.text.starts_with(expected_start), "{}", mail.text);
    }

    #[test]
    fn values_are_escaped_for_their_medium_and_template_text_is_not() {
        let c = config(
            "  - {name: chat, type: slack, url: \"https://h.example/x\", template: \"<https://portal/{{ order_id }}|{{ order.product }}>\"}\n  \
               - {name: mail, type: email, smtp: {host: localhost, tls: none}, from: a@example.com, to: [b@example.com], subject: \"{{ order.product }}\"}\n",
        );
        let t = Templates::compile(&c).unwrap();
        let mut e = sample_event(EventType::StatusChanged);
        e.data.order["product"] = "VPN <b>&\r\nBcc: x@evil".into();
        e.data.order_id = "1<2".into();
        assert_eq!(
            t.render_slack("chat", &e).unwrap(),
            "<https://portal/1&lt;2|VPN &lt;b&gt;&amp;\r\nBcc: x@evil>"
        );
        let mail = t.render_email("mail", &e).unwrap();
        assert_eq!(mail.subject, "VPN <b>& Bcc: x@evil");
        assert!(
            mail.html.contains("<strong>1&lt;2</strong>"),
            "{}",
            mail.html
        );
    }

    #[test]
    fn missing_fields_and_nulls_render_empty() {
        let c = config(
            "  - {name: out, type: console, template: \"[{{ from }}][{{ order.nothing }}][{{ order.gone }}]\"}\n",
        );
        let t = Templates::compile(&c).unwrap();
        let mut e = sample_event(EventType::Created);
        e.data.order["gone"] = serde_json::Value::Null;
        assert_eq!(t.render_console("out", &e).unwrap(), "[][][]");
    }

    #[test]
    fn broken_and_failing_templates_are_config_problems_with_their_key_and_line() {
        let text = "sources: [{name: s, api: order-tracking, base_url: \"http://127.0.0.1:1\", client_id: a, client_secret: b, api_key: c}]\nsinks:\n  \
               - {name: w, type: webhook, url: \"https://h.example/x\"}\n  \
               - {name: chat, type: slack, url: \"https://h.example/x\", template: \"{{ order_id \"}\n  \
               - {name: mail, type: email, smtp: {host: localhost, tls: none}, from: a@example.com, to: [b@example.com], body: \"{{ order_id | nosuchfilter }}\"}\n";
        let problems = Config::parse(text, Path::new("test.yaml"), &Env::<String, String>::new())
            .unwrap_err()
            .problems;
        let found: Vec<_> = problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(
            found,
            [("sinks[1].template", Some(4)), ("sinks[2].body", Some(5))],
            "{problems:?}"
        );
        assert!(
            problems[0].message.starts_with("not a valid template"),
            "{problems:?}"
        );
    }

    #[test]
    fn endless_work_and_huge_output_are_problems_not_hangs() {
        // The config reader test-renders each template, so the problems
        // come from it, before any sink is built.
        let text = "sources: [{name: s, api: order-tracking, base_url: \"http://127.0.0.1:1\", client_id: a, client_secret: b, api_key: c}]\nsinks:\n  \
               - {name: spin, type: console, template: \"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\"}\n  \
               - {name: big, type: console, template: \"{% for i in range(100000) %}{{ order.product }}{{ order.product }}{% endfor %}\"}\n";
        let problems = Config::parse(text, Path::new("test.yaml"), &Env::<String, String>::new())
            .unwrap_err()
            .problems;
        let messages: Vec<_> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].starts_with("sinks[0].template: fails on a sample")
                && messages[0].contains("too much work"),
            "{messages:?}"
        );
        assert!(
            messages[1].starts_with("sinks[1].template: fails on a sample")
                && messages[1].contains("larger than 1024 KiB"),
            "{messages:?}"
        );
    }
}
