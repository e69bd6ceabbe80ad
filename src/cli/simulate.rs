//! `rebuy simulate`: a back-test of the scenarios on the stored order history, with a virtual
//! clock, in a database of its own; then what each scenario would have sent, and the scenario
//! report on the simulated sends.

use super::experiments::{print_report, write_html};
use super::metrics::parse_date;
use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::clock::{from_millis, start_of_day, to_millis};
use crate::reports::scenario_report;
use crate::simulate::{prepare, simulate};
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;

/// What a back-test's comparison can say: printed before its report, and on its HTML page.
const BACKTEST_NOTE: &str = "A back-test replays orders the mails never influenced: the comparison below shows how the groups differ by chance, not what the mails would do. Measure that on live mail.";

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// First day of the period (YYYY-MM-DD, the shop's zone).
    #[arg(long, value_parser = parse_date)]
    pub from: NaiveDate,
    /// Last day of the period, included.
    #[arg(long, value_parser = parse_date)]
    pub to: NaiveDate,
    /// Only this scenario.
    #[arg(long)]
    pub scenario: Option<String>,
    /// The simulation's database (made anew); default: beside the shop's, `<name>.simulation.db`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Virtual time between ticks, like the daemon's tick_interval (e.g. 1h, 15m).
    #[arg(long, default_value = "1h")]
    pub step: String,
    /// Keep the rendered body of every simulated message (by default only about a thousand
    /// customers' mail keeps it: see docs/experiments.md).
    #[arg(long)]
    pub keep_bodies: bool,
    /// Also write the scenario report of the simulated sends as HTML.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Do not show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the progress as `progress DONE TOTAL` lines on standard error, one per percent
    /// (for the back-tests page, which runs this command and reads them).
    #[arg(long, hide = true)]
    pub progress_lines: bool,
}

/// The shop database's file, from `database:` (a path, taken as it is, or a `sqlite://` URL,
/// whose options are dropped).
pub fn database_file(database: &str) -> String {
    match database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
    {
        Some(url) => url.split('?').next().unwrap_or(url).to_string(),
        None => database.to_string(),
    }
}

/// What would make a back-test fail or harm a file, checked before the last back-test's
/// database is replaced: `--out` naming a file that is not a back-test's, a folder for
/// `--html` that does not exist, scenarios with problems, an unknown `--scenario`.
fn refused_before_start(app: &App, args: &SimulateArgs, out: &std::path::Path) -> Option<u8> {
    if out.exists() && !crate::store::is_simulation_file(out) {
        eprintln!(
            "error: --out {} exists and is not a back-test's database; rebuy simulate replaces \
             only its own: give a new file, or remove that one if it is not needed",
            out.display()
        );
        return Some(exit::USAGE);
    }
    let folder = |p: &std::path::Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(std::path::Path::to_path_buf)
    };
    if let Some(dir) = args.html.as_deref().and_then(folder) {
        if !dir.is_dir() {
            eprintln!(
                "error: --html: the folder {} does not exist; create it or give another path",
                dir.display()
            );
            return Some(exit::USAGE);
        }
    }
    let report = app.check();
    if !report.diagnostics.is_empty() {
        for d in &report.diagnostics {
            eprintln!("{d}");
        }
        eprintln!("the scenarios have problems; fix them (see `rebuy check`) and simulate again");
        return Some(exit::INVALID);
    }
    let id = args.scenario.as_deref()?;
    let ids: Vec<&str> = report.scenarios.iter().map(|s| s.id.as_str()).collect();
    if ids.contains(&id) {
        return None;
    }
    let hint = crate::diagnostic::did_you_mean(id, &ids)
        .map(|m| format!(" (did you mean '{m}'?)"))
        .unwrap_or_default();
    eprintln!(
        "error: no scenario has the id '{id}'{hint}; loaded: {}",
        ids.join(", ")
    );
    Some(exit::INVALID)
}

/// What a back-test cannot show, said before it runs: it replays orders, so scenarios started
/// by a person or by a custom event enroll nobody in it.
fn not_replayed(scenarios: &[crate::scenario::Scenario]) -> Vec<String> {
    use crate::scenario::Trigger;
    scenarios
        .iter()
        .filter(|s| s.enabled)
        .filter_map(|s| match &s.trigger {
            Trigger::Event(name) => Some(format!(
                "note: scenario '{}' starts on the event '{name}': a back-test replays orders, not \
                 events, so it enrolls nobody here",
                s.id
            )),
            Trigger::Manual => Some(format!(
                "note: scenario '{}' is started by hand (rebuy trigger): a back-test enrolls nobody in it",
                s.id
            )),
            _ => None,
        })
        .collect()
}

fn local_midnight(d: NaiveDate, zone: chrono_tz::Tz) -> DateTime<Utc> {
    from_millis(start_of_day(d, zone))
}

