//! The outbox: one row per (enrollment, step) with its state. Delivery claims queued rows with
//! a lease, sends outside any transaction, and records outcomes in short transactions of
//! their own whose updates only apply while the lease is still the claimer's.

use super::QueryBuilder;
use super::{Db, Result, Store};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    Queued,
    /// Claimed by a sender (with a lease) and waiting its turn: nothing can have gone out, so
    /// an expired claim goes back to the queue.
    Claimed,
    /// Being sent: a sender that dies now leaves it `unknown`.
    Sending,
    Sent,
    Failed,
    Skipped,
    Unknown,
    /// Not sent: the address is on the suppression list.
    Suppressed,
    /// Not sent: cancelled by hand (`rebuy outbox cancel`).
    Cancelled,
    /// Not sent: the enrollment is in the scenario's holdout or the shop-wide control group.
    HeldOut,
    /// Not sent: later than its step's lateness limit (`expires`).
    Expired,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::Claimed => "claimed",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Skipped => "skipped",
            OutboxStatus::Unknown => "unknown",
            OutboxStatus::Suppressed => "suppressed",
            OutboxStatus::Cancelled => "cancelled",
            OutboxStatus::HeldOut => "held_out",
            OutboxStatus::Expired => "expired",
        }
    }
}

/// The recorded outcome of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    pub status: OutboxStatus,
    pub error: Option<String>,
    pub sent_at: Option<i64>,
    /// For a message put back in the queue: when to try again.
    pub next_attempt_at: Option<i64>,
    /// The claim counted an attempt that never happened (a deferred message): take it back.
    pub uncount: bool,
    /// The server refused the address for good: it goes on the suppression list in the same
    /// transaction as this outcome.
    pub bounce: Option<Bounce>,
    /// The message was withheld at send time (suppressed, or no consent): its enrollment ends
    /// in the same transaction, so that no later step follows a mail the customer never
    /// received (see `Withheld`).
    pub ends_enrollment: Option<Withheld>,
}

/// A step withheld at send time: its enrollment, if still running, ends `completed` with
/// `why`, and its later steps already queued (a step held back by the frequency cap or quiet
/// hours can be overtaken by the next) are cancelled with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub enrollment_id: i64,
    pub step_index: i64,
    pub why: String,
}

/// An address refused for good (a hard bounce), to suppress with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub email: String,
    pub customer_id: String,
    pub reason: String,
}

impl Recorded {
    /// A final outcome with a reason (no further attempt planned).
    fn ended(id: i64, status: OutboxStatus, why: String) -> Self {
        Self {
            id,
            status,
            error: Some(why),
            sent_at: None,
            next_attempt_at: None,
            uncount: false,
            bounce: None,
            ends_enrollment: None,
        }
    }

    /// This outcome also ends the message's enrollment (see `Withheld`).
    pub fn ending_enrollment(self, withheld: Withheld) -> Self {
        Self {
            ends_enrollment: Some(withheld),
            ..self
        }
    }

    /// Failed for good because the server refused the address: the outcome and the
    /// address's suppression commit together.
    pub fn bounced(id: i64, bounce: Bounce) -> Self {
        Self {
            bounce: Some(bounce.clone()),
            ..Self::failed(id, bounce.reason)
        }
    }

    pub fn sent(id: i64, at: i64) -> Self {
        Self {
            error: None,
            sent_at: Some(at),
            ..Self::ended(id, OutboxStatus::Sent, String::new())
        }
    }

    pub fn retry(id: i64, error: String, next_attempt_at: i64) -> Self {
        Self {
            next_attempt_at: Some(next_attempt_at),
            ..Self::ended(id, OutboxStatus::Queued, error)
        }
    }

    pub fn failed(id: i64, error: String) -> Self {
        Self::ended(id, OutboxStatus::Failed, error)
    }

    /// Not sent: too late (see `OutboxStatus::Expired`); no attempt is counted.
    pub fn expired(id: i64, why: String) -> Self {
        Self {
            uncount: true,
            ..Self::ended(id, OutboxStatus::Expired, why)
        }
    }

