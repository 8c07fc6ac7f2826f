//! Durations that come from outside (a `Retry-After`, a token's
//! `expires_in`), read in one place and clamped to documented maxima.
//!
//! A server may send any text: `1e20`, `-1`, `NaN`, a date in the year 9999.
//! Turned into a `Duration` or added to an `Instant` unchecked, such values
//! panic or stall a loop for ever; here they become a bounded wait or
//! nothing at all (the caller's own backoff then applies).

use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// The longest `Retry-After` honoured, from an API or a receiver.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);
/// The longest token lifetime believed (Orange's own examples go to 90 days).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// `Retry-After` as seconds (`120`, also `1.5` or `1e3`) or as an HTTP date,
/// clamped to [`MAX_RETRY_AFTER`]; a date already past is no wait. Negative,
/// NaN or unreadable values are ignored.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Some(wait) = seconds(text, MAX_RETRY_AFTER) {
        return Some(wait);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    let wait = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A number of seconds as text, clamped to `max`; `None` for anything that
/// is not a non-negative number (infinity counts as "very long": `max`).
pub fn seconds(text: &str, max: Duration) -> Option<Duration> {
    let value: f64 = text.trim().parse().ok()?;
    from_f64(value, max)
}

/// Seconds as a float, clamped to `max`; `None` when negative or NaN.
pub fn from_f64(value: f64, max: Duration) -> Option<Duration> {
    if value.is_nan() || value < 0.0 {
        return None;
    }
    if value >= max.as_secs_f64() {
        return Some(max);
    }
    Some(Duration::from_secs_f64(value))
}

/// A token's `expires_in` (a JSON number or a string of one), clamped to
/// [`MAX_TOKEN_LIFETIME`]; `None` when absent or nonsense.
pub fn expires_in(value: &serde_json::Value) -> Option<Duration> {
    match value {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(secs) => Some(Duration::from_secs(secs).min(MAX_TOKEN_LIFETIME)),
            None => from_f64(n.as_f64()?, MAX_TOKEN_LIFETIME),
        },
        serde_json::Value::String(s) => seconds(s, MAX_TOKEN_LIFETIME),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, value.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_seconds_are_clamped() {
        assert_eq!(retry_after(&header("3")), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(&header("1.5")),
            Some(Duration::from_millis(1500))
        );
        for huge in ["1e20", "18446744073709551616", "inf", "600.5"] {
            assert_eq!(retry_after(&header(huge)), Some(MAX_RETRY_AFTER), "{huge}");
        }
        for nonsense in ["-1", "NaN", "-inf", "soon", ""] {
            assert_eq!(retry_after(&header(nonsense)), None, "{nonsense}");
        }
    }

    #[test]
    fn retry_after_dates_count_from_now() {
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(62));
        let wait = retry_after(&header(&in_a_minute)).unwrap();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(62));
        assert_eq!(
            retry_after(&header("Fri, 31 Dec 9999 23:59:59 GMT")),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&header("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn token_lifetimes_are_clamped() {
        assert_eq!(expires_in(&json!(3600)), Some(Duration::from_secs(3600)));
        assert_eq!(expires_in(&json!("3600")), Some(Duration::from_secs(3600)));
        assert_eq!(
            expires_in(&json!(18446744073709551615u64)),
            Some(MAX_TOKEN_LIFETIME)
        );
        assert_eq!(
            expires_in(&json!("18446744073709551615")),
            Some(MAX_TOKEN_LIFETIME)
        );
        assert_eq!(expires_in(&json!(1e300)), Some(MAX_TOKEN_LIFETIME));
        assert_eq!(expires_in(&json!(-5)), None);
        assert_eq!(expires_in(&json!("-5")), None);
        assert_eq!(expires_in(&json!(null)), None);
    }
}
