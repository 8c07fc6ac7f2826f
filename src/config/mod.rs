//! The configuration: YAML schema, `${VAR}` substitution, and validation that
//! lists every problem with its key path and line (README.md "Configuration").
//!
//! Reading happens in three steps: the YAML becomes a tree of nodes with lines
//! (`yaml`), the tree is decoded into the typed structs below while every
//! problem is collected (`decode`, `schema`), then cross-references are checked
//! (names unique, routes naming known sinks). Nothing here touches the
//! network: a bad config never reaches Orange.

mod decode;
mod env;
mod schedules;
mod schema;
mod yaml;

pub use decode::Problem;
pub(crate) use decode::{Decoder, Fields, MILLI, index, opt};
pub use env::{Environment, ProcessEnv};
pub(crate) use env::{read_secret_file, substitute};
pub(crate) use yaml::{Node, NodeValue, parse as parse_yaml};

use crate::deliver::sinks::SinkSettings;
use crate::event::EventType;
use crate::retry::RetryPolicy;
use crate::secret::Secret;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the sled store lives.
    pub state_dir: PathBuf,
    /// Health and metrics address; `None` disables the HTTP server.
    pub listen: Option<SocketAddr>,
    pub log: LogConfig,
    pub sources: Vec<SourceConfig>,
    pub sinks: Vec<SinkConfig>,
    pub routes: Vec<RouteConfig>,
    /// The retry policy of every sink without its own `delivery:`.
    pub delivery: RetryPolicy,
    /// On SIGTERM/SIGINT, how long deliveries in flight may still finish
    /// before they are abandoned (their entries stay queued).
    pub shutdown_grace: Duration,
    /// Enables the operator API under `/api/v1/` on `listen`; every call
    /// must carry it as a bearer token.
    pub api_token: Option<Secret>,
    /// Which store engine holds the state: sled in `state_dir` (the
    /// default), or a PostgreSQL database.
    pub store: StoreConfig,
}

/// The `store:` key (README.md "Store backends").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Sled,
    /// The URL may carry a password: a secret, like every credential.
    Postgres {
        url: Secret,
    },
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `orderwatch=debug`; `RUST_LOG` wins.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    OrderTracking,
    Ordering,
    Generic,
}

/// Which collection of the Ordering API a source reads (README
/// "Sources"): its requests, or the commercial orders they result in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Requests,
    Orders,
}

/// What an API (and, for `ordering`, its resource) gives a source that
/// does not say otherwise.
pub struct Preset {
    pub path: &'static str,
    pub id_field: &'static str,
    pub status_field: &'static str,
    pub closed_statuses: &'static [&'static str],
    pub watch: &'static [&'static str],
}

/// Ordering answers at most this many items a page (its published limit,
/// for requests and orders alike), and this many when asked for none.
pub const ORDERING_MAX_PAGE: u64 = 250;
/// The page size of the other APIs when the config gives none.
pub const DEFAULT_PAGE_SIZE: u64 = 100;

impl ApiKind {
    /// The preset of this API and resource; `generic` has none.
    pub fn preset(self, resource: Resource) -> Option<Preset> {
        match (self, resource) {
            (ApiKind::OrderTracking, _) => Some(Preset {
                path: "/order-tracking/b2b/v1/orders",
                id_field: "/id",
                status_field: "/status",
                closed_statuses: &["Closed"],
                watch: &[],
            }),
            (ApiKind::Ordering, Resource::Requests) => Some(Preset {
                path: "/ordering/b2b/v2/requests",
                id_field: "/id",
                status_field: "/step",
                closed_statuses: &[],
                watch: &[],
            }),
            (ApiKind::Ordering, Resource::Orders) => Some(Preset {
                path: "/ordering/b2b/v2/orders",
                id_field: "/id",
                status_field: "/status",
                closed_statuses: &["COMPLETED", "CANCELLED", "REJECTED", "EXPIRED"],
                watch: &["/deliveryStatus", "/isOverdue", "/keyDates/expectedAt"],
            }),
            (ApiKind::Generic, _) => None,
        }
    }