    pub fn suppressed(id: i64, why: String) -> Self {
        Self::ended(id, OutboxStatus::Suppressed, why)
    }

    pub fn unknown(id: i64, error: String) -> Self {
        Self::ended(id, OutboxStatus::Unknown, error)
    }

    /// Not sent, on purpose (no consent, or the frequency cap with `when_capped: skip`).
    pub fn skipped(id: i64, why: String) -> Self {
        Self {
            uncount: true,
            ..Self::ended(id, OutboxStatus::Skipped, why)
        }
    }

    /// Put back unsent for `at` without counting an attempt: quiet hours, the frequency
    /// cap, or a server that asked to slow down before this message's turn came.
    pub fn deferred(id: i64, why: String, at: i64) -> Self {
        Self {
            next_attempt_at: Some(at),
            uncount: true,
            ..Self::ended(id, OutboxStatus::Queued, why)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbox {
    pub enrollment_id: i64,
    pub step_index: i64,
    pub step_id: String,
    pub scenario_id: String,
    pub customer_id: String,
    pub transactional: bool,
    /// The scenario's `when_capped: skip`.
    pub skip_when_capped: bool,
    pub status: OutboxStatus,
    pub to_email: String,
    pub to_name: String,
    pub subject: String,
    pub html: String,
    pub body_text: String,
    pub unsubscribe_url: String,
    pub message_id: String,
    pub due_at: i64,
    pub last_error: Option<String>,
    /// The step's variant this message was given, if the step has variants.
    pub variant: Option<String>,
    /// After this instant the message is not sent but recorded `expired`.
    pub expires_at: Option<i64>,
    /// The SKUs its `recommend()` calls returned (for a held-out message: would have), as a
    /// JSON array; None when it recommended nothing.
    pub recommended: Option<String>,
}

/// Also read from a JSON array of its fields in `COLUMNS` order (the claim's rows).
#[derive(Debug, Clone, FromRow, Serialize, Deserialize)]
pub struct OutboxRow {
    pub id: i64,
    pub enrollment_id: i64,
    pub step_index: i64,
    pub step_id: String,
    pub scenario_id: String,
    pub customer_id: String,
    pub transactional: i64,
    pub skip_when_capped: i64,
    pub status: String,
    pub to_email: String,
    pub to_name: String,
    pub subject: String,
    pub html: String,
    pub body_text: String,
    pub unsubscribe_url: String,
    pub message_id: String,
    pub due_at: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub variant: Option<String>,
    pub expires_at: Option<i64>,
    /// The SKUs it recommended (held out: would have), a JSON array.
    pub recommended: Option<String>,
}

/// A failed or unknown message and what rendering it again takes.
#[derive(Debug, Clone, FromRow)]
pub struct RetryTarget {
    pub id: i64,
    pub scenario_id: String,
    pub step_id: String,
    pub variant: Option<String>,
    pub customer_id: String,
    pub order_id: Option<String>,
    pub vars: String,
    pub message_id: String,
    pub unsubscribe_url: String,
}

/// A message's rendered content.
pub struct Content<'a> {
    pub subject: &'a str,
    pub html: &'a str,
    pub text: &'a str,
    /// The recipient as the customer is today (an address fixed after a bounce).
    pub to_email: &'a str,
    pub to_name: &'a str,
    /// The SKUs it recommends now (JSON array), None for none.
    pub recommended: Option<&'a str>,
}

const COLUMNS: &str = "id, enrollment_id, step_index, step_id, scenario_id, customer_id, transactional, skip_when_capped, \
                       status, to_email, to_name, subject, html, body_text, unsubscribe_url, message_id, \
                       due_at, attempts, last_error, sent_at, variant, expires_at, recommended";

/// Inserts outbox rows; a row for an (enrollment, step) that exists already is ignored.
pub(super) async fn insert_outbox(
    tx: &mut sqlx::AnyConnection,
    rows: &[&NewOutbox],
    now: i64,
) -> Result<u64> {
    insert_outbox_as(tx, rows, now, false).await
}

/// `insert_outbox`; with `simulated`, queued rows are written as a back-test's stand-in for
/// delivery: `simulated`, sent at their due time (what `Store::mark_simulated` does later).
pub(super) async fn insert_outbox_as(
    tx: &mut sqlx::AnyConnection,
    rows: &[&NewOutbox],
    now: i64,
    simulated: bool,
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut qb = QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "INSERT INTO outbox (enrollment_id, step_index, step_id, scenario_id, customer_id, \
         transactional, status, to_email, to_name, subject, html, body_text, unsubscribe_url, \
         message_id, due_at, created_at, updated_at, next_attempt_at, last_error, skip_when_capped, \
         variant, sent_at, expires_at, recommended) ",
    );
    qb.push_values(rows, |mut b, o| {
        let stand_in = simulated && o.status == OutboxStatus::Queued;
        b.push_bind(o.enrollment_id)
            .push_bind(o.step_index)
            .push_bind(&o.step_id)
            .push_bind(&o.scenario_id)
            .push_bind(&o.customer_id)
            .push_bind(i64::from(o.transactional))
            .push_bind(if stand_in {
                "simulated"
            } else {
                o.status.as_str()
            })
            .push_bind(&o.to_email)
            .push_bind(&o.to_name)
            .push_bind(&o.subject)
            .push_bind(&o.html)
            .push_bind(&o.body_text)
            .push_bind(&o.unsubscribe_url)
            .push_bind(&o.message_id)
            .push_bind(o.due_at)
            .push_bind(now)
            .push_bind(now)
            .push_bind(now)
            .push_bind(&o.last_error)
            .push_bind(i64::from(o.skip_when_capped))
            .push_bind(&o.variant)
            .push_bind(stand_in.then_some(o.due_at))
            .push_bind(o.expires_at)
            .push_bind(&o.recommended);
    });
    qb.push(" ON CONFLICT (enrollment_id, step_index) DO NOTHING");
    Ok(qb.build().execute(&mut *tx).await?.rows_affected())
}

impl Store {
    /// The marketing messages (id, sent time) sent to each of `customers` after `since`.
    pub async fn recent_marketing_sends(
        &self,
        customers: &[String],
        since: i64,
    ) -> Result<std::collections::HashMap<String, Vec<(i64, i64)>>> {
        let mut out: std::collections::HashMap<String, Vec<(i64, i64)>> = Default::default();
        for chunk in customers.chunks(super::BATCH) {
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                "SELECT customer_id, id, sent_at FROM outbox WHERE status = 'sent' AND transactional = 0 AND sent_at > ",
            );
            qb.push_bind(since).push(" AND customer_id IN ");
            super::push_in_list(&mut qb, chunk);
            let rows: Vec<(String, i64, i64)> = qb.build_query_as().fetch_all(&self.pool).await?;
            for (c, id, at) in rows {
                out.entry(c).or_default().push((id, at));
            }
        }
        Ok(out)
    }

