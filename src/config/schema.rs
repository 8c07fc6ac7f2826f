//! The schema of README.md "Configuration": one function per section, each
//! reading its keys through the decoder, with defaults, then the checks that
//! span sections (unique names, routes naming known sinks).

use super::decode::{Decoder, Fields, index, suggestion};
use super::yaml::{Node, NodeValue};
use super::*;
use crate::deliver::template::TemplateKind;
use base64::Engine;

const TOP: &[&str] = &[
    "state_dir",
    "listen",
    "log",
    "sources",
    "sinks",
    "routes",
    "delivery",
    "shutdown_grace",
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
];
const WEBHOOK: &[&str] = &[
    "name",
    "type",
    "url",
    "secret",
    "headers",
    "timeout",
    "connect_timeout",
];
const SLACK: &[&str] = &["name", "type", "url", "template", "timeout"];
const EMAIL: &[&str] = &["name", "type", "smtp", "from", "to", "subject", "body"];
const CONSOLE: &[&str] = &["name", "type", "template"];
const SMTP: &[&str] = &[
    "host", "port", "tls", "username", "password", "ca_file", "timeout",
];
const ROUTE: &[&str] = &["sinks", "sources", "events", "from", "to", "match"];
const DELIVERY: &[&str] = &["max_attempts", "max_age", "backoff"];
const BACKOFF: &[&str] = &["initial", "max"];
const LOG: &[&str] = &["format", "level"];
const INCREMENTAL: &[&str] = &["cursor", "overlap", "full_every"];

/// How long deliveries in flight may finish after SIGTERM (README "Commands").
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const SECOND: Duration = Duration::from_secs(1);
const MILLI: Duration = Duration::from_millis(1);

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
        Some(n) => delivery(d, n),
        None => Some(DeliveryConfig::default()),
    };
    let shutdown_grace = match top.get("shutdown_grace") {
        Some(n) => d.duration(n, "shutdown_grace", Duration::ZERO),
        None => Some(DEFAULT_SHUTDOWN_GRACE),
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
    })
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

