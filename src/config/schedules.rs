//! The two keys that say *when* rather than *where*: a sink's `digest:`
//! and a route's `quiet_hours:` (README.md "Digests", "Quiet hours").
//! Times of day and time zones are checked here, so nothing later can
//! meet a time zone it does not know.

use super::decode::{Decoder, Fields, opt};
use super::yaml::Node;
use crate::digest::DigestSchedule;
use crate::route::QuietHours;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use std::time::Duration;

const DIGEST: &[&str] = &["every", "at", "timezone"];
const QUIET_HOURS: &[&str] = &["from", "to", "timezone", "days"];

pub(super) fn digest(d: &mut Decoder, node: &Node, path: &str) -> Option<DigestSchedule> {
    let f = d.map(node, path, DIGEST)?;
    let every = d.required(&f, "every").and_then(|n| {
        let p = f.path("every");
        let every = d.duration(n, &p, Duration::from_secs(1))?;
        match DigestSchedule::check_every(every) {
            Ok(()) => Some(every),
            Err(why) => {
                d.problem(&p, n.line, why);
                None
            }
        }
    });
    let at = opt!(d, f, "at", Time::midnight(), |n, p| time_of_day(d, n, &p));
    let (timezone, name) = timezone(d, &f)?;
    Some(DigestSchedule::new(every?, at?, timezone, &name))
}

pub(super) fn quiet_hours(d: &mut Decoder, node: &Node, path: &str) -> Option<QuietHours> {
    let f = d.map(node, path, QUIET_HOURS)?;
    let from = opt!(d, f, "from", None, |n, p| time_of_day(d, n, &p).map(Some));
    let to = opt!(d, f, "to", None, |n, p| time_of_day(d, n, &p).map(Some));
    let days = opt!(d, f, "days", Vec::new(), |n, p| weekdays(d, n, &p));
    let (timezone, _) = timezone(d, &f)?;
    let (from, to, days) = (from?, to?, days?);
    let window = match (from, to) {
        (Some(from), Some(to)) if from == to => {
            d.problem(
                f.path("to"),
                f.line,
                "must differ from `from` (for whole days, list them in `days`)",
            );
            return None;
        }
        (Some(from), Some(to)) => Some((from, to)),
        (None, None) if !days.is_empty() => None,
        (None, None) => {
            d.problem(path, f.line, "needs `from` and `to`, or `days`, or both");
            return None;
        }
        (Some(_), None) | (None, Some(_)) => {
            let missing = if from.is_none() { "from" } else { "to" };
            d.problem(
                f.path(missing),
                f.line,
                "`from` and `to` go together: the quiet time begins at `from` and ends at `to`",
            );
            return None;
        }
    };
    if days.len() == 7 {
        d.problem(
            f.path("days"),
            f.line,
            "lists every day of the week: nothing this route matches would ever be delivered",
        );
        return None;
    }
    Some(QuietHours {
        window,
        days,
        timezone,
    })
}

/// `timezone:` (an IANA name, default UTC), with its name.
fn timezone(d: &mut Decoder, f: &Fields) -> Option<(TimeZone, String)> {
    let Some(n) = f.get("timezone") else {
        return Some((TimeZone::UTC, "UTC".to_owned()));
    };
    let p = f.path("timezone");
    let name = d.nonempty_string(n, &p)?;
    match TimeZone::get(name.trim()) {
        Ok(tz) => Some((tz, name.trim().to_owned())),
        Err(_) => {
            d.problem(
                &p,
                n.line,
                format!("unknown time zone `{name}` (an IANA name, such as Europe/Paris or UTC)"),
            );
            None
        }
    }
}

/// `"HH:MM"` or `"HH:MM:SS"`, 24-hour.
fn time_of_day(d: &mut Decoder, node: &Node, path: &str) -> Option<Time> {
    let text = d.string(node, path)?;
    let parts: Vec<&str> = text.trim().split(':').collect();
    let number = |s: &str, max: i8| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i8>().ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let parsed = match parts.as_slice() {
        [h, m] => number(h, 23).zip(number(m, 59)).map(|(h, m)| (h, m, 0)),
        [h, m, s] => number(h, 23)
            .zip(number(m, 59))
            .zip(number(s, 59))
            .map(|((h, m), s)| (h, m, s)),
        _ => None,
    };
    match parsed.and_then(|(h, m, s)| Time::new(h, m, s, 0).ok()) {
        Some(t) => Some(t),
        None => {
            d.problem(
                path,
                node.line,
                format!(
                    "`{text}` is not a time of day: write it as \"HH:MM\", 24-hour, e.g. \"07:30\""
                ),
            );
            None
        }
    }
}

