//! Delivery: claims queued outbox rows with a lease, sends each outside any transaction and
//! records its outcome in a short statement of its own: sent, retried later with backoff
//! (transient failure), or failed (permanent failure, or attempts used up).

mod mailer;
pub mod message;
mod retry;
mod unsubscribe;

pub use mailer::{Mailer, SendError};
pub use retry::RetryPolicy;
pub use unsubscribe::Unsubscriber;

use crate::clock::to_millis;
use crate::domain::mask_email;
use crate::store::{OutboxRow, Store};
use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt};
use lettre::message::Mailbox;
use tracing::{info, info_span, warn, Instrument};

/// What one delivery round did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryReport {
    pub claimed: u64,
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
    pub unknown: u64,
}

pub struct Deliverer {
    store: Store,
    mailer: Mailer,
    from: Mailbox,
    policy: RetryPolicy,
    owner: String,
    lease: Duration,
    batch: u32,
    concurrency: usize,
}

enum Kind {
    Sent,
    Retried,
    Failed,
}

enum Outcome {
    Sent,
    Retry(String, Duration),
    Failed(String),
}

impl Deliverer {
    pub fn new(
        store: Store,
        mailer: Mailer,
        from: Mailbox,
        policy: RetryPolicy,
        batch: u32,
        concurrency: u32,
    ) -> Self {
        let concurrency = mailer.concurrency(concurrency);
        Self {
            store,
            mailer,
            from,
            policy,
            owner: format!("{}-{}", std::process::id(), rand::random::<u32>()),
            lease: Duration::minutes(10),
            batch: batch.max(1),
            concurrency,
        }
    }

    /// Sends everything that is ready by `now`, one claimed batch after another.
    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<DeliveryReport> {
        let mut report = DeliveryReport {
            unknown: self.store.expire_leases(to_millis(now)).await?,
            ..Default::default()
        };
        loop {
            let lease_until = to_millis(now + self.lease);
            let rows = self
                .store
                .claim_ready(
                    &self.owner,
                    to_millis(now),
                    lease_until,
                    i64::from(self.batch),
                )
                .await?;
            if rows.is_empty() {
                return Ok(report);
            }
            report.claimed += rows.len() as u64;
            // Each outcome is recorded as soon as its send returns, so that a crash leaves
            // as few messages as possible in `sending`.
            let recorded: Vec<anyhow::Result<Kind>> = stream::iter(rows)
                .map(|row| async move {
                    let span = info_span!("message", message_id = row.id, scenario = %row.scenario_id, step = %row.step_id);
                    let outcome = self.send_one(&row, now).instrument(span).await;
                    self.record(row.id, outcome, now).await
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            for kind in recorded {
                match kind? {
                    Kind::Sent => report.sent += 1,
                    Kind::Retried => report.retried += 1,
                    Kind::Failed => report.failed += 1,
                }
            }
        }
    }

    async fn send_one(&self, row: &OutboxRow, now: DateTime<Utc>) -> Outcome {
        let message = match message::build(row, &self.from, now) {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        match self.mailer.send(row.id, &message).await {
            Ok(()) => {
                info!(to = %mask_email(&row.to_email), "sent");
                Outcome::Sent
            }
            Err(SendError::Permanent(e)) => {
                warn!(error = %e, "permanent failure");
                Outcome::Failed(e)
            }
            Err(SendError::Transient(e)) => {
                match self.policy.next_delay(row.attempts as u32, rand::random()) {
                    Some(delay) => {
                        warn!(error = %e, attempts = row.attempts, "transient failure; will retry");
                        Outcome::Retry(e, delay)
                    }
                    None => {
                        warn!(error = %e, attempts = row.attempts, "transient failure; attempts used up");
                        Outcome::Failed(format!("gave up after {} attempts: {e}", row.attempts))
                    }
                }
            }
        }
    }

    async fn record(&self, id: i64, outcome: Outcome, now: DateTime<Utc>) -> anyhow::Result<Kind> {
        let at = to_millis(now);
        Ok(match outcome {
            Outcome::Sent => {
                self.store.mark_sent(id, &self.owner, at).await?;
                Kind::Sent
            }
            Outcome::Retry(e, delay) => {
                self.store
                    .mark_retry(id, &self.owner, &e, to_millis(now + delay), at)
                    .await?;
                Kind::Retried
            }
            Outcome::Failed(e) => {
                self.store.mark_failed(id, &self.owner, &e, at).await?;
                Kind::Failed
            }
        })
    }
}
