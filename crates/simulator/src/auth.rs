//! Issued tokens and their expiry, and the credential checks every API call
//! goes through, in Orange's order: bearer token, then API key.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;

use super::errors::ApiError;

/// Past this many tokens, expired ones are forgotten at the next issue (and
/// then answer 41, unknown, rather than 42): a client fetching a token per
/// call must not grow memory without bound.
const MAX_TOKENS: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Unknown,
    Expired,
}

#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    /// Per token, its number (the first issued is 1) and its expiry.
    expiries: HashMap<String, (u64, Instant)>,
    issued: u64,
}

impl TokenStore {
    pub(crate) fn issue(&mut self, ttl: Duration, now: Instant) -> String {
        if self.expiries.len() >= MAX_TOKENS {
            self.expiries.retain(|_, (_, expiry)| *expiry > now);
        }
        let bytes: [u8; 24] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.issued += 1;
        self.expiries
            .insert(token.clone(), (self.issued, now + ttl));
        token
    }

    /// The number of a token in the order they were issued (the first is
    /// 1): what the request log names a client by.
    pub(crate) fn number(&self, token: &str) -> Option<u64> {
        self.expiries.get(token).map(|(number, _)| *number)
    }

    pub(crate) fn check(&self, token: &str, now: Instant) -> Result<(), TokenProblem> {
        match self.expiries.get(token) {
            None => Err(TokenProblem::Unknown),
            Some((_, expiry)) if *expiry <= now => Err(TokenProblem::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Every token issued so far is expired from now on.
    pub(crate) fn expire_all(&mut self, now: Instant) {
        for (_, expiry) in self.expiries.values_mut() {
            *expiry = (*expiry).min(now);
        }
    }
}

/// The token of `Authorization: Bearer …` (scheme case-insensitive).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `(client_id, client_secret)` of `Authorization: Basic base64(id:secret)`.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// Bearer token then API key, as Orange checks them (401 codes 40/41/42,
/// then 401 code 40 or 403 code 50 for the key).
pub(crate) fn check_credentials(
    headers: &HeaderMap,
    tokens: &TokenStore,
    api_key: &str,
    reject_every_key: bool,
    now: Instant,
) -> Result<(), ApiError> {
    let token = bearer_token(headers).ok_or_else(ApiError::missing_credentials)?;
    tokens.check(token, now).map_err(|problem| match problem {
        TokenProblem::Unknown => ApiError::invalid_credentials(),
        TokenProblem::Expired => ApiError::expired_credentials(),
    })?;
    let presented = headers
        .get("x-api-key")
        .ok_or_else(ApiError::missing_credentials)?;
    if reject_every_key || presented.as_bytes() != api_key.as_bytes() {
        return Err(ApiError::api_key_refused());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_expire() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        let token = store.issue(Duration::from_secs(10), now);
        assert_eq!(store.check(&token, now), Ok(()));
        assert_eq!(
            store.check(&token, now + Duration::from_secs(10)),
            Err(TokenProblem::Expired)
        );
        assert_eq!(store.check("other", now), Err(TokenProblem::Unknown));
        let second = store.issue(Duration::from_secs(10), now);
        assert_eq!(
            (store.number(&token), store.number(&second)),
            (Some(1), Some(2))
        );
        assert_eq!(store.number("other"), None);
        store.expire_all(now);
        assert_eq!(store.check(&token, now), Err(TokenProblem::Expired));
    }

    #[test]
    fn parses_authorization_schemes() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer_token(&headers), Some("abc"));
        assert_eq!(basic_credentials(&headers), None);
        // "id:sec:ret" — the secret may hold a colon.
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic aWQ6c2VjOnJldA=="),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("id".into(), "sec:ret".into()))
        );
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&headers), None);
    }
}
