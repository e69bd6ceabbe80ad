//! Mail to the shop's team (`team_mail`): the targets digest's sends, each claimed before it
//! is handed over and then given its outcome.

use super::{Result, Store};
use serde::Serialize;
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct TeamMailRow {
    pub id: i64,
    pub job: String,
    pub slot: i64,
    pub recipient: String,
    pub subject: String,
    /// `sending` (handed over, outcome not recorded), `sent`, `failed` or `unknown`.
    pub state: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

impl Store {
    /// Claims the mail of `job`'s run at `slot` to `recipient`: its id, or `None` when that
    /// run already has a row for the address (sent, or tried, before a restart).
    pub async fn claim_team_mail(
        &self,
        job: &str,
        slot: i64,
        recipient: &str,
        subject: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO team_mail (job, slot, recipient, subject, state, created_at)
             VALUES ($1, $2, $3, $4, 'sending', $5)
             ON CONFLICT (job, slot, recipient) DO NOTHING RETURNING id",
        )
        .bind(job)
        .bind(slot)
        .bind(recipient)
        .bind(subject)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    /// The outcome of a claimed team mail.
    pub async fn finish_team_mail(
        &self,
        id: i64,
        state: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE team_mail SET state = $1, error = $2, finished_at = $3 WHERE id = $4")
            .bind(state)
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest team mails, newest first.
    pub async fn team_mail(&self, limit: i64) -> Result<Vec<TeamMailRow>> {
        Ok(sqlx::query_as(
            "SELECT id, job, slot, recipient, subject, state, error, created_at, finished_at
             FROM team_mail ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
