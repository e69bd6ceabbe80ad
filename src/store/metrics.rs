//! Stored customer metrics and model fits: the orders the refresh reads (one pass, customer by
//! customer), the rows it writes (replaced in one transaction), and the rows `metrics export`
//! streams out.

use super::QueryBuilder;
use super::{Db, Result, Store};
use futures::Stream;
use serde::Serialize;

/// The setting that marks every customer as changed at once, set by a first import of orders
/// (`OrderLoad`): a million rows in `metrics_dirty` took PostgreSQL 1.7 s to write, for a
/// refresh that then had to go through everyone anyway; with it the incremental refresh
/// declines (`refresh_changed`: `None`) and a full one runs, which clears it.
pub(super) const EVERYONE_CHANGED: &str = "metrics_everyone_changed";

/// One customer's metrics as of a day.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct MetricsRow {
    pub customer_id: String,
    pub as_of: String,
    pub orders: i64,
    pub first_order: String,
    pub last_order: String,
    pub days_since_last: i64,
    pub tenure_days: i64,
    pub total_spent: i64,
    pub average_order_value: f64,
    pub frequency: i64,
    pub recency: i64,
    pub t: i64,
    pub monetary: f64,
    pub r_score: i64,
    pub f_score: i64,
    pub m_score: i64,
    pub rfm_segment: String,
    pub p_alive: Option<f64>,
    pub expected_purchases_30d: Option<f64>,
    pub expected_purchases_90d: Option<f64>,
    pub predicted_clv: Option<f64>,
    pub expected_next_order: Option<String>,
}

/// The columns of `MetricsRow`, in order (the export's header).
pub const METRICS_COLUMNS: &[&str] = &[
    "customer_id",
    "as_of",
    "orders",
    "first_order",
    "last_order",
    "days_since_last",
    "tenure_days",
    "total_spent",
    "average_order_value",
    "frequency",
    "recency",
    "t",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
    "p_alive",
    "expected_purchases_30d",
    "expected_purchases_90d",
    "predicted_clv",
    "expected_next_order",
];

/// Every stored row, by customer (built once from `METRICS_COLUMNS`).
static SELECT_METRICS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM customer_metrics ORDER BY customer_id",
        METRICS_COLUMNS.join(", ")
    )
});

