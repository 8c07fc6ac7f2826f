//! The commands that look at what orderwatch holds and act on it —
//! `orders`, `events`, `dead-letters`, `sources` — read from the store, or,
//! while a running orderwatch holds the store, through its API: with
//! `--url`, or by themselves when the config has `listen` and `api_token`.
//! Both ways print the same lines and the same `--json`.

use crate::api::client::{ApiClient, ClientError};
use crate::cli::OrdersSort;
use crate::config::Config;
use crate::event::Event;
use crate::secret::Secret;
use crate::store::{Store, StoreError};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Items asked for per page when reading a list through the API.
const PAGE: usize = 1000;

/// Where the answers come from.
pub enum Backend {
    Store {
        store: Store,
        config: Config,
    },
    Api(ApiClient),
    /// No daemon holds the store and there is no store to read (`sources`
    /// still tells what the config has).
    Stopped(Config),
}

/// How to reach a running orderwatch, from the command line.
pub struct Remote<'a> {
    pub url: Option<&'a str>,
    /// `--token`, or `$ORDERWATCH_API_TOKEN`.
    pub token: Option<&'a str>,
}

fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// The backend for a command: the API at `--url`; else the store; else,
/// when a running orderwatch holds the store and its config has `listen`
/// and `api_token`, that orderwatch's API. `stopped_ok`: a missing store
/// is no error (`sources`).
pub async fn backend(
    config_flag: Option<&Path>,
    remote: &Remote<'_>,
    stopped_ok: bool,
) -> Result<Backend, ExitCode> {
    if let Some(url) = remote.url {
        let token = match remote.token.filter(|t| !t.is_empty()) {
            Some(t) => Secret::new(t),
            None => match load(config_flag)?.api_token {
                Some(t) => t,
                None => {
                    eprintln!(
                        "no API token: pass --token, set $ORDERWATCH_API_TOKEN, or set api_token in the config"
                    );
                    return Err(exit(2));
                }
            },
        };
        return client(url, token).map(Backend::Api);
    }
    let config = load(config_flag)?;
    crate::telemetry::init(&config.log);
    let api = daemon_api(&config, remote);
    // A daemon answering on `listen` holds the store: ask it at once rather
    // than wait for the store's lock to be given up.
    if let Some((url, token)) = &api
        && listening(url).await
    {
        return client(url, token.clone()).map(Backend::Api);
    }
    match Store::open_existing_configured(&config.store, &config.state_dir) {
        Ok(store) => Ok(Backend::Store { store, config }),
        Err(StoreError::Missing { .. }) if stopped_ok => Ok(Backend::Stopped(config)),
        Err(e @ StoreError::Locked { .. }) => match (api, config.listen) {
            (Some((url, token)), _) => client(&url, token).map(Backend::Api),
            (None, Some(addr)) if config.api_token.is_some() => {
                eprintln!(
                    "error: {e}; the running orderwatch's API is on `listen` ({addr}), whose port the system chose at start: pass --url with the address `orderwatch run` logged"
                );
                Err(exit(1))
            }
            _ => {
                eprintln!(
                    "error: {e} (with `listen` and `api_token` in the config, this command asks the running orderwatch instead; or pass --url)"
                );
                Err(exit(1))
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit(1))
        }
    }
}

/// Where this config's daemon serves its API, and the token: only with
/// `listen` (a fixed port) and `api_token`.
fn daemon_api(config: &Config, remote: &Remote<'_>) -> Option<(String, Secret)> {
    let (mut addr, token) = (config.listen?, config.api_token.as_ref()?);
    if addr.port() == 0 {
        return None;
    }
    // A daemon listening on every address is reached on loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let token = remote
        .token
        .filter(|t| !t.is_empty())
        .map_or_else(|| token.clone(), Secret::new);
    Some((format!("http://{addr}"), token))
}

/// Whether something accepts connections at `url`'s address, within a moment.
async fn listening(url: &str) -> bool {
    let Some(addr) = url.strip_prefix("http://") else {
        return false;
    };
    let connect = tokio::net::TcpStream::connect(addr);
    matches!(
        tokio::time::timeout(std::time::Duration::from_millis(500), connect).await,
        Ok(Ok(_))
    )
}

