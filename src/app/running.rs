//! The parts of a running orderwatch that a config reload replaces: a
//! loop per source and per sink, each with its own stop, the shared routes
//! and the API's state; and how a new config is applied to them.

use crate::config::{Config, ConfigError, Problem, SinkConfig, SourceConfig};
use crate::control::SourceControl;
use crate::deliver::{Dispatcher, NamedSink, Sink, Templates};
use crate::http::Readiness;
use crate::poll::Poller;
use crate::reload::{self, Candidate, Changes, Origin, ReloadHandle, ReloadOutcome, Sections};
use crate::route::Router;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::store::Store;
use crate::supervise::{Liveness, supervise};
use crate::timer::Timer;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The parts of a running orderwatch that a reload replaces, owned by the
/// loop of [`App::run`] that serves reloads one at a time.
pub(super) struct Running {
    pub(super) config: Config,
    pub(super) config_file: Option<(PathBuf, Sections)>,
    pub(super) store: Store,
    pub(super) router: Arc<Router>,
    /// Its sources' settings follow each reload.
    pub(super) timer: Arc<Timer>,
    pub(super) committed: Arc<Notify>,
    pub(super) readiness: Arc<Readiness>,
    pub(super) liveness: Arc<Liveness>,
    pub(super) stop: Shutdown,
    pub(super) sources: Vec<RunningSource>,
    pub(super) sinks: Vec<RunningSink>,
    /// Delivery loops of removed sinks, finishing (or abandoning, after the
    /// grace) what they had in flight. A sink of the same name added again
    /// waits for its old loop, so one entry is never sent by two loops.
    pub(super) leaving_sinks: Vec<(String, JoinHandle<()>)>,
    /// The sinks' wakers, for the fan-out of "committed".
    pub(super) wakers: Arc<Mutex<Vec<Arc<Notify>>>>,
    /// The API's state, replaced after a reload; `None` without the API.
    pub(super) api: Option<crate::api::LiveState>,
    pub(super) reload: ReloadHandle,
}

pub(super) struct RunningSource {
    name: String,
    control: Arc<SourceControl>,
    /// Stops this poller alone, between two cycles.
    retire: ShutdownTrigger,
    task: JoinHandle<()>,
}

pub(super) struct RunningSink {
    name: String,
    dispatcher: Arc<Dispatcher>,
    waker: Arc<Notify>,
    /// Stops this delivery loop alone: nothing new starts, what is in
    /// flight gets the grace.
    retire: ShutdownTrigger,
    task: JoinHandle<()>,
}

impl Running {
    pub(super) fn start_source(&mut self, poller: Arc<Poller>, control: Arc<SourceControl>) {
        let (retire, retiring) = self.stop.child();
        let task = format!("poller `{}`", poller.name());
        let name = poller.name().to_owned();
        let readiness = self.readiness.clone();
        let stop = self.stop.clone();
        let loop_control = control.clone();
        let supervised = supervise(task, self.liveness.clone(), retiring.clone(), move || {
            super::poll_loop(
                poller.clone(),
                readiness.clone(),
                loop_control.clone(),
                stop.clone(),
                retiring.clone(),
            )
        });
        self.sources.push(RunningSource {
            name,
            control,
            retire,
            task: tokio::spawn(supervised),
        });
    }

    pub(super) fn start_sink(
        &mut self,
        name: &str,
        dispatcher: Arc<Dispatcher>,
        waker: Arc<Notify>,
    ) {
        let (retire, retiring) = self.stop.child();
        let grace = self.config.shutdown_grace;
        let task = format!("delivery loop of sink `{name}`");
        let for_loop = dispatcher.clone();
        let stop_for_loop = retiring.clone();
        let supervised = supervise(task, self.liveness.clone(), retiring, move || {
            let dispatcher = for_loop.clone();
            let stop = stop_for_loop.clone();
            async move { dispatcher.run(stop, grace).await }
        });
        lock(&self.wakers).push(waker.clone());
        self.sinks.push(RunningSink {
            name: name.to_owned(),
            dispatcher,
            waker,
            retire,
            task: tokio::spawn(supervised),
        });
    }

    /// The API's handles, when `api_token` enables it.
    pub(super) fn api_state(&self) -> Option<crate::api::ApiState> {
        let token = self.config.api_token.clone()?;
        Some(crate::api::ApiState {
            token,
            store: self.store.clone(),
            config: Arc::new(self.config.clone()),
            readiness: self.readiness.clone(),
            sinks: self
                .sinks
                .iter()
                .map(|s| (s.name.clone(), s.dispatcher.control()))
                .collect(),
            sources: self
                .sources
                .iter()
                .map(|s| (s.name.clone(), s.control.clone()))
                .collect(),
            wake_sinks: self.committed.clone(),
            reload: self.reload.clone(),
        })
    }

    /// Read the config file again and apply it, or change nothing; logged
    /// and counted either way.
    pub(super) async fn reload(&mut self, origin: Origin) -> ReloadOutcome {
        let Some((path, _)) = &self.config_file else {
            let outcome = Err(ConfigError {
                file: PathBuf::from("(generated)"),
                problems: vec![Problem {
                    path: String::new(),
                    line: None,
                    message: "this orderwatch runs a generated config: there is no file to reload"
                        .to_owned(),
                }],
            });
            reload::report(origin, Path::new("(generated)"), &outcome);
            return outcome;
        };
        let path = path.clone();
        // Parsing registers the new secrets with the redactor, before any
        // of them can be logged.
        let outcome = match Candidate::read(&path) {
            Ok(candidate) => self.apply(candidate).await,
            Err(e) => Err(e),
        };
        reload::report(origin, &path, &outcome);
        outcome
    }

