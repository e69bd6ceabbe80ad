//! Enrollments: created by triggers, advanced step by step, ended by completion or goal.
//! Every write that could race with an overlapping tick is guarded by a unique key or a
//! compare-and-set on `next_step`, so a tick that runs twice changes nothing the second time.

use super::outbox::{insert_outbox, NewOutbox};
use super::QueryBuilder;
use super::{push_in_list, Db, Result, Store};
use sqlx::FromRow;

/// What the trigger planner needs to know of a customer's existing enrollments.
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct EnrollmentLite {
    pub id: i64,
    pub scenario_id: String,
    pub customer_id: String,
    pub order_id: Option<String>,
    pub state: String,
    pub triggered_at: i64,
    pub goal_deadline: Option<i64>,
    pub goal_reached_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEnrollment {
    pub scenario_id: String,
    pub customer_id: String,
    pub trigger_key: String,
    pub order_id: Option<String>,
    pub vars: String,
    pub state: String,
    pub next_step: i64,
    /// The id of the step it waits on.
    pub next_step_id: Option<String>,
    pub next_due_at: Option<i64>,
    pub triggered_at: i64,
    pub enrolled_at: i64,
    pub goal_deadline: Option<i64>,
    pub goal_reached_at: Option<i64>,
    pub goal_order_id: Option<String>,
    /// The converting order's total, in minor units.
    pub goal_revenue: Option<i64>,
    pub ended_at: Option<i64>,
    /// `treatment`, `holdout` or `control` (see `experiment::Arm`).
    pub arm: &'static str,
}

/// An existing enrollment that reached its goal with an order.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalHit {
    pub enrollment_id: i64,
    pub order_id: String,
    pub placed_at: i64,
    /// The order's total, in minor units.
    pub revenue: i64,
}

/// An active enrollment whose next step is due.
#[derive(Debug, Clone, FromRow)]
pub struct DueEnrollment {
    pub id: i64,
    pub scenario_id: String,
    pub customer_id: String,
    pub order_id: Option<String>,
    pub vars: String,
    /// Steps taken so far (the compare-and-set counter).
    pub next_step: i64,
    /// The id of the step it waits on; `None` for an enrollment older than step ids, which
    /// waits on the step at position `next_step`.
    pub next_step_id: Option<String>,
    pub next_due_at: i64,
    pub triggered_at: i64,
    pub enrolled_at: i64,
    pub arm: String,
}

/// Which enrollments `Store::end_enrollments` ends.
#[derive(Debug, Clone, Copy)]
pub enum EndWhich<'a> {
    Ids(&'a [i64]),
    /// The customer's active enrollments in the scenario (customer id, scenario id).
    Customer {
        customer: &'a str,
        scenario: &'a str,
    },
}

/// An enrollment `Store::end_enrollments` ended.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EndedEnrollment {
    pub id: i64,
    pub customer_id: String,
    pub scenario_id: String,
}

/// Moves an enrollment past `expected_step`, recording what the step produced.
#[derive(Debug, Clone)]
pub struct StepAdvance {
    pub enrollment_id: i64,
    pub expected_step: i64,
    pub next_step: i64,
    /// The id of the step it waits on next, if any.
    pub next_step_id: Option<String>,
    pub next_due_at: Option<i64>,
    pub state: &'static str,
    /// Why it ended, when it ends for a reason of its own (its step was removed).
    pub end_reason: Option<String>,
    pub outbox: Option<NewOutbox>,
}

