//! The console sink: one rendered line per event on stdout (`orderwatch demo`).

use super::DeliveryError;
use super::template::Templates;
use crate::event::Event;
use std::io::Write;
use std::sync::Arc;

pub struct ConsoleSink {
    name: String,
    templates: Arc<Templates>,
}

impl ConsoleSink {
    pub fn new(name: &str, templates: Arc<Templates>) -> Self {
        ConsoleSink {
            name: name.to_owned(),
            templates,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Print the event's line. Fails only when stdout is gone (a closed pipe):
    /// then retrying later is all that can be done.
    pub async fn deliver(&self, event: &Event) -> Result<(), DeliveryError> {
        let line = self
            .templates
            .render_console(&self.name, event)
            .map_err(DeliveryError::permanent)?;
        // Locked for the whole line so concurrent deliveries never interleave.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| {
                DeliveryError::retry(format!("sink `{}`: cannot write to stdout: {e}", self.name))
            })
    }
}
