//! The webhook sink: POST the event JSON with Standard Webhooks headers.
//!
//! 2xx is success; 408, 429, 5xx, timeouts and connection errors retry
//! (`Retry-After` honoured); 410 and every other 4xx dead-letter at once.
//! Redirects are not followed: a redirect is a misconfigured URL.

use super::signature::sign;
use super::{Deliver, SinkSettings, SinkType};
use crate::config::{Decoder, Fields, MILLI, opt};
use crate::deliver::template::Templates;
use crate::deliver::{DeliveryError, answer};
use crate::digest::Digest;
use crate::event::Event;
use crate::secret::{Secret, redact_url};
use crate::shutdown::Shutdown;
use base64::Engine;
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const TYPE: SinkType = SinkType {
    name: "webhook",
    keys: &["url", "secret", "headers", "timeout", "connect_timeout"],
    // The event JSON is the body: nothing to render.
    defaults: Vec::new,
    decode,
};

/// Headers orderwatch sets itself: a `headers:` entry may not replace them.
const RESERVED: [&str; 4] = [
    "content-type",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// A webhook section, parsed: the key is decoded, the headers are valid.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: url::Url,
    /// The HMAC key decoded from `whsec_<base64>`.
    key: Option<SigningKey>,
    headers: HeaderMap,
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// An HMAC key that never prints itself.
#[derive(Clone)]
struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

fn decode(d: &mut Decoder, f: &Fields) -> Option<Arc<dyn SinkSettings>> {
    let url = d.required(f, "url").and_then(|n| d.url(n, &f.path("url")));
    let key = match f.get("secret") {
        Some(n) => d.secret(n, &f.path("secret")).and_then(|s| match webhook_key(&s) {
            Some(key) => Some(Some(SigningKey(key))),
            None => {
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
    let map = headers.and_then(|h| super::header_map(d, f, &h, &RESERVED));
    Some(Arc::new(WebhookSettings {
        url: url?,
        key: key?,
        headers: map?,
        timeout: timeout?,
        connect_timeout: connect?,
    }))
}

/// The HMAC key of a `whsec_` secret (Standard Webhooks), if it decodes.
pub fn webhook_key(secret: &Secret) -> Option<Vec<u8>> {
    let encoded = secret.expose().strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|k| !k.is_empty())
}

impl SinkSettings for WebhookSettings {
    fn build(&self, name: &str, _: Arc<Templates>) -> Result<Box<dyn Deliver>, String> {
        WebhookSink::new(name, self).map(|s| Box::new(s) as Box<dyn Deliver>)
    }
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

pub struct WebhookSink {
    name: String,
    url: url::Url,
    key: Option<Vec<u8>>,
    http: reqwest::Client,
}

impl WebhookSink {
    pub fn new(name: &str, cfg: &WebhookSettings) -> Result<WebhookSink, String> {
        let http = answer::client(cfg.headers.clone(), cfg.timeout, cfg.connect_timeout)?;
        Ok(WebhookSink {
            name: name.to_owned(),
            url: cfg.url.clone(),
            key: cfg.key.as_ref().map(|k| k.0.clone()),
            http,
        })
    }

    async fn post(&self, event_id: &str, body: &str) -> Result<(), DeliveryError> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", event_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            request = request.header(
                "webhook-signature",
                sign(key, event_id, timestamp, body.as_bytes()),
            );
        }
        answer::send(request.body(body.to_owned()), &self.describe()).await
    }
}

impl Deliver for WebhookSink {
    fn describe(&self) -> String {
        format!("{} ({})", self.name, redact_url(&self.url))
    }

    fn deliver<'a>(
        &'a self,
        event: &'a Event,
        json: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move { Some(self.post(&event.data.id, json).await) })
    }

    /// The digest's document is the body, signed like an event's, its id
    /// the `webhook-id`.
    fn deliver_digest<'a>(
        &'a self,
        digest: &'a Digest,
        json: &'a str,
        _: &'a Shutdown,
    ) -> BoxFuture<'a, Option<Result<(), DeliveryError>>> {
        Box::pin(async move { Some(self.post(&digest.data.id, json).await) })
    }
}
