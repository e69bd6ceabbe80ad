//! Per-scenario counts for `rebuy status`.

use super::{Result, Store};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScenarioStatus {
    pub scenario: String,
    pub enrolled: i64,
    pub active: i64,
    pub completed: i64,
    pub reached_goal: i64,
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    pub suppressed: i64,
    pub cancelled: i64,
    pub unknown: i64,
    /// Not sent: later than their lateness limit (`expires`).
    pub expired: i64,
    /// Steps of held-out or control-group enrollments: recorded, never sent.
    pub held_out: i64,
}

impl Store {
    /// Counts per scenario id, for every scenario that has any enrollment.
    pub async fn scenario_status(&self) -> Result<BTreeMap<String, ScenarioStatus>> {
        let mut out: BTreeMap<String, ScenarioStatus> = BTreeMap::new();
        let enrollments: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT scenario_id, COUNT(*), \
             SUM(CASE WHEN state = 'active' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN state = 'completed' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN goal_reached_at IS NOT NULL THEN 1 ELSE 0 END) \
             FROM enrollments GROUP BY scenario_id",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, enrolled, active, completed, goal) in enrollments {
            let s = out.entry(id.clone()).or_default();
            s.scenario = id;
            s.enrolled = enrolled;
            s.active = active;
            s.completed = completed;
            s.reached_goal = goal;
        }
        let messages: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT scenario_id, status, COUNT(*) FROM outbox GROUP BY scenario_id, status",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, status, n) in messages {
            let s = out.entry(id.clone()).or_default();
            s.scenario = id;
            match status.as_str() {
                "queued" | "claimed" | "sending" => s.queued += n,
                // A back-test's database records its messages as simulated sends.
                "sent" | "simulated" => s.sent += n,
                "failed" => s.failed += n,
                "skipped" => s.skipped += n,
                "suppressed" => s.suppressed += n,
                "cancelled" => s.cancelled += n,
                "unknown" => s.unknown += n,
                "held_out" => s.held_out += n,
                "expired" => s.expired += n,
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Whether mail is flowing: the last send, the oldest message still waiting, how many
/// messages are in doubt, a throttling pause, and the last stalled delivery round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlowStatus {
    pub last_sent_at: Option<i64>,
    pub oldest_queued_at: Option<i64>,
    pub queued: i64,
    pub unknown: i64,
    /// Of the waiting, those put back after an attempt that failed (a refused connection, an
    /// unwritable outbox folder): mail is not flowing for them. With the newest such error.
    pub retrying: i64,
    pub retry_error: Option<String>,
    /// Given up after their attempts (a relay down, refusing for now, timing out) since the
    /// last message that was sent, with the newest error: mail has not flowed since. Older
    /// failures stop counting once a message goes out.
    pub failed_since_sent: i64,
    pub failed_error: Option<String>,
    /// Sending waits until then: the server asked to slow down.
    pub paused_until: Option<i64>,
    /// The last delivery round abandoned by the watchdog.
    pub stalled: Option<Stall>,
}

/// A delivery round the watchdog abandoned: when, and what it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stall {
    pub at: i64,
    pub said: String,
}

/// Where the end of a throttling pause is kept (milliseconds since the epoch).
const PAUSED_UNTIL: &str = "delivery.paused_until";
/// Where the last stall is kept (JSON of `Stall`).
const STALLED: &str = "delivery.stalled";

impl Store {
    /// The end of the throttling pause, if one was ever set (it may be over).
    pub async fn paused_until(&self) -> Result<Option<i64>> {
        Ok(self
            .setting(PAUSED_UNTIL)
            .await?
            .and_then(|u| u.parse().ok()))
    }

    /// Pauses sending until `until` (every process that delivers reads it).
    pub async fn pause_delivery(&self, until: i64) -> Result<()> {
        self.set_setting(PAUSED_UNTIL, &until.to_string()).await
    }

    /// Keeps the last stalled round for `rebuy status`.
    pub async fn record_stall(&self, stall: &Stall) -> Result<()> {
        let json = serde_json::to_string(stall).expect("a stall serializes");
        self.set_setting(STALLED, &json).await
    }

    async fn last_stall(&self) -> Result<Option<Stall>> {
        Ok(self
            .setting(STALLED)
            .await?
            .and_then(|s| serde_json::from_str(&s).ok()))
    }
}

impl Store {
    pub async fn flow_status(&self) -> Result<FlowStatus> {
        let (last_sent_at,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(sent_at) FROM outbox WHERE status = 'sent'")
                .fetch_one(&self.pool)
                .await?;
        let (oldest_queued_at, queued): (Option<i64>, i64) = sqlx::query_as(
            "SELECT MIN(due_at), COUNT(*) FROM outbox WHERE status IN ('queued', 'claimed', 'sending')",
        )
        .fetch_one(&self.pool)
        .await?;
        let (unknown,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE status = 'unknown'")
                .fetch_one(&self.pool)
                .await?;
        // Waiting after a failed attempt: an attempt counted and an error that is not one of
        // rebuy's own deferrals (quiet hours, the cap, a pause), which overwrite it.
        let mut retrying_sql = String::from(
            "FROM outbox WHERE status = 'queued' AND attempts > 0 AND last_error IS NOT NULL",
        );
        let prefixes = crate::reasons::deferral_prefixes();
        for p in &prefixes {
            retrying_sql.push_str(&format!(
                " AND substr(last_error, 1, {}) <> '{}'",
                p.chars().count(),
                p.replace('\'', "''")
            ));
        }
        let (retrying,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) {retrying_sql}"))
            .fetch_one(&self.pool)
            .await?;
        let retry_error: Option<(Option<String>,)> = sqlx::query_as(&format!(
            "SELECT last_error {retrying_sql} ORDER BY updated_at DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        // A server's reply may name the address: masked, as in the log.
        let retry_error = retry_error
            .and_then(|(e,)| e)
            .map(|e| crate::domain::mask_emails_in(&e));
        // Only retries given up (the relay down, refusing, timing out): a 550 for one bad
        // address or a template that fails for one customer is that message's trouble, not the
        // flow's.
        let since = last_sent_at.unwrap_or(i64::MIN);
        let gave_up = crate::reasons::GAVE_UP;
        let failed_sql = format!(
            "FROM outbox WHERE status = 'failed' AND updated_at > $1 \
             AND substr(last_error, 1, {}) = '{gave_up}'",
            gave_up.len()
        );
        let (failed_since_sent,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) {failed_sql}"))
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        let failed_error: Option<(Option<String>,)> = sqlx::query_as(&format!(
            "SELECT last_error {failed_sql} ORDER BY updated_at DESC LIMIT 1"
        ))
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        let failed_error = failed_error
            .and_then(|(e,)| e)
            .map(|e| crate::domain::mask_emails_in(&e));
        Ok(FlowStatus {
            last_sent_at,
            oldest_queued_at,
            queued,
            unknown,
            retrying,
            retry_error,
            failed_since_sent,
            failed_error,
            paused_until: self.paused_until().await?,
            stalled: self.last_stall().await?,
        })
    }
}

impl Store {
    /// Messages in the outbox by status, for the operational metrics.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