fn weekdays(d: &mut Decoder, node: &Node, path: &str) -> Option<Vec<Weekday>> {
    const NAMES: [(&str, Weekday); 7] = [
        ("mon", Weekday::Monday),
        ("tue", Weekday::Tuesday),
        ("wed", Weekday::Wednesday),
        ("thu", Weekday::Thursday),
        ("fri", Weekday::Friday),
        ("sat", Weekday::Saturday),
        ("sun", Weekday::Sunday),
    ];
    let names = d.strings(node, path)?;
    let mut out = Vec::new();
    let mut ok = true;
    for name in names {
        let key = name.trim().to_ascii_lowercase();
        match NAMES.iter().find(|(short, _)| key == *short) {
            Some((_, day)) if !out.contains(day) => out.push(*day),
            Some(_) => {}
            None => {
                d.problem(
                    path,
                    node.line,
                    format!("unknown day `{name}` (one of: mon, tue, wed, thu, fri, sat, sun)"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::collections::HashMap;
    use std::path::Path;

    /// The problems of a config whose one sink and one route take `digest`
    /// and `quiet_hours` as given: (key path, message).
    fn problems(digest: &str, quiet_hours: &str) -> Vec<(String, String)> {
        let yaml = format!(
            "sources: [{{name: t, api: order-tracking, base_url: 'http://127.0.0.1:1', client_id: a, client_secret: b, api_key: c}}]\n\
             sinks: [{{name: out, type: console, digest: {digest}}}]\n\
             routes: [{{sinks: [out], quiet_hours: {quiet_hours}}}]\n"
        );
        match Config::parse(&yaml, Path::new("t.yaml"), &HashMap::new()) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| (p.path, p.message))
                .collect(),
        }
    }

    const GOOD_DIGEST: &str = "{every: 24h, at: '08:00', timezone: Europe/Paris}";
    const GOOD_QUIET: &str =
        "{from: '20:00', to: '07:00', timezone: Europe/Paris, days: [sat, sun]}";

    #[test]
    fn good_digests_and_quiet_hours_parse() {
        assert_eq!(problems(GOOD_DIGEST, GOOD_QUIET), []);
        assert_eq!(problems("{every: 5s}", "{days: [sat]}"), []);
        assert_eq!(
            problems("{every: 7d}", "{from: '12:00:30', to: '13:00'}"),
            []
        );
    }

    #[test]
    fn every_problem_names_its_key() {
        let got = problems(
            "{every: 7h, at: '25:00', timezone: Europe/Pariss}",
            "{from: '20:00', timezone: Mars/Olympus, days: [sat, caturday]}",
        );
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        for path in [
            "sinks[0].digest.every",
            "sinks[0].digest.at",
            "sinks[0].digest.timezone",
            "routes[0].quiet_hours.timezone",
            "routes[0].quiet_hours.days",
        ] {
            assert!(paths.contains(&path), "{path} missing from {got:?}");
        }
        let said = |path: &str| {
            got.iter()
                .find(|(p, _)| p == path)
                .map(|(_, m)| m.clone())
                .unwrap_or_default()
        };
        assert!(said("sinks[0].digest.every").contains("divide a day"));
        assert!(said("sinks[0].digest.timezone").contains("Europe/Pariss"));
        assert!(said("routes[0].quiet_hours.days").contains("caturday"));
        // `to` without `from`, and a window that never ends.
        let lone = problems(GOOD_DIGEST, "{to: '07:00'}");
        assert_eq!(lone[0].0, "routes[0].quiet_hours.from", "{lone:?}");
        let always = problems(GOOD_DIGEST, "{days: [mon, tue, wed, thu, fri, sat, sun]}");
        assert!(
            always[0].1.contains("would ever be delivered"),
            "{always:?}"
        );
        let empty = problems(GOOD_DIGEST, "{from: '07:00', to: '07:00'}");
        assert_eq!(empty[0].0, "routes[0].quiet_hours.to", "{empty:?}");
        let unknown = problems("{every: 1h, when: '08:00'}", GOOD_QUIET);
        assert!(unknown[0].0.starts_with("sinks[0].digest"), "{unknown:?}");
        let missing = problems("{at: '08:00'}", GOOD_QUIET);
        assert_eq!(missing[0].0, "sinks[0].digest.every", "{missing:?}");
    }
}