    /// Claims up to `limit` queued messages that are ready by `now`, leasing them to `owner`
    /// until `lease_until` and counting the attempt. The claim is one compare-and-set
    /// statement, so two deliverers never claim the same row; on PostgreSQL it skips rows
    /// another worker has locked (`FOR UPDATE SKIP LOCKED`) and runs under the write lock.
    ///
    /// A customer's marketing messages are with one sender at a time: a message is not claimed
    /// while another worker has a marketing message of the same customer claimed or in
    /// flight. Claims take turns, so the sender that checks the frequency cap sees every
    /// marketing message of that customer either sent or its own: the cap holds exactly across
    /// workers.
    pub async fn claim_ready(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        let postgres = self.backend() == super::Backend::Postgres;
        // The messages that may be claimed; a customer's marketing messages stay with the
        // sender that has one of them claimed or in flight.
        let ready = "SELECT q.id AS pick FROM outbox q WHERE q.status = 'queued' \
             AND q.next_attempt_at <= $3 AND (q.transactional <> 0 OR NOT EXISTS (SELECT 1 FROM outbox f \
             WHERE f.customer_id = q.customer_id AND f.status IN ('claimed', 'sending') \
             AND f.transactional = 0 AND f.lease_owner <> $1)) \
             ORDER BY q.next_attempt_at, q.id LIMIT $4";
        let set = "UPDATE outbox SET status = 'claimed', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $3";
        // PostgreSQL may run an `IN (… LIMIT n)` subquery more than once in one update (and
        // claim more than n); a locking CTE runs once.
        // Each claimed row comes back as one JSON value: sqlx's `Any` layer converts every
        // column of every row (23 here), which cost the send path about 3% of its CPU.
        let returning = format!("RETURNING CAST(json_array({COLUMNS}) AS TEXT)");
        let sql = if postgres {
            format!(
                "WITH picked AS ({ready} FOR UPDATE SKIP LOCKED) {set} FROM picked \
                 WHERE outbox.id = picked.pick AND outbox.status = 'queued' {returning}"
            )
        } else {
            format!("{set} WHERE status = 'queued' AND id IN ({ready}) {returning}")
        };
        let sql = super::dialect(self.backend(), &sql);
        let query = sqlx::query_as(&sql)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(limit);
        // `RETURNING` gives rows in no promised order (PostgreSQL returns them as it finds
        // them): the batch is put back in due order, so the sender meets a customer's
        // earlier message first and the frequency cap keeps it, not a later step.
        let decode = |rows: Vec<(String,)>| -> Result<Vec<OutboxRow>> {
            let mut rows = rows
                .iter()
                .map(|(json,)| super::from_json(json))
                .collect::<Result<Vec<OutboxRow>>>()?;
            rows.sort_by_key(|r| (r.due_at, r.id));
            Ok(rows)
        };
        if !postgres {
            return decode(query.fetch_all(&self.pool).await?);
        }
        // Read before the commit: a row that cannot be read leaves nothing claimed.
        let mut tx = self.write_tx().await?;
        let rows = decode(query.fetch_all(&mut *tx).await?)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Records the outcomes of sends in one short transaction (one statement per chunk). A sent
    /// message keeps no error (the one of an earlier attempt would read as why it failed). A
    /// message put back for a later attempt whose enrollment has meanwhile reached its goal is
    /// cancelled instead (the goal cancelled the queue while the sender held it). Each applies
    /// only while `owner` still holds the message's lease; returns how many applied.
    pub async fn record_outcomes(
        &self,
        owner: &str,
        now: i64,
        outcomes: &[Recorded],
    ) -> Result<u64> {
        let mut applied = 0;
        let mut tx = self.pool.begin().await?;
        for chunk in outcomes.chunks(super::BATCH) {
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                "UPDATE outbox SET status = v.column2, \
                 last_error = CASE WHEN v.column2 = 'sent' THEN NULL ELSE COALESCE(v.column3, outbox.last_error) END, \
                 sent_at = v.column4, next_attempt_at = COALESCE(v.column5, outbox.next_attempt_at), \
                 attempts = outbox.attempts - v.column6, lease_owner = NULL, lease_until = NULL, updated_at = ",
            );
            qb.push_bind(now);
            qb.push(" FROM (");
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.status.as_str())
                    .push_bind(r.error.as_deref())
                    .push_bind(r.sent_at)
                    .push_bind(r.next_attempt_at)
                    .push_bind(i64::from(r.uncount));
            });
            qb.push(") AS v WHERE outbox.id = v.column1 AND outbox.status IN ('claimed', 'sending') AND outbox.lease_owner = ");
            qb.push_bind(owner);
            qb.push(" RETURNING outbox.id");
            let done: HashSet<i64> = qb
                .build_query_as::<(i64,)>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(id,)| id)
                .collect();
            applied += done.len() as u64;
            let requeued: Vec<i64> = chunk
                .iter()
                .filter(|r| r.status == OutboxStatus::Queued)
                .map(|r| r.id)
                .collect();
            cancel_when_goal_reached(&mut tx, &requeued, now).await?;
            cancel_when_order_moved(&mut tx, &requeued, now).await?;
            let withheld = chunk
                .iter()
                .filter(|r| done.contains(&r.id))
                .filter_map(|r| r.ends_enrollment.as_ref());
            end_withheld_enrollments(&mut tx, withheld, now).await?;
        }
        // A bounce is a fact whoever holds the lease now: suppressed with the outcome.
        for (r, b) in outcomes
            .iter()
            .filter_map(|r| r.bounce.as_ref().map(|b| (r, b)))
        {
            let reason = format!("{} (message {})", b.reason, r.id);
            super::suppressions::insert_suppression(
                &mut *tx,
                &b.email,
                super::SuppressionKind::Bounce,
                &reason,
                Some(&b.customer_id),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Messages still `sending` after their lease ran out belong to a process that died
    /// mid-send: the server may or may not have accepted them, so they become `unknown`,
    /// visible in `rebuy status`, and are never re-sent silently.
    pub async fn expire_leases(&self, now: i64) -> Result<u64> {
        // A claim that was never sent goes back to the queue, its attempt not counted.
        let back = back_to_queue();
        sqlx::query(&format!(
            "UPDATE outbox SET {back}, attempts = attempts - 1, lease_owner = NULL, \
                 lease_until = NULL, updated_at = $1 WHERE status = 'claimed' AND lease_until < $1"
        ))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query(
            "UPDATE outbox SET status = 'unknown', updated_at = $1, last_error = $2 \
             WHERE status = 'sending' AND lease_until < $1",
        )
        .bind(now)
        .bind(crate::reasons::SENDER_STOPPED_BEFORE_RECORDING)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The lease owners of messages claimed or being sent now, other than `me`.
    pub async fn other_senders(&self, me: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT lease_owner FROM outbox WHERE status IN ('claimed', 'sending') \
             AND lease_owner IS NOT NULL AND lease_owner <> $1",
        )
        .bind(me)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(o,)| o).collect())
    }

    /// The messages `owner` is sending now (marked `sending` under its lease).
    pub async fn sending_by(&self, owner: &str) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM outbox WHERE status = 'sending' AND lease_owner = $1 ORDER BY id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// A dead sender's messages at once, without waiting for its lease: `in_doubt` (handed to
    /// its transport) become `unknown`; the rest of what it had claimed or marked goes back to
    /// the queue, its attempt not counted. Returns how many became `unknown`.
    pub async fn recover_dead_sender(
        &self,
        owner: &str,
        now: i64,
        in_doubt: &[i64],
    ) -> Result<(u64, u64)> {
        let mut tx = self.pool.begin().await?;
        let mut unknown = 0;
        for chunk in in_doubt.chunks(super::BATCH) {
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                "UPDATE outbox SET status = 'unknown', lease_owner = NULL, lease_until = NULL, \
                 last_error = ",
            );
            qb.push_bind(crate::reasons::SENDER_STOPPED)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE status = 'sending' AND lease_owner = ")
                .push_bind(owner)
                .push(" AND id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            unknown += qb.build().execute(&mut *tx).await?.rows_affected();
        }
        let back = back_to_queue();
        let requeued = sqlx::query(&format!(
            "UPDATE outbox SET {back}, attempts = attempts - 1, lease_owner = NULL, \
             lease_until = NULL, updated_at = $1 WHERE status IN ('claimed', 'sending') AND lease_owner = $2"
        ))
        .bind(now)
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((unknown, requeued))
    }

    /// Puts `owner`'s claimed and `sending` messages back in the queue, their attempt not
    /// counted, except `handed` (given to the mailer: they may have gone out). For a round
    /// abandoned after a stall.
    pub async fn release_unsent(&self, owner: &str, now: i64, handed: &[i64]) -> Result<u64> {
        let back = back_to_queue();
        let mut qb = QueryBuilder::<Db>::new(
            self.backend(),
            format!(
                "UPDATE outbox SET {back}, attempts = attempts - 1, lease_owner = NULL, \
                 lease_until = NULL, updated_at = "
            ),
        );
        qb.push_bind(now)
            .push(" WHERE status IN ('claimed', 'sending') AND lease_owner = ")
            .push_bind(owner);
        if !handed.is_empty() {
            qb.push(" AND id NOT IN (");
            let mut list = qb.separated(", ");
            for id in handed {
                list.push_bind(*id);
            }
            qb.push(")");
        }
        Ok(qb.build().execute(&self.pool).await?.rows_affected())
    }

    /// Moves claimed messages to `sending` just before their sends begin, and returns the ids
    /// that are now `sending` under `owner`'s lease: only those may be sent.
    /// The lease runs from now: a claim that waited behind a long round keeps its full lease.
    pub async fn start_sending(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        ids: &[i64],
    ) -> Result<Vec<i64>> {
        let mut started = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::BATCH) {
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                "UPDATE outbox SET status = 'sending', updated_at = ",
            );
            qb.push_bind(now)
                .push(", lease_until = ")
                .push_bind(lease_until)
                .push(" WHERE status = 'claimed' AND lease_owner = ")
                .push_bind(owner)
                .push(" AND id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(") RETURNING id");
            let rows: Vec<(i64,)> = qb.build_query_as().fetch_all(&self.pool).await?;
            started.extend(rows.into_iter().map(|(id,)| id));
        }
        Ok(started)
    }

    /// Every outbox row, oldest first (tests and tools).
    pub async fn outbox_rows(&self) -> Result<Vec<OutboxRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM outbox ORDER BY id"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Messages for `rebuy outbox list`, newest first, optionally of one status, scenario and
    /// customer (by id).
    pub async fn outbox_list(
        &self,
        status: Option<&str>,
        scenario: Option<&str>,
        customer: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        let mut qb = QueryBuilder::<Db>::new(
            self.backend(),
            format!("SELECT {COLUMNS} FROM outbox WHERE 1 = 1"),
        );
        if let Some(st) = status {
            // `queued` includes the messages claimed or being sent right now.
            if st == "queued" {
                qb.push(" AND status IN ('queued', 'claimed', 'sending')");
            } else {
                qb.push(" AND status = ").push_bind(st);
            }
        }
        if let Some(sc) = scenario {
            qb.push(" AND scenario_id = ").push_bind(sc);
        }
        if let Some(c) = customer {
            qb.push(" AND customer_id = ").push_bind(c);
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    /// The failed or unknown messages `rebuy outbox retry` would send again (`ids`, or every
    /// failed one with `all_failed`), with what it takes to render each one again.
    pub async fn retry_targets(&self, ids: &[i64], all_failed: bool) -> Result<Vec<RetryTarget>> {
        let mut qb = QueryBuilder::<Db>::new(
            self.backend(),
            "SELECT o.id, o.scenario_id, o.step_id, o.variant, o.customer_id, e.order_id, e.vars, \
             o.message_id, o.unsubscribe_url \
             FROM outbox o JOIN enrollments e ON e.id = o.enrollment_id",
        );
        if all_failed {
            qb.push(" WHERE o.status = 'failed'");
        } else {
            qb.push(" WHERE o.status IN ('failed', 'unknown', 'expired') AND o.id IN (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(*id);
            }
            sep.push_unseparated(")");
        }
        qb.push(" ORDER BY o.id");
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    /// Puts a failed, unknown or expired message back in the queue for `now` with its content
    /// rendered again, its attempts reset, no lateness limit and no error of the attempt before
    /// (a queued row showing "not sent: … late" read as a failure): a deliberate re-send. False if it is no longer failed or
    /// unknown (someone else retried or cancelled it meanwhile).
    pub async fn requeue_rendered(&self, id: i64, content: &Content<'_>, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE outbox SET status = 'queued', attempts = 0, next_attempt_at = $1, updated_at = $1, \
             subject = $2, html = $3, body_text = $4, expires_at = NULL, to_email = $6, to_name = $7, \
             recommended = $8, last_error = NULL \
             WHERE id = $5 AND status IN ('failed', 'unknown', 'expired')",
        )
        .bind(now)
        .bind(content.subject)
        .bind(content.html)
        .bind(content.text)
        .bind(id)
        .bind(content.to_email)
        .bind(content.to_name)
        .bind(content.recommended)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records why a retry was refused (the message could not be rendered again); it keeps
    /// its state.
    pub async fn note_retry_refused(&self, id: i64, why: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET last_error = $1, updated_at = $2 \
             WHERE id = $3 AND status IN ('failed', 'unknown', 'expired')",
        )
        .bind(why)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Cancels queued messages (not ones being sent): one by id, or all of a scenario.
    /// Returns the ids cancelled, each with its enrollment's.
    pub async fn cancel(
        &self,
        id: Option<i64>,
        scenario: Option<&str>,
        why: &crate::reasons::Reason,
        now: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let mut qb = QueryBuilder::<Db>::new(
            self.backend(),
            "UPDATE outbox SET status = 'cancelled', last_error = ",
        );
        qb.push_bind(why.to_string())
            .push(", updated_at = ")
            .push_bind(now)
            .push(" WHERE status = 'queued'");
        if let Some(id) = id {
            qb.push(" AND id = ").push_bind(id);
        }
        if let Some(sc) = scenario {
            qb.push(" AND scenario_id = ").push_bind(sc);
        }
        qb.push(" RETURNING id, enrollment_id");
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }
}

/// The `SET` of a message a sender gives back unsent (its lease ran out, the sender stopped or
/// stalled): back in the queue, or cancelled if its enrollment reached its goal meanwhile (the
/// goal cancelled what waited while the sender held this one; `enrollments::GOAL_REACHED`).
fn back_to_queue() -> String {
    let goal = super::GOAL_REACHED.replace('\'', "''");
    format!(
        "status = CASE WHEN EXISTS (SELECT 1 FROM enrollments e \
         WHERE e.id = outbox.enrollment_id AND e.goal_reached_at IS NOT NULL) THEN 'cancelled' ELSE 'queued' END, \
         last_error = CASE WHEN EXISTS (SELECT 1 FROM enrollments e \
         WHERE e.id = outbox.enrollment_id AND e.goal_reached_at IS NOT NULL) \
         THEN '{goal}' ELSE last_error END"
    )
}

/// Ends, `completed`, the running enrollments of steps withheld at send time and cancels their
/// later steps already queued (see `Withheld`). Only outcomes that applied are given.
async fn end_withheld_enrollments<'a>(
    tx: &mut sqlx::Transaction<'_, Db>,
    withheld: impl Iterator<Item = &'a Withheld>,
    now: i64,
) -> Result<()> {
    // One per enrollment: its earliest withheld step (two of one enrollment in one batch).
    let mut first: std::collections::BTreeMap<i64, &Withheld> = Default::default();
    for w in withheld {
        let kept = first.entry(w.enrollment_id).or_insert(w);
        if w.step_index < kept.step_index {
            *kept = w;
        }
    }
    if first.is_empty() {
        return Ok(());
    }
    let ending: Vec<&Withheld> = first.into_values().collect();
    let mut qb = QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "UPDATE enrollments SET state = 'completed', next_due_at = NULL, next_step_id = NULL, \
         end_reason = v.column2, ended_at = ",
    );
    qb.push_bind(now).push(" FROM (");
    qb.push_values(&ending, |mut b, w| {
        b.push_bind(w.enrollment_id).push_bind(w.why.as_str());
    });
    qb.push(") AS v WHERE enrollments.id = v.column1 AND enrollments.state = 'active'");
    qb.build().execute(&mut **tx).await?;
    let mut qb = QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "UPDATE outbox SET status = 'cancelled', last_error = v.column3, updated_at = ",
    );
    qb.push_bind(now).push(" FROM (");
    qb.push_values(&ending, |mut b, w| {
        b.push_bind(w.enrollment_id)
            .push_bind(w.step_index)
            .push_bind(w.why.as_str());
    });
    qb.push(
        ") AS v WHERE outbox.enrollment_id = v.column1 AND outbox.step_index > v.column2 \
         AND outbox.status = 'queued'",
    );
    qb.build().execute(&mut **tx).await?;
    Ok(())
}

