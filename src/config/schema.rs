//! The schema of README.md "Configuration": one function per section, each
//! reading its keys through the decoder, with defaults, then the checks that
//! span sections (unique names, routes naming known sinks).

use super::decode::{Decoder, Fields, MILLI, index, opt, suggestion};
use super::yaml::{Node, NodeValue};
use super::*;
use crate::deliver::sinks::{SINK_TYPES, sink_type};
use crate::retry::{Backoff, RetryPolicy};

const TOP: &[&str] = &[
    "state_dir",
    "listen",
    "log",
    "sources",
    "sinks",
    "routes",
    "delivery",
    "shutdown_grace",
    "api_token",
    "store",
];
const SOURCE: &[&str] = &[
    "name",
    "api",
    "base_url",
    "token_url",
    "client_id",
    "client_secret",
    "api_key",
    "interval",
    "filters",
    "sort",
    "page_size",
    "max_requests_per_minute",
    "concurrency",
    "timeout",
    "retries",
    "retry_backoff",
    "first_poll",
    "resource",
    "incremental",
    "path",
    "id_field",
    "status_field",
    "watch",
    "closed_statuses",
    "alert_after",
    "api_key_expires",
    "due",
    "stalled_after",
    "timezone",
];
/// Keys every sink has, whatever its type.
const SINK: &[&str] = &["name", "type", "max_per_minute", "delivery", "digest"];
const ROUTE: &[&str] = &[
    "sinks",
    "sources",
    "events",
    "from",
    "to",
    "match",
    "quiet_hours",
];
const DELIVERY: &[&str] = &["max_attempts", "max_age", "backoff"];
const BACKOFF: &[&str] = &["initial", "max"];
const LOG: &[&str] = &["format", "level"];
const INCREMENTAL: &[&str] = &["cursor", "overlap", "full_every"];
const STORE: &[&str] = &["backend", "url"];
const DUE: &[&str] = &["field", "warn_before"];

/// How long deliveries in flight may finish after SIGTERM (README "Commands").
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The shortest `api_token` accepted.
const MIN_API_TOKEN_CHARS: usize = 16;
const SECOND: Duration = Duration::from_secs(1);
/// How long a source fails before `source.failing` (README "Source health").
const DEFAULT_ALERT_AFTER: Duration = Duration::from_secs(15 * 60);
/// Where Orange's Ordering orders keep their expected delivery date (and
/// the simulator's Order Tracking orders too).
const DEFAULT_DUE_FIELD: &str = "/keyDates/expectedAt";
const DEFAULT_WARN_BEFORE: Duration = Duration::from_secs(3 * 86_400);

pub(crate) fn config(d: &mut Decoder, root: &Node) -> Option<Config> {
    let top = d.map(root, "", TOP)?;
    let state_dir = match top.get("state_dir") {
        Some(n) => d.nonempty_string(n, "state_dir").map(PathBuf::from),
        None => Some(PathBuf::from("./data")),
    };
    let listen = match top.get("listen") {
        Some(n) => d
            .string(n, "listen")
            .and_then(|text| match text.trim().parse::<SocketAddr>() {
                Ok(addr) => Some(Some(addr)),
                Err(_) => {
                    d.problem(
                        "listen",
                        n.line,
                        "must be an address with a port, such as 127.0.0.1:9464",
                    );
                    None
                }
            }),
        None => Some(None),
    };
    let log = match top.get("log") {
        Some(n) => log(d, n),
        None => Some(LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }),
    };
    let sources = list_of(d, &top, "sources", true, source);
    let sinks = list_of(d, &top, "sinks", false, sink);
    let routes = list_of(d, &top, "routes", false, route);
    let delivery = match top.get("delivery") {
        Some(n) => delivery(d, n, "delivery")
            .and_then(|o| o.over(d, RetryPolicy::default(), "delivery", n.line)),
        None => Some(RetryPolicy::default()),
    };
    // A sink's own `delivery:` keys replace the top-level ones, key by key.
    let sinks = match (sinks, delivery) {
        (Some(sinks), Some(top)) => {
            let mut out = Vec::with_capacity(sinks.len());
            for (i, (mut sink, own)) in sinks.into_iter().enumerate() {
                let path = format!("sinks[{i}].delivery");
                if let Some(retry) = own.over(d, top, &path, own.backoff_line) {
                    sink.retry = retry;
                }
                out.push(sink);
            }
            Some(out)
        }
        (sinks, _) => sinks.map(|s| s.into_iter().map(|(sink, _)| sink).collect()),
    };
    let shutdown_grace = match top.get("shutdown_grace") {
        Some(n) => d.duration(n, "shutdown_grace", Duration::ZERO),
        None => Some(DEFAULT_SHUTDOWN_GRACE),
    };

    let api_token = match top.get("api_token") {
        Some(n) => api_token(d, n, listen.as_ref()),
        None => Some(None),
    };

    let store = match top.get("store") {
        Some(n) => store(d, n),
        None => Some(StoreConfig::Sled),
    };

    cross_check(d, &top);
    Some(Config {
        state_dir: state_dir?,
        listen: listen?,
        log: log?,
        sources: sources?,
        sinks: sinks?,
        routes: routes?,
        delivery: delivery?,
        shutdown_grace: shutdown_grace?,
        api_token: api_token?,
        store: store?,
    })
}

