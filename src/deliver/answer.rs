//! What HTTP sinks read of a receiver's answer: a bounded excerpt for the
//! logs and dead letters, with every known secret redacted, and its
//! `Retry-After` hint.

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
