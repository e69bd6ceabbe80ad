//! `rebuy token create|list|revoke`: bearer tokens for the HTTP API.

use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::clock::{to_millis, Clock, SystemClock};
use crate::http::{new_token, Scope};

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it once; only its hash is stored, so keep it somewhere safe.
    Create {
        /// What it may do: ingest (post customers, orders, events), support (customers,
        /// follow-ups, cancelling messages; and read), read (status, scenarios, reports), admin (all).
        #[arg(long, value_enum)]
        scope: Scope,
        /// A name to tell it by (who uses it: "shopify", "zendesk"); unique.
        #[arg(long)]
        name: String,
    },
    /// The tokens: name, scope, when made, whether revoked (never the token itself).
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Revoke a token by name: requests with it get 401 from now on.
    Revoke { name: String },
}

pub async fn run(app: &App, cmd: TokenCommand) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let now = to_millis(SystemClock.now());
    let code = match cmd {
        TokenCommand::Create { scope, name } => {
            if name.trim().is_empty() {
                eprintln!("error: --name must not be empty");
                return Ok(exit::INVALID);
            }
            let (token, hash) = new_token();
            match store
                .insert_token(name.trim(), scope.as_str(), &hash, now)
                .await
            {
                Ok(_) => {
                    println!("{token}");
                    eprintln!("token '{name}' ({}) created; it is shown only now. Send it as `Authorization: Bearer <token>`.", scope.as_str());
                    exit::OK
                }
                Err(e) if e.to_string().contains("UNIQUE") => {
                    eprintln!("error: a token named '{name}' exists already; pick another name, or `rebuy token revoke {name}` and make a new one under a new name");
                    exit::INVALID
                }
                Err(e) => return Err(e.into()),
            }
        }
        TokenCommand::List { format } => {
            let tokens = store.tokens().await?;
            let zone = app.resolved.default_timezone;
            let when = |ms: i64| super::output::local_minutes(ms, zone);
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.scope.clone(),
                        when(t.created_at),
                        t.revoked_at.map(when).unwrap_or_default(),
                    ]
                })
                .collect();
            print_rows(
                format,
                &["name", "scope", "created", "revoked"],
                &rows,
                &serde_json::to_value(&tokens)?,
            )?;
            exit::OK
        }
        TokenCommand::Revoke { name } => {
            if store.revoke_token(&name, now).await? {
                eprintln!("token '{name}' revoked");
                exit::OK
            } else {
                eprintln!("error: no live token named '{name}'; `rebuy token list` shows them");
                exit::INVALID
            }
        }
    };
    store.close().await;
    Ok(code)
}
