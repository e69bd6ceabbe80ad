//! The clock the engine is given. The engine never reads the system time itself, so tests,
//! demos and back-tests can move time forward as fast as they like.

use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, Mutex};

/// A source of "now".
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock, for the daemon in production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: tests, the demo and simulations use it.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = to;
    }

    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut now = self.0.lock().expect("clock lock");
        *now += by;
        *now
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// Unix milliseconds, the way instants are stored in the database.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_millis`]; out-of-range values clamp to the epoch.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The first instant of calendar day `day` in `zone` (unix ms); on a day that starts in a DST
/// gap, the earliest instant that exists (01:00 in Santiago on the day clocks skip midnight).
pub fn start_of_day(day: chrono::NaiveDate, zone: chrono_tz::Tz) -> i64 {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    first_instant_from(midnight, zone).timestamp_millis()
}

/// The instant a local time names in `zone`: the earlier of two in a repeated hour; in a
/// skipped one, the first instant after the gap (gaps end on a whole minute and last at most
/// a day, as when Samoa skipped 2011-12-30). A local time that exists nowhere within two days
/// (only at the ends of the calendar) is read as UTC.
pub fn first_instant_from(local: chrono::NaiveDateTime, zone: chrono_tz::Tz) -> DateTime<Utc> {
    use chrono::TimeZone;
    let mut t = local;
    for _ in 0..=2 * 24 * 60 {
        if let Some(found) = zone.from_local_datetime(&t).earliest() {
            return found.with_timezone(&Utc);
        }
        match t.checked_add_signed(Duration::minutes(1)) {
            Some(next) => t = next,
            None => break,
        }
    }
    local.and_utc()
}

/// Whether a local time falls in a gap of `zone` (skipped when clocks went forward).
pub fn skipped(local: chrono::NaiveDateTime, zone: chrono_tz::Tz) -> bool {
    use chrono::TimeZone;
    matches!(zone.from_local_datetime(&local), chrono::LocalResult::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_its_first_existing_instant_in_every_zone() {
        use chrono::NaiveDate;
        // Santiago skips 00:00–01:00 on 2026-09-06: the day starts at 01:00 -03.
        let santiago = chrono_tz::America::Santiago;
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = from_millis(start_of_day(day, santiago));
        assert_eq!(
            start.with_timezone(&santiago).to_rfc3339(),
            "2026-09-06T01:00:00-03:00"
        );
        // Samoa skipped 2011-12-30 entirely: its "start" is the first instant after it.
        let apia = chrono_tz::Pacific::Apia;
        let gone = NaiveDate::from_ymd_opt(2011, 12, 30).unwrap();
        let next = NaiveDate::from_ymd_opt(2011, 12, 31).unwrap();
        assert_eq!(start_of_day(gone, apia), start_of_day(next, apia));
        // Every zone, every day of 2000–2030: the start is on that local day (or the next
        // one, when the whole day was skipped), and no instant of the day comes before it.
        for zone in chrono_tz::TZ_VARIANTS {
            let mut d = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
            let end = NaiveDate::from_ymd_opt(2031, 1, 1).unwrap();
            while d < end {
                let s = from_millis(start_of_day(d, zone)).with_timezone(&zone);
                assert!(
                    s.date_naive() == d || s.date_naive() == d.succ_opt().unwrap(),
                    "{zone} {d}: {s}"
                );
                let before = s - Duration::minutes(1);
                assert!(
                    before.with_timezone(&zone).date_naive() < d,
                    "{zone} {d}: {s} is not the first instant"
                );
                d = d.succ_opt().unwrap();
            }
        }
    }

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let start = from_millis(1_700_000_000_000);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::days(3));
        assert_eq!(clock.now(), start + Duration::days(3));
    }

    #[test]
    fn millis_round_trip() {
        let t = from_millis(1_234_567_890_123);
        assert_eq!(to_millis(t), 1_234_567_890_123);
    }
}
