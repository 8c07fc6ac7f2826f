//! Delivery: the worker that drains the outbox, and the sinks.
//!
//! - `worker`: claims due entries, per-order order, backoff, dead letters
//! - `sink`: a configured sink, behind the [`sinks::Deliver`] trait
//! - `sinks`: one module per kind of sink (webhook, slack, email, console,
//!   http, teams, google-chat, nats), what they share, and the registry of them
//! - `template`: minijinja templates, checked at start-up, escaping per target
//! - `answer`: what HTTP sinks keep of a receiver's answer
//! - `gate`: spacing between one sink's messages

mod answer;
mod error;
mod gate;
mod sink;
pub mod sinks;
pub mod template;
mod worker;

pub(crate) use answer::{causes, transport_error};
pub use error::DeliveryError;
pub use sink::Sink;
pub use template::{Templates, sample_event};
pub use worker::{Dispatcher, NamedSink, PassReport};
