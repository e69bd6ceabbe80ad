//! What the scenario report reads: enrollments and conversions per scenario and arm, and each
//! step's funnel (messages per status, conversions after the message), last-touch attribution
//! of orders to the messages before them, in a few grouped
//! queries so that a million enrollments are counted by the database, not in Rust.

use super::{Result, Store};
use sqlx::FromRow;

/// Which enrollments a report counts: those triggered in [`since`, `as_of`] (unix ms) and,
/// unless `include_open`, only those whose goal window has closed by `as_of` (an enrollment
/// whose goal has no `within` has no window to wait for and always counts). A conversion counts
/// if it happened by `as_of`. Counting an open window would compare enrollments that have had
/// two days to convert with ones that have had thirty, and, as the treatment's conversions end
/// the wait early, favour whichever arm converts sooner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub since: i64,
    pub as_of: i64,
    pub include_open: bool,
}

impl Period {
    /// Every enrollment and conversion ever stored, open windows included.
    pub const EVERYTHING: Period = Period {
        since: i64::MIN,
        as_of: i64::MAX,
        include_open: true,
    };

    /// Enrollments triggered at or after `since` whose window has closed by `as_of`.
    pub fn closed(since: i64, as_of: i64) -> Period {
        Period {
            since,
            as_of,
            include_open: false,
        }
    }
}

/// The condition on `enrollments e` for [`Period`], binding `$1` since, `$2` as_of and `$3`
/// include_open.
pub(super) const COUNTED: &str = "e.triggered_at >= $1 AND e.triggered_at <= $2 \
     AND ($3 OR e.goal_deadline IS NULL OR e.goal_deadline <= $2)";

/// Conversions of one arm of one scenario by whole days from trigger to goal (the report's
/// conversion curves).
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionDays {
    pub scenario: String,
    pub arm: String,
    pub enrolled: i64,
    /// (day, conversions that day), ascending.
    pub days: Vec<(i64, i64)>,
}

/// Enrollments of one scenario that a [`Period`] leaves out because their goal window is still
/// open at its `as_of`.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct OpenCount {
    pub scenario_id: String,
    pub open: i64,
}

/// Enrollments of one arm of one scenario, triggered in the report's period.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct ArmCounts {
    pub scenario_id: String,
    pub arm: String,
    pub enrolled: i64,
    /// Enrollments that reached their goal (the conversion).
    pub converted: i64,
    /// The converting orders' totals, in minor units.
    pub revenue: i64,
    /// The sum of the squares of each enrollment's conversion revenue (0 when it did not
    /// convert): with `revenue`, the spread that the incremental revenue's interval needs.
    pub revenue_squares: f64,
}

/// Enrollments of one arm of one scenario whose messages recommended products (sent, or for
/// a held-out arm, what would have been sent), and how many of them bought one of those
/// products within the goal window.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct RecommendedCounts {
    pub scenario_id: String,
    pub arm: String,
    pub shown: i64,
    pub bought: i64,
}

/// One step (and variant) of one scenario: its messages per status, and how many of those
/// enrollments converted after the message went out.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct StepCounts {
    pub scenario_id: String,
    pub step_index: i64,
    pub step_id: String,
    pub variant: String,
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub held_out: i64,
    pub other: i64,
    pub converted_after: i64,
}

/// Orders credited to one step (and variant) by last touch: the customer's latest sent message
/// at most the attribution window before the order.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct TouchCounts {
    pub scenario_id: String,
    pub step_id: String,
    pub variant: String,
    pub orders: i64,
    pub revenue: i64,
}

/// A step's automatic winner.
#[derive(Debug, Clone, PartialEq, FromRow, serde::Serialize)]
pub struct VariantDecision {
    pub scenario_id: String,
    pub step_id: String,
    pub winner: String,
    pub decided_at: i64,
    pub detail: String,
}

/// One variant's decided messages: sent, whose goal window is over, and how many of those
/// enrollments converted after the message.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct VariantOutcome {
    pub variant: String,
    pub sent: i64,
    pub converted: i64,
}

/// One treatment enrollment's outcome, for the per-variant (intent-to-treat) comparison.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct EnrollmentOutcome {
    pub customer_id: String,
    pub enrolled_at: i64,
    #[sqlx(try_from = "super::Flag")]
    pub converted: bool,
    pub revenue: i64,
}

