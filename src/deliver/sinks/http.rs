//! The http sink: any HTTP API (ticketing, paging, ntfy...). One request per
//! event, its body rendered from the `body` template; answers are read as
//! the webhook sink reads them.
//!
//! With a JSON content type the body is rendered for a sample event of
//! every type when the config is read, and must parse as JSON: a body that
//! would not is a config problem at `sinks[N].body`, never a dead letter.
//! The `tojson` filter quotes any value as JSON (a missing one as `null`).

use super::{Deliver, SinkSettings, SinkType, header_map, own_template};
use crate::config::{Decoder, Fields, MILLI, opt};
use crate::deliver::template::{Role, Templates, sample_outputs};
use crate::deliver::{DeliveryError, answer};
use crate::digest::Digest;
use crate::event::Event;
use crate::secret::redact_url;
use crate::shutdown::Shutdown;
use futures::future::BoxFuture;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const TYPE: SinkType = SinkType {
    name: "http",
    keys: &[
        "url",
        "method",
        "headers",
        "content_type",
        "body",
        "timeout",
        "connect_timeout",
    ],
    // `body` is required: there is no built-in one.
    defaults: Vec::new,
    decode,
};

/// `content_type` is its own key.
const RESERVED: [&str; 1] = ["content-type"];

#[derive(Debug, Clone)]
pub struct HttpSettings {
    url: url::Url,
    method: Method,
    headers: HeaderMap,
    body: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
}

fn decode(d: &mut Decoder, f: &Fields) -> Option<Arc<dyn SinkSettings>> {
    let url = d.required(f, "url").and_then(|n| d.url(n, &f.path("url")));
    let method = opt!(d, f, "method", Method::POST, |n, p| d
        .choice(n, &p, &[("POST", 0), ("PUT", 1), ("PATCH", 2)])
        .map(|i: usize| match i {
            1 => Method::PUT,
            2 => Method::PATCH,
            _ => Method::POST,
        }));
    let content_type = opt!(
        d,
        f,
        "content_type",
        "application/json".to_owned(),
        |n, p| {
            let text = d.nonempty_string(n, &p)?;
            if HeaderValue::from_str(&text).is_err() {
                d.problem(&p, n.line, "not a value a Content-Type header can carry");
                return None;
            }
            Some(text)
        }
    );
    let headers = opt!(d, f, "headers", Vec::new(), |n, p| d.string_map(n, &p));
    let mut headers = headers.and_then(|h| header_map(d, f, &h, &RESERVED));
    let timeout = opt!(d, f, "timeout", Duration::from_secs(15), |n, p| d
        .duration(n, &p, MILLI));
    let connect = opt!(d, f, "connect_timeout", Duration::from_secs(5), |n, p| d
        .duration(n, &p, MILLI));
    let body = d.required(f, "body").and_then(|n| {
        let path = f.path("body");
        let text = d.template(n, &path, Role::Body)?;
        if content_type.as_deref().is_some_and(is_json) {
            json_on_every_sample(d, &text, &path, n.line)?;
        }
        Some(text)
    });
    let content_type = content_type?;
    if let (Some(map), Ok(value)) = (&mut headers, HeaderValue::from_str(&content_type)) {
        map.insert(CONTENT_TYPE, value);
    }
    Some(Arc::new(HttpSettings {
        url: url?,
        method: method?,
        headers: headers?,
        body: Some(body?),
        timeout: timeout?,
        connect_timeout: connect?,
    }))
}

/// `application/json`, `application/problem+json; charset=utf-8`...
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// The body, rendered for a sample of every event type, must be JSON.
fn json_on_every_sample(d: &mut Decoder, body: &str, path: &str, line: Option<u64>) -> Option<()> {
    let outputs = sample_outputs(Role::Body, body).ok()?;
    for (kind, out) in outputs {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&out) {
            d.problem(
                path,
                line,
                format!(
                    "the content type is JSON, but the body rendered for a sample {kind} event is not JSON ({e}); quote values with `tojson`, e.g. {{{{ order_id|tojson }}}}"
                ),
            );
            return None;
        }
    }
    Some(())
}

impl SinkSettings for HttpSettings {
    fn templates(&self) -> Vec<(Role, &'static str, &str)> {
        own_template(Role::Body, "body", &self.body)
    }

    fn build(&self, name: &str, templates: Arc<Templates>) -> Result<Box<dyn Deliver>, String> {
        let client = answer::client(self.headers.clone(), self.timeout, self.connect_timeout)?;
        Ok(Box::new(HttpSink {
            name: name.to_owned(),
            url: self.url.clone(),
            method: self.method.clone(),
            client,
            templates,
        }))
    }
}

pub struct HttpSink {
    name: String,
    url: url::Url,
    method: Method,
    client: reqwest::Client,
    templates: Arc<Templates>,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    async fn send(&self, event: &Event) -> Result<(), DeliveryError> {
        let body = self
            .templates
            .render(&self.name, Role::Body, event)
            .map_err(DeliveryError::permanent)?;
        let request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .body(body);
        answer::send(request, &self.describe()).await
    }

    /// A digest is its JSON document, whatever `body` and `content_type`
    /// say: the template is written for one event.
    async fn send_digest(&self, json: &str) -> Result<(), DeliveryError> {
        let request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json.to_owned());
        answer::send(request, &self.describe()).await
    }
}

impl Deliver for HttpSink {
    fn describe(&self) -> String {
        format!("{} ({})", self.name, redact_url(&self.url))
    }

    fn deliver<'a>(
        &'a self,
        event: &'a Event,
        _: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move { Some(self.send(event).await) })
    }

    fn deliver_digest<'a>(
        &'a self,
        _: &'a Digest,
        json: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move { Some(self.send_digest(json).await) })
    }
}
