//! `rebuy report rfm|cohorts|ltv` (and `scenarios`, in `experiments`): terminal tables by default, `--format csv|json` for tools,
//! `--as-of DATE` on each.

use super::metrics::{parse_date, run_refresh, today};
use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::metrics::GroupLtv;
use crate::metrics::{Cohort, SEGMENTS, WINDOWS};
use crate::reports::{cohort_report, ltv_report};
use crate::store::RfmGroup;
use chrono::NaiveDate;

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Customers, revenue and average order value per RFM segment and per R×F cell.
    Rfm(RfmArgs),
    /// Monthly first-order cohorts: who ordered again within 30–365 days; month-by-month retention.
    Cohorts(CohortArgs),
    /// LTV per RFM segment and per monthly cohort: AOV × purchases per year × retention years,
    /// and the revenue per customer observed in their first 3, 6 and 12 months.
    Ltv(LtvArgs),
    /// Did each scenario raise the repeat rate? Treatment against its holdout (or the control
    /// group): conversion rates, uplift with a 95% interval, p-value, revenue, step funnel.
    Scenarios(super::experiments::ScenarioReportArgs),
}

#[derive(Debug, clap::Args)]
pub struct LtvArgs {
    /// As of the end of this day (YYYY-MM-DD); the metrics are refreshed as of it first.
    /// Without it: today, with the stored segments (refreshed first if there are none).
    #[arg(long, value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    /// `segments` (default) or `cohorts` for csv and json; the table shows both.
    #[arg(long, value_enum, default_value = "segments")]
    pub view: LtvView,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LtvView {
    Segments,
    Cohorts,
}

#[derive(Debug, clap::Args)]
pub struct RfmArgs {
    /// Refresh as of the end of this day first (YYYY-MM-DD); without it the stored metrics are
    /// used (refreshed as of today if there are none).
    #[arg(long, value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    /// `segments` (default) or `cells` (R×F) for csv and json; the table shows both.
    #[arg(long, value_enum, default_value = "segments")]
    pub view: RfmView,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RfmView {
    Segments,
    Cells,
}

#[derive(Debug, clap::Args)]
pub struct CohortArgs {
    /// Count orders up to the end of this day (YYYY-MM-DD, the shop's zone); default today.
    #[arg(long, value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    /// `repeat` (default: ordered again within N days) or `retention` (the month-by-month
    /// matrix) for csv and json; the table shows both.
    #[arg(long, value_enum, default_value = "repeat")]
    pub view: CohortView,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CohortView {
    Repeat,
    Retention,
}

pub async fn run(app: &App, cmd: ReportCommand) -> anyhow::Result<u8> {
    match cmd {
        ReportCommand::Rfm(args) => rfm(app, &args).await,
        ReportCommand::Cohorts(args) => cohorts(app, &args).await,
        ReportCommand::Ltv(args) => ltv(app, &args).await,
        ReportCommand::Scenarios(args) => super::experiments::run(app, &args).await,
    }
}

async fn rfm(app: &App, args: &RfmArgs) -> anyhow::Result<u8> {
    let store = app.store().await?;
    if args.as_of.is_some() || store.metrics_as_of().await?.is_none() {
        let as_of = args.as_of.unwrap_or_else(|| today(app));
        run_refresh(app, &store, as_of, args.format == OutputFormat::Table).await?;
    }
    let as_of = store.metrics_as_of().await?.unwrap_or_default();
    let (mut segments, cells) = store.rfm_groups().await?;
    store.close().await;
    // Every segment, best first as documented, the empty ones too.
    for name in SEGMENTS {
        if !segments.iter().any(|g| g.group == name) {
            segments.push(RfmGroup {
                group: name.to_string(),
                customers: 0,
                revenue: 0,
                orders: 0,
            });
        }
    }
    segments.sort_by_key(|g| SEGMENTS.iter().position(|s| *s == g.group));
    let headers = [
        "group",
        "customers",
        "revenue",
        "orders",
        "average order value",
    ];
    let money = amount_for(args.format, app.currency());
    let rows = |groups: &[RfmGroup]| -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                vec![
                    g.group.clone(),
                    g.customers.to_string(),
                    money(g.revenue as f64),
                    g.orders.to_string(),
                    money(g.revenue as f64 / g.orders.max(1) as f64),
                ]
            })
            .collect()
    };
    let json = |groups: &[RfmGroup]| {
        serde_json::json!({
            "as_of": as_of,
            "groups": groups.iter().map(|g| serde_json::json!({
                "group": g.group, "customers": g.customers, "revenue": g.revenue,
                "orders": g.orders,
                "average_order_value": g.revenue as f64 / g.orders.max(1) as f64,
            })).collect::<Vec<_>>(),
        })
    };
    if args.format == OutputFormat::Table {
        println!("RFM segments as of {as_of}");
        print_rows(args.format, &headers, &rows(&segments), &json(&segments))?;
        println!("R×F cells");
        print_rows(args.format, &headers, &rows(&cells), &json(&cells))?;
    } else {
        let chosen = match args.view {
            RfmView::Segments => &segments,
            RfmView::Cells => &cells,
        };
        print_rows(args.format, &headers, &rows(chosen), &json(chosen))?;
    }
    Ok(exit::OK)
}

fn refs(h: &[String]) -> Vec<&str> {
    h.iter().map(String::as_str).collect()
}

fn percent(n: u64, of: u64) -> String {
    format!("{:.1}%", 100.0 * n as f64 / of.max(1) as f64)
}

