//! The integration tests: one binary, real HTTP on 127.0.0.1, the real
//! simulator, real receivers, the real `orderwatch` binary.

mod bounds;
mod config;
mod crash;
mod crash_loop;
mod delivery;
mod disk_full;
mod fault_matrix;
mod flow;
mod flow_faults;
mod helpers;
mod hostile_listing;
mod hostile_source;
mod http_sink;
mod incremental;
mod limits;
mod listen_abuse;
mod nats;
mod newcomer;
mod once_outcome;
mod ops;
mod ordering_orders;
mod outage;
mod readonly;
mod receivers;
mod retry_policy;
mod secrets;
mod shutdown;
mod sim_api;
mod sinks;
mod source;
mod source_ops;
mod startup;
mod store_faults;
