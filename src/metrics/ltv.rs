//! LTV per group of customers (an RFM segment, a monthly first-order cohort): the seed's
//! formula, average order value × purchases per year × retention years, beside the revenue
//! customers actually brought in their first 3, 6 and 12 months. Purchases per year and
//! retention are measured on the group's customers who first ordered at least a year ago, so a
//! young group has no formula value rather than a made-up one.

use super::Purchase;
use serde::Serialize;

/// The windows of observed revenue, in days from the first order day (3, 6, 12 months).
pub const LTV_WINDOWS: [i64; 3] = [90, 180, 365];
/// Retention years are capped here (a group nobody left would otherwise live forever).
pub const MAX_RETENTION_YEARS: f64 = 10.0;

/// What the LTV report needs of one customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerValue {
    pub orders: u32,
    pub revenue: f64,
    /// Days from the first order day to the end of observation.
    pub tenure_days: i64,
    /// Days from the last order day to the end of observation.
    pub days_since_last: i64,
    /// Revenue within each of `LTV_WINDOWS` days of the first order day.
    pub revenue_within: [f64; 3],
    /// Orders within 365 days of the first order day.
    pub orders_first_year: u32,
}

impl CustomerValue {
    /// From a customer's orders, counting those up to the end of day `end`; None if there
    /// are none by then.
    pub fn of(orders: &[Purchase], end: i64) -> Option<CustomerValue> {
        let seen: Vec<&Purchase> = orders.iter().filter(|o| o.day <= end).collect();
        let first = seen.iter().map(|o| o.day).min()?;
        let last = seen.iter().map(|o| o.day).max()?;
        let within = |days: i64| seen.iter().filter(move |o| o.day - first < days);
        Some(CustomerValue {
            orders: seen.len() as u32,
            revenue: seen.iter().map(|o| o.amount).sum(),
            tenure_days: end - first,
            days_since_last: end - last,
            revenue_within: LTV_WINDOWS.map(|w| within(w).map(|o| o.amount).sum()),
            orders_first_year: within(365).count() as u32,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupLtv {
    pub group: String,
    pub customers: u64,
    pub revenue: f64,
    pub orders: u64,
    pub average_order_value: f64,
    /// Orders per customer in their first year, over the customers who first ordered at least
    /// a year ago; None if there are none.
    pub purchases_per_year: Option<f64>,
    /// Of the customers who first ordered at least a year ago, the share who ordered in the
    /// last year; None if there are none.
    pub annual_retention: Option<f64>,
    /// 1 / (1 − annual retention), at most `MAX_RETENTION_YEARS`.
    pub retention_years: Option<f64>,
    /// average order value × purchases per year × retention years.
    pub ltv: Option<f64>,
    /// Per window of `LTV_WINDOWS`: mean revenue per customer within it, over the customers
    /// whose window has run out (None if nobody's has), and how many those are.
    pub revenue_within: [Option<f64>; 3],
    pub observed_customers: [u64; 3],
}

/// The LTV of one group of customers.
pub fn group_ltv(group: &str, customers: &[CustomerValue]) -> GroupLtv {
    let n = customers.len() as u64;
    let revenue: f64 = customers.iter().map(|c| c.revenue).sum();
    let orders: u64 = customers.iter().map(|c| u64::from(c.orders)).sum();
    let veterans: Vec<&CustomerValue> = customers.iter().filter(|c| c.tenure_days >= 365).collect();
    let annual_retention = (!veterans.is_empty()).then(|| {
        veterans.iter().filter(|c| c.days_since_last < 365).count() as f64 / veterans.len() as f64
    });
    let retention_years = annual_retention
        .map(|r| (1.0 / (1.0 - r).max(1.0 / MAX_RETENTION_YEARS)).min(MAX_RETENTION_YEARS));
    let average_order_value = if orders > 0 {
        revenue / orders as f64
    } else {
        0.0
    };
    let purchases_per_year = (!veterans.is_empty()).then(|| {
        veterans
            .iter()
            .map(|c| f64::from(c.orders_first_year))
            .sum::<f64>()
            / veterans.len() as f64
    });
    let mut revenue_within = [None; 3];
    let mut observed_customers = [0; 3];
    for (k, days) in LTV_WINDOWS.iter().enumerate() {
        let seen: Vec<f64> = customers
            .iter()
            .filter(|c| c.tenure_days >= *days)
            .map(|c| c.revenue_within[k])
            .collect();
        observed_customers[k] = seen.len() as u64;
        if !seen.is_empty() {
            revenue_within[k] = Some(seen.iter().sum::<f64>() / seen.len() as f64);
        }
    }
    GroupLtv {
        group: group.to_string(),
        customers: n,
        revenue,
        orders,
        average_order_value,
        purchases_per_year,
        annual_retention,
        retention_years,
        ltv: retention_years
            .zip(purchases_per_year)
            .map(|(y, f)| average_order_value * f * y),
        revenue_within,
        observed_customers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(
        orders: u32,
        revenue: f64,
        tenure: i64,
        since_last: i64,
        within: [f64; 3],
    ) -> CustomerValue {
        CustomerValue {
            orders,
            revenue,
            tenure_days: tenure,
            days_since_last: since_last,
            revenue_within: within,
            orders_first_year: orders.min(3),
        }
    }

    #[test]
    fn the_seed_formula_and_the_observed_revenue_by_hand() {
        // Two customers of two years: one ordered 100 days ago, one 400 days ago: retention
        // 50%, 2 retention years. In their first years 3 and 2 orders: 2.5 a year. AOV 1000.
        let group = [
            c(4, 4000.0, 730, 100, [2000.0, 2000.0, 3000.0]),
            c(2, 2000.0, 730, 400, [1000.0, 2000.0, 2000.0]),
        ];
        let g = group_ltv("g", &group);
        assert_eq!(g.average_order_value, 1000.0);
        assert_eq!(g.purchases_per_year, Some(2.5));
        assert_eq!(g.annual_retention, Some(0.5));
        assert_eq!(g.retention_years, Some(2.0));
        assert_eq!(g.ltv, Some(1000.0 * 2.5 * 2.0));
        assert_eq!(g.revenue_within, [Some(1500.0), Some(2000.0), Some(2500.0)]);
        // A newcomer counts in the formula but not in windows that have not run out for them.
        let mut with_new = group.to_vec();
        with_new.push(c(1, 500.0, 100, 100, [500.0, 500.0, 500.0]));
        let g = group_ltv("g", &with_new);
        assert_eq!(g.observed_customers, [3, 2, 2]);
        assert_eq!(g.revenue_within[1], Some(2000.0));
        assert_eq!(
            g.annual_retention,
            Some(0.5),
            "only customers of a year or more"
        );
    }

    #[test]
    fn nobody_old_enough_means_no_retention_and_no_formula_value() {
        let g = group_ltv("young", &[c(1, 500.0, 30, 30, [500.0; 3])]);
        assert_eq!((g.annual_retention, g.ltv), (None, None));
        assert_eq!(g.revenue_within, [None; 3]);
    }
}
