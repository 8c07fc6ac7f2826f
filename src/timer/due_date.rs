//! Reading an order's due date as Orange writes it: an RFC 3339 time
//! (`2026-07-03T14:00:00+02:00`, `...Z`), a local time without an offset
//! (`2026-07-03T14:00:00`, read in the source's timezone), or a plain date
//! (`2026-07-03`: the start of that day in the source's timezone).

use crate::store::DueDate;
use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// The due date in `text`, or `None` when it is none of the shapes above.
pub fn read(text: &str, zone: &TimeZone) -> Option<DueDate> {
    let text = text.trim();
    let at = if let Ok(t) = text.parse::<Timestamp>() {
        t
    } else if let Ok(local) = text.parse::<DateTime>() {
        local.to_zoned(zone.clone()).ok()?.timestamp()
    } else {
        // The start of the day: midnight, or the first moment of the day
        // where a clock change skips midnight.
        text.parse::<Date>()
            .ok()?
            .to_zoned(zone.clone())
            .ok()?
            .timestamp()
    };
    let at_ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
    // Whole seconds, as every other time orderwatch writes.
    let second = Timestamp::from_second(at.as_second()).ok()?;
    Some(DueDate {
        at_ms,
        text: second.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> TimeZone {
        jiff::tz::db().get("Europe/Paris").unwrap()
    }

    #[test]
    fn a_plain_date_is_the_start_of_that_day_in_the_timezone() {
        let summer = read("2026-07-03", &paris()).unwrap();
        assert_eq!(summer.text, "2026-07-02T22:00:00Z");
        let winter = read("2026-12-03", &paris()).unwrap();
        assert_eq!(winter.text, "2026-12-02T23:00:00Z");
        assert_eq!(
            read("2026-07-03", &TimeZone::UTC).unwrap().text,
            "2026-07-03T00:00:00Z"
        );
        assert_eq!(
            read(" 2026-07-03 ", &TimeZone::UTC).unwrap().at_ms,
            1_783_036_800_000
        );
    }

    #[test]
    fn rfc_3339_times_keep_their_offset_whatever_the_timezone() {
        for (text, utc) in [
            ("2026-07-03T14:00:00+02:00", "2026-07-03T12:00:00Z"),
            ("2026-07-03T12:00:00Z", "2026-07-03T12:00:00Z"),
            ("2026-07-03T12:00:00.750Z", "2026-07-03T12:00:00Z"),
            ("2026-07-03T07:30:00-04:30", "2026-07-03T12:00:00Z"),
        ] {
            assert_eq!(read(text, &paris()).unwrap().text, utc, "{text}");
        }
        let millis = read("2026-07-03T12:00:00.750Z", &paris()).unwrap();
        assert_eq!(millis.at_ms % 1000, 750);
        assert_eq!(
            read("2026-07-03T14:00:00", &paris()).unwrap().text,
            "2026-07-03T12:00:00Z"
        );
    }

    #[test]
    fn garbage_is_no_date() {
        for text in [
            "",
            "soon",
            "2026-13-01",
            "2026-02-30",
            "03/07/2026",
            "2026-07-03T25:00:00Z",
            "\u{0}",
        ] {
            assert_eq!(read(text, &TimeZone::UTC), None, "{text:?}");
        }
    }

    #[test]
    fn a_date_before_1970_is_long_past() {
        assert_eq!(read("1969-12-31", &TimeZone::UTC).unwrap().at_ms, 0);
    }
}
