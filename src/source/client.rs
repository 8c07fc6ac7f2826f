//! The HTTP client of one source: authenticated calls with Orange's error
//! handling (README "Troubleshooting by Orange error"), paging, and detail by id.

use super::budget::RequestBudget;
use super::error::{ApiError, ApiErrorKind};
use super::token::{FreshToken, TokenCache};
use crate::clamp::{self, MAX_RETRY_AFTER};
use crate::config::SourceConfig;
use crate::diff::{self, Rules};
use crate::leader::LeaseClock;
use crate::retry::Backoff;
use crate::secret::{self, Secret};
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};
use url::Url;

/// A list answer larger than this is refused rather than read into memory.
pub const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;
/// One order's detail larger than this is refused.
pub const MAX_ORDER_BYTES: usize = 8 * 1024 * 1024;
/// Orange's error code for "resource not found" (with HTTP 404).
const ORANGE_NOT_FOUND: i64 = 60;
/// Rate-limit answers tolerated in one call before the cycle gives up.
const MAX_RATE_LIMITED: u32 = 6;
/// Waits after a rate-limit answer without `Retry-After`: 2 s, doubling.
const RATE_LIMITED: Backoff = Backoff::doubling(Duration::from_secs(2), Duration::from_secs(512));
/// No listing is believed to hold more orders than this: paging past it
/// ends the cycle with an error, whatever `X-Total-Count` says (or when it
/// never says anything).
pub const MAX_LISTED_ORDERS: u64 = 1_000_000;
/// Waiting this long for the request budget in one cycle is worth a line
/// in the log: it is what makes a cycle slow.
const THROTTLE_NOTICE: Duration = Duration::from_secs(1);
/// What a token's `expires_in` is taken to be when absent or nonsense:
/// Orange's documented default.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// One page of a list call, as read.
pub struct Page {
    pub offset: u64,
    pub orders: Vec<Box<RawValue>>,
    /// `X-Total-Count`, when Orange sent one that parses.
    pub total: Option<u64>,
    pub request_id: Option<String>,
}

/// What a detail call found.
#[derive(Debug)]
pub enum Detail {
    /// The order as Orange sent it (a JSON object).
    Order(Box<RawValue>),
    /// Orange's own "not found": the order is gone.
    NotFound,
    /// The id cannot be carried in a URL path without naming another
    /// address (`.`, `..`): it is not asked for.
    Unaddressable,
}

/// How much of an answer is read, and what a larger one is called.
#[derive(Clone, Copy)]
struct BodyLimit {
    bytes: usize,
    refusal: &'static str,
}

const PAGE_LIMIT: BodyLimit = BodyLimit {
    bytes: MAX_PAGE_BYTES,
    refusal: "the answer is larger than orderwatch accepts",
};
const ORDER_LIMIT: BodyLimit = BodyLimit {
    bytes: MAX_ORDER_BYTES,
    refusal: "the order is larger than orderwatch accepts",
};

/// Reads one source's orders.
pub struct SourceClient {
    name: String,
    http: reqwest::Client,
    /// `base_url` with the list path appended to its own path.
    list_url: Url,
    /// Reads the ids of a page's first and last orders, to tell a page
    /// repeated by an API that ignores `offset`.
    rules: Rules,
    token_url: Url,
    client_id: String,
    client_secret: Secret,
    api_key: Secret,
    filters: Vec<(String, String)>,
    sort: Option<String>,
    page_size: u64,
    concurrency: usize,
    retries: u32,
    /// Waits between retries of a 5xx or timed-out call.
    retry_backoff: Backoff,
    tokens: TokenCache,
    budget: RequestBudget,
    /// A replica's lease on the source: no call goes out once it ran out
    /// and could not be renewed.
    lease: Option<Arc<LeaseClock>>,
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
    /// Orange's published error body may carry `details[]`; each item's
    /// shape is not documented, so it is read loosely.
    #[serde(default)]
    details: Option<serde_json::Value>,
}

