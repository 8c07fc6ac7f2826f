//! A route's `quiet_hours:`: when what it matches is held, and until when.
//!
//! Quiet is the daily window `from`–`to` (overnight when `to` comes before
//! `from`), and the whole of each day in `days`, in the route's
//! `timezone`. An event matched while it is quiet is held until the first
//! moment that is not: the end of the night, or of the weekend when the
//! night runs into a quiet day.

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

/// Enough steps for a night running into every quiet day of a week.
const MAX_STEPS: usize = 32;

#[derive(Debug, Clone)]
pub struct QuietHours {
    /// The daily window, `None` when only `days` are quiet.
    pub(crate) window: Option<(Time, Time)>,
    pub(crate) days: Vec<Weekday>,
    pub(crate) timezone: TimeZone,
}

impl QuietHours {
    /// When an event matched at `now_ms` may leave: `None` if it is not
    /// quiet then, else the end of the quiet time (unix ms).
    pub fn release_ms(&self, now_ms: u64) -> Option<u64> {
        let now = Timestamp::from_millisecond(i64::try_from(now_ms).ok()?).ok()?;
        let mut t = now;
        for _ in 0..MAX_STEPS {
            match self.quiet_until(t) {
                Some(end) if end > t => t = end,
                _ => break,
            }
        }
        (t > now).then(|| u64::try_from(t.as_millisecond()).unwrap_or(now_ms))
    }

    /// If `t` is quiet, the end of the stretch it is in (which may itself
    /// be quiet for another reason).
    fn quiet_until(&self, t: Timestamp) -> Option<Timestamp> {
        let local = self.timezone.to_datetime(t);
        let at = |date: jiff::civil::Date, time: Time| {
            self.timezone
                .to_ambiguous_timestamp(date.to_datetime(time))
                .compatible()
                .ok()
        };
        if self.days.contains(&local.date().weekday()) {
            return at(local.date().tomorrow().ok()?, Time::midnight());
        }
        let (from, to) = self.window?;
        let time = local.time();
        let quiet = if from < to {
            from <= time && time < to
        } else {
            time >= from || time < to
        };
        if !quiet {
            return None;
        }
        let day = if time < to {
            local.date()
        } else {
            local.date().tomorrow().ok()?
        };
        at(day, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u64 {
        u64::try_from(text.parse::<Timestamp>().unwrap().as_millisecond()).unwrap()
    }

    fn paris(window: Option<(Time, Time)>, days: Vec<Weekday>) -> QuietHours {
        QuietHours {
            window,
            days,
            timezone: TimeZone::get("Europe/Paris").unwrap(),
        }
    }

    fn night() -> Option<(Time, Time)> {
        Some((Time::constant(20, 0, 0, 0), Time::constant(7, 0, 0, 0)))
    }

    #[test]
    fn a_night_holds_until_its_morning() {
        let q = paris(night(), vec![]);
        // Tuesday 2026-11-24, 21:00 in Paris (UTC+1).
        assert_eq!(
            q.release_ms(ms("2026-11-24T20:00:00Z")),
            Some(ms("2026-11-25T06:00:00Z"))
        );
        // 06:59 is still quiet, 07:00 is not, nor is noon.
        assert_eq!(
            q.release_ms(ms("2026-11-25T05:59:00Z")),
            Some(ms("2026-11-25T06:00:00Z"))
        );
        assert_eq!(q.release_ms(ms("2026-11-25T06:00:00Z")), None);
        assert_eq!(q.release_ms(ms("2026-11-25T11:00:00Z")), None);
    }

    #[test]
    fn a_friday_night_runs_into_the_weekend() {
        let q = paris(night(), vec![Weekday::Saturday, Weekday::Sunday]);
        // Friday 2026-11-27 at 22:00 → Monday 07:00.
        assert_eq!(
            q.release_ms(ms("2026-11-27T21:00:00Z")),
            Some(ms("2026-11-30T06:00:00Z"))
        );
        // Saturday noon, with no nightly window: Monday 00:00.
        let weekend = paris(None, vec![Weekday::Saturday, Weekday::Sunday]);
        assert_eq!(
            weekend.release_ms(ms("2026-11-28T11:00:00Z")),
            Some(ms("2026-11-29T23:00:00Z"))
        );
        assert_eq!(weekend.release_ms(ms("2026-11-27T11:00:00Z")), None);
    }

    #[test]
    fn a_daytime_window_and_the_change_of_the_clocks() {
        let lunch = paris(
            Some((Time::constant(12, 0, 0, 0), Time::constant(14, 0, 0, 0))),
            vec![],
        );
        assert_eq!(
            lunch.release_ms(ms("2026-11-25T11:30:00Z")),
            Some(ms("2026-11-25T13:00:00Z"))
        );
        // The night of 2026-03-28 to 29 is an hour shorter: 07:00 local is
        // then 05:00 UTC.
        let q = paris(night(), vec![]);
        assert_eq!(
            q.release_ms(ms("2026-03-28T20:00:00Z")),
            Some(ms("2026-03-29T05:00:00Z"))
        );
    }
}
