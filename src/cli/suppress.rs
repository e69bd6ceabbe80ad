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
            if store.unsuppress(&email).await? {
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
                        crate::clock::from_millis(s.created_at).to_rfc3339(),
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
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut lines = text.lines().enumerate().peekable();
    let header: Option<Vec<String>> = lines
        .peek()
        .filter(|(_, l)| {
            l.to_ascii_lowercase()
                .split(',')
                .any(|c| c.trim() == "email")
        })
        .map(|(_, l)| {
            l.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect()
        });
    if header.is_some() {
        lines.next();
    }
    let column = |row: &[&str], name: &str| -> Option<String> {
        let i = header.as_ref()?.iter().position(|h| h == name)?;
        row.get(i)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (mut added, mut bad) = (0, 0);
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let row: Vec<&str> = line.split(',').collect();
        let raw = column(&row, "email").unwrap_or_else(|| line.trim().to_string());
        let kind = match column(&row, "kind") {
            Some(k) => match SuppressionKind::parse(&k) {
                Some(k) => k,
                None => {
                    eprintln!(
                        "{}:{}: unknown kind '{k}' (unsubscribe, bounce or manual)",
                        file.display(),
                        i + 1
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
                eprintln!("{}:{}: {e}", file.display(), i + 1);
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
