//! The webhook sink: POST the event JSON with Standard Webhooks headers.
//!
//! 2xx is success; 408, 429, 5xx, timeouts and connection errors retry
//! (`Retry-After` honoured); 410 and every other 4xx dead-letter at once.
//! Redirects are not followed: a redirect is a misconfigured URL.

use super::DeliveryError;
use super::answer;
use super::signature::sign;
use crate::config::WebhookConfig;
use crate::secret::redact_url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

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
        let retry_after = answer::retry_after(response.headers());
        let excerpt = answer::excerpt(response).await;
        let said = if excerpt.is_empty() {
            String::new()
        } else {
            format!(" ({excerpt})")
        };
        let reason = format!("{}: HTTP {}{said}", self.describe(), status.as_u16());
        match status.as_u16() {
            408 | 429 | 500..=599 => Err(DeliveryError::Retry {
                reason,
                retry_after,
            }),
            _ => Err(DeliveryError::permanent(reason)),
        }
    }
}
