//! The HTTP client of one source: authenticated calls with Orange's error
//! handling (DESIGN.md "The two APIs" table), paging, and detail by id.

use super::budget::RequestBudget;
use super::error::{ApiError, ApiErrorKind};
use super::token::{FreshToken, TokenCache};
use crate::config::SourceConfig;
use crate::secret::Secret;
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use rand::Rng;
use reqwest::header::{ACCEPT, HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};
use url::Url;

/// A list answer larger than this is refused rather than read into memory.
pub const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;
/// One order's detail larger than this is refused.
pub const MAX_ORDER_BYTES: usize = 8 * 1024 * 1024;
/// A `Retry-After` longer than this is shortened: a cycle must end some day.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(600);
/// Rate-limit answers tolerated in one call before the cycle gives up.
const MAX_RATE_LIMITED: u32 = 6;

/// One page of a list call, as read.
pub struct Page {
    pub offset: u64,
    pub orders: Vec<Box<RawValue>>,
    /// `X-Total-Count`, when Orange sent one that parses.
    pub total: Option<u64>,
    pub request_id: Option<String>,
}

/// Reads one source's orders.
pub struct SourceClient {
    name: String,
    http: reqwest::Client,
    list_url: Url,
    token_url: Url,
    client_id: String,
    client_secret: Secret,
    api_key: Secret,
    filters: Vec<(String, String)>,
    sort: Option<String>,
    page_size: u64,
    concurrency: usize,
    retries: u32,
    retry_backoff: Duration,
    tokens: TokenCache,
    budget: RequestBudget,
}

/// An answer with its status, before Orange's error codes are looked at.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    request_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct OrangeErrorBody {
    code: Option<i64>,
    message: Option<String>,
    description: Option<String>,
}

