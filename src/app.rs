//! Wiring a run: the store, a poller per source, the dispatcher, the HTTP
//! server; replacing them when the config is reloaded; and the order things
//! stop in.

use crate::config::Config;
use crate::control::SourceControl;
use crate::deliver::{Dispatcher, PassReport, Sink, Templates};
use crate::http::{self, Readiness};
use crate::poll::{CycleReport, Poller};
use crate::reload::{Origin, ReloadHandle, Sections};
use crate::route::Router;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::supervise::Liveness;
use crate::timer::Timer;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{info, warn};

mod running;

use running::{Running, lock, named_sink, new_poller};

/// One orderwatch: built from a config ([`App::build`]), then either one
/// pass ([`App::once`]) or the daemon ([`App::run`]), which serves the
/// `listen` port it bound first ([`App::bind`]) and, given its config file
/// ([`App::reload_from`]), reloads it on SIGHUP or `POST /api/v1/reload`.
pub struct App {
    config: Config,
    store: Store,
    /// Shared by every poller, so a reload replaces the routes for all.
    router: Arc<Router>,
    /// Due dates and stalled orders: evaluated after every poll and on
    /// its own schedule.
    timer: Arc<Timer>,
    pollers: Vec<Arc<Poller>>,
    /// One per sink, each with its own loop: a slow or failing receiver
    /// never holds the other sinks back.
    dispatchers: Vec<Arc<Dispatcher>>,
    /// Pollers signal new outbox entries here; `run` fans it out.
    committed: Arc<Notify>,
    sink_wakers: Vec<Arc<Notify>>,
    readiness: Arc<Readiness>,
    /// One per poller, in the same order: the API's "poll now".
    source_controls: Vec<Arc<SourceControl>>,
    /// The `listen` port, held from [`App::bind`] on: a port that is taken
    /// fails the start before any poll, and port 0 has its real number
    /// before anything runs.
    listener: Option<TcpListener>,
    /// The file a reload reads, and its sections as `run` started with
    /// them; `None`: nothing to reload (the demo's generated config).
    config_file: Option<(PathBuf, Sections)>,
    /// SIGHUPs, listened for from [`App::reload_from`] on, so one that
    /// comes during start-up reloads instead of killing the process.
    hangups: Option<tokio::sync::mpsc::Receiver<()>>,
}

/// What `once` ended with (README "Commands").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnceOutcome {
    /// Every poll succeeded and nothing due is left undelivered.
    Done,
    /// A poll failed.
    PollFailed,
    /// Notifications went to the dead letters during the run.
    DeadLettered,
    /// Polls succeeded; deliveries are still queued for the next run.
    Queued,
}

impl OnceOutcome {
    pub fn exit_code(self) -> u8 {
        match self {
            OnceOutcome::Done => 0,
            OnceOutcome::PollFailed | OnceOutcome::DeadLettered => 1,
            OnceOutcome::Queued => 3,
        }
    }
}

/// What `once` did, for its summary line and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceReport {
    pub outcome: OnceOutcome,
    pub sources: usize,
    pub failed_sources: usize,
    pub deliveries: PassReport,
    /// Entries left in the outbox (due now or later).
    pub queued: u64,
}

impl std::fmt::Display for OnceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.deliveries;
        write!(
            f,
            "once: {} of {} source(s) polled; {} delivered, {} to retry, {} dead-lettered, {} still queued",
            self.sources - self.failed_sources,
            self.sources,
            d.delivered,
            d.retried,
            d.buried,
            self.queued
        )?;
        match self.outcome {
            OnceOutcome::Done => Ok(()),
            OnceOutcome::PollFailed => write!(f, " (a poll failed)"),
            OnceOutcome::DeadLettered => write!(
                f,
                " (see `orderwatch dead-letters list`; `dead-letters replay` sends them again)"
            ),
            OnceOutcome::Queued => write!(f, " (kept for the next run)"),
        }
    }
}

