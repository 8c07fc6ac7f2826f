//! One poll cycle of one source: pages → diff → bounded commits; then,
//! after a complete listing only, the orders that vanished are read by id.
//!
//! Changes seen on the pages that were read are real and are committed even
//! when a later page fails; vanish detection needs the whole list, so a cycle
//! that failed part-way says nothing about missing orders.
//!
//! What comes from the list is not trusted to be well formed: an item that is
//! not an object or has no usable id is skipped with a warning (its position
//! and the page's request id), and the rest of the page is diffed as usual.
//! A vanished order whose check fails is reported and keeps its place as a
//! candidate: the others are still checked, and it is checked again next
//! cycle. Only Orange's own "not found" is a removal.
//!
//! An incremental source (README "Incremental sync") lists newest first by
//! its cursor and stops at the first page that reaches back past its
//! high-water mark minus `overlap`. The mark moves only once every page the
//! cycle read is committed, in a commit of its own after them, so it is
//! never ahead of what the store holds. A listing with no full one within
//! `full_every` (or none yet), or with an order whose cursor cannot be
//! read, is a full one and looks for vanished orders as any other.
//!
//! Every cycle, good or failed, is then counted in the source's health
//! record (`health`), committed with any `source.failing`,
//! `source.recovered` or `source.credentials_expiring` event it calls for.

use crate::config::{FirstPoll, SourceConfig};
use crate::diff::{self, Outcome, Rules};
use crate::event::{Event, now_rfc3339};
use crate::health::{self, CycleEnd};
use crate::leader::LeaseClock;
use crate::route::Router;
use crate::source::cursor::{self, Instant as CursorInstant};
use crate::source::{ApiError, ApiErrorKind, Detail, Page, SourceClient};
use crate::store::{Commit, NewEvent, Store, StoreError, SyncState, SyncUpdate, now_ms};
use crate::timer::SourceTimers;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
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
/// A commit holds at most this many orders, or this many bytes of order and
/// event text. sled keeps everything a transaction replaces in memory until
/// it ends: one commit for a page of 200,000 tiny orders peaked at 2.2 GB.
/// Each commit is atomic on its own (snapshots with their outbox entries), so
/// a crash between two loses nothing: the next cycle sees the orders of the
/// lost one again and makes the same events, with the same ids.
const COMMIT_MAX_ORDERS: usize = 1000;
const COMMIT_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Vanished orders whose detail failed with a server error or a timeout, one
/// after the other, before the step stops: Orange looks unavailable, and
/// asking for every other order would only hammer it.
const MAX_UNAVAILABLE_IN_A_ROW: u32 = 3;
/// Failed checks named in a cycle's error (all are logged as they happen).
const UNCHECKED_NAMED: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unchecked(UncheckedOrders),
}

/// Vanished orders whose check failed this cycle: nothing was said about
/// them, and they are checked again next cycle.
#[derive(Debug, Default)]
pub struct UncheckedOrders {
    pub count: u64,
    /// The first few, with why: `(order id, reason)`.
    pub named: Vec<(String, String)>,
}

impl fmt::Display for UncheckedOrders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} order(s) that left the listing could not be checked (nothing is said about them; they are checked again next cycle)",
            self.count
        )?;
        for (i, (id, why)) in self.named.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}order {}: {why}", id.escape_debug())?;
        }
        let more = self.count.saturating_sub(self.named.len() as u64);
        if more > 0 {
            write!(f, "; and {more} more")?;
        }
        Ok(())
    }
}

/// A detail error that says nothing about this one order but about the
/// source as a whole (credentials, access, rate limit, no connection): the
/// vanish step stops there rather than ask again for every other order.
fn stops_the_vanish_step(e: &ApiError) -> bool {
    matches!(
        e.kind,
        ApiErrorKind::InvalidClient
            | ApiErrorKind::TokenEndpoint
            | ApiErrorKind::Unauthorized
            | ApiErrorKind::Forbidden
            | ApiErrorKind::RateLimited
            | ApiErrorKind::NotAcceptable
            | ApiErrorKind::Connect
    )
}

/// An order id as the cycle remembers it: 16 bytes whatever its length; two
/// ids meeting on one hash is as likely as a collision of xxh3-128.
fn id_key(order_id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(order_id.as_bytes())
}

