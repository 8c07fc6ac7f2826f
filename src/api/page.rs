//! Pagination: `limit`, and an opaque `cursor` that names where the last
//! page ended (a position in the store's key order, never an offset), so
//! orders that arrive or change between two pages neither repeat nor are
//! skipped. In the orders' change-time order a change moves an order:
//! `read.rs` says what a walk then shows.

use super::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, de::DeserializeOwned};

/// `limit` as asked for, `default` when absent, at most `max`.
pub fn limit(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match raw {
        None => Ok(default),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit must be a whole number from 1 to {max}"
            ))),
        },
    }
}

/// The cursor for the position `at`.
pub fn encode<T: Serialize>(at: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(at).unwrap_or_default())
}

/// The position a cursor names; a cursor this API did not give is a 400.
pub fn decode<T: DeserializeOwned>(cursor: Option<&str>) -> Result<Option<T>, ApiError> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request("cursor is not one this API gave (pass next_cursor as it came)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_its_position_and_garbage_is_refused() {
        let c = encode(&("tracking", "ORD-1"));
        assert_eq!(
            decode::<(String, String)>(Some(&c)).unwrap(),
            Some(("tracking".into(), "ORD-1".into()))
        );
        assert!(decode::<(String, String)>(Some("%%%")).is_err());
        assert!(decode::<(String, String)>(None).unwrap().is_none());
        assert!(limit(Some("0"), 100, 1000).is_err());
        assert!(limit(Some("1001"), 100, 1000).is_err());
        assert_eq!(limit(None, 100, 1000).unwrap(), 100);
    }
}
