//! The back-test's own database: a copy of a shop's customers, its order history before the
//! simulated period, and the period's orders set aside to be released hour by hour, read from
//! the shop's database with SQLite's ATTACH (the simulation database is always a SQLite file,
//! kept apart from the shop's). Also marks what the engine enqueued as `simulated`, and writes
//! what a replay (`engine::replay`) kept in memory.

use super::enrollments::insert_enrollments_with_ids;
use super::outbox::insert_outbox_as;
use super::{NewEnrollment, NewOrder, NewOutbox, OrderRow, Result, Store};
use sqlx::Connection as _;
use std::collections::HashSet;

/// About how many customers' simulated mail keeps its rendered body by default: every one of
/// a shop this size or smaller; one in `customers / BODY_SAMPLE` of a bigger one, by their
/// order in the shop's table, so that the same customers are kept every run. All of their
/// messages keep it, so that their journeys read end to end; the others keep everything but
/// the body (a year of a million-customer shop would otherwise store some 2 GB of HTML).
pub const BODY_SAMPLE: i64 = 1000;

/// Per scenario: messages simulated, customers reached, first and last send time (unix ms).
pub type Sends = Vec<(String, i64, i64, i64, i64)>;

/// What was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SimulationSource {
    pub customers: i64,
    pub history_orders: i64,
    pub period_orders: i64,
}

/// Whether the file at `path` is a back-test's database (marked by
/// [`Store::copy_shop_for_simulation`]), read without opening it for writing: `rebuy simulate`
/// replaces only such a file.
pub fn is_simulation_file(path: &std::path::Path) -> bool {
    let Some(conn) = super::bulk::open(path) else {
        return false;
    };
    conn.query_row(
        "SELECT value FROM settings WHERE key = 'simulation'",
        [],
        |r| r.get::<_, String>(0),
    )
    .is_ok()
}

impl Store {
    /// Whether this database is a back-test's (its messages are `simulated`, never sent).
    pub async fn is_simulation(&self) -> Result<bool> {
        Ok(self.setting("simulation").await?.is_some())
    }

    /// The end of the simulated period (unix ms) when this database is a back-test's.
    pub async fn simulated_until(&self) -> Result<Option<i64>> {
        Ok(self
            .setting("simulation")
            .await?
            .and_then(|v| v.split_once("..").and_then(|(_, to)| to.parse().ok())))
    }