impl SourceClient {
    pub fn new(cfg: &SourceConfig) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                ApiError::new(
                    ApiErrorKind::Other,
                    format!("cannot build the HTTP client: {e}"),
                )
            })?;
        let list_url = cfg.base_url.join(&cfg.path).map_err(|e| {
            ApiError::new(ApiErrorKind::Other, format!("bad path `{}`: {e}", cfg.path))
        })?;
        Ok(SourceClient {
            name: cfg.name.clone(),
            http,
            list_url,
            token_url: cfg.token_url.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            api_key: cfg.api_key.clone(),
            filters: cfg.filters.clone(),
            sort: cfg.sort.clone(),
            page_size: u64::from(cfg.page_size),
            concurrency: cfg.concurrency.max(1) as usize,
            retries: cfg.retries,
            retry_backoff: cfg.retry_backoff,
            tokens: TokenCache::new(),
            budget: RequestBudget::new(cfg.max_requests_per_minute),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Read all pages, one at a time, in order.
    pub fn pages(&self) -> Pager<'_> {
        Pager {
            client: self,
            next_offset: 0,
            total: None,
            in_flight: FuturesOrdered::new(),
            finished: false,
        }
    }

    /// One page of the list at `offset`.
    pub async fn page(&self, offset: u64) -> Result<Page, ApiError> {
        let mut query: Vec<(String, String)> = self.filters.clone();
        query.push(("offset".into(), offset.to_string()));
        query.push(("limit".into(), self.page_size.to_string()));
        if let Some(sort) = &self.sort {
            query.push(("sort".into(), sort.clone()));
        }
        let answer = self
            .api_call(|| {
                self.http
                    .request(Method::GET, self.list_url.clone())
                    .query(&query)
            })
            .await?;
        let orders: Vec<Box<RawValue>> = serde_json::from_slice(&answer.body).map_err(|e| {
            self.bad_answer(
                &answer,
                format!("the list answer is not a JSON array of orders: {e}"),
            )
        })?;
        let total = header_u64(&answer.headers, "x-total-count");
        Ok(Page {
            offset,
            orders,
            total,
            request_id: answer.request_id,
        })
    }

    /// One order by id; `None` when Orange answers 404 (the order is gone).
    pub async fn order(&self, id: &str) -> Result<Option<Box<RawValue>>, ApiError> {
        let mut url = self.list_url.clone();
        match url.path_segments_mut() {
            Ok(mut segments) => {
                segments.pop_if_empty().push(id);
            }
            Err(()) => {
                return Err(ApiError::new(
                    ApiErrorKind::Other,
                    "the list URL cannot take an id",
                ));
            }
        }
        let answer = match self
            .api_call(|| self.http.request(Method::GET, url.clone()))
            .await
        {
            Ok(answer) => answer,
            Err(e) if e.kind == ApiErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if answer.body.len() > MAX_ORDER_BYTES {
            return Err(self.bad_answer(
                &answer,
                "the order is larger than orderwatch accepts".into(),
            ));
        }
        let order: Box<RawValue> = serde_json::from_slice(&answer.body)
            .map_err(|e| self.bad_answer(&answer, format!("the order is not JSON: {e}")))?;
        if !order.get().trim_start().starts_with('{') {
            return Err(self.bad_answer(&answer, "the order is not a JSON object".into()));
        }
        Ok(Some(order))
    }

    fn bad_answer(&self, answer: &Answer, detail: String) -> ApiError {
        warn!(source = %self.name, request_id = answer.request_id.as_deref().unwrap_or("-"), "{detail}");
        ApiError {
            kind: ApiErrorKind::BadAnswer,
            http: Some(answer.status.as_u16()),
            code: None,
            request_id: answer.request_id.clone(),
            detail,
        }
    }

    async fn token(&self) -> Result<Arc<Secret>, ApiError> {
        self.tokens.get(|| self.fetch_token()).await
    }

    async fn fetch_token(&self) -> Result<FreshToken, ApiError> {
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            access_token: Option<String>,
            expires_in: Option<serde_json::Value>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let answer = self
            .send(|| {
                self.http
                    .post(self.token_url.clone())
                    .basic_auth(&self.client_id, Some(self.client_secret.expose()))
                    .header(ACCEPT, "application/json")
                    .form(&[("grant_type", "client_credentials")])
            })
            .await?;
        let parsed: Option<TokenAnswer> = serde_json::from_slice(&answer.body).ok();
        if answer.status.is_success() {
            let Some(parsed) = parsed else {
                return Err(self.token_error(
                    ApiErrorKind::TokenEndpoint,
                    &answer,
                    "the answer is not JSON".into(),
                ));
            };
            let Some(token) = parsed.access_token.filter(|t| !t.is_empty()) else {
                return Err(self.token_error(
                    ApiErrorKind::TokenEndpoint,
                    &answer,
                    "no access_token in the answer".into(),
                ));
            };
            let seconds = match parsed.expires_in {
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            }
            .unwrap_or(3600);
            debug!(source = %self.name, expires_in = seconds, "new access token");
            return Ok(FreshToken {
                value: Secret::new(token),
                expires_in: Duration::from_secs(seconds.max(1)),
            });
        }
        let (error, description) = parsed
            .map(|p| {
                (
                    p.error.unwrap_or_default(),
                    p.error_description.unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        let kind = if answer.status == StatusCode::UNAUTHORIZED || error == "invalid_client" {
            ApiErrorKind::InvalidClient
        } else {
            ApiErrorKind::TokenEndpoint
        };
        let detail = [error, description]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        Err(self.token_error(kind, &answer, detail))
    }

    fn token_error(&self, kind: ApiErrorKind, answer: &Answer, detail: String) -> ApiError {
        let err = ApiError {
            kind,
            http: Some(answer.status.as_u16()),
            code: None,
            request_id: answer.request_id.clone(),
            detail: sanitize(&detail),
        };
        warn!(source = %self.name, request_id = answer.request_id.as_deref().unwrap_or("-"), "token request failed: {err}");
        err
    }

    /// An authenticated API call with Orange's error handling: a fresh token
    /// once after a 401, waiting out rate limits, giving up on other errors.
    async fn api_call(&self, build: impl Fn() -> RequestBuilder) -> Result<Answer, ApiError> {
        let mut refreshed = false;
        let mut rate_limited = 0u32;
        loop {
            let token = self.token().await?;
            let answer = self
                .send(|| {
                    build()
                        .bearer_auth(token.expose())
                        .header("X-API-Key", self.api_key.expose())
                        .header(ACCEPT, "application/json")
                })
                .await?;
            if answer.status.is_success() {
                return Ok(answer);
            }
            let (code, detail) = orange_error(&answer.body);
            let error = |kind| ApiError {
                kind,
                http: Some(answer.status.as_u16()),
                code,
                request_id: answer.request_id.clone(),
                detail: detail.clone(),
            };
            let status = answer.status.as_u16();
            let is_rate_limit = status == 429 || (status == 403 && code == Some(53));
            if status != 404 {
                warn!(
                    source = %self.name,
                    http = status,
                    code = code.unwrap_or(0),
                    request_id = answer.request_id.as_deref().unwrap_or("-"),
                    "Orange API call failed: {detail}"
                );
            }
            match status {
                401 if !refreshed => {
                    refreshed = true;
                    self.tokens.invalidate(&token).await;
                }
                401 => return Err(error(ApiErrorKind::Unauthorized)),
                _ if is_rate_limit => {
                    rate_limited += 1;
                    if rate_limited > MAX_RATE_LIMITED {
                        return Err(error(ApiErrorKind::RateLimited));
                    }
                    let wait = retry_after(&answer.headers)
                        .map(|d| d.min(MAX_RATE_LIMIT_WAIT))
                        .unwrap_or_else(|| {
                            jittered(Duration::from_secs(2) * 2u32.pow((rate_limited - 1).min(8)))
                        })
                        .min(MAX_RATE_LIMIT_WAIT);
                    warn!(source = %self.name, wait_ms = wait.as_millis() as u64, "rate limited by Orange: waiting");
                    self.budget.close_for(wait).await;
                }
                403 => return Err(error(ApiErrorKind::Forbidden)),
                404 => return Err(error(ApiErrorKind::NotFound)),
                406 => return Err(error(ApiErrorKind::NotAcceptable)),
                _ if answer.status.is_server_error() => return Err(error(ApiErrorKind::Server)),
                _ => return Err(error(ApiErrorKind::Other)),
            }
        }
    }

    /// Send within the budget; retry 5xx, timeouts and connection errors with
    /// backoff. Any other answer is returned as it is.
    async fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Answer, ApiError> {
        let mut attempt = 0u32;
        loop {
            self.budget.acquire().await;
            let outcome = self.send_once(build()).await;
            let failure = match outcome {
                Ok(answer) if !answer.status.is_server_error() => return Ok(answer),
                Ok(answer) => {
                    let (code, detail) = orange_error(&answer.body);
                    warn!(
                        source = %self.name,
                        http = answer.status.as_u16(),
                        code = code.unwrap_or(0),
                        request_id = answer.request_id.as_deref().unwrap_or("-"),
                        attempt = attempt + 1,
                        "Orange answered a server error: {detail}"
                    );
                    ApiError {
                        kind: ApiErrorKind::Server,
                        http: Some(answer.status.as_u16()),
                        code,
                        request_id: answer.request_id,
                        detail,
                    }
                }
                // An answer too large is refused, not fetched again.
                Err(e) if e.kind == ApiErrorKind::BadAnswer => return Err(e),
                Err(e) => {
                    warn!(source = %self.name, attempt = attempt + 1, "API call failed: {e}");
                    e
                }
            };
            if attempt >= self.retries {
                return Err(failure);
            }
            let wait = jittered(self.retry_backoff * 2u32.pow(attempt.min(10)));
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_once(&self, request: RequestBuilder) -> Result<Answer, ApiError> {
        let response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = headers
            .get("x-oapi-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        metrics::counter!("orderwatch_api_requests_total", "source" => self.name.clone(), "status" => status.as_u16().to_string()).increment(1);
        let body = read_capped(response, MAX_PAGE_BYTES)
            .await
            .map_err(|mut e| {
                e.http = Some(status.as_u16());
                e.request_id = request_id.clone();
                e
            })?;
        Ok(Answer {
            status,
            headers,
            body,
            request_id,
        })
    }
}

/// Pages of the list, read in order; with `concurrency` above one and the
/// total known, the next pages are fetched while the current one is handled.
pub struct Pager<'a> {
    client: &'a SourceClient,
    next_offset: u64,
    total: Option<u64>,
    in_flight: FuturesOrdered<futures::future::BoxFuture<'a, Result<Page, ApiError>>>,
    finished: bool,
}

impl Pager<'_> {
    /// The next page, or `None` once the listing is complete.
    pub async fn next(&mut self) -> Result<Option<Page>, ApiError> {
        if self.finished {
            return Ok(None);
        }
        self.top_up();
        let Some(result) = self.in_flight.next().await else {
            self.finished = true;
            return Ok(None);
        };
        let page = match result {
            Ok(page) => page,
            Err(e) => {
                self.finished = true;
                return Err(e);
            }
        };
        if page.total.is_some() {
            self.total = page.total;
        }
        let n = page.orders.len() as u64;
        let end = page.offset + n;
        let short = n < self.client.page_size;
        let past_total = self.total.is_some_and(|t| end >= t);
        if n == 0 || short || past_total {
            // The listing ends here; pages fetched ahead are not needed.
            self.finished = true;
            self.in_flight = FuturesOrdered::new();
        }
        Ok(Some(page))
    }

    fn top_up(&mut self) {
        let window = if self.total.is_some() {
            self.client.concurrency
        } else {
            1
        };
        while self.in_flight.len() < window {
            if let Some(total) = self.total
                && self.next_offset >= total
                && !self.in_flight.is_empty()
            {
                break;
            }
            let offset = self.next_offset;
            self.next_offset += self.client.page_size;
            let client = self.client;
            self.in_flight.push_back(Box::pin(client.page(offset)));
            if self.total.is_some_and(|t| self.next_offset >= t) {
                break;
            }
        }
    }
}

/// Orange's `{"code", "message", "description"}`, or a short plain text.
fn orange_error(body: &[u8]) -> (Option<i64>, String) {
    match serde_json::from_slice::<OrangeErrorBody>(body) {
        Ok(e) => {
            let text = [e.message, e.description]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            (e.code, sanitize(&text))
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            (None, sanitize(&text))
        }
    }
}

/// Keep messages from outside short and on one line.
fn sanitize(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    match trimmed.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_owned(),
    }
}

fn transport_error(e: &reqwest::Error) -> ApiError {
    // reqwest's Display includes the URL; ours carry no credentials, but keep
    // it short and plain all the same.
    let kind = if e.is_timeout() {
        ApiErrorKind::Timeout
    } else {
        ApiErrorKind::Connect
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    ApiError::new(kind, sanitize(&detail))
}

async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Bytes, ApiError> {
    if response.content_length().is_some_and(|n| n as usize > cap) {
        return Err(ApiError::new(
            ApiErrorKind::BadAnswer,
            format!("the answer is larger than {cap} bytes"),
        ));
    }
    let mut body = bytes::BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(ApiError::new(
                        ApiErrorKind::BadAnswer,
                        format!("the answer is larger than {cap} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) if e.is_timeout() => {
                return Err(ApiError::new(
                    ApiErrorKind::Timeout,
                    "timed out reading the answer",
                ));
            }
            Err(e) => {
                return Err(ApiError::new(
                    ApiErrorKind::BadAnswer,
                    sanitize(&format!("the answer was cut short: {e}")),
                ));
            }
        }
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Orange).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// ±20% so many clients recovering together do not call in step.
pub(crate) fn jittered(base: Duration) -> Duration {
    let factor = rand::rng().random_range(0.8..=1.2);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orange_error_bodies_are_read() {
        let (code, text) =
            orange_error(br#"{"code":53,"message":"Too many requests","description":"slow down"}"#);
        assert_eq!(code, Some(53));
        assert_eq!(text, "Too many requests: slow down");
        let (code, text) = orange_error(b"<html>oops</html>");
        assert_eq!(code, None);
        assert_eq!(text, "<html>oops</html>");
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }

    #[test]
    fn sanitize_keeps_one_short_line() {
        assert_eq!(sanitize("a\nb\r\n"), "a b");
        assert!(sanitize(&"x".repeat(1000)).chars().count() <= 301);
    }
}
