//! What HTTP sinks read of a receiver's answer: a bounded excerpt for the
//! logs, and its `Retry-After` hint.

use std::time::Duration;

/// At most this much of a receiver's answer is read, on one line.
const MAX_EXCERPT: usize = 1024;

/// The start of the answer's body, control characters as spaces, trimmed.
pub(crate) async fn excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_EXCERPT);
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text.trim().to_owned()
}

/// `Retry-After` in seconds; an HTTP date or nonsense is ignored.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}
