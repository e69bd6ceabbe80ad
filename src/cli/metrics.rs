//! `rebuy refresh` (recompute every customer's metrics, with a progress bar) and
//! `rebuy metrics export` (one row per customer, streamed as CSV or JSON).

use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::clock::{Clock, SystemClock};
use crate::refresh::{
    refresh, refresh_changed, refresh_sku_intervals, ChangedReport, RefreshReport,
};
use crate::store::{MembershipChange, MetricsRow, Store, METRICS_COLUMNS};
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// Compute as of the end of this day (YYYY-MM-DD, the shop's time zone); default today.
    #[arg(long, value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Do not show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Recompute only the customers whose orders changed since the last refresh (scored
    /// against the last full refresh's RFM cuts and models); a full refresh if there is none.
    #[arg(long)]
    pub changed: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum MetricsCommand {
    /// One row per customer with every metric, RFM scores, segment and predictions.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Refresh as of the end of this day first (YYYY-MM-DD); without it the stored metrics
    /// are exported (refreshed as of today if there are none).
    #[arg(long, value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    /// csv (default) or json (an array of objects).
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

pub(super) fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("`{s}` is not a date like 2026-11-24: {e}"))
}

pub(super) fn today(app: &App) -> NaiveDate {
    SystemClock
        .now()
        .with_timezone(&app.resolved.default_timezone)
        .date_naive()
}

pub(super) async fn run_refresh(
    app: &App,
    store: &Store,
    as_of: NaiveDate,
    show: bool,
) -> anyhow::Result<RefreshReport> {
    let total = store.order_count_estimate().await?;
    let bar = if show && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total.max(0) as u64);
        bar.set_style(ProgressStyle::with_template(
            "{msg} {wide_bar} {pos}/{len} orders ({eta})",
        )?);
        bar.set_message("reading orders");
        bar
    } else {
        ProgressBar::hidden()
    };
    let now = SystemClock.now().timestamp_millis();
    let check = app.check();
    if !check.diagnostics.is_empty() {
        for d in &check.diagnostics {
            eprintln!("warning: {d}");
        }
        eprintln!(
            "warning: {} problem(s) in the scenario folder; segments with problems are not evaluated (see `rebuy check`)",
            check.diagnostics.len()
        );
    }
    let zone = app.resolved.default_timezone;
    let report = refresh(store, as_of, zone, now, &check.segments, &|n| {
        bar.set_position(n)
    })
    .await;
    bar.finish_and_clear();
    let mut report = report?;
    let replenish = check
        .scenarios
        .iter()
        .any(|s| s.enabled && matches!(s.trigger, crate::scenario::Trigger::Replenish(_)));
    if replenish {
        report.sku_intervals = Some(refresh_sku_intervals(store, as_of, zone).await?);
    }
    Ok(report)
}

pub async fn refresh_command(app: &App, args: &RefreshArgs) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let as_of = args.as_of.unwrap_or_else(|| today(app));
    if args.changed {
        let check = app.check();
        let now = SystemClock.now().timestamp_millis();
        let zone = app.resolved.default_timezone;
        if let Some(r) = refresh_changed(&store, as_of, zone, now, &check.segments).await? {
            store.close().await;
            print_changed(&r, args.format)?;
            return Ok(exit::OK);
        }
        eprintln!(
            "the changed customers cannot be recomputed alone (no full refresh is stored yet, \
             or a first import of orders changed everyone): running a full refresh"
        );
    }
    let report = run_refresh(app, &store, as_of, !args.no_progress).await?;
    store.close().await;
    print_report(&report, args.format)?;
    Ok(exit::OK)
}

fn print_changed(r: &ChangedReport, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Table {
        println!(
            "{} changed customer(s) recomputed ({} without an order any more) in {:.2}s",
            r.customers, r.removed, r.secs
        );
    }
    let mut json = serde_json::to_value(r)?;
    json["named_segments"] = segments_json(&r.named_segments);
    print_rows(
        format,
        &SEGMENT_HEADERS,
        &segment_rows(&r.named_segments),
        &json,
    )
}

const SEGMENT_HEADERS: [&str; 4] = ["segment", "members", "entered", "exited"];

/// One table row per named segment evaluated (a first evaluation says so).
fn segment_rows(changes: &[(String, MembershipChange)]) -> Vec<Vec<String>> {
    changes
        .iter()
        .map(|(name, c)| {
            let note = if c.baseline {
                " (first evaluation)"
            } else {
                ""
            };
            vec![
                format!("{name}{note}"),
                c.members.to_string(),
                c.entered.to_string(),
                c.exited.to_string(),
            ]
        })
        .collect()
}

fn segments_json(changes: &[(String, MembershipChange)]) -> serde_json::Value {
    changes
        .iter()
        .map(|(name, c)| {
            serde_json::json!({
                "segment": name, "members": c.members, "entered": c.entered,
                "exited": c.exited, "baseline": c.baseline,
            })
        })
        .collect()
}