fn load(config_flag: Option<&Path>) -> Result<Config, ExitCode> {
    let path = crate::config::resolve_path(config_flag);
    Config::load(&path).map_err(|e| {
        eprint!("{e}");
        exit(2)
    })
}

fn client(url: &str, token: Secret) -> Result<ApiClient, ExitCode> {
    ApiClient::new(url, token).map_err(|e| {
        eprintln!("error: {e}");
        exit(2)
    })
}

/// What an API call's error means to a command: the source or order it
/// names is unknown (`not_found` decides the exit code), or it failed.
fn api_failed(e: ClientError, not_found: u8) -> ExitCode {
    match e {
        ClientError::NotFound(message) => {
            eprintln!("{message}");
            exit(not_found)
        }
        ClientError::Usage(message) => {
            eprintln!("error: {message}");
            exit(2)
        }
        other => {
            eprintln!("error: {other}");
            exit(1)
        }
    }
}

/// Say that a listing is empty. On stderr: the result itself, on stdout,
/// stays empty for scripts that test for nothing (`[ -z "$(...)" ]`).
fn say_empty(what: &str) {
    eprintln!("{what}");
}

/// One line of `orders list`.
#[derive(Deserialize)]
struct OrderRow {
    source: String,
    order_id: String,
    status: Option<String>,
    revision: u64,
    changed_at: String,
}

impl OrderRow {
    fn of(source: String, order_id: String, snap: crate::store::Snapshot) -> OrderRow {
        OrderRow {
            source,
            order_id,
            status: snap.status,
            revision: snap.revision,
            changed_at: snap.changed_at,
        }
    }
}

#[derive(Deserialize)]
struct OrdersPage {
    orders: Vec<OrderRow>,
    next_cursor: Option<String>,
}

/// `orders list` writes its rows one at a time, the header before the first.
struct OrdersTable {
    json: bool,
    shown: u64,
}

impl OrdersTable {
    fn row(&mut self, out: &mut impl Write, row: &OrderRow) -> std::io::Result<()> {
        if self.json {
            let line = serde_json::json!({
                "source": row.source,
                "order_id": row.order_id,
                "status": row.status,
                "revision": row.revision,
                "changed_at": row.changed_at,
            });
            writeln!(out, "{line}")?;
        } else {
            if self.shown == 0 {
                writeln!(
                    out,
                    "{:<16} {:<24} {:<16} {:>8}  CHANGED",
                    "SOURCE", "ORDER", "STATUS", "REVISION"
                )?;
            }
            writeln!(
                out,
                "{:<16} {:<24} {:<16} {:>8}  {}",
                row.source,
                row.order_id,
                row.status.as_deref().unwrap_or("-"),
                row.revision,
                row.changed_at
            )?;
        }
        self.shown += 1;
        Ok(())
    }
}

