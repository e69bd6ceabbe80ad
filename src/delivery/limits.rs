//! What may be sent, and when: the suppression list and marketing consent (checked when a step
//! is queued and again at send time), quiet hours in the customer's zone, and a frequency cap
//! over all marketing scenarios. Pure: facts in, decisions out.

use crate::reasons::Reason;
use crate::store::{OutboxStatus, SuppressionKind};
use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;

/// Whether a message must not go at all, and why: a suppression that applies to it, else, for
/// marketing mail, a customer without consent. The engine (`queued`: when a step runs) and the
/// deliverer (at sending) both ask this.
pub fn withheld(
    suppression: Option<SuppressionKind>,
    transactional: bool,
    consents: bool,
    queued: bool,
) -> Option<(OutboxStatus, Reason)> {
    match suppression.filter(|k| k.stops(transactional)) {
        Some(k) => Some((
            OutboxStatus::Suppressed,
            Reason::Suppressed {
                queued,
                kind: k.as_str().to_string(),
            },
        )),
        None if !transactional && !consents => {
            Some((OutboxStatus::Skipped, Reason::NoConsent { queued }))
        }
        None => None,
    }
}

/// The suppression that applies to a message for a customer: its own address's entry, and
/// the person's wish (an `unsubscribe` or `manual` entry recorded for the customer, or on the
/// address they have now), which follows them across a change of address; a bounce belongs to
/// its address alone. Of several, the one that stops this message.
pub fn suppression_for(
    own: Option<SuppressionKind>,
    person: &[Option<SuppressionKind>],
    transactional: bool,
) -> Option<SuppressionKind> {
    let wishes = person
        .iter()
        .flatten()
        .copied()
        .filter(|k| *k != SuppressionKind::Bounce);
    let all: Vec<SuppressionKind> = own.into_iter().chain(wishes).collect();
    all.iter()
        .copied()
        .find(|k| k.stops(transactional))
        .or(all.first().copied())
}

pub use crate::config::Limits;

/// If `now` falls in the quiet hours `from`–`to` in `zone`, the first instant after them.
pub fn quiet_until(
    now: DateTime<Utc>,
    zone: Tz,
    from: NaiveTime,
    to: NaiveTime,
) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&zone);
    let t = local.time();
    let inside = if from <= to {
        t >= from && t < to
    } else {
        t >= from || t < to
    };
    if !inside || from == to {
        return None;
    }
    // The end is today if it is still ahead, else tomorrow.
    let day = if t < to {
        local.date_naive()
    } else {
        local.date_naive() + Duration::days(1)
    };
    let end = day.and_time(to);
    // A DST gap at `to`: the first instant after it.
    Some(crate::clock::first_instant_from(end, zone))
}

