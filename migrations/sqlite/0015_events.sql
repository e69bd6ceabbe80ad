-- Custom events (`cart_added`, `product_viewed`, …) posted to /v1/events or imported: what a
-- customer did between orders. `id` is the sender's (or derived from the event's content),
-- so that a re-sent event is stored once; `seq` is the order of arrival, which the tick
-- follows with `event_cursor` to start `trigger: { event: … }` scenarios.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    name TEXT NOT NULL,
    at BIGINT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}',
    received_at BIGINT NOT NULL
);
CREATE INDEX events_customer ON events (customer_id, name, at);

INSERT INTO settings (key, value) VALUES ('event_cursor', '0') ON CONFLICT (key) DO NOTHING;
