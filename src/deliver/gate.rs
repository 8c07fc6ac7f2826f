//! Spacing between a sink's messages: a sink's `max_per_minute`, and the
//! chat services' one message a second per webhook (slack, google-chat).

use crate::shutdown::Shutdown;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// Messages at least `spacing` apart. Whoever holds a [`Turn`] holds the
/// gate, so concurrent deliveries queue up one behind the other.
#[derive(Debug)]
pub(crate) struct Gate {
    spacing: Duration,
    last: Mutex<Option<Instant>>,
}

/// The gate, held: mark when the message counts as sent.
pub(crate) struct Turn<'a>(MutexGuard<'a, Option<Instant>>);

impl Turn<'_> {
    /// The next message waits `spacing` from now.
    pub(crate) fn mark(&mut self) {
        *self.0 = Some(Instant::now());
    }
}

impl Gate {
    pub(crate) fn new(spacing: Duration) -> Gate {
        Gate {
            spacing,
            last: Mutex::new(None),
        }
    }

    /// At most `n` messages a minute, spread evenly.
    pub(crate) fn per_minute(n: u32) -> Gate {
        Gate::new(Duration::from_secs(60) / n.max(1))
    }

    /// Wait for this message's turn; `None` when `shutdown` fired first.
    pub(crate) async fn turn(&self, shutdown: &Shutdown) -> Option<Turn<'_>> {
        let last = tokio::select! {
            biased;
            _ = shutdown.stopped() => return None,
            last = self.last.lock() => last,
        };
        if let Some(previous) = *last {
            tokio::select! {
                biased;
                _ = shutdown.stopped() => return None,
                _ = tokio::time::sleep_until(previous + self.spacing) => {}
            }
        }
        Some(Turn(last))
    }

    /// Run `exchange` in its turn, and count the spacing from its end, so
    /// the receiver too sees the messages `spacing` apart whatever the
    /// latency; `None` when `shutdown` fired before the turn came.
    pub(crate) async fn paced<T>(
        &self,
        shutdown: &Shutdown,
        exchange: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let mut turn = self.turn(shutdown).await?;
        let outcome = exchange.await;
        turn.mark();
        Some(outcome)
    }
}
