-- rebuy schema. Written to run on SQLite and PostgreSQL alike: instants are unix
-- milliseconds in BIGINT columns, money is BIGINT minor units beside a currency code,
-- JSON is stored as TEXT, flags are BIGINT 0/1.

-- Customers, keyed by the shop's own id. The order aggregates are kept current by import so
-- that the tick never has to aggregate orders per customer.
CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    timezone TEXT,
    locale TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    orders_count BIGINT NOT NULL DEFAULT 0,
    total_spent BIGINT NOT NULL DEFAULT 0,
    currency TEXT,
    first_order_at BIGINT,
    last_order_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX customers_email ON customers (email);

-- Orders, keyed by the shop's own id. `seq` is the order of arrival: the engine reads new
-- orders after a cursor (settings.order_cursor) instead of marking each one, so an order is
-- written once. SQLite assigns INTEGER PRIMARY KEY values as max + 1 and has one writer at a
-- time, so seq order is commit order. An order's position among its customer's orders (for
-- first_order / nth_order) is counted when the engine first sees it, over orders_customer.
CREATE TABLE orders (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    placed_at BIGINT NOT NULL,
    total BIGINT NOT NULL,
    currency TEXT NOT NULL,
    items TEXT NOT NULL DEFAULT '[]'
);
-- Covers the per-customer aggregates (count, sum, first/last, latest currency, position), so
-- refreshing them never reads the table.
CREATE INDEX orders_customer ON orders (customer_id, placed_at, id, total, currency);

-- One row per customer per pass through a scenario. The unique key is what makes a
-- trigger that is seen twice (two ticks, a re-import, a double click) enroll once:
-- trigger_key is 'once' for `reentry: never`, else the order id or the manual --key.
CREATE TABLE enrollments (
    id INTEGER PRIMARY KEY,
    scenario_id TEXT NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    trigger_key TEXT NOT NULL,
    order_id TEXT,
    vars TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL,
    next_step BIGINT NOT NULL DEFAULT 0,
    next_due_at BIGINT,
    triggered_at BIGINT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    goal_deadline BIGINT,
    goal_reached_at BIGINT,
    goal_order_id TEXT,
    ended_at BIGINT,
    UNIQUE (scenario_id, customer_id, trigger_key)
);
CREATE INDEX enrollments_due ON enrollments (next_due_at) WHERE state = 'active';
CREATE INDEX enrollments_customer ON enrollments (customer_id);

-- The outbox: one row per (enrollment, step), whatever happened to it. The unique key makes
-- a second send of a step impossible; `status` is queued -> sending -> sent | failed, or
-- skipped (condition false) or unknown (the process died mid-send; never re-sent silently).
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    enrollment_id BIGINT NOT NULL REFERENCES enrollments (id),
    step_index BIGINT NOT NULL,
    step_id TEXT NOT NULL,
    scenario_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    transactional BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    to_email TEXT NOT NULL,
    to_name TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    html TEXT NOT NULL DEFAULT '',
    body_text TEXT NOT NULL DEFAULT '',
    unsubscribe_url TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    lease_owner TEXT,
    lease_until BIGINT,
    sent_at BIGINT,
    UNIQUE (enrollment_id, step_index)
);
CREATE INDEX outbox_ready ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_scenario ON outbox (scenario_id, status);

-- Small key/value settings the engine keeps for itself (e.g. a generated unsubscribe secret).
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- The last order seq the engine has looked at for triggers and goals.
INSERT INTO settings (key, value) VALUES ('order_cursor', '0');
