//! The sinks, each one module that owns all of it: its config section (keys,
//! defaults, validation with key paths), its parsed form, the templates it
//! renders, its delivery and how it reads a receiver's answer.
//!
//! A sink module exports one [`SinkType`]; [`SINK_TYPES`] lists them, and
//! that list is all the config reader, the template checks and the
//! dispatcher know of sinks. Adding a sink is one new module here and one
//! line in [`SINK_TYPES`].

mod chat;
mod console;
mod email;
mod google_chat;
mod http;
mod nats;
mod signature;
mod slack;
mod teams;
mod webhook;

use super::DeliveryError;
use super::template::{Role, Templates};
use crate::config::{Decoder, Fields};
use crate::digest::Digest;
use crate::event::Event;
use crate::shutdown::Shutdown;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Every kind of sink, by its `type:` in the config.
pub(crate) const SINK_TYPES: &[SinkType] = &[
    webhook::TYPE,
    slack::TYPE,
    email::TYPE,
    console::TYPE,
    http::TYPE,
    teams::TYPE,
    google_chat::TYPE,
    nats::TYPE,
];

/// One kind of sink, as the config reader sees it.
pub(crate) struct SinkType {
    /// Its `type:` in the config.
    pub(crate) name: &'static str,
    /// The keys of its own section (besides those every sink has).
    pub(crate) keys: &'static [&'static str],
    /// Its built-in templates: (name in the environment, source).
    pub(crate) defaults: fn() -> Vec<(String, String)>,
    /// Read its section: problems go to the decoder, with their key paths.
    pub(crate) decode: fn(&mut Decoder, &Fields) -> Option<Arc<dyn SinkSettings>>,
}

/// A sink's section, decoded and parsed: what [`SinkSettings::build`] needs
/// is already typed (addresses, URLs, keys), so nothing is parsed again.
pub trait SinkSettings: std::fmt::Debug + Send + Sync {
    /// The templates it was given: (what for, config key, source). Those it
    /// was not given use the built-in ones.
    fn templates(&self) -> Vec<(Role, &'static str, &str)> {
        Vec::new()
    }

    /// The sink itself, ready to deliver; nothing is contacted yet.
    fn build(&self, name: &str, templates: Arc<Templates>) -> Result<Box<dyn Deliver>, String>;
}

/// A sink that delivers events.
pub trait Deliver: std::fmt::Debug + Send + Sync {
    /// The sink for logs: name and, for URLs, scheme and host only.
    fn describe(&self) -> String;

    /// Deliver one event; `json` is its stored JSON (a webhook's body as it
    /// is). `None` when `shutdown` fired before the delivery started (a
    /// message waiting for its turn under a sink's rate has not started).
    fn deliver<'a>(
        &'a self,
        event: &'a Event,
        json: &'a str,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>>;

    /// Deliver one digest (README.md "Digests"), rendered as this kind of
    /// sink renders one; `json` is its stored document (a webhook's body).
    /// `None` as for [`Deliver::deliver`].
    fn deliver_digest<'a>(
        &'a self,
        digest: &'a Digest,
        json: &'a str,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>>;
}

/// A sink's one optional template, as [`SinkSettings::templates`] lists it.
pub(crate) fn own_template<'a>(
    role: Role,
    key: &'static str,
    source: &'a Option<String>,
) -> Vec<(Role, &'static str, &'a str)> {
    source.iter().map(|t| (role, key, t.as_str())).collect()
}

/// The kind of sink named `name`, if there is one.
pub(crate) fn sink_type(name: &str) -> Option<&'static SinkType> {
    SINK_TYPES.iter().find(|t| t.name == name)
}

/// A sink's `headers:`, checked: valid names and values, none of those
/// orderwatch sets itself (`reserved`, lowercase).
pub(crate) fn header_map(
    d: &mut Decoder,
    f: &Fields,
    headers: &[(String, String)],
    reserved: &[&str],
) -> Option<reqwest::header::HeaderMap> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let line = f.get("headers").and_then(|n| n.line);
    let mut map = HeaderMap::new();
    let mut ok = true;
    for (name, value) in headers {
        let problem = match HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => Some(format!("`{name}` is not a valid header name")),
            Ok(header) if reserved.contains(&header.as_str()) => Some(format!(
                "`{name}` is set by orderwatch and cannot be overridden"
            )),
            Ok(header) => match HeaderValue::from_str(value) {
                Ok(value) => {
                    map.insert(header, value);
                    None
                }
                Err(_) => Some(format!("header `{name}` has a value that cannot be sent")),
            },
        };
        if let Some(message) = problem {
            d.problem(f.path("headers"), line, message);
            ok = false;
        }
    }
    ok.then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_types_and_their_built_in_templates_have_names_of_their_own() {
        let mut types: Vec<&str> = SINK_TYPES.iter().map(|t| t.name).collect();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), SINK_TYPES.len(), "two sink types share a name");
        // A template role's prefix names its defaults: two sinks choosing
        // the same prefix would silently share (and overwrite) them.
        let mut names: Vec<String> = SINK_TYPES
            .iter()
            .flat_map(|t| (t.defaults)())
            .map(|(name, _)| name)
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            all,
            "two sinks' built-in templates share a name"
        );
    }
}