/// `store: { backend: sled | postgres, url: ... }`: postgres needs a
/// `postgres://` URL, sled takes none. The URL is a secret (it may carry a
/// password): no message here echoes it.
fn store(d: &mut Decoder, node: &Node) -> Option<StoreConfig> {
    #[derive(Clone, Copy)]
    enum Backend {
        Sled,
        Postgres,
    }
    let f = d.map(node, "store", STORE)?;
    let backend = match f.get("backend") {
        Some(n) => d.choice(
            n,
            "store.backend",
            &[("sled", Backend::Sled), ("postgres", Backend::Postgres)],
        )?,
        None => Backend::Sled,
    };
    match backend {
        Backend::Sled => {
            if let Some(n) = f.get("url") {
                d.problem(
                    "store.url",
                    n.line,
                    "is only for `backend: postgres` (sled lives in state_dir)",
                );
                return None;
            }
            Some(StoreConfig::Sled)
        }
        Backend::Postgres => {
            let Some(n) = f.get("url") else {
                d.problem(
                    "store.url",
                    node.line,
                    "is required with `backend: postgres` (postgres://user@host/db)",
                );
                return None;
            };
            let url = Secret::database_url(d.nonempty_string(n, "store.url")?);
            let text = url.expose().trim();
            if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
                d.problem(
                    "store.url",
                    n.line,
                    "must be a postgres:// URL, such as postgres://orderwatch@db.example.com/orderwatch",
                );
                return None;
            }
            Some(StoreConfig::Postgres { url })
        }
    }
}

/// The operator API's token: long enough not to be guessed, and only where
/// there is a `listen` port to serve the API on. Messages never echo it.
fn api_token(
    d: &mut Decoder,
    node: &Node,
    listen: Option<&Option<SocketAddr>>,
) -> Option<Option<Secret>> {
    let token = d.secret(node, "api_token")?;
    let mut ok = true;
    if token.expose().trim().chars().count() < MIN_API_TOKEN_CHARS {
        d.problem(
            "api_token",
            node.line,
            format!(
                "must be at least {MIN_API_TOKEN_CHARS} characters (for example the output of `openssl rand -hex 32`)"
            ),
        );
        ok = false;
    }
    if matches!(listen, Some(None)) {
        d.problem(
            "api_token",
            node.line,
            "the API is served on `listen`, which is not set: add `listen` (e.g. 127.0.0.1:9464), or remove `api_token`",
        );
        ok = false;
    }
    ok.then_some(Some(token))
}

