//! Orders: upserts by the shop's id, the engine's scan of orders it has not looked at yet, and
//! lookups for rendering.

use super::QueryBuilder;
use super::{Db, Result, Store};
use serde::Serialize;
use sqlx::FromRow;
use std::collections::HashMap;

#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct OrderRow {
    pub id: String,
    pub customer_id: String,
    pub placed_at: i64,
    pub total: i64,
    pub currency: String,
    /// Line items as a JSON array.
    pub items: String,
}

/// What the tick's scan needs of a new order: no items, and the customer's zone joined in.
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct OrderEvent {
    /// Order of arrival.
    pub seq: i64,
    pub id: String,
    pub customer_id: String,
    pub placed_at: i64,
    /// In minor units.
    pub total: i64,
    pub nth: i64,
    pub timezone: Option<String>,
}

/// What an order upsert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    pub inserted: u64,
    pub updated: u64,
    /// Customers whose orders changed: their aggregates need a refresh.
    pub touched: Vec<String>,
    /// Orders now stored for another customer than before (`Moves::Allow`).
    pub moved: Vec<MovedOrder>,
    /// Orders not written because their id is stored for another customer (`Moves::Refuse`).
    pub refused: Vec<MovedOrder>,
}

/// Whether an order id stored for one customer may be written for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moves {
    /// The row is not written (the default): two sources that reuse order numbers would take
    /// each other's orders over, and mail planned from an order would show another
    /// customer's.
    Refuse,
    /// The order moves (a file that corrects whose order it is: `--move-orders`). The former
    /// customer's follow-ups planned from it end at `now`, their queued mail cancelled.
    Allow { now: i64 },
}

/// An order written with the id of one stored for another customer: a correction, or two
/// sources that reuse order numbers (the later then took the order over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovedOrder {
    pub order: String,
    pub from: String,
    pub to: String,
}

/// An order as imported.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct NewOrder {
    pub id: String,
    pub customer_id: String,
    pub placed_at: i64,
    pub total: i64,
    pub currency: String,
    pub items: String,
}

/// What one group changed, for the aggregates: its new orders, and the customers whose
/// existing orders changed (moved, re-priced), which are recomputed.
#[derive(Default)]
struct GroupChanges<'a> {
    fresh: Vec<&'a NewOrder>,
    recompute: Vec<String>,
}

/// One group of `upsert_order_groups`, after the groups before it in the same transaction.
async fn upsert_group<'a>(
    tx: &mut sqlx::Transaction<'static, Db>,
    rows: &'a [NewOrder],
    moves: Moves,
    changes: &mut GroupChanges<'a>,
) -> Result<UpsertOutcome> {
    // Rows at or below this seq were there before this group (an earlier group's included).
    let (before,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM orders")
        .fetch_one(&mut **tx)
        .await?;
    let before = before.unwrap_or(0);
    let rows = last_of_each_id(rows);
    let mut out = UpsertOutcome::default();
    for chunk in rows.chunks(super::batch(super::backend_of(tx), 6)) {
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            format!("INSERT INTO orders ({COLUMNS}) "),
        );
        push_orders(&mut qb, chunk);
        qb.push(" ON CONFLICT (id) DO NOTHING");
        let inserted = qb.build().execute(&mut **tx).await?.rows_affected();
        out.inserted += inserted;
        if inserted == chunk.len() as u64 {
            out.touched
                .extend(chunk.iter().map(|o| o.customer_id.clone()));
            changes.fresh.extend(chunk.iter().copied());
            continue;
        }
        let stored = stored_orders(tx, chunk, before).await?;
        let mut changed = Vec::new();
        let mut owners = Vec::new();
        for o in chunk {
            match stored.get(&o.id) {
                None => changes.fresh.push(*o),
                Some(old) if unchanged_by(old, o) => continue,
                Some(old) => {
                    if old.customer_id != o.customer_id {
                        let moved = MovedOrder {
                            order: o.id.clone(),
                            from: old.customer_id.clone(),
                            to: o.customer_id.clone(),
                        };
                        if moves == Moves::Refuse {
                            out.refused.push(moved);
                            continue;
                        }
                        out.moved.push(moved);
                    }
                    out.updated += 1;
                    out.touched.push(old.customer_id.clone());
                    owners.push(old.customer_id.clone());
                    changes
                        .recompute
                        .extend([old.customer_id.clone(), o.customer_id.clone()]);
                    changed.push(*o);
                }
            }
            out.touched.push(o.customer_id.clone());
        }
        if changed.is_empty() {
            continue;
        }
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            format!("INSERT INTO orders ({COLUMNS}) "),
        );
        push_orders(&mut qb, &changed);
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id, \
             placed_at = excluded.placed_at, total = excluded.total, \
             currency = excluded.currency, \
             items = CASE WHEN excluded.items = '[]' THEN orders.items ELSE excluded.items END",
        );
        qb.build().execute(&mut **tx).await?;
        rewrite_goal_revenue(tx, &changed, &owners).await?;
    }
    if let Moves::Allow { now } = moves {
        super::enrollments::end_for_moved_orders(tx, &out.moved, now).await?;
    }
    out.touched.sort();
    out.touched.dedup();
    Ok(out)
}

