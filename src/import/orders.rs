//! Order records. CSV has one row per line item, the order's fields repeated on each row and
//! its rows adjacent (as shop exports write them); JSON Lines has one order per line with an
//! `items` array. Amounts are integers in minor units (¥3,980 is 3980, $39.80 is 3980).

use super::{id_text, parse_instant, text, ImportOptions, ImportReport, Invalid, Record};
use crate::clock::to_millis;
use crate::domain::parse_currency;
use crate::render::ItemView;
use crate::store::{Moves, NewOrder, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::BTreeSet;
use std::path::Path;

/// One input row of an order (CSV: one line item; JSON Lines: the whole order).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderLine {
    pub line: u64,
    pub order_id: String,
    pub customer_id: String,
    pub placed_at: i64,
    pub currency: String,
    pub total: Option<i64>,
    pub items: Vec<ItemView>,
}

/// The largest amount rebuy stores, in minor units: ¥1 trillion, $10 billion. Anything
/// larger is a mistake in the export, and bounding every amount keeps every sum of them (an
/// order's items, a customer's spend) far from overflowing.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// The largest quantity of one line item.
pub const MAX_QUANTITY: i64 = 1_000_000;

pub(super) fn minor(raw: &str, field: &str) -> Result<i64, String> {
    let n = raw.trim().parse::<i64>().map_err(|_| {
        format!("'{field}' must be an integer in minor units (¥3,980 is 3980, $39.80 is 3980), found '{raw}'")
    })?;
    if !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&n) {
        return Err(format!(
            "'{field}' is {n}, beyond the {MAX_AMOUNT} (minor units) rebuy accepts; is a decimal point or a currency misplaced?"
        ));
    }
    Ok(n)
}

/// The sum of an order's items, or why it cannot be stored.
fn items_sum(items: &[ItemView]) -> Result<i64, String> {
    let sum = items
        .iter()
        .try_fold(0i64, |sum, i| {
            i.quantity
                .checked_mul(i.unit_price)
                .and_then(|line| sum.checked_add(line))
        })
        .filter(|s| (-MAX_AMOUNT..=MAX_AMOUNT).contains(s))
        .ok_or_else(|| {
            format!(
                "the items add up to more than {MAX_AMOUNT} (minor units), the most rebuy accepts"
            )
        })?;
    Ok(sum)
}

/// The fields of an order record (JSON; a CSV row also has the item fields).
pub const ORDER_FIELDS: &[&str] = &[
    "order_id",
    "id",
    "customer_id",
    "placed_at",
    "currency",
    "total",
    "items",
];

/// The fields of one line item.
pub const ITEM_FIELDS: &[&str] = &[
    "sku",
    "quantity",
    "unit_price",
    "name",
    "item_name",
    "category",
];

