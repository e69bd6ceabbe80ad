-- Customers whose orders changed since their metrics were last computed: every import marks
-- the customers it touched, an incremental refresh recomputes just those and clears the marks
-- it handled (by generation, so a customer marked again meanwhile stays marked), and a full
-- refresh clears them all before it starts reading.
CREATE TABLE metrics_dirty (
    customer_id TEXT PRIMARY KEY,
    gen BIGINT NOT NULL DEFAULT 1
);