/// Read an optional field with `read`, or use `default` when absent.
macro_rules! opt {
    ($d:expr, $f:expr, $key:literal, $default:expr, |$n:ident, $p:ident| $read:expr) => {
        match $f.get($key) {
            Some($n) => {
                let $p = $f.path($key);
                $read
            }
            None => Some($default),
        }
    };
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
        d.problem(
            f.path("cursor"),
            f.line,
            "must point into the order, not be the whole order",
        );
        return None;
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

fn sink(d: &mut Decoder, node: &Node, path: &str) -> Option<SinkConfig> {
    // `type` decides which keys are allowed, so it is read before the check.
    let type_node = match &node.value {
        NodeValue::Map(entries) => entries.iter().find(|(k, _)| k == "type").map(|(_, v)| v),
        _ => None,
    };
    let kind_name = match type_node {
        Some(n) => d.choice(
            n,
            &format!("{path}.type"),
            &[
                ("webhook", "webhook"),
                ("slack", "slack"),
                ("email", "email"),
                ("console", "console"),
            ],
        ),
        None => {
            d.problem(
                format!("{path}.type"),
                node.line,
                "missing required key `type` (webhook, slack, email or console)",
            );
            None
        }
    };
    let allowed = match kind_name? {
        "webhook" => WEBHOOK,
        "slack" => SLACK,
        "email" => EMAIL,
        _ => CONSOLE,
    };
    let f = d.map(node, path, allowed)?;
    let name = d
        .required(&f, "name")
        .and_then(|n| name_value(d, n, &f.path("name")));
    let kind = match kind_name? {
        "webhook" => webhook(d, &f).map(SinkKind::Webhook),
        "slack" => slack(d, &f).map(SinkKind::Slack),
        "email" => email(d, &f).map(SinkKind::Email),
        _ => Some(SinkKind::Console(ConsoleConfig {
            template: opt!(d, f, "template", None, |n, p| d
                .template(n, &p, TemplateKind::Console)
                .map(Some))?,
        })),
    };
    Some(SinkConfig {
        name: name?,
        kind: kind?,
    })
}

fn webhook(d: &mut Decoder, f: &Fields) -> Option<WebhookConfig> {
    let url = d.required(f, "url").and_then(|n| d.url(n, &f.path("url")));
    let secret = match f.get("secret") {
        Some(n) => d.secret(n, &f.path("secret")).and_then(|s| {
            if webhook_key(&s).is_some() {
                Some(Some(s))
            } else {
                d.problem(
                    f.path("secret"),
                    n.line,
                    "must be `whsec_` followed by base64 (Standard Webhooks), e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                );
                None
            }
        }),
        None => Some(None),
    };
    let headers = opt!(d, f, "headers", Vec::new(), |n, p| d.string_map(n, &p));
    let timeout = opt!(d, f, "timeout", Duration::from_secs(15), |n, p| d
        .duration(n, &p, MILLI));
    let connect = opt!(d, f, "connect_timeout", Duration::from_secs(5), |n, p| d
        .duration(n, &p, MILLI));
    if let (Some(headers), Some(node)) = (&headers, f.get("headers")) {
        for (name, _) in headers {
            let reserved = [
                "content-type",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
            ];
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                d.problem(
                    f.path("headers"),
                    node.line,
                    format!("`{name}` is not a valid header name"),
                );
            } else if reserved.contains(&name.to_ascii_lowercase().as_str()) {
                d.problem(
                    f.path("headers"),
                    node.line,
                    format!("`{name}` is set by orderwatch and cannot be overridden"),
                );
            }
        }
    }
    Some(WebhookConfig {
        url: url?,
        secret: secret?,
        headers: headers?,
        timeout: timeout?,
        connect_timeout: connect?,
    })
}

/// The HMAC key of a `whsec_` secret (Standard Webhooks), if it decodes.
pub fn webhook_key(secret: &Secret) -> Option<Vec<u8>> {
    let encoded = secret.expose().strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|k| !k.is_empty())
}

fn slack(d: &mut Decoder, f: &Fields) -> Option<SlackConfig> {
    // Checked as a URL, kept as a secret: the path is the credential.
    let url = d.required(f, "url").and_then(|n| d.url(n, &f.path("url")));
    let template = opt!(d, f, "template", None, |n, p| d
        .template(n, &p, TemplateKind::Slack)
        .map(Some));
    let timeout = opt!(d, f, "timeout", Duration::from_secs(15), |n, p| d
        .duration(n, &p, MILLI));
    Some(SlackConfig {
        url: Secret::new(url?.to_string()),
        template: template?,
        timeout: timeout?,
    })
}

fn email(d: &mut Decoder, f: &Fields) -> Option<EmailConfig> {
    let smtp = d
        .required(f, "smtp")
        .and_then(|n| smtp(d, n, &f.path("smtp")));
    let from = d
        .required(f, "from")
        .and_then(|n| address(d, n, &f.path("from")));
    let to = d.required(f, "to").and_then(|n| {
        let path = f.path("to");
        let list = d.strings(n, &path)?;
        if list.is_empty() {
            d.problem(&path, n.line, "needs at least one address");
            return None;
        }
        let bad: Vec<usize> = (0..list.len())
            .filter(|i| !looks_like_address(&list[*i]))
            .collect();
        for i in &bad {
            d.problem(index(&path, *i), n.line, "not an email address");
        }
        bad.is_empty().then_some(list)
    });
    let subject = opt!(d, f, "subject", None, |n, p| d
        .template(n, &p, TemplateKind::EmailSubject)
        .map(Some));
    let body = opt!(d, f, "body", None, |n, p| d
        .template(n, &p, TemplateKind::EmailBody)
        .map(Some));
    Some(EmailConfig {
        smtp: smtp?,
        from: from?,
        to: to?,
        subject: subject?,
        body: body?,
    })
}

fn looks_like_address(text: &str) -> bool {
    let addr = match (text.find('<'), text.rfind('>')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text,
    };
    match addr.trim().split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains(' '),
        None => false,
    }
}

