-- The product catalog: what may be recommended (in stock, active) and how to show it. Orders
-- may name SKUs the catalog lacks (old products): they are learnt from, never recommended.
CREATE TABLE products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    price BIGINT,
    url TEXT,
    image_url TEXT,
    in_stock BIGINT NOT NULL DEFAULT 1,
    active BIGINT NOT NULL DEFAULT 1,
    brand TEXT,
    size TEXT,
    upgrade_of TEXT,
    updated_at BIGINT NOT NULL
);
