-- One row per line item of each order (its SKU and category, when they are text), with the
-- order's customer and time, written with the order. A purchase-history condition
-- (`bought(sku: …)`, `bought(category: …)`) is then a probe of one covering index per customer
-- instead of reading every order row of the customer and parsing its items (10,000 customers:
-- half a second of random reads).
CREATE TABLE order_lines (
    order_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    placed_at BIGINT NOT NULL,
    sku TEXT,
    category TEXT
);
CREATE INDEX order_lines_customer ON order_lines (customer_id, placed_at, order_id, sku, category);
INSERT INTO order_lines (order_id, customer_id, placed_at, sku, category)
    SELECT o.id, o.customer_id, o.placed_at,
        CASE WHEN json_type(j.value, '$.sku') = 'text' THEN json_extract(j.value, '$.sku') END,
        CASE WHEN json_type(j.value, '$.category') = 'text' THEN json_extract(j.value, '$.category') END
    FROM orders o, json_each(o.items) j
    WHERE o.items <> '[]' AND json_valid(o.items);