    /// The largest page the API serves, if it publishes one.
    pub fn max_page_size(self) -> Option<u64> {
        match self {
            ApiKind::Ordering => Some(ORDERING_MAX_PAGE),
            ApiKind::OrderTracking | ApiKind::Generic => None,
        }
    }
}

/// `incremental:` — read only what changed since the last cycle, newest
/// first by `cursor`, with a full listing every `full_every`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementalConfig {
    /// JSON pointer to the order's last-change time (RFC 3339).
    pub cursor: String,
    /// How far before the high-water mark a cycle still reads: changes
    /// stamped a little before they became visible, clock steps.
    pub overlap: Duration,
    pub full_every: Duration,
}

/// `api_key_expires:` — the day a source's API key expires (Orange's keys
/// last two years), read as the start of that day, UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExpiry {
    /// As written, `2028-06-30`: what `source.credentials_expiring` says.
    pub date: String,
    pub at: std::time::SystemTime,
}

impl KeyExpiry {
    /// A plain date, `YYYY-MM-DD`, that exists in the calendar.
    pub fn parse(text: &str) -> Option<KeyExpiry> {
        let text = text.trim();
        let shape = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !shape {
            return None;
        }
        let at = humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).ok()?;
        Some(KeyExpiry {
            date: text.to_owned(),
            at,
        })
    }
}

impl IncrementalConfig {
    /// The `sort` value: newest first, the pointer's segments joined by `.`
    /// as Orange names nested fields.
    pub fn sort(&self) -> String {
        let field = self
            .cursor
            .trim_start_matches('/')
            .split('/')
            .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
            .collect::<Vec<_>>()
            .join(".");
        format!("-{field}")
    }
}

/// `due:` — where an order says when it is due, and how long before that
/// `order.due_soon` is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueConfig {
    /// JSON pointer to the due date (an RFC 3339 time or a plain date).
    pub field: String,
    pub warn_before: Duration,
}

/// `timezone:` — how a source's plain dates are read (a name of the IANA
/// time zone database, bundled in the binary: no system tzdata needed).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceTimezone {
    /// As written, `Europe/Paris`; `UTC` by default.
    pub name: String,
    pub zone: jiff::tz::TimeZone,
}

impl SourceTimezone {
    pub fn utc() -> SourceTimezone {
        SourceTimezone {
            name: "UTC".to_owned(),
            zone: jiff::tz::TimeZone::UTC,
        }
    }