/// A list under `key` whose items are decoded by `item`; all items are read
/// even when one fails, so every problem is reported.
fn list_of<T>(
    d: &mut Decoder,
    top: &Fields,
    key: &str,
    required: bool,
    item: fn(&mut Decoder, &Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let Some(node) = top.get(key) else {
        if required {
            d.problem(
                key,
                top.line,
                format!("missing required key `{key}` (at least one entry)"),
            );
            return None;
        }
        return Some(Vec::new());
    };
    let items = d.list(node, key)?;
    if required && items.is_empty() {
        d.problem(key, node.line, "needs at least one entry");
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, n) in items.iter().enumerate() {
        match item(d, n, &index(key, i)) {
            Some(v) => out.push(v),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn log(d: &mut Decoder, node: &Node) -> Option<LogConfig> {
    let f = d.map(node, "log", LOG)?;
    let format = match f.get("format") {
        Some(n) => d.choice(
            n,
            "log.format",
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        ),
        None => Some(LogFormat::Text),
    };
    let level = match f.get("level") {
        Some(n) => d.nonempty_string(n, "log.level"),
        None => Some("info".into()),
    };
    Some(LogConfig {
        format: format?,
        level: level?,
    })
}

fn source(d: &mut Decoder, node: &Node, path: &str) -> Option<SourceConfig> {
    let f = d.map(node, path, SOURCE)?;
    let name = d
        .required(&f, "name")
        .and_then(|n| name_value(d, n, &f.path("name")));
    let api = d.required(&f, "api").and_then(|n| {
        d.choice(
            n,
            &f.path("api"),
            &[
                ("order-tracking", ApiKind::OrderTracking),
                ("ordering", ApiKind::Ordering),
                ("generic", ApiKind::Generic),
            ],
        )
    });
    let base_url = d
        .required(&f, "base_url")
        .and_then(|n| d.url(n, &f.path("base_url")));
    let token_url = match f.get("token_url") {
        Some(n) => d.url(n, &f.path("token_url")).map(Some),
        None => Some(None),
    };
    let client_id = d
        .required(&f, "client_id")
        .and_then(|n| d.nonempty_string(n, &f.path("client_id")));
    let client_secret = d
        .required(&f, "client_secret")
        .and_then(|n| d.secret(n, &f.path("client_secret")));
    let api_key = d
        .required(&f, "api_key")
        .and_then(|n| d.secret(n, &f.path("api_key")));
    let interval = opt!(d, f, "interval", Duration::from_secs(300), |n, p| d
        .duration(n, &p, SECOND));
    let filters = opt!(d, f, "filters", Vec::new(), |n, p| d.string_map(n, &p));
    let sort = opt!(d, f, "sort", None, |n, p| d
        .nonempty_string(n, &p)
        .map(Some));
    let page_size = match f.get("page_size") {
        Some(n) => d.uint(n, &f.path("page_size"), 1, 10_000).map(Some),
        None => Some(None),
    };
    let budget = opt!(d, f, "max_requests_per_minute", 60, |n, p| d
        .uint(n, &p, 1, 1_000_000));
    let concurrency = opt!(d, f, "concurrency", 1, |n, p| d.uint(n, &p, 1, 64));
    let timeout = opt!(d, f, "timeout", Duration::from_secs(30), |n, p| d
        .duration(n, &p, MILLI));
    let retries = opt!(d, f, "retries", 3, |n, p| d.uint(n, &p, 0, 20));
    let retry_backoff = opt!(d, f, "retry_backoff", SECOND, |n, p| d.duration(
        n,
        &p,
        Duration::ZERO
    ));
    let first_poll = opt!(d, f, "first_poll", FirstPoll::Baseline, |n, p| d.choice(
        n,
        &p,
        &[
            ("baseline", FirstPoll::Baseline),
            ("notify", FirstPoll::Notify)
        ]
    ));
    let resource = opt!(d, f, "resource", Resource::Requests, |n, p| d.choice(
        n,
        &p,
        &[
            ("requests", Resource::Requests),
            ("orders", Resource::Orders)
        ]
    ));
    let incremental = opt!(d, f, "incremental", None, |n, p| incremental(d, n, &p)
        .map(Some));
    let path_key = opt!(d, f, "path", None, |n, p| d
        .nonempty_string(n, &p)
        .map(Some));
    let id_field = opt!(d, f, "id_field", None, |n, p| d.pointer(n, &p).map(Some));
    let status_field = opt!(d, f, "status_field", None, |n, p| d
        .pointer(n, &p)
        .map(Some));
    let watch = opt!(d, f, "watch", None, |n, p| pointers(d, n, &p).map(Some));
    let alert_after = opt!(d, f, "alert_after", DEFAULT_ALERT_AFTER, |n, p| d.duration(
        n,
        &p,
        Duration::ZERO
    ));
    let api_key_expires = opt!(d, f, "api_key_expires", None, |n, p| {
        let text = d.string(n, &p)?;
        let parsed = KeyExpiry::parse(&text);
        if parsed.is_none() {
            d.problem(
                &p,
                n.line,
                "not a date: write the day the API key expires as YYYY-MM-DD, such as 2028-06-30",
            );
        }
        parsed.map(Some)
    });
    let due = opt!(d, f, "due", None, |n, p| due(d, n, &p).map(Some));
    let stalled_after = opt!(d, f, "stalled_after", None, |n, p| d
        .duration(n, &p, SECOND)
        .map(Some));
    let timezone = opt!(d, f, "timezone", SourceTimezone::utc(), |n, p| {
        let text = d.string(n, &p)?;
        let parsed = SourceTimezone::parse(&text);
        if parsed.is_none() {
            d.problem(
                &p,
                n.line,
                "not a time zone: write an IANA name such as Europe/Paris or UTC",
            );
        }
        parsed
    });
    let closed = match f.get("closed_statuses") {
        Some(n) => d.strings(n, &f.path("closed_statuses")).map(Some),
        None => Some(None),
    };

    let api = api?;
    let resource = resource?;
    if resource == Resource::Orders && api != ApiKind::Ordering {
        d.problem(
            f.path("resource"),
            f.line,
            "`resource: orders` is for `api: ordering` only (order-tracking lists orders already)",
        );
    }
    let preset = api.preset(resource);
    let (path_default, id_default, status_default) = match &preset {
        Some(p) => (Some(p.path), Some(p.id_field), Some(p.status_field)),
        None => (None, None, None),
    };
    let page_size = page_size?;
    let page_size = match (page_size, api.max_page_size()) {
        (Some(size), Some(max)) if size > max => {
            d.problem(
                f.path("page_size"),
                f.get("page_size").map_or(f.line, |n| n.line),
                format!(
                    "Orange's Ordering API answers at most {max} items a page: use at most {max} (the default)"
                ),
            );
            None
        }
        (Some(size), _) => Some(size),
        (None, Some(max)) => Some(max),
        (None, None) => Some(DEFAULT_PAGE_SIZE),
    };
    let sort = sort?;
    let incremental = incremental?;
    if incremental.is_some() && sort.is_some() {
        d.problem(
            f.path("incremental"),
            f.get("incremental").map_or(f.line, |n| n.line),
            "`incremental` sorts the listing by its cursor (newest first): remove `sort`",
        );
    }
    let mut resolve = |value: Option<String>, default: Option<&str>, key: &str| {
        let v = value.or(default.map(str::to_owned));
        if v.is_none() {
            d.problem(
                f.path(key),
                f.line,
                format!("`{key}` is required when api is `generic`"),
            );
        }
        v
    };
    let path_value = resolve(path_key?, path_default, "path");
    let id_field = resolve(id_field?, id_default, "id_field");
    let status_field = resolve(status_field?, status_default, "status_field");
    let path_value = path_value.map(|p| {
        if p.starts_with('/') {
            p
        } else {
            format!("/{p}")
        }
    });

    let base_url = base_url?;
    let token_url = match token_url? {
        Some(u) => u,
        // Relative to base_url's own path: a gateway prefix is kept.
        None => crate::source::join_base(&base_url, "/oauth/v3/token"),
    };
    let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let closed_statuses = closed?.unwrap_or_else(|| {
        preset
            .as_ref()
            .map_or_else(Vec::new, |p| owned(p.closed_statuses))
    });
    let watch = watch?.unwrap_or_else(|| preset.as_ref().map_or_else(Vec::new, |p| owned(p.watch)));
    Some(SourceConfig {
        name: name?,
        api,
        base_url,
        token_url,
        client_id: client_id?,
        client_secret: client_secret?,
        api_key: api_key?,
        interval: interval?,
        filters: filters?,
        sort,
        page_size: page_size? as u32,
        max_requests_per_minute: budget? as u32,
        concurrency: concurrency? as u32,
        timeout: timeout?,
        retries: retries? as u32,
        retry_backoff: retry_backoff?,
        first_poll: first_poll?,
        resource,
        incremental,
        path: path_value?,
        id_field: id_field?,
        status_field: status_field?,
        watch,
        closed_statuses,
        alert_after: alert_after?,
        api_key_expires: api_key_expires?,
        due: due?,
        stalled_after: stalled_after?,
        timezone: timezone?,
    })
}

/// A pointer key that is empty (the whole order) where a field is meant.
fn refuse_the_whole_order<T>(d: &mut Decoder, f: &Fields, key: &str) -> Option<T> {
    d.problem(
        f.path(key),
        f.line,
        "must point into the order, not be the whole order",
    );
    None
}

/// `due: { field: /keyDates/expectedAt, warn_before: 3d }`, each key
/// optional (`due: {}` is both defaults).
fn due(d: &mut Decoder, node: &Node, path: &str) -> Option<DueConfig> {
    let f = d.map(node, path, DUE)?;
    let field = opt!(d, f, "field", DEFAULT_DUE_FIELD.to_owned(), |n, p| d
        .pointer(n, &p));
    let warn_before = opt!(d, f, "warn_before", DEFAULT_WARN_BEFORE, |n, p| d.duration(
        n,
        &p,
        Duration::ZERO
    ));
    let field = field?;
    if field.is_empty() {
        return refuse_the_whole_order(d, &f, "field");
    }
    Some(DueConfig {
        field,
        warn_before: warn_before?,
    })
}

/// `incremental: { cursor: /updatedAt, overlap: 2m, full_every: 1h }`, each
/// key optional (`incremental: {}` is all three defaults).
fn incremental(d: &mut Decoder, node: &Node, path: &str) -> Option<IncrementalConfig> {
    let f = d.map(node, path, INCREMENTAL)?;
    let cursor = opt!(d, f, "cursor", "/updatedAt".to_owned(), |n, p| d
        .pointer(n, &p));
    let overlap = opt!(d, f, "overlap", Duration::from_secs(120), |n, p| d
        .duration(n, &p, Duration::ZERO));
    let full_every = opt!(d, f, "full_every", Duration::from_secs(3600), |n, p| d
        .duration(n, &p, SECOND));
    let cursor = cursor?;
    if cursor.is_empty() {
        return refuse_the_whole_order(d, &f, "cursor");
    }
    Some(IncrementalConfig {
        cursor,
        overlap: overlap?,
        full_every: full_every?,
    })
}

fn pointers(d: &mut Decoder, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = d.list(node, path)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match d.pointer(item, &index(path, i)) {
            Some(p) => out.push(p),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Names appear in events, keys and metrics labels: keep them plain.
fn name_value(d: &mut Decoder, node: &Node, path: &str) -> Option<String> {
    let name = d.nonempty_string(node, path)?;
    let plain = name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        d.problem(
            path,
            node.line,
            "must be at most 64 letters, digits, `-`, `_` or `.`",
        );
        return None;
    }
    Some(name)
}

fn sink(d: &mut Decoder, node: &Node, path: &str) -> Option<(SinkConfig, RetryOverrides)> {
    // `type` decides which keys are allowed, so it is read before the check.
    let type_node = match &node.value {
        NodeValue::Map(entries) => entries.iter().find(|(k, _)| k == "type").map(|(_, v)| v),
        _ => None,
    };
    let names: Vec<(&str, &str)> = SINK_TYPES.iter().map(|t| (t.name, t.name)).collect();
    let kind = match type_node {
        Some(n) => d
            .choice(n, &format!("{path}.type"), &names)
            .and_then(sink_type),
        None => {
            let names: Vec<&str> = SINK_TYPES.iter().map(|t| t.name).collect();
            d.problem(
                format!("{path}.type"),
                node.line,
                format!("missing required key `type` ({})", or_list(&names)),
            );
            None
        }
    }?;
    let allowed: Vec<&str> = SINK.iter().chain(kind.keys).copied().collect();
    let f = d.map(node, path, &allowed)?;
    let name = d
        .required(&f, "name")
        .and_then(|n| name_value(d, n, &f.path("name")));
    let max_per_minute = opt!(d, f, "max_per_minute", None, |n, p| d
        .uint(n, &p, 1, 60_000)
        .map(|v| Some(v as u32)));
    let retry = opt!(
        d,
        f,
        "delivery",
        RetryOverrides::default(),
        |n, p| delivery(d, n, &p)
    );
    let digest = opt!(d, f, "digest", None, |n, p| super::schedules::digest(
        d, n, &p
    )
    .map(Some));
    let settings = (kind.decode)(d, &f);
    let sink = SinkConfig {
        name: name?,
        type_name: kind.name,
        settings: settings?,
        retry: RetryPolicy::default(),
        max_per_minute: max_per_minute?,
        digest: digest?,
    };
    Some((sink, retry?))
}

/// `a, b, c or d`.
fn or_list(words: &[&str]) -> String {
    match words.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn route(d: &mut Decoder, node: &Node, path: &str) -> Option<RouteConfig> {
    let f = d.map(node, path, ROUTE)?;
    let sinks = d
        .required(&f, "sinks")
        .and_then(|n| d.strings(n, &f.path("sinks")));
    let sources = opt!(d, f, "sources", Vec::new(), |n, p| d.strings(n, &p));
    let events = opt!(d, f, "events", Vec::new(), |n, p| {
        let names = d.strings(n, &p)?;
        let mut out = Vec::new();
        for name in names {
            match name.parse::<EventType>() {
                Ok(t) => out.push(t),
                Err(msg) => {
                    let names = EventType::ALL.map(EventType::as_str);
                    let hint = suggestion(&name, &names);
                    d.problem(&p, n.line, format!("{msg}{hint}"));
                }
            }
        }
        Some(out)
    });
    let from = opt!(d, f, "from", Vec::new(), |n, p| d.strings(n, &p));
    let to = opt!(d, f, "to", Vec::new(), |n, p| d.strings(n, &p));
    // `match` keys are JSON pointers, not schema keys.
    let matches = match f.get("match") {
        Some(n) => match &n.value {
            NodeValue::Map(entries) => {
                let mut out = Vec::new();
                for (pointer, value) in entries {
                    let p = format!("{}.{pointer}", f.path("match"));
                    if !pointer.starts_with('/') {
                        d.problem(
                            &p,
                            value.line,
                            "keys of `match` are JSON pointers starting with `/`",
                        );
                    } else if let Some(v) = d.json(value, &p) {
                        out.push((pointer.clone(), v));
                    }
                }
                Some(out)
            }
            _ => {
                d.problem(
                    f.path("match"),
                    n.line,
                    "expected a mapping of JSON pointer to value",
                );
                None
            }
        },
        None => Some(Vec::new()),
    };
    let quiet_hours = opt!(d, f, "quiet_hours", None, |n, p| {
        super::schedules::quiet_hours(d, n, &p).map(Some)
    });
    Some(RouteConfig {
        sinks: sinks?,
        sources: sources?,
        events: events?,
        from: from?,
        to: to?,
        matches: matches?,
        quiet_hours: quiet_hours?,
    })
}

/// The keys of a `delivery:` section that were given.
#[derive(Debug, Default, Clone, Copy)]
struct RetryOverrides {
    max_attempts: Option<u32>,
    max_age: Option<Duration>,
    initial: Option<Duration>,
    max: Option<Duration>,
    /// Where `backoff:` is, for its problem.
    backoff_line: Option<u64>,
}

impl RetryOverrides {
    /// `base` with these keys replaced; a backoff whose `max` ends up
    /// shorter than its `initial` is a problem at `path`.
    fn over(
        self,
        d: &mut Decoder,
        base: RetryPolicy,
        path: &str,
        line: Option<u64>,
    ) -> Option<RetryPolicy> {
        let policy = RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            max_age: self.max_age.unwrap_or(base.max_age),
            backoff: Backoff {
                initial: self.initial.unwrap_or(base.backoff.initial),
                max: self.max.unwrap_or(base.backoff.max),
                ..base.backoff
            },
        };
        if policy.backoff.max < policy.backoff.initial {
            d.problem(
                format!("{path}.backoff.max"),
                self.backoff_line.or(line),
                "must not be shorter than `initial`",
            );
            return None;
        }
        Some(policy)
    }
}

fn delivery(d: &mut Decoder, node: &Node, path: &str) -> Option<RetryOverrides> {
    let f = d.map(node, path, DELIVERY)?;
    let max_attempts = opt!(d, f, "max_attempts", None, |n, p| d
        .uint(n, &p, 1, 1000)
        .map(|v| Some(v as u32)));
    let max_age = opt!(d, f, "max_age", None, |n, p| d
        .duration(n, &p, SECOND)
        .map(Some));
    let (initial, max) = match f.get("backoff") {
        Some(n) => {
            let b = d.map(n, &f.path("backoff"), BACKOFF)?;
            let initial = opt!(d, b, "initial", None, |n, p| d
                .duration(n, &p, MILLI)
                .map(Some));
            let max = opt!(d, b, "max", None, |n, p| d.duration(n, &p, MILLI).map(Some));
            (initial, max)
        }
        None => (Some(None), Some(None)),
    };
    Some(RetryOverrides {
        backoff_line: f.get("backoff").and_then(|n| n.line),
        max_attempts: max_attempts?,
        max_age: max_age?,
        initial: initial?,
        max: max?,
    })
}

/// Checks that span sections: unique names, routes that name real things.
/// They read names straight from the tree, so they run (and report) even
/// when other keys of those sections have problems.
fn cross_check(d: &mut Decoder, top: &Fields) {
    let items = |key: &str| -> Vec<Node> {
        match top.get(key).map(|n| &n.value) {
            Some(NodeValue::Seq(items)) => items.clone(),
            _ => Vec::new(),
        }
    };
    let field_text = |node: &Node, key: &str| -> Option<String> {
        match &node.value {
            NodeValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.value.scalar_text()),
            _ => None,
        }
    };
    let field_list = |node: &Node, key: &str| -> Vec<String> {
        let value = match &node.value {
            NodeValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| &v.value),
            _ => None,
        };
        match value {
            Some(NodeValue::Seq(items)) => {
                items.iter().filter_map(|n| n.value.scalar_text()).collect()
            }
            Some(other) => other.scalar_text().into_iter().collect(),
            None => Vec::new(),
        }
    };
    let names_of = |d: &mut Decoder, section: &str, what: &str| -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (i, node) in items(section).iter().enumerate() {
            if let Some(name) = field_text(node, "name") {
                if names.contains(&name) {
                    d.problem(
                        format!("{section}[{i}].name"),
                        node.line,
                        format!("duplicate {what} name `{name}`"),
                    );
                }
                names.push(name);
            }
        }
        names
    };
    let sources = names_of(d, "sources", "source");
    let sinks = names_of(d, "sinks", "sink");
    let sinks: Vec<&str> = sinks.iter().map(String::as_str).collect();
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    for (i, route) in items("routes").iter().enumerate() {
        for (key, what, known) in [("sinks", "sink", &sinks), ("sources", "source", &sources)] {
            for name in field_list(route, key) {
                if !known.contains(&name.as_str()) {
                    d.problem(
                        format!("routes[{i}].{key}"),
                        route.line,
                        format!("unknown {what} `{name}`{}", suggestion(&name, known)),
                    );
                }
            }
        }
    }
}
