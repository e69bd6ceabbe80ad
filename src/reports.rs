//! Reports over the stored orders: the cohort report (each customer's order days, read once,
//! customer by customer, in the shop's zone) and the LTV report (the orders merged, customer by
//! customer, with the stored metrics for each customer's RFM segment).

use crate::metrics::{cohorts, day_number, group_ltv, month_of, Cohort, CustomerValue, GroupLtv};
use crate::refresh::each_customer;
use crate::store::Store;
use chrono::NaiveDate;
use chrono_tz::Tz;
use futures::TryStreamExt;

/// Monthly first-order cohorts as of the end of `end`.
pub async fn cohort_report(store: &Store, end: NaiveDate, zone: Tz) -> anyhow::Result<Vec<Cohort>> {
    let mut customers: Vec<Vec<i64>> = Vec::new();
    each_customer(store, zone, &|_| {}, |_, orders| {
        customers.push(orders.iter().map(|o| o.day).collect());
    })
    .await?;
    Ok(cohorts(customers, day_number(end)))
}

/// LTV per RFM segment (as stored by the last refresh) and per monthly first-order cohort, as
/// of the end of `end`.
pub async fn ltv_report(
    store: &Store,
    end: NaiveDate,
    zone: Tz,
) -> anyhow::Result<(Vec<GroupLtv>, Vec<GroupLtv>)> {
    let end = day_number(end);
    let mut values: Vec<(String, CustomerValue)> = Vec::new();
    each_customer(store, zone, &|_| {}, |id, orders| {
        if let Some(v) = CustomerValue::of(orders, end) {
            values.push((id, v));
        }
    })
    .await?;
    let mut by_segment: std::collections::BTreeMap<String, Vec<CustomerValue>> = Default::default();
    let mut by_cohort: std::collections::BTreeMap<String, Vec<CustomerValue>> = Default::default();
    // Each customer's stored segment: both are ordered by customer id.
    let mut stored = store.metrics_rows();
    let mut next = stored.try_next().await?;
    for (customer, value) in values {
        while next.as_ref().is_some_and(|m| m.customer_id < customer) {
            next = stored.try_next().await?;
        }
        if let Some(m) = next.as_ref().filter(|m| m.customer_id == customer) {
            by_segment
                .entry(m.rfm_segment.clone())
                .or_default()
                .push(value);
        }
        by_cohort
            .entry(month_of(end - value.tenure_days))
            .or_default()
            .push(value);
    }
    let mut segments: Vec<GroupLtv> = by_segment.iter().map(|(s, v)| group_ltv(s, v)).collect();
    segments.sort_by_key(|g| crate::metrics::SEGMENTS.iter().position(|s| *s == g.group));
    let cohorts = by_cohort.iter().map(|(m, v)| group_ltv(m, v)).collect();
    Ok((segments, cohorts))
}
