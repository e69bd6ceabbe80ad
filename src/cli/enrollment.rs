//! `rebuy enrollment end`: stop a customer's follow-up by hand, with a reason.

use super::{exit, App};
use crate::clock::{to_millis, Clock, SystemClock};
use crate::store::EndWhich;

#[derive(Debug, clap::Subcommand)]
pub enum EnrollmentCommand {
    /// End active enrollments: no further step is sent, their queued messages are cancelled.
    /// One by id, or a customer's in a scenario.
    End {
        /// Enrollment id (see `rebuy outbox list --format json`).
        #[arg(required_unless_present = "customer", conflicts_with_all = ["customer", "scenario"])]
        id: Option<i64>,
        /// Customer id or e-mail, with --scenario.
        #[arg(long, requires = "scenario")]
        customer: Option<String>,
        #[arg(long, requires = "customer")]
        scenario: Option<String>,
        /// Why, kept with the enrollment (e.g. "customer asked by phone").
        #[arg(long, default_value = "ended by hand")]
        reason: String,
    },
}

pub async fn run(app: &App, cmd: EnrollmentCommand) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let now = to_millis(SystemClock.now());
    let EnrollmentCommand::End {
        id,
        customer,
        scenario,
        reason,
    } = cmd;
    let ids = id.map(|i| vec![i]).unwrap_or_default();
    let found = match (&customer, &scenario) {
        (Some(c), Some(s)) => Some((store.find_customer(c).await?.id, s.clone())),
        _ => None,
    };
    let which = match &found {
        Some((c, s)) => EndWhich::Customer {
            customer: c,
            scenario: s,
        },
        None => EndWhich::Ids(&ids),
    };
    let ended = store.end_enrollments(&which, &reason, now).await?;
    store.close().await;
    if ended.is_empty() {
        eprintln!(
            "error: no active enrollment matched (already completed or ended, or no such id)"
        );
        return Ok(exit::INVALID);
    }
    let shown: Vec<String> = ended
        .iter()
        .map(|e| format!("{} ({} in {})", e.id, e.customer_id, e.scenario_id))
        .collect();
    println!(
        "ended {} enrollment(s): {}; their queued messages are cancelled",
        ended.len(),
        shown.join(", ")
    );
    Ok(exit::OK)
}
