//! The shutdown handle every loop selects on: one trigger, any number of
//! cloned handles. A loop checks [`Shutdown::is_stopping`] before it starts
//! new work and selects on [`Shutdown::stopped`] while it waits, so a signal
//! reaches every loop at once and nothing new begins after it.

use std::sync::Arc;
use tokio::sync::watch;

/// Fires the [`Shutdown`] handles made with it; firing twice is harmless.
pub struct ShutdownTrigger {
    tx: Arc<watch::Sender<bool>>,
}

impl ShutdownTrigger {
    pub fn stop(&self) {
        self.tx.send_replace(true);
    }
}

#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// Keeps the channel open for a handle that never fires, so waiting on
    /// it waits forever instead of seeing a closed channel.
    _keep: Option<Arc<watch::Sender<bool>>>,
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (
            ShutdownTrigger { tx: Arc::new(tx) },
            Shutdown { rx, _keep: None },
        )
    }

    /// A handle of its own that fires with this one or with its own
    /// trigger, whichever comes first: one loop stopped alone (a source or
    /// sink a config reload removed) while the rest runs on.
    pub fn child(&self) -> (ShutdownTrigger, Shutdown) {
        let (trigger, child) = Shutdown::new();
        let parent = self.clone();
        let tx = trigger.tx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = parent.stopped() => { tx.send_replace(true); }
                // Every handle of the child is gone: nothing left to stop.
                _ = tx.closed() => {}
            }
        });
        (trigger, child)
    }

    /// A handle that never fires (`notify-test`, a single step in tests).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            _keep: Some(Arc::new(tx)),
        }
    }

    /// A handle that fires at `deadline` (`once --drain-timeout`).
    pub fn at(deadline: tokio::time::Instant) -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            trigger.stop();
        });
        shutdown
    }

    pub fn is_stopping(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the trigger fired, or was dropped without firing
    /// (nobody is left who could keep the process going).
    pub async fn stopped(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_handle_sees_the_trigger() {
        let (trigger, shutdown) = Shutdown::new();
        let other = shutdown.clone();
        assert!(!shutdown.is_stopping());
        let waiting = tokio::spawn(async move { other.stopped().await });
        trigger.stop();
        waiting.await.unwrap();
        assert!(shutdown.is_stopping());
        // A handle cloned after the trigger fired sees it too.
        shutdown.clone().stopped().await;
    }

    #[tokio::test]
    async fn a_child_stops_alone_or_with_its_parent() {
        let (parent_trigger, parent) = Shutdown::new();
        let (alone, first) = parent.child();
        let (_kept, second) = parent.child();
        alone.stop();
        first.stopped().await;
        assert!(!second.is_stopping() && !parent.is_stopping());
        parent_trigger.stop();
        second.stopped().await;
    }

    #[tokio::test(start_paused = true)]
    async fn never_waits_forever_and_at_fires_on_time() {
        let never = Shutdown::never();
        let waited = tokio::time::timeout(Duration::from_secs(3600), never.stopped()).await;
        assert!(waited.is_err());
        let at = Shutdown::at(tokio::time::Instant::now() + Duration::from_secs(5));
        assert!(!at.is_stopping());
        at.stopped().await;
        assert!(at.is_stopping());
    }
}
