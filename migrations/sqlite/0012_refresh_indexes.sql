-- Whether an order has line items, kept in the per-customer index: `bought(sku|category: ...)`
-- skips orders without items (a CSV import without an items column) in the index itself and
-- reads an order's row, for its `items` JSON, only when it has some. The column is computed by
-- SQLite (virtual), so imports write nothing more; the index entry grows by one byte.
ALTER TABLE orders ADD COLUMN has_items INTEGER GENERATED ALWAYS AS (items <> '[]') VIRTUAL;
DROP INDEX orders_customer;
CREATE INDEX orders_customer ON orders (customer_id, placed_at, id, total, currency, has_items);

-- No statement reads customer metrics by RFM segment through an index (segment conditions and
-- `report rfm` read the whole table: with this index the report took twice as long), but
-- every metrics write had to keep it: 10,000 changed customers dirtied ~4,000 of its pages.
DROP INDEX IF EXISTS customer_metrics_segment;

-- Memberships keyed by customer first, in the key's order (no rowid table, no second index):
-- an incremental refresh moves a changed customer from one segment to another, and both
-- rows now sit on the same page; the tick reads a customer's segments as one range. Reading
-- one segment's members is a scan, which only full evaluations and `segments` listings do.
CREATE TABLE segment_members_by_customer (
    customer_id TEXT NOT NULL,
    segment TEXT NOT NULL,
    -- When the customer entered (the evaluation that first found them, unix ms).
    since BIGINT NOT NULL,
    PRIMARY KEY (customer_id, segment)
) WITHOUT ROWID;
INSERT INTO segment_members_by_customer (customer_id, segment, since)
    SELECT customer_id, segment, since FROM segment_members ORDER BY customer_id, segment;
DROP TABLE segment_members;
ALTER TABLE segment_members_by_customer RENAME TO segment_members;

-- The `expected_next_order` trigger reads predicted dates once a day (0.1 s over a million
-- rows without an index), while every metrics write had to move each changed customer's
-- entry in this index: ~5,000 pages per 10,000 changed customers.
DROP INDEX IF EXISTS customer_metrics_next_order;
