//! When a digest's periods begin: `every`, from `at` in `timezone`.
//!
//! A whole number of days steps in calendar days, so a daily digest at
//! 08:00 Europe/Paris is sent at 08:00 local time on the days the clocks
//! change too (23 or 25 hours after the last one). A shorter `every` must
//! divide a day; its boundaries are the local times `at`, `at + every`, ...
//! of each day. Local times the clocks skip or repeat are read as jiff's
//! "compatible" rule does (a skipped 02:30 is 03:30, a repeated one the
//! first of the two), so every boundary is one instant.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

const DAY_SECS: u64 = 86_400;

/// A sink's `digest:`, parsed.
#[derive(Debug, Clone)]
pub struct DigestSchedule {
    every: Duration,
    at: Time,
    timezone: TimeZone,
    /// The time zone's name, for the digest's document.
    pub(crate) timezone_name: String,
}

impl DigestSchedule {
    /// `every` is a whole number of seconds that divides a day or is a
    /// whole number of days (the config reader says so otherwise).
    pub fn new(every: Duration, at: Time, timezone: TimeZone, timezone_name: &str) -> Self {
        DigestSchedule {
            every,
            at,
            timezone,
            timezone_name: timezone_name.to_owned(),
        }
    }

    /// Why `every` cannot make periods, if it cannot.
    pub fn check_every(every: Duration) -> Result<(), &'static str> {
        let secs = every.as_secs();
        if every.subsec_nanos() != 0 || secs == 0 {
            return Err("must be a whole number of seconds, at least 1s");
        }
        if !secs.is_multiple_of(DAY_SECS) && !DAY_SECS.is_multiple_of(secs) {
            return Err("must divide a day (such as 5s, 15m, 1h, 6h) or be whole days (24h, 7d)");
        }
        Ok(())
    }

    /// The start of the period holding `t` (unix ms): the last boundary at
    /// or before it.
    pub fn period_start_ms(&self, t_ms: u64) -> u64 {
        to_ms(self.period_start(from_ms(t_ms)))
    }

    /// The first boundary after `t` (unix ms): when the period holding it ends.
    pub fn period_end_ms(&self, t_ms: u64) -> u64 {
        let t = from_ms(t_ms);
        let start = self.period_start(t);
        to_ms(self.next_after(start, t))
    }

    fn whole_days(&self) -> Option<i64> {
        let secs = self.every.as_secs();
        secs.is_multiple_of(DAY_SECS)
            .then_some((secs / DAY_SECS) as i64)
    }

    fn instant(&self, dt: DateTime) -> Timestamp {
        self.timezone
            .to_ambiguous_timestamp(dt)
            .compatible()
            .unwrap_or(Timestamp::MIN)
    }

    fn period_start(&self, t: Timestamp) -> Timestamp {
        let local = self.timezone.to_datetime(t);
        match self.whole_days() {
            Some(days) => {
                let mut date = local.date();
                if self.instant(date.to_datetime(self.at)) > t {
                    date = date.yesterday().unwrap_or(date);
                }
                // Periods of several days count from 1970-01-01, so every
                // run agrees on which days begin one.
                let since = date.duration_since(epoch_day()).as_secs() / DAY_SECS as i64;
                let back = since.rem_euclid(days);
                let date = date
                    .checked_sub(SignedDuration::from_hours(24 * back))
                    .unwrap_or(date);
                self.instant(date.to_datetime(self.at))
            }
            None => {
                let every = self.every.as_secs() as i64;
                let of_day = |time: Time| {
                    i64::from(time.hour()) * 3600
                        + i64::from(time.minute()) * 60
                        + i64::from(time.second())
                };
                let offset = (of_day(local.time()) - of_day(self.at)).rem_euclid(every);
                let whole = local.with().subsec_nanosecond(0).build().unwrap_or(local);
                let mut civil = whole
                    .checked_sub(SignedDuration::from_secs(offset))
                    .unwrap_or(whole);
                let mut start = self.instant(civil);
                // Around a change of the clocks the local time read back
                // may lie after `t`: one step earlier is the boundary.
                while start > t {
                    civil = civil
                        .checked_sub(SignedDuration::from_secs(every))
                        .unwrap_or(civil);
                    start = self.instant(civil);
                }
                start
            }
        }
    }

    /// The first boundary after `t`, `start` being the one at or before it.
    fn next_after(&self, start: Timestamp, t: Timestamp) -> Timestamp {
        let local = self.timezone.to_datetime(start);
        let step = match self.whole_days() {
            Some(days) => SignedDuration::from_hours(24 * days),
            None => SignedDuration::from_secs(self.every.as_secs() as i64),
        };
        let mut civil = match self.whole_days() {
            Some(_) => local.date().to_datetime(self.at),
            None => local,
        };
        loop {
            civil = match civil.checked_add(step) {
                Ok(next) => next,
                Err(_) => return Timestamp::MAX,
            };
            let next = self.instant(civil);
            if next > t {
                return next;
            }
        }
    }
}