fn address(d: &mut Decoder, node: &Node, path: &str) -> Option<String> {
    let text = d.nonempty_string(node, path)?;
    if !looks_like_address(&text) {
        d.problem(path, node.line, "not an email address");
        return None;
    }
    Some(text)
}

fn smtp(d: &mut Decoder, node: &Node, path: &str) -> Option<SmtpConfig> {
    let f = d.map(node, path, SMTP)?;
    let host = d
        .required(&f, "host")
        .and_then(|n| d.nonempty_string(n, &f.path("host")));
    let tls = opt!(d, f, "tls", SmtpTls::Starttls, |n, p| d.choice(
        n,
        &p,
        &[
            ("none", SmtpTls::None),
            ("starttls", SmtpTls::Starttls),
            ("tls", SmtpTls::Tls)
        ]
    ));
    let default_port = match tls {
        Some(SmtpTls::Tls) => 465,
        Some(SmtpTls::None) => 25,
        _ => 587,
    };
    let port = opt!(d, f, "port", default_port, |n, p| d.uint(n, &p, 1, 65535));
    let username = opt!(d, f, "username", None, |n, p| d
        .nonempty_string(n, &p)
        .map(Some));
    let password = opt!(d, f, "password", None, |n, p| d.secret(n, &p).map(Some));
    let timeout = opt!(d, f, "timeout", Duration::from_secs(30), |n, p| d
        .duration(n, &p, MILLI));
    let ca_file = opt!(d, f, "ca_file", None, |n, p| {
        let path = PathBuf::from(d.nonempty_string(n, &p)?);
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            Some(Some(path))
        } else {
            d.problem(
                &p,
                n.line,
                format!("{} is not a readable file", path.display()),
            );
            None
        }
    });
    if let (Some(SmtpTls::None), true) = (tls, f.has("username") || f.has("password")) {
        d.problem(
            f.path("tls"),
            f.get("tls").and_then(|n| n.line).or(f.line),
            "credentials are never sent in clear: use `starttls` or `tls` with a username and password",
        );
        return None;
    }
    let username = username?;
    let password = password?;
    if username.is_some() != password.is_some() {
        d.problem(path, f.line, "`username` and `password` go together");
        return None;
    }
    Some(SmtpConfig {
        host: host?,
        port: port? as u16,
        tls: tls?,
        username,
        password,
        ca_file: ca_file?,
        timeout: timeout?,
    })
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
    Some(RouteConfig {
        sinks: sinks?,
        sources: sources?,
        events: events?,
        from: from?,
        to: to?,
        matches: matches?,
    })
}

fn delivery(d: &mut Decoder, node: &Node) -> Option<DeliveryConfig> {
    let f = d.map(node, "delivery", DELIVERY)?;
    let defaults = DeliveryConfig::default();
    let max_attempts = opt!(
        d,
        f,
        "max_attempts",
        u64::from(defaults.max_attempts),
        |n, p| d.uint(n, &p, 1, 1000)
    );
    let max_age = opt!(d, f, "max_age", defaults.max_age, |n, p| d
        .duration(n, &p, SECOND));
    let (initial, max) = match f.get("backoff") {
        Some(n) => {
            let b = d.map(n, "delivery.backoff", BACKOFF)?;
            let initial = opt!(d, b, "initial", defaults.backoff_initial, |n, p| d
                .duration(n, &p, MILLI));
            let max = opt!(d, b, "max", defaults.backoff_max, |n, p| d
                .duration(n, &p, MILLI));
            if let (Some(i), Some(m)) = (initial, max)
                && m < i
            {
                d.problem(
                    "delivery.backoff.max",
                    n.line,
                    "must not be shorter than `initial`",
                );
            }
            (initial, max)
        }
        None => (Some(defaults.backoff_initial), Some(defaults.backoff_max)),
    };
    Some(DeliveryConfig {
        max_attempts: max_attempts? as u32,
        max_age: max_age?,
        backoff_initial: initial?,
        backoff_max: max?,
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
