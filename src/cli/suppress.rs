//! `rebuy suppress add|remove|list|import`: the suppression list by hand.

use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::clock::{to_millis, Clock, SystemClock};
use crate::domain::Email;
use crate::store::SuppressionKind;
use anyhow::Context as _;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum SuppressCommand {
    /// Stop mail to an address. `manual` (the default) and `bounce` stop all mail;
    /// `unsubscribe` stops marketing mail only.
    Add {
        email: String,
        #[arg(long, value_enum, default_value = "manual")]
        kind: SuppressionKind,
        /// Why, for the record (shown by `list`).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Let an address get mail again.
    Remove { email: String },
    /// Every suppressed address with its kind, reason and date.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Add every address of a file: CSV with an `email` column (and optionally `kind` and
    /// `reason`), or one address per line.
    Import {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "manual")]
        kind: SuppressionKind,
    },
}

pub async fn run(app: &App, cmd: SuppressCommand) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let now = to_millis(SystemClock.now());
    let code = match cmd {
        SuppressCommand::Add {
            email,
            kind,
            reason,
        } => {
            let email = match Email::parse(&email) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(exit::INVALID);
                }
            };
            let email = email.as_str().to_lowercase();
            if store.suppress(&email, kind, &reason, None, now).await? {
                println!("suppressed {email} ({})", kind.as_str());
            } else {
                println!("{email} was already suppressed; nothing changed");
            }
            exit::OK
        }
        SuppressCommand::Remove { email } => {
            // As on the customer page: the address's entry, and the wishes its customer recorded
            // under addresses they had before.
            let removed = match store.find_customer(&email).await {
                Ok(c) if c.email.eq_ignore_ascii_case(email.trim()) => {
                    !store.unsuppress_person(&email, &c.id).await?.is_empty()
                }
                _ => store.unsuppress(&email).await?,
            };
            if removed {
                println!("removed {email}; it gets mail again");
                exit::OK
            } else {
                eprintln!(
                    "error: {email} is not on the suppression list (see `rebuy suppress list`)"
                );
                exit::INVALID
            }
        }
        SuppressCommand::List { format } => {
            let list = store.suppressions().await?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.email.clone(),
                        s.kind.clone(),
                        s.reason.clone(),
                        s.customer_id.clone().unwrap_or_default(),
                        super::output::local_minutes(s.created_at, app.resolved.default_timezone),
                    ]
                })
                .collect();
            let headers = ["email", "kind", "reason", "customer", "since"];
            print_rows(format, &headers, &rows, &serde_json::to_value(&list)?)?;
            exit::OK
        }
        SuppressCommand::Import { file, kind } => import(&store, &file, kind, now).await?,
    };
    store.close().await;
    Ok(code)
}

/// Reads addresses from `file`; a bad line is reported with its number and skipped.
async fn import(
    store: &crate::store::Store,
    file: &std::path::Path,
    default_kind: SuppressionKind,
    now: i64,
) -> anyhow::Result<u8> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut records = reader.records().peekable();
    // A first row naming an `email` column is a header; without one, the first field of each
    // row is the address.
    let header: Option<Vec<String>> = match records.peek() {
        Some(Ok(r)) if r.iter().any(|c| c.eq_ignore_ascii_case("email")) => {
            Some(r.iter().map(str::to_ascii_lowercase).collect())
        }
        _ => None,
    };
    if header.is_some() {
        records.next();
    }
    let column = |row: &csv::StringRecord, name: &str| -> Option<String> {
        let i = match &header {
            Some(h) => h.iter().position(|c| c == name)?,
            None if name == "email" => 0,
            None => return None,
        };
        row.get(i).filter(|v| !v.is_empty()).map(str::to_string)
    };
    let (mut added, mut bad) = (0, 0);
    for record in records {
        let row = record.with_context(|| format!("cannot read {}", file.display()))?;
        let line = row.position().map_or(0, |p| p.line());
        let Some(raw) = column(&row, "email") else {
            continue;
        };
        let kind = match column(&row, "kind") {
            Some(k) => match SuppressionKind::parse(&k) {
                Some(k) => k,
                None => {
                    eprintln!(
                        "{}:{line}: unknown kind '{k}' (unsubscribe, bounce or manual)",
                        file.display()
                    );
                    bad += 1;
                    continue;
                }
            },
            None => default_kind,
        };
        let email = match Email::parse(&raw) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{}:{line}: {e}", file.display());
                bad += 1;
                continue;
            }
        };
        let reason = column(&row, "reason").unwrap_or_default();
        if store
            .suppress(email.as_str(), kind, &reason, None, now)
            .await?
        {
            added += 1;
        }
    }
    println!("{added} addresses suppressed, {bad} lines rejected");
    Ok(if bad == 0 { exit::OK } else { exit::INVALID })
}
