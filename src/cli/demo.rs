//! `rebuy demo`.

use super::exit;
use super::output::OutputFormat;
use crate::clock::{to_millis, Clock as _};
use crate::demo::{prepare, simulate, DemoReport};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The folder to run in: it gets rebuy-demo.db, outbox/ and, if missing, scenarios/ and templates/.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// How many customers to generate.
    #[arg(long, default_value_t = 3000)]
    pub customers: usize,
    /// How many days to simulate.
    #[arg(long, default_value_t = 90)]
    pub days: i64,
    /// Seed of the generator; the same seed gives the same shop.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Format of the status table.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    std::fs::create_dir_all(&args.dir)?;
    let (app, store, mut daemon, shop, clock) =
        prepare(&args.dir, args.customers, args.days, args.seed).await?;
    eprintln!(
        "generated {} customers and {} orders; simulating {} days from {}",
        shop.customers.len(),
        shop.orders.len(),
        args.days,
        clock_start(&clock, app.resolved.default_timezone)
    );
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(args.days as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("day {pos}/{len} [{bar:30}] {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let mails = simulate(&mut daemon, &store, &shop, &clock, args.days, |d| {
        bar.set_position(d as u64)
    })
    .await?;
    // The demo's daemon has stopped: its row goes, as a stopped `rebuy run`'s does.
    daemon.deliverer.leave().await;
    bar.finish_and_clear();
    super::status::print_status(&store, args.format, app.resolved.default_timezone).await?;
    if args.format == OutputFormat::Table {
        use crate::clock::Clock;
        println!(
            "{}",
            super::status::flow_line(
                &store.flow_status().await?,
                clock.now(),
                app.resolved.default_timezone
            )
        );
    }
    // Did the scenarios work? Against their 10% holdouts (the generated customers do not read
    // mail, so expect "No clear effect yet" here).
    let scenarios = daemon.engine.scenarios().to_vec();
    let window = app.resolved.attribution_window;
    let counted = crate::store::Period::closed(i64::MIN, to_millis(clock.now()));
    let results =
        crate::reports::scenario_report(&store, &scenarios, counted, None, window).await?;
    let names = super::experiments::scenario_names(&scenarios);
    if args.format == OutputFormat::Table {
        for r in &results {
            println!(
                "{}: {}",
                super::experiments::label(&names, &r.scenario),
                r.verdict
            );
        }
        if let Some(line) = super::experiments::open_line(&results, &names) {
            println!("{line}");
        }
        for line in crate::experiment::report::recommended_lines(&results, &names) {
            println!("{line}");
        }
    }
    let html = args.dir.join("report.html");
    super::experiments::write_html(&app, &store, &results, counted, "", None, &html, &names)
        .await?;
    let report = DemoReport {
        customers: shop.customers.len(),
        orders: shop.orders.len(),
        mails_written: mails,
        days: args.days,
    };
    eprintln!(
        "{} mails written to {} as .eml in {:.1}s; database: {}",
        report.mails_written,
        args.dir.join("outbox").display(),
        started.elapsed().as_secs_f64(),
        args.dir.join("rebuy-demo.db").display()
    );
    let digests = store.team_mail(i64::MAX).await?.len();
    eprintln!(
        "{digests} weekly LTV-target digests mailed to the team as {}",
        args.dir.join("outbox").join("team-*.eml").display()
    );
    store.close().await;
    if args.format == OutputFormat::Table {
        eprintln!("{}", next_steps(&args.dir));
    }
    Ok(exit::OK)
}

/// What to try after the demo, with commands that point at the demo's own database.
fn next_steps(dir: &std::path::Path) -> String {
    let db = dir.join("rebuy-demo.db");
    let env = format!("REBUY_DATABASE={}", db.display());
    let run = format!("{env} {}", program());
    format!(
        "\nnext, in this folder:\n\
         \x20 {run} status                        # this table again, from the demo's database\n\
         \x20 {run} outbox list --limit 10        # the last messages, with their state\n\
         \x20 {run} report scenarios              # did each scenario raise the repeat rate?\n\
         \x20 {run} report rfm                    # customers by RFM segment\n\
         \x20 open {}                            # the same report with charts\n\
         \x20 {run} check                         # validate scenarios/ and templates/ after you edit them",
        dir.join("report.html").display()
    )
}

/// How this program was started, for commands to copy: `cargo run --release --` under cargo
/// (which sets `CARGO_MANIFEST_DIR` for what it runs), else the path it was called by.
fn program() -> String {
    if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        return "cargo run --release --".into();
    }
    std::env::args()
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "rebuy".into())
}

/// The simulated start, in the demo shop's zone.
fn clock_start(clock: &crate::clock::ManualClock, zone: chrono_tz::Tz) -> String {
    clock
        .now()
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}
