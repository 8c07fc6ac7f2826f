//! The thread the postgres driver runs on, and how a synchronous call waits
//! for it.
//!
//! Every caller of the store is synchronous (sled answers at once), and
//! some are on a tokio runtime's workers, some on plain threads (the CLI's
//! commands, the tests). So the driver gets its own thread with its own
//! small tokio runtime, and a call hands it a job and waits for the answer
//! on a std channel, which works from any thread. On a worker of a
//! multi-thread runtime the wait is wrapped in `block_in_place`, so the
//! worker's other tasks move to another worker meanwhile instead of
//! stalling behind the database. Jobs run concurrently on the driver's
//! runtime, each on a connection of the pool.

use super::super::StoreError;
use deadpool_postgres::Pool;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The longest one call may take before it fails as "not answering": a
/// server that hangs must not hang a poll or a delivery for good.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce(Pool) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

pub(super) struct Runner {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    /// How errors name the store: host, port and database only.
    at: String,
}

/// A job handed to the driver, whose answer is still to come.
pub(super) struct Pending<T> {
    answer: std::sync::mpsc::Receiver<Result<T, StoreError>>,
    at: String,
}

impl Runner {
    /// Start the driver's thread with `pool`; it stops when the runner is
    /// dropped.
    pub(super) fn start(pool: Pool, at: String) -> Result<Runner, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Engine(format!("cannot start the postgres driver: {e}")))?;
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("orderwatch-postgres".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job(pool.clone()));
                    }
                });
            })
            .map_err(|e| StoreError::Engine(format!("cannot start the postgres driver: {e}")))?;
        Ok(Runner { jobs, at })
    }

    /// Run `job` on the driver and wait for its answer.
    pub(super) fn call<T, F, Fut>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.submit(CALL_TIMEOUT, job)?.wait()
    }

    /// Hand `job` to the driver without waiting (a copy feeds it while it
    /// runs); it fails as unavailable after `limit`.
    pub(super) fn submit<T, F, Fut>(
        &self,
        limit: Duration,
        job: F,
    ) -> Result<Pending<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, answer) = std::sync::mpsc::sync_channel(1);
        let at = self.at.clone();
        let boxed: Job = Box::new(move |pool| {
            Box::pin(async move {
                let result = match tokio::time::timeout(limit, job(pool)).await {
                    Ok(result) => result,
                    Err(_) => Err(StoreError::Unavailable(format!(
                        "the postgres store {at} did not answer within {}s",
                        limit.as_secs()
                    ))),
                };
                let _ = tx.send(result);
            })
        });
        self.jobs.send(boxed).map_err(|_| self.stopped())?;
        Ok(Pending {
            answer,
            at: self.at.clone(),
        })
    }

    /// Run `task` on the driver for as long as it runs: it ends with the
    /// runner (the driver's runtime stops with it).
    pub(super) fn background<F, Fut>(&self, task: F) -> Result<(), StoreError>
    where
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let boxed: Job = Box::new(move |pool| Box::pin(task(pool)));
        self.jobs.send(boxed).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "the postgres store {}: its driver thread has stopped",
            self.at
        ))
    }
}

impl<T> Pending<T> {
    /// Wait for the answer, letting a runtime worker's other tasks go on.
    pub(super) fn wait(self) -> Result<T, StoreError> {
        let recv = || {
            self.answer.recv().unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "the postgres store {}: its driver thread has stopped",
                    self.at
                )))
            })
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(recv)
            }
            _ => recv(),
        }
    }
}