    /// Copies from the SQLite file `source` the shop's customers (without order aggregates:
    /// the order copy sets them), its suppression list and its unsubscribe secret, and marks
    /// this database as the simulation of [`from`, `to`]. Unless `keep_bodies`, it also picks
    /// the customers whose simulated mail keeps its rendered body (see [`BODY_SAMPLE`]).
    /// Returns how many customers.
    pub async fn copy_shop_for_simulation(
        &self,
        source: &str,
        (from, to): (i64, i64),
        keep_bodies: bool,
    ) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        attach(&mut conn, source).await?;
        let copied = copy_shop(&mut conn, from, to).await;
        detach(&mut conn).await?;
        let customers = copied?;
        if !keep_bodies {
            pick_body_sample(&mut conn, customers).await?;
        }
        Ok(customers)
    }

    /// The customers whose simulated mail keeps its rendered body, or `None` if every
    /// message keeps it (`--keep-bodies`).
    pub async fn body_sample(&self) -> Result<Option<HashSet<String>>> {
        let (tables,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'sim_sample'",
        )
        .fetch_one(&self.pool)
        .await?;
        if tables == 0 {
            return Ok(None);
        }
        let (json,): (String,) =
            sqlx::query_as("SELECT COALESCE(json_group_array(customer_id), '[]') FROM sim_sample")
                .fetch_one(&self.pool)
                .await?;
        let ids: Vec<String> = super::from_json(&json)?;
        Ok(Some(ids.into_iter().collect()))
    }

    /// Copies the orders of `source` placed before `from` (the history) and sets those placed
    /// in [`from`, `to`] aside in `sim_pending`, in the order they were placed, for a ticked
    /// back-test to release hour by hour. The customers' aggregates are the history's and the
    /// order cursor is moved past it: it triggers nothing. Returns (history, period) orders.
    pub async fn copy_orders_for_ticks(
        &self,
        source: &str,
        from: i64,
        to: i64,
    ) -> Result<(i64, i64)> {
        self.copy_orders(source, (from, to), false).await
    }

    /// Copies every order of `source` placed by `to` in one pass, and sets the customers'
    /// aggregates over them: what a replay, which reads the shop's own database and keeps the
    /// period's orders in memory, leaves here (it writes this while the replay runs). Returns
    /// (history, period) orders.
    pub async fn copy_orders_for_replay(
        &self,
        source: &str,
        from: i64,
        to: i64,
    ) -> Result<(i64, i64)> {
        self.copy_orders(source, (from, to), true).await
    }

    /// The order copy of either way (`all`: the replay's), then the aggregates over what was
    /// copied.
    async fn copy_orders(
        &self,
        source: &str,
        (from, to): (i64, i64),
        all: bool,
    ) -> Result<(i64, i64)> {
        let mut conn = self.pool.acquire().await?;
        attach(&mut conn, source).await?;
        let copied = if all {
            copy_all_orders(&mut conn, from, to).await
        } else {
            copy_for_ticks(&mut conn, from, to).await
        };
        detach(&mut conn).await?;
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
    /// time): the back-test's stand-in for delivery. With a body sample (`sampled`), the
    /// rendered bodies of the others are dropped. Returns how many.
    pub async fn mark_simulated(&self, now: i64, sampled: bool) -> Result<u64> {
        let bodies = if sampled {
            ", html = CASE WHEN customer_id IN (SELECT customer_id FROM sim_sample) \
             THEN html ELSE '' END, body_text = CASE WHEN customer_id IN \
             (SELECT customer_id FROM sim_sample) THEN body_text ELSE '' END"
        } else {
            ""
        };
        Ok(sqlx::query(&format!(
            "UPDATE outbox SET status = 'simulated', sent_at = due_at, updated_at = $1{bodies} \
             WHERE status = 'queued' AND due_at <= $1"
        ))
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Every order placed in [`from`, `to`], in full, by (time, id): the period's orders that
    /// a replay keeps in memory.
    pub async fn orders_between(&self, from: i64, to: i64) -> Result<Vec<OrderRow>> {
        type Row = (i64, String, String, i64, i64, String, String);
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            // Pages of one JSON row each (see `orders_after` for why), in storage order.
            let (json,): (String,) = sqlx::query_as(
                "SELECT COALESCE(json_group_array(json_array(seq, id, customer_id, placed_at, \
                 total, currency, items)), '[]') FROM (SELECT * FROM orders \
                 WHERE seq > $1 AND placed_at >= $2 AND placed_at <= $3 ORDER BY seq LIMIT 100000)",
            )
            .bind(after)
            .bind(from)
            .bind(to)
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
    /// made it (queued ones are written as simulated, sent at their due time), and
    /// enrollments in their final state, with the ids the replay gave them.
    pub async fn write_replayed(
        &self,
        ticks: &[(i64, Vec<NewOutbox>)],
        enrollments: &[(i64, NewEnrollment)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (now, rows) in ticks {
            for chunk in rows.chunks(500) {
                let refs: Vec<&NewOutbox> = chunk.iter().collect();
                insert_outbox_as(&mut tx, &refs, *now, true).await?;
            }
        }
        insert_enrollments_with_ids(&mut tx, enrollments).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops the enrollments' secondary indexes for a replay's bulk writes and returns them,
    /// for `write_replayed_enrollments` to build once at the end.
    pub async fn drop_enrollment_indexes(&self) -> Result<Vec<(String, String)>> {
        let mut tx = self.pool.begin().await?;
        let saved = drop_indexes(&mut tx, "enrollments").await?;
        tx.commit().await?;
        Ok(saved)
    }

    /// Writes a replay's last enrollments, with the ids it gave them, in their final state,
    /// and builds the `indexes` that `drop_enrollment_indexes` dropped.
    pub async fn write_replayed_enrollments(
        &self,
        enrollments: &[(i64, NewEnrollment)],
        indexes: &[(String, String)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_enrollments_with_ids(&mut tx, enrollments).await?;
        create_indexes(&mut tx, indexes).await?;
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

async fn attach(conn: &mut sqlx::AnyConnection, source: &str) -> Result<()> {
    sqlx::query("ATTACH DATABASE $1 AS src")
        .bind(source)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn detach(conn: &mut sqlx::AnyConnection) -> Result<()> {
    sqlx::query("DETACH DATABASE src")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn copy_shop(conn: &mut sqlx::AnyConnection, from: i64, to: i64) -> Result<i64> {
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
    Ok(customers as i64)
}

/// Picks the customers whose simulated mail keeps its body: see [`BODY_SAMPLE`].
async fn pick_body_sample(conn: &mut sqlx::AnyConnection, customers: i64) -> Result<()> {
    sqlx::query("CREATE TABLE sim_sample (customer_id TEXT PRIMARY KEY)")
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO sim_sample SELECT id FROM customers WHERE rowid % $1 = 0")
        .bind((customers / BODY_SAMPLE).max(1))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn copy_for_ticks(conn: &mut sqlx::AnyConnection, from: i64, to: i64) -> Result<(i64, i64)> {
    let mut tx = conn.begin().await?;
    // The history in the shop's own order (it is all behind the cursor), with the per-customer
    // index built once afterwards instead of row by row.
    let saved = drop_indexes(&mut tx, "orders").await?;
    let history = sqlx::query(
        "INSERT INTO orders (id, customer_id, placed_at, total, currency, items) \
         SELECT id, customer_id, placed_at, total, currency, items FROM src.orders \
         WHERE placed_at < $1",
    )
    .bind(from)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    create_indexes(&mut tx, &saved).await?;
    sqlx::query(
        "CREATE TABLE sim_pending (id TEXT NOT NULL, customer_id TEXT NOT NULL, \
         placed_at BIGINT NOT NULL, total BIGINT NOT NULL, currency TEXT NOT NULL, items TEXT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let period = sqlx::query(
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
    tx.commit().await?;
    Ok((history as i64, period as i64))
}

async fn copy_all_orders(conn: &mut sqlx::AnyConnection, from: i64, to: i64) -> Result<(i64, i64)> {
    let mut tx = conn.begin().await?;
    // In the shop's own order, with the indexes built once afterwards.
    let saved = drop_indexes(&mut tx, "orders").await?;
    sqlx::query(
        "INSERT INTO orders (id, customer_id, placed_at, total, currency, items) \
         SELECT id, customer_id, placed_at, total, currency, items FROM src.orders \
         WHERE placed_at <= $1",
    )
    .bind(to)
    .execute(&mut *tx)
    .await?;
    create_indexes(&mut tx, &saved).await?;
    let (history, period): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(placed_at < $1), 0), COALESCE(SUM(placed_at >= $1), 0) FROM orders",
    )
    .bind(from)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((history, period))
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
/// they trigger nothing more.
async fn settle_orders(conn: &mut sqlx::AnyConnection) -> Result<()> {
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
