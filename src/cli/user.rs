//! `rebuy user add|list|password|remove`: the people who sign in to the pages under `/ui`.

use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::clock::{to_millis, Clock, SystemClock};
use crate::store::UserRow;
use crate::users::{check_name, hash_password, Role};
use std::io::{BufRead, IsTerminal};

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user. The password is asked for (twice, not echoed) on a terminal, or read as
    /// one line from standard input (`echo "$PW" | rebuy user add aya --role support`).
    Add {
        name: String,
        /// support (customers, follow-ups, suppressions), marketer (scenarios, uplift,
        /// segments, previews) or admin (everything, the audit log, operations).
        #[arg(long, value_enum)]
        role: Role,
        /// The pages' language for this user (en or ja); default: the browser's.
        #[arg(long, value_parser = ["en", "ja"])]
        lang: Option<String>,
        /// The user's time zone for dates on the pages (IANA, e.g. Asia/Tokyo); default: the shop's.
        #[arg(long)]
        timezone: Option<String>,
    },
    /// The users: name, role, language, time zone, when added (never a password).
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Set a new password (read as for `add`); the user is signed out everywhere.
    Password { name: String },
    /// Remove a user; their sessions end at once. The audit log keeps their name.
    Remove { name: String },
}

pub async fn run(app: &App, cmd: UserCommand) -> anyhow::Result<u8> {
    let store = app.store_or_create().await?;
    let code = match cmd {
        UserCommand::Add {
            name,
            role,
            lang,
            timezone,
        } => {
            if let Err(e) = check_name(&name) {
                eprintln!("error: '{name}': {e}");
                return Ok(exit::INVALID);
            }
            if let Some(z) = timezone.as_deref() {
                if z.parse::<chrono_tz::Tz>().is_err() {
                    eprintln!("error: --timezone '{z}' is not an IANA time zone (e.g. Asia/Tokyo, Europe/Berlin)");
                    return Ok(exit::INVALID);
                }
            }
            let Some(hash) = password_hash()? else {
                return Ok(exit::INVALID);
            };
            let user = UserRow {
                name: name.clone(),
                role: role.as_str().to_string(),
                password_hash: hash,
                lang,
                timezone,
                created_at: to_millis(SystemClock.now()),
            };
            if store.add_user(&user).await? {
                eprintln!("user '{name}' ({}) added; they sign in at /ui on the daemon's http.listen address", role.as_str());
                exit::OK
            } else {
                eprintln!("error: a user named '{name}' exists already; `rebuy user password {name}` sets a new password");
                exit::INVALID
            }
        }
        UserCommand::List { format } => {
            let users = store.users().await?;
            let zone = app.resolved.default_timezone;
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.name.clone(),
                        u.role.clone(),
                        u.lang.clone().unwrap_or_else(|| "browser".into()),
                        u.timezone.clone().unwrap_or_else(|| "shop".into()),
                        super::output::local_minutes(u.created_at, zone),
                    ]
                })
                .collect();
            print_rows(
                format,
                &["name", "role", "language", "time zone", "added"],
                &rows,
                &serde_json::to_value(&users)?,
            )?;
            exit::OK
        }
        UserCommand::Password { name } => {
            if store.user(&name).await?.is_none() {
                eprintln!("error: no user '{name}'; `rebuy user list` shows them");
                return Ok(exit::INVALID);
            }
            let Some(hash) = password_hash()? else {
                return Ok(exit::INVALID);
            };
            store.set_password(&name, &hash).await?;
            eprintln!("the password of '{name}' is changed; their sessions have ended");
            exit::OK
        }
        UserCommand::Remove { name } => {
            if store.remove_user(&name).await? {
                eprintln!("user '{name}' removed");
                exit::OK
            } else {
                eprintln!("error: no user '{name}'; `rebuy user list` shows them");
                exit::INVALID
            }
        }
    };
    store.close().await;
    Ok(code)
}

/// Reads the password (asked twice on a terminal, else one line of standard input) and
/// hashes it; None (with the reason printed) when it is unfit.
fn password_hash() -> anyhow::Result<Option<String>> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ")?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            eprintln!("error: the two passwords differ; nothing was changed");
            return Ok(None);
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    match hash_password(&password) {
        Ok(h) => Ok(Some(h)),
        Err(e) => {
            eprintln!("error: {e}; nothing was changed");
            Ok(None)
        }
    }
}
