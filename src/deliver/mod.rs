//! Delivery: the worker that drains the outbox, and one file per sink.

mod error;

pub use error::DeliveryError;
