//! Customers: upserts by the shop's id, lookups by id or e-mail, and the order aggregates.

use super::QueryBuilder;
use super::{push_in_list, Db, Result, Store, StoreError};
use serde::Serialize;
use sqlx::FromRow;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct CustomerRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub timezone: Option<String>,
    pub locale: Option<String>,
    pub attributes: String,
    pub orders_count: i64,
    pub total_spent: i64,
    pub currency: Option<String>,
    pub first_order_at: Option<i64>,
    pub last_order_at: Option<i64>,
    /// 1 consented to marketing mail, 0 refused, NULL never stated.
    pub marketing_consent: Option<i64>,
    pub consent_at: Option<i64>,
    /// The customer's stored metrics (`rebuy refresh`), loaded by `customers_with_metrics`
    /// and `find_customer_with_metrics` for templates and conditions; None otherwise, before
    /// the first refresh, or without an order.
    #[sqlx(skip)]
    #[serde(skip)]
    pub metrics: Option<Box<super::MetricsRow>>,
    /// The named segments the customer is in, loaded with the metrics.
    #[sqlx(skip)]
    #[serde(skip)]
    pub segments: Vec<String>,
}

impl CustomerRow {
    /// Whether marketing mail may go to this customer.
    pub fn consents(&self) -> bool {
        self.marketing_consent == Some(1)
    }
}

/// A customer as imported.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCustomer {
    pub id: String,
    pub email: String,
    pub name: String,
    pub timezone: Option<String>,
    pub locale: Option<String>,
    /// Free attributes as a JSON object.
    pub attributes: String,
    /// Marketing consent as imported; `None` leaves the stored value.
    pub marketing_consent: Option<bool>,
    /// When consent was given or refused (unix ms); `None` leaves the stored value.
    pub consent_at: Option<i64>,
}

const COLUMNS: &str = "id, email, name, timezone, locale, attributes, orders_count, total_spent, \
                       currency, first_order_at, last_order_at, marketing_consent, consent_at";

