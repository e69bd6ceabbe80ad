-- Room on each page of `customers` for a second version of its rows: an order changes a
-- customer's aggregates (count, total, first and last order, currency), none of which is
-- indexed, so with free space on the page PostgreSQL writes the new version beside the old one
-- and touches no index (a HOT update). A shop's first import of orders rewrites every
-- customer's aggregates at once; with full pages that was a new row on a new page and an entry
-- in each of the three indexes per customer (BENCHMARKS.md). Applies to pages written from now
-- on; `VACUUM FULL customers` repacks an existing shop's table.
ALTER TABLE customers SET (fillfactor = 50);
