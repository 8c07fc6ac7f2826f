//! The webhook sink: POST the event JSON with Standard Webhooks headers.
//!
//! 2xx is success; 408, 429, 5xx, timeouts and connection errors retry
//! (`Retry-After` honoured); 410 and every other 4xx dead-letter at once.
//! Redirects are not followed: a redirect is a misconfigured URL.

use super::DeliveryError;
use super::signature::sign;
use crate::config::WebhookConfig;
use crate::secret::redact_url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::time::Duration;

/// At most this much of a receiver's answer is kept for the logs.
const MAX_ERROR_BODY: usize = 512;

pub struct WebhookSink {
    name: String,
    url: url::Url,
    key: Option<Vec<u8>>,
    http: reqwest::Client,
}

impl WebhookSink {
    pub fn new(name: &str, cfg: &WebhookConfig) -> Result<WebhookSink, String> {
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header `{k}`: {e}"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("header `{k}` has a value that cannot be sent"))?;
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(WebhookSink {
            name: name.to_owned(),
            url: cfg.url.clone(),
            key: cfg.secret.as_ref().and_then(crate::config::webhook_key),
            http,
        })
    }

    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, redact_url(&self.url))
    }

    pub async fn deliver(&self, event_id: &str, body: &str) -> Result<(), DeliveryError> {
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
        let response = match request.body(body.to_owned()).send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                return Err(DeliveryError::retry(format!("{}: {what}", self.describe())));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let excerpt = body_excerpt(response).await;
        let reason = format!("{}: HTTP {}{}", self.describe(), status.as_u16(), excerpt);
        match status.as_u16() {
            408 | 429 | 500..=599 => Err(DeliveryError::Retry {
                reason,
                retry_after,
            }),
            _ => Err(DeliveryError::permanent(reason)),
        }
    }
}

/// The start of the receiver's answer, on one line, for the logs.
pub(crate) async fn body_excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}
