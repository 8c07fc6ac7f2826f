//! The cursor of an incremental listing: an order's last-change time read
//! through a JSON pointer (`/updatedAt`), as an instant that compares
//! across time zones. Pure; no I/O.

use serde_json::value::RawValue;

/// An instant, in nanoseconds since the Unix epoch (UTC).
pub type Instant = i128;

const NANOS: i128 = 1_000_000_000;

/// The cursor of one order from the list: its text (kept to be stored as
/// the mark) and the instant it names. `None` when the order has no string
/// at `pointer`, or it is not an RFC 3339 time. The order is walked as raw
/// JSON, so an order whose cursor is all that is needed is never parsed
/// further.
pub fn read(order: &RawValue, pointer: &str) -> Option<(String, Instant)> {
    let text: String =
        serde_json::from_str(crate::diff::pointer::find(order, pointer)?.get()).ok()?;
    let instant = parse_rfc3339(&text)?;
    Some((text, instant))
}

/// `2026-03-04T05:06:07Z`, `2026-03-04T05:06:07.123+02:00` (and a lower
/// case `t`/`z`, or a space between date and time, as RFC 3339 allows).
pub fn parse_rfc3339(text: &str) -> Option<Instant> {
    let b = text.trim().as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut nanos: i128 = 0;
    if b[at] == b'.' {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let digits = &b[start..at];
        if digits.is_empty() {
            return None;
        }
        for (i, d) in digits.iter().take(9).enumerate() {
            nanos += i128::from(d - b'0') * 10i128.pow(8 - i as u32);
        }
    }
    let offset_secs: i64 = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let value = |x: u8, y: u8| i64::from(x - b'0') * 10 + i64::from(y - b'0');
            let (h, m) = (value(*h1, *h2), value(*m1, *m2));
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(i128::from(secs) * NANOS + nanos)
}

/// An instant moved back by `by` (the overlap).
pub fn before(instant: Instant, by: std::time::Duration) -> Instant {
    instant.saturating_sub(i128::try_from(by.as_nanos()).unwrap_or(i128::MAX))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> Option<i128> {
        parse_rfc3339(text).map(|n| n / NANOS)
    }

    #[test]
    fn reads_rfc3339_in_any_zone() {
        assert_eq!(secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(secs("2026-03-04T05:06:07Z"), Some(1_772_600_767));
        assert_eq!(
            parse_rfc3339("2026-03-04T07:06:07+02:00"),
            parse_rfc3339("2026-03-04T05:06:07Z")
        );
        assert_eq!(
            parse_rfc3339("2026-03-04t05:06:07.5z"),
            parse_rfc3339("2026-03-04T05:06:07Z").map(|n| n + NANOS / 2)
        );
        assert_eq!(
            secs("2024-02-29 23:59:59-00:30"),
            secs("2024-03-01T00:29:59Z")
        );
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for text in [
            "",
            "yesterday",
            "2026-03-04",
            "2026-03-04T05:06:07",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-03-04T05:06:07.Z",
            "2026-03-04T05:06:07+2:00",
            "２026-03-04T05:06:07Z",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }

    #[test]
    fn reads_the_cursor_through_a_pointer() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        let order = raw(
            r#"{"id":"1","updatedAt":"2026-03-04T05:06:07Z","k":{"a/b":["x","2026-01-01T00:00:00Z"]}}"#,
        );
        assert_eq!(
            read(&order, "/updatedAt").map(|(t, _)| t),
            Some("2026-03-04T05:06:07Z".to_owned())
        );
        assert_eq!(
            read(&order, "/k/a~1b/1").map(|(_, n)| n),
            parse_rfc3339("2026-01-01T00:00:00Z")
        );
        assert_eq!(read(&order, "/missing"), None);
        assert_eq!(read(&order, "/id"), None);
        assert_eq!(read(&raw(r#"{"updatedAt":5}"#), "/updatedAt"), None);
    }
}
