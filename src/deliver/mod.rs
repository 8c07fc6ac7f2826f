//! Delivery: the worker that drains the outbox, and one file per sink.

mod error;
mod signature;
mod sink;
mod webhook;
mod worker;

pub use error::DeliveryError;
pub use signature::sign;
pub use sink::Sink;
pub use webhook::WebhookSink;
pub use worker::{Dispatcher, NamedSink, PassReport};
