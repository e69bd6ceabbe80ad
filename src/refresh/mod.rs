//! The metrics refresh: reads every order once, customer by customer, computes each customer's
//! summary and RFM scores and, when the history is long enough, fits the BG/NBD and Gamma-Gamma
//! models and predicts from them; then replaces the stored metrics in one transaction, and
//! re-evaluates every named segment over the new metrics (one query each). The day boundaries
//! are those of the shop's default time zone.

mod changed;

pub use changed::{refresh_changed, ChangedReport};

use crate::metrics::{
    self, quintiles, BgNbd, Cuts, Direction, FitError, GammaGamma, Purchase, Summary,
};
use crate::segment::{compile_for, Dialect, Segment, SqlCondition, Window};
use crate::store::{MembershipChange, MetricsRow, Store};
use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use futures::TryStreamExt;

/// The CLV horizon and discount of the reference: 12 months of 30 days, 1% a month.
pub const CLV_MONTHS: u32 = 12;
pub const CLV_MONTHLY_DISCOUNT: f64 = 0.01;
/// How far ahead the expected next order is looked for.
pub const NEXT_ORDER_HORIZON_DAYS: u32 = 365;

#[derive(Debug)]
pub struct RefreshReport {
    pub as_of: NaiveDate,
    pub customers: usize,
    pub orders: u64,
    pub bgnbd: Result<BgNbd, FitError>,
    pub gamma_gamma: Result<GammaGamma, FitError>,
    /// Customers per RFM segment, in `metrics::SEGMENTS` order.
    pub segments: Vec<(&'static str, usize)>,
    /// SKUs with a typical repeat-purchase interval, when they were refreshed too (only
    /// where a scenario uses `replenish`: see [`refresh_sku_intervals`]).
    pub sku_intervals: Option<usize>,
    /// What each named segment's evaluation changed, in definition order.
    pub named_segments: Vec<(String, MembershipChange)>,
    /// Seconds spent per phase: reading the orders, each fit, RFM scoring, predicting and
    /// writing the rows, evaluating the segments.
    pub timings: Timings,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Timings {
    pub read_secs: f64,
    pub bgnbd_fit_secs: f64,
    pub gamma_gamma_fit_secs: f64,
    pub score_secs: f64,
    pub write_secs: f64,
    pub segments_secs: f64,
}

/// The calendar day (days since 1970-01-01) of an instant in `zone`.
pub fn day_of(ms: i64, zone: Tz) -> i64 {
    metrics::day_number(
        DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .with_timezone(&zone)
            .date_naive(),
    )
}

fn date_of(day: i64) -> String {
    metrics::date_of_day(day).format("%Y-%m-%d").to_string()
}

/// Reads every order once, customer by customer (days in `zone`), and hands each customer's
/// orders to `each`. `progress` gets the number of orders read so far; returns that number.
pub async fn each_customer(
    store: &Store,
    zone: Tz,
    progress: &(dyn Fn(u64) + Sync),
    mut each: impl FnMut(String, &[Purchase]),
) -> anyhow::Result<u64> {
    let mut current: Option<String> = None;
    let mut purchases: Vec<Purchase> = Vec::new();
    let mut read = 0u64;
    let mut rows = store.orders_by_customer();
    while let Some((customer, placed_at, total)) = rows.try_next().await? {
        if current.as_deref() != Some(customer.as_str()) {
            if let Some(id) = current.replace(customer) {
                each(id, &purchases);
            }
            purchases.clear();
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
    if let Some(id) = current {
        each(id, &purchases);
    }
    progress(read);
    Ok(read)
}

/// One customer's stored row: their summary as of the end of day `end`, their (R, F, M)
/// scores, and the models' predictions if fitted.
fn metrics_row(
    id: &str,
    s: &Summary,
    (r, f, m): (u8, u8, u8),
    model: Option<&BgNbd>,
    spend: Option<&GammaGamma>,
    as_of: &str,
    end: i64,
) -> MetricsRow {
    MetricsRow {
        customer_id: id.to_string(),
        as_of: as_of.to_string(),
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
        r_score: i64::from(r),
        f_score: i64::from(f),
        m_score: i64::from(m),
        rfm_segment: metrics::segment(r, f, s.orders).to_string(),
        p_alive: model.map(|b| b.p_alive(s)),
        expected_purchases_30d: model.map(|b| b.expected_purchases(30.0, s)),
        expected_purchases_90d: model.map(|b| b.expected_purchases(90.0, s)),
        predicted_clv: model
            .zip(spend)
            .map(|(b, g)| metrics::clv(b, g, s, CLV_MONTHS, CLV_MONTHLY_DISCOUNT)),
        expected_next_order: model
            .and_then(|b| b.days_to_next_purchase(s, NEXT_ORDER_HORIZON_DAYS))
            .map(|d| date_of(end + i64::from(d))),
    }
}

/// Each customer's summary as of the end of day `end`, and the orders read.
async fn summaries(
    store: &Store,
    end: i64,
    zone: Tz,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<(Vec<String>, Vec<Summary>, u64)> {
    let (mut ids, mut out) = (Vec::new(), Vec::new());
    let read = each_customer(store, zone, progress, |id, orders| {
        if let Some(s) = Summary::of(orders, end) {
            ids.push(id);
            out.push(s);
        }
    })
    .await?;
    Ok((ids, out, read))
}

/// Refreshes every customer's metrics as of the end of `as_of` and stores them, through a
/// lean handle on the database (small page caches: every page is read or written once).
pub async fn refresh(
    store: &Store,
    as_of: NaiveDate,
    zone: Tz,
    now_ms: i64,
    segments: &[Segment],
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<RefreshReport> {
    // Everything is read below: marks made from here on are for the next incremental pass.
    store.clear_all_dirty().await?;
    let lean = store.lean().await?;
    let report = async {
        let mut report = refresh_with(&lean, as_of, zone, now_ms, progress).await?;
        let clock = std::time::Instant::now();
        report.named_segments = evaluate_segments(&lean, segments, as_of, zone, now_ms).await?;
        report.timings.segments_secs = clock.elapsed().as_secs_f64();
        anyhow::Ok(report)
    }
    .await;
    lean.close().await;
    report
}

/// Recomputes and stores every SKU's typical repeat-purchase interval as of the end of
/// `as_of` (for the `replenish` trigger): a second pass over the orders that reads their
/// line items, so it runs only where a scenario uses it. Returns how many SKUs have one.
pub async fn refresh_sku_intervals(
    store: &Store,
    as_of: NaiveDate,
    zone: Tz,
) -> anyhow::Result<usize> {
    let lean = store.lean().await?;
    let intervals = sku_intervals(&lean, metrics::day_number(as_of), zone).await;
    lean.close().await;
    let intervals = intervals?;
    store
        .replace_sku_intervals(&intervals, &as_of.format("%Y-%m-%d").to_string())
        .await?;
    Ok(intervals.len())
}

/// The typical repeat-purchase interval of every SKU bought twice by enough customers, from
/// the orders up to the end of day `end`.
async fn sku_intervals(
    store: &Store,
    end: i64,
    zone: Tz,
) -> anyhow::Result<Vec<metrics::SkuInterval>> {
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        sku: String,
    }
    let mut intervals = metrics::RepeatIntervals::default();
    let mut current: Option<String> = None;
    let mut orders: Vec<(i64, Vec<String>)> = Vec::new();
    let mut rows = store.orders_with_items();
    while let Some((customer, placed_at, items)) = rows.try_next().await? {
        if current.as_deref() != Some(customer.as_str()) {
            intervals.add_customer(&orders);
            orders.clear();
            current = Some(customer);
        }
        let day = day_of(placed_at, zone);
        if day > end {
            continue;
        }
        // An order whose items cannot be read counts as one without items.
        let items: Vec<Item> = serde_json::from_str(&items).unwrap_or_default();
        let skus = items.into_iter().map(|i| i.sku).filter(|s| !s.is_empty());
        orders.push((day, skus.collect()));
    }
    intervals.add_customer(&orders);
    Ok(intervals.typical(metrics::MIN_PAIRS))
}

/// Every segment's condition compiled for the window ending with `as_of`, in order, in the
/// SQL of `store`'s backend.
fn compile_all(
    store: &Store,
    segments: &[Segment],
    as_of: NaiveDate,
    zone: Tz,
) -> Vec<SqlCondition> {
    let window = Window::new(as_of, zone);
    let dialect: Dialect = store.segment_dialect();
    segments
        .iter()
        .map(|s| compile_for(&s.condition, &window, dialect))
        .collect()
}

/// (name, compiled condition) pairs, as the store takes them.
fn named<'a>(
    segments: &'a [Segment],
    compiled: &'a [SqlCondition],
) -> Vec<(&'a str, &'a SqlCondition)> {
    segments
        .iter()
        .zip(compiled)
        .map(|(s, c)| (s.name.as_str(), c))
        .collect()
}

/// Evaluates every named segment over every customer as of the end of `as_of` and stores the
/// membership and its changes (each segment in its own transaction).
pub async fn evaluate_segments(
    store: &Store,
    segments: &[Segment],
    as_of: NaiveDate,
    zone: Tz,
    now_ms: i64,
) -> anyhow::Result<Vec<(String, MembershipChange)>> {
    let as_of_text = as_of.format("%Y-%m-%d").to_string();
    let compiled = compile_all(store, segments, as_of, zone);
    let items = named(segments, &compiled);
    let changes = store
        .evaluate_segments(&items, &as_of_text, now_ms)
        .await
        .map_err(|e| anyhow::anyhow!("evaluating the segments: {e}"))?;
    let out: Vec<(String, MembershipChange)> = segments
        .iter()
        .map(|s| s.name.clone())
        .zip(changes)
        .collect();
    Ok(out)
}

async fn refresh_with(
    store: &Store,
    as_of: NaiveDate,
    zone: Tz,
    now_ms: i64,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<RefreshReport> {
    let end = metrics::day_number(as_of);
    let mut timings = Timings::default();
    let clock = std::time::Instant::now();
    let (ids, all, orders) = summaries(store, end, zone, progress).await?;
    timings.read_secs = clock.elapsed().as_secs_f64();
    let recency: Vec<f64> = all.iter().map(Summary::days_since_last).collect();
    let count: Vec<f64> = all.iter().map(|s| f64::from(s.orders)).collect();
    let money: Vec<f64> = all.iter().map(|s| s.total).collect();
    let r = quintiles(&recency, Direction::LowerIsBetter);
    let f = quintiles(&count, Direction::HigherIsBetter);
    let m = quintiles(&money, Direction::HigherIsBetter);
    let clock = std::time::Instant::now();
    let bgnbd = BgNbd::fit(&all);
    timings.bgnbd_fit_secs = clock.elapsed().as_secs_f64();
    let clock = std::time::Instant::now();
    let gamma_gamma = GammaGamma::fit(&all);
    timings.gamma_gamma_fit_secs = clock.elapsed().as_secs_f64();
    let clock = std::time::Instant::now();
    let as_of_text = as_of.format("%Y-%m-%d").to_string();
    let mut counts = vec![0usize; metrics::SEGMENTS.len()];
    for (i, s) in all.iter().enumerate() {
        let segment = metrics::segment(r[i], f[i], s.orders);
        if let Some(k) = metrics::SEGMENTS.iter().position(|x| *x == segment) {
            counts[k] += 1;
        }
    }
    let model = bgnbd.as_ref().ok();
    let spend = gamma_gamma.as_ref().ok();
    // Built a few at a time while they are written: never all in memory.
    let rows = ids.iter().zip(&all).enumerate().map(|(i, (id, s))| {
        let scores = (r[i], f[i], m[i]);
        metrics_row(id, s, scores, model, spend, &as_of_text, end)
    });
    let cuts = [
        Cuts::of(&recency, &r, Direction::LowerIsBetter),
        Cuts::of(&count, &f, Direction::HigherIsBetter),
        Cuts::of(&money, &m, Direction::HigherIsBetter),
    ];
    let mut fits = vec![("rfm_cuts", serde_json::to_string(&cuts)?, all.len() as i64)];
    if let Ok(b) = &bgnbd {
        fits.push(("bgnbd", serde_json::to_string(b)?, all.len() as i64));
    }
    if let Ok(g) = &gamma_gamma {
        fits.push(("gamma_gamma", serde_json::to_string(g)?, g.customers as i64));
    }
    timings.score_secs = clock.elapsed().as_secs_f64();
    let clock = std::time::Instant::now();
    store
        .replace_metrics(rows, &fits, &as_of_text, now_ms)
        .await?;
    // Predicting and writing happen together.
    timings.write_secs = clock.elapsed().as_secs_f64();
    Ok(RefreshReport {
        as_of,
        customers: all.len(),
        orders,
        bgnbd,
        gamma_gamma,
        segments: metrics::SEGMENTS.iter().copied().zip(counts).collect(),
        sku_intervals: None,
        named_segments: Vec::new(),
        timings,
    })
}
