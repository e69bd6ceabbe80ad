//! When a step is due: pure functions of the anchor instant, the step's wait and local send
//! time, and the customer's time zone.
//!
//! Without `at`, a step is due `wait` after its anchor. With `at`, the wait picks the day and
//! `at` the time: the step is due at `at` (local) on the calendar day of `anchor + wait`; if
//! that instant is before the anchor itself (a short wait), the next day's `at` is used. So
//! `wait: 1d, at: "10:00"` after an order at 23:00 means 10:00 the next morning. Local times
//! that do not exist (a DST gap) move forward to the first that does; ambiguous ones take the
//! earlier.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The instant a step is due.
pub fn due_at(
    anchor: DateTime<Utc>,
    wait: Duration,
    at: Option<NaiveTime>,
    zone: Tz,
) -> DateTime<Utc> {
    // Saturating, not panicking: `check` bounds every wait, but a tick must never die on
    // one customer's arithmetic. Years past 9999 are as good as never.
    let base = anchor
        .checked_add_signed(wait)
        .unwrap_or(if wait < Duration::zero() {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
        .clamp(earliest(), latest());
    let Some(at) = at else { return base };
    let day = base.with_timezone(&zone).date_naive();
    let candidate = local_instant(zone, day, at);
    if candidate < anchor {
        local_instant(zone, day.succ_opt().unwrap_or(day), at)
    } else {
        candidate
    }
}

/// The calendar's usable ends: local times in every zone exist a day either side of them.
pub fn latest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 30, 0, 0, 0).unwrap()
}

pub fn earliest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1, 1, 2, 0, 0, 0).unwrap()
}

fn local_instant(zone: Tz, day: NaiveDate, at: NaiveTime) -> DateTime<Utc> {
    crate::clock::first_instant_from(day.and_time(at), zone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Asia::Tokyo};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ten() -> Option<NaiveTime> {
        NaiveTime::from_hms_opt(10, 0, 0)
    }

    #[test]
    fn a_wait_beyond_the_calendar_saturates_instead_of_panicking() {
        let anchor = utc("2026-11-01T13:45:00Z");
        let huge = Duration::MAX;
        assert_eq!(due_at(anchor, huge, None, Tokyo), latest());
        assert!(due_at(anchor, huge, ten(), Tokyo) >= latest());
        assert_eq!(due_at(anchor, Duration::MIN, None, Tokyo), earliest());
        assert!(due_at(anchor, Duration::MIN, ten(), New_York) >= earliest());
    }

    #[test]
    fn without_a_local_time_the_wait_is_exact() {
        let anchor = utc("2026-11-01T13:45:00Z");
        assert_eq!(
            due_at(anchor, Duration::hours(12), None, Tokyo),
            utc("2026-11-02T01:45:00Z")
        );
    }

    #[test]
    fn one_day_at_ten_means_ten_the_next_morning_in_the_customers_zone() {
        // 23:00 in Tokyo on Nov 1 is 14:00Z.
        let anchor = utc("2026-11-01T14:00:00Z");
        assert_eq!(
            due_at(anchor, Duration::days(1), ten(), Tokyo),
            utc("2026-11-02T01:00:00Z")
        );
        // 23:00 in New York on Nov 1 (EST after Nov 1 06:00Z) is 04:00Z Nov 2.
        let anchor = utc("2026-11-02T04:00:00Z");
        assert_eq!(
            due_at(anchor, Duration::days(1), ten(), New_York),
            utc("2026-11-02T15:00:00Z")
        );
    }

    #[test]
    fn a_short_wait_past_the_hour_moves_to_the_next_day() {
        // 11:00 Tokyo, no wait, at 10:00: today's 10:00 has passed.
        let anchor = utc("2026-11-01T02:00:00Z");
        assert_eq!(
            due_at(anchor, Duration::zero(), ten(), Tokyo),
            utc("2026-11-02T01:00:00Z")
        );
    }

    #[test]
    fn a_local_time_in_a_dst_gap_moves_forward() {
        // 2026-03-08 02:30 does not exist in New York.
        let anchor = utc("2026-03-07T15:00:00Z");
        let due = due_at(
            anchor,
            Duration::days(1),
            NaiveTime::from_hms_opt(2, 30, 0),
            New_York,
        );
        // 03:00 EDT, the first local time after the gap.
        assert_eq!(due, utc("2026-03-08T07:00:00Z"));
    }
}