/// The outcomes of a cycle not yet committed, and their size.
#[derive(Default)]
struct Pending {
    commit: Commit,
    orders: usize,
    bytes: usize,
}

impl Pending {
    fn is_full(&self) -> bool {
        self.orders >= COMMIT_MAX_ORDERS || self.bytes >= COMMIT_MAX_BYTES
    }
}

/// What one cycle did, for logs, metrics and `once`'s exit code.
#[derive(Debug)]
pub struct CycleReport {
    pub source: String,
    pub pages: u64,
    pub orders_seen: u64,
    pub events: u64,
    pub vanished_checked: u64,
    /// Items of the list that were not orders orderwatch can follow.
    pub skipped: u64,
    pub baseline: bool,
    /// Orders in the listing, known once a cycle read it completely.
    pub tracked: Option<u64>,
    /// An incremental source's cycle that read only what changed (no
    /// vanish step); false for a full listing.
    pub incremental: bool,
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
    /// An unreadable cursor is warned about once per source, not per cycle.
    cursor_warned: AtomicBool,
    /// The source's `due`/`stalled_after`: each committed order's times go
    /// to the timer index with its snapshot.
    timers: Option<SourceTimers>,
    /// Woken after every cycle: the timer evaluates then.
    polled: Option<Arc<Notify>>,
    /// The end of this replica's lease on the source, which its client
    /// heeds and its commits extend.
    lease: Arc<LeaseClock>,
}

/// What an incremental source's cycle tracks as its pages come in.
struct Incremental {
    pointer: String,
    /// Stop after the page whose last order is older than this; `None` in
    /// a full listing.
    stop_before: Option<CursorInstant>,
    /// The newest cursor read, and the mark the store had.
    newest: Option<(String, CursorInstant)>,
    previous: Option<(String, CursorInstant)>,
    /// An order without a readable cursor: the cycle reads everything.
    unreadable: Option<String>,
    /// `X-Total-Count` of the first page, and whether a later page's was
    /// lower: an order that left the listing mid-scan shifts the later
    /// orders up one place, so one of them may have been stepped over.
    first_total: Option<u64>,
    shrank_or_unknown: bool,
}

impl Incremental {
    fn note(&mut self, raw: &serde_json::value::RawValue, order_id: &str) {
        match cursor::read(raw, &self.pointer) {
            Some((text, at)) => {
                if self.newest.as_ref().is_none_or(|(_, newest)| at > *newest) {
                    self.newest = Some((text, at));
                }
            }
            None => {
                if self.unreadable.is_none() {
                    self.unreadable = Some(order_id.to_owned());
                }
                // Read on to the end: this listing is a full one now.
                self.stop_before = None;
            }
        }
    }

    fn note_total(&mut self, page: &Page) {
        match (self.first_total, page.total) {
            (_, None) => self.shrank_or_unknown = true,
            (None, Some(total)) if page.offset == 0 => self.first_total = Some(total),
            (Some(first), Some(total)) if total < first => self.shrank_or_unknown = true,
            _ => {}
        }
    }

    /// The page reaches back past the mark minus the overlap.
    fn reached_the_mark(&self, page: &Page) -> bool {
        let Some(stop) = self.stop_before else {
            return false;
        };
        page.orders
            .last()
            .and_then(|raw| cursor::read(raw, &self.pointer))
            .is_some_and(|(_, at)| at < stop)
    }

    /// The mark to commit: the newest cursor ever committed. An incremental
    /// scan of several pages during which the listing shrank (or whose
    /// size is unknown) keeps the old mark, so the next cycle reads that far
    /// back again; a full listing moves it, since its vanish step reads any
    /// order the scan stepped over.
    fn next_mark(&self, full: bool, pages: u64) -> Option<String> {
        if !full && pages > 1 && self.shrank_or_unknown {
            return None;
        }
        match (&self.newest, &self.previous) {
            (Some((text, at)), Some((_, old))) if at > old => Some(text.clone()),
            (Some(_), Some(_)) => None,
            (Some((text, _)), None) => Some(text.clone()),
            (None, _) => None,
        }
    }
}

