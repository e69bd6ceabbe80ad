-- Several workers on one database: each one's heartbeat (rebuy status lists them), the schedule
-- of the periodic jobs only the leader runs, and an index for claims that keep a customer's
-- marketing messages with one sender at a time (the frequency cap holds across workers).
CREATE TABLE workers (
    owner TEXT COLLATE "C" PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    leader BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE job_schedule (
    name TEXT COLLATE "C" PRIMARY KEY,
    schedule TEXT NOT NULL,
    next_at BIGINT NOT NULL,
    started_at BIGINT,
    started_by TEXT,
    finished_at BIGINT
);
CREATE INDEX outbox_in_flight ON outbox (customer_id) WHERE status IN ('claimed', 'sending');
