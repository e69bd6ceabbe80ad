-- The HTTP API: bearer tokens (only their SHA-256 is kept) and the replies to requests that
-- carried an Idempotency-Key, so that a re-sent request is answered, not done again.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE idempotency_keys (
    -- The route and the token that used the key: keys of different callers never meet.
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused.
    request_hash TEXT NOT NULL,
    -- NULL while the first request is being handled.
    status INTEGER,
    body TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

-- "Why did I get this e-mail?": every message of one customer, whatever its state.
CREATE INDEX outbox_customer ON outbox (customer_id, id);
