-- A message's lateness limit: after this instant it is recorded as `expired` instead of being
-- sent (a daemon that was down for weeks, quiet hours or the cap holding it too long). NULL:
-- no limit (messages written before this column, and ones a person re-queued by hand).
ALTER TABLE outbox ADD COLUMN expires_at BIGINT;
