//! The command line: argument parsing (clap), logging setup, and the mapping of outcomes to
//! exit codes. Each command family lives in its own file; the work itself is in the library.

mod check;
mod customer;
mod db;
mod demo;
mod enrollment;
pub mod experiments;
mod import;
mod logging;
mod metrics;
mod outbox;
mod output;
mod recommend;
mod report;
mod run;
mod serve;
mod simulate;
mod status;
mod suppress;
mod token;
mod trigger;
mod user;

pub use crate::app::App;
pub use output::OutputFormat;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes: what a script can branch on.
pub mod exit {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// The input has problems: `check` found some, an import rejected rows, `run` refused an
    /// invalid scenario set, a customer or scenario was not found.
    pub const INVALID: u8 = 1;
    /// The command line itself is wrong (clap's usage errors).
    pub const USAGE: u8 = 2;
    /// Something failed at run time: the database, the file system, the mail server.
    pub const FAILURE: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "rebuy",
    version,
    about = "An automation engine for repeat purchases: YAML scenarios, a daemon, and mail that is sent once.",
    after_help = "Exit codes: 0 it worked; 1 the input has problems (check found some, rows were rejected, \
                  an unknown customer/scenario/step, run refused invalid scenarios); 2 usage error; \
                  3 a failure at run time (database, files, mail server)."
)]
pub struct Cli {
    /// Configuration file. Without it, ./rebuy.yaml is used if present, else built-in defaults.
    #[arg(long, short, global = true, env = "REBUY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Log filter, e.g. `info`, `debug`, `rebuy=debug` (RUST_LOG works too).
    #[arg(long, global = true, default_value = "info", env = "RUST_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a sample shop and run the shipped scenarios over 90 simulated days; no server needed.
    Demo(demo::DemoArgs),
    /// Validate the config, every scenario and every template they use; send nothing.
    Check(check::CheckArgs),
    /// Create the database the config names (`import` and `run` also create it on first use).
    Init,
    /// Run the daemon: tick on an interval, enroll, advance, send; stop cleanly on SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// One customer: consent, segments, orders, follow-ups and every message with its reason.
    #[command(subcommand)]
    Customer(customer::CustomerCommand),
    /// Serve only the HTTP API, webhooks and the unsubscribe page (the daemon runs elsewhere).
    Serve,
    /// The database itself: `copy` moves a shop to another database (SQLite to PostgreSQL).
    #[command(subcommand)]
    Db(db::DbCommand),
    /// API tokens: create (printed once; only its hash is stored), list, revoke.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// People who sign in to the pages under /ui: add (with a role), list, password, remove.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Import customers, orders, custom events or the product catalog from CSV or JSON Lines
    /// (upsert by the shop's ids).
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Start a manual scenario (a support follow-up) for one customer.
    Trigger(trigger::TriggerArgs),
    /// Print a step's rendered message for a customer without sending it.
    Preview(trigger::PreviewArgs),
    /// Per scenario: enrolled, active, completed, reached goal; messages queued, sent, failed.
    Status(status::StatusArgs),
    /// The suppression list: addresses that get no mail (or no marketing mail).
    #[command(subcommand)]
    Suppress(suppress::SuppressCommand),
    /// Messages by state; re-send failed or unknown ones, or cancel queued ones, by hand.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// Stop a customer's follow-up: end an enrollment by hand, with a reason.
    #[command(subcommand)]
    Enrollment(enrollment::EnrollmentCommand),
    /// Recompute every customer's metrics, RFM scores and predictions (with a progress bar).
    Refresh(metrics::RefreshArgs),
    /// Customer metrics for spreadsheets and BI tools.
    #[command(subcommand)]
    Metrics(metrics::MetricsCommand),
    /// Reports: RFM segments and cells, monthly cohorts, LTV, and did each scenario work.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Products to recommend to a customer from everyone's purchases, and why; `evaluate`
    /// scores the lists offline against what customers bought next.
    Recommend(recommend::RecommendArgs),
    /// Back-test: replay the stored orders of a period through the scenarios with a virtual
    /// clock in a separate database, send nothing, and report what they would have done.
    Simulate(simulate::SimulateArgs),
}

/// Runs the command line and returns the process's exit code.
/// mimalloc's `purge_delay` option (the v2 header's `mi_option_purge_delay`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps freed memory before giving it back to the system (0: at once).
/// Harmless when mimalloc is not the allocator (the option is then never read).
pub fn purge_freed_memory_after(millis: i64) {
    // SAFETY: setting an option is a plain store into mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, millis as std::ffi::c_long) };
}