async fn cohorts(app: &App, args: &CohortArgs) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let as_of = args.as_of.unwrap_or_else(|| today(app));
    // One pass over every order: the lean handle, as the refresh and the LTV report use.
    let lean = store.lean().await?;
    let cohorts = cohort_report(&lean, as_of, app.resolved.default_timezone).await?;
    lean.close().await;
    store.close().await;
    let json = serde_json::json!({ "as_of": as_of.to_string(), "windows_days": WINDOWS, "cohorts": cohorts });
    let (repeat_headers, repeat_rows) = repeat_table(&cohorts, args.format == OutputFormat::Table);
    let (retention_headers, retention_rows) = retention_table(&cohorts);
    match (args.format, args.view) {
        (OutputFormat::Table, _) => {
            println!("Ordered again within N days of the first order, as of {as_of} (* = window not over for the whole cohort)");
            print_rows(args.format, &refs(&repeat_headers), &repeat_rows, &json)?;
            println!("Share of each cohort that ordered in month 0, 1, 2 … after its first month");
            print_rows(
                args.format,
                &refs(&retention_headers),
                &retention_rows,
                &json,
            )?;
        }
        (_, CohortView::Repeat) => {
            print_rows(args.format, &refs(&repeat_headers), &repeat_rows, &json)?
        }
        (_, CohortView::Retention) => print_rows(
            args.format,
            &refs(&retention_headers),
            &retention_rows,
            &json,
        )?,
    }
    Ok(exit::OK)
}

fn repeat_table(cohorts: &[Cohort], mark_incomplete: bool) -> (Vec<String>, Vec<Vec<String>>) {
    let mut headers = vec!["cohort".to_string(), "customers".to_string()];
    headers.extend(WINDOWS.iter().map(|w| format!("{w} days")));
    let rows = cohorts
        .iter()
        .map(|c| {
            let mut row = vec![c.month.clone(), c.customers.to_string()];
            for k in 0..WINDOWS.len() {
                let star = if mark_incomplete && !c.complete[k] {
                    "*"
                } else {
                    ""
                };
                row.push(format!(
                    "{}{star}",
                    percent(c.repeat_within[k], c.customers)
                ));
            }
            row
        })
        .collect();
    (headers, rows)
}

fn retention_table(cohorts: &[Cohort]) -> (Vec<String>, Vec<Vec<String>>) {
    let width = cohorts.iter().map(|c| c.active.len()).max().unwrap_or(0);
    let mut headers = vec!["cohort".to_string(), "customers".to_string()];
    headers.extend((0..width).map(|k| format!("M{k}")));
    let rows = cohorts
        .iter()
        .map(|c| {
            let mut row = vec![c.month.clone(), c.customers.to_string()];
            row.extend((0..width).map(|k| match c.active.get(k) {
                Some(n) => percent(*n, c.customers),
                None => String::new(),
            }));
            row
        })
        .collect();
    (headers, rows)
}

async fn ltv(app: &App, args: &LtvArgs) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let as_of = args.as_of.unwrap_or_else(|| today(app));
    if args.as_of.is_some() || store.metrics_as_of().await?.is_none() {
        run_refresh(app, &store, as_of, args.format == OutputFormat::Table).await?;
    }
    let lean = store.lean().await?;
    let (segments, cohorts) = ltv_report(&lean, as_of, app.resolved.default_timezone).await?;
    lean.close().await;
    store.close().await;
    let headers = [
        "group",
        "customers",
        "AOV",
        "purchases/year",
        "retention",
        "retention years",
        "LTV (formula)",
        "revenue 3 months",
        "revenue 6 months",
        "revenue 12 months",
    ];
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("—".to_string(), |v| format!("{v:.digits$}"));
    let money = amount_for(args.format, app.currency());
    let rows = |groups: &[GroupLtv]| -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                let mut row = vec![
                    g.group.clone(),
                    g.customers.to_string(),
                    money(g.average_order_value),
                    opt(g.purchases_per_year, 2),
                    g.annual_retention
                        .map_or("—".into(), |r| format!("{:.1}%", r * 100.0)),
                    opt(g.retention_years, 2),
                    g.ltv.map_or("—".to_string(), &money),
                ];
                for k in 0..3 {
                    row.push(match g.revenue_within[k] {
                        Some(v) => format!("{} (n={})", money(v), g.observed_customers[k]),
                        None => "—".into(),
                    });
                }
                row
            })
            .collect()
    };
    let json =
        |groups: &[GroupLtv]| serde_json::json!({ "as_of": as_of.to_string(), "groups": groups });
    if args.format == OutputFormat::Table {
        println!("LTV by RFM segment, as of {as_of} (— = not enough history)");
        print_rows(args.format, &headers, &rows(&segments), &json(&segments))?;
        println!("LTV by monthly first-order cohort");
        print_rows(args.format, &headers, &rows(&cohorts), &json(&cohorts))?;
    } else {
        let chosen = match args.view {
            LtvView::Segments => &segments,
            LtvView::Cohorts => &cohorts,
        };
        print_rows(args.format, &headers, &rows(chosen), &json(chosen))?;
    }
    Ok(exit::OK)
}

/// How an amount (in minor units) is shown: in the shop's currency in a table (`¥3,980`), as
/// the whole number of minor units in CSV and JSON, for spreadsheets and programs.
fn amount_for(format: OutputFormat, currency: String) -> impl Fn(f64) -> String {
    move |minor| match format {
        OutputFormat::Table => crate::domain::format_money(minor.round() as i64, &currency),
        _ => format!("{minor:.0}"),
    }
}
