//! `rebuy status`: is mail flowing, per scenario.

use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::store::{ScenarioStatus, Store};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

pub const HEADERS: &[&str] = &[
    "scenario",
    "enrolled",
    "active",
    "completed",
    "reached goal",
    "queued",
    "sent",
    "failed",
    "skipped",
    "unknown",
];

pub async fn run(app: &App, args: &StatusArgs) -> anyhow::Result<u8> {
    let store = app.store().await?;
    print_status(&store, args.format).await?;
    store.close().await;
    Ok(exit::OK)
}

pub async fn print_status(store: &Store, format: OutputFormat) -> anyhow::Result<()> {
    let status: Vec<ScenarioStatus> = store.scenario_status().await?.into_values().collect();
    let rows: Vec<Vec<String>> = status
        .iter()
        .map(|s| {
            vec![
                s.scenario.clone(),
                s.enrolled.to_string(),
                s.active.to_string(),
                s.completed.to_string(),
                s.reached_goal.to_string(),
                s.queued.to_string(),
                s.sent.to_string(),
                s.failed.to_string(),
                s.skipped.to_string(),
                s.unknown.to_string(),
            ]
        })
        .collect();
    print_rows(format, HEADERS, &rows, &serde_json::to_value(&status)?)
}