impl App {
    /// Open the store and build every part; nothing is contacted and no
    /// port is bound yet.
    pub fn build(config: Config, templates: Arc<Templates>) -> anyhow::Result<App> {
        let store = Store::open_configured(&config.store, &config.state_dir)?;
        let wake = Arc::new(Notify::new());
        let router = Arc::new(Router::new(&config));
        let readiness = Arc::new(Readiness::default());
        readiness.watch_store(store.clone());
        let timer = Arc::new(Timer::new(store.clone(), router.clone(), wake.clone()));
        // Before any poll: a source whose timer settings changed since the
        // last run (or a store from before timers) gets its index first.
        timer.prepare(&config)?;
        let mut pollers = Vec::new();
        for source in &config.sources {
            let poller = new_poller(source, &store, &router, &wake, &timer)?;
            readiness.register(&source.name, source.interval);
            pollers.push(Arc::new(poller));
        }
        let mut dispatchers = Vec::new();
        let mut sink_wakers = Vec::new();
        for sink in &config.sinks {
            let named = named_sink(sink, &templates).map_err(anyhow::Error::msg)?;
            let waker = Arc::new(Notify::new());
            dispatchers.push(Arc::new(Dispatcher::new(
                store.clone(),
                vec![named],
                sink.retry,
                waker.clone(),
            )));
            sink_wakers.push(waker);
        }
        warn_about_orphaned_entries(&config, &store);
        Ok(App {
            config,
            store,
            router,
            timer,
            source_controls: pollers
                .iter()
                .map(|_| Arc::new(SourceControl::default()))
                .collect(),
            pollers,
            dispatchers,
            committed: wake,
            sink_wakers,
            readiness,
            listener: None,
            config_file: None,
            hangups: None,
        })
    }

    /// Reload from `path` (the file this config was read from) on SIGHUP
    /// or `POST /api/v1/reload` while [`App::run`] runs. Call it from
    /// within the runtime: SIGHUP is listened for from here on.
    pub fn reload_from(&mut self, path: PathBuf) {
        let sections = Sections::of_file(&path);
        self.config_file = Some((path, sections));
        self.hangups = Some(hangups());
    }

    /// Bind the `listen` address, if the config has one, and return the
    /// address bound (with port 0, the port the system chose). Calling it
    /// again keeps the first listener.
    pub async fn bind(&mut self) -> anyhow::Result<Option<SocketAddr>> {
        if self.listener.is_none()
            && let Some(addr) = self.config.listen
        {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (the `listen` key)"))?;
            let bound = listener.local_addr().with_context(|| {
                format!("cannot read the address bound for {addr} (the `listen` key)")
            })?;
            info!("health and metrics on http://{bound}");
            if self.config.api_token.is_some() {
                info!("API on http://{bound}/api/v1/ (bearer token: the config's api_token)");
            }
            self.listener = Some(listener);
        }
        Ok(self.local_addr())
    }

    /// Where health and metrics are served, once [`App::bind`] bound it.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Poll every source once (side by side).
    async fn poll_all(&self) -> Vec<CycleReport> {
        for p in &self.pollers {
            self.readiness.started(p.name());
        }
        let reports = futures::future::join_all(self.pollers.iter().map(|p| p.poll_once())).await;
        for r in &reports {
            self.readiness
                .record(&r.source, r.error.as_ref().map(|e| e.to_string()));
        }
        reports
    }

    /// `orderwatch once`: one poll of every source, then deliver until the
    /// outbox has nothing due or `drain_timeout` passes.
    /// The drain ends by `drain_timeout` whatever the receivers do: at the
    /// deadline deliveries in flight are abandoned and stay queued.
    pub async fn once(&self, drain_timeout: Duration) -> anyhow::Result<OnceReport> {
        let reports = self.poll_all().await;
        if let Err(e) = self.timer.evaluate(crate::store::now_ms()) {
            warn!(
                "the timer could not tell what came due (due dates, stalled orders; told by the next run): {e}"
            );
        }
        let drains =
            futures::future::join_all(self.dispatchers.iter().map(|d| d.drain(drain_timeout)))
                .await;
        let mut drained = true;
        let mut deliveries = PassReport::default();
        for d in drains {
            let d = d?;
            drained &= d.drained;
            deliveries.delivered += d.pass.delivered;
            deliveries.retried += d.pass.retried;
            deliveries.buried += d.pass.buried;
        }
        self.store.close()?;
        let mut queued = 0;
        for sink in &self.config.sinks {
            queued += self.store.outbox_depth(&sink.name)?;
        }
        let failed_sources = reports.iter().filter(|r| !r.ok()).count();
        // A failed poll says the most; then lost notifications; then waiting ones.
        let outcome = if failed_sources > 0 {
            OnceOutcome::PollFailed
        } else if deliveries.buried > 0 {
            OnceOutcome::DeadLettered
        } else if drained {
            OnceOutcome::Done
        } else {
            OnceOutcome::Queued
        };
        Ok(OnceReport {
            outcome,
            sources: reports.len(),
            failed_sources,
            deliveries,
            queued,
        })
    }

