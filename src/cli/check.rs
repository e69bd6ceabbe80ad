//! `rebuy check`: every problem in the config, scenarios and templates, as `path:line:col`.

use super::{exit, App};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print the problems as JSON objects instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Also say what these scenarios would do to the enrollments in the database: those
    /// waiting on a step this version removes, or belonging to a scenario no longer there.
    #[arg(long)]
    pub against_db: bool,
}

/// The problems as `--json` prints them; with `--against-db` beside no enrollments (a config
/// that does not load is not compared with the database).
pub fn print_json(
    problems: &[crate::diagnostic::Diagnostic],
    args: &CheckArgs,
) -> anyhow::Result<()> {
    let json = match args.against_db {
        true => serde_json::json!({ "problems": problems, "enrollments": [] }),
        false => serde_json::to_value(problems)?,
    };
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

pub async fn run(app: &App, args: &CheckArgs) -> anyhow::Result<u8> {
    let report = app.check();
    let effects = if args.against_db {
        let store = app.store().await?;
        let waiting = store.waiting_steps().await?;
        store.close().await;
        crate::scenario::edits::effects(&waiting, &report.scenarios)
    } else {
        Vec::new()
    };
    if args.json && args.against_db {
        let both = serde_json::json!({ "problems": report.diagnostics, "enrollments": effects });
        println!("{}", serde_json::to_string_pretty(&both)?);
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&report.diagnostics)?);
    } else {
        for d in &report.diagnostics {
            println!("{d}");
        }
        for e in &effects {
            println!("against the database: {}", e.said);
        }
    }
    if args.against_db && effects.is_empty() {
        eprintln!(
            "against the database: every active enrollment waits on a step that is still there"
        );
    }
    if report.diagnostics.is_empty() {
        eprintln!(
            "ok: {} scenario(s), {} segment(s) and {} target(s) in {} file(s), and their templates, are valid",
            report.scenarios.len(),
            report.segments.len(),
            report.targets.len(),
            report.files
        );
        Ok(exit::OK)
    } else {
        eprintln!(
            "{} problem(s) found; fix them and run `rebuy check` again",
            report.diagnostics.len()
        );
        Ok(exit::INVALID)
    }
}
