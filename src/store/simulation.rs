//! The back-test's own database: a copy of a shop's customers, its order history before the
//! simulated period, and the period's orders set aside to be released hour by hour, read from
//! the shop's database with SQLite's ATTACH (the simulation database is always a SQLite file,
//! kept apart from the shop's). Also marks what the engine enqueued as `simulated`, and writes
//! what a replay (`engine::replay`) kept in memory.

use super::enrollments::insert_enrollments_with_ids;
use super::outbox::insert_outbox_as;
use super::{NewEnrollment, NewOrder, NewOutbox, OrderRow, Result, Store};
use sqlx::Connection as _;

/// Per scenario: messages simulated, customers reached, first and last send time (unix ms).
pub type Sends = Vec<(String, i64, i64, i64, i64)>;

/// What was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SimulationSource {
    pub customers: i64,
    pub history_orders: i64,
    pub period_orders: i64,
}

impl Store {
    /// Whether this database is a back-test's (its messages are `simulated`, never sent).
    pub async fn is_simulation(&self) -> Result<bool> {
        Ok(self.setting("simulation").await?.is_some())
    }

    /// Copies the customers of the SQLite file `source` (their order aggregates recomputed
    /// from the copied orders, so nothing after `from` leaks in), its orders placed before
    /// `from`, and sets its orders placed in [`from`, `to`] aside in `sim_pending` in the
    /// order they were placed. The order cursor is moved past the history: it triggers nothing.
    pub async fn copy_for_simulation(
        &self,
        source: &str,
        from: i64,
        to: i64,
    ) -> Result<SimulationSource> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("ATTACH DATABASE $1 AS src")
            .bind(source)
            .execute(&mut *conn)
            .await?;
        let copied = copy_rows(&mut conn, from, to).await;
        sqlx::query("DETACH DATABASE src")
            .execute(&mut *conn)
            .await?;
        let copied = copied?;
        settle_orders(&mut conn).await?;
        Ok(copied)
    }

    /// The set-aside orders placed after `after` and at or before `upto`, oldest first.
    pub async fn pending_orders(&self, after: i64, upto: i64) -> Result<Vec<NewOrder>> {
        Ok(sqlx::query_as(
            "SELECT id, customer_id, placed_at, total, currency, items FROM sim_pending \
             WHERE placed_at > $1 AND placed_at <= $2 ORDER BY placed_at, rowid",
        )
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks every message the engine queued, due by `now`, as `simulated` (sent at its due
    /// time): the back-test's stand-in for delivery. Returns how many.
    pub async fn mark_simulated(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE outbox SET status = 'simulated', sent_at = due_at, updated_at = $1 \
             WHERE status = 'queued' AND due_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Every set-aside order of the period, in full, in the order they were placed (a
    /// replay keeps them in memory).
    pub async fn pending_all(&self) -> Result<Vec<OrderRow>> {
        type Row = (i64, String, String, i64, i64, String, String);
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            // Pages of one JSON row each (see `orders_after` for why).
            let (json,): (String,) = sqlx::query_as(
                "SELECT COALESCE(json_group_array(json_array(rowid, id, customer_id, placed_at, \
                 total, currency, items)), '[]') FROM (SELECT rowid, * FROM sim_pending \
                 WHERE rowid > $1 ORDER BY rowid LIMIT 100000)",
            )
            .bind(after)
            .fetch_one(&self.pool)
            .await?;
            let rows: Vec<Row> = super::from_json(&json)?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.0;
            out.extend(rows.into_iter().map(|r| OrderRow {
                id: r.1,
                customer_id: r.2,
                placed_at: r.3,
                total: r.4,
                currency: r.5,
                items: r.6,
            }));
        }
        out.sort_by(|a, b| (a.placed_at, &a.id).cmp(&(b.placed_at, &b.id)));
        Ok(out)
    }

    /// Writes the messages a replay made, each group with the virtual time of the tick that
    /// made it; queued ones are written as simulated, sent at their due time.
    pub async fn write_replayed_messages(&self, ticks: &[(i64, Vec<NewOutbox>)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (now, rows) in ticks {
            for chunk in rows.chunks(500) {
                let refs: Vec<&NewOutbox> = chunk.iter().collect();
                insert_outbox_as(&mut tx, &refs, *now, true).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes a replay's enrollments, with the ids it gave them, in their final state.
    pub async fn write_replayed_enrollments(
        &self,
        enrollments: &[(i64, NewEnrollment)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // A bulk write: the secondary indexes are built once afterwards, not row by row.
        let saved = drop_indexes(&mut tx, "enrollments").await?;
        insert_enrollments_with_ids(&mut tx, enrollments).await?;
        create_indexes(&mut tx, &saved).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes the period's orders into the orders table, every customer's order aggregates
    /// over them, and the order cursor past them: what a ticked back-test leaves at its end.
    /// A replay, which reads neither, does this while it runs.
    pub async fn release_all_pending(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let saved = drop_indexes(&mut tx, "orders").await?;
        sqlx::query(
            "INSERT INTO orders (id, customer_id, placed_at, total, currency, items) \
             SELECT id, customer_id, placed_at, total, currency, items FROM sim_pending \
             ORDER BY placed_at, id",
        )
        .execute(&mut *tx)
        .await?;
        create_indexes(&mut tx, &saved).await?;
        settle_orders(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Per scenario: messages simulated, customers reached, first and last send time (what
    /// a replay also counts as it goes).
    pub async fn simulated_sends(&self) -> Result<Sends> {
        Ok(sqlx::query_as(
            "SELECT scenario_id, COUNT(*), COUNT(DISTINCT customer_id), MIN(sent_at), MAX(sent_at) \
             FROM outbox WHERE status = 'simulated' GROUP BY scenario_id ORDER BY scenario_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

async fn copy_rows(
    conn: &mut sqlx::SqliteConnection,
    from: i64,
    to: i64,
) -> Result<SimulationSource> {
    let mut tx = conn.begin().await?;
    let customers = sqlx::query(
        "INSERT INTO customers (id, email, name, timezone, locale, attributes, created_at, \
         updated_at, marketing_consent, consent_at) \
         SELECT id, email, name, timezone, locale, attributes, created_at, updated_at, \
         marketing_consent, consent_at FROM src.customers",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // The history in the shop's own order (it is all behind the cursor), with the per-customer
    // index built once afterwards instead of row by row.
    let saved = drop_indexes(&mut tx, "orders").await?;
    let history_orders = sqlx::query(
        "INSERT INTO orders (id, customer_id, placed_at, total, currency, items) \
         SELECT id, customer_id, placed_at, total, currency, items FROM src.orders \
         WHERE placed_at < $1",
    )
    .bind(from)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    create_indexes(&mut tx, &saved).await?;
    // Today's suppression list: a back-test withholds what the shop would withhold now.
    sqlx::query(
        "INSERT INTO suppressions (email, kind, reason, customer_id, created_at) \
         SELECT email, kind, reason, customer_id, created_at FROM src.suppressions",
    )
    .execute(&mut *tx)
    .await?;
    // The shop's unsubscribe secret, so that simulated mail carries the links live mail would.
    sqlx::query(
        "INSERT INTO settings (key, value) SELECT key, value FROM src.settings \
         WHERE key = 'unsubscribe_secret' ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "CREATE TABLE sim_pending (id TEXT NOT NULL, customer_id TEXT NOT NULL, \
         placed_at BIGINT NOT NULL, total BIGINT NOT NULL, currency TEXT NOT NULL, items TEXT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let period_orders = sqlx::query(
        "INSERT INTO sim_pending SELECT id, customer_id, placed_at, total, currency, items \
         FROM src.orders WHERE placed_at >= $1 AND placed_at <= $2 ORDER BY placed_at, seq",
    )
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("CREATE INDEX sim_pending_placed ON sim_pending (placed_at)")
        .execute(&mut *tx)
        .await?;
    // What `outbox_customer_sent` is to sent messages, for last-touch attribution.
    sqlx::query(
        "CREATE INDEX outbox_customer_simulated ON outbox (customer_id, sent_at) \
         WHERE status = 'simulated'",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ('simulation', $1 || '..' || $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(from.to_string())
    .bind(to.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(SimulationSource {
        customers: customers as i64,
        history_orders: history_orders as i64,
        period_orders: period_orders as i64,
    })
}

/// Drops the secondary indexes of `table` (not those of its constraints) and returns their
/// definitions, for `create_indexes` after a bulk write.
async fn drop_indexes(
    tx: &mut sqlx::Transaction<'_, super::Db>,
    table: &str,
) -> Result<Vec<(String, String)>> {
    let saved: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 \
         AND sql IS NOT NULL ORDER BY name",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await?;
    for (name, _) in &saved {
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(saved)
}

async fn create_indexes(
    tx: &mut sqlx::Transaction<'_, super::Db>,
    saved: &[(String, String)],
) -> Result<()> {
    for (_, sql) in saved {
        sqlx::query(sql).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Every customer's order aggregates over the stored orders, and the order cursor past them:
/// whatever orders are stored trigger nothing more.
async fn settle_orders(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    sqlx::query(&format!(
        "{}{}",
        super::customers::AGGREGATES_FROM_ORDERS,
        super::customers::AGGREGATES_END
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE settings SET value = (SELECT CAST(COALESCE(MAX(seq), 0) AS TEXT) FROM orders) \
         WHERE key = 'order_cursor'",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
