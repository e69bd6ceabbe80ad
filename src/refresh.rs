//! The metrics refresh: reads every order once, customer by customer, computes each customer's
//! summary and RFM scores and, when the history is long enough, fits the BG/NBD and Gamma-Gamma
//! models and predicts from them; then replaces the stored metrics in one transaction. The
//! day boundaries are those of the shop's default time zone.

use crate::metrics::{self, quintiles, BgNbd, Direction, FitError, GammaGamma, Purchase, Summary};
use crate::store::{MetricsRow, Store};
use chrono::{DateTime, Duration, NaiveDate};
use chrono_tz::Tz;
use futures::TryStreamExt;

/// The CLV horizon and discount of the reference: 12 months of 30 days, 1% a month.
pub const CLV_MONTHS: u32 = 12;
pub const CLV_MONTHLY_DISCOUNT: f64 = 0.01;
/// How far ahead the expected next order is looked for.
pub const NEXT_ORDER_HORIZON_DAYS: f64 = 365.0;

#[derive(Debug)]
pub struct RefreshReport {
    pub as_of: NaiveDate,
    pub customers: usize,
    pub orders: u64,
    pub bgnbd: Result<BgNbd, FitError>,
    pub gamma_gamma: Result<GammaGamma, FitError>,
    /// Customers per RFM segment, in `metrics::SEGMENTS` order.
    pub segments: Vec<(&'static str, usize)>,
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

/// The calendar day (days since 1970-01-01) of an instant in `zone`.
pub fn day_of(ms: i64, zone: Tz) -> i64 {
    let local = DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&zone)
        .date_naive();
    (local - epoch()).num_days()
}

fn date_of(day: i64) -> String {
    (epoch() + Duration::days(day))
        .format("%Y-%m-%d")
        .to_string()
}

/// Reads the orders customer by customer and returns each customer's summary as of the end of
/// `end` (a day number). `progress` gets the number of orders read so far.
async fn summaries(
    store: &Store,
    end: i64,
    zone: Tz,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<(Vec<(String, Summary)>, u64)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut purchases: Vec<Purchase> = Vec::new();
    let mut read = 0u64;
    let mut rows = store.orders_by_customer();
    let flush = |id: Option<String>, p: &mut Vec<Purchase>, out: &mut Vec<(String, Summary)>| {
        if let (Some(id), Some(s)) = (id, Summary::of(p, end)) {
            out.push((id, s));
        }
        p.clear();
    };
    while let Some((customer, placed_at, total)) = rows.try_next().await? {
        if current.as_deref() != Some(customer.as_str()) {
            flush(current.take(), &mut purchases, &mut out);
            current = Some(customer);
        }
        purchases.push(Purchase {
            day: day_of(placed_at, zone),
            amount: total as f64,
        });
        read += 1;
        if read.is_multiple_of(50_000) {
            progress(read);
        }
    }
    flush(current, &mut purchases, &mut out);
    progress(read);
    Ok((out, read))
}

/// Refreshes every customer's metrics as of the end of `as_of` and stores them.
pub async fn refresh(
    store: &Store,
    as_of: NaiveDate,
    zone: Tz,
    now_ms: i64,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<RefreshReport> {
    let end = (as_of - epoch()).num_days();
    let (customers, orders) = summaries(store, end, zone, progress).await?;
    let all: Vec<Summary> = customers.iter().map(|(_, s)| *s).collect();
    let recency: Vec<f64> = all.iter().map(Summary::days_since_last).collect();
    let count: Vec<f64> = all.iter().map(|s| f64::from(s.orders)).collect();
    let money: Vec<f64> = all.iter().map(|s| s.total).collect();
    let r = quintiles(&recency, Direction::LowerIsBetter);
    let f = quintiles(&count, Direction::HigherIsBetter);
    let m = quintiles(&money, Direction::HigherIsBetter);
    let bgnbd = BgNbd::fit(&all);
    let gamma_gamma = GammaGamma::fit(&all);
    let as_of_text = as_of.format("%Y-%m-%d").to_string();
    let mut counts = vec![0usize; metrics::SEGMENTS.len()];
    let rows: Vec<MetricsRow> = customers
        .iter()
        .enumerate()
        .map(|(i, (id, s))| {
            let segment = metrics::segment(r[i], f[i], s.orders);
            if let Some(k) = metrics::SEGMENTS.iter().position(|x| *x == segment) {
                counts[k] += 1;
            }
            let model = bgnbd.as_ref().ok();
            let clv = match (model, gamma_gamma.as_ref().ok()) {
                (Some(b), Some(g)) => Some(metrics::clv(b, g, s, CLV_MONTHS, CLV_MONTHLY_DISCOUNT)),
                _ => None,
            };
            MetricsRow {
                customer_id: id.clone(),
                as_of: as_of_text.clone(),
                orders: i64::from(s.orders),
                first_order: date_of(s.first_day),
                last_order: date_of(s.last_day),
                days_since_last: s.days_since_last() as i64,
                tenure_days: s.t as i64,
                total_spent: s.total as i64,
                average_order_value: s.average_order_value(),
                frequency: s.frequency as i64,
                recency: s.recency as i64,
                t: s.t as i64,
                monetary: s.monetary,
                r_score: i64::from(r[i]),
                f_score: i64::from(f[i]),
                m_score: i64::from(m[i]),
                rfm_segment: segment.to_string(),
                p_alive: model.map(|b| b.p_alive(s)),
                expected_purchases_30d: model.map(|b| b.expected_purchases(30.0, s)),
                expected_purchases_90d: model.map(|b| b.expected_purchases(90.0, s)),
                predicted_clv: clv,
                expected_next_order: model
                    .and_then(|b| b.days_to_next_purchase(s, NEXT_ORDER_HORIZON_DAYS))
                    .map(|d| date_of(end + d.ceil() as i64)),
            }
        })
        .collect();
    let mut fits = Vec::new();
    if let Ok(b) = &bgnbd {
        fits.push(("bgnbd", serde_json::to_string(b)?, all.len() as i64));
    }
    if let Ok(g) = &gamma_gamma {
        fits.push(("gamma_gamma", serde_json::to_string(g)?, g.customers as i64));
    }
    store
        .replace_metrics(&rows, &fits, &as_of_text, now_ms)
        .await?;
    Ok(RefreshReport {
        as_of,
        customers: rows.len(),
        orders,
        bgnbd,
        gamma_gamma,
        segments: metrics::SEGMENTS.iter().copied().zip(counts).collect(),
    })
}
