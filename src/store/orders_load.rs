//! The first import of orders into an empty PostgreSQL shop: `COPY` into the table with its
//! secondary indexes dropped, then the indexes, the customers' aggregates and the dirty marks
//! built once, all in one transaction.
//!
//! Keeping `orders`' two text indexes up to date row by row is most of PostgreSQL's work in an
//! import (a million-customer shop's 5 M orders: `COPY` with them 37 s, without them 12 s, and
//! building both afterwards 5 s). It holds the store's write lock throughout (sending and
//! other writers wait), so only `rebuy import orders` asks for it, never the daemon's jobs. Only an empty table gets this path: rows of an import into a
//! table with orders must be compared with what is stored (`upsert_orders`).

use super::{Result, Store, Target, WRITE_LOCK};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Postgres};
use std::str::FromStr;

/// Memory PostgreSQL may sort with while it builds the indexes (its default, 64 MB, makes it
/// spill a million-customer shop's index to disk); for this transaction only, and only upward.
const INDEX_BUILD_MEMORY: &str = "256MB";

/// Every customer's order aggregates set from their orders, as `AGGREGATES_FROM_ORDERS` sets
/// them (the currency of the latest order by time, then id): one pass over the orders and one
/// write per customer.
///
/// The latest order's currency is looked up only for a customer whose orders have more than
/// one: sorting every customer's orders for it (`ARRAY_AGG(… ORDER BY …)`) took 1.7 s of a
/// million customers' 4.3 s and kept PostgreSQL from splitting the pass over two workers.
const AGGREGATES: &str = "UPDATE customers SET orders_count = a.n, total_spent = a.spent, \
     first_order_at = a.first_at, last_order_at = a.last_at, \
     currency = CASE WHEN a.lo = a.hi THEN a.lo ELSE (SELECT o.currency FROM orders o \
     WHERE o.customer_id = a.customer_id ORDER BY o.placed_at DESC, o.id DESC LIMIT 1) END \
     FROM (SELECT customer_id, COUNT(*) AS n, CAST(SUM(total) AS BIGINT) AS spent, \
     MIN(placed_at) AS first_at, MAX(placed_at) AS last_at, \
     MIN(currency) AS lo, MAX(currency) AS hi FROM orders GROUP BY customer_id) AS a \
     WHERE customers.id = a.customer_id";

/// A load under way; dropping it unfinished rolls everything back (the indexes included: DDL is
/// transactional in PostgreSQL).
pub struct OrderLoad {
    /// The load's own connection, closed when it is done.
    pool: PgPool,
    tx: sqlx::Transaction<'static, Postgres>,
    /// What was dropped, to be built again: `ALTER TABLE … ADD CONSTRAINT` and `CREATE INDEX`
    /// statements, as the catalog gave them.
    rebuild: Vec<String>,
    rows: u64,
    buf: Vec<u8>,
}

/// What a finished load stored. The load is one write: of rows with the same id the last
/// wins and the others count as unchanged, as in one `upsert_orders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOutcome {
    /// Orders stored (one per id).
    pub inserted: u64,
}

impl Store {
    /// A bulk load of orders when this is a PostgreSQL shop with no orders yet, holding the
    /// store's write lock and `orders` exclusively until it is finished or dropped; `None`
    /// otherwise (SQLite, or orders already stored), for `upsert_orders`.
    pub async fn begin_order_load(&self) -> Result<Option<OrderLoad>> {
        let Target::Postgres(url) = &self.target else {
            return Ok(None);
        };
        // Asked first without a lock: an import into a shop with orders (the usual one) never
        // waits for the table's exclusive lock.
        let (empty,): (bool,) = sqlx::query_as("SELECT NOT EXISTS (SELECT 1 FROM orders)")
            .fetch_one(&self.pool)
            .await?;
        if !empty {
            return Ok(None);
        }
        let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let (empty,): (bool,) = sqlx::query_as("SELECT NOT EXISTS (SELECT 1 FROM orders)")
            .fetch_one(&mut *tx)
            .await?;
        if !empty {
            tx.rollback().await?;
            pool.close().await;
            return Ok(None);
        }
        // Empty already; truncated in this transaction, the table takes `COPY … FREEZE`: its
        // rows are written frozen and its pages marked all-visible, so the aggregates' pass
        // reads the new index alone (no visit to the table per row), and no later vacuum
        // rewrites five million rows to freeze them.
        sqlx::query("TRUNCATE orders").execute(&mut *tx).await?;
        let rebuild = drop_secondary_indexes(&mut tx).await?;
        Ok(Some(OrderLoad {
            pool,
            tx,
            rebuild,
            rows: 0,
            buf: Vec::new(),
        }))
    }
}