/// `rebuy status | head -1`: when the reader of the output goes away, end as Unix tools do
/// (killed by SIGPIPE, silently) rather than with `println!`'s panic and a backtrace. SIGPIPE
/// itself stays ignored, so that a write to a closed socket (a PostgreSQL server gone) is an
/// error the command reports; only the panic of a print to a closed stdout ends the process
/// by the signal. The daemons (`run`, `serve`) keep Rust's default.
fn end_quietly_on_a_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let said = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if said.starts_with("failed printing to stdout") && said.contains("Broken pipe") {
            // SAFETY: restoring a signal's default disposition and raising it: the process
            // ends here, as `head` expects of the command before it.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
        }
        report(info);
    }));
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    if !matches!(cli.command, Command::Run(_) | Command::Serve) {
        end_quietly_on_a_closed_pipe();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", crate::diagnostic::explained(&e));
            let usage = e
                .chain()
                .any(|c| c.downcast_ref::<crate::diagnostic::UsageError>().is_some());
            ExitCode::from(if usage {
                exit::USAGE
            } else if is_input_error(&e) {
                exit::INVALID
            } else {
                exit::FAILURE
            })
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    if let Command::Demo(args) = &cli.command {
        logging::init_logging(
            cli.log_format,
            &cli.log_level,
            crate::config::LogFormat::Text,
            true,
        );
        return demo::run(args).await;
    }
    let app = match App::load(cli.config.as_deref()) {
        Ok(app) => app,
        Err(diags) => {
            logging::init_logging(
                cli.log_format,
                &cli.log_level,
                crate::config::LogFormat::Text,
                false,
            );
            match &cli.command {
                Command::Check(args) if args.json => check::print_json(&diags, args)?,
                _ => diags.iter().for_each(|d| eprintln!("{d}")),
            }
            eprintln!(
                "the configuration has {} problem(s); nothing was done",
                diags.len()
            );
            return Ok(exit::INVALID);
        }
    };
    let quiet = !matches!(cli.command, Command::Run(_) | Command::Serve);
    logging::init_logging(cli.log_format, &cli.log_level, app.config.log_format, quiet);
    match cli.command {
        Command::Demo(_) => unreachable!("handled above"),
        Command::Check(args) => check::run(&app, &args).await,
        Command::Init => {
            let existed = std::path::Path::new(&app.config.database).exists();
            app.store_or_create().await?.close().await;
            let verb = if existed {
                "is ready (it existed)"
            } else {
                "was created"
            };
            println!(
                "the database {} {verb}",
                crate::store::redacted(&app.config.database)
            );
            Ok(exit::OK)
        }
        Command::Run(args) => run::run(&app, &args).await,
        Command::Serve => serve::run(&app).await,
        Command::Customer(cmd) => customer::run(&app, cmd).await,
        Command::Token(cmd) => token::run(&app, cmd).await,
        Command::Db(cmd) => db::run(&app, &cmd).await,
        Command::User(cmd) => user::run(&app, cmd).await,
        Command::Import(cmd) => import::run(&app, cmd).await,
        Command::Trigger(args) => trigger::trigger(&app, &args).await,
        Command::Preview(args) => trigger::preview(&app, &args).await,
        Command::Status(args) => status::run(&app, &args).await,
        Command::Suppress(cmd) => suppress::run(&app, cmd).await,
        Command::Outbox(cmd) => outbox::run(&app, cmd).await,
        Command::Enrollment(cmd) => enrollment::run(&app, cmd).await,
        Command::Refresh(args) => metrics::refresh_command(&app, &args).await,
        Command::Metrics(cmd) => metrics::run(&app, cmd).await,
        Command::Report(cmd) => report::run(&app, cmd).await,
        Command::Simulate(args) => simulate::run(&app, &args).await,
        Command::Recommend(args) => recommend::run(&app, &args).await,
    }
}

/// Whether an error is about what the user asked for (exit 1) rather than a failure (exit 3).
fn is_input_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::engine::InputError>().is_some()
            || matches!(
                c.downcast_ref::<crate::store::StoreError>(),
                Some(
                    crate::store::StoreError::NotFound(_)
                        | crate::store::StoreError::NoCustomer { .. }
                        | crate::store::StoreError::Missing(_)
                        | crate::store::StoreError::NotSqlite(_)
                        | crate::store::StoreError::BadUrl(_)
                )
            )
    })
}
