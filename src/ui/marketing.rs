//! The marketer's pages: every scenario with its state, reach, conversions and uplift
//! against its holdout (drawn with its 95% interval), one scenario's funnel per step and
//! variant and its conversion curves, and a preview of any step for a chosen or random
//! customer.

use super::i18n;
use super::{Said, Ui, UiError};
use crate::clock::to_millis;
use crate::experiment::report::Verdict;
use crate::experiment::ScenarioResult;
use crate::store::{Period, Picked};
use crate::users::Role;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

const MARKETING: &[Role] = &[Role::Marketer];

/// The figures the marketing pages draw, computed together over every scenario: the report
/// reads every enrollment (seconds at a million), so pages are drawn from a snapshot that is
/// at most `FRESH` old and refreshed in the background when older.
pub struct Snapshot {
    /// When it was computed (the shop's clock).
    pub as_of: i64,
    pub status: std::collections::BTreeMap<String, crate::store::ScenarioStatus>,
    pub report: Vec<ScenarioResult>,
    pub curves: Vec<crate::store::ConversionDays>,
}

/// Computes a snapshot as of now: the report over everything stored, open goal windows left
/// out (as `rebuy report scenarios` counts by default).
async fn compute(ui: &Ui) -> Result<Snapshot, UiError> {
    let as_of = to_millis(ui.api.clock.now());
    let period = Period {
        since: i64::MIN,
        as_of,
        include_open: false,
    };
    let status = ui.api.store.scenario_status().await?;
    let report = crate::reports::scenario_report(
        &ui.api.store,
        ui.api.engine().scenarios(),
        period,
        None,
        ui.api.attribution_window,
    )
    .await
    .map_err(UiError::from_engine)?;
    let curves = ui.api.store.conversion_days(period, None).await?;
    Ok(Snapshot {
        as_of,
        status,
        report,
        curves,
    })
}

impl Ui {
    /// The latest snapshot (see `cache`); an old one is renewed in the background.
    pub(super) async fn snapshot(self: &Arc<Self>) -> Result<Arc<Snapshot>, UiError> {
        let (snap, stale) = self.snapshots.get(|| compute(self)).await?;
        if stale {
            self.refresh_snapshot_in_background();
        }
        Ok(snap)
    }

    /// Starts computing a new snapshot unless one is being computed.
    pub(super) fn refresh_snapshot_in_background(self: &Arc<Self>) {
        let ui = self.clone();
        tokio::spawn(async move { ui.snapshots.renew(|| compute(&ui)).await });
    }
}

/// The charts' words in `lang`.
fn chart_words(lang: i18n::Lang) -> crate::experiment::html::ChartWords {
    let t = |k: &str| i18n::text(lang, k);
    crate::experiment::html::ChartWords {
        no_groups: t("chart.no_groups"),
        uplift_title: t("chart.uplift_title"),
        points: t("chart.points"),
        conversion_of: t("chart.conversion_of"),
        days_since: t("chart.days_since"),
        treatment: t("group.treatment"),
        holdout: t("group.holdout"),
        control: t("group.control"),
    }
}

/// The report's verdict in `lang` (the comparison group named in it too).
fn verdict_in(lang: i18n::Lang, v: &Verdict) -> String {
    let values: Vec<(&str, String)> = v
        .values()
        .into_iter()
        .map(|(k, val)| match k {
            "group" => (k, i18n::text(lang, &format!("group.{val}"))),
            _ => (k, val),
        })
        .collect();
    let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    i18n::fill(lang, &format!("verdict.{}", v.key()), &pairs)
}

/// One scenario's row: what it is and its counts.
fn row(
    s: &crate::scenario::Scenario,
    st: Option<&crate::store::ScenarioStatus>,
    r: Option<&ScenarioResult>,
) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "enabled": s.enabled,
        "trigger": s.trigger.name(),
        "holdout": format!("{:.0}%", s.holdout * 100.0),
        "enrolled": st.map_or(0, |x| x.enrolled),
        "active": st.map_or(0, |x| x.active),
        "sent": st.map_or(0, |x| x.sent),
        "conversions": st.map_or(0, |x| x.reached_goal),
        "uplift": r.and_then(|r| r.uplift.as_ref()).map(|u| format!(
            "{:+.1} [{:+.1}, {:+.1}]", u.absolute * 100.0, u.absolute_low * 100.0, u.absolute_high * 100.0
        )),
    })
}