impl Store {
    /// Inserts or updates customers by id. Returns (inserted, updated); rows whose values are
    /// unchanged are not written at all, so importing a file twice changes nothing.
    pub async fn upsert_customers(&self, rows: &[NewCustomer], now: i64) -> Result<(u64, u64)> {
        // It reads (which ids exist) before it writes: a deferred transaction could not become
        // a writer once another connection had committed since its read (SQLite's
        // SQLITE_BUSY, a 500 for a webhook while the daemon wrote), so it takes the write lock
        // at once.
        let mut tx = self.write_tx().await?;
        let (mut inserted, mut updated) = (0, 0);
        for chunk in rows.chunks(super::batch(self.backend(), 10)) {
            let ids: Vec<String> = chunk.iter().map(|c| c.id.clone()).collect();
            let existing = existing_ids(&mut tx, "customers", &ids).await?;
            let mut qb = QueryBuilder::<Db>::new(
                self.backend(),
                "INSERT INTO customers (id, email, name, timezone, locale, attributes, marketing_consent, consent_at, created_at, updated_at) ",
            );
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(&c.id)
                    .push_bind(&c.email)
                    .push_bind(&c.name)
                    .push_bind(&c.timezone)
                    .push_bind(&c.locale)
                    .push_bind(&c.attributes)
                    .push_bind(c.marketing_consent.map(i64::from))
                    .push_bind(c.consent_at)
                    .push_bind(now)
                    .push_bind(now);
            });
            // An empty cell never erases a stored value (name, zone, locale, attributes), and
            // only rows whose values differ are rewritten: re-imports leave no trace. A consent
            // statement older than the stored one (both with their time) is ignored: a file
            // exported before a withdrawal must not give consent back.
            qb.push(format!(
                " ON CONFLICT (id) DO UPDATE SET email = excluded.email, \
                 name = CASE WHEN excluded.name = '' THEN customers.name ELSE excluded.name END, \
                 timezone = COALESCE(excluded.timezone, customers.timezone), \
                 locale = COALESCE(excluded.locale, customers.locale), \
                 attributes = CASE WHEN excluded.attributes = '{{}}' THEN customers.attributes ELSE excluded.attributes END, \
                 marketing_consent = CASE WHEN {STATED} \
                   THEN excluded.marketing_consent ELSE customers.marketing_consent END, \
                 consent_at = CASE WHEN {STATED} THEN {STATED_AT} ELSE customers.consent_at END, \
                 updated_at = excluded.updated_at \
                 WHERE customers.email IS DISTINCT FROM excluded.email \
                 OR (excluded.name <> '' AND customers.name IS DISTINCT FROM excluded.name) \
                 OR (excluded.timezone IS NOT NULL AND customers.timezone IS DISTINCT FROM excluded.timezone) \
                 OR (excluded.locale IS NOT NULL AND customers.locale IS DISTINCT FROM excluded.locale) \
                 OR (excluded.attributes <> '{{}}' AND customers.attributes IS DISTINCT FROM excluded.attributes) \
                 OR ({STATED} AND (customers.marketing_consent IS DISTINCT FROM excluded.marketing_consent \
                   OR customers.consent_at IS DISTINCT FROM {STATED_AT}))"
            ));
            let affected = qb.build().execute(&mut *tx).await?.rows_affected();
            let new = chunk.iter().filter(|c| !existing.contains(&c.id)).count() as u64;
            inserted += new;
            updated += affected.saturating_sub(new);
        }
        tx.commit().await?;
        Ok((inserted, updated))
    }

    /// Every customer, sorted by id. Read in pages of one JSON row each (see `orders_after`
    /// for why).
    pub async fn all_customers(&self) -> Result<Vec<CustomerRow>> {
        self.customer_pages(
            &format!(
                "SELECT CAST(COALESCE(json_group_array(json_array({COLUMNS})), '[]') AS TEXT) FROM \
                 (SELECT {COLUMNS} FROM customers WHERE id > $1 ORDER BY id LIMIT 50000) AS page"
            ),
            None,
        )
        .await
    }

    /// Every customer, sorted by id, with their order aggregates over the orders placed before
    /// `before` only: a back-test's replay starts from them.
    pub async fn customers_as_of(&self, before: i64) -> Result<Vec<CustomerRow>> {
        // The orders of each customer of a page, read from the per-customer index.
        let sql = "SELECT CAST(COALESCE(json_group_array(json_array(id, email, name, timezone, locale, \
             attributes, json_extract(a, '$[0]'), json_extract(a, '$[1]'), cur, \
             json_extract(a, '$[2]'), json_extract(a, '$[3]'), marketing_consent, consent_at)), '[]') AS TEXT) \
             FROM (SELECT c.*, (SELECT json_array(COUNT(*), CAST(COALESCE(SUM(o.total), 0) AS BIGINT), \
             MIN(o.placed_at), MAX(o.placed_at)) FROM orders o \
             WHERE o.customer_id = c.id AND o.placed_at < $2) AS a, \
             (SELECT o.currency FROM orders o WHERE o.customer_id = c.id AND o.placed_at < $2 \
             ORDER BY o.placed_at DESC, o.id DESC LIMIT 1) AS cur \
             FROM customers c WHERE c.id > $1 ORDER BY c.id LIMIT 50000) AS page";
        self.customer_pages(sql, Some(before)).await
    }

    /// The customers that `sql` returns a page of at a time, as one JSON array of rows in
    /// `COLUMNS` order, given the last id so far (`$1`) and `arg` (`$2`).
    async fn customer_pages(&self, sql: &str, arg: Option<i64>) -> Result<Vec<CustomerRow>> {
        let sql = super::dialect(self.backend(), sql);
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let mut query = sqlx::query_as(&sql).bind(&after);
            if let Some(arg) = arg {
                query = query.bind(arg);
            }
            let (json,): (String,) = query.fetch_one(&self.pool).await?;
            let page: Vec<CustomerRow> = customers_from_json(&json)?.collect();
            // The largest id of the page (PostgreSQL's json_agg need not keep the order).
            let Some(last) = page.iter().map(|c| &c.id).max() else {
                return Ok(out);
            };
            after = last.clone();
            out.extend(page);
        }
    }

    /// The ids among `ids` that exist as customers.
    pub async fn existing_customer_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        let mut conn = self.pool.acquire().await?;
        let mut found = HashSet::new();
        for chunk in ids.chunks(super::BATCH) {
            found.extend(existing_ids(&mut conn, "customers", chunk).await?);
        }
        Ok(found)
    }

    /// Customers by id, for a batch of orders or enrollments.
    pub async fn customers_by_ids(&self, ids: &[String]) -> Result<HashMap<String, CustomerRow>> {
        let mut out = HashMap::with_capacity(ids.len());
        let select = super::dialect(
            self.backend(),
            &format!(
                "SELECT CAST(COALESCE(json_group_array(json_array({COLUMNS})), '[]') AS TEXT) \
                 FROM customers WHERE id IN "
            ),
        )
        .into_owned();
        for chunk in ids.chunks(super::BATCH) {
            // One JSON row per chunk (see `orders_after` for why): the send path reads a
            // batch's customers here.
            let mut qb = QueryBuilder::<Db>::new(self.backend(), &select);
            push_in_list(&mut qb, chunk);
            let (json,): (String,) = qb.build_query_as().fetch_one(&self.pool).await?;
            out.extend(customers_from_json(&json)?.map(|c| (c.id.clone(), c)));
        }
        Ok(out)
    }

    /// The customers by id with their stored metrics attached (`CustomerRow::metrics`), for
    /// templates and conditions; plain `customers_by_ids` for everything else.
    pub async fn customers_with_metrics(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, CustomerRow>> {
        let mut out = self.customers_by_ids(ids).await?;
        self.attach_metrics(&mut out).await?;
        Ok(out)
    }

    /// A customer by the shop's id or, failing that, by e-mail address.
    pub async fn find_customer(&self, id_or_email: &str) -> Result<CustomerRow> {
        let by_id: Option<CustomerRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM customers WHERE id = $1"))
                .bind(id_or_email)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(c) = by_id {
            return Ok(c);
        }
        let by_email: Vec<CustomerRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM customers WHERE lower(email) = $1 ORDER BY id LIMIT 2"
        ))
        // ASCII letters only, as both backends lower-case the stored address (see
        // `search_customers`), so the index on `lower(email)` answers.
        .bind(crate::domain::email_lookup_key(id_or_email))
        .fetch_all(&self.pool)
        .await?;
        match by_email.len() {
            1 => Ok(by_email.into_iter().next().expect("one row")),
            n => Err(StoreError::NoCustomer {
                given: id_or_email.to_string(),
                shared: n > 1,
            }),
        }
    }

    /// `find_customer` with the stored metrics and segment names attached.
    pub async fn find_customer_with_metrics(&self, id_or_email: &str) -> Result<CustomerRow> {
        let c = self.find_customer(id_or_email).await?;
        let id = c.id.clone();
        let mut one = HashMap::from([(id.clone(), c)]);
        self.attach_metrics(&mut one).await?;
        Ok(one.remove(&id).expect("the customer just found"))
    }

    /// Fills in each customer's metrics and segment names.
    async fn attach_metrics(&self, customers: &mut HashMap<String, CustomerRow>) -> Result<()> {
        let ids: Vec<String> = customers.keys().cloned().collect();
        let mut metrics = self.metrics_by_ids(&ids).await?;
        let mut segments = self.segments_of(&ids).await?;
        for (id, c) in customers.iter_mut() {
            c.metrics = metrics.remove(id).map(Box::new);
            c.segments = segments.remove(id).unwrap_or_default();
        }
        Ok(())
    }

    /// Recomputes order aggregates (count, total, first/last order, currency) for the given
    /// customers. Called after their orders change.
    pub async fn refresh_order_aggregates(&self, customer_ids: &[String]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        set_order_aggregates(&mut tx, customer_ids).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Recomputes the order aggregates of `customer_ids` inside the caller's transaction, so that
/// orders and the aggregates they change commit together, and marks their metrics dirty.
pub(super) async fn set_order_aggregates(
    tx: &mut sqlx::AnyConnection,
    customer_ids: &[String],
) -> Result<()> {
    recompute_order_aggregates(tx, customer_ids).await?;
    mark_metrics_dirty(tx, customer_ids).await
}

/// Recomputes customers' order aggregates from all their orders.
pub(super) async fn recompute_order_aggregates(
    tx: &mut sqlx::AnyConnection,
    customer_ids: &[String],
) -> Result<()> {
    for chunk in customer_ids.chunks(super::BATCH) {
        // One grouped pass over the chunk's orders (UPDATE … FROM runs on SQLite and
        // PostgreSQL alike), index-only over orders_customer; the latest order's currency
        // is one index seek per customer.
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            format!("{AGGREGATES_FROM_ORDERS} WHERE customer_id IN "),
        );
        push_in_list(&mut qb, chunk);
        qb.push(AGGREGATES_END);
        qb.build().execute(&mut *tx).await?;
        // A customer left without orders (their only order moved to another) has no group
        // above: their aggregates go back to none.
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "UPDATE customers SET orders_count = 0, total_spent = 0, first_order_at = NULL, \
             last_order_at = NULL, currency = NULL WHERE orders_count <> 0 AND NOT EXISTS \
             (SELECT 1 FROM orders o WHERE o.customer_id = customers.id) AND id IN ",
        );
        push_in_list(&mut qb, chunk);
        qb.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// One customer's new orders, summed: what `add_order_aggregates` adds to the stored
/// aggregates.
struct Delta<'a> {
    n: i64,
    spent: i64,
    first_at: i64,
    /// The latest new order's (placed_at, id) and currency.
    last: (i64, &'a str),
    currency: &'a str,
}

/// Adds orders that are new (inserted in this transaction, not changed later in it) to their
/// customers' stored aggregates: count and total add up, first and last order move outward,
/// and the currency follows the latest order. Exact, and constant in the customer's history,
/// unlike recomputing; when a new order ties the stored last order's time, the currency is
/// read back from the orders (which order is "latest" then depends on the ids).
pub(super) async fn add_order_aggregates(
    tx: &mut sqlx::AnyConnection,
    fresh: &[&super::NewOrder],
) -> Result<()> {
    let mut deltas: std::collections::BTreeMap<&str, Delta> = Default::default();
    for o in fresh {
        let d = deltas.entry(&o.customer_id).or_insert(Delta {
            n: 0,
            spent: 0,
            first_at: o.placed_at,
            last: (o.placed_at, &o.id),
            currency: &o.currency,
        });
        d.n += 1;
        d.spent += o.total;
        d.first_at = d.first_at.min(o.placed_at);
        if (o.placed_at, o.id.as_str()) >= d.last {
            d.last = (o.placed_at, &o.id);
            d.currency = &o.currency;
        }
    }
    let rows: Vec<(&str, Delta)> = deltas.into_iter().collect();
    for chunk in rows.chunks(super::batch(super::backend_of(tx), 6)) {
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "WITH v (id, n, spent, first_at, last_at, cur) AS (",
        );
        qb.push_values(chunk, |mut b, (id, d)| {
            b.push_bind(*id)
                .push_bind(d.n)
                .push_bind(d.spent)
                .push_bind(d.first_at)
                .push_bind(d.last.0)
                .push_bind(d.currency);
        });
        qb.push(
            ") UPDATE customers SET orders_count = customers.orders_count + v.n, \
             total_spent = customers.total_spent + v.spent, \
             first_order_at = CASE WHEN customers.first_order_at IS NULL \
               OR v.first_at < customers.first_order_at THEN v.first_at ELSE customers.first_order_at END, \
             last_order_at = CASE WHEN customers.last_order_at IS NULL \
               OR v.last_at > customers.last_order_at THEN v.last_at ELSE customers.last_order_at END, \
             currency = CASE WHEN customers.last_order_at IS NULL OR v.last_at > customers.last_order_at \
               THEN v.cur WHEN v.last_at = customers.last_order_at THEN \
               (SELECT o.currency FROM orders o WHERE o.customer_id = customers.id \
               ORDER BY o.placed_at DESC, o.id DESC LIMIT 1) ELSE customers.currency END \
             FROM v WHERE customers.id = v.id",
        );
        qb.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Marks customers' metrics out of date until the next refresh (incremental or full).
pub(super) async fn mark_metrics_dirty(
    tx: &mut sqlx::AnyConnection,
    customer_ids: &[String],
) -> Result<()> {
    for chunk in customer_ids.chunks(super::batch(super::backend_of(tx), 1)) {
        let mut qb = QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "INSERT INTO metrics_dirty (customer_id) ",
        );
        qb.push_values(chunk, |mut b, id| {
            b.push_bind(id);
        });
        qb.push(" ON CONFLICT (customer_id) DO UPDATE SET gen = metrics_dirty.gen + 1");
        qb.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Consent and its time change together, and only with a statement (SQL, in
/// `upsert_customers`' conflict clause): a row with a consent value, unless it and the stored
/// one both have a time and the row's is older. A time without a value moves nothing.
const STATED: &str = "(excluded.marketing_consent IS NOT NULL \
     AND COALESCE(excluded.consent_at >= customers.consent_at, TRUE))";
/// The time a statement leaves stored: its own; without one, the stored time when the value
/// stays as it was, and none (unknown) when it changes.
const STATED_AT: &str = "COALESCE(excluded.consent_at, CASE WHEN \
     customers.marketing_consent IS NOT DISTINCT FROM excluded.marketing_consent \
     THEN customers.consent_at END)";

/// Sets customers' order aggregates from their orders: one grouped pass over orders_customer
/// (UPDATE … FROM runs on SQLite and PostgreSQL alike). Put a WHERE on the orders between the
/// two halves, or nothing for every customer.
pub(super) const AGGREGATES_FROM_ORDERS: &str =
    "UPDATE customers SET orders_count = a.n, total_spent = a.spent, \
     first_order_at = a.first_at, last_order_at = a.last_at, \
     currency = (SELECT o.currency FROM orders o WHERE o.customer_id = customers.id \
     ORDER BY o.placed_at DESC, o.id DESC LIMIT 1) FROM \
     (SELECT customer_id, COUNT(*) AS n, CAST(SUM(total) AS BIGINT) AS spent, MIN(placed_at) AS first_at, \
     MAX(placed_at) AS last_at FROM orders";
pub(super) const AGGREGATES_END: &str =
    " GROUP BY customer_id) AS a WHERE customers.id = a.customer_id";

/// The ids among `ids` that exist in `table` (a constant name, never user input).
pub(super) async fn existing_ids(
    conn: &mut sqlx::AnyConnection,
    table: &'static str,
    ids: &[String],
) -> Result<HashSet<String>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    // One JSON row instead of one row per id: see `Store::orders_after`.
    let sql = format!(
        "SELECT CAST(COALESCE(json_group_array(id), '[]') AS TEXT) FROM {table} WHERE id IN "
    );
    let mut qb = QueryBuilder::<Db>::new(
        super::backend_of(conn),
        super::dialect(super::backend_of(conn), &sql),
    );
    push_in_list(&mut qb, ids);
    let (json,): (String,) = qb.build_query_as().fetch_one(&mut *conn).await?;
    let found: Vec<String> = super::from_json(&json)?;
    Ok(found.into_iter().collect())
}

/// Customers from one JSON array of rows in `COLUMNS` order.
fn customers_from_json(json: &str) -> Result<impl Iterator<Item = CustomerRow>> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        i64,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = super::from_json(json)?;
    Ok(rows.into_iter().map(|r| CustomerRow {
        id: r.0,
        email: r.1,
        name: r.2,
        timezone: r.3,
        locale: r.4,
        attributes: r.5,
        orders_count: r.6,
        total_spent: r.7,
        currency: r.8,
        first_order_at: r.9,
        last_order_at: r.10,
        marketing_consent: r.11,
        consent_at: r.12,
        metrics: None,
        segments: Vec::new(),
    }))
}
