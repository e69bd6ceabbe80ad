//! What the HTTP API keeps: bearer tokens (by hash) and the replies to idempotent requests.

use super::{Result, Store};
use serde::Serialize;
use sqlx::FromRow;

/// A token as listed: never the token itself, which is shown once at creation.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What an `Idempotency-Key` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is new and now held by this request.
    Fresh,
    /// The key's request was answered: its status and body.
    Answered {
        request_hash: String,
        status: u16,
        body: String,
    },
    /// The key's first request is still being handled (or died; see `claim_key`).
    InFlight,
}

impl Store {
    /// Stores a new token's hash; fails if the name is taken.
    pub async fn insert_token(&self, name: &str, scope: &str, hash: &str, now: i64) -> Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO api_tokens (name, scope, hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(scope)
        .bind(hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, scope, created_at, revoked_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes a token by name; returns whether a live token had that name.
    pub async fn revoke_token(&self, name: &str, now: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// The live token with this hash: its id, name and scope.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, scope, created_at, revoked_at FROM api_tokens \
             WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Takes an idempotency key for a request, or says what it found. A claim whose request
    /// never answered (the process died) is taken over after `stale_ms`.
    pub async fn claim_key(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: i64,
        stale_ms: i64,
    ) -> Result<KeyClaim> {
        let taken = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash, created_at = excluded.created_at \
             WHERE idempotency_keys.status IS NULL AND idempotency_keys.created_at < $5",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .bind(now - stale_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if taken > 0 {
            return Ok(KeyClaim::Fresh);
        }
        let row: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some((request_hash, Some(status), body)) => KeyClaim::Answered {
                request_hash,
                status: u16::try_from(status).unwrap_or(500),
                body: body.unwrap_or_default(),
            },
            _ => KeyClaim::InFlight,
        })
    }

    /// Records the reply to a claimed key. A 5xx frees the key instead, so that a retry runs.
    pub async fn answer_key(&self, scope: &str, key: &str, status: u16, body: &str) -> Result<()> {
        if status >= 500 {
            sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .execute(&self.pool)
                .await?;
        } else {
            sqlx::query(
                "UPDATE idempotency_keys SET status = $3, body = $4 WHERE scope = $1 AND key = $2",
            )
            .bind(scope)
            .bind(key)
            .bind(i64::from(status))
            .bind(body)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Forgets the idempotency keys taken before `before`; returns how many.
    pub async fn prune_keys(&self, before: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
