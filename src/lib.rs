//! orderwatch watches a company's orders with Orange Business (Order Tracking
//! API v1 and Ordering API v2) and tells people when they change: signed HTTP
//! webhooks, Slack-style chat, Microsoft Teams, Google Chat, email, any HTTP
//! API, NATS JetStream; and when the watching itself fails.
//!
//! # Public surface
//!
//! The library is what the `orderwatch` binary, the integration tests, the
//! benchmarks and the fuzz targets need, and nothing more; every module but
//! [`diff`] is private, so the compiler reports what nothing uses.
//!
//! - [`Cli`] and [`run`]: the command line, parsed and run to an exit code
//!   (all the binary calls)
//! - [`App`]: one orderwatch built from a [`Config`]: [`App::bind`] binds the
//!   `listen` port first (port 0 gives its real port, [`App::local_addr`]),
//!   then [`App::run`] until a shutdown future resolves, or [`App::once`]
//! - [`Config`], [`SourceConfig`], [`SinkKind`]: the parsed configuration
//!   ([`Config::parse`] lists every problem)
//! - [`Templates`], [`sample_event`]: the compiled sink templates, and the
//!   event `notify-test` sends
//! - [`SlackSink`], [`EmailSink`], [`DeliveryError`]: two sinks driven
//!   directly against real servers, and what a delivery attempt ends with
//! - [`SourceClient`], [`Page`], [`Detail`], [`ApiErrorKind`] and the read
//!   bounds [`MAX_ORDER_BYTES`], [`MAX_PAGE_BYTES`], [`MAX_LISTED_ORDERS`]:
//!   one source's client of Orange
//! - [`Event`], [`EventType`]: the event (an order's change, or news of a
//!   source), as webhooks receive it
//! - [`diff`], [`Snapshot`]: the pure comparison of an order with its
//!   snapshot (benchmarked and fuzzed)
//! - [`SCHEMA_VERSION`]: the store's schema version
//! - [`Store`], with what it takes and gives ([`Commit`], [`NewEvent`],
//!   [`SyncState`], [`SyncUpdate`], [`SourceHealth`], [`Leadership`], [`StoreError`], [`DeliveryStatus`],
//!   [`now_ms`], [`EVENT_LOG_LEN`]): the store handle on sled or
//!   PostgreSQL, which one contract suite drives on both
//!
//! # Layout
//!
//! The modules follow the data: orders come in at `source`, are compared in
//! `diff`, committed by `store` together with their outbox entries, and leave
//! through `deliver`.
//!
//! - `cli`: the commands of the command line
//! - `inspect`: `orders`, `events`, `dead-letters`, `sources`: from the
//!   store, or through a running orderwatch's API
//! - `config`: the YAML schema, `${VAR}` substitution, validation listing every problem
//! - `telemetry`: logs as text or JSON
//! - `app`: wires a run: store, pollers, dispatcher, HTTP; the shutdown order
//! - `shutdown`: the handle every loop selects on to stop
//! - `supervise`: restarts a loop that dies, and says so on `/healthz`
//! - `source`: reading Orange: token cache, request budget, paging, typed errors
//! - `poll`: one cycle: pages → diff → commit; vanished orders resolved by id
//! - `leader`: which replica polls a source, asked before each cycle
//! - `health`: a source's failed cycles in a row, and the source events
//!   (`source.failing`...) they and its API key's expiry call for
//! - [`diff`]: pure: (snapshot, order) → events
//! - `event`: the event (about an order or a source), its type and deterministic id
//! - `timer`: what comes with time: due dates (`order.due_soon`,
//!   `order.overdue`) and stalled orders, from the store's index by fire time
//! - `store`: snapshots, outbox, dead letters, event log, behind one trait:
//!   sled (the only module that imports sled) or PostgreSQL
//! - `route`: which sinks an event goes to, and when (a route's quiet hours)
//! - `digest`: a sink's digest: its periods, and the one message per period
//! - `deliver`: the outbox worker and the sinks
//! - `demo`: simulator + daemon + console sink in one process
//! - `http`: `/healthz`, `/readyz`, `/metrics`
//! - `api`: the operator API under `/api/v1/`, behind `api_token`, and its
//!   client for the command line
//! - `ui`: the web UI under `/ui/`, on the API's handlers, behind a login
//!   with the same token
//! - `control`: a sink's pause switch and a source's "poll now", held by
//!   the loops, flipped by the API
//! - `reload`: SIGHUP and `POST /api/v1/reload`: the new config read and
//!   checked, what it changes, the outcome logged and counted
//! - `secret`: a string that never prints itself, and the redactor of outside text
//! - `clamp`: durations from outside (`Retry-After`, `expires_in`), clamped
//! - `metrics`: every metric's name and description
//! - `retry`: the one retry policy: backoff with jitter, when to give up

mod api;
mod app;
mod clamp;
mod cli;
mod config;
mod control;
mod deliver;
mod demo;
pub mod diff;
mod digest;
mod event;
mod health;
mod http;
mod inspect;
mod leader;
mod metrics;
mod poll;
mod reload;
mod retry;
mod route;
mod secret;
mod shutdown;
mod source;
mod store;
mod supervise;
mod telemetry;
mod timer;
mod ui;

pub use app::App;
pub use cli::{Cli, run};
pub use config::{Config, SourceConfig};
pub use deliver::{DeliveryError, Sink, Templates, sample_event};
pub use event::{Event, EventType};
pub use source::{
    ApiErrorKind, Detail, MAX_LISTED_ORDERS, MAX_ORDER_BYTES, MAX_PAGE_BYTES, Page, SourceClient,
};
pub use store::{
    Commit, DeliveryStatus, DueDate, EVENT_LOG_LEN, FiredTimer, Hold, IndexBuild, IndexMode,
    Leadership, NewDigest, NewEvent, OrderTimes, Routed, SCHEMA_VERSION, Snapshot, SourceHealth,
    Store, StoreError, SyncState, SyncUpdate, TimerKind, TimerSettings, TimerUpdate, now_ms,
};