impl Store {
    /// Conversions per scenario, arm and whole day from trigger to goal, with each arm's
    /// enrollments, for the enrollments `period` counts (the conversion curves).
    pub async fn conversion_days(
        &self,
        period: Period,
        scenario: Option<&str>,
    ) -> Result<Vec<ConversionDays>> {
        let sql = format!(
            "SELECT e.scenario_id, e.arm, \
             (CASE WHEN e.goal_reached_at <= $2 THEN e.goal_reached_at END - e.triggered_at) / 86400000 AS day, \
             COUNT(*) FROM enrollments e WHERE {COUNTED} AND ($4 IS NULL OR e.scenario_id = $4) \
             GROUP BY e.scenario_id, e.arm, day ORDER BY e.scenario_id, e.arm, day"
        );
        let rows: Vec<(String, String, Option<i64>, i64)> =
            bind_period(sqlx::query_as(&sql), period)
                .bind(scenario)
                .fetch_all(&self.pool)
                .await?;
        let mut out: Vec<ConversionDays> = Vec::new();
        for (scenario_id, arm, day, n) in rows {
            let same = out
                .last()
                .is_some_and(|c| c.scenario == scenario_id && c.arm == arm);
            if !same {
                out.push(ConversionDays {
                    scenario: scenario_id,
                    arm,
                    enrolled: 0,
                    days: Vec::new(),
                });
            }
            let c = out.last_mut().expect("pushed above");
            c.enrolled += n;
            if let Some(d) = day {
                c.days.push((d, n));
            }
        }
        Ok(out)
    }