    /// A zone of the bundled database, by its IANA name.
    pub fn parse(name: &str) -> Option<SourceTimezone> {
        let name = name.trim();
        let zone = jiff::tz::db().get(name).ok()?;
        Some(SourceTimezone {
            name: name.to_owned(),
            zone,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPoll {
    /// Record what is there and say nothing.
    Baseline,
    /// Announce every order found as `order.created`.
    Notify,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub api: ApiKind,
    pub base_url: Url,
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub api_key: Secret,
    pub interval: Duration,
    /// Query parameters added to every list call, in file order.
    pub filters: Vec<(String, String)>,
    pub sort: Option<String>,
    pub page_size: u32,
    pub max_requests_per_minute: u32,
    /// Page fetches in flight at once (within the request budget).
    pub concurrency: u32,
    pub timeout: Duration,
    /// Retries of a 5xx or timed-out call before the cycle fails.
    pub retries: u32,
    /// Wait before the first retry; doubles each time.
    pub retry_backoff: Duration,
    pub first_poll: FirstPoll,
    /// `requests` unless `api: ordering` says `resource: orders`.
    pub resource: Resource,
    pub incremental: Option<IncrementalConfig>,
    /// How long every cycle must have failed (and at least two cycles)
    /// before `source.failing` is sent.
    pub alert_after: Duration,
    /// When the API key expires: `source.credentials_expiring` 30 days before.
    pub api_key_expires: Option<KeyExpiry>,
    /// `order.due_soon` and `order.overdue` from the order's due date.
    pub due: Option<DueConfig>,
    /// `order.stalled` once an open order's status is this old.
    pub stalled_after: Option<Duration>,
    pub timezone: SourceTimezone,
    pub path: String,
    pub id_field: String,
    pub status_field: String,
    pub watch: Vec<String>,
    pub closed_statuses: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    /// Its `type:`.
    pub type_name: &'static str,
    /// Its own section, decoded and parsed by the module of its `type`.
    pub settings: Arc<dyn SinkSettings>,
    /// The top-level `delivery:`, with what its own `delivery:` overrides.
    pub retry: RetryPolicy,
    /// At most this many deliveries start in a minute; `None`: no cap.
    pub max_per_minute: Option<u32>,
    /// Its `digest:`: what is routed to it is kept and sent as one
    /// message per period.
    pub digest: Option<crate::digest::DigestSchedule>,
}

/// Which events go to which sinks. Empty filter lists match everything.
#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    pub sinks: Vec<String>,
    pub sources: Vec<String>,
    pub events: Vec<EventType>,
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// JSON pointer into the order → expected value.
    pub matches: Vec<(String, serde_json::Value)>,
    /// When what it matches is held, and delivered when they end.
    pub quiet_hours: Option<crate::route::QuietHours>,
}

/// A config that cannot be used, with every problem found.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{} in the configuration:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "  {}", self.file.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if p.path.is_empty() {
                writeln!(f, ": {}", p.message)?;
            } else {
                writeln!(f, ": {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read and validate the file, with variables from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = Config::read_text(path)?;
        Config::parse(&text, path, &ProcessEnv)
    }

    /// The file's text, or the one problem that it cannot be read as text.
    pub fn read_text(path: &Path) -> Result<String, ConfigError> {
        let whole_file = |line, message| ConfigError {
            file: path.to_owned(),
            problems: vec![Problem {
                path: String::new(),
                line,
                message,
            }],
        };
        let bytes = std::fs::read(path).map_err(|e| {
            whole_file(
                None,
                match e.kind() {
                    std::io::ErrorKind::NotFound => format!(
                        "no such file. The config is the file given by --config, else \
                         ${CONFIG_VAR}, else ./orderwatch.yaml; config.example.yaml, in \
                         orderwatch's source beside README.md, has every key to start from"
                    ),
                    _ => format!("cannot read the file: {e}"),
                },
            )
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let bytes = e.as_bytes();
            let good = &bytes[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            let column = good.len() - good.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1) + 1;
            whole_file(
                Some(line),
                format!(
                    "not UTF-8 text (column {column} has a byte that is not UTF-8): save the file as UTF-8"
                ),
            )
        })?;
        Ok(text)
    }

    /// Parse and validate YAML text; `file` only names it in errors.
    pub fn parse(text: &str, file: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            file: file.to_owned(),
            problems,
        };
        let root = yaml::parse(text).map_err(|(message, line)| {
            fail(vec![Problem {
                path: String::new(),
                line,
                message: format!("not valid YAML: {message}"),
            }])
        })?;
        let mut decoder = decode::Decoder::new(env);
        let config = schema::config(&mut decoder, &root);
        match config {
            Some(config) if decoder.problems.is_empty() => Ok(config),
            _ => {
                let mut problems = decoder.problems;
                if problems.is_empty() {
                    problems.push(Problem {
                        path: String::new(),
                        line: None,
                        message: "the configuration is incomplete".to_owned(),
                    });
                }
                problems.sort_by_key(|p| p.line.unwrap_or(0));
                Err(fail(problems))
            }
        }
    }

    pub fn sink(&self, name: &str) -> Option<&SinkConfig> {
        self.sinks.iter().find(|s| s.name == name)
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// The variable naming the config file when `--config` is not given.
pub const CONFIG_VAR: &str = "ORDERWATCH_CONFIG";

/// The config file to use: the flag, then `$ORDERWATCH_CONFIG`, then `./orderwatch.yaml`.
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_owned();
    }
    match std::env::var_os(CONFIG_VAR) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("orderwatch.yaml"),
    }
}
