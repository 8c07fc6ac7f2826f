//! Events that come with time rather than with a change: `order.due_soon`
//! and `order.overdue` from each order's due date (`due:`), and
//! `order.stalled` when an open order's status has lasted `stalled_after`.
//!
//! The poller reads each order's times ([`SourceTimers::times_of`]) as it
//! commits the order, so the store keeps an index by fire time in the same
//! transaction as the snapshot (`store/timers.rs`). The timer's loop then
//! reads only what is due ([`Timer::evaluate`]): at least every
//! [`EVERY`], after every poll, and at start-up (what came due while
//! orderwatch was down is told then). Each event goes through the outbox
//! like any other, committed with the removal of its timer; its id comes
//! from the order, the type and the date or status episode it is about.
//!
//! The index remembers the settings it was built with; when a source's
//! `due`, `stalled_after` or `timezone` differ (or the index is absent: a
//! store from before timers), [`Timer::prepare`] builds that source's index
//! again with one scan of its snapshots (README "Due dates and stalled
//! orders" says what a rebuild announces).

mod due_date;

use crate::config::{Config, SourceConfig};
use crate::diff::pointer;
use crate::event::{Event, EventData, EventType, now_rfc3339};
use crate::route::Router;
use crate::shutdown::Shutdown;
use crate::store::{
    Commit, DueTimer, IndexBuild, IndexMode, NewEvent, OrderTimes, Snapshot, Store, StoreError,
    TimerKind, TimerSettings, TimerUpdate, now_ms,
};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::Notify;
use tracing::{info, warn};

/// The longest the timer waits between two evaluations.
pub const EVERY: Duration = Duration::from_secs(30);
/// The pause after an evaluation that failed.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);
/// Timers fired in one commit.
const BATCH: usize = 256;
/// Rounds of one evaluation whose commit met a poll that moved an order's
/// dates meanwhile, before it leaves the rest to the next evaluation.
const MAX_MOVED_ROUNDS: u32 = 8;

