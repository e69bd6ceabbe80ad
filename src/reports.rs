//! Reports over the stored orders: the cohort report (each customer's order days, read once,
//! customer by customer, in the shop's zone) and the LTV report (the orders merged, customer by
//! customer, with the stored metrics for each customer's RFM segment).

use crate::metrics::{cohorts, group_ltv, month_of, Cohort, CustomerValue, GroupLtv, LTV_WINDOWS};
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

/// LTV per RFM segment (as stored by the last refresh) and per monthly first-order cohort, as
/// of the end of `end`.
pub async fn ltv_report(
    store: &Store,
    end: NaiveDate,
    zone: Tz,
) -> anyhow::Result<(Vec<GroupLtv>, Vec<GroupLtv>)> {
    let end = (end - NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")).num_days();
    let mut by_segment: std::collections::BTreeMap<String, Vec<CustomerValue>> = Default::default();
    let mut by_cohort: std::collections::BTreeMap<String, Vec<CustomerValue>> = Default::default();
    let mut segments = store.metrics_rows();
    let mut next_metrics = segments.try_next().await?;
    let mut orders = store.orders_by_customer();
    let mut current: Option<String> = None;
    let mut days: Vec<(i64, f64)> = Vec::new();
    loop {
        let row = orders.try_next().await?;
        let same = matches!((&row, &current), (Some((c, _, _)), Some(cur)) if c == cur);
        if !same {
            if let Some(customer) = current.take() {
                // The stored segment of this customer (both streams are ordered by id).
                while next_metrics
                    .as_ref()
                    .is_some_and(|m| m.customer_id < customer)
                {
                    next_metrics = segments.try_next().await?;
                }
                let segment = next_metrics
                    .as_ref()
                    .filter(|m| m.customer_id == customer)
                    .map(|m| m.rfm_segment.clone());
                if let Some(value) = customer_value(&days, end) {
                    let first = end - value.tenure_days;
                    by_cohort.entry(month_of(first)).or_default().push(value);
                    if let Some(s) = segment {
                        by_segment.entry(s).or_default().push(value);
                    }
                }
                days.clear();
            }
            current = row.as_ref().map(|(c, _, _)| c.clone());
        }
        let Some((_, placed_at, total)) = row else {
            break;
        };
        days.push((day_of(placed_at, zone), total as f64));
    }
    let mut segments: Vec<GroupLtv> = by_segment.iter().map(|(s, v)| group_ltv(s, v)).collect();
    segments.sort_by_key(|g| crate::metrics::SEGMENTS.iter().position(|s| *s == g.group));
    let cohorts = by_cohort.iter().map(|(m, v)| group_ltv(m, v)).collect();
    Ok((segments, cohorts))
}

/// One customer's orders (day, amount) up to the end of day `end`, as the LTV report needs it.
fn customer_value(orders: &[(i64, f64)], end: i64) -> Option<CustomerValue> {
    let seen: Vec<&(i64, f64)> = orders.iter().filter(|(d, _)| *d <= end).collect();
    let first = seen.iter().map(|(d, _)| *d).min()?;
    let last = seen.iter().map(|(d, _)| *d).max()?;
    let mut within = [0.0; 3];
    for (k, w) in LTV_WINDOWS.iter().enumerate() {
        within[k] = seen
            .iter()
            .filter(|(d, _)| *d - first < *w)
            .map(|(_, a)| a)
            .sum();
    }
    Some(CustomerValue {
        orders: seen.len() as u32,
        revenue: seen.iter().map(|(_, a)| a).sum(),
        tenure_days: end - first,
        days_since_last: end - last,
        revenue_within: within,
        orders_first_year: seen.iter().filter(|(d, _)| *d - first < 365).count() as u32,
    })
}