/// Of `queued`, the messages an outcome put back in the queue (a retry, a deferral), those
/// planned from an order moved to another customer while they were being sent: cancelled with the
/// move's reason, as the move cancelled what waited (`enrollments::end_for_moved_orders`).
async fn cancel_when_order_moved(
    tx: &mut sqlx::Transaction<'_, Db>,
    queued: &[i64],
    now: i64,
) -> Result<()> {
    if queued.is_empty() {
        return Ok(());
    }
    let mut qb = QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "SELECT outbox.id, e.order_id FROM outbox JOIN enrollments e ON e.id = outbox.enrollment_id \
         JOIN orders o ON o.id = e.order_id WHERE o.customer_id <> e.customer_id \
         AND outbox.status = 'queued' AND outbox.id IN (",
    );
    let mut sep = qb.separated(", ");
    for id in queued {
        sep.push_bind(*id);
    }
    sep.push_unseparated(")");
    let moved: Vec<(i64, String)> = qb.build_query_as().fetch_all(&mut **tx).await?;
    if moved.is_empty() {
        return Ok(());
    }
    let why: Vec<(i64, String)> = moved
        .into_iter()
        .map(|(id, order)| (id, crate::reasons::Reason::OrderMoved { order }.to_string()))
        .collect();
    let mut qb = QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "UPDATE outbox SET status = 'cancelled', last_error = v.column2, updated_at = ",
    );
    qb.push_bind(now).push(" FROM (");
    qb.push_values(&why, |mut b, (id, why)| {
        b.push_bind(*id).push_bind(why.as_str());
    });
    qb.push(") AS v WHERE outbox.id = v.column1 AND outbox.status = 'queued'");
    qb.build().execute(&mut **tx).await?;
    Ok(())
}