/// One line item; `path` is where it is (`items/2/`, or empty for a CSV row's own columns) and
/// `prefix` how a message names it (`items[2]: `).
fn item_from<'a>(
    v: impl Fn(&str) -> Option<&'a serde_json::Value> + Copy,
    path: &str,
    prefix: &str,
) -> Result<ItemView, Invalid> {
    let get = |k: &str| -> Option<String> {
        match v(k)? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let at = |field: &str, message: String| Invalid::at(format!("{path}{field}"), message);
    super::scalars_only(v, ITEM_FIELDS, "")
        .map_err(|e| at(&e.field, format!("{prefix}{}", e.message)))?;
    let sku = get("sku").ok_or_else(|| at("sku", format!("{prefix}missing 'sku'")))?;
    if super::longer_than(&sku, super::MAX_ID) {
        return Err(at(
            "sku",
            format!("{prefix}'sku' is longer than {} characters", super::MAX_ID),
        ));
    }
    let quantity = match get("quantity") {
        Some(q) => q
            .parse::<i64>()
            .ok()
            .filter(|q| (1..=MAX_QUANTITY).contains(q))
            .ok_or_else(|| {
                at("quantity", format!("{prefix}'quantity' must be a whole number from 1 to {MAX_QUANTITY}, found '{q}'"))
            })?,
        None => 1,
    };
    let price = get("unit_price")
        .ok_or_else(|| at("unit_price", format!("{prefix}missing 'unit_price'")))?;
    let unit_price =
        minor(&price, "unit_price").map_err(|e| at("unit_price", format!("{prefix}{e}")))?;
    Ok(ItemView {
        name: get("name")
            .or_else(|| get("item_name"))
            .unwrap_or_else(|| sku.clone()),
        sku,
        category: get("category").unwrap_or_default(),
        quantity,
        unit_price,
    })
}

/// Validates one record into an order line, or says what is wrong with it.
pub fn parse_order_row(r: &Record, zone: Tz, now: DateTime<Utc>) -> Result<OrderLine, Invalid> {
    let f = &r.fields;
    super::scalars_only(|k| f.get(k), ORDER_FIELDS, "items")?;
    let order_id = id_text(f, "order_id")?
        .or(id_text(f, "id")?)
        .ok_or_else(|| Invalid::missing("order_id"))?;
    let customer_id = id_text(f, "customer_id")?.ok_or_else(|| Invalid::missing("customer_id"))?;
    let placed = text(f, "placed_at").ok_or_else(|| Invalid::missing("placed_at"))?;
    let placed_at =
        to_millis(parse_instant(&placed, zone).map_err(|e| Invalid::at("placed_at", e))?);
    super::not_ahead("placed_at", placed_at, now, zone).map_err(|e| Invalid::at("placed_at", e))?;
    let currency =
        parse_currency(&text(f, "currency").ok_or_else(|| Invalid::missing("currency"))?)
            .map_err(|e| Invalid::at("currency", e))?;
    let total = text(f, "total")
        .map(|t| minor(&t, "total"))
        .transpose()
        .map_err(|e| Invalid::at("total", e))?;
    let items = match f.get("items") {
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let get = |k: &str| v.get(k);
                item_from(get, &format!("items/{i}/"), &format!("items[{i}]: "))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(Invalid::at("items", "'items' must be a list")),
        None if f.contains_key("sku") => {
            vec![item_from(|k| f.get(k), "", "")?]
        }
        None => Vec::new(),
    };
    if total.is_some_and(|t| t < 0) {
        return Err(Invalid::at("total", "'total' must not be negative"));
    }
    if total.is_none() && items.is_empty() {
        // Stored as 0 it would be a purchase of nothing, counted as a repeat order.
        return Err(Invalid::at(
            "total",
            "missing 'total': an order needs its total or its line items (a free order: total 0)",
        ));
    }
    items_sum(&items).map_err(|e| Invalid::at("items", e))?;
    Ok(OrderLine {
        line: r.line,
        order_id,
        customer_id,
        placed_at,
        currency,
        total,
        items,
    })
}

/// One whole order from one record (JSON Lines, the API): its items are in the record.
pub fn order_from_record(r: &Record, zone: Tz, now: DateTime<Utc>) -> Result<NewOrder, Invalid> {
    let line = parse_order_row(r, zone, now)?;
    Group::start(line)
        .finish()
        .map_err(|(_, e)| Invalid::at("items", e))
        .map(|(_, o)| o)
}

/// Adjacent rows of one order, being collected.
struct Group {
    first: OrderLine,
    items: Vec<ItemView>,
    total: Option<i64>,
    error: Option<(u64, String)>,
}

impl Group {
    fn start(mut l: OrderLine) -> Self {
        // The items move to the group; the first line keeps what the others are checked
        // against.
        Self {
            items: std::mem::take(&mut l.items),
            total: l.total,
            first: l,
            error: None,
        }
    }

    fn push(&mut self, l: OrderLine) {
        let f = &self.first;
        if self.error.is_none()
            && (l.customer_id != f.customer_id
                || l.placed_at != f.placed_at
                || l.currency != f.currency)
        {
            self.error = Some((l.line, format!("order '{}' has rows with different customer, date or currency (first row on line {})", f.order_id, f.line)));
        }
        self.total = self.total.or(l.total);
        self.items.extend(l.items);
    }

    fn finish(self) -> Result<(u64, NewOrder), (u64, String)> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let line = self.first.line;
        let sum = items_sum(&self.items).map_err(|e| (line, e))?;
        // A line may be negative (a discount written as an item, a coupon worth more than the
        // goods): the order is still a purchase, kept so that goals and first orders see it,
        // and its total counts as the customer's spend, which it never lowers.
        let total = self.total.unwrap_or(sum.max(0));
        let f = self.first;
        Ok((
            line,
            NewOrder {
                total,
                items: match self.items.is_empty() {
                    true => "[]".into(),
                    false => serde_json::to_string(&self.items).unwrap_or_else(|_| "[]".into()),
                },
                id: f.order_id,
                customer_id: f.customer_id,
                placed_at: f.placed_at,
                currency: f.currency,
            },
        ))
    }
}

