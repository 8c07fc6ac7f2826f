//! Source health: after each cycle, what the source's failures and its API
//! key's expiry call for telling (README.md "Source health").
//!
//! - `source.failing`: every cycle has failed for `alert_after`, and at
//!   least two cycles, counted from the first failed cycle after the last
//!   good one (`since`); told once per failing episode.
//! - `source.recovered`: the first good cycle after `source.failing` was
//!   told; a failing episode that ended before it was told ends quietly.
//! - `source.credentials_expiring`: `api_key_expires` is less than
//!   [`EXPIRY_WARNING`] away; told once per date.
//!
//! The counting is durable ([`SourceHealth`] in the store, committed with
//! the event it leads to), so "once" holds across restarts, and each
//! `orderwatch once` counts as one cycle: a single `once` never tells
//! `source.failing` (one cycle is not two), but a `once` run from cron
//! every few minutes does once the failures it adds up to cross the
//! threshold. Ids come from the source, the type and `since` (or the
//! expiry date), so a crash never tells one twice under two ids.
//!
//! [`assess`] is pure: the poller reads the record, calls it, and commits
//! what it returns.

use crate::config::SourceConfig;
use crate::event::{Event, EventType, SourceFields};
use crate::store::SourceHealth;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long before `api_key_expires` the warning goes out.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);
/// Failed cycles in a row before `source.failing`, whatever `alert_after`.
const MIN_FAILED_CYCLES: u64 = 2;
/// The longest error text an event carries: the message of a hostile or
/// broken API can be long, and a chat message or a mail subject cannot.
const MAX_ERROR_CHARS: usize = 1000;

/// How one cycle ended, as source health counts it.
pub enum CycleEnd<'a> {
    Good,
    /// Failed, with the plain error (Orange's request id included).
    Failed(&'a str),
}

/// What a cycle's end leads to: the record to store (when it changed) and
/// the events to commit with it.
#[derive(Debug, Default, PartialEq)]
pub struct Assessment {
    pub record: Option<SourceHealth>,
    pub events: Vec<Event>,
}

/// The source's health after a cycle that started at `started` and ended
/// at `now`, from the record the one before left.
pub fn assess(
    cfg: &SourceConfig,
    previous: &SourceHealth,
    end: CycleEnd<'_>,
    started: SystemTime,
    now: SystemTime,
) -> Assessment {
    let mut next = previous.clone();
    let mut events = Vec::new();
    let timestamp = rfc3339(now);
    // `source.failing` and `source.recovered` of the episode since `since_ms`.
    let episode = |kind, since_ms, failures, error| {
        let since = rfc3339(from_ms(since_ms));
        Event::about_source(
            kind,
            &cfg.name,
            &since,
            timestamp.clone(),
            SourceFields {
                since: Some(since.clone()),
                failures: Some(failures),
                error,
                expires: None,
            },
        )
    };
    match end {
        CycleEnd::Failed(error) => {
            let since_ms = *next.failing_since_ms.get_or_insert(unix_ms(started));
            next.failures += 1;
            let failing_for = Duration::from_millis(unix_ms(now).saturating_sub(since_ms));
            if !next.failing_told
                && next.failures >= MIN_FAILED_CYCLES
                && failing_for >= cfg.alert_after
            {
                events.push(episode(
                    EventType::SourceFailing,
                    since_ms,
                    next.failures,
                    Some(plain_error(error)),
                ));
                next.failing_told = true;
            }
        }
        CycleEnd::Good => {
            if let Some(since_ms) = next.failing_since_ms.take() {
                if next.failing_told {
                    events.push(episode(
                        EventType::SourceRecovered,
                        since_ms,
                        next.failures,
                        None,
                    ));
                }
                next.failures = 0;
                next.failing_told = false;
            }
        }
    }
    if let Some(expiry) = &cfg.api_key_expires
        && next.expiry_told.as_deref() != Some(expiry.date.as_str())
        && now + EXPIRY_WARNING >= expiry.at
    {
        events.push(Event::about_source(
            EventType::CredentialsExpiring,
            &cfg.name,
            &expiry.date,
            timestamp,
            SourceFields {
                expires: Some(expiry.date.clone()),
                ..SourceFields::default()
            },
        ));
        next.expiry_told = Some(expiry.date.clone());
    }
    Assessment {
        record: (next != *previous).then_some(next),
        events,
    }
}

