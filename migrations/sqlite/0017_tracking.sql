-- Clicks and opens of tracked mail (tracking.base_url): at most one row per message, kind and
-- whether it counted, so a customer clicking ten times (or a scanner hammering a link) adds no
-- rows. `counted = 0` rows are machines (a HEAD, or within a second of delivery), kept for
-- support but left out of the report. `note` says why a row was not counted.
CREATE TABLE message_tracking (
    outbox_id INTEGER NOT NULL REFERENCES outbox (id),
    kind TEXT NOT NULL CHECK (kind IN ('open', 'click')),
    counted INTEGER NOT NULL CHECK (counted IN (0, 1)),
    at BIGINT NOT NULL,
    url TEXT,
    note TEXT,
    PRIMARY KEY (outbox_id, kind, counted)
);

-- Tracking links name their message by its Message-ID.
CREATE INDEX outbox_message_id ON outbox (message_id);
