//! The segments page: each named segment's size over time (one count per segment per
//! evaluated day), the RFM grid as a heat map with the RFM segments' sizes, and the monthly
//! cohorts' repeat rates, heat-coloured.

use super::charts;
use super::i18n;
use super::{Ui, UiError};
use crate::metrics::{Cohort, WINDOWS};
use crate::store::RfmGroup;
use crate::users::Role;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

/// What the page draws that takes seconds at a million customers (see `cache`).
pub struct Figures {
    pub as_of: i64,
    pub rfm_segments: Vec<RfmGroup>,
    /// (r, f, customers)
    pub rfm_cells: Vec<(i64, i64, i64)>,
    pub cohorts: Vec<Cohort>,
    pub ltv_curves: Vec<crate::metrics::LtvCurve>,
}

/// "R5 F4" as (5, 4).
fn cell_of(group: &str) -> Option<(i64, i64)> {
    let (r, f) = group.split_once(' ')?;
    Some((
        r.strip_prefix('R')?.parse().ok()?,
        f.strip_prefix('F')?.parse().ok()?,
    ))
}

async fn compute(ui: &Ui) -> Result<Figures, UiError> {
    let now = ui.api.clock.now();
    let (segments, cells) = ui.api.store.rfm_groups().await?;
    let today = now.with_timezone(&ui.api.zone).date_naive();
    let (cohorts, ltv_curves) = crate::reports::cohorts_with_ltv(&ui.api.store, today, ui.api.zone)
        .await
        .map_err(UiError::from_engine)?;
    Ok(Figures {
        as_of: crate::clock::to_millis(now),
        rfm_segments: segments,
        rfm_cells: cells
            .iter()
            .filter_map(|g| cell_of(&g.group).map(|(r, f)| (r, f, g.customers)))
            .collect(),
        cohorts,
        ltv_curves,
    })
}

/// A cohort's row: its size and, per window, the share who ordered again within it
/// (None while the window is still open for some of its customers), with its colour.
fn cohort_row(c: &Cohort) -> Value {
    let cells: Vec<Value> = WINDOWS
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let share = c.repeat_within[i] as f64 / c.customers.max(1) as f64;
            json!({
                "percent": format!("{:.1}%", share * 100.0),
                "complete": c.complete[i],
                "colour": charts::heat(share / 0.5),
            })
        })
        .collect();
    json!({ "month": c.month, "customers": c.customers, "cells": cells })
}

/// The months after the first order at which the LTV table shows each cohort's value.
const LTV_MONTHS: [usize; 5] = [0, 3, 6, 12, 24];
/// Cohorts in the LTV table, newest first.
const LTV_ROWS: usize = 24;

/// A cohort's LTV per customer at each of `LTV_MONTHS` it has reached.
fn ltv_row(c: &crate::metrics::LtvCurve, money: &impl Fn(f64) -> String) -> Value {
    let cells: Vec<Option<String>> = LTV_MONTHS
        .iter()
        .map(|m| c.per_customer.get(*m).map(|v| money(*v)))
        .collect();
    json!({ "month": c.month, "customers": c.customers, "cells": cells })
}

/// `GET /ui/segments`
pub async fn page(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    let u = ui.clone();
    ui.guard(
        &headers,
        &[Role::Marketer],
        "/ui/segments",
        |v| async move {
            let (figures, stale) = u.segment_figures.get(|| compute(&u)).await?;
            if stale {
                let again = u.clone();
                tokio::spawn(async move { again.segment_figures.renew(|| compute(&again)).await });
            }
            let history = u.api.store.segment_history().await?;
            let mut named: Vec<Value> = Vec::new();
            for chunk in history.chunk_by(|a, b| a.0 == b.0) {
                let points: Vec<(String, i64)> =
                    chunk.iter().map(|(_, day, n)| (day.clone(), *n)).collect();
                let last = points.last().cloned().unwrap_or_default();
                named.push(json!({
                    "name": chunk[0].0,
                    "members": last.1,
                    "as_of": last.0,
                    "days": points.len(),
                    "chart": charts::sparkline(&points, &chunk[0].0),
                }));
            }
            let t = |k: &str| i18n::text(v.lang, k);
            let heatmap = charts::rfm_heatmap(
                &figures.rfm_cells,
                &t("segments.rfm_grid"),
                &t("segments.recency"),
                &t("segments.frequency"),
            );
            let cohorts: Vec<Value> = figures.cohorts.iter().map(cohort_row).collect();
            let currency = u.currency.clone();
            let money = |v: f64| crate::domain::format_money(v.round() as i64, &currency);
            let ltv_chart = charts::ltv_curves(
                &figures.ltv_curves,
                &t("segments.ltv_curves"),
                &t("segments.months_since_first"),
                money,
            );
            let ltv_rows: Vec<Value> = figures
                .ltv_curves
                .iter()
                .rev()
                .take(LTV_ROWS)
                .map(|c| ltv_row(c, &money))
                .collect();
            u.page(
                Some(&v),
                v.lang,
                "segments.html",
                "segments",
                &t("segments.title"),
                minijinja::context! {
                    named => named, heatmap => heatmap, rfm => figures.rfm_segments,
                    cohorts => cohorts, windows => WINDOWS, as_of => figures.as_of,
                    ltv_chart => ltv_chart, ltv_rows => ltv_rows, ltv_months => LTV_MONTHS,
                },
            )
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_read_from_their_names() {
        assert_eq!(cell_of("R5 F4"), Some((5, 4)));
        assert_eq!(cell_of("Champions"), None);
        assert_eq!(cell_of("R F"), None);
    }

    #[test]
    fn a_cohort_row_has_a_share_and_colour_per_window() {
        let c = Cohort {
            month: "2026-01".into(),
            customers: 200,
            repeat_within: [20, 40, 50, 80, 100],
            complete: [true, true, true, true, false],
            active: vec![200],
        };
        let row = cohort_row(&c);
        assert_eq!(row["cells"][0]["percent"], "10.0%");
        assert_eq!(row["cells"][4]["percent"], "50.0%");
        assert_eq!(row["cells"][4]["complete"], false);
        assert_eq!(row["cells"][4]["colour"], charts::heat(1.0));
    }
}
