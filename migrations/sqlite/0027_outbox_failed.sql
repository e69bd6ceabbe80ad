-- `rebuy status` counts the messages given up since the last send (`FlowStatus`): by time,
-- among the failed ones only.
CREATE INDEX outbox_failed ON outbox (updated_at) WHERE status = 'failed';