    /// `orderwatch run`: poll on intervals and dispatch until `shutdown`
    /// resolves, serving the `listen` port (bound here unless
    /// [`App::bind`] did it), and reloading the config when asked. Then no
    /// delivery starts, those in flight get `shutdown_grace`, the loops
    /// stop, and the store is flushed: this returns within the grace and a
    /// moment.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let mut hangups = self.hangups.take().unwrap_or_else(hangups);
        self.bind().await?;
        let (trigger, stop) = Shutdown::new();
        let liveness = Arc::new(Liveness::default());
        let (reload, mut reload_requests) = ReloadHandle::new();
        let mut tasks = tokio::task::JoinSet::new();
        let wakers = Arc::new(Mutex::new(Vec::new()));
        let mut running = Running {
            store: self.store.clone(),
            router: self.router.clone(),
            timer: self.timer.clone(),
            committed: self.committed.clone(),
            readiness: self.readiness.clone(),
            liveness: liveness.clone(),
            stop: stop.clone(),
            sources: Vec::new(),
            sinks: Vec::new(),
            leaving_sinks: Vec::new(),
            wakers: wakers.clone(),
            api: None,
            reload,
            config_file: self.config_file.take(),
            config: self.config.clone(),
        };
        // The health routes install the metrics recorder: before any loop
        // records a metric, or its first values are lost.
        let served = self.listener.take().map(|listener| {
            (
                listener,
                http::router(self.readiness.clone(), liveness.clone()),
            )
        });
        for (poller, control) in self.pollers.iter().zip(&self.source_controls) {
            running.start_source(poller.clone(), control.clone());
        }
        for ((dispatcher, waker), sink) in self
            .dispatchers
            .iter()
            .zip(&self.sink_wakers)
            .zip(&self.config.sinks)
        {
            running.start_sink(&sink.name, dispatcher.clone(), waker.clone());
        }

        if let Some((listener, mut app)) = served {
            if let Some(api) = running.api_state() {
                let (routes, live) = http::operator_routes(api);
                app = app.merge(routes);
                running.api = Some(live);
            }
            let limits = http::ServerLimits::from_env();
            tasks.spawn(http::serve(listener, app, limits, stop.clone()));
        }

        // Supervised like the other loops: one that died would otherwise
        // leave due dates untold without a word on /healthz.
        let timer = self.timer.clone();
        let timer_stop = stop.clone();
        tasks.spawn(crate::supervise::supervise(
            "timer".to_owned(),
            liveness.clone(),
            stop.clone(),
            move || timer.clone().run(timer_stop.clone()),
        ));

        // Fan the pollers' "committed" signal out to every sink's loop. Notify
        // keeps one permit per waker, so a signal is not lost while a loop is
        // busy delivering.
        let committed = self.committed.clone();
        let fan_stop = stop.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = fan_stop.stopped() => return,
                    _ = committed.notified() => {
                        lock(&wakers).iter().for_each(|w: &Arc<Notify>| w.notify_one());
                    }
                }
            }
        });

        info!(
            sources = running.sources.len(),
            sinks = running.sinks.len(),
            state_dir = %self.config.state_dir.display(),
            "orderwatch running"
        );
        tokio::pin!(shutdown);
        loop {
            let (origin, reply) = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(request) = reload_requests.recv() => (request.origin, request.reply),
                Some(()) = hangups.recv() => (Origin::Signal, None),
            };
            // A stop asked for during a reload is not held up by it: the
            // reload is dropped where it stands, and everything stops.
            let outcome = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                outcome = running.reload(origin) => outcome,
            };
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
        let grace = self.config.shutdown_grace;
        info!(
            grace = %humantime::format_duration(grace),
            "stopping: no new deliveries; those in flight get the grace"
        );
        trigger.stop();
        for task in running.into_tasks() {
            tasks.spawn(async move {
                let _ = task.await;
            });
        }
        // The loops end within the grace on their own; this bound only
        // guards against one that does not.
        let all_stopped = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace + Duration::from_millis(500), all_stopped)
            .await
            .is_err()
        {
            warn!("stopping: a loop did not stop within the grace; leaving it");
            tasks.abort_all();
        }
        self.store.close()?;
        info!("store flushed; stopped");
        Ok(())
    }
}

