//! One poll cycle of one source: pages → diff → one commit per page; then,
//! after a complete listing only, the orders that vanished are read by id.
//!
//! Changes seen on the pages that were read are real and are committed even
//! when a later page fails; vanish detection needs the whole list, so a cycle
//! that failed part-way says nothing about missing orders.

use crate::config::{FirstPoll, SourceConfig};
use crate::diff::{self, Outcome, Rules};
use crate::event::{Event, now_rfc3339};
use crate::route::Router;
use crate::source::{ApiError, ApiErrorKind, SourceClient};
use crate::store::{Commit, NewEvent, Store, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{info, warn};

/// Give the memory a cycle freed back to the operating system. glibc keeps
/// freed heap in its arenas (one per thread that allocated), so without this
/// a daemon idles between polls at the peak of its last cycle.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Orders read by id in one commit during the vanish step.
const VANISH_BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What one cycle did, for logs, metrics and `once`'s exit code.
#[derive(Debug)]
pub struct CycleReport {
    pub source: String,
    pub pages: u64,
    pub orders_seen: u64,
    pub events: u64,
    pub vanished_checked: u64,
    pub baseline: bool,
    /// Orders in the listing, known once a cycle read it completely.
    pub tracked: Option<u64>,
    pub duration: Duration,
    pub error: Option<PollError>,
}

impl CycleReport {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

pub struct Poller {
    cfg: Arc<SourceConfig>,
    rules: Rules,
    client: SourceClient,
    store: Store,
    router: Arc<Router>,
    /// Woken after a commit with events, so delivery starts at once.
    outbox_ready: Arc<Notify>,
}

impl Poller {
    pub fn new(
        cfg: Arc<SourceConfig>,
        store: Store,
        router: Arc<Router>,
        outbox_ready: Arc<Notify>,
    ) -> Result<Poller, ApiError> {
        Ok(Poller {
            rules: Rules::from_config(&cfg),
            client: SourceClient::new(&cfg)?,
            cfg,
            store,
            router,
            outbox_ready,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn interval(&self) -> Duration {
        self.cfg.interval
    }

    pub fn client(&self) -> &SourceClient {
        &self.client
    }

    /// One cycle; never panics, reports what it did and how it ended.
    pub async fn poll_once(&self) -> CycleReport {
        let started = Instant::now();
        let mut report = CycleReport {
            source: self.cfg.name.clone(),
            pages: 0,
            orders_seen: 0,
            events: 0,
            vanished_checked: 0,
            baseline: false,
            tracked: None,
            duration: Duration::ZERO,
            error: None,
        };
        if let Err(e) = self.cycle(&mut report).await {
            report.error = Some(e);
        }
        report.duration = started.elapsed();
        self.record(&report);
        release_freed_memory();
        report
    }

    async fn cycle(&self, report: &mut CycleReport) -> Result<(), PollError> {
        let baseline = !self.store.has_baseline(&self.cfg.name)?;
        report.baseline = baseline;
        let announce_new = !baseline || self.cfg.first_poll == FirstPoll::Notify;
        let mut seen: HashSet<String> = HashSet::new();
        let mut pages = self.client.pages();
        while let Some(page) = pages.next().await? {
            report.pages += 1;
            let timestamp = now_rfc3339();
            let mut commit = Commit {
                source: self.cfg.name.clone(),
                ..Default::default()
            };
            let bad_answer = |detail| ApiError {
                kind: ApiErrorKind::BadAnswer,
                http: Some(200),
                code: None,
                request_id: page.request_id.clone(),
                detail,
            };
            for raw in &page.orders {
                // The id and the hash of the text first: an unchanged order
                // (most of them, most cycles) is never parsed further.
                let (order_id, hash) = diff::identify(raw, &self.rules).map_err(bad_answer)?;
                report.orders_seen += 1;
                // The same order twice in one listing (the list shifted
                // between pages) is compared once.
                if seen.contains(&order_id) {
                    continue;
                }
                let known = self.store.snapshot_hash(&self.cfg.name, &order_id)?;
                let outcome = if matches!(known, Some((h, true)) if h == hash) {
                    Outcome::Unchanged
                } else {
                    let observed = diff::observe(raw, &self.rules).map_err(bad_answer)?;
                    let prev = match known {
                        Some(_) => self.store.snapshot(&self.cfg.name, &order_id)?,
                        None => None,
                    };
                    match prev {
                        Some(prev) => {
                            diff::compare(&prev, &observed, &self.rules, true, &timestamp)
                        }
                        None => diff::first_seen(&observed, &self.rules, announce_new, &timestamp),
                    }
                };
                self.add(&mut commit, &order_id, outcome);
                seen.insert(order_id);
            }
            report.events += self.commit(commit)?;
        }

        report.tracked = Some(seen.len() as u64);
        if baseline {
            self.commit(Commit {
                source: self.cfg.name.clone(),
                mark_baseline: true,
                ..Default::default()
            })?;
        } else {
            self.vanished(&seen, report).await?;
        }
        Ok(())
    }

    /// Orders the complete listing no longer has: read each by id. 404 is
    /// `order.removed`; otherwise its detail tells what happened (typically
    /// the closing, with a `status=Current` filter).
    async fn vanished(
        &self,
        seen: &HashSet<String>,
        report: &mut CycleReport,
    ) -> Result<(), PollError> {
        let missing = self.store.listed_ids_except(&self.cfg.name, seen)?;
        for batch in missing.chunks(VANISH_BATCH) {
            let timestamp = now_rfc3339();
            let mut commit = Commit {
                source: self.cfg.name.clone(),
                ..Default::default()
            };
            let mut failure = None;
            for id in batch {
                let Some(prev) = self.store.snapshot(&self.cfg.name, id)? else {
                    continue;
                };
                report.vanished_checked += 1;
                let outcome = match self.client.order(id).await {
                    Ok(None) => diff::removed(id, &prev, &self.rules, &timestamp),
                    Ok(Some(raw)) => match diff::observe(&raw, &self.rules) {
                        // A detail answering for another id is not this order.
                        Ok(observed) if observed.order_id == *id => {
                            diff::compare(&prev, &observed, &self.rules, false, &timestamp)
                        }
                        Ok(_) => {
                            warn!(source = %self.cfg.name, order_id = %id, "the detail call answered another order's id: ignored");
                            Outcome::Unchanged
                        }
                        Err(detail) => {
                            failure = Some(ApiError::new(ApiErrorKind::BadAnswer, detail));
                            break;
                        }
                    },
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                self.add(&mut commit, id, outcome);
            }
            report.events += self.commit(commit)?;
            if let Some(e) = failure {
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn add(&self, commit: &mut Commit, order_id: &str, outcome: Outcome) {
        match outcome {
            Outcome::Unchanged => {}
            Outcome::Refreshed(snap) => commit.snapshots.push((order_id.to_owned(), Some(snap))),
            Outcome::Changed(snap, event) => {
                commit.snapshots.push((order_id.to_owned(), Some(snap)));
                commit.events.push(self.new_event(&event));
            }
            Outcome::Removed(event) => {
                commit.snapshots.push((order_id.to_owned(), None));
                commit.events.push(self.new_event(&event));
            }
        }
    }

    fn new_event(&self, event: &Event) -> NewEvent {
        NewEvent {
            event_id: event.data.id.clone(),
            event_type: event.kind.as_str().to_owned(),
            order_id: event.data.order_id.clone(),
            // Serialising our own types cannot fail; an empty body would be
            // caught by every receiver, never silently accepted.
            json: serde_json::to_string(event).unwrap_or_default(),
            sinks: self.router.sinks_for(event),
        }
    }

    /// Commit and count the events per type; wake the dispatcher if any.
    fn commit(&self, commit: Commit) -> Result<u64, StoreError> {
        if commit.is_empty() {
            return Ok(0);
        }
        self.store.commit(&commit)?;
        for e in &commit.events {
            metrics::counter!("orderwatch_events_total", "source" => self.cfg.name.clone(), "type" => e.event_type.clone())
                .increment(1);
            info!(source = %self.cfg.name, order_id = %e.order_id, event = %e.event_type, id = %e.event_id, sinks = e.sinks.len(), "change detected");
        }
        if !commit.events.is_empty() {
            self.outbox_ready.notify_one();
        }
        Ok(commit.events.len() as u64)
    }

    fn record(&self, report: &CycleReport) {
        let outcome = if report.ok() { "ok" } else { "error" };
        metrics::counter!("orderwatch_polls_total", "source" => self.cfg.name.clone(), "outcome" => outcome).increment(1);
        metrics::histogram!("orderwatch_poll_duration_seconds", "source" => self.cfg.name.clone())
            .record(report.duration.as_secs_f64());
        if let Some(n) = report.tracked {
            metrics::gauge!("orderwatch_orders_tracked", "source" => self.cfg.name.clone())
                .set(n as f64);
        }
        match &report.error {
            None => info!(
                source = %report.source,
                pages = report.pages,
                orders = report.orders_seen,
                events = report.events,
                vanished_checked = report.vanished_checked,
                baseline = report.baseline,
                duration_ms = report.duration.as_millis() as u64,
                "poll cycle done"
            ),
            Some(e) => warn!(
                source = %report.source,
                pages = report.pages,
                orders = report.orders_seen,
                events = report.events,
                duration_ms = report.duration.as_millis() as u64,
                "poll cycle failed: {e}"
            ),
        }
    }
}
