//! Customer metrics as pure functions over a customer's orders: the summary of the
//! buy-till-you-die models (frequency, recency, T, monetary value, with the definitions of the
//! reference library `lifetimes`), RFM quintile scores, repeat rates, and the BG/NBD and
//! Gamma-Gamma models with the predictions built on them. No I/O here: the store feeds these
//! functions and keeps their results.

mod bgnbd;
mod cohorts;
mod gamma_gamma;
mod ltv;
mod optimize;
mod replenishment;
mod rfm;
mod special;
mod summary;

pub use bgnbd::{BgNbd, FitError};
pub use cohorts::{cohorts, ltv_curves, month_of, Cohort, LtvCurve, WINDOWS};
pub use gamma_gamma::GammaGamma;
pub use ltv::{group_ltv, CustomerValue, GroupLtv, LTV_WINDOWS};
pub use replenishment::{RepeatIntervals, SkuInterval, MIN_PAIRS};
pub use rfm::{quintiles, segment, Cuts, Direction, SEGMENTS};
pub use summary::{repeat_within, Purchase, Summary};

/// The day number (days since 1970-01-01) of a calendar date: how every metric counts days.
pub fn day_number(date: chrono::NaiveDate) -> i64 {
    (date - chrono::NaiveDate::default()).num_days()
}

/// The calendar date of a day number.
pub fn date_of_day(day: i64) -> chrono::NaiveDate {
    chrono::NaiveDate::default() + chrono::Duration::days(day)
}

/// The 12-month customer lifetime value as the reference computes it: for months i = 1..12
/// (30 days each), expected average order value × the expected purchases in that month,
/// discounted by `(1 + monthly_discount)^i`.
pub fn clv(
    model: &BgNbd,
    spend: &GammaGamma,
    s: &Summary,
    months: u32,
    monthly_discount: f64,
) -> f64 {
    let value = spend.expected_average_value(s.frequency, s.monetary);
    let mut total = 0.0;
    let mut before = 0.0;
    for i in 1..=months {
        let by = model.expected_purchases(f64::from(i) * 30.0, s);
        total += value * (by - before) / (1.0 + monthly_discount).powi(i as i32);
        before = by;
    }
    total
}
