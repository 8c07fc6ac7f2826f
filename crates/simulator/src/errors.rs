//! Orange-style error answers: an HTTP status with the body
//! `{"code":<int>,"message":"..","description":".."}`, codes as in Orange's
//! error-handling guide (and README.md "Troubleshooting by Orange error").

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: u16,
    pub(crate) message: &'static str,
    pub(crate) description: String,
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: u16,
        message: &'static str,
        description: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message,
            description: description.into(),
            retry_after: None,
        }
    }

    pub(crate) fn missing_credentials() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            40,
            "Missing credentials",
            "The request omitted required credentials: an Authorization: Bearer header and an X-API-Key header.",
        )
    }

    pub(crate) fn invalid_credentials() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            41,
            "Invalid credentials",
            "The access token is unknown. Get a new one from /oauth/v3/token.",
        )
    }

    pub(crate) fn expired_credentials() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            42,
            "Expired credentials",
            "The access token has expired. Get a new one from /oauth/v3/token.",
        )
    }

    pub(crate) fn api_key_refused() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            50,
            "Access denied",
            "The API key is invalid, revoked or expired, or the application is not subscribed to this API.",
        )
    }

    pub(crate) fn too_many_requests(status: StatusCode, retry_after: Option<u64>) -> ApiError {
        ApiError {
            retry_after,
            ..ApiError::new(
                status,
                53,
                "Too many requests",
                "The number of requests per minute allowed for this application has been exceeded.",
            )
        }
    }

    pub(crate) fn not_found(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, 60, "Resource not found", description)
    }

    pub(crate) fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            61,
            "Method not allowed",
            "This resource does not support this HTTP method.",
        )
    }

    pub(crate) fn not_acceptable() -> ApiError {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            62,
            "Not acceptable",
            "This API answers application/json only: send Accept: application/json.",
        )
    }

    pub(crate) fn bad_query_parameter(name: &str, value: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            28,
            "Invalid query-string parameter value",
            format!(
                "The value {value:?} of the query-string parameter {name:?} is not a non-negative integer."
            ),
        )
    }

    /// A `limit` above the largest page: Orange's 400 code 28, naming the
    /// parameter in `description` and in `details`.
    pub(crate) fn limit_too_large(name: &str, value: &str, max: usize) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            28,
            "Invalid query-string parameter value",
            format!(
                "The value {value:?} of the query-string parameter {name:?} is greater than {max}, the largest page this API serves."
            ),
        )
    }

    /// A request body the admin endpoints cannot use.
    pub(crate) fn bad_body(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, 21, "Invalid body", description)
    }

    /// An admin conflict: Orange has no code for it, so the code is the
    /// HTTP status.
    pub(crate) fn conflict(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, 409, "Conflict", description)
    }

    /// The answer an injected status fault gives: Orange's body for the
    /// statuses it documents, a generic one (code = status) for others.
    pub(crate) fn for_status(status: StatusCode, retry_after: Option<u64>) -> ApiError {
        let injected = "Injected by the simulator's faults.";
        let mut error = match status.as_u16() {
            500 => ApiError::new(status, 1, "Internal error", injected),
            503 => ApiError::new(
                status,
                5,
                "The service is temporarily unavailable",
                injected,
            ),
            504 => ApiError::new(status, 6, "Timeout", injected),
            429 | 403 => ApiError::too_many_requests(status, None),
            401 => ApiError::expired_credentials(),
            404 => ApiError::not_found(injected),
            406 => ApiError::not_acceptable(),
            other => ApiError::new(
                status,
                other,
                status.canonical_reason().unwrap_or("Error"),
                injected,
            ),
        };
        error.retry_after = retry_after;
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "description": self.description,
        });
        let mut response = json_response(self.status, body.to_string());
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An answer with a JSON body already serialized.
pub(crate) fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_statuses_get_oranges_codes() {
        let code =
            |s: u16| ApiError::for_status(StatusCode::from_u16(s).unwrap_or_default(), None).code;
        assert_eq!(
            [
                code(500),
                code(503),
                code(504),
                code(429),
                code(403),
                code(401)
            ],
            [1, 5, 6, 53, 53, 42]
        );
        assert_eq!(code(502), 502);
    }
}