/// What the reading thread hands over: a chunk of whole orders (each with its first line) and
/// rejected lines, or the end with the lines that could not be read at all.
enum Parsed {
    Chunk(Orders),
    End(Vec<super::RowError>),
}

/// Groups adjacent rows into orders as they are read; runs on the reading thread.
#[derive(Default)]
struct Grouper {
    /// Every order id read so far (a million-order file: a million look-ups, hence Fx; boxed,
    /// a third smaller than `String`s in the table).
    seen: rustc_hash::FxHashSet<Box<str>>,
    pending: Option<Group>,
}

impl Grouper {
    /// Adds a chunk of parsed rows; returns the orders it completed and the rejected rows.
    fn add(&mut self, lines: impl IntoIterator<Item = Result<OrderLine, (u64, String)>>) -> Orders {
        let mut out = Vec::new();
        for line in lines {
            let l = match line {
                Ok(l) => l,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            match &mut self.pending {
                Some(g) if g.first.order_id == l.order_id => g.push(l),
                _ => {
                    if !self.seen.insert(l.order_id.as_str().into()) {
                        out.push(Err((l.line, format!("order '{}' appears again after other orders; its rows must be adjacent", l.order_id))));
                        continue;
                    }
                    if let Some(done) = self.pending.replace(Group::start(l)) {
                        out.push(done.finish());
                    }
                }
            }
        }
        out
    }

    /// The last order, at the end of the file.
    fn finish(&mut self) -> Orders {
        self.pending.take().map(Group::finish).into_iter().collect()
    }
}

pub(super) async fn run(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    let (mut reader, mut report) = super::open(
        path,
        opts,
        &[
            &["order_id", "id"],
            &["customer_id"],
            &["placed_at"],
            &["currency"],
        ],
        &[ORDER_FIELDS, ITEM_FIELDS],
    )?;
    // Reading, parsing and grouping run on a thread of their own while the previous chunk is
    // written: the import uses both cores.
    // Checking that the customers exist is a read on a connection of its own, done on that
    // thread too.
    let zone = opts.default_timezone;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Parsed>>(1);
    let (lookup, runtime) = (store.clone(), tokio::runtime::Handle::current());
    let mut confirmed = rustc_hash::FxHashSet::default();
    let mut known =
        move |orders| runtime.block_on(known_customers(&lookup, &mut confirmed, orders));
    tokio::task::spawn_blocking(move || {
        let mut grouper = Grouper::default();
        loop {
            let message =
                match reader.next_chunk() {
                    Ok(Some(chunk)) => {
                        known(grouper.add(chunk.iter().map(|r| {
                            parse_order_row(r, zone, now).map_err(|e| (r.line, e.message))
                        })))
                        .map(Parsed::Chunk)
                    }
                    Ok(None) => {
                        let last = known(grouper.finish()).map(Parsed::Chunk);
                        if tx.blocking_send(last).is_err() {
                            return;
                        }
                        Ok(Parsed::End(std::mem::take(&mut reader.unreadable)))
                    }
                    Err(e) => Err(e),
                };
            let last = !matches!(message, Ok(Parsed::Chunk(_)));
            if tx.blocking_send(message).is_err() || last {
                return;
            }
        }
    });
    // Into an empty PostgreSQL shop, all chunks go into one bulk load (`OrderLoad`); otherwise
    // each chunk's orders are committed with their customers' aggregates (`upsert_orders`).
    let moves = if opts.move_orders {
        Moves::Allow {
            now: to_millis(now),
        }
    } else {
        Moves::Refuse
    };
    let mut load = match opts.bulk {
        true => store.begin_order_load().await?,
        false => None,
    };
    if load.is_some() {
        report.bulk_load = true;
        tracing::info!(
            "no orders stored yet: loading them in one transaction (COPY, the indexes built \
             after); other connections wait for the orders table until it commits"
        );
    }
    let mut loaded = 0;
    let mut unreadable = Vec::new();
    while let Some(message) = rx.recv().await {
        match message? {
            Parsed::Chunk(orders) => {
                let (good, lines) = accepted(orders, &mut report);
                match &mut load {
                    Some(load) => {
                        load.add(&good).await?;
                        loaded += good.len();
                    }
                    None => {
                        let outcome = store.upsert_orders_with(&good, moves).await?;
                        let refused = outcome.refused.len();
                        report.add(good.len() - refused, (outcome.inserted, outcome.updated));
                        report.moved(outcome.moved);
                        for r in outcome.refused {
                            // The store keeps the last row of an id.
                            let at = good.iter().rposition(|o| o.id == r.order);
                            if let Some(i) = at {
                                report.unwrite_currency(&good[i].currency);
                            }
                            report.reject(at.map_or(0, |i| lines[i]), refused_move(&r));
                        }
                    }
                }
            }
            Parsed::End(u) => {
                unreadable = u;
                break;
            }
        }
    }
    if let Some(load) = load {
        let outcome = load.finish().await?;
        report.add(loaded, (outcome.inserted, 0));
    }
    report.finish(unreadable);
    Ok(report)
}

type Orders = Vec<Result<(u64, NewOrder), (u64, String)>>;

/// Rejects the orders of customers that are not in the store. `confirmed` remembers the
/// customers found in earlier chunks (customers are never deleted), so each is looked up once.
async fn known_customers(
    store: &Store,
    confirmed: &mut rustc_hash::FxHashSet<String>,
    orders: Orders,
) -> Result<Orders> {
    let ids: Vec<String> = orders
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|(_, o)| &o.customer_id))
        .filter(|id| !confirmed.contains(*id))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    confirmed.extend(store.existing_customer_ids(&ids).await?);
    Ok(orders
        .into_iter()
        .map(|o| match o {
            Ok((line, o)) if !confirmed.contains(&o.customer_id) => Err((line, format!("order '{}': unknown customer '{}'; import the customer first with `rebuy import customers`", o.id, o.customer_id))),
            other => other,
        })
        .collect())
}

