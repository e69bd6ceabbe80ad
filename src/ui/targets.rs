//! The targets page: each LTV target of `targets.yaml` with its baseline, its goal, the value
//! now, the trend against a quarter earlier, the forecast from the model's predicted CLV (for
//! `ltv_12m`), and how far along it is, drawn.

use super::i18n;
use super::{Ui, UiError};
use crate::metrics::day_number;
pub use crate::targets::Figures;
use crate::targets::{Measured, Metric};
use crate::users::Role;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

async fn compute(ui: &Ui) -> Result<Figures, UiError> {
    let targets = ui.api.engine().targets().to_vec();
    crate::targets::measure_all(&ui.api.store, ui.api.zone, &targets, ui.api.clock.now())
        .await
        .map_err(UiError::Internal)
}

/// How far from the baseline to the goal `value` is (0 at the baseline, 1 at the goal). Every
/// metric is better higher, so a goal at or below the baseline asks only to stay there: met
/// (1) while the value holds it, missed (0) once it falls below.
pub fn progress(baseline: f64, goal: f64, value: f64) -> Option<f64> {
    let span = goal - baseline;
    if span <= f64::EPSILON {
        return Some(if value >= goal { 1.0 } else { 0.0 });
    }
    Some((value - baseline) / span)
}

/// A progress bar: the share of the way from baseline to goal, capped at the ends.
fn bar(share: Option<f64>, label: &str) -> String {
    let s = share.unwrap_or(0.0).clamp(0.0, 1.0);
    let colour = if share.is_some_and(|x| x >= 1.0) {
        "#146c2e"
    } else {
        "#1f6feb"
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 200 14\" width=\"200\" height=\"14\" role=\"img\" aria-label=\"{l}\"><title>{l}</title>\
         <rect width=\"200\" height=\"14\" rx=\"3\" fill=\"#eaeef2\"/><rect width=\"{:.1}\" height=\"14\" rx=\"3\" fill=\"{colour}\"/></svg>",
        200.0 * s,
        l = html_escape::encode_double_quoted_attribute(label)
    )
}

fn shown(metric: Metric, v: Option<f64>, currency: &str) -> String {
    match v.filter(|v| v.is_finite()) {
        None => "—".into(),
        Some(v) if metric.is_money() => crate::domain::format_money(v.round() as i64, currency),
        Some(v) => format!("{:.1}%", v * 100.0),
    }
}

pub fn row(m: &Measured, currency: &str, lang: i18n::Lang, today: i64) -> Value {
    let t = &m.target;
    let goal = m.baseline.map(|b| t.goal_value(b));
    let share = match (m.baseline, goal, m.now) {
        (Some(b), Some(g), Some(n)) => progress(b, g, n),
        _ => None,
    };
    let pct = share.map(|s| format!("{:.0}%", s * 100.0));
    let trend = match (m.now, m.earlier) {
        (Some(n), Some(e)) if n > e => "▲",
        (Some(n), Some(e)) if n < e => "▼",
        (Some(_), Some(_)) => "→",
        _ => "",
    };
    let days_left = day_number(t.deadline) - today;
    let label = format!(
        "{}: {}",
        i18n::text(lang, "targets.progress"),
        pct.clone().unwrap_or_else(|| "—".into())
    );
    json!({
        "id": t.id,
        "name": t.name,
        "metric": i18n::text(lang, &format!("targets.metric_{}", t.metric.name())),
        "segment": t.segment,
        "baseline": shown(t.metric, m.baseline, currency),
        "baseline_window": format!("{} – {}", t.baseline_from, t.baseline_to),
        "goal": shown(t.metric, goal, currency),
        "now": shown(t.metric, m.now, currency),
        "now_window": format!("{} – {}", crate::metrics::date_of_day(m.now_from), crate::metrics::date_of_day(m.now_to)),
        "earlier": shown(t.metric, m.earlier, currency),
        "trend": trend,
        "forecast": shown(t.metric, m.forecast, currency),
        "progress": pct,
        "bar": bar(share, &label),
        "deadline": t.deadline.to_string(),
        "days_left": days_left,
    })
}

/// `GET /ui/targets`
pub async fn page(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    let u = ui.clone();
    ui.guard(&headers, &[Role::Marketer], "/ui/targets", |v| async move {
        let (mut figures, stale) = u.target_figures.get(|| compute(&u)).await?;
        let engine = u.api.engine();
        let measured = figures.targets.iter().map(|m| &m.target);
        if !measured.eq(engine.targets().iter()) {
            // The targets were reloaded (SIGHUP): measure the new ones now.
            u.target_figures.renew(|| compute(&u)).await;
            figures = u.target_figures.get(|| compute(&u)).await?.0;
        } else if stale {
            let again = u.clone();
            tokio::spawn(async move { again.target_figures.renew(|| compute(&again)).await });
        }
        let today = day_number(u.api.clock.now().with_timezone(&u.api.zone).date_naive());
        let rows: Vec<Value> = figures
            .targets
            .iter()
            .map(|m| row(m, &u.currency, v.lang, today))
            .collect();
        u.page(
            Some(&v),
            v.lang,
            "targets.html",
            "targets",
            &i18n::text(v.lang, "targets.title"),
            minijinja::context! { rows => rows, as_of => figures.as_of },
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_runs_from_baseline_to_goal() {
        assert_eq!(progress(100.0, 120.0, 110.0), Some(0.5));
        assert_eq!(progress(100.0, 120.0, 130.0), Some(1.5));
        // Every metric is better higher: a goal below the baseline is met while held.
        assert_eq!(progress(100.0, 80.0, 90.0), Some(1.0), "a goal below, held");
        assert_eq!(
            progress(0.80, 0.45, 0.538),
            Some(1.0),
            "a falling rate still over"
        );
        assert_eq!(
            progress(100.0, 80.0, 70.0),
            Some(0.0),
            "a goal below, missed"
        );
        assert_eq!(progress(100.0, 100.0, 90.0), Some(0.0));
        assert!(bar(Some(0.5), "p").contains("width=\"100.0\""));
        assert!(bar(Some(2.0), "p").contains("#146c2e"));
    }

    #[test]
    fn values_are_shown_as_money_or_shares() {
        assert_eq!(shown(Metric::Ltv12m, Some(12_345.4), "JPY"), "¥12,345");
        assert_eq!(shown(Metric::RepeatRate90d, Some(0.3456), "JPY"), "34.6%");
        assert_eq!(shown(Metric::Aov, None, "JPY"), "—");
        assert_eq!(shown(Metric::Ltv12m, Some(f64::NEG_INFINITY), "JPY"), "—");
    }
}
