//! `rebuy outbox list|retry|cancel`: look at messages and act on them by hand.

use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::clock::{to_millis, Clock, SystemClock};
use crate::store::{EndWhich, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    Queued,
    Sent,
    Failed,
    Unknown,
    Skipped,
    Suppressed,
    Cancelled,
    Expired,
}

#[derive(Debug, clap::Subcommand)]
pub enum OutboxCommand {
    /// Messages, newest first: id, scenario, step, recipient, status, attempts, last error.
    List {
        /// Only messages in this state (`queued` includes those being sent).
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
        /// Only messages of this scenario.
        #[arg(long)]
        scenario: Option<String>,
        /// Only messages to this customer (id or e-mail address).
        #[arg(long)]
        customer: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Send failed or unknown messages again, deliberately (attempts start over). An
    /// `unknown` message may already have been delivered once: check before re-sending it.
    Retry {
        /// Outbox ids (see `rebuy outbox list`).
        #[arg(required_unless_present = "all_failed")]
        ids: Vec<i64>,
        /// Every failed message (not the unknown ones: those need a look each).
        #[arg(long, conflicts_with = "ids")]
        all_failed: bool,
    },
    /// Cancel queued messages so they are never sent: one by id, or all of a scenario.
    /// Their enrollments go on (the next step still goes out) unless `--end-enrollment`, or
    /// you answer yes when asked on a terminal.
    Cancel {
        #[arg(required_unless_present = "scenario")]
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        scenario: Option<String>,
        /// Also end the enrollments of the cancelled messages, so no further step goes out.
        #[arg(long)]
        end_enrollment: bool,
        /// Never ask; keep the enrollments running unless --end-enrollment.
        #[arg(long)]
        no_input: bool,
    },
}

pub async fn run(app: &App, cmd: OutboxCommand) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let now = to_millis(SystemClock.now());
    let code = match cmd {
        OutboxCommand::List {
            status,
            scenario,
            customer,
            limit,
            format,
        } => {
            let status = status.map(|s| format!("{s:?}").to_lowercase());
            // Times in the shop's zone, as everywhere in the CLI.
            let zone = app.resolved.default_timezone;
            // A customer is named by id or address; an unknown one is an error, not an empty list.
            let customer = match customer {
                Some(c) => Some(store.find_customer(&c).await?.id),
                None => None,
            };
            let rows = store
                .outbox_list(
                    status.as_deref(),
                    scenario.as_deref(),
                    customer.as_deref(),
                    limit,
                )
                .await?;
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.scenario_id.clone(),
                        r.step_id.clone(),
                        r.to_email.clone(),
                        r.status.clone(),
                        r.attempts.to_string(),
                        super::output::local_minutes(r.due_at, zone),
                        r.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let json: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "enrollment": r.enrollment_id, "scenario": r.scenario_id, "step": r.step_id,
                        "customer": r.customer_id, "to": r.to_email, "status": r.status,
                        "attempts": r.attempts, "due_at": super::output::local_rfc3339(r.due_at, zone),
                        "last_error": r.last_error,
                    })
                })
                .collect();
            let headers = [
                "id",
                "scenario",
                "step",
                "to",
                "status",
                "attempts",
                "due",
                "last error",
            ];
            print_rows(format, &headers, &table, &serde_json::Value::Array(json))?;
            exit::OK
        }
        OutboxCommand::Retry { ids, all_failed } => retry(app, &store, &ids, all_failed).await?,
        OutboxCommand::Cancel {
            id,
            scenario,
            end_enrollment,
            no_input,
        } => {
            let by = crate::reasons::Reason::CancelledBy {
                by: "rebuy outbox cancel".into(),
            };
            let done = store.cancel(id, scenario.as_deref(), &by, now).await?;
            let ids: Vec<i64> = done.iter().map(|(m, _)| *m).collect();
            println!("cancelled {} queued message(s){}", ids.len(), list(&ids));
            let mut enrollments: Vec<i64> = done.iter().map(|(_, e)| *e).collect();
            enrollments.sort_unstable();
            enrollments.dedup();
            if !enrollments.is_empty()
                && (end_enrollment || (!no_input && ask_end(enrollments.len())?))
            {
                let which = EndWhich::Ids(&enrollments);
                let ended = store
                    .end_enrollments(&which, "its message was cancelled by hand", now)
                    .await?;
                let ids: Vec<i64> = ended.iter().map(|e| e.id).collect();
                println!("ended {} enrollment(s){}", ids.len(), list(&ids));
            } else if !enrollments.is_empty() {
                eprintln!("note: their {} enrollment(s) go on, and their next steps will still be sent; `--end-enrollment` (or `rebuy enrollment end`) stops them", enrollments.len());
            }
            if id.is_some() && done.is_empty() {
                eprintln!("error: message {} is not queued (already sent, failed or being sent, or no such id)", id.unwrap_or_default());
                exit::INVALID
            } else {
                exit::OK
            }
        }
    };
    store.close().await;
    Ok(code)
}

/// On a terminal, asks whether the cancelled messages' enrollments should end too.
fn ask_end(n: usize) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("also end their {n} enrollment(s), so that no further step goes out? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Renders each message again and puts it back in the queue; one that still cannot be
/// rendered stays as it is, with the reason recorded and printed.
async fn retry(app: &App, store: &Store, ids: &[i64], all_failed: bool) -> anyhow::Result<u8> {
    let engine = match app.engine(store).await? {
        Ok(e) => e,
        Err(diags) => return super::trigger::refuse(&diags),
    };
    let out = engine.retry(ids, all_failed, SystemClock.now()).await?;
    for (id, why) in &out.refused {
        eprintln!("error: message {id}: {why}");
    }
    let done = out.requeued;
    let refused: Vec<i64> = out.refused.iter().map(|(id, _)| *id).collect();
    println!("re-queued {} message(s){}", done.len(), list(&done));
    let missed: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|i| !done.contains(i) && !refused.contains(i))
        .collect();
    if !missed.is_empty() {
        eprintln!(
            "error: not re-queued (no such message, or not failed, unknown or expired){}",
            list(&missed)
        );
    }
    Ok(if missed.is_empty() && refused.is_empty() {
        exit::OK
    } else {
        exit::INVALID
    })
}

fn list(ids: &[i64]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = ids.iter().take(20).map(i64::to_string).collect();
    let more = if ids.len() > 20 { ", …" } else { "" };
    format!(": {}{more}", shown.join(", "))
}
