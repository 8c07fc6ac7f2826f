//! Wiring a run: the store, a poller per source, the dispatcher, the HTTP
//! server; and the order things stop in.

use crate::config::Config;
use crate::deliver::{Dispatcher, NamedSink, Sink, Templates};
use crate::http::{self, Readiness};
use crate::poll::{CycleReport, Poller};
use crate::route::Router;
use crate::store::Store;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

pub struct App {
    pub config: Config,
    pub store: Store,
    pub pollers: Vec<Arc<Poller>>,
    /// One per sink, each with its own loop: a slow or failing receiver
    /// never holds the other sinks back.
    pub dispatchers: Vec<Arc<Dispatcher>>,
    /// Pollers signal new outbox entries here; `run` fans it out.
    committed: Arc<Notify>,
    sink_wakers: Vec<Arc<Notify>>,
    pub readiness: Arc<Readiness>,
}

/// What `once` ended with (DESIGN.md "Command line").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnceOutcome {
    /// Every poll succeeded and nothing due is left undelivered.
    Done,
    /// A poll failed.
    PollFailed,
    /// Polls succeeded; deliveries are still queued for the next run.
    Queued,
}

impl OnceOutcome {
    pub fn exit_code(self) -> u8 {
        match self {
            OnceOutcome::Done => 0,
            OnceOutcome::PollFailed => 1,
            OnceOutcome::Queued => 3,
        }
    }
}

impl App {
    /// Open the store and build every part; nothing is contacted yet.
    pub fn build(config: Config, templates: Arc<Templates>) -> anyhow::Result<App> {
        let store = Store::open(&config.state_dir)?;
        Self::with_store(config, templates, store)
    }

    pub fn with_store(
        config: Config,
        templates: Arc<Templates>,
        store: Store,
    ) -> anyhow::Result<App> {
        let wake = Arc::new(Notify::new());
        let router = Arc::new(Router::new(&config));
        let readiness = Arc::new(Readiness::default());
        readiness.watch_store(store.clone());
        let mut pollers = Vec::new();
        for source in &config.sources {
            let poller = Poller::new(
                Arc::new(source.clone()),
                store.clone(),
                router.clone(),
                wake.clone(),
            )
            .with_context(|| format!("source `{}`", source.name))?;
            readiness.register(&source.name, source.interval);
            pollers.push(Arc::new(poller));
        }
        let mut dispatchers = Vec::new();
        let mut sink_wakers = Vec::new();
        for sink in &config.sinks {
            let built = Sink::build(sink, &templates).map_err(anyhow::Error::msg)?;
            let named = NamedSink {
                name: sink.name.clone(),
                sink: built,
            };
            let waker = Arc::new(Notify::new());
            dispatchers.push(Arc::new(Dispatcher::new(
                store.clone(),
                vec![named],
                config.delivery.clone(),
                waker.clone(),
            )));
            sink_wakers.push(waker);
        }
        warn_about_orphaned_entries(&config, &store);
        Ok(App {
            config,
            store,
            pollers,
            dispatchers,
            committed: wake,
            sink_wakers,
            readiness,
        })
    }

    /// Poll every source once (side by side).
    pub async fn poll_all(&self) -> Vec<CycleReport> {
        let reports = futures::future::join_all(self.pollers.iter().map(|p| p.poll_once())).await;
        for r in &reports {
            self.readiness
                .record(&r.source, r.error.as_ref().map(|e| e.to_string()));
        }
        reports
    }

    /// `orderwatch once`: one poll of every source, then deliver until the
    /// outbox has nothing due or `drain_timeout` passes.
    pub async fn once(&self, drain_timeout: Duration) -> anyhow::Result<OnceOutcome> {
        let reports = self.poll_all().await;
        let drains =
            futures::future::join_all(self.dispatchers.iter().map(|d| d.drain(drain_timeout)))
                .await;
        let mut drained = true;
        for d in drains {
            drained &= d?;
        }
        self.store.flush()?;
        if reports.iter().any(|r| !r.ok()) {
            return Ok(OnceOutcome::PollFailed);
        }
        Ok(if drained {
            OnceOutcome::Done
        } else {
            OnceOutcome::Queued
        })
    }

    /// `orderwatch run`: poll on intervals and dispatch until `shutdown`
    /// resolves; then stop the loops, and flush the store.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();

        if let Some(addr) = self.config.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (the `listen` key)"))?;
            info!(
                "health and metrics on http://{}",
                listener.local_addr().unwrap_or(addr)
            );
            let app = http::router(self.readiness.clone());
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let graceful = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
                {
                    error!("health server failed: {e}");
                }
            });
        }

        for poller in &self.pollers {
            let poller = poller.clone();
            let readiness = self.readiness.clone();
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let mut ticks = tokio::time::interval(poller.interval());
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        biased;
                        _ = stop.changed() => return,
                        _ = ticks.tick() => {}
                    }
                    // Store writes are synchronous: stopping here can only cut
                    // an HTTP call, never a commit.
                    tokio::select! {
                        biased;
                        _ = stop.changed() => return,
                        report = poller.poll_once() => {
                            readiness.record(&report.source, report.error.as_ref().map(|e| e.to_string()));
                        }
                    }
                }
            });
        }

        for dispatcher in &self.dispatchers {
            let dispatcher = dispatcher.clone();
            let stop = stop_rx.clone();
            tasks.spawn(async move { dispatcher.run(stop).await });
        }
        // Fan the pollers' "committed" signal out to every sink's loop. Notify
        // keeps one permit per waker, so a signal is not lost while a loop is
        // busy delivering.
        let committed = self.committed.clone();
        let wakers = self.sink_wakers.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    _ = committed.notified() => wakers.iter().for_each(|w| w.notify_one()),
                }
            }
        });

        info!(
            sources = self.pollers.len(),
            sinks = self.config.sinks.len(),
            state_dir = %self.config.state_dir.display(),
            "orderwatch running"
        );
        shutdown.await;
        info!("stopping: finishing the write in hand");
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        self.store.flush()?;
        info!("store flushed; stopped");
        Ok(())
    }
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

/// `orderwatch notify-test SINK`: a sample event through the real sink path.
pub async fn notify_test(
    config: &Config,
    templates: Arc<Templates>,
    name: &str,
) -> anyhow::Result<std::process::ExitCode> {
    let Some(cfg) = config.sink(name) else {
        let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
        eprintln!("no sink named `{name}` (sinks: {})", names.join(", "));
        return Ok(std::process::ExitCode::from(2));
    };
    let sink = Sink::build(cfg, &templates).map_err(anyhow::Error::msg)?;
    let mut event = crate::deliver::sample_event(crate::event::EventType::StatusChanged);
    if let Some(source) = config.sources.first() {
        event.data.source = source.name.clone();
    }
    let json = serde_json::to_string(&event)?;
    match sink.deliver(&event.data.id, &json).await {
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
