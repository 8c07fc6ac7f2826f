//! The bearer check in front of every API route. Both sides are hashed
//! first and the hashes compared in constant time, so neither the length
//! nor the first differing byte of the token shows in how long a refusal
//! takes. A refusal is a bare 401: no word on what was wrong.

use super::ApiState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match given {
        Some(token) if matches(token, state.token.expose()) => next.run(request).await,
        _ => refused(),
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme's
/// letter case does not matter, RFC 9110).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub(crate) fn matches(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

fn refused() -> Response {
    let mut answer = StatusCode::UNAUTHORIZED.into_response();
    answer
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_passes() {
        assert!(matches("s3cret-token-0123", "s3cret-token-0123"));
        assert!(!matches("s3cret-token-012", "s3cret-token-0123"));
        assert!(!matches("", "s3cret-token-0123"));
        assert!(!matches("S3CRET-TOKEN-0123", "s3cret-token-0123"));
    }

    #[test]
    fn the_scheme_is_read_in_any_case_and_nothing_else_is_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerabc"), None);
    }
}
