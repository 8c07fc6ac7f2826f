//! The dispatcher: drains each sink's outbox entries, in order per order.
//!
//! An entry is deleted only after its delivery succeeded. A failed attempt is
//! rescheduled with exponential backoff and ±20% jitter (or the receiver's
//! `Retry-After`, clamped), and buried in the dead letters when attempts or
//! age run out, or at once on a permanent failure. An entry in flight is held
//! in memory only: if the process dies, it is still in the outbox at its due
//! time and is delivered again after restart (same `webhook-id`).
//!
//! When a delivery succeeded but the store would not remove its entry (a
//! full disk), the fact is kept in memory: the entry is not delivered again
//! while it stays in the outbox, and its removal is tried again on every
//! pass, so a receiver sees it at most once more (if the store loses the
//! removal, or the process stops before it is written).
//!
//! Stopping: once the [`Shutdown`] fires, no delivery starts; those in flight
//! get the grace, then are abandoned, which leaves their entries untouched
//! in the outbox (the store writes after an attempt are synchronous, so
//! abandoning one can never cut a write in half).

use super::DeliveryError;
use super::gate::Gate;
use super::sink::Sink;
use crate::control::SinkControl;
use crate::digest::{self, DigestSchedule};
use crate::retry::RetryPolicy;
use crate::shutdown::Shutdown;
use crate::store::{DueEntry, OutboxEntry, Store, StoreError, now_ms};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{error, info, warn};

/// Entries read from the outbox per sink per pass.
const BATCH: usize = 512;
/// Deliveries in flight per sink (different orders only).
const CONCURRENCY: usize = 16;
/// Longest sleep between passes when nothing is due.
const IDLE: Duration = Duration::from_secs(30);
/// The depth gauges count a sink's whole outbox: while a large outbox is
/// being drained, they are refreshed at most this often, not on every pass.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

pub struct NamedSink {
    pub name: String,
    pub sink: Sink,
    /// The sink's `max_per_minute`, as spacing between delivery starts, so
    /// a backlog leaves as a steady trickle.
    rate: Option<Gate>,
    /// Its `digest:`: each pass first makes the digest of a period that
    /// has ended.
    digest: Option<DigestSchedule>,
}

impl NamedSink {
    pub fn new(name: &str, sink: Sink, max_per_minute: Option<u32>) -> NamedSink {
        NamedSink {
            name: name.to_owned(),
            sink,
            rate: max_per_minute.map(Gate::per_minute),
            digest: None,
        }
    }

    pub fn with_digest(mut self, digest: Option<DigestSchedule>) -> NamedSink {
        self.digest = digest;
        self
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub delivered: u64,
    pub retried: u64,
    pub buried: u64,
    /// Due entries left waiting behind an earlier entry of the same order.
    pub held_back: u64,
    /// Due entries not attempted because the process is stopping.
    pub not_started: u64,
}

impl PassReport {
    fn add(&mut self, o: PassReport) {
        self.delivered += o.delivered;
        self.retried += o.retried;
        self.buried += o.buried;
        self.held_back += o.held_back;
        self.not_started += o.not_started;
    }

    pub fn attempted(&self) -> u64 {
        self.delivered + self.retried + self.buried
    }
}

pub struct Dispatcher {
    store: Store,
    /// Replaced whole by a config reload ([`Dispatcher::replace`]); a pass
    /// works with the sinks it started with, so a delivery in flight
    /// finishes with the sink it began on.
    sinks: RwLock<Arc<[Arc<NamedSink>]>>,
    policy: RwLock<RetryPolicy>,
    wake: Arc<Notify>,
    gauges_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Delivered, but the store refused to remove the entry: sink and seq.
    delivered_unremoved: Mutex<HashSet<(String, u64)>>,
    /// The operator's pause switch, and the last failure for the API.
    control: Arc<SinkControl>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        sinks: Vec<NamedSink>,
        policy: RetryPolicy,
        wake: Arc<Notify>,
    ) -> Dispatcher {
        Dispatcher {
            store,
            sinks: RwLock::new(sinks.into_iter().map(Arc::new).collect()),
            policy: RwLock::new(policy),
            wake,
            gauges_at: std::sync::Mutex::new(None),
            delivered_unremoved: Mutex::new(HashSet::new()),
            control: Arc::new(SinkControl::default()),
        }
    }

