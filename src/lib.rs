//! orderwatch watches Orange Business orders and notifies people when they change.
//!
//! This branch carries only the simulator; `lib.rs` is merged by hand.

pub mod simulator;
