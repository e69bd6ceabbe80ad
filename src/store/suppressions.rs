//! The suppression list: who must not get mail, why, and since when.

use super::QueryBuilder;
use super::{push_in_list, Db, Result, Store};
use serde::Serialize;
use sqlx::FromRow;
use std::collections::HashMap;

/// Why an address is suppressed, which decides what it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SuppressionKind {
    /// The customer unsubscribed: no more marketing mail; transactional mail still goes.
    Unsubscribe,
    /// A permanent failure for the address: nothing can be delivered there.
    Bounce,
    /// Added by staff: no mail at all.
    Manual,
}

impl SuppressionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionKind::Unsubscribe => "unsubscribe",
            SuppressionKind::Bounce => "bounce",
            SuppressionKind::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unsubscribe" => Some(SuppressionKind::Unsubscribe),
            "bounce" => Some(SuppressionKind::Bounce),
            "manual" => Some(SuppressionKind::Manual),
            _ => None,
        }
    }

    /// Whether this suppression stops a message (`transactional` or marketing).
    pub fn stops(self, transactional: bool) -> bool {
        !(transactional && self == SuppressionKind::Unsubscribe)
    }
}

/// What [`Store::suppressions_for`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppressions {
    /// By lower-case address.
    pub by_email: HashMap<String, SuppressionKind>,
    /// Person-level entries (`unsubscribe`, `manual`) by customer id.
    pub by_customer: HashMap<String, SuppressionKind>,
}

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct Suppression {
    pub email: String,
    pub kind: String,
    pub reason: String,
    pub customer_id: Option<String>,
    pub created_at: i64,
}

impl Store {
    /// Adds (or, for an address already listed, replaces) a suppression. A bounce or manual
    /// entry is never weakened to an unsubscribe. Returns whether the list changed.
    pub async fn suppress(
        &self,
        email: &str,
        kind: SuppressionKind,
        reason: &str,
        customer_id: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        insert_suppression(&self.pool, email, kind, reason, customer_id, now).await
    }

    /// Removes an address from the list; returns whether it was there.
    pub async fn unsuppress(&self, email: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM suppressions WHERE email = $1")
            .bind(email.trim().to_lowercase())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Removes what stops a person's mail: the entry for their address, and the unsubscribe
    /// and manual entries recorded for them under other addresses (a person's wish follows
    /// them; a bounce stays with its address). Returns the addresses whose entries went.
    pub async fn unsuppress_person(&self, email: &str, customer_id: &str) -> Result<Vec<String>> {
        let mut removed: Vec<String> = sqlx::query_scalar(
            "DELETE FROM suppressions WHERE email = $1 \
             OR (customer_id = $2 AND kind IN ('unsubscribe', 'manual')) RETURNING email",
        )
        .bind(email.trim().to_lowercase())
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        removed.sort();
        Ok(removed)
    }

    pub async fn suppressions(&self) -> Result<Vec<Suppression>> {
        Ok(sqlx::query_as(
            "SELECT email, kind, reason, customer_id, created_at FROM suppressions ORDER BY created_at, email",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The suppressions among `emails` (any case), by lower-cased address.
    /// Every suppression, by address (a back-test's replay keeps them in memory).
    pub async fn all_suppressions(&self) -> Result<HashMap<String, SuppressionKind>> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT email, kind FROM suppressions")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(e, k)| SuppressionKind::parse(&k).map(|k| (e, k)))
            .collect())
    }

    /// In one statement, the entries on these addresses (by lower-case address) and the
    /// person-level ones (`unsubscribe`, `manual`: a wish, not an address's fault) recorded
    /// for these customers whatever address they were made under (by customer id, the
    /// stronger where a customer has both): what the enqueue and the send check.
    pub async fn suppressions_for(
        &self,
        emails: &[String],
        customers: &[String],
    ) -> Result<Suppressions> {
        let lower: Vec<String> = emails
            .iter()
            .map(|e| e.trim().to_lowercase())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut out = Suppressions::default();
        let rounds = lower.len().max(customers.len()).div_ceil(super::BATCH);
        for i in 0..rounds {
            let part = |v: &[String]| -> Vec<String> {
                v.iter()
                    .skip(i * super::BATCH)
                    .take(super::BATCH)
                    .cloned()
                    .collect()
            };
            let (e, c) = (part(&lower), part(customers));
            let mut qb = QueryBuilder::<Db>::new(self.backend(), "");
            if !e.is_empty() {
                qb.push("SELECT 'e', email, kind FROM suppressions WHERE email IN ");
                push_in_list(&mut qb, &e);
            }
            if !c.is_empty() {
                if !e.is_empty() {
                    qb.push(" UNION ALL ");
                }
                qb.push(
                    "SELECT 'c', customer_id, kind FROM suppressions \
                     WHERE kind <> 'bounce' AND customer_id IN ",
                );
                push_in_list(&mut qb, &c);
            }
            let rows: Vec<(String, String, String)> =
                qb.build_query_as().fetch_all(&self.pool).await?;
            let (on_address, wishes): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|(which, _, _)| which == "e");
            out.by_email.extend(
                on_address
                    .into_iter()
                    .filter_map(|(_, e, k)| SuppressionKind::parse(&k).map(|k| (e, k))),
            );
            add_wishes(
                &mut out.by_customer,
                wishes.into_iter().map(|(_, c, k)| (c, k)).collect(),
            );
        }
        Ok(out)
    }

    /// The person-level entries of [`Store::suppressions_for`] for every customer (a
    /// back-test's copy of the list).
    pub async fn all_suppressed_customers(&self) -> Result<HashMap<String, SuppressionKind>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT customer_id, kind FROM suppressions \
             WHERE kind <> 'bounce' AND customer_id IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::new();
        add_wishes(&mut out, rows);
        Ok(out)
    }
}

/// Adds (customer id, kind) rows to `out`, keeping the stronger kind (`manual` over
/// `unsubscribe`) where a customer has both.
fn add_wishes(out: &mut HashMap<String, SuppressionKind>, rows: Vec<(String, String)>) {
    for (id, kind) in rows {
        let Some(kind) = SuppressionKind::parse(&kind) else {
            continue;
        };
        let held = out.entry(id).or_insert(kind);
        if kind == SuppressionKind::Manual {
            *held = kind;
        }
    }
}

/// Adds an address to the list on `db` (the pool, or a transaction that records an outcome
/// with it); returns whether it was added. An unsubscription is replaced by a stronger reason.
pub(super) async fn insert_suppression<'e, E: sqlx::Executor<'e, Database = Db>>(
    db: E,
    email: &str,
    kind: SuppressionKind,
    reason: &str,
    customer_id: Option<&str>,
    now: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO suppressions (email, kind, reason, customer_id, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (email) DO UPDATE SET kind = excluded.kind, reason = excluded.reason, \
         customer_id = COALESCE(excluded.customer_id, suppressions.customer_id), created_at = excluded.created_at \
         WHERE suppressions.kind = 'unsubscribe' AND excluded.kind <> 'unsubscribe'",
    )
    .bind(email.trim().to_lowercase())
    .bind(kind.as_str())
    .bind(reason)
    .bind(customer_id)
    .bind(now)
    .execute(db)
    .await?
    .rows_affected();
    Ok(n > 0)
}
