//! Clicks and opens of tracked mail: finding the message a link names, recording each kind
//! once per message, and the counts the scenario report's funnel shows.

use super::{Result, Store};
use sqlx::FromRow;

/// The message a tracking link names.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TrackedMessage {
    pub id: i64,
    pub sent_at: Option<i64>,
}

/// One click or open to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingHit<'a> {
    pub outbox_id: i64,
    /// `open` or `click`.
    pub kind: &'a str,
    pub at: i64,
    pub url: Option<&'a str>,
    /// Why it is not counted (a bot); None for a person.
    pub bot: Option<&'a str>,
}

/// Opened and clicked messages of one step (and variant), people only.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TrackingCounts {
    pub scenario_id: String,
    pub step_id: String,
    pub variant: String,
    /// Messages opened, or clicked (a click is an open the pixel missed).
    pub opened: i64,
    pub clicked: i64,
}

/// A message's first counted (or, failing that, bot) click and open, for support.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct TrackingRow {
    pub outbox_id: i64,
    pub kind: String,
    #[sqlx(try_from = "super::Flag")]
    pub counted: bool,
    pub at: i64,
    pub url: Option<String>,
    pub note: Option<String>,
}

impl Store {
    /// The message whose Message-ID is `<link_id>`.
    pub async fn tracked_message(&self, link_id: &str) -> Result<Option<TrackedMessage>> {
        Ok(
            sqlx::query_as("SELECT id, sent_at FROM outbox WHERE message_id = $1")
                .bind(format!("<{link_id}>"))
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records a click or open; false if this message already has one of the kind (and the
    /// same counted-or-not), which is left as it was: the first one's time stands.
    pub async fn record_tracking(&self, hit: &TrackingHit<'_>) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO message_tracking (outbox_id, kind, counted, at, url, note) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(hit.outbox_id)
        .bind(hit.kind)
        .bind(i64::from(hit.bot.is_none()))
        .bind(hit.at)
        .bind(hit.url)
        .bind(hit.bot)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Opened and clicked messages per step and variant, over the enrollments `period`
    /// counts; bots left out.
    pub async fn tracking_counts(
        &self,
        period: super::Period,
        scenario: Option<&str>,
    ) -> Result<Vec<TrackingCounts>> {
        let sql = format!(
            "SELECT m.scenario_id, m.step_id, COALESCE(m.variant, '') AS variant, \
             COUNT(DISTINCT t.outbox_id) AS opened, \
             COUNT(DISTINCT CASE WHEN t.kind = 'click' THEN t.outbox_id END) AS clicked \
             FROM message_tracking t JOIN outbox m ON m.id = t.outbox_id \
             JOIN enrollments e ON e.id = m.enrollment_id \
             WHERE t.counted = 1 AND {} AND ($4 IS NULL OR m.scenario_id = $4) \
             GROUP BY m.scenario_id, m.step_id, COALESCE(m.variant, '')",
            super::experiments::COUNTED
        );
        Ok(
            super::experiments::bind_period(sqlx::query_as(&sql), period)
                .bind(scenario)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Every click and open recorded for a customer's messages.
    pub async fn customer_tracking(&self, customer_id: &str) -> Result<Vec<TrackingRow>> {
        Ok(sqlx::query_as(
            "SELECT t.outbox_id, t.kind, t.counted, t.at, t.url, t.note \
             FROM message_tracking t JOIN outbox m ON m.id = t.outbox_id \
             WHERE m.customer_id = $1 ORDER BY t.outbox_id, t.kind, t.counted DESC",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