/// Drops `orders`' unique constraints and indexes other than the primary key, and returns the
/// statements that create them again.
async fn drop_secondary_indexes(
    tx: &mut sqlx::Transaction<'static, Postgres>,
) -> Result<Vec<String>> {
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = 'orders'::regclass AND contype = 'u' ORDER BY conname",
    )
    .fetch_all(&mut **tx)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = 'orders'::regclass AND NOT i.indisprimary \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
         ORDER BY c.relname",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut rebuild = Vec::new();
    for (name, definition) in &constraints {
        let name = quoted(name);
        sqlx::query(&format!("ALTER TABLE orders DROP CONSTRAINT {name}"))
            .execute(&mut **tx)
            .await?;
        rebuild.push(format!(
            "ALTER TABLE orders ADD CONSTRAINT {name} {definition}"
        ));
    }
    for (name, definition) in indexes {
        sqlx::query(&format!("DROP INDEX {}", quoted(&name)))
            .execute(&mut **tx)
            .await?;
        rebuild.push(definition);
    }
    Ok(rebuild)
}

/// An identifier as PostgreSQL quotes it.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl OrderLoad {
    /// Sends `orders` to the table, in the order given (a later row with the same id wins).
    pub async fn add(&mut self, orders: &[super::NewOrder]) -> Result<()> {
        if orders.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for o in orders {
            copy_row(&mut self.buf, o);
        }
        let mut copy = self
            .tx
            .copy_in_raw(
                "COPY orders (id, customer_id, placed_at, total, currency, items) FROM STDIN \
                 WITH (FREEZE)",
            )
            .await?;
        copy.send(self.buf.as_slice()).await?;
        self.rows += copy.finish().await?;
        Ok(())
    }

    /// Keeps the last row of each id, builds the indexes again, sets the customers'
    /// aggregates from their orders, marks everyone's metrics for the next refresh, and commits.
    pub async fn finish(mut self) -> Result<LoadOutcome> {
        let superseded = self.keep_last_of_each_id().await?;
        let tx = &mut self.tx;
        // Raised for this transaction, never lowered below what the server was given.
        sqlx::query(&format!(
            "SELECT set_config('maintenance_work_mem', '{INDEX_BUILD_MEMORY}', true) \
             WHERE pg_size_bytes(current_setting('maintenance_work_mem')) \
             < pg_size_bytes('{INDEX_BUILD_MEMORY}')"
        ))
        .execute(&mut **tx)
        .await?;
        for statement in &self.rebuild {
            sqlx::query(statement).execute(&mut **tx).await?;
        }
        // The planner's statistics for a table that was empty a moment ago.
        sqlx::query("ANALYZE orders").execute(&mut **tx).await?;
        sqlx::query(AGGREGATES).execute(&mut **tx).await?;
        // Everyone's metrics marked for the next refresh by one mark, not a row each; marks
        // made before the load stay (a full refresh clears them with it).
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, '1') ON CONFLICT (key) DO NOTHING",
        )
        .bind(super::metrics::EVERYONE_CHANGED)
        .execute(&mut **tx)
        .await?;
        self.tx.commit().await?;
        self.pool.close().await;
        Ok(LoadOutcome {
            inserted: self.rows - superseded,
        })
    }

    /// When the file named an id more than once (rare: the unique constraint, built first,
    /// finds it), removes all but the last row of each such id, and returns how many rows were
    /// removed.
    async fn keep_last_of_each_id(&mut self) -> Result<u64> {
        let tx = &mut self.tx;
        let Some(at) = self.rebuild.iter().position(|s| s.ends_with("UNIQUE (id)")) else {
            return Ok(0);
        };
        sqlx::query("SAVEPOINT unique_ids")
            .execute(&mut **tx)
            .await?;
        match sqlx::query(&self.rebuild[at]).execute(&mut **tx).await {
            Ok(_) => {
                // Built: nothing to build again.
                self.rebuild.remove(at);
                return Ok(0);
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {}
            Err(e) => return Err(e.into()),
        }
        sqlx::query("ROLLBACK TO SAVEPOINT unique_ids")
            .execute(&mut **tx)
            .await?;
        let removed = sqlx::query(
            "DELETE FROM orders o USING (SELECT id, MAX(seq) AS last FROM orders GROUP BY id \
             HAVING COUNT(*) > 1) AS d WHERE o.id = d.id AND o.seq < d.last",
        )
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(removed)
    }
}

/// One order as a line of `COPY`'s text format: tab-separated, with backslash, tab and line
/// breaks escaped.
fn copy_row(buf: &mut Vec<u8>, o: &super::NewOrder) {
    field(buf, &o.id);
    buf.push(b'\t');
    field(buf, &o.customer_id);
    buf.push(b'\t');
    buf.extend_from_slice(o.placed_at.to_string().as_bytes());
    buf.push(b'\t');
    buf.extend_from_slice(o.total.to_string().as_bytes());
    buf.push(b'\t');
    field(buf, &o.currency);
    buf.push(b'\t');
    field(buf, &o.items);
    buf.push(b'\n');
}

fn field(buf: &mut Vec<u8>, text: &str) {
    for b in text.bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_escapes_what_copy_would_read_as_structure() {
        let o = super::super::NewOrder {
            id: "A\tB".into(),
            customer_id: "C\\1".into(),
            placed_at: -5,
            total: 1200,
            currency: "JPY".into(),
            items: "[{\"name\":\"x\ny\r\"}]".into(),
        };
        let mut buf = Vec::new();
        copy_row(&mut buf, &o);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "A\\tB\tC\\\\1\t-5\t1200\tJPY\t[{\"name\":\"x\\ny\\r\"}]\n"
        );
    }
}