fn print_report(r: &RefreshReport, format: OutputFormat) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = r
        .segments
        .iter()
        .map(|(s, n)| vec![s.to_string(), n.to_string()])
        .collect();
    let fit = |name: &str, e: &Option<String>| match e {
        Some(why) => format!("{name}: not fitted ({why})"),
        None => format!("{name}: fitted"),
    };
    let bg_err = r.bgnbd.as_ref().err().map(|e| e.to_string());
    let gg_err = r.gamma_gamma.as_ref().err().map(|e| e.to_string());
    let json = serde_json::json!({
        "as_of": r.as_of.to_string(),
        "customers": r.customers,
        "orders": r.orders,
        "segments": r.segments.iter().map(|(s, n)| serde_json::json!({"segment": s, "customers": n})).collect::<Vec<_>>(),
        "bgnbd": r.bgnbd.as_ref().ok(),
        "bgnbd_error": bg_err,
        "gamma_gamma": r.gamma_gamma.as_ref().ok(),
        "gamma_gamma_error": gg_err,
        "named_segments": segments_json(&r.named_segments),
        "sku_intervals": r.sku_intervals,
        "timings": r.timings,
    });
    if format == OutputFormat::Table {
        println!(
            "metrics as of {}: {} customers, {} orders",
            r.as_of, r.customers, r.orders
        );
    }
    print_rows(format, &["rfm segment", "customers"], &rows, &json)?;
    if format == OutputFormat::Table && !r.named_segments.is_empty() {
        let rows = segment_rows(&r.named_segments);
        print_rows(format, &SEGMENT_HEADERS, &rows, &serde_json::Value::Null)?;
    }
    if format == OutputFormat::Table {
        println!("{}", fit("BG/NBD", &bg_err));
        println!("{}", fit("Gamma-Gamma", &gg_err));
        if bg_err.is_some() || gg_err.is_some() {
            println!("predictions (p_alive, expected purchases, CLV, next order) stay empty until the models can be fitted");
        }
    }
    Ok(())
}

pub async fn run(app: &App, cmd: MetricsCommand) -> anyhow::Result<u8> {
    let MetricsCommand::Export(args) = cmd;
    let store = app.store().await?;
    let stored = store.model_fits().await?;
    let has_rows = store.metrics_rows().try_next().await?.is_some();
    if args.as_of.is_some() || (!has_rows && stored.is_empty()) {
        let as_of = args.as_of.unwrap_or_else(|| today(app));
        run_refresh(app, &store, as_of, true).await?;
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let written = async {
        export(&store, args.format, &mut out).await?;
        out.flush()?;
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    match written {
        // The reader stopped early (`| head`): not an error.
        Err(e) if is_broken_pipe(&e) => Ok(exit::OK),
        Err(e) => Err(e),
        Ok(()) => Ok(exit::OK),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|c| {
                matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}

/// Streams the stored metrics to `out`, each row with the customer's segment names: CSV with
/// a header (names joined by `;`), or a JSON array of objects (names as a list).
pub async fn export(
    store: &Store,
    format: ExportFormat,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut rows = WithSegments::new(store).await?;
    let mut n = 0u64;
    match format {
        ExportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(out);
            let mut header: Vec<&str> = METRICS_COLUMNS.to_vec();
            header.push("segments");
            w.write_record(header)?;
            while let Some((row, segments)) = rows.next().await? {
                w.serialize((&row, segments.join(";")))?;
                n += 1;
            }
            w.flush()?;
        }
        ExportFormat::Json => {
            out.write_all(b"[")?;
            while let Some((row, segments)) = rows.next().await? {
                out.write_all(if n == 0 { b"\n" } else { b",\n" })?;
                let mut value = serde_json::to_value(&row)?;
                value["segments"] = serde_json::json!(segments);
                serde_json::to_writer(&mut *out, &value)?;
                n += 1;
            }
            out.write_all(b"\n]\n")?;
        }
    }
    Ok(n)
}

type Rows<'a, T> = futures::stream::BoxStream<'a, Result<T, sqlx::Error>>;

/// The metrics rows merged with the memberships: two streams in customer order, so that
/// neither is ever held in memory.
struct WithSegments<'a> {
    rows: Rows<'a, MetricsRow>,
    members: Rows<'a, (String, String)>,
    pending: Option<(String, String)>,
}

impl<'a> WithSegments<'a> {
    async fn new(store: &'a Store) -> anyhow::Result<Self> {
        let mut members = store.memberships().boxed();
        let pending = members.try_next().await?;
        Ok(Self {
            rows: store.metrics_rows().boxed(),
            members,
            pending,
        })
    }

    async fn next(&mut self) -> anyhow::Result<Option<(MetricsRow, Vec<String>)>> {
        let Some(row) = self.rows.try_next().await? else {
            return Ok(None);
        };
        let mut segments = Vec::new();
        // Memberships of customers without metrics (no orders) are passed over.
        while let Some((customer, segment)) = self.pending.take() {
            if customer > row.customer_id {
                self.pending = Some((customer, segment));
                break;
            }
            if customer == row.customer_id {
                segments.push(segment);
            }
            self.pending = self.members.try_next().await?;
        }
        Ok(Some((row, segments)))
    }
}