const COLUMNS: &str = "id, customer_id, placed_at, total, currency, items";

/// Whether writing `new` over the stored `old` would change nothing. An order sent again
/// without line items keeps the stored ones (an empty value never erases a stored one: a
/// nightly file of order totals must not wipe the items a webhook brought).
fn unchanged_by(old: &NewOrder, new: &NewOrder) -> bool {
    old.customer_id == new.customer_id
        && old.placed_at == new.placed_at
        && old.total == new.total
        && old.currency == new.currency
        && (new.items == "[]" || old.items == new.items)
}

impl Store {
    /// Inserts or updates orders by id; of two rows with the same id the later wins. New
    /// orders are inserted with `ON CONFLICT DO NOTHING`; only when a statement meets
    /// existing ids are those read back and compared, so an import of new orders reads
    /// nothing, only changed orders are rewritten, and the outcome names exactly the customers
    /// whose aggregates changed (for a moved order, both the old and the new customer). Their
    /// aggregates are recomputed in the same transaction. A row whose id is stored for
    /// another customer is not written (`UpsertOutcome::refused`; see `Moves`).
    pub async fn upsert_orders(&self, rows: &[NewOrder]) -> Result<UpsertOutcome> {
        self.upsert_orders_with(rows, Moves::Refuse).await
    }

    /// `upsert_orders`, saying whether an order may move to another customer.
    pub async fn upsert_orders_with(
        &self,
        rows: &[NewOrder],
        moves: Moves,
    ) -> Result<UpsertOutcome> {
        let mut outcomes = self.upsert_order_groups_with(&[rows], moves).await?;
        Ok(outcomes.pop().unwrap_or_default())
    }

    /// `upsert_orders` for several groups (the orders of concurrent API requests) in one
    /// transaction: one commit for all, and an outcome per group. A later group sees an earlier
    /// one's orders, as if they had been sent one after the other.
    pub async fn upsert_order_groups(&self, groups: &[&[NewOrder]]) -> Result<Vec<UpsertOutcome>> {
        self.upsert_order_groups_with(groups, Moves::Refuse).await
    }

