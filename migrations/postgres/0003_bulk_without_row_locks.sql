-- Orders and customer metrics are written by the million (imports, the nightly refresh). On
-- PostgreSQL a foreign key checks each row with a row lock on its customer (`FOR KEY SHARE`),
-- which writes that customer's tuple and a WAL record per row: a quarter of an orders import's
-- time, and of the refresh's write. The store keeps the rule itself: customers are never
-- deleted, every path that writes an order checks its customer first, metrics are computed
-- from stored orders, and `rebuy db copy` refuses a source with orders or metrics of unknown
-- customers (the same suite runs on SQLite, which still enforces the keys). Measured in
-- BENCHMARKS.md.
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey;
ALTER TABLE customer_metrics DROP CONSTRAINT customer_metrics_customer_id_fkey;
-- Room on each page for a changed row's new version (on pages written from now on: the next
-- full refresh rewrites them all): the incremental refresh's updated metrics rows then stay on
-- their page without touching the key index (HOT).
ALTER TABLE customer_metrics SET (fillfactor = 85);