/// The orders of a chunk that can be written, and the line of each; the others are reported
/// rejected.
fn accepted(parsed: Orders, report: &mut ImportReport) -> (Vec<NewOrder>, Vec<u64>) {
    let mut good = Vec::with_capacity(parsed.len());
    let mut lines = Vec::with_capacity(parsed.len());
    for p in parsed {
        match p {
            Ok((line, o)) => {
                *report.currencies.entry(o.currency.clone()).or_default() += 1;
                lines.push(line);
                good.push(o);
            }
            Err((line, e)) => report.reject(line, e),
        }
    }
    (good, lines)
}

/// Why a row whose order id is stored for another customer was not written, and what to do.
fn refused_move(r: &crate::store::MovedOrder) -> String {
    format!(
        "order '{}' is stored for customer '{}', not '{}': an order does not move to another \
         customer unless asked. If two sources reuse order numbers (two shops' #1001), give \
         each source's ids a prefix of its own (A-1001); if the file corrects whose order it \
         is, import it with --move-orders",
        r.order, r.from, r.to
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_more_than_a_day_ahead_of_the_clock_is_refused() {
        let now = "2026-12-07T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let at = |s: &str| to_millis(s.parse::<DateTime<Utc>>().unwrap());
        let tokyo = chrono_tz::Asia::Tokyo;
        assert!(
            super::super::not_ahead("placed_at", at("2026-12-07T23:59:00Z"), now, tokyo).is_ok()
        );
        assert!(
            super::super::not_ahead("placed_at", at("2026-12-08T00:00:00Z"), now, tokyo).is_ok()
        );
        let e = super::super::not_ahead("placed_at", at("2027-06-01T01:00:00Z"), now, tokyo)
            .unwrap_err();
        assert!(
            e.contains("2027-06-01 10:00 +09:00 is in the future")
                && e.contains("now: 2026-12-07 09:00 +09:00"),
            "{e}"
        );
    }
}
