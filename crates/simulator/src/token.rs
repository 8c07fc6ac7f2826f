//! `POST /oauth/v3/token`: OAuth 2.0 client credentials with the client
//! authenticated by `Authorization: Basic`, answered the way Orange does
//! (RFC 6749 bodies, `expires_in` in seconds).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::auth;
use super::errors::json_response;
use super::state::{SimState, lock};

/// The number of the token a token call issued, carried on its response
/// to the layer that logs requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IssuedToken(pub(crate) u64);

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    json_response(status, body.to_string())
}

pub(crate) fn invalid_client(description: &str) -> Response {
    let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    // RFC 6749 §5.2: a 401 to a client that tried Basic auth names the scheme.
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"orderwatch-simulator\""),
    );
    response
}

/// Client first (401 `invalid_client`), then the grant: missing is 400
/// `invalid_request`, anything but `client_credentials` is 400
/// `unsupported_grant_type`.
pub(crate) async fn issue(
    State(sim): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = &sim.credentials;
    match auth::basic_credentials(&headers) {
        None => {
            return invalid_client(
                "Client authentication failed: send Authorization: Basic base64(client_id:client_secret).",
            );
        }
        Some((id, secret)) if id != expected.client_id || secret != expected.client_secret => {
            return invalid_client("Client authentication failed: unknown client or wrong secret.");
        }
        Some(_) => {}
    }
    let grant_type = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "grant_type")
        .map(|(_, value)| value.into_owned());
    match grant_type.as_deref() {
        Some("client_credentials") => {}
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The form body must carry grant_type=client_credentials.",
            );
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only grant_type=client_credentials is supported.",
            );
        }
    }
    let (access_token, number) = {
        let mut tokens = lock(&sim.tokens);
        let token = tokens.issue(expected.token_ttl, Instant::now());
        let number = tokens.number(&token);
        (token, number)
    };
    let body = json!({
        "token_type": "Bearer",
        "access_token": access_token,
        "expires_in": expected.token_ttl.as_secs(),
    });
    let mut response = json_response(StatusCode::OK, body.to_string());
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // For the request log: this call's client is the token it issued.
    if let Some(number) = number {
        response.extensions_mut().insert(IssuedToken(number));
    }
    response
}
