//! Monthly first-order cohorts: how many of each month's new customers ordered again within
//! 30, 60, 90, 180 and 365 days, what share of them ordered in each later month, and their
//! LTV curves (revenue per customer, cumulated month by month since the first order).

use super::{date_of_day, day_number};
use chrono::{Datelike, NaiveDate};
use serde::Serialize;

/// The repeat windows of the report, in days.
pub const WINDOWS: [i64; 5] = [30, 60, 90, 180, 365];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// The month of the customers' first order, `YYYY-MM`.
    pub month: String,
    pub customers: u64,
    /// Per window of `WINDOWS`: customers with an order on a later day within it.
    pub repeat_within: [u64; 5],
    /// Per window: whether it has run out for every customer of the cohort by the end day
    /// (if not, the count can still grow).
    pub complete: [bool; 5],
    /// For month 0, 1, 2 … after the cohort month (up to the end day's month): customers of
    /// the cohort who ordered in that month. Month 0 is everyone.
    pub active: Vec<u64>,
}

fn month_index(day: i64) -> i64 {
    let d = date_of_day(day);
    i64::from(d.year()) * 12 + i64::from(d.month0())
}

/// The month (`YYYY-MM`) of a day number.
pub fn month_of(day: i64) -> String {
    month_name(month_index(day))
}

fn month_name(index: i64) -> String {
    format!(
        "{:04}-{:02}",
        index.div_euclid(12),
        index.rem_euclid(12) + 1
    )
}

/// The last day of the month `index` (days since 1970-01-01).
fn month_end(index: i64) -> i64 {
    let next = index + 1;
    let first = NaiveDate::from_ymd_opt(
        next.div_euclid(12) as i32,
        next.rem_euclid(12) as u32 + 1,
        1,
    )
    .expect("a valid month");
    day_number(first) - 1
}

/// Builds the cohorts from each customer's order days (any order), counting orders up to the
/// end of day `end`. Cohorts come out oldest first.
pub fn cohorts(customers: impl IntoIterator<Item = Vec<i64>>, end: i64) -> Vec<Cohort> {
    let last_month = month_index(end);
    let mut by_month: std::collections::BTreeMap<i64, Cohort> = Default::default();
    for mut days in customers {
        days.retain(|d| *d <= end);
        let Some(&first) = days.iter().min() else {
            continue;
        };
        let m0 = month_index(first);
        let width = (last_month - m0 + 1).max(1) as usize;
        let cohort = by_month.entry(m0).or_insert_with(|| Cohort {
            month: month_name(m0),
            customers: 0,
            repeat_within: [0; 5],
            complete: WINDOWS.map(|w| month_end(m0) + w <= end),
            active: vec![0; width],
        });
        cohort.customers += 1;
        for (k, w) in WINDOWS.iter().enumerate() {
            if days.iter().any(|d| *d > first && *d - first <= *w) {
                cohort.repeat_within[k] += 1;
            }
        }
        let mut months: Vec<usize> = days
            .iter()
            .map(|d| (month_index(*d) - m0) as usize)
            .collect();
        months.sort_unstable();
        months.dedup();
        for k in months {
            cohort.active[k] += 1;
        }
    }
    by_month.into_values().collect()
}

/// A cohort's LTV curve: revenue per customer of the cohort, cumulated up to the end of month
/// 0, 1, 2 … after the cohort month (month 0 is the first order's month), up to the end
/// day's month (the last point may be a month still running).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LtvCurve {
    pub month: String,
    pub customers: u64,
    pub per_customer: Vec<f64>,
}

/// The LTV curves of the monthly first-order cohorts, from each customer's purchases
/// (amounts in minor units), counting purchases up to the end of day `end`; oldest first.
pub fn ltv_curves(
    customers: impl IntoIterator<Item = Vec<super::Purchase>>,
    end: i64,
) -> Vec<LtvCurve> {
    let last_month = month_index(end);
    let mut by_month: std::collections::BTreeMap<i64, (u64, Vec<f64>)> = Default::default();
    for purchases in customers {
        let kept: Vec<_> = purchases.iter().filter(|p| p.day <= end).collect();
        let Some(first) = kept.iter().map(|p| p.day).min() else {
            continue;
        };
        let m0 = month_index(first);
        let width = (last_month - m0 + 1).max(1) as usize;
        let (n, revenue) = by_month.entry(m0).or_insert_with(|| (0, vec![0.0; width]));
        *n += 1;
        for p in kept {
            revenue[(month_index(p.day) - m0) as usize] += p.amount;
        }
    }
    by_month
        .into_iter()
        .map(|(m0, (n, revenue))| {
            let mut total = 0.0;
            let per_customer = revenue
                .iter()
                .map(|r| {
                    total += r;
                    total / n as f64
                })
                .collect();
            LtvCurve {
                month: month_name(m0),
                customers: n,
                per_customer,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> i64 {
        day_number(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
    }

    #[test]
    fn ltv_curves_cumulate_revenue_per_customer_month_by_month() {
        let p = |d: &str, amount: f64| crate::metrics::Purchase {
            day: day(d),
            amount,
        };
        let customers = vec![
            vec![
                p("2026-01-05", 3000.0),
                p("2026-01-20", 1000.0),
                p("2026-03-02", 2000.0),
            ],
            vec![p("2026-01-31", 4000.0)],
            vec![p("2026-02-10", 5000.0), p("2026-08-01", 9000.0)],
            vec![],
        ];
        let c = ltv_curves(customers, day("2026-03-31"));
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].month.as_str(), c[0].customers), ("2026-01", 2));
        // January: ¥8,000 in month 0, nothing in February, ¥2,000 in March; two customers.
        assert_eq!(c[0].per_customer, [4000.0, 4000.0, 5000.0]);
        // February: August is after the end.
        assert_eq!(c[1].per_customer, [5000.0, 5000.0]);
    }

    #[test]
    fn customers_fall_into_their_first_month_and_come_back_in_later_ones() {
        let customers = vec![
            vec![day("2026-01-05"), day("2026-01-20"), day("2026-03-02")],
            vec![day("2026-01-31")],
            vec![day("2026-02-10"), day("2026-02-10"), day("2026-08-01")],
        ];
        let c = cohorts(customers, day("2026-03-31"));
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].month.as_str(), c[0].customers), ("2026-01", 2));
        // The first customer came back after 15 days; the second never did.
        assert_eq!(c[0].repeat_within, [1, 1, 1, 1, 1]);
        assert_eq!(c[0].active, [2, 0, 1]);
        // January's 30-day window ran out by March 2, its 60-day one by April 1: not yet.
        assert_eq!(c[0].complete, [true, false, false, false, false]);
        // February: a second order the same day is no repeat; August is after the end.
        assert_eq!(c[1].repeat_within, [0; 5]);
        assert_eq!(c[1].active, [1, 0]);
    }
}