/// With `sent` the times (ms) of the customer's marketing sends, whether one more at `now`
/// would break a cap of `max` per `per`; if so, when the next slot frees up.
pub fn cap_free_at(sent: &[i64], now: i64, max: u32, per: Duration) -> Option<i64> {
    let window = per.num_milliseconds();
    let mut inside: Vec<i64> = sent
        .iter()
        .copied()
        .filter(|t| *t > now - window && *t <= now)
        .collect();
    if (inside.len() as u32) < max {
        return None;
    }
    inside.sort_unstable();
    // Dropping below `max` needs the oldest (len - max + 1) sends to leave the window.
    let k = inside.len() - max as usize;
    Some(inside[k] + window + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persons_wish_follows_them_and_a_bounce_stays_with_its_address() {
        use SuppressionKind::*;
        // Unsubscribed under another address (or recorded for the customer): marketing stops,
        // a receipt still goes.
        assert_eq!(
            suppression_for(None, &[Some(Unsubscribe)], false),
            Some(Unsubscribe)
        );
        let receipt = suppression_for(None, &[Some(Unsubscribe)], true);
        assert!(receipt.is_none_or(|k| !k.stops(true)));
        // Staff suppressed the person: nothing goes, receipts included.
        assert_eq!(
            suppression_for(None, &[None, Some(Manual)], true),
            Some(Manual)
        );
        // A bounce of their new address says nothing of the old one.
        assert_eq!(suppression_for(None, &[Some(Bounce), None], false), None);
        // The message's own address: as before, a bounce stops everything.
        assert_eq!(suppression_for(Some(Bounce), &[], true), Some(Bounce));
        // Of several, the one that stops this message: an unsubscribed address with a person
        // suppressed by staff stops a receipt too.
        assert_eq!(
            suppression_for(Some(Unsubscribe), &[Some(Manual)], true),
            Some(Manual)
        );
        assert_eq!(suppression_for(None, &[None, None], false), None);
    }

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn quiet_hours_over_midnight_end_in_the_customers_morning() {
        let tokyo = chrono_tz::Asia::Tokyo;
        // 23:30 in Tokyo: quiet until 08:00 the next morning (23:00Z).
        assert_eq!(
            quiet_until(utc("2026-11-01T14:30:00Z"), tokyo, t(21, 0), t(8, 0)),
            Some(utc("2026-11-01T23:00:00Z"))
        );
        // 06:00 in Tokyo: quiet until 08:00 the same day.
        assert_eq!(
            quiet_until(utc("2026-11-01T21:00:00Z"), tokyo, t(21, 0), t(8, 0)),
            Some(utc("2026-11-01T23:00:00Z"))
        );
        // 12:00 in Tokyo: not quiet. Exactly 08:00: not quiet; exactly 21:00: quiet.
        assert_eq!(
            quiet_until(utc("2026-11-01T03:00:00Z"), tokyo, t(21, 0), t(8, 0)),
            None
        );
        assert_eq!(
            quiet_until(utc("2026-11-01T23:00:00Z"), tokyo, t(21, 0), t(8, 0)),
            None
        );
        assert!(quiet_until(utc("2026-11-01T12:00:00Z"), tokyo, t(21, 0), t(8, 0)).is_some());
        // The same instant is daytime in New York (09:30 EST) and quiet in Tokyo.
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            quiet_until(utc("2026-11-02T14:30:00Z"), ny, t(21, 0), t(8, 0)),
            None
        );
        // A window within one day.
        assert_eq!(
            quiet_until(utc("2026-11-01T04:30:00Z"), tokyo, t(12, 0), t(14, 0)),
            Some(utc("2026-11-01T05:00:00Z"))
        );
    }

    #[test]
    fn suppression_and_consent_withhold_what_they_should() {
        use SuppressionKind::*;
        let status = |s, t, c| withheld(s, t, c, true).map(|(st, _)| st);
        assert_eq!(status(None, false, true), None);
        assert_eq!(status(None, false, false), Some(OutboxStatus::Skipped));
        assert_eq!(
            status(None, true, false),
            None,
            "transactional needs no consent"
        );
        assert_eq!(
            status(Some(Unsubscribe), false, true),
            Some(OutboxStatus::Suppressed)
        );
        assert_eq!(status(Some(Unsubscribe), true, true), None);
        assert_eq!(
            status(Some(Bounce), true, true),
            Some(OutboxStatus::Suppressed)
        );
        assert_eq!(
            status(Some(Manual), true, false),
            Some(OutboxStatus::Suppressed)
        );
    }

    #[test]
    fn the_cap_frees_a_slot_when_the_oldest_send_leaves_the_window() {
        let day = Duration::days(1).num_milliseconds();
        let week = Duration::days(7);
        assert_eq!(cap_free_at(&[], 10 * day, 2, week), None);
        assert_eq!(cap_free_at(&[9 * day], 10 * day, 2, week), None);
        // Two sends on days 5 and 9: full until day 5's send is a week old.
        assert_eq!(
            cap_free_at(&[9 * day, 5 * day], 10 * day, 2, week),
            Some(12 * day + 1)
        );
        // Sends older than the window do not count.
        assert_eq!(cap_free_at(&[2 * day, 9 * day], 10 * day, 2, week), None);
        // Over the cap (three sends): the two oldest must leave.
        assert_eq!(
            cap_free_at(&[4 * day, 5 * day, 9 * day], 10 * day, 2, week),
            Some(12 * day + 1)
        );
    }
}