    /// Every treatment enrollment of `scenario` that `period` counts: who, when, and whether
    /// (and for how much) it converted.
    pub async fn treatment_outcomes(
        &self,
        scenario: &str,
        period: Period,
    ) -> Result<Vec<EnrollmentOutcome>> {
        let sql = format!(
            "SELECT e.customer_id, e.enrolled_at, CASE WHEN e.goal_reached_at <= $2 THEN 1 ELSE 0 END AS converted, \
             COALESCE(CASE WHEN e.goal_reached_at <= $2 THEN e.goal_revenue END, 0) AS revenue \
             FROM enrollments e WHERE {COUNTED} AND e.scenario_id = $4 AND e.arm = 'treatment'"
        );
        Ok(bind_period(sqlx::query_as(&sql), period)
            .bind(scenario)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Per scenario and arm, the enrollments `period` counts whose messages recommended
    /// products, and those whose customer ordered one of them from the message's due time to
    /// the end of the goal window (`no_goal_ms` after the message for a scenario without a
    /// goal), by the period's `as_of`.
    pub async fn recommended_counts(
        &self,
        period: Period,
        scenario: Option<&str>,
        no_goal_ms: i64,
    ) -> Result<Vec<RecommendedCounts>> {
        // The items bought and the products shown, each a JSON array in a text column.
        let (items, skus, sku, earlier, valid) = match self.backend() {
            super::Backend::Sqlite => (
                "json_each(o.items) i",
                "json_each(m.recommended) r",
                "json_extract(i.value, '$.sku')",
                "MIN",
                "json_valid(m.recommended)",
            ),
            super::Backend::Postgres => (
                "json_array_elements(CAST(o.items AS json)) i",
                "json_array_elements_text(CAST(m.recommended AS json)) r",
                "(i.value ->> 'sku')",
                "LEAST",
                // rebuy writes the column itself, always a JSON array of SKUs.
                "m.recommended LIKE '[%'",
            ),
        };
        let sql = format!(
            "SELECT m.scenario_id, e.arm, COUNT(DISTINCT e.id) AS shown, \
             COUNT(DISTINCT CASE WHEN EXISTS ( \
                 SELECT 1 FROM orders o, {items}, {skus} \
                 WHERE o.customer_id = m.customer_id AND o.placed_at >= m.due_at \
                 AND o.placed_at <= {earlier}($2, COALESCE(e.goal_deadline, m.due_at + $5)) \
                 AND {sku} = r.value \
             ) THEN e.id END) AS bought \
             FROM outbox m JOIN enrollments e ON e.id = m.enrollment_id \
             WHERE {COUNTED} AND ($4 IS NULL OR m.scenario_id = $4) \
             AND m.recommended IS NOT NULL AND {valid} \
             AND m.status IN ('sent', 'simulated', 'held_out') \
             GROUP BY m.scenario_id, e.arm ORDER BY m.scenario_id, e.arm"
        );
        Ok(bind_period(sqlx::query_as(&sql), period)
            .bind(scenario)
            .bind(no_goal_ms)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn variant_decisions(&self) -> Result<Vec<VariantDecision>> {
        Ok(sqlx::query_as(
            "SELECT scenario_id, step_id, winner, decided_at, detail FROM variant_decisions \
             ORDER BY scenario_id, step_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a step's winner unless one is recorded already; says whether this one was.
    pub async fn record_variant_decision(&self, d: &VariantDecision) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO variant_decisions (scenario_id, step_id, winner, decided_at, detail) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scenario_id, step_id) DO NOTHING",
        )
        .bind(&d.scenario_id)
        .bind(&d.step_id)
        .bind(&d.winner)
        .bind(d.decided_at)
        .bind(&d.detail)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Per variant of a step: treatment messages sent whose enrollment's goal window ended by
    /// `now` (or that has none), and how many of those converted after the message.
    pub async fn variant_outcomes(
        &self,
        scenario: &str,
        step: &str,
        now: i64,
    ) -> Result<Vec<VariantOutcome>> {
        Ok(sqlx::query_as(
            "SELECT m.variant, COUNT(*) AS sent, \
             SUM(CASE WHEN e.goal_reached_at >= m.sent_at THEN 1 ELSE 0 END) AS converted \
             FROM outbox m JOIN enrollments e ON e.id = m.enrollment_id \
             WHERE m.scenario_id = $1 AND m.step_id = $2 AND m.status IN ('sent', 'simulated') \
             AND m.variant IS NOT NULL AND (e.goal_deadline IS NULL OR e.goal_deadline <= $3) \
             GROUP BY m.variant ORDER BY m.variant",
        )
        .bind(scenario)
        .bind(step)
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Last-touch attribution of the orders placed in [`period.since`, `period.as_of`]: each
    /// order goes to the customer's latest message sent at most `window_ms` before it (over
    /// every scenario), if any; counted per step and variant of `scenario` (or of all).
    pub async fn last_touch(
        &self,
        period: Period,
        window_ms: i64,
        scenario: Option<&str>,
    ) -> Result<Vec<TouchCounts>> {
        // The status is written into the text, not bound: the lookup must match the partial
        // index on (customer_id, sent_at) of sent (or, in a back-test, simulated) messages.
        // Orders placed before the first message cannot be credited to one and are not looked
        // up (a shop's history before it started sending: most of its orders).
        let status = if self.is_simulation().await? {
            "simulated"
        } else {
            "sent"
        };
        let sql = format!(
            "SELECT m.scenario_id, m.step_id, COALESCE(m.variant, '') AS variant, \
             COUNT(*) AS orders, CAST(SUM(o.total) AS BIGINT) AS revenue \
             FROM orders o JOIN outbox m ON m.id = ( \
                 SELECT t.id FROM outbox t WHERE t.customer_id = o.customer_id \
                 AND t.status = '{status}' AND t.sent_at <= o.placed_at AND t.sent_at >= o.placed_at - $2 \
                 ORDER BY t.sent_at DESC, t.id DESC LIMIT 1) \
             WHERE o.placed_at >= $1 AND o.placed_at <= $4 AND ($3 IS NULL OR m.scenario_id = $3) \
             AND o.placed_at >= (SELECT MIN(f.sent_at) FROM outbox f WHERE f.status = '{status}') \
             GROUP BY m.scenario_id, m.step_id, m.variant"
        );
        Ok(sqlx::query_as(&sql)
            .bind(period.since)
            .bind(window_ms)
            .bind(scenario)
            .bind(period.as_of)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Enrollments, conversions and conversion revenue per scenario and arm, for the
    /// enrollments `period` counts; and per scenario, the enrollments it leaves out because
    /// their goal window is still open at its `as_of` (none when it includes open windows).
    /// One scan for both.
    pub async fn arm_counts(
        &self,
        period: Period,
        scenario: Option<&str>,
    ) -> Result<(Vec<ArmCounts>, Vec<OpenCount>)> {
        // Grouped by the columns of `enrollments_scenario` alone, so that the scan needs no
        // sort. `won` is a counted conversion's revenue (NULL otherwise), written once per sum:
        // the fewest conditions per enrollment (this scan reads every one in the period).
        let (open, won) = if period.include_open {
            (
                "0",
                "CASE WHEN e.goal_reached_at <= $2 THEN COALESCE(e.goal_revenue, 0) END",
            )
        } else {
            (
                "COUNT(CASE WHEN e.goal_deadline > $2 THEN 1 END)",
                "CASE WHEN e.goal_reached_at <= $2 AND (e.goal_deadline IS NULL OR e.goal_deadline <= $2) \
                 THEN COALESCE(e.goal_revenue, 0) END",
            )
        };
        let sql = format!(
            "SELECT e.scenario_id, e.arm, COUNT(*) - {open} AS enrolled, {open} AS open, \
             COUNT({won}) AS converted, CAST(COALESCE(SUM({won}), 0) AS BIGINT) AS revenue, \
             CAST(COALESCE(SUM(({won}) * 1.0 * ({won})), 0.0) AS DOUBLE PRECISION) AS revenue_squares \
             FROM enrollments e WHERE e.triggered_at >= $1 AND e.triggered_at <= $2 \
             AND ($3 IS NULL OR e.scenario_id = $3) \
             GROUP BY e.scenario_id, e.arm ORDER BY e.scenario_id, e.arm"
        );
        let rows: Vec<(String, String, i64, i64, i64, i64, f64)> = sqlx::query_as(&sql)
            .bind(period.since)
            .bind(period.as_of)
            .bind(scenario)
            .fetch_all(&self.pool)
            .await?;
        let mut arms = Vec::new();
        let mut open: Vec<OpenCount> = Vec::new();
        for (scenario_id, arm, enrolled, still_open, converted, revenue, revenue_squares) in rows {
            if still_open > 0 {
                match open.iter_mut().find(|o| o.scenario_id == scenario_id) {
                    Some(o) => o.open += still_open,
                    None => open.push(OpenCount {
                        scenario_id: scenario_id.clone(),
                        open: still_open,
                    }),
                }
            }
            if enrolled > 0 {
                arms.push(ArmCounts {
                    scenario_id,
                    arm,
                    enrolled,
                    converted,
                    revenue,
                    revenue_squares,
                });
            }
        }
        Ok((arms, open))
    }

    /// Each step's funnel (per variant) over the enrollments `period` counts. Grouped by the
    /// raw columns, in the order of the `outbox_funnel` index, so that the scan needs no sort
    /// (NULL variants form one group; only the output says '').
    pub async fn step_counts(
        &self,
        period: Period,
        scenario: Option<&str>,
    ) -> Result<Vec<StepCounts>> {
        let sql = format!(
            "SELECT m.scenario_id, m.step_index, m.step_id, COALESCE(m.variant, '') AS variant, \
             SUM(CASE WHEN m.status IN ('queued', 'claimed', 'sending') THEN 1 ELSE 0 END) AS queued, \
             SUM(CASE WHEN m.status IN ('sent', 'simulated') THEN 1 ELSE 0 END) AS sent, \
             SUM(CASE WHEN m.status = 'failed' THEN 1 ELSE 0 END) AS failed, \
             SUM(CASE WHEN m.status = 'held_out' THEN 1 ELSE 0 END) AS held_out, \
             SUM(CASE WHEN m.status NOT IN ('queued', 'claimed', 'sending', 'sent', 'simulated', 'failed', 'held_out') \
                 THEN 1 ELSE 0 END) AS other, \
             SUM(CASE WHEN m.status IN ('sent', 'simulated') AND e.goal_reached_at >= m.sent_at \
                 AND e.goal_reached_at <= $2 THEN 1 ELSE 0 END) AS converted_after \
             FROM outbox m JOIN enrollments e ON e.id = m.enrollment_id \
             WHERE {COUNTED} AND ($4 IS NULL OR m.scenario_id = $4) \
             GROUP BY m.scenario_id, m.step_index, m.step_id, m.variant \
             ORDER BY m.scenario_id, m.step_index, variant"
        );
        Ok(bind_period(sqlx::query_as(&sql), period)
            .bind(scenario)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// Binds a [`Period`] as `$1`, `$2` and `$3` of [`COUNTED`].
pub(super) fn bind_period<'q, O>(
    q: sqlx::query::QueryAs<'q, super::Db, O, sqlx::any::AnyArguments<'q>>,
    period: Period,
) -> sqlx::query::QueryAs<'q, super::Db, O, sqlx::any::AnyArguments<'q>> {
    q.bind(period.since)
        .bind(period.as_of)
        .bind(period.include_open)
}
