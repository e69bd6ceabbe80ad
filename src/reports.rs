//! Reports over the stored orders: the cohort report (each customer's order days, read once,
//! customer by customer, in the shop's zone), the LTV report (the orders merged, customer by
//! customer, with the stored metrics for each customer's RFM segment), and the scenario report
//! (the store's grouped counts, handed to `experiment::build_report`).

use crate::metrics::{
    cohorts, day_number, group_ltv, ltv_curves, month_of, Cohort, CustomerValue, GroupLtv,
    LtvCurve, Purchase,
};
use crate::refresh::each_customer;
use crate::store::{Period, Store};
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

/// The cohorts and their LTV curves as of the end of `end`, from one pass over the orders.
pub async fn cohorts_with_ltv(
    store: &Store,
    end: NaiveDate,
    zone: Tz,
) -> anyhow::Result<(Vec<Cohort>, Vec<LtvCurve>)> {
    let mut customers: Vec<Vec<Purchase>> = Vec::new();
    each_customer(store, zone, &|_| {}, |_, orders| {
        customers.push(orders.to_vec());
    })
    .await?;
    let end = day_number(end);
    let days = customers.iter().map(|c| c.iter().map(|p| p.day).collect());
    let by_repeat = cohorts(days, end);
    Ok((by_repeat, ltv_curves(customers, end)))
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

/// When a report for the scenario `id` found nothing in its period: the words for an id that
/// is no loaded scenario (a typo, or a retired one without enrollments in the period), with
/// the one meant; None for a loaded scenario without enrollments yet.
pub fn unknown_scenario(id: &str, scenarios: &[crate::scenario::Scenario]) -> Option<String> {
    if scenarios.iter().any(|s| s.id == id) {
        return None;
    }
    let ids: Vec<&str> = scenarios.iter().map(|s| s.id.as_str()).collect();
    let hint = match crate::diagnostic::did_you_mean(id, &ids) {
        Some(m) => format!(" (did you mean '{m}'?)"),
        None => format!("; the scenarios are: {}", ids.join(", ")),
    };
    Some(format!(
        "no scenario '{id}' is loaded, and it has no enrollments in this period{hint}"
    ))
}

/// The report over the enrollments `period` counts (and the orders placed in it), with
/// last-touch attribution over `attribution_window`; `scenarios` (the loaded ones) give the
/// per-variant results of steps with variants.
pub async fn scenario_report(
    store: &Store,
    scenarios: &[crate::scenario::Scenario],
    period: Period,
    scenario: Option<&str>,
    attribution_window: chrono::Duration,
) -> anyhow::Result<Vec<crate::experiment::ScenarioResult>> {
    let (arms, open) = store.arm_counts(period, scenario).await?;
    let steps = store.step_counts(period, scenario).await?;
    let touches = store
        .last_touch(period, attribution_window.num_milliseconds(), scenario)
        .await?;
    let tracking = store.tracking_counts(period, scenario).await?;
    let mut report = crate::experiment::build_report(&arms, &steps, &touches, &tracking);
    let recommended = store
        .recommended_counts(period, scenario, attribution_window.num_milliseconds())
        .await?;
    crate::experiment::report::add_recommended(&mut report, &recommended);
    for open in open {
        match report.iter_mut().find(|r| r.scenario == open.scenario_id) {
            Some(r) => r.still_open = open.open,
            // Every enrollment of the scenario is still open: a row that says so.
            None => report.push(crate::experiment::report::only_open(&open)),
        }
    }
    report.sort_by(|a, b| {
        let control = |r: &crate::experiment::ScenarioResult| {
            r.scenario == crate::experiment::report::CONTROL_ROW
        };
        (control(a), &a.scenario).cmp(&(control(b), &b.scenario))
    });
    let decisions = store.variant_decisions().await?;
    for r in report.iter_mut().filter(|r| r.compared_with.is_none()) {
        let manual = scenarios
            .iter()
            .any(|s| s.id == r.scenario && s.trigger == crate::scenario::Trigger::Manual);
        if manual {
            r.judged = crate::experiment::report::Verdict::Manual;
            r.verdict = r.judged.english();
        }
        // A holdout is set but drew nobody yet: not "set a holdout".
        let holdout = scenarios
            .iter()
            .find(|s| s.id == r.scenario)
            .map_or(0.0, |s| s.holdout);
        if !manual && holdout > 0.0 && r.judged == crate::experiment::report::Verdict::NoGroup {
            r.judged = crate::experiment::report::Verdict::HoldoutEmpty {
                share: format!("{:.0}%", holdout * 100.0),
                treated: r.treatment,
            };
            r.verdict = r.judged.english();
        }
    }
    for r in &mut report {
        let Some(s) = scenarios
            .iter()
            .find(|s| s.id == r.scenario && s.steps.iter().any(|st| !st.variants.is_empty()))
        else {
            continue;
        };
        let outcomes = store.treatment_outcomes(&s.id, period).await?;
        let comparison = r
            .compared_with
            .as_ref()
            .map(|_| {
                (
                    r.converted_comparison as u64,
                    (r.enrolled - r.treatment) as u64,
                )
            })
            .filter(|(_, n)| *n > 0);
        crate::experiment::report::add_variants(r, s, &outcomes, &decisions, comparison);
    }
    Ok(report)
}