/// Of `queued`, the messages an outcome put back in the queue (a retry, a deferral), those whose
/// enrollment has reached its goal: cancelled, as the goal cancels what waits
/// (`enrollments::GOAL_REACHED`).
async fn cancel_when_goal_reached(
    tx: &mut sqlx::Transaction<'_, Db>,
    queued: &[i64],
    now: i64,
) -> Result<()> {
    if queued.is_empty() {
        return Ok(());
    }
    let mut qb = QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "UPDATE outbox SET status = 'cancelled', last_error = ",
    );
    qb.push_bind(super::GOAL_REACHED)
        .push(", updated_at = ")
        .push_bind(now)
        .push(
            " WHERE status = 'queued' AND EXISTS (SELECT 1 FROM enrollments e \
             WHERE e.id = outbox.enrollment_id AND e.goal_reached_at IS NOT NULL) AND id IN (",
        );
    let mut sep = qb.separated(", ");
    for id in queued {
        sep.push_bind(*id);
    }
    sep.push_unseparated(")");
    qb.build().execute(&mut **tx).await?;
    Ok(())
}

impl Store {
    /// Every message to one customer, newest first, whatever its state.
    pub async fn customer_messages(&self, customer_id: &str) -> Result<Vec<OutboxRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE customer_id = $1 ORDER BY id DESC"
        ))
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One message, if it exists.
    pub async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM outbox WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