/// `GET /ui/scenarios`
pub async fn scenarios(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    let u = ui.clone();
    ui.guard(&headers, MARKETING, "/ui/scenarios", |v| async move {
        let snap = u.snapshot().await?;
        let (status, results) = (&snap.status, &snap.report);
        let by_id: HashMap<&str, &ScenarioResult> =
            results.iter().map(|r| (r.scenario.as_str(), r)).collect();
        let engine = u.api.engine();
        let rows: Vec<Value> = engine
            .scenarios()
            .iter()
            .map(|s| row(s, status.get(&s.id), by_id.get(s.id.as_str()).copied()))
            .collect();
        let chart = crate::experiment::html::uplift_chart(
            results,
            &u.scenario_names(),
            &chart_words(v.lang),
        );
        let title = i18n::text(v.lang, "scenarios.title");
        u.page(
            Some(&v),
            v.lang,
            "scenarios.html",
            "scenarios",
            &title,
            minijinja::context! { rows => rows, chart => chart, as_of => snap.as_of },
        )
    })
    .await
}

/// The scenario page's data; `preview` is filled by the preview route.
async fn scenario_data(
    ui: &Arc<Ui>,
    id: &str,
    lang: i18n::Lang,
) -> Result<(Value, String), UiError> {
    let engine = ui.api.engine();
    let s = engine
        .scenarios()
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| UiError::NotFound(Said::new("missing.scenario").with("id", id)))?;
    let snap = ui.snapshot().await?;
    let results: Vec<ScenarioResult> = snap
        .report
        .iter()
        .filter(|r| r.scenario == id)
        .cloned()
        .collect();
    let curves: Vec<_> = snap
        .curves
        .iter()
        .filter(|c| c.scenario == id)
        .cloned()
        .collect();
    let names = ui.scenario_names();
    let words = chart_words(lang);
    let uplift = crate::experiment::html::uplift_chart(&results, &names, &words);
    let curves = crate::experiment::html::curve_charts(&results, &curves, &names, &words);
    let funnel = results.first().map_or(String::new(), |r| {
        let t = |k: &str| i18n::text(lang, k);
        let rows: Vec<(String, [i64; 4])> = r
            .steps
            .iter()
            .map(|st| {
                let label = match &st.variant {
                    Some(v) => format!("{} / {v}", st.step),
                    None => st.step.clone(),
                };
                (label, [st.sent, st.opened, st.clicked, st.converted_after])
            })
            .collect();
        let stages = [
            t("scenarios.sent"),
            t("scenario.opened"),
            t("scenario.clicked"),
            t("scenario.converted_after"),
        ];
        super::charts::funnel(&rows, &stages, &t("scenario.funnel"))
    });
    let mut r = json!(results.first());
    if let Some(first) = results.first() {
        r["verdict"] = verdict_in(lang, &first.judged).into();
    }
    let steps: Vec<&str> = s.steps.iter().map(|st| st.id.as_str()).collect();
    Ok((
        json!({
            "s": row(s, snap.status.get(id), results.first()),
            "r": r,
            "uplift": uplift,
            "curves": curves,
            "funnel": funnel,
            "steps": steps,
            "as_of": snap.as_of,
        }),
        s.name.clone(),
    ))
}

/// `GET /ui/scenarios/{id}`
pub async fn scenario(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let u = ui.clone();
    let back = format!("/ui/scenarios/{}", super::encode(&id));
    ui.guard(&headers, MARKETING, &back, |v| async move {
        let (data, name) = scenario_data(&u, &id, v.lang).await?;
        u.page(Some(&v), v.lang, "scenario.html", "scenarios", &name, data)
    })
    .await
}

