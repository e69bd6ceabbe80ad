//! The incremental refresh: recomputes only the customers whose orders changed since their
//! metrics were computed (marked by every import), scoring them against the RFM cuts and
//! predicting with the models of the last full refresh, and re-evaluates the named segments
//! for just those customers. Everyone else's rows, scores and memberships stay as the last
//! full refresh left them; the nightly full refresh moves everyone to the new day.

use super::{compile_all, day_of, metrics_row, named};
use crate::metrics::{self, BgNbd, Cuts, GammaGamma, Purchase, Summary};
use crate::segment::Segment;
use crate::store::{ChangedPage, MembershipChange, MetricsRow, Store};
use chrono::NaiveDate;
use chrono_tz::Tz;
use std::collections::HashMap;

/// Customers handled per round trip and transaction.
const PAGE: i64 = 20_000;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ChangedReport {
    /// Customers recomputed.
    pub customers: usize,
    /// Of those, customers left without an order by the as-of date (their row is removed).
    pub removed: usize,
    /// Each named segment's changes among them, summed over the pages.
    pub named_segments: Vec<(String, MembershipChange)>,
    pub secs: f64,
    /// Seconds spent recomputing (reading orders, scoring, predicting), writing the rows,
    /// evaluating the segments, and committing (each page is one transaction).
    pub recompute_secs: f64,
    pub write_secs: f64,
    pub segments_secs: f64,
    pub commit_secs: f64,
}

/// What the last full refresh stored: the RFM cuts and the fitted models.
struct Basis {
    cuts: [Cuts; 3],
    bgnbd: Option<BgNbd>,
    gamma_gamma: Option<GammaGamma>,
}

async fn basis(store: &Store) -> anyhow::Result<Option<Basis>> {
    let fits: HashMap<String, String> = store
        .model_fits()
        .await?
        .into_iter()
        .map(|(model, params, _, _)| (model, params))
        .collect();
    let Some(cuts) = fits.get("rfm_cuts") else {
        return Ok(None);
    };
    Ok(Some(Basis {
        cuts: serde_json::from_str(cuts)?,
        bgnbd: fits.get("bgnbd").and_then(|p| serde_json::from_str(p).ok()),
        gamma_gamma: fits
            .get("gamma_gamma")
            .and_then(|p| serde_json::from_str(p).ok()),
    }))
}

/// Recomputes the customers marked as changed, as of the end of `as_of`. `None` when no full
/// refresh has been stored yet (there is nothing to score against), or when every customer
/// changed since (a first import of orders: `Store::everyone_changed`): run `refresh` then.
pub async fn refresh_changed(
    store: &Store,
    as_of: NaiveDate,
    zone: Tz,
    now_ms: i64,
    segments: &[Segment],
) -> anyhow::Result<Option<ChangedReport>> {
    let clock = std::time::Instant::now();
    let Some(basis) = basis(store).await? else {
        return Ok(None);
    };
    if store.everyone_changed().await? {
        return Ok(None);
    }
    // Small page caches, as for the full refresh (a larger one was measured: no faster).
    let lean = store.lean().await?;
    let report = changed_with(&lean, &basis, as_of, zone, now_ms, segments).await;
    lean.close().await;
    let mut report = report?;
    report.secs = clock.elapsed().as_secs_f64();
    Ok(Some(report))
}

async fn changed_with(
    store: &Store,
    basis: &Basis,
    as_of: NaiveDate,
    zone: Tz,
    now_ms: i64,
    segments: &[Segment],
) -> anyhow::Result<ChangedReport> {
    let end = metrics::day_number(as_of);
    let as_of_text = as_of.format("%Y-%m-%d").to_string();
    let mut report = ChangedReport::default();
    let compiled = compile_all(store, segments, as_of, zone);
    let items = named(segments, &compiled);
    loop {
        let dirty = store.dirty_customers(PAGE).await?;
        if dirty.is_empty() {
            break;
        }
        let ids: Vec<String> = dirty.iter().map(|(id, _)| id.clone()).collect();
        let phase = std::time::Instant::now();
        let (rows, gone) = recompute(store, &ids, basis, zone, end, &as_of_text).await?;
        report.recompute_secs += phase.elapsed().as_secs_f64();
        let outcome = store
            .apply_changed_page(&ChangedPage {
                rows: &rows,
                gone: &gone,
                segments: &items,
                handled: &dirty,
                as_of: &as_of_text,
                now: now_ms,
            })
            .await
            .map_err(|e| anyhow::anyhow!("writing the changed customers: {e}"))?;
        report.write_secs += outcome.write_secs;
        report.segments_secs += outcome.segments_secs;
        report.commit_secs += outcome.commit_secs;
        let names = segments.iter().map(|s| s.name.clone());
        add_changes(
            &mut report.named_segments,
            names.zip(outcome.changes).collect(),
        );
        report.customers += ids.len();
        report.removed += gone.len();
    }
    Ok(report)
}

/// The new rows of `ids`, and the ids left with no order by day `end`.
async fn recompute(
    store: &Store,
    ids: &[String],
    basis: &Basis,
    zone: Tz,
    end: i64,
    as_of: &str,
) -> anyhow::Result<(Vec<MetricsRow>, Vec<String>)> {
    let mut by_customer: HashMap<String, Vec<Purchase>> = HashMap::new();
    for (customer, placed_at, total) in store.orders_of_customers(ids).await? {
        by_customer.entry(customer).or_default().push(Purchase {
            day: day_of(placed_at, zone),
            amount: total as f64,
        });
    }
    // The predictions (a hypergeometric series per customer and day searched) on every core.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = ids.len().div_ceil(threads).max(1);
    let parts: Vec<(Vec<MetricsRow>, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|ids| scope.spawn(|| score(ids, &by_customer, basis, end, as_of)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scoring thread panicked"))
            .collect()
    });
    let (mut rows, mut gone) = (Vec::new(), Vec::new());
    for (r, g) in parts {
        rows.extend(r);
        gone.extend(g);
    }
    Ok((rows, gone))
}

/// The rows of `ids` from their orders, and the ids without an order by day `end`.
fn score(
    ids: &[String],
    by_customer: &HashMap<String, Vec<Purchase>>,
    basis: &Basis,
    end: i64,
    as_of: &str,
) -> (Vec<MetricsRow>, Vec<String>) {
    let [r, f, m] = &basis.cuts;
    let (mut rows, mut gone) = (Vec::new(), Vec::new());
    for id in ids {
        let summary = by_customer
            .get(id)
            .and_then(|orders| Summary::of(orders, end));
        let Some(s) = summary else {
            gone.push(id.clone());
            continue;
        };
        let scores = (
            r.score(s.days_since_last()),
            f.score(f64::from(s.orders)),
            m.score(s.total),
        );
        rows.push(metrics_row(
            id,
            &s,
            scores,
            basis.bgnbd.as_ref(),
            basis.gamma_gamma.as_ref(),
            as_of,
            end,
        ));
    }
    (rows, gone)
}

fn add_changes(total: &mut Vec<(String, MembershipChange)>, page: Vec<(String, MembershipChange)>) {
    if total.is_empty() {
        *total = page;
        return;
    }
    for ((_, sum), (_, c)) in total.iter_mut().zip(page) {
        sum.entered += c.entered;
        sum.exited += c.exited;
        sum.members = c.members;
        sum.baseline |= c.baseline;
    }
}
