-- The suppression list: addresses that must not get mail. `kind` says what it stops:
-- 'unsubscribe' stops marketing mail only (a customer's own choice does not stop the receipts
-- and support follow-ups they need); 'bounce' (a permanent failure for the address) and
-- 'manual' (added by staff) stop everything. Addresses are stored lower-cased.
CREATE TABLE suppressions (
    email TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    customer_id TEXT,
    created_at BIGINT NOT NULL
);