    /// `upsert_order_groups`, saying whether an order may move to another customer.
    pub async fn upsert_order_groups_with(
        &self,
        groups: &[&[NewOrder]],
        moves: Moves,
    ) -> Result<Vec<UpsertOutcome>> {
        let mut tx = self.write_tx().await?;
        let mut outcomes = Vec::with_capacity(groups.len());
        let mut touched = Vec::new();
        let mut changes = GroupChanges::default();
        for group in groups {
            let out = upsert_group(&mut tx, group, moves, &mut changes).await?;
            touched.extend(out.touched.iter().cloned());
            outcomes.push(out);
        }
        touched.sort();
        touched.dedup();
        // In the same transaction: orders never commit without the aggregates they change.
        // New orders are added to the stored aggregates; a customer with a changed order
        // (even one inserted earlier in this transaction) is recomputed from all its orders.
        let recompute: std::collections::BTreeSet<String> = changes.recompute.into_iter().collect();
        let fresh: Vec<&NewOrder> = changes
            .fresh
            .iter()
            .copied()
            .filter(|o| !recompute.contains(&o.customer_id))
            .collect();
        super::customers::add_order_aggregates(&mut tx, &fresh).await?;
        let recompute: Vec<String> = recompute.into_iter().collect();
        if !recompute.is_empty() {
            // An order changed in place keeps its seq: readers by seq (the recommendations'
            // daily update) learn from this count that they must read everything again.
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ('orders_edited', '1') \
                 ON CONFLICT (key) DO UPDATE SET \
                 value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)",
            )
            .execute(&mut *tx)
            .await?;
        }
        super::customers::recompute_order_aggregates(&mut tx, &recompute).await?;
        super::customers::mark_metrics_dirty(&mut tx, &touched).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Orders that arrived after `cursor`, in order of arrival, each with its position among
    /// its customer's orders (`nth`). Shaped for speed: a rowid range, a row-value comparison
    /// that makes `nth` one range count over orders_customer, no heavy columns (items), and
    /// the page returned as one JSON row (sqlx's SQLite driver hands rows over from its worker
    /// thread one at a time, which costs more than the query itself at this volume).
    ///
    /// `nth_cap` stops counting there: when the engine only needs to know whether an order is
    /// a customer's first (or N-th), counting further is wasted; `None` counts exactly.
    pub async fn orders_after(
        &self,
        cursor: i64,
        limit: i64,
        nth_cap: Option<i64>,
    ) -> Result<Vec<OrderEvent>> {
        let (json,): (String,) = sqlx::query_as(&super::dialect(
            self.backend(),
            "SELECT CAST(COALESCE(json_group_array(json_array(seq, id, customer_id, placed_at, total, nth, timezone)), '[]') AS TEXT) FROM \
             (SELECT o.seq, o.id, o.customer_id, o.placed_at, o.total, c.timezone, \
             (SELECT COUNT(*) FROM (SELECT 1 FROM orders o2 WHERE o2.customer_id = o.customer_id \
             AND (o2.placed_at, o2.id) <= (o.placed_at, o.id) LIMIT $3) AS earlier) AS nth FROM orders o \
             JOIN customers c ON c.id = o.customer_id \
             WHERE o.seq > $1 ORDER BY o.seq LIMIT $2) AS page",
        ))
        .bind(cursor)
        .bind(limit)
        .bind(nth_cap.map(|c| c + 1).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        order_events(&json)
    }

    /// The orders of `customer_ids` placed at or after `since` that the tick has handled
    /// (seq up to `upto`), oldest first, for goals reached before their enrollment existed.
    /// Their `nth` is 0: these orders start nothing.
    pub async fn handled_orders_since(
        &self,
        customer_ids: &[String],
        since: i64,
        upto: i64,
    ) -> Result<Vec<OrderEvent>> {
        let mut out = Vec::new();
        for chunk in customer_ids.chunks(super::BATCH) {
            let mut qb = QueryBuilder::<Db>::in_dialect(
                self.backend(),
                "SELECT CAST(COALESCE(json_group_array(json_array(seq, id, customer_id, placed_at, total, 0, timezone)), '[]') AS TEXT) FROM \
                 (SELECT o.seq, o.id, o.customer_id, o.placed_at, o.total, c.timezone FROM orders o \
                 JOIN customers c ON c.id = o.customer_id WHERE o.placed_at >= ",
            );
            qb.push_bind(since);
            qb.push(" AND o.seq <= ");
            qb.push_bind(upto);
            qb.push(" AND o.customer_id IN ");
            super::push_in_list(&mut qb, chunk);
            qb.push(" ORDER BY o.seq) AS page");
            let (json,): (String,) = qb.build_query_as().fetch_one(&self.pool).await?;
            out.extend(order_events(&json)?);
        }
        Ok(out)
    }

    /// The highest order seq, 0 when there are no orders.
    pub async fn max_order_seq(&self) -> Result<i64> {
        let (n,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM orders")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// The customer id that ends a page of about `page` orders after customer `after`, or
    /// `None` when the rest fits in one page.
    pub async fn customer_page_end(&self, after: &str, page: i64) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT customer_id FROM orders WHERE customer_id > $1 ORDER BY customer_id LIMIT 1 OFFSET $2",
        )
        .bind(after)
        .bind(page - 1)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id,)| id))
    }

    /// The orders with a seq in `seqs` (exclusive, inclusive] of the customers in the id range
    /// (`after`, `upto`], each with its exact position among its customer's orders. One pass
    /// over orders_customer in customer order: when most orders are new (a first start on a
    /// full history), this avoids a random index lookup per order.
    pub async fn new_orders_of_customers(
        &self,
        after: &str,
        upto: Option<&str>,
        seqs: (i64, i64),
    ) -> Result<Vec<OrderEvent>> {
        let upto_clause = if upto.is_some() {
            " AND customer_id <= $4"
        } else {
            ""
        };
        let sql = format!(
            "SELECT CAST(COALESCE(json_group_array(json_array(w.seq, w.id, w.customer_id, w.placed_at, w.total, w.nth, c.timezone)), '[]') AS TEXT) \
             FROM (SELECT seq, id, customer_id, placed_at, total, \
             ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY placed_at, id) AS nth \
             FROM orders WHERE customer_id > $1{upto_clause}) AS w \
             JOIN customers c ON c.id = w.customer_id WHERE w.seq > $2 AND w.seq <= $3"
        );
        let sql = super::dialect(self.backend(), &sql);
        let mut q = sqlx::query_as(&sql).bind(after).bind(seqs.0).bind(seqs.1);
        if let Some(upto) = upto {
            q = q.bind(upto);
        }
        let (json,): (String,) = q.fetch_one(&self.pool).await?;
        order_events(&json)
    }

    /// Every order that has line items: its customer, time and items (JSON), in arrival order,
    /// handed to `f` one at a time as they are read (what the recommendations learn from).
    pub async fn for_each_order_items(&self, f: impl FnMut(&str, i64, &str)) -> Result<i64> {
        self.for_each_order_items_after(0, f).await
    }

    /// [`Store::for_each_order_items`] for the orders stored after `seq`; returns the last
    /// seq read (`seq` when there is none).
    pub async fn for_each_order_items_after(
        &self,
        seq: i64,
        mut f: impl FnMut(&str, i64, &str),
    ) -> Result<i64> {
        use futures::TryStreamExt as _;
        if let Some(conn) = self.file().as_deref().and_then(super::bulk::open) {
            return super::bulk::order_items_after(conn, seq, f).await;
        }
        let mut rows = sqlx::query_as::<_, (i64, String, i64, String)>(
            "SELECT seq, customer_id, placed_at, items FROM orders WHERE seq > $1 AND has_items = 1 ORDER BY seq",
        )
        .bind(seq)
        .fetch(&self.pool);
        let mut last = seq;
        while let Some((s, customer, placed_at, items)) = rows.try_next().await? {
            f(&customer, placed_at, &items);
            last = s;
        }
        Ok(last)
    }

    /// How many times stored orders were changed in place (an import or API call that updated
    /// an existing order): reading by seq misses such a change.
    pub async fn orders_edited(&self) -> Result<i64> {
        self.int_setting("orders_edited").await
    }

    /// The last order seq the engine has looked at.
    pub async fn order_cursor(&self) -> Result<i64> {
        self.int_setting("order_cursor").await
    }

    pub async fn order(&self, id: &str) -> Result<Option<OrderRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM orders WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The customer's most recent order placed by `now`.
    pub async fn latest_order(&self, customer_id: &str, now: i64) -> Result<Option<OrderRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM orders WHERE customer_id = $1 AND placed_at <= $2 \
             ORDER BY placed_at DESC, id DESC LIMIT 1"
        ))
        .bind(customer_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Orders by id, for a batch of enrollments.
    pub async fn orders_by_ids(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, OrderRow>> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(super::BATCH) {
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                format!("SELECT {COLUMNS} FROM orders WHERE id IN "),
            );
            super::push_in_list(&mut qb, chunk);
            let rows: Vec<OrderRow> = qb.build_query_as().fetch_all(&self.pool).await?;
            out.extend(rows.into_iter().map(|o| (o.id.clone(), o)));
        }
        Ok(out)
    }

    /// About how many orders there are, at once (the highest arrival number; orders are never
    /// deleted): the length of a progress bar.
    pub async fn order_count_estimate(&self) -> Result<i64> {
        let (n,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM orders")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unwrap_or(0))
    }

    pub async fn count_orders(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

/// An enrollment keeps its converting order's total (the scenario report adds them up): when
/// an import changes orders, their enrollments (found by the orders' previous customers) take
/// the new totals.
async fn rewrite_goal_revenue(
    tx: &mut sqlx::Transaction<'static, Db>,
    changed: &[&NewOrder],
    owners: &[String],
) -> Result<()> {
    let mut qb = QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "UPDATE enrollments SET goal_revenue = \
         (SELECT o.total FROM orders o WHERE o.id = enrollments.goal_order_id) \
         WHERE customer_id IN (",
    );
    let mut list = qb.separated(", ");
    for c in owners {
        list.push_bind(c.clone());
    }
    qb.push(") AND goal_order_id IN (");
    let mut list = qb.separated(", ");
    for o in changed {
        list.push_bind(o.id.clone());
    }
    qb.push(")");
    qb.build().execute(&mut **tx).await?;
    Ok(())
}

/// Decodes the JSON page of `orders_after` and `new_orders_of_customers`.
fn order_events(json: &str) -> Result<Vec<OrderEvent>> {
    type Row = (i64, String, String, i64, i64, i64, Option<String>);
    let rows: Vec<Row> = super::from_json(json)?;
    Ok(rows
        .into_iter()
        .map(
            |(seq, id, customer_id, placed_at, total, nth, timezone)| OrderEvent {
                seq,
                id,
                customer_id,
                placed_at,
                total,
                nth,
                timezone,
            },
        )
        .collect())
}

/// The rows to write: the last row of each id, in input order.
fn last_of_each_id(rows: &[NewOrder]) -> Vec<&NewOrder> {
    let last: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, o)| (o.id.as_str(), i))
        .collect();
    rows.iter()
        .enumerate()
        .filter(|(i, o)| last[o.id.as_str()] == *i)
        .map(|(_, o)| o)
        .collect()
}

