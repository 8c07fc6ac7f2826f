//! What an operator can do to a running orderwatch through the API, as
//! handles the loops hold: a sink's pause switch and its last failure, a
//! source's "poll now". The loops only read these; the API only writes them.
//!
//! A pause lives in memory: it holds a sink's entries in the outbox (never
//! drops them) until resumed, and a restart resumes every sink.

use std::sync::Mutex;
use std::time::SystemTime;
use tokio::sync::{Notify, watch};

/// One sink's switch, and what its last failed attempt said.
pub struct SinkControl {
    paused: watch::Sender<bool>,
    last_error: Mutex<Option<(SystemTime, String)>>,
}

impl Default for SinkControl {
    fn default() -> Self {
        SinkControl {
            paused: watch::Sender::new(false),
            last_error: Mutex::new(None),
        }
    }
}

impl SinkControl {
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Resolves once the sink is not paused (at once if it is not).
    pub async fn resumed(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|paused| !*paused).await;
    }

    /// Remember a failed attempt's reason (already free of secrets: the
    /// sinks redact what receivers answer).
    pub fn failed(&self, reason: &str) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some((SystemTime::now(), crate::secret::redact(reason)));
    }

    pub fn last_error(&self) -> Option<(SystemTime, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One source's "poll now" request. [`Notify`] keeps one permit, so a
/// request that arrives during a cycle starts another right after it.
#[derive(Default)]
pub struct SourceControl {
    poll_now: Notify,
}

impl SourceControl {
    pub fn request_poll(&self) {
        self.poll_now.notify_one();
    }

    pub async fn poll_requested(&self) {
        self.poll_now.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn resumed_waits_for_the_resume() {
        let control = std::sync::Arc::new(SinkControl::default());
        control.resumed().await;
        control.set_paused(true);
        let waiting = {
            let control = control.clone();
            tokio::spawn(async move { control.resumed().await })
        };
        let early = tokio::time::timeout(Duration::from_millis(50), async {
            while !waiting.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(early.is_err(), "resumed while still paused");
        control.set_paused(false);
        waiting.await.unwrap();
    }

    #[tokio::test]
    async fn a_poll_request_during_a_cycle_is_kept() {
        let control = SourceControl::default();
        control.request_poll();
        tokio::time::timeout(Duration::from_secs(1), control.poll_requested())
            .await
            .expect("the request kept its permit");
    }
}
