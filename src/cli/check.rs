//! `rebuy check`: every problem in the config, scenarios and templates, as `path:line:col`.

use super::{exit, App};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print the problems as JSON objects instead of lines.
    #[arg(long)]
    pub json: bool,
}

pub fn run(app: &App, args: &CheckArgs) -> anyhow::Result<u8> {
    let report = app.check();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.diagnostics)?);
    } else {
        for d in &report.diagnostics {
            println!("{d}");
        }
    }
    if report.diagnostics.is_empty() {
        eprintln!(
            "ok: {} scenario(s) and {} segment(s) in {} file(s), and their templates, are valid",
            report.scenarios.len(),
            report.segments.len(),
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
