//! Keeping the daemon's loops alive, and honest about it.
//!
//! Every poller and delivery loop runs under [`supervise`]: a loop that ends
//! before shutdown (a panic, a bug) is logged, counted in
//! `orderwatch_task_restarts_total`, marked down in [`Liveness`] (so
//! `/healthz` fails while it is down) and restarted after a pause that
//! doubles from one second to a minute. A silent dead poller behind a green
//! health check cannot happen.

use crate::shutdown::Shutdown;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::error;

const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
/// A loop that ran this long before dying starts again at the first pause.
const STEADY: Duration = Duration::from_secs(60);

/// Which supervised loops are down, for `/healthz`.
#[derive(Default)]
pub struct Liveness {
    down: Mutex<BTreeMap<String, u64>>,
}

impl Liveness {
    fn set_down(&self, task: &str, deaths: u64) {
        self.lock().insert(task.to_owned(), deaths);
    }

    fn set_up(&self, task: &str) {
        self.lock().remove(task);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ok when every loop runs; otherwise one line per loop that is down.
    pub fn check(&self) -> Result<(), String> {
        let down = self.lock();
        if down.is_empty() {
            return Ok(());
        }
        Err(down
            .iter()
            .map(|(task, deaths)| {
                format!("{task}: stopped unexpectedly ({deaths} time(s)); restarting\n")
            })
            .collect())
    }
}

/// Run `make()`'s future as a task until `shutdown`; restart it whenever it
/// ends before that. Returns once shutdown came and the task finished.
pub async fn supervise<F, Fut>(task: String, liveness: Arc<Liveness>, shutdown: Shutdown, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = FIRST_PAUSE;
    let mut deaths = 0u64;
    loop {
        let started = tokio::time::Instant::now();
        let mut running = AbortOnDrop(tokio::spawn(make()));
        let outcome = (&mut running.0).await;
        if shutdown.is_stopping() {
            return;
        }
        deaths += 1;
        let why = match outcome {
            Ok(()) => "it returned".to_owned(),
            Err(e) if e.is_panic() => format!("it panicked: {}", panic_text(e.into_panic())),
            Err(e) => format!("it was cancelled: {e}"),
        };
        if started.elapsed() >= STEADY {
            pause = FIRST_PAUSE;
        }
        liveness.set_down(&task, deaths);
        metrics::counter!(crate::metrics::TASK_RESTARTS_TOTAL, "task" => task.clone()).increment(1);
        error!(
            task = %task,
            restart_in_s = pause.as_secs(),
            "{task} stopped unexpectedly ({why}); restarting it"
        );
        tokio::select! {
            biased;
            _ = shutdown.stopped() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
        liveness.set_up(&task);
    }
}

/// A task that ends with its supervisor: should the supervisor itself be
/// aborted (a loop that ignored shutdown), the loop goes with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_dying_task_is_reported_down_then_restarted() {
        let liveness = Arc::new(Liveness::default());
        let (trigger, shutdown) = Shutdown::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let stop = shutdown.clone();
        let supervisor = tokio::spawn(supervise(
            "poller `s`".to_owned(),
            liveness.clone(),
            shutdown.clone(),
            move || {
                let run = counted.fetch_add(1, Ordering::SeqCst);
                let stop = stop.clone();
                async move {
                    if run == 0 {
                        panic!("boom");
                    }
                    stop.stopped().await;
                }
            },
        ));
        // The first run panics: down until the restart a second later.
        while liveness.check().is_ok() {
            tokio::task::yield_now().await;
        }
        let down = liveness.check().unwrap_err();
        assert!(down.contains("poller `s`: stopped unexpectedly"), "{down}");
        tokio::time::sleep(FIRST_PAUSE + Duration::from_millis(10)).await;
        assert!(liveness.check().is_ok());
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        trigger.stop();
        supervisor.await.unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "not restarted after shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_double_up_to_a_minute() {
        let liveness = Arc::new(Liveness::default());
        let (trigger, shutdown) = Shutdown::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let supervisor = tokio::spawn(supervise(
            "dispatcher `x`".to_owned(),
            liveness.clone(),
            shutdown,
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async {}
            },
        ));
        // 1 + 2 + 4 + 8 + 16 + 32 + 60 s: 8 runs within two minutes.
        tokio::time::sleep(Duration::from_secs(123) + Duration::from_millis(500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 8);
        assert!(liveness.check().is_err());
        trigger.stop();
        supervisor.await.unwrap();
    }
}
