//! Delivery: the worker that drains the outbox, and one file per sink.
//!
//! - `worker`: claims due entries, per-order order, backoff, dead letters
//! - `sink`: the closed enum of sinks
//! - `webhook` (+ `signature`), `slack`, `email`, `console`: one file per sink
//! - `template`: minijinja templates, checked at start-up, escaping per target

mod answer;
pub mod console;
pub mod email;
mod error;
mod signature;
mod sink;
pub mod slack;
pub mod template;
mod webhook;
mod worker;

pub use error::DeliveryError;
pub use sink::Sink;
pub use template::{Templates, sample_event};
pub use worker::{Dispatcher, NamedSink, PassReport};