/// What one source's config says of timers.
#[derive(Debug)]
pub struct SourceTimers {
    source: String,
    due_field: Option<String>,
    zone: jiff::tz::TimeZone,
    closed_statuses: Vec<String>,
    settings: TimerSettings,
    /// The settings as the index records them.
    fingerprint: String,
    /// A due date that cannot be read is warned about once per source.
    warned: AtomicBool,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SourceTimers {
    /// `None` for a source with neither `due` nor `stalled_after`.
    pub fn from_config(cfg: &SourceConfig) -> Option<SourceTimers> {
        if cfg.due.is_none() && cfg.stalled_after.is_none() {
            return None;
        }
        let settings = TimerSettings {
            warn_before_ms: cfg.due.as_ref().map(|d| millis(d.warn_before)),
            stalled_after_ms: cfg.stalled_after.map(millis),
        };
        let fingerprint = serde_json::json!({
            "due_field": cfg.due.as_ref().map(|d| &d.field),
            "warn_before_ms": settings.warn_before_ms,
            "stalled_after_ms": settings.stalled_after_ms,
            "timezone": cfg.timezone.name,
        })
        .to_string();
        Some(SourceTimers {
            source: cfg.name.clone(),
            due_field: cfg.due.as_ref().map(|d| d.field.clone()),
            zone: cfg.timezone.zone.clone(),
            closed_statuses: cfg.closed_statuses.clone(),
            settings,
            fingerprint,
            warned: AtomicBool::new(false),
        })
    }

    /// An empty timer part of a commit, with this source's settings.
    pub fn update(&self) -> TimerUpdate {
        TimerUpdate {
            settings: self.settings,
            orders: Vec::new(),
        }
    }

    /// The order's due date, status and whether it is open, as its snapshot
    /// holds them. A due date that is there but not a date gives the order
    /// no due timer, and a warning (once per source).
    pub fn times_of(&self, snapshot: &Snapshot) -> OrderTimes {
        let open = snapshot
            .status
            .as_ref()
            .is_none_or(|s| !self.closed_statuses.contains(s));
        OrderTimes {
            due: self.due_of(snapshot),
            status: snapshot.status.clone(),
            open,
            since_hint_ms: None,
        }
    }

    fn due_of(&self, snapshot: &Snapshot) -> Option<crate::store::DueDate> {
        let field = self.due_field.as_deref()?;
        let raw: &RawValue = serde_json::from_str(&snapshot.order).ok()?;
        let value = pointer::find(raw, field)?;
        if value.get() == "null" {
            return None;
        }
        let read = serde_json::from_str::<String>(value.get())
            .ok()
            .and_then(|text| due_date::read(&text, &self.zone));
        if read.is_none() && !self.warned.swap(true, Ordering::Relaxed) {
            // The value is order data, not a secret; cut so a huge one
            // cannot flood the log.
            let shown: String = value.get().chars().take(80).collect();
            warn!(
                source = %self.source,
                field = %field,
                "an order's due date at {field} is not a date ({shown}): write RFC 3339 times or YYYY-MM-DD dates; orders whose due date cannot be read get no order.due_soon or order.overdue (said once)"
            );
        }
        read
    }

    /// As [`times_of`](Self::times_of), with the snapshot's last change as
    /// when its status began: what a rebuild knows of an order it never
    /// followed.
    fn times_for_rebuild(&self, snapshot: &Snapshot) -> OrderTimes {
        let mut t = self.times_of(snapshot);
        t.since_hint_ms = humantime::parse_rfc3339(&snapshot.changed_at)
            .ok()
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map(millis);
        t
    }
}

/// What one evaluation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Events committed, by type.
    pub told: BTreeMap<&'static str, u64>,
    /// Timers that came due and told nothing (`due_soon` after the date
    /// itself: only `overdue` is told then).
    pub passed_over: u64,
    /// Sources whose due timers this orderwatch may not tell: another
    /// replica on the same postgres store leads them, and tells them.
    pub followed: u64,
}

/// The timer of a run: its sources' settings (replaced on reload), the
/// store, and the routes its events take.
pub struct Timer {
    store: Store,
    router: Arc<Router>,
    sources: RwLock<HashMap<String, Arc<SourceTimers>>>,
    /// Woken after a commit with events, so delivery starts at once.
    outbox_ready: Arc<Notify>,
    /// Woken after every poll.
    polled: Arc<Notify>,
}

impl Timer {
    pub fn new(store: Store, router: Arc<Router>, outbox_ready: Arc<Notify>) -> Timer {
        Timer {
            store,
            router,
            sources: RwLock::new(HashMap::new()),
            outbox_ready,
            polled: Arc::new(Notify::new()),
        }
    }

    /// What a poller wakes after each cycle.
    pub fn polled(&self) -> Arc<Notify> {
        self.polled.clone()
    }

    /// Take the config's sources, and build again the index of each whose
    /// settings differ from those it was built with (or that has none);
    /// sources that left the config, or have no timers any more, lose
    /// theirs. One scan of the snapshots per source rebuilt.
    pub fn prepare(&self, config: &Config) -> Result<(), StoreError> {
        let now = now_ms();
        let mut sources = HashMap::new();
        for cfg in &config.sources {
            let timers = SourceTimers::from_config(cfg).map(Arc::new);
            let stored = self.store.timer_settings(&cfg.name)?;
            let wanted = timers.as_ref().map(|t| t.fingerprint.as_str());
            if stored.as_deref() != wanted {
                self.rebuild(&cfg.name, stored.as_deref(), timers.as_deref(), now)?;
            }
            if let Some(t) = timers {
                sources.insert(cfg.name.clone(), t);
            }
        }
        for name in self.store.timer_sources()? {
            if config.source(&name).is_none() {
                let stored = self.store.timer_settings(&name)?;
                self.rebuild(&name, stored.as_deref(), None, now)?;
            }
        }
        *self
            .sources
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = sources;
        Ok(())
    }