impl Store {
    /// Every order's customer, time and amount, customer by customer (the covering index
    /// `orders_customer`, no table reads).
    pub fn orders_by_customer(
        &self,
    ) -> impl Stream<Item = std::result::Result<(String, i64, i64), sqlx::Error>> + '_ {
        sqlx::query_as(
            "SELECT customer_id, placed_at, total FROM orders ORDER BY customer_id, placed_at",
        )
        .fetch(&self.pool)
    }

    /// Replaces every stored metrics row with `rows` (consumed a few at a time, so they need
    /// never all be in memory), and the model fits with `fits` (model, params JSON,
    /// customers), in one transaction.
    pub async fn replace_metrics(
        &self,
        rows: impl Iterator<Item = MetricsRow>,
        fits: &[(&str, String, i64)],
        as_of: &str,
        now: i64,
    ) -> Result<()> {
        let mut rows = rows.peekable();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM customer_metrics")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM model_fits")
            .execute(&mut *tx)
            .await?;
        // 22 columns: 40 rows stay under SQLite's 999 bound parameters.
        let per_statement = metrics_per_statement(self.backend(), 40);
        while rows.peek().is_some() {
            let chunk: Vec<MetricsRow> = rows.by_ref().take(per_statement).collect();
            insert_metrics(&mut tx, &chunk, false).await?;
        }
        for (model, params, customers) in fits {
            sqlx::query(
                "INSERT INTO model_fits (model, params, customers, as_of, fitted_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(model)
            .bind(params)
            .bind(customers)
            .bind(as_of)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if self.backend() == super::Backend::Postgres {
            // Every row is new: the segments that follow are planned on the new statistics,
            // not on whatever autovacuum last saw. The metrics are committed: a failure here
            // only leaves the planner with older statistics.
            if let Err(e) = sqlx::query("ANALYZE customer_metrics")
                .execute(&self.pool)
                .await
            {
                tracing::warn!(error = %e, "the new metrics were not analyzed; autovacuum will");
            }
        }
        Ok(())
    }

    /// The stored metrics, customer by customer, as a stream (for exports of any size).
    pub fn metrics_rows(
        &self,
    ) -> impl Stream<Item = std::result::Result<MetricsRow, sqlx::Error>> + '_ {
        sqlx::query_as(SELECT_METRICS.as_str()).fetch(&self.pool)
    }

    /// The stored model fits: (model, params JSON, customers, as of).
    pub async fn model_fits(&self) -> Result<Vec<(String, String, i64, String)>> {
        Ok(
            sqlx::query_as("SELECT model, params, customers, as_of FROM model_fits ORDER BY model")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// Customers, revenue and orders of one group of the RFM report.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RfmGroup {
    /// The segment name, or the cell as "R5 F4".
    pub group: String,
    pub customers: i64,
    pub revenue: i64,
    pub orders: i64,
}

impl Store {
    /// The stored metrics by RFM segment and by R×F cell.
    pub async fn rfm_groups(&self) -> Result<(Vec<RfmGroup>, Vec<RfmGroup>)> {
        let segments = sqlx::query_as(
            "SELECT rfm_segment AS \"group\", COUNT(*) AS customers, CAST(SUM(total_spent) AS BIGINT) AS revenue, \
             CAST(SUM(orders) AS BIGINT) AS orders FROM customer_metrics GROUP BY rfm_segment",
        )
        .fetch_all(&self.pool)
        .await?;
        let cells = sqlx::query_as(
            "SELECT 'R' || r_score || ' F' || f_score AS \"group\", COUNT(*) AS customers, \
             CAST(SUM(total_spent) AS BIGINT) AS revenue, CAST(SUM(orders) AS BIGINT) AS orders FROM customer_metrics \
             GROUP BY r_score, f_score ORDER BY r_score DESC, f_score DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok((segments, cells))
    }

    /// The stored metrics of these customers, by id.
    pub async fn metrics_by_ids(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, MetricsRow>> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        // Before the first refresh there is nothing to look up (the tick asks on every page).
        let any: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM customer_metrics LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        if any.is_none() {
            return Ok(out);
        }
        for chunk in ids.chunks(super::BATCH) {
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                format!(
                    "SELECT {} FROM customer_metrics WHERE customer_id IN ",
                    METRICS_COLUMNS.join(", ")
                ),
            );
            super::push_in_list(&mut qb, chunk);
            let rows: Vec<MetricsRow> = qb.build_query_as().fetch_all(&self.pool).await?;
            out.extend(rows.into_iter().map(|r| (r.customer_id.clone(), r)));
        }
        Ok(out)
    }

    /// The day the stored metrics are as of, if any are stored.
    pub async fn metrics_as_of(&self) -> Result<Option<String>> {
        Ok(
            sqlx::query_as::<_, (String,)>("SELECT as_of FROM customer_metrics LIMIT 1")
                .fetch_optional(&self.pool)
                .await?
                .map(|(d,)| d),
        )
    }
}

impl Store {
    /// Every order's customer, time and line items, customer by customer (for the SKU
    /// intervals; the items are read from the table, not the index).
    pub fn orders_with_items(
        &self,
    ) -> impl Stream<Item = std::result::Result<(String, i64, String), sqlx::Error>> + '_ {
        sqlx::query_as(
            "SELECT customer_id, placed_at, items FROM orders ORDER BY customer_id, placed_at",
        )
        .fetch(&self.pool)
    }

    /// Replaces the stored SKU intervals.
    pub async fn replace_sku_intervals(
        &self,
        rows: &[crate::metrics::SkuInterval],
        as_of: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM sku_intervals")
            .execute(&mut *tx)
            .await?;
        for chunk in rows.chunks(super::BATCH) {
            let mut qb = super::QueryBuilder::<super::Db>::new(
                self.backend(),
                "INSERT INTO sku_intervals (sku, median_days, pairs, as_of) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(&r.sku)
                    .push_bind(r.median_days)
                    .push_bind(r.pairs as i64)
                    .push_bind(as_of);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The stored SKU intervals: SKU → median days.
    pub async fn sku_intervals(&self) -> Result<std::collections::HashMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT sku, median_days FROM sku_intervals")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Customers whose predicted next order falls on a date in `from..=to` (`YYYY-MM-DD`).
    pub async fn expected_orders_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT customer_id, expected_next_order FROM customer_metrics \
             WHERE expected_next_order >= $1 AND expected_next_order <= $2 \
             ORDER BY expected_next_order, customer_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Store {
    /// Up to `limit` customers whose orders changed since their metrics were computed, with
    /// the generation of their mark.
    pub async fn dirty_customers(&self, limit: i64) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT customer_id, gen FROM metrics_dirty ORDER BY customer_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Clears every mark, the one for everyone included (a full refresh is about to read
    /// everything).
    pub async fn clear_all_dirty(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM metrics_dirty")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(EVERYONE_CHANGED)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether every customer is marked as changed since the last full refresh (a first
    /// import of orders loaded in bulk: `OrderLoad`), so that only a full refresh is current.
    pub async fn everyone_changed(&self) -> Result<bool> {
        Ok(self.setting(EVERYONE_CHANGED).await?.is_some())
    }

    /// The orders (customer, time, amount) of `ids`, customer by customer.
    pub async fn orders_of_customers(&self, ids: &[String]) -> Result<Vec<(String, i64, i64)>> {
        let mut out = Vec::new();
        // Each chunk's orders come back as one JSON row (see `orders_after`): tens of
        // thousands of rows handed over one at a time cost more than the lookups.
        for chunk in ids.chunks(super::BATCH * 4) {
            let mut qb = super::QueryBuilder::<Db>::in_dialect(
                self.backend(),
                "SELECT CAST(COALESCE(json_group_array(json_array(customer_id, placed_at, total)), '[]') AS TEXT) \
                 FROM (SELECT customer_id, placed_at, total FROM orders WHERE customer_id IN ",
            );
            super::push_in_list(&mut qb, chunk);
            qb.push(" ORDER BY customer_id, placed_at) AS page");
            let (json,): (String,) = qb.build_query_as().fetch_one(&self.pool).await?;
            out.extend(super::from_json::<Vec<(String, i64, i64)>>(&json)?);
        }
        Ok(out)
    }
    /// One page of the incremental refresh, in one transaction (one commit, one WAL
    /// checkpoint): the page's metric rows written over the stored ones, the rows of
    /// customers left without an order deleted, the named segments re-evaluated for the page's
    /// customers (see `evaluate_segments`), and the page's dirty marks cleared (a mark renewed
    /// since stays).
    pub async fn apply_changed_page(&self, page: &ChangedPage<'_>) -> Result<ChangedOutcome> {
        let mut tx = self.write_tx().await?;
        let clock = std::time::Instant::now();
        write_metrics(&mut tx, page.rows, page.gone).await?;
        let write_secs = clock.elapsed().as_secs_f64();
        let clock = std::time::Instant::now();
        let ids: Vec<String> = page.handled.iter().map(|(id, _)| id.clone()).collect();
        let changes =
            super::segments::evaluate_scoped(&mut tx, page.segments, &ids, page.as_of, page.now)
                .await?;
        let segments_secs = clock.elapsed().as_secs_f64();
        let clock = std::time::Instant::now();
        delete_dirty(&mut tx, page.handled).await?;
        tx.commit().await?;
        Ok(ChangedOutcome {
            changes,
            write_secs,
            segments_secs,
            commit_secs: clock.elapsed().as_secs_f64(),
        })
    }
}

/// One page of the incremental refresh (see `Store::apply_changed_page`).
pub struct ChangedPage<'a> {
    pub rows: &'a [MetricsRow],
    pub gone: &'a [String],
    /// The named segments (name, compiled condition), in definition order.
    pub segments: &'a [(&'a str, &'a crate::segment::SqlCondition)],
    /// The page's (customer, dirty generation) marks: its customers are the segments' scope.
    pub handled: &'a [(String, i64)],
    pub as_of: &'a str,
    pub now: i64,
}

/// What writing a page did: each segment's change, and the seconds spent writing the rows,
/// evaluating the segments, and clearing the marks and committing.
#[derive(Debug, Clone)]
pub struct ChangedOutcome {
    pub changes: Vec<super::MembershipChange>,
    pub write_secs: f64,
    pub segments_secs: f64,
    pub commit_secs: f64,
}

/// Writes `rows` over the stored rows of the same customers and deletes the rows of `gone`.
async fn write_metrics(
    tx: &mut sqlx::Transaction<'static, Db>,
    rows: &[MetricsRow],
    gone: &[String],
) -> Result<()> {
    for chunk in gone.chunks(super::BATCH) {
        let mut qb = super::QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "DELETE FROM customer_metrics WHERE customer_id IN ",
        );
        super::push_in_list(&mut qb, chunk);
        qb.build().execute(&mut **tx).await?;
    }
    // 22 binds a row: 400 rows stay well under SQLite's 32,766 bound values.
    let per_statement = metrics_per_statement(super::backend_of(tx), 400);
    for chunk in rows.chunks(per_statement) {
        insert_metrics(tx, chunk, true).await?;
    }
    Ok(())
}

/// Inserts `rows` into `customer_metrics`; with `upsert`, over the stored rows of the same
/// customers. (The rows as one JSON parameter unpacked by PostgreSQL's
/// `json_populate_recordset` were tried there: the full refresh's writes took 18.2 s against
/// 13.4 s, so bound values stay.)
async fn insert_metrics(
    tx: &mut sqlx::Transaction<'static, Db>,
    rows: &[MetricsRow],
    upsert: bool,
) -> Result<()> {
    let mut qb = super::QueryBuilder::<Db>::new(
        super::backend_of(tx),
        format!(
            "INSERT INTO customer_metrics ({}) ",
            METRICS_COLUMNS.join(", ")
        ),
    );
    qb.push_values(rows, |mut b, r| {
        push_metrics_row(&mut b, r);
    });
    if upsert {
        let updates: Vec<String> = METRICS_COLUMNS[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        qb.push(format!(
            " ON CONFLICT (customer_id) DO UPDATE SET {}",
            updates.join(", ")
        ));
    }
    qb.build().execute(&mut **tx).await?;
    Ok(())
}

/// Clears the marks of `handled` (customer, generation); a mark renewed since stays.
async fn delete_dirty(
    tx: &mut sqlx::Transaction<'static, Db>,
    handled: &[(String, i64)],
) -> Result<()> {
    for chunk in handled.chunks(super::BATCH) {
        let mut qb = super::QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "DELETE FROM metrics_dirty WHERE (customer_id, gen) IN (VALUES ",
        );
        let mut sep = qb.separated(", ");
        for (id, gen) in chunk {
            sep.push("(");
            sep.push_bind_unseparated(id);
            sep.push_unseparated(", ");
            sep.push_bind_unseparated(*gen);
            sep.push_unseparated(")");
        }
        qb.push(")");
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Metrics rows per multi-row statement: `on_sqlite` there, [`super::batch`] elsewhere.
fn metrics_per_statement(backend: super::Backend, on_sqlite: usize) -> usize {
    match backend {
        super::Backend::Sqlite => on_sqlite,
        backend => super::batch(backend, METRICS_COLUMNS.len()),
    }
}

/// One row's values, in `METRICS_COLUMNS` order (22 binds: 40 rows stay under SQLite's 999).
fn push_metrics_row<'a>(
    b: &mut super::sql::Separated<'_, 'a, Db, &'static str>,
    r: &'a MetricsRow,
) {
    b.push_bind(&r.customer_id)
        .push_bind(&r.as_of)
        .push_bind(r.orders)
        .push_bind(&r.first_order)
        .push_bind(&r.last_order)
        .push_bind(r.days_since_last)
        .push_bind(r.tenure_days)
        .push_bind(r.total_spent)
        .push_bind(r.average_order_value)
        .push_bind(r.frequency)
        .push_bind(r.recency)
        .push_bind(r.t)
        .push_bind(r.monetary)
        .push_bind(r.r_score)
        .push_bind(r.f_score)
        .push_bind(r.m_score)
        .push_bind(&r.rfm_segment)
        .push_bind(r.p_alive)
        .push_bind(r.expected_purchases_30d)
        .push_bind(r.expected_purchases_90d)
        .push_bind(r.predicted_clv)
        .push_bind(&r.expected_next_order);
}