pub async fn orders_list(
    backend: Backend,
    source: Option<&str>,
    json: bool,
    sort: OrdersSort,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut table = OrdersTable { json, shown: 0 };
    match backend {
        Backend::Store { store, config } => {
            let Some(sources) = pick_sources(&store, &config, source)? else {
                return Ok(exit(2));
            };
            let rows: Box<dyn Iterator<Item = Result<OrderRow, StoreError>>> = match sort {
                // One walk of the store's index of change times.
                OrdersSort::Changed => Box::new(
                    store
                        .orders_by_change(None)
                        .filter(move |o| {
                            o.as_ref().map_or(true, |o| sources.contains(&o.at.source))
                        })
                        .map(|o| o.map(|o| OrderRow::of(o.at.source, o.at.order_id, o.snapshot))),
                ),
                OrdersSort::Id => Box::new(sources.into_iter().flat_map(move |src| {
                    store
                        .snapshots_of(&src)
                        .map(move |o| o.map(|(id, snap)| OrderRow::of(src.clone(), id, snap)))
                })),
            };
            for row in rows {
                table.row(&mut out, &row?)?;
            }
        }
        Backend::Api(api) => {
            let mut cursor: Option<String> = None;
            loop {
                let mut query = vec![("limit", PAGE.to_string())];
                query.extend(source.map(|s| ("source", s.to_owned())));
                if sort == OrdersSort::Changed {
                    query.push(("sort", "changed".to_owned()));
                }
                query.extend(cursor.take().map(|c| ("cursor", c)));
                let page: OrdersPage = match api.get("/orders", &query).await {
                    Ok(page) => page,
                    Err(e) => return Ok(api_failed(e, 2)),
                };
                for row in &page.orders {
                    table.row(&mut out, row)?;
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Backend::Stopped(_) => return Ok(exit(1)),
    }
    if table.shown == 0 && !json {
        match source {
            Some(s) => say_empty(&format!("no orders of source {s} in the store yet")),
            None => {
                say_empty("no orders in the store yet: the first poll of a source records them")
            }
        }
    }
    Ok(exit(0))
}

/// The sources to read: the one asked for, or every source with snapshots.
/// `None` (said on stderr) for a name that neither the config nor the store
/// knows: a typo, not an empty source.
fn pick_sources(
    store: &Store,
    config: &Config,
    source: Option<&str>,
) -> anyhow::Result<Option<Vec<String>>> {
    let in_store = store.sources()?;
    let Some(name) = source else {
        return Ok(Some(in_store));
    };
    if config.source(name).is_some() || in_store.iter().any(|s| s == name) {
        return Ok(Some(vec![name.to_owned()]));
    }
    let mut known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    for name in &in_store {
        if !known.contains(&name.as_str()) {
            known.push(name);
        }
    }
    eprintln!("no source named {name} (sources: {})", known.join(", "));
    Ok(None)
}

/// What `orders show` prints of one order.
#[derive(Deserialize)]
struct OrderDetail {
    source: String,
    order_id: String,
    status: Option<String>,
    revision: u64,
    changed_at: String,
    listed: bool,
    order: Value,
    /// Oldest first.
    timeline: Vec<TimelineItem>,
}

#[derive(Deserialize)]
struct TimelineItem {
    event: Event,
}

fn write_detail(out: &mut impl Write, d: &OrderDetail) -> anyhow::Result<()> {
    writeln!(out, "source:     {}", d.source)?;
    writeln!(out, "order:      {}", d.order_id)?;
    writeln!(out, "status:     {}", d.status.as_deref().unwrap_or("-"))?;
    writeln!(out, "revision:   {}", d.revision)?;
    writeln!(out, "changed at: {}", d.changed_at)?;
    writeln!(
        out,
        "listed:     {}",
        if d.listed {
            "yes"
        } else {
            "no (left the filtered list)"
        }
    )?;
    writeln!(out, "{}", serde_json::to_string_pretty(&d.order)?)?;
    writeln!(out, "events (newest first):")?;
    if d.timeline.is_empty() {
        writeln!(
            out,
            "  none in the log (a first poll records orders without events)"
        )?;
    }
    for item in d.timeline.iter().rev() {
        writeln!(out, "{}", event_line(&item.event))?;
    }
    Ok(())
}

pub async fn orders_show(
    backend: Backend,
    id: &str,
    source: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut details = Vec::new();
    match backend {
        Backend::Store { store, config } => {
            let Some(sources) = pick_sources(&store, &config, source)? else {
                return Ok(exit(2));
            };
            for src in sources {
                let Some(snap) = store.snapshot(&src, id)? else {
                    continue;
                };
                let timeline = store
                    .timeline(&src, id)?
                    .into_iter()
                    .map(|entry| TimelineItem { event: entry.event })
                    .collect();
                details.push(OrderDetail {
                    source: src,
                    order_id: id.to_owned(),
                    status: snap.status,
                    revision: snap.revision,
                    changed_at: snap.changed_at,
                    listed: snap.listed,
                    order: serde_json::from_str(&snap.order).unwrap_or(Value::Null),
                    timeline,
                });
            }
        }
        Backend::Api(api) => {
            let sources: Vec<String> = match source {
                Some(s) => vec![s.to_owned()],
                None => {
                    let query = [("id", id.to_owned())];
                    match api.get::<OrdersPage>("/orders", &query).await {
                        Ok(page) => page.orders.into_iter().map(|o| o.source).collect(),
                        Err(e) => return Ok(api_failed(e, 2)),
                    }
                }
            };
            for src in sources {
                let path = format!("/orders/{}/{}", segment(&src), segment(id));
                match api.get::<OrderDetail>(&path, &[]).await {
                    Ok(detail) => details.push(detail),
                    Err(ClientError::NotFound(_)) if source.is_some() => {
                        // Unknown source, or unknown order? The list says which.
                        let query = [("source", src.clone()), ("limit", "1".to_owned())];
                        if let Err(e) = api.get::<OrdersPage>("/orders", &query).await {
                            return Ok(api_failed(e, 2));
                        }
                    }
                    Err(ClientError::NotFound(_)) => {}
                    Err(e) => return Ok(api_failed(e, 1)),
                }
            }
        }
        Backend::Stopped(_) => return Ok(exit(1)),
    }
    if details.is_empty() {
        eprintln!("no order {id} in the store");
        return Ok(exit(1));
    }
    let mut out = std::io::stdout().lock();
    for (i, d) in details.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        write_detail(&mut out, d)?;
    }
    Ok(exit(0))
}

/// A path segment with what a URL path cannot hold as it is escaped.
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// One event as `events` and `orders show` print it.
fn event_line(event: &Event) -> String {
    let d = &event.data;
    let change = match (&d.from, &d.to) {
        _ if event.order_id().is_none() => source_summary(d),
        (Some(f), Some(t)) => format!("{f} → {t}"),
        (None, Some(t)) => format!("→ {t}"),
        (Some(f), None) => format!("{f} →"),
        (None, None) => d
            .changes
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!(
        "{}  {:<12} {:<20} {:<22} {}  ({})",
        event.timestamp, d.source, d.order_id, event.kind, change, d.id
    )
}

/// The line of `events` for a source event: what it is about.
fn source_summary(d: &crate::event::EventData) -> String {
    match (&d.since, d.failures, &d.expires) {
        (Some(since), Some(failures), _) => format!("since {since}, {failures} failed cycles"),
        (_, _, Some(expires)) => format!("API key expires {expires}"),
        _ => String::new(),
    }
}

#[derive(Deserialize)]
struct EventsPage {
    events: Vec<Box<RawValue>>,
    next_cursor: Option<String>,
}

pub async fn events(
    backend: Backend,
    order: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut shown = 0;
    let write = |out: &mut std::io::StdoutLock, text: &str| -> anyhow::Result<bool> {
        let Ok(event) = serde_json::from_str::<Event>(text) else {
            return Ok(false);
        };
        if order.is_some_and(|o| o != event.data.order_id) {
            return Ok(false);
        }
        if json {
            writeln!(out, "{text}")?;
        } else {
            writeln!(out, "{}", event_line(&event))?;
        }
        Ok(true)
    };
    match backend {
        Backend::Store { store, .. } => {
            for text in store.recent_events() {
                if shown >= limit {
                    break;
                }
                if write(&mut out, &text?)? {
                    shown += 1;
                }
            }
        }
        Backend::Api(api) => {
            let mut cursor: Option<String> = None;
            while shown < limit {
                let mut query = vec![("limit", (limit - shown).min(PAGE).to_string())];
                query.extend(order.map(|o| ("order", o.to_owned())));
                query.extend(cursor.take().map(|c| ("cursor", c)));
                let page: EventsPage = match api.get("/events", &query).await {
                    Ok(page) => page,
                    Err(e) => return Ok(api_failed(e, 1)),
                };
                for raw in &page.events {
                    if shown < limit && write(&mut out, raw.get())? {
                        shown += 1;
                    }
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Backend::Stopped(_) => return Ok(exit(1)),
    }
    if shown == 0 && !json {
        match order {
            Some(o) => say_empty(&format!("no events about order {o} in the log")),
            None => say_empty("no events in the log yet"),
        }
    }
    Ok(exit(0))
}

#[derive(Deserialize)]
struct DeadLettersPage {
    dead_letters: Vec<Value>,
    next_cursor: Option<String>,
}

pub async fn dead_letters_list(backend: Backend, json: bool) -> anyhow::Result<ExitCode> {
    let mut all: Vec<Value> = Vec::new();
    match backend {
        Backend::Store { store, .. } => {
            all = store
                .dead_letters()?
                .iter()
                .map(crate::api::dead_letter_json)
                .collect();
        }
        Backend::Api(api) => {
            let mut cursor: Option<String> = None;
            loop {
                let mut query = vec![("limit", PAGE.to_string())];
                query.extend(cursor.take().map(|c| ("cursor", c)));
                let page: DeadLettersPage = match api.get("/dead-letters", &query).await {
                    Ok(page) => page,
                    Err(e) => return Ok(api_failed(e, 1)),
                };
                all.extend(page.dead_letters);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Backend::Stopped(_) => return Ok(exit(1)),
    }
    if all.is_empty() && !json {
        say_empty("no dead letters");
    }
    let mut out = std::io::stdout().lock();
    for dead in &all {
        if json {
            writeln!(out, "{dead}")?;
        } else {
            let text = |key: &str| dead[key].as_str().unwrap_or_default().to_owned();
            writeln!(
                out,
                "{}  {}  {} {}  attempts={}  {}",
                text("id"),
                text("event_id"),
                text("type"),
                text("order_id"),
                dead["attempts"].as_u64().unwrap_or(0),
                text("reason")
            )?;
        }
    }
    Ok(exit(0))
}

pub async fn dead_letters_replay(
    backend: Backend,
    ids: &[String],
    all: bool,
) -> anyhow::Result<ExitCode> {
    if ids.is_empty() && !all {
        eprintln!("name the entries to replay (event id or SINK:SEQ), or pass --all");
        return Ok(exit(2));
    }
    let n = match backend {
        Backend::Store { store, .. } => {
            let n = store.replay(if all { None } else { Some(ids) })?;
            store.flush()?;
            n
        }
        Backend::Api(api) => {
            let body = if all {
                serde_json::json!({ "all": true })
            } else {
                serde_json::json!({ "ids": ids })
            };
            match api.post::<Value>("/dead-letters/replay", &body).await {
                Ok(answer) => answer["replayed"].as_u64().unwrap_or(0) as usize,
                Err(e) => return Ok(api_failed(e, 1)),
            }
        }
        Backend::Stopped(_) => return Ok(exit(1)),
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{n} entr{} put back in the outbox",
        if n == 1 { "y" } else { "ies" }
    )?;
    Ok(exit(if n == 0 && !all { 1 } else { 0 }))
}

#[derive(Deserialize)]
struct SourcesAnswer {
    sources: Vec<Value>,
}

/// `sources`: each source's health, last cycle, next poll and last error,
/// from the running orderwatch; without one, what the config says (health
/// `stopped`).
pub async fn sources(backend: Backend, json: bool) -> anyhow::Result<ExitCode> {
    let list: Vec<Value> = match backend {
        Backend::Api(api) => match api.get::<SourcesAnswer>("/sources", &[]).await {
            Ok(answer) => answer.sources,
            Err(e) => return Ok(api_failed(e, 1)),
        },
        Backend::Store { config, .. } | Backend::Stopped(config) => config
            .sources
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "interval": humantime::format_duration(s.interval).to_string(),
                    "health": "stopped",
                    "polling": false,
                    "consecutive_failures": 0,
                    "last_error": null,
                    "last_cycle_at": null,
                    "last_ok_at": null,
                    "next_poll_at": null,
                })
            })
            .collect(),
    };
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "{:<16} {:<8} {:<8} {:<21} {:<21} ERROR",
            "SOURCE", "HEALTH", "INTERVAL", "LAST CYCLE", "NEXT POLL"
        )?;
    }
    for s in &list {
        if json {
            writeln!(out, "{s}")?;
            continue;
        }
        let text = |key: &str| s[key].as_str().unwrap_or("-").to_owned();
        let error = match (s["last_error"].as_str(), s["consecutive_failures"].as_u64()) {
            (Some(e), Some(n)) if n > 0 => format!("{n} failed cycle(s): {e}"),
            (Some(e), _) => e.to_owned(),
            _ => "-".to_owned(),
        };
        writeln!(
            out,
            "{:<16} {:<8} {:<8} {:<21} {:<21} {}",
            text("name"),
            text("health"),
            text("interval"),
            text("last_cycle_at"),
            text("next_poll_at"),
            error.escape_debug()
        )?;
    }
    Ok(exit(0))
}