    fn rebuild(
        &self,
        source: &str,
        stored: Option<&str>,
        timers: Option<&SourceTimers>,
        now: u64,
    ) -> Result<(), StoreError> {
        let old: Option<serde_json::Value> = stored.and_then(|s| serde_json::from_str(s).ok());
        let old_has = |key: &str| old.as_ref().is_some_and(|o| !o[key].is_null());
        let same =
            |key: &str, new: &serde_json::Value| old.as_ref().is_some_and(|o| o[key] == *new);
        let mode = match timers {
            Some(t) => {
                let new: serde_json::Value =
                    serde_json::from_str(&t.fingerprint).unwrap_or_default();
                IndexMode::Rebuild {
                    due_continues: old_has("due_field")
                        && same("due_field", &new["due_field"])
                        && same("timezone", &new["timezone"]),
                    stalled_continues: old_has("stalled_after_ms"),
                }
            }
            None => IndexMode::Rebuild {
                due_continues: false,
                stalled_continues: false,
            },
        };
        // A source never polled has nothing to index: no news to log.
        if self.store.has_baseline(source)? {
            info!(source = %source, "building the source's timer index (due dates, stalled orders) from its snapshots: its settings changed, or it had none");
        }
        let settings = timers.map(|t| t.settings).unwrap_or_default();
        let times = |s: &Snapshot| timers.map(|t| t.times_for_rebuild(s));
        let build = IndexBuild {
            fingerprint: timers.map(|t| t.fingerprint.as_str()),
            settings,
            mode,
            times: &times,
        };
        self.store.rebuild_timers(source, &build, now)
    }

    fn source(&self, name: &str) -> Option<Arc<SourceTimers>> {
        self.sources
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }

    /// Tell every timer due at `now`: its event committed with its
    /// timer's removal (or its move, `due_soon` to `overdue`), one
    /// transaction per source and batch.
    pub fn evaluate(&self, now: u64) -> Result<Evaluation, StoreError> {
        let started = std::time::Instant::now();
        let result = self.evaluate_inner(now);
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(crate::metrics::TIMER_EVALUATIONS_TOTAL, "outcome" => outcome)
            .increment(1);
        metrics::histogram!(crate::metrics::TIMER_EVALUATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        result
    }

    fn evaluate_inner(&self, now: u64) -> Result<Evaluation, StoreError> {
        let mut done = Evaluation::default();
        let mut moved_rounds = 0;
        loop {
            let due = self.store.due_timers(now, BATCH)?;
            if due.is_empty() {
                break;
            }
            let mut by_source: BTreeMap<String, Vec<DueTimer>> = BTreeMap::new();
            for d in due {
                by_source.entry(d.source.clone()).or_default().push(d);
            }
            let mut progressed = false;
            for (source, timers) in by_source {
                let commit = self.commit_for(&source, timers, now, &mut done);
                match self.store.commit(&commit) {
                    Ok(()) => {
                        progressed = true;
                        // Made durable before it is said: a poll's commit
                        // lost in a crash is found again by the next poll,
                        // but a due_soon lost after its due date passed
                        // would be passed over, never told.
                        if !commit.events.is_empty() {
                            self.store.flush()?;
                        }
                        self.count(&commit, &mut done);
                    }
                    Err(StoreError::TimerMoved) => {}
                    Err(StoreError::Fenced { .. }) => done.followed += 1,
                    Err(e) => return Err(e),
                }
            }
            if !progressed {
                // What is left is another replica's to tell.
                if done.followed > 0 {
                    break;
                }
                moved_rounds += 1;
                if moved_rounds >= MAX_MOVED_ROUNDS {
                    break;
                }
            }
        }
        Ok(done)
    }

    fn commit_for(
        &self,
        source: &str,
        timers: Vec<DueTimer>,
        now: u64,
        done: &mut Evaluation,
    ) -> Commit {
        let mut commit = Commit {
            source: source.to_owned(),
            ..Default::default()
        };
        let known = self.source(source).is_some();
        for t in timers {
            let passed_over = t.fired.kind == TimerKind::DueSoon
                && t.fired.record.due_ms.is_some_and(|due| now >= due);
            let event = match (&t.snapshot, known && !passed_over) {
                (Some(snapshot), true) => Some(timer_event(source, &t, snapshot)),
                _ => None,
            };
            match event {
                Some(e) => commit.events.push(self.new_event(&e)),
                None => done.passed_over += 1,
            }
            commit.fired.push(t.fired);
        }
        commit
    }

    fn new_event(&self, event: &Event) -> NewEvent {
        NewEvent {
            event_id: event.data.id.clone(),
            event_type: event.kind,
            order_id: event.data.order_id.clone(),
            // Serialising our own types cannot fail; an empty body would be
            // caught by every receiver, never silently accepted.
            json: serde_json::to_string(event).unwrap_or_default(),
            sinks: self.router.sinks_for(event),
        }
    }

    fn count(&self, commit: &Commit, done: &mut Evaluation) {
        for e in &commit.events {
            *done.told.entry(e.event_type.as_str()).or_default() += 1;
            metrics::counter!(crate::metrics::EVENTS_TOTAL, "source" => commit.source.clone(), "type" => e.event_type.as_str())
                .increment(1);
            info!(source = %commit.source, order_id = %e.order_id, event = %e.event_type, id = %e.event_id, sinks = e.sinks.len(), "timer fired");
        }
        if !commit.events.is_empty() {
            self.outbox_ready.notify_one();
        }
    }

    /// The timer's loop: an evaluation at once, then after every poll, when
    /// the next timer fires, and at least every [`EVERY`], until `stop`.
    pub async fn run(self: Arc<Self>, stop: Shutdown) {
        loop {
            // A timer left due (the store failing, or polls moving dates
            // faster than they fire) is tried again after a pause, not in
            // a spin.
            let floor = match self.evaluate(now_ms()) {
                // Timers due here but another replica's: its leader tells
                // them, this one looks again after a pause, not in a spin.
                Ok(e) if e.followed > 0 => RETRY_AFTER_ERROR,
                Ok(_) => Duration::from_millis(50),
                Err(e) => {
                    warn!(
                        "the timer could not tell what came due (due dates, stalled orders; tried again shortly): {e}"
                    );
                    RETRY_AFTER_ERROR
                }
            };
            let wait = match self.store.next_timer() {
                Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now_ms())).min(EVERY),
                _ => EVERY,
            }
            .max(floor);
            tokio::select! {
                biased;
                _ = stop.stopped() => return,
                _ = self.polled.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The event a timer tells: the order's fields as last read, and the date
/// or status episode it is about.
fn timer_event(source: &str, t: &DueTimer, snapshot: &Snapshot) -> Event {
    let kind = t.fired.kind.event_type();
    let r = &t.fired.record;
    let since = rfc3339_of(r.since_ms);
    let (due, since, about) = match kind {
        EventType::Stalled => {
            let status = r.status.as_deref().unwrap_or("");
            (None, Some(since.clone()), format!("{status}\u{0}{since}"))
        }
        _ => {
            let due = r.due.clone().unwrap_or_default();
            (Some(due.clone()), None, due)
        }
    };
    let order = serde_json::from_str(&snapshot.order).unwrap_or(serde_json::Value::Null);
    Event {
        kind,
        timestamp: now_rfc3339(),
        data: EventData {
            id: Event::derive_timer_id(source, &t.fired.order_id, kind, &about),
            source: source.to_owned(),
            order_id: t.fired.order_id.clone(),
            to: snapshot.status.clone(),
            closed: false,
            revision: snapshot.revision,
            order,
            due,
            since,
            ..EventData::default()
        },
    }
}

fn rfc3339_of(ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at.max(UNIX_EPOCH)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Env;
    use std::path::Path;

    fn timers(extra: &str) -> SourceTimers {
        let text = format!(
            "sources: [{{name: s, api: order-tracking, base_url: \"http://127.0.0.1:1\", client_id: a, client_secret: b, api_key: c, {extra}}}]\nsinks: [{{name: out, type: console}}]\n"
        );
        let config = Config::parse(&text, Path::new("test.yaml"), &Env::<String, String>::new())
            .unwrap_or_else(|e| panic!("{e}"));
        SourceTimers::from_config(&config.sources[0]).expect("timers configured")
    }

    fn snapshot(order: &str, status: &str) -> Snapshot {
        Snapshot {
            revision: 1,
            hash: Snapshot::hash_of(order),
            listed: true,
            status: Some(status.into()),
            changed_at: "2026-11-22T08:00:00Z".into(),
            order: order.into(),
        }
    }

    #[test]
    fn a_plain_due_date_is_read_in_the_source_timezone() {
        let t = timers("due: {warn_before: 1d}, timezone: Europe/Paris");
        let times = t.times_of(&snapshot(
            r#"{"id":"1","keyDates":{"expectedAt":"2026-07-03"}}"#,
            "Current",
        ));
        assert_eq!(times.due.unwrap().text, "2026-07-02T22:00:00Z");
        assert!(times.open);
        let closed = t.times_of(&snapshot(r#"{"id":"1"}"#, "Closed"));
        assert!(!closed.open && closed.due.is_none());
    }

    #[test]
    fn a_due_date_that_is_not_one_gives_no_timer_and_one_warning() {
        let t = timers("due: {field: /due}");
        for garbage in [r#""soon""#, "42", "[]", r#""2026-02-30""#] {
            let order = format!(r#"{{"id":"1","due":{garbage}}}"#);
            assert_eq!(t.times_of(&snapshot(&order, "Current")).due, None);
        }
        assert!(t.warned.load(Ordering::Relaxed));
        // No date at all is no date, not a problem.
        let quiet = timers("due: {field: /due}");
        for order in [r#"{"id":"1"}"#, r#"{"id":"1","due":null}"#] {
            assert_eq!(quiet.times_of(&snapshot(order, "Current")).due, None);
        }
        assert!(!quiet.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn an_unknown_timezone_and_a_bad_due_are_config_problems() {
        for (extra, key) in [
            ("timezone: Mars/Olympus", "sources[0].timezone"),
            ("due: {warn_before: soon}", "sources[0].due.warn_before"),
            ("due: {field: expectedAt}", "sources[0].due.field"),
            ("due: {field: \"\"}", "sources[0].due.field"),
            ("due: {when: 3d}", "sources[0].due.when"),
            ("stalled_after: 0s", "sources[0].stalled_after"),
        ] {
            let text = format!(
                "sources: [{{name: s, api: order-tracking, base_url: \"http://127.0.0.1:1\", client_id: a, client_secret: b, api_key: c, {extra}}}]\nsinks: [{{name: out, type: console}}]\n"
            );
            let err = Config::parse(&text, Path::new("test.yaml"), &Env::<String, String>::new())
                .expect_err(extra);
            assert!(err.to_string().contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn the_settings_and_their_fingerprint_follow_the_config() {
        let a = timers("due: {}, stalled_after: 14d");
        assert_eq!(a.settings.warn_before_ms, Some(3 * 86_400_000));
        assert_eq!(a.settings.stalled_after_ms, Some(14 * 86_400_000));
        assert_ne!(
            a.fingerprint,
            timers("due: {warn_before: 2d}, stalled_after: 14d").fingerprint
        );
        assert_ne!(
            a.fingerprint,
            timers("due: {}, stalled_after: 14d, timezone: Europe/Paris").fingerprint
        );
        assert_eq!(
            a.fingerprint,
            timers("due: {}, stalled_after: 14d").fingerprint
        );
    }
}
