pub mod config;
pub mod deliver;
pub mod event;
pub mod secret;
pub mod source;
pub mod store;