fn push_orders<'a>(qb: &mut QueryBuilder<'a, Db>, orders: &[&'a NewOrder]) {
    qb.push_values(orders, |mut b, o| {
        b.push_bind(&o.id)
            .push_bind(&o.customer_id)
            .push_bind(o.placed_at)
            .push_bind(o.total)
            .push_bind(&o.currency)
            .push_bind(&o.items);
    });
}

/// The orders among `chunk` that were stored before this upsert began (seq <= `before`).
async fn stored_orders(
    tx: &mut sqlx::Transaction<'_, Db>,
    chunk: &[&NewOrder],
    before: i64,
) -> Result<HashMap<String, NewOrder>> {
    let mut qb = QueryBuilder::<Db>::in_dialect(
        super::backend_of(tx),
        "SELECT CAST(COALESCE(json_group_array(json_array(id, customer_id, placed_at, total, currency, items)), '[]') AS TEXT) \
         FROM orders WHERE seq <= ",
    );
    qb.push_bind(before);
    qb.push(" AND id IN ");
    super::push_in_list(&mut qb, chunk.iter().map(|o| &o.id));
    let (json,): (String,) = qb.build_query_as().fetch_one(&mut **tx).await?;
    let stored: Vec<(String, String, i64, i64, String, String)> = super::from_json(&json)?;
    Ok(stored
        .into_iter()
        .map(|(id, customer_id, placed_at, total, currency, items)| {
            (
                id.clone(),
                NewOrder {
                    id,
                    customer_id,
                    placed_at,
                    total,
                    currency,
                    items,
                },
            )
        })
        .collect())
}

impl Store {
    /// One customer's latest orders, newest first.
    pub async fn customer_orders(&self, customer_id: &str, limit: i64) -> Result<Vec<OrderRow>> {
        Ok(sqlx::query_as(
            "SELECT id, customer_id, placed_at, total, currency, items FROM orders \
             WHERE customer_id = $1 ORDER BY placed_at DESC, id DESC LIMIT $2",
        )
        .bind(customer_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