impl Poller {
    pub fn new(
        cfg: Arc<SourceConfig>,
        store: Store,
        router: Arc<Router>,
        outbox_ready: Arc<Notify>,
    ) -> Result<Poller, ApiError> {
        let lease = Arc::new(LeaseClock::default());
        Ok(Poller {
            rules: Rules::from_config(&cfg),
            timers: SourceTimers::from_config(&cfg),
            client: SourceClient::new(&cfg)?.bounded_by(Arc::clone(&lease)),
            lease,
            cfg,
            store,
            router,
            outbox_ready,
            cursor_warned: AtomicBool::new(false),
            polled: None,
        })
    }

    /// Wake `polled` after every cycle (the timer's evaluation).
    pub fn waking_after_polls(mut self, polled: Arc<Notify>) -> Poller {
        self.polled = Some(polled);
        self
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The store it commits to: the poll loop asks it who leads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn interval(&self) -> Duration {
        self.cfg.interval
    }

    /// The clock of its lease, for the poll loop's leader to keep.
    pub fn lease(&self) -> Arc<LeaseClock> {
        Arc::clone(&self.lease)
    }

    /// One cycle; never panics, reports what it did and how it ended.
    pub async fn poll_once(&self) -> CycleReport {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut report = CycleReport {
            source: self.cfg.name.clone(),
            pages: 0,
            orders_seen: 0,
            events: 0,
            vanished_checked: 0,
            skipped: 0,
            baseline: false,
            tracked: None,
            incremental: false,
            duration: Duration::ZERO,
            error: None,
        };
        if let Err(e) = self.cycle(&mut report).await {
            if self.lease.ran_out() {
                // Not a failed cycle: another replica may be polling now,
                // and this one tells nothing more of this cycle.
                info!(
                    source = %self.cfg.name,
                    pages = report.pages,
                    events = report.events,
                    "this orderwatch lost its lease mid-cycle on source `{}` and gave the cycle up ({e}); the next cycle asks for the lead again",
                    self.cfg.name
                );
                report.duration = started.elapsed();
                return report;
            }
            report.error = Some(e);
        }
        report.duration = started.elapsed();
        self.record(&report);
        report.events += self.assess_health(&report, started_at);
        if let Some(polled) = &self.polled {
            polled.notify_one();
        }
        release_freed_memory();
        report
    }

    /// Count the cycle in the source's health record, and commit the
    /// source events it calls for with it (README "Source health").
    /// Returns the events committed. A store that cannot be read or written
    /// is said and the cycle goes uncounted: the same store failure has
    /// failed the cycle itself, and will be said again.
    fn assess_health(&self, report: &CycleReport, started_at: SystemTime) -> u64 {
        let error = report.error.as_ref().map(ToString::to_string);
        let end = match &error {
            None => CycleEnd::Good,
            Some(e) => CycleEnd::Failed(e),
        };
        let assessed = self.store.source_health(&self.cfg.name).map(|previous| {
            health::assess(&self.cfg, &previous, end, started_at, SystemTime::now())
        });
        let written = assessed.and_then(|a| {
            let Some(record) = a.record else {
                return Ok(0);
            };
            self.commit(Commit {
                source: self.cfg.name.clone(),
                events: a.events.iter().map(|e| self.new_event(e)).collect(),
                health: Some(record),
                ..Default::default()
            })
        });
        written.unwrap_or_else(|e| {
            warn!(source = %self.cfg.name, "the source's health (failed cycles in a row) could not be recorded: {e}");
            0
        })
    }

    /// How an incremental source's cycle reads, from what the store holds:
    /// `None` for a source that is not incremental.
    fn plan_incremental(&self, baseline: bool) -> Result<Option<Incremental>, StoreError> {
        let Some(cfg) = &self.cfg.incremental else {
            return Ok(None);
        };
        let state: SyncState = self.store.sync_state(&self.cfg.name)?;
        let previous = state
            .high_water
            .as_deref()
            .and_then(|text| Some((text.to_owned(), cursor::parse_rfc3339(text)?)));
        let full_is_due = state.last_full_ms.is_none_or(|at| {
            now_ms().saturating_sub(at)
                >= u64::try_from(cfg.full_every.as_millis()).unwrap_or(u64::MAX)
        });
        let stop_before = match &previous {
            Some((_, mark)) if !baseline && !full_is_due => {
                Some(cursor::before(*mark, cfg.overlap))
            }
            _ => None,
        };
        Ok(Some(Incremental {
            pointer: cfg.cursor.clone(),
            stop_before,
            newest: None,
            previous,
            unreadable: None,
            first_total: None,
            shrank_or_unknown: false,
        }))
    }

    async fn cycle(&self, report: &mut CycleReport) -> Result<(), PollError> {
        let started_ms = now_ms();
        let baseline = !self.store.has_baseline(&self.cfg.name)?;
        report.baseline = baseline;
        let announce_new = !baseline || self.cfg.first_poll == FirstPoll::Notify;
        let mut incremental = self.plan_incremental(baseline)?;
        let reads_changes_only = incremental
            .as_ref()
            .is_some_and(|i| i.stop_before.is_some());
        // What the listing held, as 128-bit hashes of the ids: the vanish
        // step needs only "was it seen", and a million ids as strings cost
        // more than the page that brought them.
        let mut seen: HashSet<u128> = HashSet::new();
        let mut pages = if reads_changes_only {
            self.client.pages_one_by_one()
        } else {
            self.client.pages()
        };
        while let Some(page) = pages.next().await? {
            report.pages += 1;
            if let Some(inc) = incremental.as_mut() {
                inc.note_total(&page);
            }
            let timestamp = now_rfc3339();
            let mut pending = self.pending();
            // Room for this page's ids at once: growing the set doubles it,
            // and for a moment holds both the old table and the new one.
            seen.reserve(page.orders.len());
            for (position, raw) in page.orders.iter().enumerate() {
                // The id and the hash of the text first: an unchanged order
                // (most of them, most cycles) is never parsed further.
                let (order_id, hash) = match diff::identify(raw, &self.rules) {
                    Ok(found) => found,
                    Err(why) => {
                        self.skip(report, &page, position, &why);
                        continue;
                    }
                };
                report.orders_seen += 1;
                if let Some(inc) = incremental.as_mut() {
                    inc.note(raw, &order_id);
                }
                // The same order twice in one listing (the list shifted
                // between pages) is compared once.
                let seen_key = id_key(&order_id);
                if seen.contains(&seen_key) {
                    continue;
                }
                let known = self.store.snapshot_hash(&self.cfg.name, &order_id)?;
                let outcome = if matches!(known, Some((h, true)) if h == hash) {
                    Outcome::Unchanged
                } else {
                    let observed = match diff::observe(raw, &self.rules) {
                        Ok(observed) => observed,
                        Err(why) => {
                            self.skip(report, &page, position, &why);
                            continue;
                        }
                    };
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
                report.events += self.add(&mut pending, &order_id, outcome)?;
                seen.insert(seen_key);
            }
            report.events += self.commit(pending.commit)?;
            if incremental
                .as_ref()
                .is_some_and(|inc| inc.reached_the_mark(&page))
            {
                pages.finish();
            }
        }
        drop(pages);

        let full = incremental
            .as_ref()
            .is_none_or(|inc| inc.stop_before.is_none());
        report.incremental = !full;
        let mark = match &incremental {
            Some(inc) => {
                self.warn_unreadable_cursor(inc);
                inc.next_mark(full, report.pages)
            }
            None => None,
        };
        // Every page of this cycle is committed: the mark may move now.
        if let Some(high_water) = mark.clone()
            && !baseline
        {
            self.commit(Commit {
                source: self.cfg.name.clone(),
                sync: Some(SyncUpdate {
                    high_water: Some(high_water),
                    last_full_ms: None,
                }),
                ..Default::default()
            })?;
        }
        if !full {
            return Ok(());
        }
        report.tracked = Some(seen.len() as u64);
        let full_listing_done = incremental.as_ref().map(|_| SyncUpdate {
            high_water: mark,
            last_full_ms: Some(started_ms),
        });
        if baseline {
            self.commit(Commit {
                source: self.cfg.name.clone(),
                mark_baseline: true,
                sync: full_listing_done,
                ..Default::default()
            })?;
        } else {
            self.vanished(&seen, report).await?;
            // Only a full listing whose vanish step ended well counts: an
            // order it could not check is looked for in the next one.
            if let Some(update) = full_listing_done {
                self.commit(Commit {
                    source: self.cfg.name.clone(),
                    sync: Some(SyncUpdate {
                        high_water: None,
                        ..update
                    }),
                    ..Default::default()
                })?;
            }
        }
        Ok(())
    }

    /// An order without a readable cursor made this cycle a full listing:
    /// said once per source (each such cycle is a full one).
    fn warn_unreadable_cursor(&self, inc: &Incremental) {
        let Some(order_id) = &inc.unreadable else {
            return;
        };
        if self.cursor_warned.swap(true, Ordering::Relaxed) {
            return;
        }
        warn!(
            source = %self.cfg.name,
            order_id = %order_id,
            cursor = %inc.pointer,
            "order {} has no RFC 3339 time at {}: incremental sync cannot tell what changed, so cycles that meet such an order read the whole listing (said once)",
            order_id.escape_debug(),
            inc.pointer
        );
    }

    /// An item of a page that is not an order orderwatch can follow: said,
    /// and left out of this cycle.
    fn skip(&self, report: &mut CycleReport, page: &Page, position: usize, why: &str) {
        report.skipped += 1;
        metrics::counter!(crate::metrics::LIST_ITEMS_SKIPPED_TOTAL, "source" => self.cfg.name.clone())
            .increment(1);
        warn!(
            source = %self.cfg.name,
            page_offset = page.offset,
            position,
            request_id = page.request_id.as_deref().unwrap_or("-"),
            "item {position} of the page at offset {} skipped: {why}",
            page.offset
        );
    }

    /// Orders the complete listing no longer has: read each by id. Orange's
    /// own "not found" is `order.removed`; otherwise its detail tells what
    /// happened (typically the closing, with a `status=Current` filter). A
    /// failed check says nothing and leaves the order a candidate for the
    /// next cycle; the other orders are still checked.
    async fn vanished(
        &self,
        seen: &HashSet<u128>,
        report: &mut CycleReport,
    ) -> Result<(), PollError> {
        let missing = self
            .store
            .listed_ids_except(&self.cfg.name, |id| seen.contains(&id_key(id)))?;
        let mut unchecked = UncheckedOrders::default();
        let mut unavailable_in_a_row = 0u32;
        for batch in missing.chunks(VANISH_BATCH) {
            let timestamp = now_rfc3339();
            let mut pending = self.pending();
            let mut stop = None;
            for id in batch {
                let Some(prev) = self.store.snapshot(&self.cfg.name, id)? else {
                    continue;
                };
                report.vanished_checked += 1;
                let failure = match self.client.order(id).await {
                    Ok(Detail::NotFound) => {
                        let outcome = diff::removed(id, &prev, &self.rules, &timestamp);
                        report.events += self.add(&mut pending, id, outcome)?;
                        None
                    }
                    Ok(Detail::Order(raw)) => match diff::observe(&raw, &self.rules) {
                        // A detail answering for another id is not this order.
                        Ok(observed) if observed.order_id == *id => {
                            let outcome =
                                diff::compare(&prev, &observed, &self.rules, false, &timestamp);
                            report.events += self.add(&mut pending, id, outcome)?;
                            None
                        }
                        Ok(observed) => Some(format!(
                            "the detail call answered for another order ({})",
                            observed.order_id.escape_debug()
                        )),
                        Err(why) => Some(format!("the detail is not an order: {why}")),
                    },
                    Ok(Detail::Unaddressable) => Some(
                        "its id cannot be carried in a URL path (`.` and `..` name other addresses), so it is not read by id"
                            .to_owned(),
                    ),
                    Err(e) if stops_the_vanish_step(&e) => {
                        stop = Some(e);
                        break;
                    }
                    Err(e) => {
                        let unavailable =
                            matches!(e.kind, ApiErrorKind::Server | ApiErrorKind::Timeout);
                        unavailable_in_a_row = if unavailable {
                            unavailable_in_a_row + 1
                        } else {
                            0
                        };
                        let why = e.to_string();
                        if unavailable_in_a_row >= MAX_UNAVAILABLE_IN_A_ROW {
                            stop = Some(e);
                        }
                        Some(why)
                    }
                };
                if let Some(why) = failure {
                    warn!(source = %self.cfg.name, order_id = %id, "the order left the listing and could not be checked (checked again next cycle): {why}");
                    unchecked.count += 1;
                    if unchecked.named.len() < UNCHECKED_NAMED {
                        unchecked.named.push((id.clone(), why));
                    }
                } else {
                    unavailable_in_a_row = 0;
                }
                if stop.is_some() {
                    break;
                }
            }
            report.events += self.commit(pending.commit)?;
            if let Some(e) = stop {
                return Err(e.into());
            }
        }
        if unchecked.count > 0 {
            return Err(PollError::Unchecked(unchecked));
        }
        Ok(())
    }

    fn pending(&self) -> Pending {
        Pending {
            commit: Commit {
                source: self.cfg.name.clone(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Add one order's outcome; commit what is pending once it is full.
    /// Returns the events committed.
    fn add(
        &self,
        pending: &mut Pending,
        order_id: &str,
        outcome: Outcome,
    ) -> Result<u64, StoreError> {
        let commit = &mut pending.commit;
        let (snapshot, event) = match outcome {
            Outcome::Unchanged => return Ok(0),
            Outcome::Refreshed(snap) => (Some(snap), None),
            Outcome::Changed(snap, event) => (Some(snap), Some(self.new_event(&event))),
            Outcome::Removed(event) => (None, Some(self.new_event(&event))),
        };
        pending.orders += 1;
        pending.bytes += order_id.len()
            + snapshot.as_ref().map_or(0, |s| s.order.len())
            + event.as_ref().map_or(0, |e| e.json.len());
        if let Some(timers) = &self.timers {
            let times = snapshot.as_ref().map(|s| timers.times_of(s));
            commit
                .timers
                .get_or_insert_with(|| timers.update())
                .orders
                .push((order_id.to_owned(), times));
        }
        commit.snapshots.push((order_id.to_owned(), snapshot));
        commit.events.extend(event);
        if !pending.is_full() {
            return Ok(0);
        }
        let full = std::mem::replace(pending, self.pending());
        self.commit(full.commit)
    }

    fn new_event(&self, event: &Event) -> NewEvent {
        NewEvent {
            event_id: event.data.id.clone(),
            event_type: event.kind,
            // A source event's lane in the outbox is the empty order id
            // (no order has it): a source's own events reach each sink in
            // the order they happened, `source.failing` before its
            // `source.recovered`.
            order_id: event.order_id().unwrap_or_default().to_owned(),
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
        let at = Instant::now();
        self.store.commit(&commit)?;
        // A shared store renewed the lease in the commit's transaction.
        self.lease.renewed(at);
        for e in &commit.events {
            metrics::counter!(crate::metrics::EVENTS_TOTAL, "source" => self.cfg.name.clone(), "type" => e.event_type.as_str())
                .increment(1);
            if e.event_type.is_about_an_order() {
                info!(source = %self.cfg.name, order_id = %e.order_id, event = %e.event_type, id = %e.event_id, sinks = e.sinks.len(), "change detected");
            } else {
                info!(source = %self.cfg.name, event = %e.event_type, id = %e.event_id, sinks = e.sinks.len(), "source health event");
            }
        }
        if !commit.events.is_empty() {
            self.outbox_ready.notify_one();
        }
        Ok(commit.events.len() as u64)
    }

    fn record(&self, report: &CycleReport) {
        let outcome = if report.ok() { "ok" } else { "error" };
        metrics::counter!(crate::metrics::POLLS_TOTAL, "source" => self.cfg.name.clone(), "outcome" => outcome).increment(1);
        metrics::histogram!(crate::metrics::POLL_DURATION_SECONDS, "source" => self.cfg.name.clone())
            .record(report.duration.as_secs_f64());
        if let Some(n) = report.tracked {
            metrics::gauge!(crate::metrics::ORDERS_TRACKED, "source" => self.cfg.name.clone())
                .set(n as f64);
        }
        match &report.error {
            None => info!(
                source = %report.source,
                pages = report.pages,
                orders = report.orders_seen,
                events = report.events,
                vanished_checked = report.vanished_checked,
                skipped = report.skipped,
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
