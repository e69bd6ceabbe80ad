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

/// What storing events did: how many were new, and each event whose id names another event
/// already stored (its index, and the stored one). An event sent again as it is, is neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsStored {
    pub inserted: u64,
    pub conflicts: Vec<(usize, EventRow)>,
}

impl Store {
    /// Stores events; one whose id is stored already is left as it is, and is a conflict when
    /// its content differs (stored earlier or earlier in `events`): the rest are stored.
    pub async fn insert_events(&self, events: &[NewEvent], now: i64) -> Result<EventsStored> {
        let mut tx = self.write_tx().await?;
        let stored = insert_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// `insert_events` for several groups (concurrent API requests) in one transaction, each
    /// all or nothing: a group with a conflict stores none of its events. Conflicts are rare:
    /// the batch is first written as it is, and only when a group conflicts is it written
    /// again with each group in a savepoint of its own (two passes at most, never one per
    /// conflict).
    pub async fn insert_event_groups(
        &self,
        groups: &[&[NewEvent]],
        now: i64,
    ) -> Result<Vec<EventsStored>> {
        match self.event_groups_once(groups, now, false).await? {
            Some(out) => Ok(out),
            None => Ok(self
                .event_groups_once(groups, now, true)
                .await?
                .unwrap_or_default()),
        }
    }

    /// One pass of `insert_event_groups`: None when a group conflicts and `savepoints` is off
    /// (nothing is kept); with them, each conflicting group is rolled back alone.
    async fn event_groups_once(
        &self,
        groups: &[&[NewEvent]],
        now: i64,
        savepoints: bool,
    ) -> Result<Option<Vec<EventsStored>>> {
        use sqlx::Connection as _;
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            if !savepoints {
                let stored = insert_in(&mut tx, g, now).await?;
                if !stored.conflicts.is_empty() {
                    tx.rollback().await?;
                    return Ok(None);
                }
                out.push(stored);
                continue;
            }
            let mut group = tx.begin().await?;
            let stored = insert_in(&mut group, g, now).await?;
            if stored.conflicts.is_empty() {
                group.commit().await?;
                out.push(stored);
            } else {
                group.rollback().await?;
                out.push(EventsStored {
                    inserted: 0,
                    conflicts: stored.conflicts,
                });
            }
        }
        tx.commit().await?;
        Ok(Some(out))
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

/// Inserts events inside `tx`; returns how many were new, and the conflicts among those that
/// were not (read back only when some were not).
async fn insert_in(
    tx: &mut sqlx::AnyConnection,
    events: &[NewEvent],
    now: i64,
) -> Result<EventsStored> {
    let inserted = insert_new(tx, events, now).await?;
    let mut conflicts = Vec::new();
    if inserted < events.len() as u64 {
        let stored = stored_by_id(tx, events).await?;
        for (i, e) in events.iter().enumerate() {
            match stored.get(e.id.as_str()) {
                Some(row) if !same_event(e, row) => conflicts.push((i, row.clone())),
                _ => {}
            }
        }
    }
    Ok(EventsStored {
        inserted,
        conflicts,
    })
}

/// Whether a stored event is the one given (sent again).
fn same_event(e: &NewEvent, row: &EventRow) -> bool {
    e.customer_id == row.customer_id
        && e.name == row.name
        && e.at == row.at
        && e.properties == row.properties
}

/// The stored events with the ids of `events`, by id.
async fn stored_by_id(
    tx: &mut sqlx::AnyConnection,
    events: &[NewEvent],
) -> Result<std::collections::HashMap<String, EventRow>> {
    let mut out = std::collections::HashMap::new();
    for chunk in events.chunks(super::BATCH) {
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "SELECT seq, id, customer_id, name, at, properties FROM events WHERE id IN ",
        );
        super::push_in_list(&mut qb, chunk.iter().map(|e| &e.id));
        let rows: Vec<EventRow> = qb.build_query_as().fetch_all(&mut *tx).await?;
        out.extend(rows.into_iter().map(|r| (r.id.clone(), r)));
    }
    Ok(out)
}

/// Inserts the events whose id is not stored; returns how many.
async fn insert_new(tx: &mut sqlx::AnyConnection, events: &[NewEvent], now: i64) -> Result<u64> {
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
        inserted += qb.build().execute(&mut *tx).await?.rows_affected();
    }
    Ok(inserted)
}
