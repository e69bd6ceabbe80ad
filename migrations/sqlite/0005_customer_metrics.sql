-- Customer metrics as of a day, recomputed by `rebuy refresh` (and by the daemon): one row per
-- customer with orders. Days are calendar days in the shop's default time zone; money is in
-- the orders' minor units. The predictive columns are NULL when the models could not be
-- fitted (too little history).
CREATE TABLE customer_metrics (
    customer_id TEXT PRIMARY KEY REFERENCES customers (id),
    as_of TEXT NOT NULL,
    orders BIGINT NOT NULL,
    first_order TEXT NOT NULL,
    last_order TEXT NOT NULL,
    days_since_last BIGINT NOT NULL,
    tenure_days BIGINT NOT NULL,
    total_spent BIGINT NOT NULL,
    average_order_value DOUBLE PRECISION NOT NULL,
    frequency BIGINT NOT NULL,
    recency BIGINT NOT NULL,
    t BIGINT NOT NULL,
    monetary DOUBLE PRECISION NOT NULL,
    r_score BIGINT NOT NULL,
    f_score BIGINT NOT NULL,
    m_score BIGINT NOT NULL,
    rfm_segment TEXT NOT NULL,
    p_alive DOUBLE PRECISION,
    expected_purchases_30d DOUBLE PRECISION,
    expected_purchases_90d DOUBLE PRECISION,
    predicted_clv DOUBLE PRECISION,
    expected_next_order TEXT
);
CREATE INDEX customer_metrics_segment ON customer_metrics (rfm_segment);

-- The fitted models (BG/NBD, Gamma-Gamma): parameters as JSON, with the data they came from.
CREATE TABLE model_fits (
    model TEXT PRIMARY KEY,
    params TEXT NOT NULL,
    customers BIGINT NOT NULL,
    as_of TEXT NOT NULL,
    fitted_at BIGINT NOT NULL
);