    /// Replace the running parts by `candidate`'s. Everything new is built
    /// first: a source or sink that cannot be built changes nothing.
    async fn apply(&mut self, candidate: Candidate) -> ReloadOutcome {
        let Some((path, sections)) = &self.config_file else {
            return Ok(Changes::default());
        };
        let path = path.clone();
        let changes = Changes::between(&self.config, sections, &candidate);
        let config = Changes::keep_fixed(&self.config, candidate.config);
        let mut problems = Vec::new();

        let mut new_pollers = Vec::new();
        for (i, source) in config.sources.iter().enumerate() {
            let name = &source.name;
            if changes.sources.added.contains(name) || changes.sources.changed.contains(name) {
                match new_poller(
                    source,
                    &self.store,
                    &self.router,
                    &self.committed,
                    &self.timer,
                ) {
                    Ok(poller) => new_pollers.push(Arc::new(poller)),
                    Err(e) => problems.push(Problem {
                        path: format!("sources[{i}]"),
                        line: None,
                        message: format!("{e:#}"),
                    }),
                }
            }
        }
        let mut new_sinks = Vec::new();
        for (i, sink) in config.sinks.iter().enumerate() {
            let name = &sink.name;
            if changes.sinks.added.contains(name) || changes.sinks.changed.contains(name) {
                match named_sink(sink, &candidate.templates) {
                    Ok(named) => new_sinks.push((named, sink.retry)),
                    Err(message) => problems.push(Problem {
                        path: format!("sinks[{i}]"),
                        line: None,
                        message,
                    }),
                }
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError {
                file: path,
                problems,
            });
        }

        // Sinks first, then the routes: an event routed to a new sink
        // finds its loop running.
        for (named, retry) in new_sinks {
            let name = named.name.clone();
            if let Some(running) = self.sinks.iter().find(|s| s.name == name) {
                // In place: deliveries in flight finish with the old sink,
                // the next pass uses the new one; the pause stays.
                running.dispatcher.replace(vec![named], retry);
                continue;
            }
            while let Some(at) = self.leaving_sinks.iter().position(|(n, _)| *n == name) {
                let (_, old_loop) = self.leaving_sinks.swap_remove(at);
                let _ = old_loop.await;
            }
            let waker = Arc::new(Notify::new());
            let dispatcher = Arc::new(Dispatcher::new(
                self.store.clone(),
                vec![named],
                retry,
                waker.clone(),
            ));
            self.start_sink(&name, dispatcher, waker);
        }
        self.router.replace(&config);
        for name in &changes.sinks.removed {
            if let Some(at) = self.sinks.iter().position(|s| s.name == *name) {
                let sink = self.sinks.remove(at);
                sink.retire.stop();
                lock(&self.wakers).retain(|w| !Arc::ptr_eq(w, &sink.waker));
                self.leaving_sinks.push((sink.name, sink.task));
            }
        }
        self.leaving_sinks.retain(|(_, task)| !task.is_finished());
        super::warn_about_orphaned_entries(&config, &self.store);

        // A poller is replaced between two cycles, and only once the old
        // one has stopped: never two pollers of one source at once.
        let leaving = changes
            .sources
            .removed
            .iter()
            .chain(&changes.sources.changed);
        let mut controls = std::collections::HashMap::new();
        for name in leaving {
            if let Some(at) = self.sources.iter().position(|s| s.name == *name) {
                let source = self.sources.remove(at);
                source.retire.stop();
                let _ = source.task.await;
                controls.insert(source.name, source.control);
            }
        }
        for name in &changes.sources.removed {
            self.readiness.unregister(name);
        }
        // With the changed sources' pollers stopped and before the new
        // ones start: a source whose timer settings changed has its index
        // rebuilt with nothing committing beside it.
        if let Err(e) = self.timer.prepare(&config) {
            tracing::warn!(
                "the timer index could not follow the new config (due dates and stalled orders may be told late until the next start): {e}"
            );
        }
        for poller in new_pollers {
            if let Some(source) = config.source(poller.name()) {
                self.readiness.register(&source.name, source.interval);
            }
            // A changed source keeps its "poll now", asked or not.
            let control = controls.remove(poller.name()).unwrap_or_default();
            self.start_source(poller, control);
        }
        // Config order, as `sources:` lists them.
        self.sources.sort_by_key(|s| {
            config
                .sources
                .iter()
                .position(|c| c.name == s.name)
                .unwrap_or(usize::MAX)
        });

        self.config = config;
        self.config_file = Some((path, candidate.sections));
        if let (Some(live), Some(state)) = (&self.api, self.api_state()) {
            live.replace(state);
        }
        Ok(changes)
    }

    /// Every loop's task, for the shutdown to wait on.
    pub(super) fn into_tasks(self) -> Vec<JoinHandle<()>> {
        let sources = self.sources.into_iter().map(|s| s.task);
        let sinks = self.sinks.into_iter().map(|s| s.task);
        let leaving = self.leaving_sinks.into_iter().map(|(_, t)| t);
        sources.chain(sinks).chain(leaving).collect()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn new_poller(
    source: &SourceConfig,
    store: &Store,
    router: &Arc<Router>,
    wake: &Arc<Notify>,
    timer: &Timer,
) -> anyhow::Result<Poller> {
    Poller::new(
        Arc::new(source.clone()),
        store.clone(),
        router.clone(),
        wake.clone(),
    )
    .map(|p| p.waking_after_polls(timer.polled()))
    .with_context(|| format!("source `{}`", source.name))
}

pub(super) fn named_sink(
    sink: &SinkConfig,
    templates: &Arc<Templates>,
) -> Result<NamedSink, String> {
    let built = Sink::build(sink, templates)?;
    Ok(NamedSink::new(&sink.name, built, sink.max_per_minute).with_digest(sink.digest.clone()))
}