impl Store {
    /// All enrollments of the given customers.
    pub async fn enrollments_for_customers(&self, ids: &[String]) -> Result<Vec<EnrollmentLite>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(5000) {
            // One JSON row per chunk, for the same reason as `orders_after`.
            let sql = format!("{LITE_JSON} WHERE customer_id IN ");
            let mut qb = QueryBuilder::<Db>::in_dialect(self.backend(), &sql);
            push_in_list(&mut qb, chunk);
            let (json,): (String,) = qb.build_query_as().fetch_one(&self.pool).await?;
            out.extend(lite_rows(&json)?);
        }
        Ok(out)
    }

    /// All enrollments of the customers in the id range (`after`, `upto`]: the companion of
    /// `new_orders_of_customers`, a range scan instead of a lookup per customer.
    pub async fn enrollments_in_customer_range(
        &self,
        after: &str,
        upto: Option<&str>,
    ) -> Result<Vec<EnrollmentLite>> {
        let json: (String,) = match upto {
            Some(upto) => {
                let sql = format!("{LITE_JSON} WHERE customer_id > $1 AND customer_id <= $2");
                sqlx::query_as(&super::dialect(self.backend(), &sql))
                    .bind(after)
                    .bind(upto)
                    .fetch_one(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("{LITE_JSON} WHERE customer_id > $1");
                sqlx::query_as(&super::dialect(self.backend(), &sql))
                    .bind(after)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        lite_rows(&json.0)
    }

    /// Records what a page of new orders did, in one transaction: new enrollments (a
    /// duplicate trigger is ignored by the unique key), goals reached (with
    /// `cancel_waiting`, their enrollments' messages still queued are cancelled), and, if
    /// given, the order cursor moved from `cursor.0` to `cursor.1`. Returns how many
    /// enrollments were created, or `None` if another tick had already moved the cursor
    /// (nothing is written then).
    pub async fn apply_order_batch(
        &self,
        new: &[NewEnrollment],
        goals: &[GoalHit],
        cursor: Option<(i64, i64)>,
        now: i64,
        cancel_waiting: bool,
    ) -> Result<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        let created = insert_enrollments(&mut tx, new).await?;
        for chunk in goals.chunks(1000) {
            // One statement per chunk; `goal_reached_at IS NULL` keeps a goal from being
            // reached twice.
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                "UPDATE enrollments SET goal_reached_at = v.column2, goal_order_id = v.column3, \
                 goal_revenue = v.column4, \
                 state = CASE WHEN enrollments.state = 'active' THEN 'goal' ELSE enrollments.state END, \
                 next_due_at = CASE WHEN enrollments.state = 'active' THEN NULL ELSE enrollments.next_due_at END, \
                 ended_at = CASE WHEN enrollments.state = 'active' THEN ",
            );
            qb.push_bind(now);
            qb.push(" ELSE enrollments.ended_at END FROM (");
            qb.push_values(chunk, |mut b, g| {
                b.push_bind(g.enrollment_id)
                    .push_bind(g.placed_at)
                    .push_bind(&g.order_id)
                    .push_bind(g.revenue);
            });
            qb.push(
                ") AS v WHERE enrollments.id = v.column1 AND enrollments.goal_reached_at IS NULL \
                 RETURNING enrollments.id",
            );
            let reached: Vec<(i64,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            if cancel_waiting {
                cancel_after_goal(&mut tx, &reached, now).await?;
            }
        }
        // Moving the cursor is a compare-and-set: if an overlapping tick handled this page
        // first, everything above is rolled back and the page counts as done.
        if let Some((from, to)) = cursor {
            if !move_cursor(&mut tx, from, to).await? {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        tx.commit().await?;
        Ok(Some(created))
    }

    /// Moves the order cursor from `from` to `to` unless another tick moved it first; says
    /// whether it moved.
    pub async fn move_order_cursor(&self, from: i64, to: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let moved = move_cursor(&mut tx, from, to).await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// Inserts one enrollment (a manual trigger). Returns its id and whether it is new; a
    /// repeated `--key` finds the existing one.
    pub async fn insert_enrollment(&self, e: &NewEnrollment) -> Result<(i64, bool)> {
        let mut qb = QueryBuilder::<Db>::new(
            self.backend(),
            format!("INSERT INTO enrollments ({COLUMNS}) "),
        );
        qb.push_values(std::iter::once(e), |mut b, e| push_enrollment(&mut b, e));
        qb.push(" ON CONFLICT (scenario_id, customer_id, trigger_key) DO NOTHING RETURNING id");
        let created: Option<(i64,)> = qb.build_query_as().fetch_optional(&self.pool).await?;
        if let Some((id,)) = created {
            return Ok((id, true));
        }
        let (id,): (i64,) = sqlx::query_as(
            "SELECT id FROM enrollments WHERE scenario_id = $1 AND customer_id = $2 AND trigger_key = $3",
        )
        .bind(&e.scenario_id)
        .bind(&e.customer_id)
        .bind(&e.trigger_key)
        .fetch_one(&self.pool)
        .await?;
        Ok((id, false))
    }

    /// Active enrollments counted by scenario and the step they wait on (its id, or for those
    /// older than step ids the number of steps taken).
    pub async fn waiting_steps(&self) -> Result<Vec<crate::scenario::edits::Waiting>> {
        let rows: Vec<(String, Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT scenario_id, next_step_id, CASE WHEN next_step_id IS NULL THEN next_step ELSE 0 END AS position, \
             COUNT(*) FROM enrollments WHERE state = 'active' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(scenario_id, step_id, position, count)| crate::scenario::edits::Waiting {
                    scenario_id,
                    step_id,
                    position,
                    count,
                },
            )
            .collect())
    }

    /// Active enrollments whose next step is due by `now`, oldest first.
    pub async fn due_enrollments(&self, now: i64, limit: i64) -> Result<Vec<DueEnrollment>> {
        Ok(sqlx::query_as(
            "SELECT id, scenario_id, customer_id, order_id, vars, next_step, next_step_id, next_due_at, triggered_at, enrolled_at, arm \
             FROM enrollments WHERE state = 'active' AND next_due_at <= $1 \
             ORDER BY next_due_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Applies step results in one transaction. Each advance is a compare-and-set on
    /// `next_step`; only when it wins is the step's outbox row written, and the outbox's
    /// unique (enrollment, step) key backs that up. Returns how many advances won.
    pub async fn apply_steps(&self, advances: &[StepAdvance], now: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut won = 0;
        for chunk in advances.chunks(200) {
            // One compare-and-set statement for the chunk (UPDATE … FROM VALUES runs on SQLite
            // and PostgreSQL alike, both name the columns column1…); RETURNING names the winners.
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                "UPDATE enrollments SET next_step = v.column3, next_due_at = v.column4, \
                 state = v.column5, ended_at = v.column6, next_step_id = v.column7, \
                 end_reason = COALESCE(v.column8, enrollments.end_reason) FROM (",
            );
            qb.push_values(chunk, |mut b, a| {
                let ended = if a.state == "active" { None } else { Some(now) };
                b.push_bind(a.enrollment_id)
                    .push_bind(a.expected_step)
                    .push_bind(a.next_step)
                    .push_bind(a.next_due_at)
                    .push_bind(a.state)
                    .push_bind(ended)
                    .push_bind(a.next_step_id.as_deref())
                    .push_bind(a.end_reason.as_deref());
            });
            qb.push(
                ") AS v WHERE enrollments.id = v.column1 AND enrollments.next_step = v.column2 \
                 AND enrollments.state = 'active' RETURNING enrollments.id",
            );
            let winners: Vec<(i64,)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            let winners: std::collections::HashSet<i64> =
                winners.into_iter().map(|(id,)| id).collect();
            won += winners.len() as u64;
            let rows: Vec<&NewOutbox> = chunk
                .iter()
                .filter(|a| winners.contains(&a.enrollment_id))
                .filter_map(|a| a.outbox.as_ref())
                .collect();
            insert_outbox(&mut tx, &rows, now).await?;
        }
        tx.commit().await?;
        Ok(won)
    }

    /// Ends active enrollments by hand (`id`, or a customer's in a scenario) with a reason:
    /// no further step is scheduled, and their queued messages are cancelled in the same
    /// transaction (one already being sent finishes). Returns those ended, by id.
    pub async fn end_enrollments(
        &self,
        which: &EndWhich<'_>,
        reason: &str,
        now: i64,
    ) -> Result<Vec<EndedEnrollment>> {
        let mut tx = self.write_tx().await?;
        let mut qb = QueryBuilder::<Db>::new(
            self.backend(),
            "UPDATE enrollments SET state = 'cancelled', next_due_at = NULL, ended_at = ",
        );
        qb.push_bind(now)
            .push(", end_reason = ")
            .push_bind(reason)
            .push(" WHERE state = 'active' AND ");
        match which {
            EndWhich::Ids(ids) => {
                qb.push("id IN (");
                let mut sep = qb.separated(", ");
                for id in *ids {
                    sep.push_bind(*id);
                }
                sep.push_unseparated(")");
            }
            EndWhich::Customer { customer, scenario } => {
                qb.push("customer_id = ")
                    .push_bind(*customer)
                    .push(" AND scenario_id = ")
                    .push_bind(*scenario);
            }
        }
        qb.push(" RETURNING id, customer_id, scenario_id");
        let mut ended: Vec<EndedEnrollment> = qb.build_query_as().fetch_all(&mut *tx).await?;
        ended.sort_by_key(|e| e.id);
        let ids: Vec<i64> = ended.iter().map(|e| e.id).collect();
        let why = crate::reasons::Reason::EnrollmentEnded {
            why: reason.to_string(),
        }
        .to_string();
        cancel_queued(&mut tx, &ids, &why, now).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Marks an active enrollment whose scenario no longer exists as cancelled.
    pub async fn cancel_enrollment(&self, id: i64, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE enrollments SET state = 'cancelled', ended_at = $1, next_due_at = NULL \
             WHERE id = $2 AND state = 'active'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The columns of a new enrollment, in `push_enrollment`'s order.
const COLUMNS: &str = "scenario_id, customer_id, trigger_key, order_id, vars, state, next_step, \
     next_step_id, next_due_at, triggered_at, enrolled_at, goal_deadline, goal_reached_at, goal_order_id, \
     goal_revenue, ended_at, arm";

fn push_enrollment<'a>(
    b: &mut super::sql::Separated<'_, 'a, Db, &'static str>,
    e: &'a NewEnrollment,
) {
    b.push_bind(&e.scenario_id)
        .push_bind(&e.customer_id)
        .push_bind(&e.trigger_key)
        .push_bind(&e.order_id)
        .push_bind(&e.vars)
        .push_bind(&e.state)
        .push_bind(e.next_step)
        .push_bind(&e.next_step_id)
        .push_bind(e.next_due_at)
        .push_bind(e.triggered_at)
        .push_bind(e.enrolled_at)
        .push_bind(e.goal_deadline)
        .push_bind(e.goal_reached_at)
        .push_bind(&e.goal_order_id)
        .push_bind(e.goal_revenue)
        .push_bind(e.ended_at)
        .push_bind(e.arm);
}

/// Selects enrollments as one JSON row (see `orders_after` for why); add a WHERE clause.
const LITE_JSON: &str =
    "SELECT CAST(COALESCE(json_group_array(json_array(id, scenario_id, customer_id, order_id, state, \
     triggered_at, goal_deadline, goal_reached_at)), '[]') AS TEXT) FROM enrollments";

fn lite_rows(json: &str) -> Result<Vec<EnrollmentLite>> {
    type Row = (
        i64,
        String,
        String,
        Option<String>,
        String,
        i64,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = super::from_json(json)?;
    Ok(rows
        .into_iter()
        .map(|r| EnrollmentLite {
            id: r.0,
            scenario_id: r.1,
            customer_id: r.2,
            order_id: r.3,
            state: r.4,
            triggered_at: r.5,
            goal_deadline: r.6,
            goal_reached_at: r.7,
        })
        .collect())
}

/// The messages still waiting to be sent for enrollments that have just reached their goal are
/// cancelled with them: a customer who ordered again gets no "time to order again" that was
/// only queued (for a retry, quiet hours or the cap) when the order came. One a sender holds
/// is left to it, and cancelled if it comes back (`outbox::back_to_queue`,
/// `cancel_when_goal_reached`).
async fn cancel_after_goal(
    tx: &mut sqlx::Transaction<'_, Db>,
    enrollments: &[(i64,)],
    now: i64,
) -> Result<()> {
    let ids: Vec<i64> = enrollments.iter().map(|(id,)| *id).collect();
    cancel_queued(tx, &ids, GOAL_REACHED, now).await
}

/// Ends the follow-ups planned from an order that has just moved to another customer
/// (`--move-orders`, a Shopify correction): their messages waiting to be sent are cancelled,
/// claimed ones included (their mail would show the former customer someone else's order; a
/// sender starts only messages still claimed), and so are the enrollments that were still active
/// or whose last message was among those. In the transaction that moves the orders. One already
/// being sent finishes; if it fails for a while it is cancelled then, not retried
/// (`outbox::cancel_when_order_moved`).
pub(super) async fn end_for_moved_orders(
    tx: &mut sqlx::Transaction<'_, Db>,
    moved: &[super::MovedOrder],
    now: i64,
) -> Result<()> {
    let reasons: Vec<(&super::MovedOrder, String)> = moved
        .iter()
        .map(|m| {
            let why = crate::reasons::Reason::OrderMoved {
                order: m.order.clone(),
            };
            (m, why.to_string())
        })
        .collect();
    for chunk in reasons.chunks(super::batch(super::backend_of(tx), 3)) {
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "UPDATE outbox SET status = 'cancelled', last_error = v.column3, updated_at = ",
        );
        qb.push_bind(now).push(" FROM (");
        push_moved(&mut qb, chunk);
        qb.push(
            ") AS v, enrollments AS e WHERE e.customer_id = v.column1 AND e.order_id = v.column2 \
             AND outbox.enrollment_id = e.id AND outbox.status IN ('queued', 'claimed') \
             RETURNING outbox.enrollment_id, outbox.last_error",
        );
        let last_mail: Vec<(i64, String)> = qb.build_query_as().fetch_all(&mut **tx).await?;
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "UPDATE enrollments SET state = 'cancelled', next_due_at = NULL, \
             end_reason = v.column3, ended_at = ",
        );
        qb.push_bind(now).push(" FROM (");
        push_moved(&mut qb, chunk);
        qb.push(
            ") AS v WHERE enrollments.customer_id = v.column1 \
             AND enrollments.order_id = v.column2 AND enrollments.state = 'active'",
        );
        qb.build().execute(&mut **tx).await?;
        end_completed(tx, &last_mail, now).await?;
    }
    Ok(())
}

/// Moved orders as `VALUES` rows: the former customer, the order, why.
fn push_moved<'a>(qb: &mut QueryBuilder<'a, Db>, moved: &'a [(&'a super::MovedOrder, String)]) {
    qb.push_values(moved, |mut b, (m, why)| {
        b.push_bind(m.from.as_str())
            .push_bind(m.order.as_str())
            .push_bind(why.as_str());
    });
}

/// Enrollments that had completed with their last message queued, that message now cancelled
/// (`why`): they end `cancelled`, with the message's reason.
async fn end_completed(
    tx: &mut sqlx::Transaction<'_, Db>,
    cancelled: &[(i64, String)],
    now: i64,
) -> Result<()> {
    for part in cancelled.chunks(super::batch(super::backend_of(tx), 2)) {
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "UPDATE enrollments SET state = 'cancelled', end_reason = v.column2, ended_at = ",
        );
        qb.push_bind(now).push(" FROM (");
        qb.push_values(part, |mut b, (id, why)| {
            b.push_bind(*id).push_bind(why.as_str());
        });
        qb.push(") AS v WHERE enrollments.id = v.column1 AND enrollments.state = 'completed'");
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Cancels the queued messages of these enrollments, saying `why`.
async fn cancel_queued(
    tx: &mut sqlx::Transaction<'_, Db>,
    enrollments: &[i64],
    why: &str,
    now: i64,
) -> Result<()> {
    if enrollments.is_empty() {
        return Ok(());
    }
    let mut qb = QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "UPDATE outbox SET status = 'cancelled', last_error = ",
    );
    qb.push_bind(why)
        .push(", updated_at = ")
        .push_bind(now)
        .push(" WHERE status = 'queued' AND enrollment_id IN (");
    let mut sep = qb.separated(", ");
    for id in enrollments {
        sep.push_bind(*id);
    }
    sep.push_unseparated(")");
    qb.build().execute(&mut **tx).await?;
    Ok(())
}

/// Why a message cancelled by its enrollment's goal was not sent.
pub use crate::reasons::GOAL_REACHED;

async fn move_cursor(tx: &mut sqlx::Transaction<'_, Db>, from: i64, to: i64) -> Result<bool> {
    move_named_cursor(tx, "order_cursor", from, to).await
}

/// Moves the cursor kept in `settings` under `key` from `from` to `to` (compare-and-set);
/// says whether it moved.
pub(super) async fn move_named_cursor(
    tx: &mut sqlx::Transaction<'_, Db>,
    key: &str,
    from: i64,
    to: i64,
) -> Result<bool> {
    let moved = sqlx::query("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3")
        .bind(to.to_string())
        .bind(key)
        .bind(from.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(moved == 1)
}

/// Inserts enrollments, ignoring a duplicate trigger (the unique key); returns how many were
/// created.
pub(super) async fn insert_enrollments(
    tx: &mut sqlx::Transaction<'_, Db>,
    new: &[NewEnrollment],
) -> Result<u64> {
    let mut created = 0;
    for chunk in new.chunks(1000) {
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            format!("INSERT INTO enrollments ({COLUMNS}) "),
        );
        qb.push_values(chunk, |mut b, e| {
            push_enrollment(&mut b, e);
        });
        qb.push(" ON CONFLICT (scenario_id, customer_id, trigger_key) DO NOTHING");
        created += qb.build().execute(&mut **tx).await?.rows_affected();
    }
    Ok(created)
}

/// Inserts enrollments with the ids a back-test's replay gave them.
pub(super) async fn insert_enrollments_with_ids(
    tx: &mut sqlx::Transaction<'_, Db>,
    rows: &[(i64, NewEnrollment)],
) -> Result<()> {
    for chunk in rows.chunks(1000) {
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            format!("INSERT INTO enrollments (id, {COLUMNS}) "),
        );
        qb.push_values(chunk, |mut b, (id, e)| {
            b.push_bind(*id);
            push_enrollment(&mut b, e);
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// An enrollment as support staff see it.
#[derive(Debug, Clone, FromRow, serde::Serialize, PartialEq, Eq)]
pub struct EnrollmentView {
    pub id: i64,
    pub scenario_id: String,
    pub order_id: Option<String>,
    pub vars: String,
    pub state: String,
    pub arm: String,
    pub next_step: i64,
    pub next_step_id: Option<String>,
    pub next_due_at: Option<i64>,
    pub triggered_at: i64,
    pub goal_reached_at: Option<i64>,
    pub goal_order_id: Option<String>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

impl Store {
    /// An active enrollment of `scenario_id` for the customer with exactly `vars` (as stored)
    /// and a trigger key other than `except_key`: its id and when it was enrolled.
    pub async fn active_enrollment_like(
        &self,
        scenario_id: &str,
        customer_id: &str,
        vars: &str,
        except_key: &str,
    ) -> Result<Option<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT id, enrolled_at FROM enrollments WHERE scenario_id = $1 AND customer_id = $2 \
             AND state = 'active' AND vars = $3 AND trigger_key <> $4 ORDER BY id LIMIT 1",
        )
        .bind(scenario_id)
        .bind(customer_id)
        .bind(vars)
        .bind(except_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every enrollment of one customer, newest first.
    pub async fn customer_enrollments(&self, customer_id: &str) -> Result<Vec<EnrollmentView>> {
        Ok(sqlx::query_as(
            "SELECT id, scenario_id, order_id, vars, state, arm, next_step, next_step_id, next_due_at, triggered_at, \
             goal_reached_at, goal_order_id, ended_at, end_reason FROM enrollments \
             WHERE customer_id = $1 ORDER BY triggered_at DESC, id DESC",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