/// Orange's codes for an invalid request (400): 20 to 28, 28 being an
/// invalid query-string parameter.
const INVALID_PARAMETER_CODES: std::ops::RangeInclusive<i64> = 20..=28;

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
        let list_url = join_base(&cfg.base_url, &cfg.path);
        // The token endpoint may echo the Basic header it was sent.
        secret::remember_basic(&cfg.client_id, &cfg.client_secret);
        Ok(SourceClient {
            name: cfg.name.clone(),
            http,
            list_url,
            rules: Rules::from_config(cfg),
            token_url: cfg.token_url.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            api_key: cfg.api_key.clone(),
            filters: cfg.filters.clone(),
            sort: cfg
                .sort
                .clone()
                .or_else(|| cfg.incremental.as_ref().map(|i| i.sort())),
            page_size: u64::from(cfg.page_size),
            concurrency: cfg.concurrency.max(1) as usize,
            retries: cfg.retries,
            // Doubling, as documented, for at most ten doublings.
            retry_backoff: Backoff::doubling(
                cfg.retry_backoff,
                cfg.retry_backoff.saturating_mul(1 << 10),
            ),
            tokens: TokenCache::new(),
            budget: RequestBudget::new(&cfg.name, cfg.max_requests_per_minute),
            lease: None,
        })
    }

    /// Make no call once `lease` ran out: the client of a source that
    /// replicas share.
    pub fn bounded_by(mut self, lease: Arc<LeaseClock>) -> SourceClient {
        self.lease = Some(lease);
        self
    }

    /// The list URL with `segments` appended, each escaped as one path
    /// segment (an id holding `/`, `?` or `#` stays one segment). With no
    /// segments, the list URL itself. The path of `base_url` is kept: behind
    /// a gateway, `https://gw.example.com/orange` lists from
    /// `https://gw.example.com/orange/order-tracking/b2b/v1/orders`.
    pub fn api_url(&self, segments: &[&str]) -> Result<Url, ApiError> {
        let mut url = self.list_url.clone();
        if segments.is_empty() {
            return Ok(url);
        }
        if url.cannot_be_a_base() {
            return Err(ApiError::new(
                ApiErrorKind::Other,
                "the list URL cannot take an id",
            ));
        }
        // Every byte but the unreserved ones percent-encoded by hand: the
        // url crate's own segment encoding drops TAB, CR and LF (as URL
        // parsers must), which would turn `a\r\nb` into the order `ab`.
        let mut path = url.path().trim_end_matches('/').to_owned();
        for segment in segments {
            path.push('/');
            for b in segment.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    path.push(char::from(b));
                } else {
                    path.push_str(&format!("%{b:02X}"));
                }
            }
        }
        url.set_path(&path);
        Ok(url)
    }

    /// Read all pages, in order. The cycle this listing belongs to starts
    /// now: the time the request budget holds it back is counted from here
    /// and logged when the pager is dropped.
    pub fn pages(&self) -> Pager<'_> {
        self.pager(false)
    }

    /// `pages`, one at a time: an incremental listing stops at its mark,
    /// and pages fetched ahead of it would be calls spent for nothing.
    pub fn pages_one_by_one(&self) -> Pager<'_> {
        self.pager(true)
    }

    fn pager(&self, sequential: bool) -> Pager<'_> {
        // Waits before this cycle belong to no cycle.
        let _ = self.budget.take_waited();
        Pager {
            client: self,
            sequential,
            next_offset: 0,
            total: None,
            in_flight: FuturesOrdered::new(),
            finished: false,
            pages_read: 0,
            previous: None,
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
            .api_call(
                || {
                    self.http
                        .request(Method::GET, self.list_url.clone())
                        .query(&query)
                },
                PAGE_LIMIT,
            )
            .await
            .map_err(|e| name_the_parameter(e, &query))?;
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

    /// One order by id. Only Orange's own "not found" (404 with body code
    /// 60) says the order is gone: a 404 from a gateway or proxy (HTML, an
    /// empty body, another code) is an error, never a removal. The body is
    /// refused as soon as it passes `MAX_ORDER_BYTES`, while it streams.
    pub async fn order(&self, id: &str) -> Result<Detail, ApiError> {
        // `.` and `..` are dot-segments: any URL parser on the way (the url
        // crate, a proxy, Orange's gateway) resolves them, percent-encoded
        // or not, so they would read the list or its parent.
        if id == "." || id == ".." {
            return Ok(Detail::Unaddressable);
        }
        let url = self.api_url(&[id])?;
        let answer = match self
            .api_call(|| self.http.request(Method::GET, url.clone()), ORDER_LIMIT)
            .await
        {
            Ok(answer) => answer,
            Err(e) if e.kind == ApiErrorKind::NotFound && e.code == Some(ORANGE_NOT_FOUND) => {
                return Ok(Detail::NotFound);
            }
            Err(e) if e.kind == ApiErrorKind::NotFound => {
                let detail = format!(
                    "a 404 without Orange's \"not found\" code {ORANGE_NOT_FOUND} (a gateway's or proxy's answer?){}{}",
                    if e.detail.is_empty() { "" } else { ": " },
                    e.detail
                );
                return Err(ApiError {
                    kind: ApiErrorKind::Other,
                    detail,
                    ..e
                });
            }
            Err(e) => return Err(e),
        };
        let order: Box<RawValue> = serde_json::from_slice(&answer.body)
            .map_err(|e| self.bad_answer(&answer, format!("the order is not JSON: {e}")))?;
        if !order.get().trim_start().starts_with('{') {
            return Err(self.bad_answer(&answer, "the order is not a JSON object".into()));
        }
        Ok(Detail::Order(order))
    }

    /// An answer that is not what it should be. Not logged here: the error
    /// ends the call, and whoever handles it (the cycle) logs it once.
    fn bad_answer(&self, answer: &Answer, detail: String) -> ApiError {
        ApiError {
            kind: ApiErrorKind::BadAnswer,
            http: Some(answer.status.as_u16()),
            code: None,
            request_id: answer.request_id.clone(),
            detail: sanitize(&detail),
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
            .send(
                || {
                    self.http
                        .post(self.token_url.clone())
                        .basic_auth(&self.client_id, Some(self.client_secret.expose()))
                        .header(ACCEPT, "application/json")
                        .form(&[("grant_type", "client_credentials")])
                },
                PAGE_LIMIT,
            )
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
            let expires_in = parsed
                .expires_in
                .as_ref()
                .and_then(clamp::expires_in)
                .unwrap_or(DEFAULT_TOKEN_LIFETIME)
                .max(Duration::from_secs(1));
            debug!(source = %self.name, expires_in_s = expires_in.as_secs(), "new access token");
            return Ok(FreshToken {
                value: Secret::issued(token),
                expires_in,
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

    /// A failed token request. Not logged here: the error ends the cycle,
    /// which logs it once.
    fn token_error(&self, kind: ApiErrorKind, answer: &Answer, detail: String) -> ApiError {
        ApiError {
            kind,
            http: Some(answer.status.as_u16()),
            code: None,
            request_id: answer.request_id.clone(),
            detail: sanitize(&detail),
        }
    }

    /// An authenticated API call with Orange's error handling: a fresh token
    /// once after a 401, waiting out rate limits, giving up on other errors.
    /// What is recovered from is logged here; an error that ends the call is
    /// not, since its handler logs it (once).
    async fn api_call(
        &self,
        build: impl Fn() -> RequestBuilder,
        limit: BodyLimit,
    ) -> Result<Answer, ApiError> {
        let mut refreshed = false;
        let mut rate_limited = 0u32;
        loop {
            let token = self.token().await?;
            let answer = self
                .send(
                    || {
                        build()
                            .bearer_auth(token.expose())
                            .header("X-API-Key", self.api_key.expose())
                            .header(ACCEPT, "application/json")
                    },
                    limit,
                )
                .await?;
            if answer.status.is_success() {
                return Ok(answer);
            }
            let status = answer.status.as_u16();
            let (code, detail) = orange_error(&answer.body);
            let invalid_parameter =
                status == 400 && code.is_some_and(|c| INVALID_PARAMETER_CODES.contains(&c));
            let error = |kind| ApiError {
                kind,
                http: Some(answer.status.as_u16()),
                code,
                request_id: answer.request_id.clone(),
                detail: detail.clone(),
            };
            let is_rate_limit = status == 429 || (status == 403 && code == Some(53));
            let request_id = answer.request_id.as_deref().unwrap_or("-");
            match status {
                401 if !refreshed => {
                    refreshed = true;
                    info!(
                        source = %self.name,
                        http = status,
                        code = code.unwrap_or(0),
                        request_id,
                        "Orange refused the access token: fetching a new one ({detail})"
                    );
                    self.tokens.invalidate(&token).await;
                }
                401 => return Err(error(ApiErrorKind::Unauthorized)),
                _ if is_rate_limit => {
                    rate_limited += 1;
                    if rate_limited > MAX_RATE_LIMITED {
                        return Err(error(ApiErrorKind::RateLimited));
                    }
                    let wait = clamp::retry_after(&answer.headers)
                        .unwrap_or_else(|| RATE_LIMITED.delay(rate_limited))
                        .min(MAX_RETRY_AFTER);
                    warn!(
                        source = %self.name,
                        http = status,
                        code = code.unwrap_or(0),
                        request_id,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "rate limited by Orange: waiting ({detail})"
                    );
                    self.budget.close_for(wait);
                }
                _ if invalid_parameter => return Err(error(ApiErrorKind::InvalidParameter)),
                403 => return Err(error(ApiErrorKind::Forbidden)),
                404 => return Err(error(ApiErrorKind::NotFound)),
                406 => return Err(error(ApiErrorKind::NotAcceptable)),
                _ if answer.status.is_server_error() => return Err(error(ApiErrorKind::Server)),
                _ => return Err(error(ApiErrorKind::Other)),
            }
        }
    }

    /// Send within the budget; retry 5xx, timeouts and connection errors with
    /// backoff. Any other answer is returned as it is. Each retry is logged
    /// as it is decided; the final failure is left to the caller to log.
    async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
        limit: BodyLimit,
    ) -> Result<Answer, ApiError> {
        let mut attempt = 0u32;
        loop {
            self.budget.acquire().await;
            // Checked last before the call: the wait for the budget, a slow
            // cycle, or a pause of the whole process may have outlasted the
            // lease.
            if self.lease.as_ref().is_some_and(|lease| !lease.may_call()) {
                return Err(ApiError::new(ApiErrorKind::LeaseLost, ""));
            }
            let outcome = self.send_once(build(), limit).await;
            let mut failure = match outcome {
                Ok(answer) if !answer.status.is_server_error() => return Ok(answer),
                Ok(answer) => {
                    let (code, detail) = orange_error(&answer.body);
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
                Err(e) => e,
            };
            if attempt >= self.retries {
                if attempt > 0 {
                    let retries = if attempt == 1 { "retry" } else { "retries" };
                    failure.detail =
                        format!("{}; still so after {attempt} {retries}", failure.detail);
                }
                return Err(failure);
            }
            attempt += 1;
            let wait = self.retry_backoff.delay(attempt);
            warn!(
                source = %self.name,
                http = failure.http.unwrap_or(0),
                code = failure.code.unwrap_or(0),
                request_id = failure.request_id.as_deref().unwrap_or("-"),
                attempt,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "{} (attempt {attempt} of {}): retrying: {}",
                failure.headline(),
                self.retries + 1,
                failure.detail
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_once(
        &self,
        request: RequestBuilder,
        limit: BodyLimit,
    ) -> Result<Answer, ApiError> {
        let response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = headers
            .get("x-oapi-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        metrics::counter!(crate::metrics::API_REQUESTS_TOTAL, "source" => self.name.clone(), "status" => status.as_u16().to_string()).increment(1);
        let body = read_capped(response, limit).await.map_err(|mut e| {
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
    sequential: bool,
    next_offset: u64,
    total: Option<u64>,
    in_flight: FuturesOrdered<futures::future::BoxFuture<'a, Result<Page, ApiError>>>,
    finished: bool,
    pages_read: u64,
    /// The previous page's ids, to tell a page served again.
    previous: Option<PageIds>,
}

/// What tells a page from the next: the ids of its first and last orders
/// and how many it holds. An API that ignores `offset` serves the same
/// ones again; a real next page never does (unless exactly a page's worth
/// of orders was added in front between the two calls, and then stopping
/// this cycle is right too).
#[derive(PartialEq, Eq)]
struct PageIds {
    first: String,
    last: String,
    len: usize,
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
        self.pages_read += 1;
        if let Err(e) = self.check_progress(&page) {
            self.finished = true;
            self.in_flight = FuturesOrdered::new();
            return Err(e);
        }
        let n = page.orders.len() as u64;
        let end = page.offset.saturating_add(n);
        let short = n < self.client.page_size;
        let past_total = self.total.is_some_and(|t| end >= t);
        if n == 0 || short || past_total {
            // The listing ends here; pages fetched ahead are not needed.
            self.finished = true;
            self.in_flight = FuturesOrdered::new();
        }
        Ok(Some(page))
    }

    /// Stop here: the caller has read what it needs (an incremental
    /// listing that reached its mark). Pages fetched ahead are dropped.
    pub fn finish(&mut self) {
        self.finished = true;
        self.in_flight = FuturesOrdered::new();
    }

    /// Paging must end: a page that repeats the previous one, or paging past
    /// [`MAX_LISTED_ORDERS`], ends the listing with an error (and the cycle
    /// then looks for no vanished order).
    fn check_progress(&mut self, page: &Page) -> Result<(), ApiError> {
        let paging_error = |detail: String| ApiError {
            kind: ApiErrorKind::Paging,
            http: Some(200),
            code: None,
            request_id: page.request_id.clone(),
            detail,
        };
        let ids = self.client.page_ids(page);
        if ids.is_some() && ids == self.previous {
            return Err(paging_error(format!(
                "the page at offset {} holds the same orders as the page before it: the API seems to ignore `offset`",
                page.offset
            )));
        }
        self.previous = ids;
        let max_pages = MAX_LISTED_ORDERS.div_ceil(self.client.page_size);
        if self.pages_read >= max_pages && !page.orders.is_empty() {
            let more_expected = (page.orders.len() as u64) >= self.client.page_size
                && self
                    .total
                    .is_none_or(|t| page.offset.saturating_add(page.orders.len() as u64) < t);
            if more_expected {
                return Err(paging_error(format!(
                    "{} pages of {} read and the listing goes on: more than the {MAX_LISTED_ORDERS} orders orderwatch reads from one listing (narrow it with `filters`)",
                    self.pages_read, self.client.page_size
                )));
            }
        }
        Ok(())
    }

    fn top_up(&mut self) {
        let window = if self.total.is_some() && !self.sequential {
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
            self.next_offset = self.next_offset.saturating_add(self.client.page_size);
            let client = self.client;
            self.in_flight.push_back(Box::pin(client.page(offset)));
            if self.total.is_some_and(|t| self.next_offset >= t) {
                break;
            }
        }
    }
}

impl Drop for Pager<'_> {
    /// The cycle is over: say once if the request budget held it back.
    fn drop(&mut self) {
        let waited = self.client.budget.take_waited();
        if waited.total() < THROTTLE_NOTICE {
            return;
        }
        let per_minute = self.client.budget.per_minute();
        let advice = if waited.for_slot >= waited.closed {
            "raise max_requests_per_minute if Orange allows it, or poll less often"
        } else {
            "Orange asked for the waits: lower max_requests_per_minute or concurrency, or poll less often"
        };
        info!(
            source = %self.client.name,
            waited_ms = u64::try_from(waited.total().as_millis()).unwrap_or(u64::MAX),
            rate_limited_ms = u64::try_from(waited.closed.as_millis()).unwrap_or(u64::MAX),
            max_requests_per_minute = per_minute,
            "the request budget ({per_minute} calls a minute) held this cycle back {:.1}s, {:.1}s of it for Orange's rate-limit answers: {advice}",
            waited.total().as_secs_f64(),
            waited.closed.as_secs_f64(),
        );
    }
}

impl SourceClient {
    fn page_ids(&self, page: &Page) -> Option<PageIds> {
        let id = |raw: &RawValue| diff::identify(raw, &self.rules).ok().map(|(id, _)| id);
        Some(PageIds {
            first: id(page.orders.first()?)?,
            last: id(page.orders.last()?)?,
            len: page.orders.len(),
        })
    }
}

/// `base` with `path` appended to its own path, never replacing it (as
/// `Url::join` of an absolute path would): `http://gw/api` and
/// `/oauth/v3/token` give `http://gw/api/oauth/v3/token`.
pub fn join_base(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

/// A refused query parameter, named: Orange's `details` may name it;
/// otherwise the first parameter of the call its description mentions.
fn name_the_parameter(mut e: ApiError, query: &[(String, String)]) -> ApiError {
    if e.kind != ApiErrorKind::InvalidParameter {
        return e;
    }
    // A quoted name first: a description may also use a parameter's name
    // as a plain word ("the status of ...").
    let names = || query.iter().map(|(name, _)| name.as_str());
    let named = names()
        .find(|name| e.detail.contains(&format!("\"{name}\"")))
        .or_else(|| names().find(|name| mentions(&e.detail, name)));
    if let Some(name) = named {
        e.detail = format!("the query parameter `{name}`: {}", e.detail);
    }
    e
}

/// `text` names `word` as a whole word (`limit`, not `unlimited`).
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let apart = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '_');
        apart(before) && apart(after)
    })
}

/// Orange's `{"code", "message", "description", "details"}`, or a short
/// plain text.
fn orange_error(body: &[u8]) -> (Option<i64>, String) {
    match serde_json::from_slice::<OrangeErrorBody>(body) {
        Ok(e) => {
            let details = e.details.as_ref().map(detail_text).unwrap_or_default();
            let text = [e.message, e.description, Some(details)]
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

/// `details[]` as text: strings as they are, objects as `key=value` pairs.
fn detail_text(details: &serde_json::Value) -> String {
    use serde_json::Value;
    let item = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    match details {
        Value::Array(items) => items.iter().map(item).collect::<Vec<_>>().join("; "),
        other => item(other),
    }
}

/// Keep messages from outside short, on one line, and free of secrets.
fn sanitize(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // Redacted before it is shortened: a secret cut in half would no
    // longer be recognised.
    let redacted = secret::redact(&one_line);
    let trimmed = redacted.trim();
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
    let detail = format!("{e}{}", crate::deliver::causes(e));
    ApiError::new(kind, sanitize(&detail))
}

async fn read_capped(mut response: reqwest::Response, limit: BodyLimit) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ApiErrorKind::BadAnswer,
            format!("{} (more than {} bytes)", limit.refusal, limit.bytes),
        )
    };
    let announced = response.content_length();
    if announced.is_some_and(|n| n > limit.bytes as u64) {
        return Err(too_large());
    }
    // Read into one buffer of the announced size (within the limit): grown
    // by doubling, a large page would briefly take up to three times its size.
    let mut body = bytes::BytesMut::with_capacity(announced.unwrap_or(0) as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit.bytes {
                    return Err(too_large());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orange_error_bodies_are_read() {
        let (code, text) =
            orange_error(br#"{"code":53,"message":"Too many requests","description":"slow down"}"#);
        assert_eq!(code, Some(53));
        assert_eq!(text, "Too many requests: slow down");
        let (code, text) = orange_error(
            br#"{"code":28,"message":"Invalid query-string parameter value","description":"bad","details":[{"parameter":"limit","reason":"above 250"}]}"#,
        );
        assert_eq!(code, Some(28));
        assert_eq!(
            text,
            "Invalid query-string parameter value: bad: parameter=limit reason=above 250"
        );
        let (code, text) = orange_error(b"<html>oops</html>");
        assert_eq!(code, None);
        assert_eq!(text, "<html>oops</html>");
    }

    #[test]
    fn a_refused_parameter_is_named_as_a_whole_word() {
        assert!(mentions(r#"the parameter "limit" is too large"#, "limit"));
        assert!(!mentions("unlimited offsets", "limit"));
        let query = vec![
            ("status".to_owned(), "x".to_owned()),
            ("limit".to_owned(), "500".to_owned()),
        ];
        let e = ApiError::new(
            ApiErrorKind::InvalidParameter,
            r#"The value "500" of the query-string parameter "limit" is greater than 250"#,
        );
        assert!(
            name_the_parameter(e, &query)
                .detail
                .starts_with("the query parameter `limit`: ")
        );
    }

    #[test]
    fn base_url_paths_are_kept() {
        let join = |base: &str, path: &str| join_base(&Url::parse(base).unwrap(), path).to_string();
        assert_eq!(
            join("http://gw:8080/api", "/oauth/v3/token"),
            "http://gw:8080/api/oauth/v3/token"
        );
        assert_eq!(
            join("http://gw:8080/api/", "/order-tracking/b2b/v1/orders"),
            "http://gw:8080/api/order-tracking/b2b/v1/orders"
        );
        assert_eq!(
            join("https://api.orange.com", "/oauth/v3/token"),
            "https://api.orange.com/oauth/v3/token"
        );
        assert_eq!(
            join("https://api.orange.com/", "ordering/b2b/v2/requests"),
            "https://api.orange.com/ordering/b2b/v2/requests"
        );
    }

    #[test]
    fn api_urls_keep_the_prefix_and_escape_each_segment() {
        let yaml = "sources:\n  - { name: s, api: ordering, base_url: 'http://gw:8080/orange/', client_id: id, client_secret: secret-x, api_key: key-x }\n";
        let config = crate::config::Config::parse(
            yaml,
            std::path::Path::new("t.yaml"),
            &std::collections::HashMap::new(),
        )
        .unwrap();
        let source = &config.sources[0];
        assert_eq!(
            source.token_url.as_str(),
            "http://gw:8080/orange/oauth/v3/token"
        );
        let client = SourceClient::new(source).unwrap();
        assert_eq!(
            client.api_url(&[]).unwrap().as_str(),
            "http://gw:8080/orange/ordering/b2b/v2/requests"
        );
        assert_eq!(
            client.api_url(&["A/1?x#y"]).unwrap().as_str(),
            "http://gw:8080/orange/ordering/b2b/v2/requests/A%2F1%3Fx%23y"
        );
    }

    #[test]
    fn sanitize_keeps_one_short_line() {
        assert_eq!(sanitize("a\nb\r\n"), "a b");
        assert!(sanitize(&"x".repeat(1000)).chars().count() <= 301);
    }
}
