//! The per-customer summary the buy-till-you-die models use, with the reference library's
//! definitions: orders are cut to the calendar day and all orders of one day form one purchase;
//! frequency counts repeat purchase days, recency runs from the first to the last purchase day,
//! T from the first purchase day to the end of observation, and the monetary value is the mean
//! of the repeat purchase days (the first day left out). Plus what a marketer reads: orders,
//! total spent, average order value.

use serde::Serialize;

/// One order: its calendar day (days since 1970-01-01 in the shop's zone) and its amount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Purchase {
    pub day: i64,
    pub amount: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Repeat purchase days: distinct purchase days − 1.
    pub frequency: f64,
    /// Days from the first to the last purchase day.
    pub recency: f64,
    /// Days from the first purchase day to the end of observation.
    pub t: f64,
    /// Mean value of the repeat purchase days; 0 without one.
    pub monetary: f64,
    /// Orders (rows, not days).
    pub orders: u32,
    pub first_day: i64,
    pub last_day: i64,
    /// Everything spent, every order counted.
    pub total: f64,
}

impl Summary {
    /// The summary as of the end of day `end`; orders after it are left out. None when the
    /// customer had not ordered by then. Orders may come in any order; in day order (as the
    /// store reads them) nothing is copied.
    pub fn of(orders: &[Purchase], end: i64) -> Option<Summary> {
        if orders.windows(2).all(|w| w[0].day <= w[1].day) {
            return Summary::of_sorted(orders, end);
        }
        let mut sorted = orders.to_vec();
        sorted.sort_by_key(|o| o.day);
        Summary::of_sorted(&sorted, end)
    }

    /// [`Summary::of`] for orders already in day order: one pass, no allocation.
    pub fn of_sorted(orders: &[Purchase], end: i64) -> Option<Summary> {
        let seen = &orders[..orders.partition_point(|o| o.day <= end)];
        let first = seen.first()?;
        // Day sums are added up day by day, as the reference library does: the same rounding.
        let (mut repeat_days, mut repeat_sum, mut total) = (0u32, 0.0, 0.0);
        let (mut last_day, mut day_sum) = (first.day, 0.0);
        for o in seen {
            total += o.amount;
            if o.day != last_day {
                if last_day != first.day {
                    repeat_sum += day_sum;
                }
                repeat_days += 1;
                (last_day, day_sum) = (o.day, 0.0);
            }
            day_sum += o.amount;
        }
        if last_day != first.day {
            repeat_sum += day_sum;
        }
        let monetary = if repeat_days == 0 {
            0.0
        } else {
            repeat_sum / f64::from(repeat_days)
        };
        Some(Summary {
            frequency: f64::from(repeat_days),
            recency: (last_day - first.day) as f64,
            t: (end - first.day) as f64,
            monetary,
            orders: seen.len() as u32,
            first_day: first.day,
            last_day,
            total,
        })
    }

    /// Days from the last order to the end of observation (the R of RFM).
    pub fn days_since_last(&self) -> f64 {
        self.t - self.recency
    }

    pub fn average_order_value(&self) -> f64 {
        self.total / f64::from(self.orders.max(1))
    }
}

/// Whether the customer ordered again on a later calendar day, 1 to `days` days (inclusive)
/// after their first order day.
pub fn repeat_within(orders: &[Purchase], days: i64) -> bool {
    let Some(first) = orders.iter().map(|o| o.day).min() else {
        return false;
    };
    orders
        .iter()
        .any(|o| o.day > first && o.day - first <= days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(day: i64, amount: f64) -> Purchase {
        Purchase { day, amount }
    }

    #[test]
    fn same_day_orders_are_one_purchase_and_the_first_day_is_left_out_of_the_mean() {
        let s = Summary::of(
            &[p(10, 5.0), p(10, 7.0), p(15, 3.0), p(15, 1.0), p(20, 6.0)],
            30,
        )
        .unwrap();
        assert_eq!((s.frequency, s.recency, s.t), (2.0, 10.0, 20.0));
        assert_eq!(s.monetary, 5.0); // (4 + 6) / 2
        assert_eq!((s.orders, s.total), (5, 22.0));
        assert_eq!(s.days_since_last(), 10.0);
    }

    #[test]
    fn orders_in_any_order_give_the_same_summary() {
        let sorted = [
            p(10, 5.0),
            p(10, 7.0),
            p(15, 3.0),
            p(15, 1.0),
            p(20, 6.0),
            p(40, 9.0),
        ];
        let shuffled = [
            p(15, 3.0),
            p(40, 9.0),
            p(10, 7.0),
            p(20, 6.0),
            p(10, 5.0),
            p(15, 1.0),
        ];
        assert_eq!(Summary::of(&shuffled, 30), Summary::of(&sorted, 30));
        assert_eq!(
            Summary::of(&sorted, 30).unwrap().orders,
            5,
            "day 40 is after the end"
        );
    }

    #[test]
    fn one_purchase_day_has_no_frequency_recency_or_monetary_value() {
        let s = Summary::of(&[p(3, 5.0), p(3, 2.0)], 9).unwrap();
        assert_eq!(
            (s.frequency, s.recency, s.t, s.monetary),
            (0.0, 0.0, 6.0, 0.0)
        );
        assert!(
            Summary::of(&[p(12, 1.0)], 9).is_none(),
            "ordered after the end"
        );
    }

    #[test]
    fn a_repeat_counts_only_on_a_later_day_within_the_window() {
        assert!(!repeat_within(&[p(1, 1.0), p(1, 1.0)], 30));
        assert!(repeat_within(&[p(1, 1.0), p(31, 1.0)], 30));
        assert!(!repeat_within(&[p(1, 1.0), p(32, 1.0)], 30));
    }
}
