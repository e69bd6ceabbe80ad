//! Reading millions of rows from a SQLite file fast: a connection of its own (rusqlite, on a
//! blocking thread) reads while the caller works, handing rows over in batches of a few MB.
//! sqlx sends each row across a channel on its own (about 4 µs a row: 15 s for the 3.7 M
//! orders of a million-customer shop); here a row costs a copy into the batch.

use super::{Result, StoreError};
use std::ops::Range;
use std::path::Path;

/// Text gathered per batch before it is handed over.
const BATCH_BYTES: usize = 4 << 20;
/// Batches in flight: the reader stays at most this far ahead of the caller.
const IN_FLIGHT: usize = 2;

/// One order with line items, as offsets into its batch's text.
struct OrderAt {
    seq: i64,
    placed_at: i64,
    customer: Range<usize>,
    items: Range<usize>,
}

#[derive(Default)]
struct Batch {
    text: String,
    orders: Vec<OrderAt>,
}

impl Batch {
    fn push(&mut self, seq: i64, placed_at: i64, customer: &str, items: &str) {
        let at = self.text.len();
        self.text.push_str(customer);
        self.text.push_str(items);
        let mid = at + customer.len();
        self.orders.push(OrderAt {
            seq,
            placed_at,
            customer: at..mid,
            items: mid..self.text.len(),
        });
    }
}

/// Opens `file` for reading on a connection of its own; None when it cannot be (the caller
/// then reads through sqlx).
pub(super) fn open(file: &Path) -> Option<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(file, flags)
        .map_err(|e| tracing::debug!(error = %e, "bulk read falls back to sqlx"))
        .ok()?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).ok()?;
    Some(conn)
}

/// Hands every order with line items stored after `seq` to `f` (customer, time, items JSON), in
/// seq order, read on `conn`; returns the last seq read (`seq` when there is none).
pub(super) async fn order_items_after(
    conn: rusqlite::Connection,
    seq: i64,
    mut f: impl FnMut(&str, i64, &str),
) -> Result<i64> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let reader = tokio::task::spawn_blocking(move || read_orders(&conn, seq, &tx));
    let mut last = seq;
    while let Some(batch) = rx.recv().await {
        let batch: Batch = batch;
        for o in &batch.orders {
            f(
                &batch.text[o.customer.clone()],
                o.placed_at,
                &batch.text[o.items.clone()],
            );
            last = o.seq;
        }
    }
    reader
        .await
        .map_err(|e| StoreError::Decode(format!("the order reader stopped: {e}")))??;
    Ok(last)
}

fn read_orders(
    conn: &rusqlite::Connection,
    seq: i64,
    tx: &tokio::sync::mpsc::Sender<Batch>,
) -> Result<()> {
    let mut stmt = conn.prepare(
        "SELECT seq, customer_id, placed_at, items FROM orders \
         WHERE seq > ?1 AND has_items ORDER BY seq",
    )?;
    let mut rows = stmt.query([seq])?;
    let mut batch = Batch::default();
    while let Some(row) = rows.next()? {
        batch.push(row.get(0)?, row.get(2)?, text(row, 1)?, text(row, 3)?);
        if batch.text.len() >= BATCH_BYTES && tx.blocking_send(std::mem::take(&mut batch)).is_err()
        {
            // The caller is gone (its task was dropped): nothing left to read for.
            return Ok(());
        }
    }
    if !batch.orders.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

/// Column `i` of `row` as text (borrowed from the row).
fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str> {
    Ok(row.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_each_rows_text() {
        let mut b = Batch::default();
        b.push(1, 10, "C1", "[1]");
        b.push(2, 20, "顧客", "[]");
        let got: Vec<(&str, &str)> = b
            .orders
            .iter()
            .map(|o| (&b.text[o.customer.clone()], &b.text[o.items.clone()]))
            .collect();
        assert_eq!(got, [("C1", "[1]"), ("顧客", "[]")]);
    }
}
