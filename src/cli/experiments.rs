//! `rebuy report scenarios`: did each scenario raise the repeat rate? Treatment against its
//! holdout (or the shop-wide control group), with the uplift's interval and test, revenue, and
//! each step's funnel. Terminal tables by default, `--format csv|json` for tools.

use super::metrics::parse_date;
use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::experiment::{build_report, ScenarioResult};
use crate::store::Store;
use chrono::NaiveDate;

#[derive(Debug, clap::Args)]
pub struct ScenarioReportArgs {
    /// Only this scenario.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Only enrollments triggered on or after this day (YYYY-MM-DD, the shop's zone).
    #[arg(long, value_parser = parse_date)]
    pub since: Option<NaiveDate>,
    /// `scenarios` (default) or `steps` (the funnel) for csv; the table shows both, json
    /// everything.
    #[arg(long, value_enum, default_value = "scenarios")]
    pub view: ScenarioView,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioView {
    Scenarios,
    Steps,
}

/// The report over enrollments triggered at or after `since` (unix ms).
/// The report over enrollments triggered (and orders placed) at or after `since` (unix ms),
/// with last-touch attribution over `attribution_window`.
pub async fn scenario_report(
    store: &Store,
    since: i64,
    scenario: Option<&str>,
    attribution_window: chrono::Duration,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let arms = store.arm_counts(since, scenario).await?;
    let steps = store.step_counts(since, scenario).await?;
    let touches = store
        .last_touch(since, attribution_window.num_milliseconds(), scenario)
        .await?;
    Ok(build_report(&arms, &steps, &touches))
}

pub async fn run(app: &App, args: &ScenarioReportArgs) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let since = args.since.map_or(i64::MIN, |d| {
        let zone = app.resolved.default_timezone;
        crate::clock::to_millis(
            d.and_hms_opt(0, 0, 0)
                .and_then(|t| t.and_local_timezone(zone).earliest())
                .map(|t| t.to_utc())
                .unwrap_or_default(),
        )
    });
    let window = app.resolved.attribution_window;
    let report = scenario_report(&store, since, args.scenario.as_deref(), window).await?;
    store.close().await;
    if report.is_empty() {
        eprintln!(
            "no enrollments{}{}: nothing to report yet",
            args.scenario
                .as_ref()
                .map(|s| format!(" in scenario '{s}'"))
                .unwrap_or_default(),
            args.since
                .map(|d| format!(" since {d}"))
                .unwrap_or_default()
        );
    }
    let json = serde_json::to_value(&report)?;
    let (sh, sr) = scenario_table(&report);
    let (fh, fr) = step_table(&report);
    match (args.format, args.view) {
        (OutputFormat::Table, _) => {
            print_rows(args.format, &sh, &sr, &json)?;
            for r in &report {
                println!("{}: {}", r.scenario, r.verdict);
            }
            println!(
                "Per step: messages and the enrollments that converted after the message was sent"
            );
            print_rows(args.format, &fh, &fr, &json)?;
        }
        (_, ScenarioView::Scenarios) => print_rows(args.format, &sh, &sr, &json)?,
        (_, ScenarioView::Steps) => print_rows(args.format, &fh, &fr, &json)?,
    }
    Ok(exit::OK)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn points(x: f64) -> String {
    format!("{:+.1}", x * 100.0)
}

fn scenario_table(report: &[ScenarioResult]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = vec![
        "scenario",
        "enrolled",
        "treated",
        "held out",
        "control",
        "sent",
        "compared with",
        "rate treated",
        "rate compared",
        "uplift (points)",
        "95% CI (points)",
        "relative uplift",
        "p-value",
        "revenue per treated",
        "revenue per compared",
        "incremental revenue",
        "last-touch orders",
        "last-touch revenue",
        "needed treated",
        "needed compared",
    ];
    let rows =
        report
            .iter()
            .map(|r| {
                let u = r.uplift.as_ref();
                let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                vec![
                    r.scenario.clone(),
                    r.enrolled.to_string(),
                    r.treatment.to_string(),
                    r.held_out.to_string(),
                    r.control.to_string(),
                    r.messages_sent.to_string(),
                    opt(r.compared_with.clone()),
                    opt(u.map(|u| pct(u.rate_treatment))),
                    opt(u.map(|u| pct(u.rate_holdout))),
                    opt(u.map(|u| points(u.absolute))),
                    opt(u.map(|u| {
                        format!("{} to {}", points(u.absolute_low), points(u.absolute_high))
                    })),
                    opt(u
                        .and_then(|u| u.relative)
                        .map(|x| format!("{:+.1}%", x * 100.0))),
                    opt(u.map(|u| format!("{:.4}", u.p_value))),
                    format!("{:.0}", r.revenue_per_treated),
                    opt(r.revenue_per_comparison.map(|x| format!("{x:.0}"))),
                    opt(r.incremental_revenue.map(|x| format!("{x:.0}"))),
                    r.attributed_orders.to_string(),
                    r.attributed_revenue.to_string(),
                    opt(u
                        .filter(|u| !u.significant)
                        .and_then(|u| u.needed_treatment)
                        .map(|n| n.to_string())),
                    opt(u
                        .filter(|u| !u.significant)
                        .and_then(|u| u.needed_holdout)
                        .map(|n| n.to_string())),
                ]
            })
            .collect();
    (headers, rows)
}

fn step_table(report: &[ScenarioResult]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = vec![
        "scenario",
        "step",
        "variant",
        "queued",
        "sent",
        "failed",
        "held out",
        "converted after",
        "last-touch orders",
        "last-touch revenue",
    ];
    let rows = report
        .iter()
        .flat_map(|r| {
            r.steps.iter().map(|s| {
                vec![
                    r.scenario.clone(),
                    s.step.clone(),
                    s.variant.clone().unwrap_or_else(|| "-".into()),
                    s.queued.to_string(),
                    s.sent.to_string(),
                    s.failed.to_string(),
                    s.held_out.to_string(),
                    s.converted_after.to_string(),
                    s.attributed_orders.to_string(),
                    s.attributed_revenue.to_string(),
                ]
            })
        })
        .collect();
    (headers, rows)
}
