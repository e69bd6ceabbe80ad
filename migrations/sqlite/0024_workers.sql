-- Several workers on one database: each one's heartbeat (rebuy status lists them), the schedule
-- of the periodic jobs only the leader runs, and an index for claims that keep a customer's
-- marketing messages with one sender at a time (the frequency cap holds across workers).
CREATE TABLE workers (
    owner TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    leader INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE job_schedule (
    name TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    next_at INTEGER NOT NULL,
    started_at INTEGER,
    started_by TEXT,
    finished_at INTEGER
);
CREATE INDEX outbox_in_flight ON outbox (customer_id) WHERE status IN ('claimed', 'sending');