/// SIGHUPs, as they come; without signals (not unix, or the handler
/// cannot be installed) nothing ever comes.
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        // One waiting is enough: it reads the file as it is then.
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(e) => warn!("cannot listen for SIGHUP ({e}): reload through the API instead"),
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

/// A poller's loop: a cycle on every tick of its interval (the first at
/// once), and one whenever the API asks (the interval then counts from
/// it), until shutdown, or until `retire` (a reload replaced or removed
/// the source), which ends it between two cycles, never during one.
async fn poll_loop(
    poller: Arc<Poller>,
    readiness: Arc<Readiness>,
    control: Arc<SourceControl>,
    stop: Shutdown,
    retire: Shutdown,
) {
    if test_panic_requested() {
        panic!("a test asked this poller to die ({TEST_POLLER_PANICS})");
    }
    let mut ticks = tokio::time::interval(poller.interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let leader = crate::leader::Leader::new(
        poller.name(),
        poller.interval(),
        poller.lease(),
        poller.store(),
    );
    loop {
        tokio::select! {
            biased;
            _ = retire.stopped() => return,
            _ = ticks.tick() => {}
            _ = control.poll_requested() => ticks.reset(),
        }
        readiness.started(poller.name());
        // Replicas on one store: only the source's leader polls it; a
        // follower is as ready as its leader.
        match leader.leads() {
            Ok(true) => {}
            Ok(false) => {
                readiness.record(poller.name(), None);
                continue;
            }
            Err(e) => {
                // The store answers who leads: without it this cycle
                // fails, and says so as a failed poll does.
                warn!(source = %poller.name(), "poll cycle failed: {e}");
                readiness.record(poller.name(), Some(e.to_string()));
                continue;
            }
        }
        // Store writes are synchronous: stopping here can only cut an HTTP
        // call, never a commit.
        tokio::select! {
            biased;
            _ = stop.stopped() => return,
            report = poller.poll_once() => {
                readiness.record(&report.source, report.error.as_ref().map(|e| e.to_string()));
            }
        }
    }
}

/// Test-only: the first N poller loops to start panic, so the tests can
/// watch a dead loop being restarted and `/healthz` failing meanwhile. No
/// input can kill a loop, hence the switch; unset, it does nothing.
const TEST_POLLER_PANICS: &str = "ORDERWATCH_TEST_POLLER_PANICS";

fn test_panic_requested() -> bool {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static LEFT: OnceLock<AtomicU32> = OnceLock::new();
    let left = LEFT.get_or_init(|| {
        let n = std::env::var(TEST_POLLER_PANICS)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        AtomicU32::new(n)
    });
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Entries queued for a sink the config no longer has would wait forever
/// unseen: say so at start (they are delivered if the sink comes back).
fn warn_about_orphaned_entries(config: &Config, store: &Store) {
    let Ok(queued) = store.outbox_sinks() else {
        return;
    };
    for sink in queued.iter().filter(|s| config.sink(s).is_none()) {
        let n = store.outbox_depth(sink).unwrap_or(0);
        warn!(
            sink = %sink,
            entries = n,
            "notifications are queued for sink `{sink}`, which is not in the config: they wait until a sink of that name is configured again"
        );
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when first polled, so a signal during start-up is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `orderwatch notify-test SINK [--event TYPE]`: a sample event of that
/// type through the real sink path.
pub async fn notify_test(
    config: &Config,
    templates: Arc<Templates>,
    name: &str,
    kind: crate::event::EventType,
) -> anyhow::Result<std::process::ExitCode> {
    let Some(cfg) = config.sink(name) else {
        let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
        eprintln!("no sink named `{name}` (sinks: {})", names.join(", "));
        return Ok(std::process::ExitCode::from(2));
    };
    let sink = Sink::build(cfg, &templates).map_err(anyhow::Error::msg)?;
    let mut event = crate::deliver::sample_event(kind);
    if let Some(source) = config.sources.first() {
        event.data.source = source.name.clone();
    }
    match sink.deliver(&event).await {
        Ok(()) => {
            println!(
                "{}: sample event {} delivered",
                sink.describe(),
                event.data.id
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            let kind = match e {
                crate::deliver::DeliveryError::Retry { .. } => {
                    "failed (temporary: orderwatch would retry)"
                }
                crate::deliver::DeliveryError::Permanent { .. } => {
                    "failed (permanent: orderwatch would dead-letter it)"
                }
            };
            println!("{}: sample event {kind}: {e}", sink.describe());
            Ok(std::process::ExitCode::from(1))
        }
    }
}
