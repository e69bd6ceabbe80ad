-- Named segments (YAML, see docs/segments.md): who is in each one now, and every change of
-- membership as an event the tick turns into `segment_entered` / `segment_exited` enrollments.

-- Current members, as of the segment's last evaluation.
CREATE TABLE segment_members (
    segment TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    -- When the customer entered (the evaluation that first found them, unix ms).
    since BIGINT NOT NULL,
    PRIMARY KEY (segment, customer_id)
);
CREATE INDEX segment_members_customer ON segment_members (customer_id);

-- Changes of membership, read by the tick after `segment_cursor` (as orders after
-- `order_cursor`). An event is written once, in the transaction that changes the members.
CREATE TABLE segment_events (
    seq INTEGER PRIMARY KEY,
    segment TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    -- 'entered' or 'exited'
    kind TEXT NOT NULL,
    at BIGINT NOT NULL
);

-- One row per segment ever evaluated: the first evaluation is a baseline (no events).
CREATE TABLE segment_evaluations (
    segment TEXT PRIMARY KEY,
    as_of TEXT NOT NULL,
    evaluated_at BIGINT NOT NULL,
    members BIGINT NOT NULL
);

INSERT INTO settings (key, value) VALUES ('segment_cursor', '0');
