//! `rebuy db copy`: moves a shop from one database to another (SQLite to PostgreSQL, or back)
//! and shows, per table, the rows and a checksum on each side.

use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::store::{CopyRefused, Store, TableCopy};

#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Copy every table of one database into another, empty one, in one transaction, and print
    /// the rows and a checksum per table on both sides (exit 3 if any differ). Stop the daemon
    /// first: what it writes during the copy would not be in the copy.
    Copy(CopyArgs),
}

#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The database to copy: a SQLite file (or `sqlite:` URL) or a `postgres://` URL; default:
    /// the config's `database`.
    #[arg(long)]
    pub from: Option<String>,
    /// The empty database to copy into: a `postgres://` URL of an empty database, or a SQLite
    /// file that does not exist yet (created and migrated first).
    #[arg(long)]
    pub to: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

const HEADERS: &[&str] = &[
    "table",
    "rows (from)",
    "rows (to)",
    "checksum (from)",
    "checksum (to)",
    "same",
];

pub async fn run(app: &App, cmd: &DbCommand) -> anyhow::Result<u8> {
    let DbCommand::Copy(args) = cmd;
    let from = args.from.as_deref().unwrap_or(&app.config.database);
    let source = Store::open_existing(from)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database to copy (--from): {e}"))?;
    let target = Store::open(&args.to)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database to copy into (--to): {e}"))?;
    let table = args.format == OutputFormat::Table;
    let copied = source
        .copy_to(&target, |t| {
            if table {
                eprintln!("copied {}: {} rows", t.table, t.target_rows);
            }
        })
        .await?;
    source.close().await;
    target.close().await;
    let copied = match copied {
        Ok(c) => c,
        Err(refused @ CopyRefused::TargetNotEmpty(..)) => {
            eprintln!("rebuy db copy: nothing was copied: {refused}");
            return Ok(exit::USAGE);
        }
        Err(refused) => {
            eprintln!("rebuy db copy: nothing was copied: {refused}");
            return Ok(exit::INVALID);
        }
    };
    print_copy(&copied, args.format)?;
    let differ: Vec<&str> = copied
        .iter()
        .filter(|c| !c.matches())
        .map(|c| c.table.as_str())
        .collect();
    if !differ.is_empty() {
        eprintln!(
            "rebuy db copy: the copy differs from the source in {} (see above); do not switch to it",
            differ.join(", ")
        );
        return Ok(exit::FAILURE);
    }
    if table {
        let rows: u64 = copied.iter().map(|c| c.target_rows).sum();
        eprintln!(
            "rebuy db copy: {rows} rows in {} tables, every checksum the same on both sides; point `database:` at the new one and start rebuy there",
            copied.len()
        );
    }
    Ok(exit::OK)
}

fn print_copy(copied: &[TableCopy], format: OutputFormat) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = copied
        .iter()
        .map(|c| {
            vec![
                c.table.clone(),
                c.source_rows.to_string(),
                c.target_rows.to_string(),
                c.source_checksum.clone(),
                c.target_checksum.clone(),
                if c.matches() { "yes" } else { "NO" }.to_string(),
            ]
        })
        .collect();
    print_rows(format, HEADERS, &rows, &serde_json::to_value(copied)?)
}
