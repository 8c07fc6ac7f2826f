//! Typed errors of Orange API calls, with plain messages.
//!
//! Every error carries what Orange support asks for: the HTTP status, Orange's
//! numeric `code` and the `X-OAPI-Request-Id` of the failed call. Messages say
//! what to do, and never contain a credential.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The token endpoint refused the client id or secret.
    InvalidClient,
    /// The token endpoint failed otherwise.
    TokenEndpoint,
    /// 401 again after a fresh token.
    Unauthorized,
    /// 403 code 50: not subscribed, revoked, or the API key is wrong/expired.
    Forbidden,
    /// 403/429 code 53, still after backing off.
    RateLimited,
    /// 404 code 60.
    NotFound,
    /// 406 code 62: a request orderwatch built wrong.
    NotAcceptable,
    /// 400 codes 20–28: Orange refused a query parameter (the detail names
    /// it). Asking again would get the same answer, so it is never retried.
    InvalidParameter,
    /// 5xx, after the retries (the detail says how many).
    Server,
    /// No answer in time, after the retries.
    Timeout,
    /// No connection, after the retries.
    Connect,
    /// The answer was not the JSON it should be (truncated, HTML, wrong shape).
    BadAnswer,
    /// The listing would not end: a page repeating the one before (the API
    /// ignores `offset`), or more pages than any plausible listing has.
    Paging,
    /// The lease of a replica that leads the source ran out mid-cycle:
    /// another replica may poll it now, so no call went out.
    LeaseLost,
    /// Any other status.
    Other,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub http: Option<u16>,
    pub code: Option<i64>,
    pub request_id: Option<String>,
    /// Orange's own message/description, or the transport error.
    pub detail: String,
}

impl ApiError {
    pub fn new(kind: ApiErrorKind, detail: impl Into<String>) -> Self {
        ApiError {
            kind,
            http: None,
            code: None,
            request_id: None,
            detail: detail.into(),
        }
    }

    pub(crate) fn headline(&self) -> &'static str {
        match self.kind {
            ApiErrorKind::InvalidClient => {
                "Orange refused the client credentials: check client_id and client_secret"
            }
            ApiErrorKind::TokenEndpoint => "the token endpoint did not give an access token",
            ApiErrorKind::Unauthorized => {
                "Orange rejected the access token even after a fresh one was fetched: check client_id, client_secret and that the application may use this API"
            }
            ApiErrorKind::Forbidden => {
                "Orange refused access: the API key is wrong, revoked or expired (keys last two years; ask Orange support for a new one), or the application is not subscribed to this API"
            }
            ApiErrorKind::RateLimited => {
                "Orange kept answering 'too many requests' after backing off: lower max_requests_per_minute or poll less often"
            }
            ApiErrorKind::NotFound => "not found",
            ApiErrorKind::NotAcceptable => {
                "Orange answered 406 Not Acceptable: orderwatch sent a request Orange does not accept (a bug: please report it with the request id)"
            }
            ApiErrorKind::InvalidParameter => {
                "Orange refused a query parameter of the list call (not retried: the same call gets the same answer): check the source's page_size, filters and sort"
            }
            ApiErrorKind::Server => "Orange answered with a server error",
            ApiErrorKind::Timeout => "Orange did not answer in time",
            ApiErrorKind::Connect => "could not connect to the API",
            ApiErrorKind::BadAnswer => "the API's answer was not the JSON expected",
            ApiErrorKind::Paging => {
                "the listing did not end, so this cycle stopped reading it (no order is taken as removed)"
            }
            ApiErrorKind::LeaseLost => {
                "this orderwatch's lease on the source ran out mid-cycle (another replica may poll it now), so no further call went out"
            }
            ApiErrorKind::Other => "the API answered with an unexpected status",
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.headline())?;
        let mut parts = Vec::new();
        if let Some(http) = self.http {
            parts.push(format!("HTTP {http}"));
        }
        if let Some(code) = self.code {
            parts.push(format!("code {code}"));
        }
        if let Some(id) = &self.request_id {
            parts.push(format!("request id {id}"));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}
