-- A message's lateness limit: after this instant it is recorded as `expired` instead of being
-- sent (a daemon that was down for weeks, quiet hours or the cap holding it too long). NULL:
-- no limit (messages written before this column, and ones a person re-queued by hand).
ALTER TABLE outbox ADD COLUMN expires_at BIGINT;

-- Why an enrollment was ended by hand (`rebuy enrollment end --reason`, `outbox cancel
-- --end-enrollment`); NULL for one that completed or reached its goal.
ALTER TABLE enrollments ADD COLUMN end_reason TEXT;

-- Messages already waiting when this arrives get the default limit (3 days after their due
-- time), so that a backlog from before the upgrade is not sent weeks late either.
UPDATE outbox SET expires_at = due_at + 259200000
WHERE status IN ('queued', 'claimed') AND expires_at IS NULL;