    /// Deliver through `sinks`, retrying by `policy`, from the next pass
    /// on (a reloaded config). The outbox, the pause switch and what is
    /// known of earlier deliveries stay.
    pub fn replace(&self, sinks: Vec<NamedSink>, policy: RetryPolicy) {
        let sinks: Arc<[Arc<NamedSink>]> = sinks.into_iter().map(Arc::new).collect();
        *self.sinks.write().unwrap_or_else(|e| e.into_inner()) = sinks;
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
        self.wake.notify_one();
    }

    fn sinks(&self) -> Arc<[Arc<NamedSink>]> {
        self.sinks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn policy(&self) -> RetryPolicy {
        *self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The pause switch the API flips, and the last failure it shows.
    pub fn control(&self) -> Arc<SinkControl> {
        self.control.clone()
    }

    /// One pass over every sink: deliver what is due now, starting no
    /// delivery once `shutdown` fired. Sinks run side by side, so a slow or
    /// failing one never holds the others back.
    pub async fn deliver_due_until(&self, shutdown: &Shutdown) -> Result<PassReport, StoreError> {
        let sinks = self.sinks();
        let passes = sinks.iter().map(|s| self.deliver_due_for(s, shutdown));
        let mut total = PassReport::default();
        for result in futures::future::join_all(passes).await {
            total.add(result?);
        }
        // A pass that attempted nothing (the outbox drained, or nothing is
        // due) always refreshes them, so they never stay stale when idle.
        let refresh = {
            let mut at = self
                .gauges_at
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let due = total.attempted() == 0 || at.is_none_or(|t| t.elapsed() >= GAUGE_EVERY);
            if due {
                *at = Some(std::time::Instant::now());
            }
            due
        };
        if refresh {
            self.update_gauges();
        }
        Ok(total)
    }

    async fn deliver_due_for(
        &self,
        sink: &NamedSink,
        shutdown: &Shutdown,
    ) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        // A digest whose period ended joins the outbox first, so this pass
        // can deliver it. Any sink may have kept events (its `digest:`
        // removed by a reload: they leave now).
        if let Err(e) = digest::roll_up(&self.store, &sink.name, sink.digest.as_ref(), now_ms()) {
            error!(sink = %sink.name, "cannot make the digest: {e}; its events stay kept");
        }
        // Paused: everything stays in the outbox, due as it was.
        if self.control.is_paused() {
            return Ok(report);
        }
        let mut due = self.store.due(&sink.name, now_ms(), BATCH)?;
        due.retain(|d| {
            if self.was_delivered(d) {
                self.remove_delivered(d);
                report.held_back += 1;
                return false;
            }
            true
        });
        // Which entries head their order, asked for the whole batch at
        // once (one round trip to a server, not one per entry).
        let entries: Vec<&OutboxEntry> = due.iter().map(|d| &d.entry).collect();
        let first = self.store.are_first_of_order(&entries)?;
        let mut ready = Vec::with_capacity(due.len());
        let mut orders: HashSet<(String, String)> = HashSet::new();
        for (d, first) in due.into_iter().zip(first) {
            let key = (d.entry.source.clone(), d.entry.order_id.clone());
            if orders.contains(&key) || !first {
                report.held_back += 1;
                continue;
            }
            orders.insert(key);
            ready.push(d);
        }
        // The deliveries that ended together are completed in one store
        // transaction, at once: an entry still leaves the outbox only
        // after its delivery succeeded, and no later than before.
        let mut ended_together = futures::stream::iter(ready)
            .map(|d| self.attempt(sink, d, shutdown))
            .buffer_unordered(CONCURRENCY)
            .ready_chunks(CONCURRENCY);
        let mut failed = None;
        while let Some(ended) = ended_together.next().await {
            let mut delivered = Vec::new();
            for attempted in ended {
                match attempted {
                    Ok(Attempted::Delivered(due)) => delivered.push(due),
                    Ok(Attempted::Done(r)) => report.add(r),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            report.delivered += self.completed(sink, delivered);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Forget the entries of deliveries that succeeded, together; when the
    /// store will not, each is remembered as delivered (not delivered
    /// again, its removal tried on every pass).
    fn completed(&self, sink: &NamedSink, delivered: Vec<DueEntry>) -> u64 {
        if let Err(e) = self.store.complete_all(&delivered) {
            let mut unremoved = self.unremoved();
            for due in &delivered {
                unremoved.insert((due.entry.sink.clone(), due.entry.seq));
                error!(sink = %sink.name, id = %due.entry.event_id, "delivered, but its outbox entry could not be removed: {e}; it is not delivered again, and its removal is tried again on each pass");
            }
        }
        for due in &delivered {
            count(sink, "delivered");
            info!(sink = %sink.name, event = %due.entry.event_type, id = %due.entry.event_id, order_id = %due.entry.order_id, "delivered");
        }
        delivered.len() as u64
    }

    /// One delivery attempt; a success is handed back for
    /// [`Dispatcher::completed`], every other outcome is written here.
    async fn attempt(
        &self,
        sink: &NamedSink,
        due: DueEntry,
        shutdown: &Shutdown,
    ) -> Result<Attempted, StoreError> {
        let mut report = PassReport::default();
        let label = |outcome: &'static str| count(sink, outcome);
        let Some(body) = due.body.as_deref() else {
            // Nothing to send, now or later: said, and kept for the record.
            let mut entry = due.entry.clone();
            let reason = "its event's body is missing from the store (damaged): nothing to deliver";
            entry.last_error = Some(reason.to_owned());
            self.store.bury(&due, &entry, reason)?;
            error!(sink = %sink.name, id = %entry.event_id, "{reason}; moved to dead letters");
            label("dead_letter");
            report.buried = 1;
            return Ok(Attempted::Done(report));
        };
        // Not started: the entry stays as it is, due now, for the next run.
        if let Some(rate) = &sink.rate {
            match rate.turn(shutdown).await {
                Some(mut turn) => turn.mark(),
                None => {
                    report.not_started = 1;
                    return Ok(Attempted::Done(report));
                }
            }
        }
        let Some(result) = sink.sink.deliver_unless_stopped(body, shutdown).await else {
            report.not_started = 1;
            return Ok(Attempted::Done(report));
        };
        match result {
            Ok(()) => return Ok(Attempted::Delivered(due)),
            Err(DeliveryError::Permanent { reason }) => {
                self.control.failed(&reason);
                let mut entry = due.entry.clone();
                entry.attempts += 1;
                entry.last_error = Some(reason.clone());
                self.store.bury(&due, &entry, &reason)?;
                label("dead_letter");
                error!(sink = %sink.name, id = %entry.event_id, "delivery failed for good, moved to dead letters: {reason}");
                report.buried = 1;
            }
            Err(DeliveryError::Retry {
                reason,
                retry_after,
            }) => {
                self.control.failed(&reason);
                let mut entry = due.entry.clone();
                entry.attempts += 1;
                entry.last_error = Some(reason.clone());
                let age = Duration::from_millis(now_ms().saturating_sub(entry.created_ms));
                if self.policy().gives_up(entry.attempts, age) {
                    let why = format!(
                        "gave up after {} attempts over {}: {reason}",
                        entry.attempts,
                        humantime::format_duration(Duration::from_secs(age.as_secs()))
                    );
                    self.store.bury(&due, &entry, &why)?;
                    label("dead_letter");
                    error!(sink = %sink.name, id = %entry.event_id, "{why}");
                    report.buried = 1;
                } else {
                    let wait = self.policy().wait(entry.attempts, retry_after);
                    // A `backoff.max` of years must not wrap the due time.
                    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                    self.store
                        .reschedule(&due, &entry, now_ms().saturating_add(wait_ms))?;
                    label("retry");
                    warn!(sink = %sink.name, id = %entry.event_id, attempt = entry.attempts, retry_in_ms = wait_ms, "delivery failed, will retry: {reason}");
                    report.retried = 1;
                }
            }
        }
        Ok(Attempted::Done(report))
    }

    fn unremoved(&self) -> std::sync::MutexGuard<'_, HashSet<(String, u64)>> {
        self.delivered_unremoved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn was_delivered(&self, due: &DueEntry) -> bool {
        self.unremoved()
            .contains(&(due.entry.sink.clone(), due.entry.seq))
    }

    /// Try again to remove an entry that was delivered; it stays known as
    /// delivered until that works.
    fn remove_delivered(&self, due: &DueEntry) {
        if self.store.complete(due).is_ok() {
            self.unremoved()
                .remove(&(due.entry.sink.clone(), due.entry.seq));
            info!(sink = %due.entry.sink, id = %due.entry.event_id, "outbox entry of an earlier delivery removed");
        }
    }

    fn update_gauges(&self) {
        for s in self.sinks().iter() {
            if let Ok(n) = self.store.outbox_depth(&s.name) {
                metrics::gauge!(crate::metrics::OUTBOX_DEPTH, "sink" => s.name.clone())
                    .set(n as f64);
            }
            if let Ok(n) = self.store.dead_letter_count(&s.name) {
                metrics::gauge!(crate::metrics::DEAD_LETTERS, "sink" => s.name.clone())
                    .set(n as f64);
            }
        }
    }

    /// When the next entry of any sink is due, in ms from now (0 if due now).
    pub fn next_due_in(&self) -> Result<Option<Duration>, StoreError> {
        let now = now_ms();
        let mut next: Option<u64> = None;
        for s in self.sinks().iter() {
            if let Some(due) = self.store.next_due(&s.name)? {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        Ok(next.map(|due| Duration::from_millis(due.saturating_sub(now))))
    }

    /// How long the loop may sleep before a digest is due.
    fn digest_pause(&self) -> Duration {
        match self.next_digest_in() {
            Ok(Some(wait)) => wait,
            Ok(None) => IDLE,
            Err(e) => {
                error!("cannot read the events kept for digests: {e}");
                Duration::from_secs(5)
            }
        }
    }

    /// When the next digest of any sink is due, from now; `None` when no
    /// sink keeps events.
    fn next_digest_in(&self) -> Result<Option<Duration>, StoreError> {
        let now = now_ms();
        let mut next: Option<u64> = None;
        for s in self.sinks().iter() {
            if let Some(at) = digest::next_digest_ms(&self.store, &s.name, s.digest.as_ref())? {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next.map(|at| Duration::from_millis(at.saturating_sub(now))))
    }

    /// Deliver until nothing is due now, or `timeout` passes: at the
    /// deadline no delivery starts and those in flight are abandoned (their
    /// entries stay queued), so this returns by the deadline whatever the
    /// receivers do.
    pub async fn drain(&self, timeout: Duration) -> Result<DrainReport, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let shutdown = Shutdown::at(deadline);
        let mut report = DrainReport::default();
        loop {
            let pass = tokio::select! {
                biased;
                pass = self.deliver_due_until(&shutdown) => pass?,
                _ = shutdown.stopped() => {
                    report.drained = self.next_due_in()?.is_none();
                    return Ok(report);
                }
            };
            report.pass.add(pass);
            let next = self.next_due_in()?;
            match next {
                None => {
                    report.drained = true;
                    return Ok(report);
                }
                Some(wait) if wait > Duration::ZERO && pass.attempted() == 0 => {
                    // Only future retries left: wait for them within the deadline.
                    let at = tokio::time::Instant::now() + wait;
                    if at > deadline {
                        return Ok(report);
                    }
                    tokio::time::sleep_until(at).await;
                }
                Some(_) => {
                    if shutdown.is_stopping() {
                        return Ok(report);
                    }
                    if pass.attempted() == 0 {
                        // Due entries all held back behind in-flight ones: a short pause.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    }

    /// The dispatcher loop of `run`: deliver, then sleep until the next entry
    /// is due, new events are committed, or shutdown. After shutdown no
    /// delivery starts, and those in flight get `grace` to finish.
    pub async fn run(&self, shutdown: Shutdown, grace: Duration) {
        let grace_over = async {
            shutdown.stopped().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(grace_over);
        loop {
            if shutdown.is_stopping() {
                return;
            }
            if self.control.is_paused() {
                tokio::select! {
                    biased;
                    _ = shutdown.stopped() => return,
                    _ = self.control.resumed() => {}
                }
            }
            let pass = tokio::select! {
                biased;
                pass = self.deliver_due_until(&shutdown) => pass,
                _ = &mut grace_over => {
                    warn!(
                        grace = %humantime::format_duration(grace),
                        "stopping: deliveries still in flight after the grace were abandoned; their entries stay queued and are retried after restart"
                    );
                    return;
                }
            };
            let pause = match pass {
                Ok(_) => match self.next_due_in() {
                    Ok(Some(wait)) => wait.min(IDLE).min(self.digest_pause()),
                    Ok(None) => IDLE.min(self.digest_pause()),
                    Err(e) => {
                        error!("cannot read the outbox: {e}");
                        Duration::from_secs(5)
                    }
                },
                Err(e) => {
                    error!("delivery pass failed: {e}");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.stopped() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause.max(Duration::from_millis(5))) => {}
            }
        }
    }
}

/// How one attempt ended: delivered (its entry still to be forgotten), or
/// anything else (already written to the store).
enum Attempted {
    Delivered(DueEntry),
    Done(PassReport),
}

fn count(sink: &NamedSink, outcome: &'static str) {
    metrics::counter!(crate::metrics::DELIVERIES_TOTAL, "sink" => sink.name.clone(), "outcome" => outcome).increment(1);
}

/// What [`Dispatcher::drain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Nothing due is left undelivered.
    pub drained: bool,
    /// The passes' totals.
    pub pass: PassReport,
}
