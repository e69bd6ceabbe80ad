//! `rebuy report scenarios`: did each scenario raise the repeat rate? Treatment against its
//! holdout (or the shop-wide control group), with the uplift's interval and test, revenue, and
//! each step's funnel. Terminal tables by default, `--format csv|json` for tools.

use super::metrics::parse_date;
use super::output::{print_rows, OutputFormat};
use super::{exit, App};
pub use crate::experiment::report::{label, open_line, scenario_names};
use crate::experiment::{ScenarioResult, Uplift};
use crate::reports::scenario_report;
use crate::store::{Period, Store};
use anyhow::Context as _;
use chrono::NaiveDate;
use std::collections::HashMap;

#[derive(Debug, clap::Args)]
pub struct ScenarioReportArgs {
    /// Only this scenario.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Only enrollments triggered on or after this day (YYYY-MM-DD, the shop's zone).
    #[arg(long, value_parser = parse_date)]
    pub since: Option<NaiveDate>,
    /// The report as it stood at the end of this day (YYYY-MM-DD, the shop's zone): only
    /// enrollments triggered by then, and conversions by then. Default: now (in a back-test's
    /// database, the end of the simulated period).
    #[arg(long, value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    /// Also count enrollments whose goal window is still open. By default they are left out
    /// (and counted beside the table): an open window has had less time to convert, and
    /// counting it favours whichever group converts sooner.
    #[arg(long)]
    pub include_open: bool,
    /// `scenarios` (default), `steps` (the funnel) or `variants` for csv; the table shows all,
    /// json everything.
    #[arg(long, value_enum, default_value = "scenarios")]
    pub view: ScenarioView,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Also write the report as one self-contained HTML file with charts (uplift with its
    /// interval per scenario; cumulative conversion, treatment against comparison).
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioView {
    Scenarios,
    Steps,
    Variants,
}

/// Writes `report` as a self-contained HTML page with its charts to `path`.
#[allow(clippy::too_many_arguments)]
pub async fn write_html(
    app: &App,
    store: &Store,
    report: &[ScenarioResult],
    counted: Period,
    period: &str,
    note: Option<&str>,
    path: &std::path::Path,
    names: &HashMap<String, String>,
) -> anyhow::Result<()> {
    // Curves are drawn for the report's rows only.
    let only = match report {
        [one] => Some(one.scenario.as_str()),
        _ => None,
    };
    let curves = store.conversion_days(counted, only).await?;
    let shop = app
        .config
        .shop
        .get("name")
        .map(String::as_str)
        .unwrap_or("rebuy");
    let title = format!("{shop}: did the scenarios raise the repeat rate?{period}");
    std::fs::write(
        path,
        crate::experiment::html::render(&title, note, report, &curves, &app.currency(), names),
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

pub async fn run(app: &App, args: &ScenarioReportArgs) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let zone = app.resolved.default_timezone;
    let since = args
        .since
        .map_or(i64::MIN, |d| crate::clock::start_of_day(d, zone));
    let as_of = match args.as_of {
        Some(d) => crate::clock::start_of_day(d + chrono::Days::new(1), zone) - 1,
        None => default_as_of(&store).await?,
    };
    let counted = Period {
        since,
        as_of,
        include_open: args.include_open,
    };
    let window = app.resolved.attribution_window;
    // The scenarios as they are now (for their variants); a scenario with problems is still
    // reported, without them.
    let scenarios = app.check().scenarios;
    // Grouped scans that read each page once: the lean handle (small page caches, no
    // slow-statement warnings for queries that read a million rows on purpose).
    let full = store;
    let store = full.lean().await?;
    full.close().await;
    let report = scenario_report(
        &store,
        &scenarios,
        counted,
        args.scenario.as_deref(),
        window,
    )
    .await?;
    if let Some(why) = args
        .scenario
        .as_deref()
        .filter(|_| report.is_empty())
        .and_then(|id| crate::reports::unknown_scenario(id, &scenarios))
    {
        store.close().await;
        return Err(crate::engine::InputError(why).into());
    }
    if let Some(path) = &args.html {
        let since = args
            .since
            .map(|d| format!(" since {d}"))
            .unwrap_or_default();
        // Always dated: a chart pasted into a monthly report must say when it was true.
        let as_of = crate::clock::from_millis(counted.as_of)
            .with_timezone(&zone)
            .date_naive();
        let period = format!("{since} as of {as_of}");
        write_html(
            app,
            &store,
            &report,
            counted,
            &period,
            None,
            path,
            &scenario_names(&scenarios),
        )
        .await?;
    }
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
    let names = scenario_names(&scenarios);
    print_report_view(&report, args.format, args.view, &app.currency(), &names)?;
    if args.format == OutputFormat::Table {
        if let Some(line) = open_line(&report, &names) {
            println!("{line}");
        }
        for line in crate::experiment::report::recommended_lines(&report, &names) {
            println!("{line}");
        }
    }
    Ok(exit::OK)
}

/// Now, or in a back-test's database the end of the simulated period.
pub async fn default_as_of(store: &Store) -> anyhow::Result<i64> {
    use crate::clock::Clock as _;
    Ok(match store.simulated_until().await? {
        Some(to) => to,
        None => crate::clock::to_millis(crate::clock::SystemClock.now()),
    })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn points(x: f64) -> String {
    format!("{:+.1}", x * 100.0)
}

/// A cell's text, or `-` when there is nothing to show.
fn dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// An uplift's 95% interval in points.
fn interval(u: &Uplift) -> String {
    format!("{} to {}", points(u.absolute_low), points(u.absolute_high))
}

/// How amounts (minor units) are written in a table: in the shop's currency for people
/// (`¥3,980`), as plain numbers for CSV.
#[derive(Debug, Clone, Copy)]
pub enum Amounts<'a> {
    Money(&'a str),
    Plain,
}

impl Amounts<'_> {
    fn show(self, minor: f64) -> String {
        match self {
            Amounts::Money(currency) => crate::domain::format_money(minor.round() as i64, currency),
            Amounts::Plain => format!("{minor:.0}"),
        }
    }
}

fn scenario_table(
    report: &[ScenarioResult],
    amounts: Amounts,
    names: &HashMap<String, String>,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
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
        "incremental 95% CI",
        "last-touch orders",
        "last-touch revenue",
        "needed treated",
        "needed compared",
    ];
    let rows = report
        .iter()
        .map(|r| {
            let u = r.uplift.as_ref();
            vec![
                label(names, &r.scenario),
                r.enrolled.to_string(),
                r.treatment.to_string(),
                r.held_out.to_string(),
                r.control.to_string(),
                r.messages_sent.to_string(),
                dash(r.compared_with.clone()),
                dash(u.map(|u| pct(u.rate_treatment))),
                dash(u.map(|u| pct(u.rate_holdout))),
                dash(u.map(|u| points(u.absolute))),
                dash(u.map(interval)),
                dash(
                    u.and_then(|u| u.relative)
                        .map(|x| format!("{:+.1}%", x * 100.0)),
                ),
                dash(u.map(|u| format!("{:.4}", u.p_value))),
                amounts.show(r.revenue_per_treated),
                dash(r.revenue_per_comparison.map(|x| amounts.show(x))),
                dash(r.incremental_revenue.map(|x| amounts.show(x))),
                dash(
                    r.incremental_revenue_low
                        .zip(r.incremental_revenue_high)
                        .map(|(l, h)| format!("{} to {}", amounts.show(l), amounts.show(h))),
                ),
                r.attributed_orders.to_string(),
                amounts.show(r.attributed_revenue as f64),
                dash(
                    u.filter(|u| !u.significant)
                        .and_then(|u| u.needed_treatment)
                        .map(|n| n.to_string()),
                ),
                dash(
                    u.filter(|u| !u.significant)
                        .and_then(|u| u.needed_holdout)
                        .map(|n| n.to_string()),
                ),
            ]
        })
        .collect();
    (headers, rows)
}

fn step_table(
    report: &[ScenarioResult],
    amounts: Amounts,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
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
        "opened",
        "clicked",
        "click rate",
    ];
    let rows = report
        .iter()
        .flat_map(|r| {
            r.steps.iter().map(|s| {
                vec![
                    r.scenario.clone(),
                    s.step.clone(),
                    dash(s.variant.clone()),
                    s.queued.to_string(),
                    s.sent.to_string(),
                    s.failed.to_string(),
                    s.held_out.to_string(),
                    s.converted_after.to_string(),
                    s.attributed_orders.to_string(),
                    amounts.show(s.attributed_revenue as f64),
                    s.opened.to_string(),
                    s.clicked.to_string(),
                    if s.sent > 0 {
                        pct(s.clicked as f64 / s.sent as f64)
                    } else {
                        "–".into()
                    },
                ]
            })
        })
        .collect();
    (headers, rows)
}

fn variant_table(
    report: &[ScenarioResult],
    amounts: Amounts,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = vec![
        "scenario",
        "step",
        "variant",
        "enrolled",
        "converted",
        "rate",
        "uplift (points)",
        "95% CI (points)",
        "p-value",
        "revenue per enrolled",
        "winner",
    ];
    let rows = report
        .iter()
        .flat_map(|r| {
            r.variants.iter().map(|v| {
                let u = v.uplift.as_ref();
                vec![
                    r.scenario.clone(),
                    v.step.clone(),
                    v.variant.clone(),
                    v.enrolled.to_string(),
                    v.converted.to_string(),
                    pct(v.rate),
                    dash(u.map(|u| points(u.absolute))),
                    dash(u.map(interval)),
                    dash(u.map(|u| format!("{:.4}", u.p_value))),
                    amounts.show(v.revenue_per_enrolled),
                    if v.winner {
                        "yes".into()
                    } else {
                        String::new()
                    },
                ]
            })
        })
        .collect();
    (headers, rows)
}

/// Prints the report: every table (and the verdicts) for `table`, everything for `json`.
/// Amounts are in `currency` in a table, plain numbers in CSV.
pub fn print_report(
    report: &[ScenarioResult],
    format: OutputFormat,
    currency: &str,
    names: &HashMap<String, String>,
) -> anyhow::Result<()> {
    print_report_view(report, format, ScenarioView::Scenarios, currency, names)
}

/// In a table, amounts in `currency` and scenarios by their names; CSV keeps plain values.
fn print_report_view(
    report: &[ScenarioResult],
    format: OutputFormat,
    view: ScenarioView,
    currency: &str,
    names: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let json = serde_json::to_value(report)?;
    let plain = HashMap::new();
    let (amounts, names) = match format {
        OutputFormat::Table => (Amounts::Money(currency), names),
        _ => (Amounts::Plain, &plain),
    };
    let (sh, sr) = scenario_table(report, amounts, names);
    let (fh, fr) = step_table(report, amounts);
    let (vh, vr) = variant_table(report, amounts);
    match (format, view) {
        (OutputFormat::Table, _) => {
            print_rows(format, &sh, &sr, &json)?;
            for r in report {
                println!("{}: {}", label(names, &r.scenario), r.verdict);
            }
            println!(
                "Per step: messages and the enrollments that converted after the message was sent"
            );
            print_rows(format, &fh, &fr, &json)?;
            if !vr.is_empty() {
                println!("Per variant (every treated enrollment assigned to it, against the same comparison group)");
                print_rows(format, &vh, &vr, &json)?;
            }
            for d in report.iter().flat_map(|r| &r.decisions) {
                println!("{} / {}: {}", d.scenario_id, d.step_id, d.detail);
            }
        }
        (_, ScenarioView::Scenarios) => print_rows(format, &sh, &sr, &json)?,
        (_, ScenarioView::Steps) => print_rows(format, &fh, &fr, &json)?,
        (_, ScenarioView::Variants) => print_rows(format, &vh, &vr, &json)?,
    }
    Ok(())
}