/// The error as an event carries it: no secret the answer echoed, and
/// bounded.
fn plain_error(error: &str) -> String {
    let error = crate::secret::redact(error);
    if error.chars().count() <= MAX_ERROR_CHARS {
        return error;
    }
    let mut short: String = error.chars().take(MAX_ERROR_CHARS - 1).collect();
    short.push('…');
    short
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, KeyExpiry};
    use std::collections::HashMap;
    use std::path::Path;

    fn source(extra: &str) -> SourceConfig {
        let yaml = format!(
            "sources: [{{name: t, api: order-tracking, base_url: 'http://127.0.0.1:1', client_id: a, client_secret: b, api_key: c{extra}}}]\nsinks: [{{name: out, type: console}}]\n"
        );
        let config = Config::parse(&yaml, Path::new("t.yaml"), &HashMap::new()).unwrap();
        config.sources[0].clone()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    /// Cycles a minute apart, from `record`: `true` for a good one. Returns
    /// the record after them and every event, in order.
    fn cycles(
        cfg: &SourceConfig,
        mut record: SourceHealth,
        from: u64,
        good: &[bool],
    ) -> (SourceHealth, Vec<Event>) {
        let mut events = Vec::new();
        for (i, ok) in good.iter().enumerate() {
            let start = from + 60 * i as u64;
            let end = if *ok {
                CycleEnd::Good
            } else {
                CycleEnd::Failed("Orange answered with a server error (HTTP 503, request id r-7)")
            };
            let a = assess(cfg, &record, end, at(start), at(start + 5));
            if let Some(r) = a.record {
                record = r;
            }
            events.extend(a.events);
        }
        (record, events)
    }

    #[test]
    fn failing_is_told_once_after_alert_after_then_recovered_once() {
        let cfg = source(", alert_after: 3m");
        let (record, events) = cycles(&cfg, SourceHealth::default(), 0, &[false; 8]);
        assert_eq!(events.len(), 1, "{events:?}");
        let failing = &events[0];
        assert_eq!(failing.kind, EventType::SourceFailing);
        // The first failed cycle began at 0; the one ending at 185 s is the
        // first to have failed for 3 minutes (its fourth).
        assert_eq!(failing.data.since.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(failing.data.failures, Some(4));
        assert_eq!(failing.timestamp, "2027-01-15T08:03:05Z");
        assert!(
            failing
                .data
                .error
                .as_deref()
                .is_some_and(|e| e.contains("request id r-7")),
            "{failing:?}"
        );
        assert_eq!(record.failures, 8);

        let (record, events) = cycles(&cfg, record, 480, &[true, true, false]);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventType::SourceRecovered);
        assert_eq!(events[0].data.since, failing.data.since);
        assert_eq!(events[0].data.failures, Some(8));
        assert_eq!(record.failures, 1, "a new episode began");
        assert!(!record.failing_told);
    }

    #[test]
    fn one_failed_cycle_is_never_enough_and_a_short_episode_ends_quietly() {
        let cfg = source(", alert_after: 0s");
        let (record, events) = cycles(&cfg, SourceHealth::default(), 0, &[false]);
        assert!(events.is_empty(), "{events:?}");
        let (_, events) = cycles(&cfg, record, 60, &[true, true]);
        assert!(events.is_empty(), "{events:?}");

        let slow = source("");
        let (record, events) = cycles(&slow, SourceHealth::default(), 0, &[false; 10]);
        assert!(events.is_empty(), "10 minutes is under the default 15");
        let (_, events) = cycles(&slow, record, 600, &[true]);
        assert!(events.is_empty(), "nothing was told, so no recovery");
    }

    #[test]
    fn the_same_episode_gets_the_same_id_and_a_good_cycle_writes_nothing_when_well() {
        let cfg = source(", alert_after: 1m");
        let (_, first) = cycles(&cfg, SourceHealth::default(), 0, &[false, false]);
        let (_, again) = cycles(&cfg, SourceHealth::default(), 0, &[false, false, false]);
        assert_eq!(first[0].data.id, again[0].data.id);
        let well = assess(&cfg, &SourceHealth::default(), CycleEnd::Good, at(0), at(1));
        assert_eq!(well, Assessment::default());
    }

    #[test]
    fn the_key_expiry_is_told_once_per_date_within_thirty_days() {
        let mut cfg = source(", api_key_expires: 2027-02-20");
        let (_, events) = cycles(&cfg, SourceHealth::default(), 0, &[true]);
        assert!(events.is_empty(), "36 days ahead: {events:?}");
        let days = 6 * 24 * 3600;
        let (record, events) = cycles(&cfg, SourceHealth::default(), days, &[true, false, true]);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventType::CredentialsExpiring);
        assert_eq!(events[0].data.expires.as_deref(), Some("2027-02-20"));
        // A renewed key with a new date is told again when its time comes.
        cfg.api_key_expires = KeyExpiry::parse("2027-02-21");
        let (_, events) = cycles(&cfg, record, days + 24 * 3600, &[true]);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_ne!(
            events[0].data.id,
            Event::derive_source_id("t", EventType::CredentialsExpiring, "2027-02-20")
        );
    }

    #[test]
    fn long_errors_are_cut() {
        let cfg = source(", alert_after: 0s");
        let long = "x".repeat(5000);
        let mut record = SourceHealth::default();
        let mut told = Vec::new();
        for i in 0..2 {
            let a = assess(&cfg, &record, CycleEnd::Failed(&long), at(i), at(i));
            record = a.record.unwrap_or(record);
            told.extend(a.events);
        }
        let error = told[0].data.error.clone().unwrap_or_default();
        assert_eq!(error.chars().count(), MAX_ERROR_CHARS);
    }

    #[test]
    fn expiry_dates_must_be_real_days() {
        assert!(KeyExpiry::parse("2028-06-30").is_some());
        for bad in [
            "2028-02-30",
            "2028-6-30",
            "30/06/2028",
            "2028-06-30T00:00:00Z",
            "",
        ] {
            assert!(KeyExpiry::parse(bad).is_none(), "{bad}");
        }
    }
}
