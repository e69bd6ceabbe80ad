//! Custom events: storing them once by id, reading them in order of arrival for the tick, and
//! one customer's for support.

use super::QueryBuilder;
use super::{Db, Result, Store};
use serde::Serialize;
use sqlx::FromRow;

/// An event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: String,
    pub customer_id: String,
    pub name: String,
    pub at: i64,
    /// A JSON object.
    pub properties: String,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub customer_id: String,
    pub name: String,
    pub at: i64,
    pub properties: String,
}

impl Store {
    /// Stores events; one whose id is stored already is left as it is. Returns how many were
    /// new.
    pub async fn insert_events(&self, events: &[NewEvent], now: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let inserted = insert_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// `insert_events` for several groups (concurrent API requests) in one transaction, with
    /// the count of new events per group.
    pub async fn insert_event_groups(&self, groups: &[&[NewEvent]], now: i64) -> Result<Vec<u64>> {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            out.push(insert_in(&mut tx, g, now).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn event_cursor(&self) -> Result<i64> {
        self.int_setting("event_cursor").await
    }

    /// Up to `limit` events after `cursor`, in order of arrival.
    pub async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<EventRow>> {
        Ok(sqlx::query_as(
            "SELECT seq, id, customer_id, name, at, properties FROM events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(cursor)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One customer's latest events, newest first.
    pub async fn customer_events(&self, customer_id: &str, limit: i64) -> Result<Vec<EventRow>> {
        Ok(sqlx::query_as(
            "SELECT seq, id, customer_id, name, at, properties FROM events \
             WHERE customer_id = $1 ORDER BY at DESC, seq DESC LIMIT $2",
        )
        .bind(customer_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn count_events(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

/// Inserts events inside `tx`; returns how many were new.
async fn insert_in(
    tx: &mut sqlx::Transaction<'static, Db>,
    events: &[NewEvent],
    now: i64,
) -> Result<u64> {
    let mut inserted = 0;
    for chunk in events.chunks(super::BATCH) {
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "INSERT INTO events (id, customer_id, name, at, properties, received_at) ",
        );
        qb.push_values(chunk, |mut b, e| {
            b.push_bind(&e.id)
                .push_bind(&e.customer_id)
                .push_bind(&e.name)
                .push_bind(e.at)
                .push_bind(&e.properties)
                .push_bind(now);
        });
        qb.push(" ON CONFLICT (id) DO NOTHING");
        inserted += qb.build().execute(&mut **tx).await?.rows_affected();
    }
    Ok(inserted)
}