pub async fn run(app: &App, args: &SimulateArgs) -> anyhow::Result<u8> {
    // A back-test renders every message and drops most bodies at once: given back to the
    // system at once (the binary's default), the same pages were faulted in again and again
    // (page faults and TLB shootdowns were 7% of a year's back-test). mimalloc's usual delay,
    // as `rebuy serve` has; measured in BENCHMARKS.md.
    super::purge_freed_memory_after(100);
    let zone = app.resolved.default_timezone;
    if args.to < args.from {
        eprintln!("error: --to {} is before --from {}", args.to, args.from);
        return Ok(exit::USAGE);
    }
    let step = match crate::domain::parse_duration(&args.step) {
        Ok(d) if d > chrono::Duration::zero() => d,
        Ok(_) => {
            eprintln!("error: --step must be longer than 0");
            return Ok(exit::USAGE);
        }
        Err(e) => {
            eprintln!("error: --step: {e}");
            return Ok(exit::USAGE);
        }
    };
    // A PostgreSQL shop is copied into a SQLite file first (`simulate::prepare`).
    let source = if crate::store::is_postgres(&app.config.database) {
        app.config.database.clone()
    } else {
        let file = database_file(&app.config.database);
        if !std::path::Path::new(&file).exists() {
            eprintln!(
                "error: the shop's database {file} does not exist: import customers and orders first"
            );
            return Ok(exit::USAGE);
        }
        file
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| app.local_file("simulation.db"));
    let shop_file = PathBuf::from(&source).canonicalize().ok();
    if shop_file.is_some() && out.canonicalize().ok() == shop_file {
        eprintln!("error: --out must not be the shop's own database");
        return Ok(exit::USAGE);
    }
    // Everything that can be wrong is said before the last back-test's database is replaced.
    if let Some(code) = refused_before_start(app, args, &out) {
        return Ok(code);
    }
    let from = local_midnight(args.from, zone);
    let to = local_midnight(args.to.succ_opt().unwrap_or(args.to), zone)
        - chrono::Duration::milliseconds(1);
    let (store, copied) = prepare(&out, &source, (from, to), args.keep_bodies)
        .await
        .with_context(|| format!("cannot prepare the simulation database {}", out.display()))?;
    let engine = match app.engine_only(&store, args.scenario.as_deref()).await? {
        Ok(e) => e.for_back_test(),
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "the scenarios have problems; fix them (see `rebuy check`) and simulate again"
            );
            return Ok(exit::INVALID);
        }
    };
    for line in not_replayed(engine.scenarios()) {
        eprintln!("{line}");
    }
    let bar = if !args.no_progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(ProgressStyle::with_template(
            "simulating {wide_bar} {pos}/{len} ticks ({eta})",
        )?);
        bar
    } else {
        ProgressBar::hidden()
    };
    let last_percent = std::cell::Cell::new(None);
    let run = simulate(&engine, copied, from, to, step, zone, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        let percent = (done * 100).checked_div(total);
        if args.progress_lines && percent != last_percent.get() {
            last_percent.set(percent);
            eprintln!("progress {done} {total}");
        }
    })
    .await?;
    bar.finish_and_clear();
    eprintln!(
        "simulated {} to {} in {} ticks ({:.1}s): {} customers, {} orders before, {} during; {} enrollments, {} messages; database: {}",
        args.from,
        args.to,
        run.ticks,
        run.secs,
        run.source.customers,
        run.source.history_orders,
        run.source.period_orders,
        run.enrolled,
        run.simulated,
        out.display()
    );
    let sends = match run.sends.clone() {
        Some(sends) => sends,
        None => store.simulated_sends().await?,
    };
    let headers = ["scenario", "messages", "customers", "first", "last"];
    let time = |ms: i64| {
        from_millis(ms)
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    };
    let rows: Vec<Vec<String>> = sends
        .iter()
        .map(|(s, n, c, first, last)| {
            vec![
                s.clone(),
                n.to_string(),
                c.to_string(),
                time(*first),
                time(*last),
            ]
        })
        .collect();
    let counted = crate::store::Period::closed(to_millis(from), to_millis(to));
    let report = scenario_report(
        &store,
        engine.scenarios(),
        counted,
        None,
        app.resolved.attribution_window,
    )
    .await?;
    if let Some(path) = &args.html {
        let period = format!(" (simulated {} to {})", args.from, args.to);
        let names = super::experiments::scenario_names(engine.scenarios());
        let note = Some(BACKTEST_NOTE);
        write_html(app, &store, &report, counted, &period, note, path, &names).await?;
    }
    if args.format == OutputFormat::Json {
        let json = serde_json::json!({
            "run": run,
            "sends": sends.iter().map(|(s, n, c, first, last)| serde_json::json!({
                "scenario": s, "messages": n, "customers": c,
                "first": super::output::local_rfc3339(*first, zone), "last": super::output::local_rfc3339(*last, zone),
            })).collect::<Vec<_>>(),
            "report": report,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        if args.format == OutputFormat::Table {
            println!("What each scenario would have sent");
        }
        print_rows(args.format, &headers, &rows, &serde_json::Value::Null)?;
        if args.format == OutputFormat::Table {
            println!("{BACKTEST_NOTE}");
            let names = super::experiments::scenario_names(engine.scenarios());
            print_report(&report, OutputFormat::Table, &app.currency(), &names)?;
            if let Some(line) = super::experiments::open_line(&report, &names) {
                println!("{line}");
            }
        }
    }
    store.close().await;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::database_file;

    #[test]
    fn the_shop_file_is_a_path_as_it_is_or_a_urls_path_without_its_options() {
        assert_eq!(database_file("shop/rebuy.db"), "shop/rebuy.db");
        assert_eq!(database_file("shop #1?a/rebuy.db"), "shop #1?a/rebuy.db");
        assert_eq!(
            database_file("sqlite://shop/rebuy.db?mode=rwc"),
            "shop/rebuy.db"
        );
        assert_eq!(database_file("sqlite:rebuy.db"), "rebuy.db");
    }
}
