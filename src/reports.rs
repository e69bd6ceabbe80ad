//! Reports over the stored orders: the cohort report (each customer's order days, read once,
//! customer by customer, in the shop's zone).

use crate::metrics::{cohorts, Cohort};
use crate::refresh::day_of;
use crate::store::Store;
use chrono::NaiveDate;
use chrono_tz::Tz;
use futures::TryStreamExt;

/// Monthly first-order cohorts as of the end of `end`.
pub async fn cohort_report(store: &Store, end: NaiveDate, zone: Tz) -> anyhow::Result<Vec<Cohort>> {
    let end = (end - NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")).num_days();
    let mut customers: Vec<Vec<i64>> = Vec::new();
    let mut current: Option<String> = None;
    let mut rows = store.orders_by_customer();
    while let Some((customer, placed_at, _)) = rows.try_next().await? {
        if current.as_deref() != Some(customer.as_str()) {
            customers.push(Vec::new());
            current = Some(customer);
        }
        if let Some(days) = customers.last_mut() {
            days.push(day_of(placed_at, zone));
        }
    }
    Ok(cohorts(customers, end))
}
