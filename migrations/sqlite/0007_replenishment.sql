-- The typical interval between repeat purchases of each SKU (median days), recomputed by every
-- refresh, for the `replenish` trigger.
CREATE TABLE sku_intervals (
    sku TEXT PRIMARY KEY,
    median_days BIGINT NOT NULL,
    pairs BIGINT NOT NULL,
    as_of TEXT NOT NULL
);

-- The `expected_next_order` trigger looks customers up by their predicted date.
CREATE INDEX customer_metrics_next_order ON customer_metrics (expected_next_order)
    WHERE expected_next_order IS NOT NULL;

-- Which predicted-date scan the tick last did ("day|metrics as-of"), so it scans once a day.
INSERT INTO settings (key, value) VALUES ('next_order_scan', '');
