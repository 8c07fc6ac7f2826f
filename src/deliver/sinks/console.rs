//! The console sink: one rendered line per event on stdout (`orderwatch demo`).

use super::{Deliver, SinkSettings, SinkType, own_template};
use crate::config::{Decoder, Fields, opt};
use crate::deliver::DeliveryError;
use crate::deliver::template::{Role, Templates, default_name};
use crate::digest::Digest;
use crate::event::{Event, EventType};
use crate::shutdown::Shutdown;
use futures::future::BoxFuture;
use std::io::Write;
use std::sync::Arc;

pub(crate) const TYPE: SinkType = SinkType {
    name: "console",
    keys: &["template"],
    defaults,
    decode,
};

#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    template: Option<String>,
}

fn decode(d: &mut Decoder, f: &Fields) -> Option<Arc<dyn SinkSettings>> {
    let template = opt!(d, f, "template", None, |n, p| d
        .template(n, &p, Role::Console)
        .map(Some));
    Some(Arc::new(ConsoleSettings {
        template: template?,
    }))
}

impl SinkSettings for ConsoleSettings {
    fn templates(&self) -> Vec<(Role, &'static str, &str)> {
        own_template(Role::Console, "template", &self.template)
    }

    fn build(&self, name: &str, templates: Arc<Templates>) -> Result<Box<dyn Deliver>, String> {
        Ok(Box::new(ConsoleSink::new(name, templates)))
    }
}

/// The built-in line of each event type.
fn defaults() -> Vec<(String, String)> {
    use EventType::*;
    let prefix = "{{ timestamp }} {{ source }} {{ order_id }} {{ type }}";
    let source_prefix = "{{ timestamp }} {{ source }} {{ type }}";
    vec![
        (
            default_name(Role::Console, Created),
            format!("{prefix} → {{{{ to }}}}"),
        ),
        (
            default_name(Role::Console, StatusChanged),
            format!("{prefix} {{{{ from }}}} → {{{{ to }}}}"),
        ),
        (
            default_name(Role::Console, Updated),
            format!(
                "{prefix}{{% for c in changes %}} {{{{ c.path }}}}: {{{{ c.from|show }}}} → {{{{ c.to|show }}}}{{% if not loop.last %}};{{% endif %}}{{% endfor %}}"
            ),
        ),
        // A removal has no new status: its line tells the last one seen.
        (
            default_name(Role::Console, Removed),
            format!("{prefix}{{% if from %}} (was {{{{ from }}}}){{% endif %}}"),
        ),
        (
            default_name(Role::Console, DueSoon),
            format!("{prefix} due {{{{ due }}}} ({{{{ to }}}})"),
        ),
        (
            default_name(Role::Console, Overdue),
            format!("{prefix} was due {{{{ due }}}} ({{{{ to }}}})"),
        ),
        (
            default_name(Role::Console, Stalled),
            format!("{prefix} {{{{ to }}}} since {{{{ since }}}}"),
        ),
        (
            default_name(Role::Console, SourceFailing),
            format!(
                "{source_prefix} failing since {{{{ since }}}} ({{{{ failures }}}} failed cycles): {{{{ error }}}}"
            ),
        ),
        (
            default_name(Role::Console, SourceRecovered),
            format!(
                "{source_prefix} recovered (failing since {{{{ since }}}}, {{{{ failures }}}} failed cycles)"
            ),
        ),
        (
            default_name(Role::Console, CredentialsExpiring),
            format!("{source_prefix} API key expires on {{{{ expires }}}}"),
        ),
    ]
}

#[derive(Debug)]
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

    /// Print the event's line. Fails only when stdout is gone (a closed pipe):
    /// then retrying later is all that can be done.
    fn print(&self, event: &Event) -> Result<(), DeliveryError> {
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

impl ConsoleSink {
    /// A digest's lines, each after its time and the word `digest`, so a
    /// reader of a log tells them from events' lines.
    fn print_digest(&self, digest: &Digest) -> Result<(), DeliveryError> {
        let mut out = std::io::stdout().lock();
        let prefix = format!("{} digest", digest.timestamp);
        digest
            .text_lines()
            .iter()
            .filter(|l| !l.is_empty())
            .try_for_each(|line| writeln!(out, "{prefix} {line}"))
            .and_then(|()| out.flush())
            .map_err(|e| {
                DeliveryError::retry(format!("sink `{}`: cannot write to stdout: {e}", self.name))
            })
    }
}

impl Deliver for ConsoleSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn deliver<'a>(
        &'a self,
        event: &'a Event,
        _: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move { Some(self.print(event)) })
    }

    fn deliver_digest<'a>(
        &'a self,
        digest: &'a Digest,
        _: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move { Some(self.print_digest(digest)) })
    }
}