fn epoch_day() -> Date {
    Date::constant(1970, 1, 1)
}

fn from_ms(ms: u64) -> Timestamp {
    Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
}

fn to_ms(t: Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris(every_secs: u64, at: Time) -> DigestSchedule {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        DigestSchedule::new(Duration::from_secs(every_secs), at, tz, "Europe/Paris")
    }

    fn ms(text: &str) -> u64 {
        to_ms(text.parse::<Timestamp>().unwrap())
    }

    fn local(schedule: &DigestSchedule, t_ms: u64) -> String {
        schedule
            .timezone
            .to_datetime(from_ms(t_ms))
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// The boundaries of a daily digest from `first`, `n` of them, in local time.
    fn days_from(schedule: &DigestSchedule, first: &str, n: usize) -> Vec<String> {
        let mut t = ms(first);
        let mut out = Vec::new();
        for _ in 0..n {
            t = schedule.period_end_ms(t);
            out.push(local(schedule, t));
        }
        out
    }

    #[test]
    fn a_daily_digest_at_eight_stays_at_eight_across_the_march_change() {
        // 2026-03-29: Paris goes from UTC+1 to UTC+2 at 02:00.
        let s = paris(DAY_SECS, Time::constant(8, 0, 0, 0));
        assert_eq!(
            days_from(&s, "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28 08:00:00",
                "2026-03-29 08:00:00",
                "2026-03-30 08:00:00",
                "2026-03-31 08:00:00"
            ]
        );
        // The day of the change is 23 hours long.
        let a = ms("2026-03-28T07:00:00Z");
        let b = s.period_end_ms(a);
        assert_eq!(b - a, 23 * 3600 * 1000);
        assert_eq!(s.period_start_ms(b - 1), a);
        assert_eq!(s.period_start_ms(b), b);
    }

    #[test]
    fn a_daily_digest_at_eight_stays_at_eight_across_the_october_change() {
        // 2026-10-25: Paris goes back from UTC+2 to UTC+1 at 03:00.
        let s = paris(DAY_SECS, Time::constant(8, 0, 0, 0));
        assert_eq!(
            days_from(&s, "2026-10-23T12:00:00Z", 4),
            [
                "2026-10-24 08:00:00",
                "2026-10-25 08:00:00",
                "2026-10-26 08:00:00",
                "2026-10-27 08:00:00"
            ]
        );
        let a = ms("2026-10-24T06:00:00Z");
        assert_eq!(s.period_end_ms(a) - a, 25 * 3600 * 1000);
    }

    #[test]
    fn a_boundary_in_the_skipped_hour_is_read_forward() {
        let s = paris(DAY_SECS, Time::constant(2, 30, 0, 0));
        let end = s.period_end_ms(ms("2026-03-28T12:00:00Z"));
        assert_eq!(local(&s, end), "2026-03-29 03:30:00");
    }

    #[test]
    fn short_periods_divide_the_day_from_at() {
        let utc = DigestSchedule::new(
            Duration::from_secs(5),
            Time::midnight(),
            TimeZone::UTC,
            "UTC",
        );
        let t = ms("2026-11-22T08:00:07.300Z");
        assert_eq!(utc.period_start_ms(t), ms("2026-11-22T08:00:05Z"));
        assert_eq!(utc.period_end_ms(t), ms("2026-11-22T08:00:10Z"));
        let hourly = paris(3600, Time::constant(0, 30, 0, 0));
        let t = ms("2026-11-22T08:10:00Z"); // 09:10 in Paris
        assert_eq!(
            local(&hourly, hourly.period_start_ms(t)),
            "2026-11-22 08:30:00"
        );
        // Across the October change, an hourly digest still ends each local
        // hour's half: no period is empty or negative.
        let mut t = ms("2026-10-24T22:00:00Z");
        for _ in 0..6 {
            let end = hourly.period_end_ms(t);
            assert!(end > t);
            assert_eq!(hourly.period_start_ms(end), end);
            t = end;
        }
    }

    #[test]
    fn a_weekly_digest_counts_its_days_from_one_start() {
        let s = paris(7 * DAY_SECS, Time::constant(8, 0, 0, 0));
        let a = s.period_end_ms(ms("2026-11-22T12:00:00Z"));
        let b = s.period_end_ms(a);
        assert_eq!(b - a, 7 * DAY_SECS * 1000);
        assert_eq!(s.period_start_ms(a + 3 * DAY_SECS * 1000), a);
    }

    #[test]
    fn every_must_make_periods() {
        assert!(DigestSchedule::check_every(Duration::from_secs(5)).is_ok());
        assert!(DigestSchedule::check_every(Duration::from_secs(2 * DAY_SECS)).is_ok());
        assert!(DigestSchedule::check_every(Duration::from_secs(7 * 3600)).is_err());
        assert!(DigestSchedule::check_every(Duration::from_millis(1500)).is_err());
        assert!(DigestSchedule::check_every(Duration::ZERO).is_err());
    }
}
