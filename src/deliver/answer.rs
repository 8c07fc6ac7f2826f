//! What HTTP sinks read of a receiver's answer: whether it is worth another
//! attempt, a bounded excerpt for the logs and dead letters with every known
//! secret redacted, its `Retry-After` hint, and a failure to get any answer
//! at all in words.

/// At most this much of a receiver's answer is kept, on one line.
const MAX_EXCERPT: usize = 1024;
/// Read this much more than is kept, so a secret echoed across the cut is
/// still recognised whole, and redacted, before the text is shortened.
const READ_AHEAD: usize = 1024;

/// The receiver's `Retry-After`, read and clamped like every duration from
/// outside.
pub(crate) use crate::clamp::retry_after;

/// The start of the answer's body, control characters as spaces, trimmed,
/// and without any secret the receiver may have echoed (its own URL, a
/// signature key).
pub(crate) async fn excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_EXCERPT + READ_AHEAD {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_EXCERPT + READ_AHEAD);
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut text = crate::secret::redact(text.trim());
    if text.len() > MAX_EXCERPT {
        let mut cut = MAX_EXCERPT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// An answer worth another attempt: 408, 429 and 5xx. Every other answer
/// that is not a success will be the same next time.
pub(crate) fn worth_retrying(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429) || status.is_server_error()
}

/// A failure to get an answer (always worth retrying), in words, without
/// the URL reqwest would put in its message: a chat webhook's URL is a
/// credential.
pub(crate) fn transport_error(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}{}", causes(&e.without_url()))
}

/// `": cause: its cause…"`, the chain below an error, on one line: reqwest's
/// own message ("error sending request") says nothing without it. Shared by
/// the sinks and the Orange client.
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Send `request` and read the answer as the webhook-style sinks do: 2xx is
/// success; 408, 429, 5xx and no answer at all retry (`Retry-After`
/// honoured); every other answer, redirects included, is permanent. `who`
/// names the sink in the reason.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    who: &str,
) -> Result<(), crate::deliver::DeliveryError> {
    use crate::deliver::DeliveryError;
    let response = request
        .send()
        .await
        .map_err(|e| DeliveryError::retry(format!("{who}: {}", transport_error(e))))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let hint = retry_after(response.headers());
    let excerpt = excerpt(response).await;
    let said = if excerpt.is_empty() {
        String::new()
    } else {
        format!(" ({excerpt})")
    };
    let reason = format!("{who}: HTTP {}{said}", status.as_u16());
    if worth_retrying(status) {
        Err(DeliveryError::Retry {
            reason,
            retry_after: hint,
        })
    } else {
        Err(DeliveryError::permanent(reason))
    }
}

/// The HTTP client of one sink: orderwatch's user agent, the sink's own
/// headers, its timeouts, and no redirects (a redirect is a misconfigured
/// URL).
pub(crate) fn client(
    headers: reqwest::header::HeaderMap,
    timeout: std::time::Duration,
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}