/// `GET /ui/scenarios/{id}/preview?step=…&customer=…`: the step rendered for the customer
/// (or one picked at random from its audience: those enrolled in it, else the members of the
/// segment its audience names, else anyone; the page says which), sent to no one.
pub async fn preview(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let u = ui.clone();
    let back = format!("/ui/scenarios/{}", super::encode(&id));
    ui.guard(&headers, MARKETING, &back, |v| async move {
        let (mut data, name) = scenario_data(&u, &id, v.lang).await?;
        let step = q
            .get("step")
            .cloned()
            .or_else(|| data["steps"][0].as_str().map(str::to_string))
            .unwrap_or_default();
        let given = q.get("customer").map(|c| c.trim()).unwrap_or("");
        let customer = if given.is_empty() {
            let segment = u
                .api
                .engine()
                .scenarios()
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| s.audience_segment.as_ref().map(|r| r.name.clone()));
            let pick = rand::random::<u64>();
            let picked = u
                .api
                .store
                .random_customer(&id, segment.as_deref(), pick)
                .await?;
            if let Some((_, from)) = &picked {
                let key = match from {
                    Picked::Enrolled => "scenario.picked_enrolled",
                    Picked::Segment => "scenario.picked_segment",
                    Picked::Anyone => "scenario.picked_anyone",
                };
                data["picked"] = i18n::fill(
                    v.lang,
                    key,
                    &[("segment", segment.as_deref().unwrap_or(""))],
                )
                .into();
            }
            picked.map(|(c, _)| c)
        } else {
            Some(given.to_string())
        };
        match customer {
            None => data["preview_error"] = i18n::text(v.lang, "scenario.no_customer").into(),
            Some(c) => match u
                .api
                .engine()
                .preview(&id, &step, &c, serde_json::Map::new(), u.api.clock.now())
                .await
            {
                Ok(r) => {
                    data["preview"] =
                        json!({ "customer": c, "subject": r.subject, "html": r.html });
                }
                Err(e) => match UiError::from_engine(e) {
                    UiError::Invalid(why) => data["preview_error"] = why.into(),
                    UiError::NotFound(said) => data["preview_error"] = said.text(v.lang).into(),
                    other => return Err(other),
                },
            },
        }
        u.page(Some(&v), v.lang, "scenario.html", "scenarios", &name, data)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::report::{Interval, ENGLISH};

    fn every_kind() -> Vec<Verdict> {
        let stats = Interval {
            low: -1.25,
            high: 3.5,
            p: 0.0004,
        };
        vec![
            Verdict::NoGroup,
            Verdict::NobodyYet {
                group: "holdout".into(),
            },
            Verdict::HoldoutEmpty {
                share: "10%".into(),
                treated: 1,
            },
            Verdict::TooEarly { treated: 1234 },
            Verdict::AllOpen { open: 56 },
            Verdict::Manual,
            Verdict::Effect {
                works: true,
                rate_treated: 0.337,
                rate_compared: 0.081,
                points: 25.6,
                group: "holdout".into(),
                stats,
            },
            Verdict::Effect {
                works: false,
                rate_treated: 0.1,
                rate_compared: 0.2,
                points: 10.0,
                group: "control".into(),
                stats,
            },
            Verdict::NoEffect { widest: 1.5, stats },
            Verdict::NotYet {
                compared: 100,
                group: "holdout".into(),
                more: 12_000,
                points: 2.0,
                needed_treated: 9000,
                needed_compared: 4000,
                stats,
            },
            Verdict::NoDifference {
                group: "control".into(),
                treated: 300,
                stats,
            },
        ]
    }

    #[test]
    fn the_pages_verdicts_say_in_english_what_the_cli_says_and_fill_every_figure_in_japanese() {
        let kinds = every_kind();
        let keys: Vec<&str> = kinds.iter().map(Verdict::key).collect();
        assert!(
            ENGLISH.iter().all(|(k, _)| keys.contains(k)),
            "every kind of verdict is here"
        );
        for v in &kinds {
            assert_eq!(verdict_in(i18n::Lang::En, v), v.english());
            let ja = verdict_in(i18n::Lang::Ja, v);
            assert!(!ja.contains('{'), "a figure left unfilled: {ja}");
            assert_ne!(ja, v.english(), "{ja}");
            for (name, value) in v.values() {
                if name != "group"
                    && name != "min_cell"
                    && !ja.contains(&value)
                    && v.english().contains(&value)
                {
                    panic!("{name} = {value} missing in: {ja}");
                }
            }
        }
        assert!(verdict_in(i18n::Lang::Ja, &kinds[1]).contains("ホールドアウト群"));
    }
}
