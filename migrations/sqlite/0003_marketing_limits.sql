-- Marketing limits at send time. What a message does when the frequency cap is reached
-- (its scenario's `when_capped`: 0 wait, 1 skip), and an index to count a customer's recent
-- marketing sends.
ALTER TABLE outbox ADD COLUMN skip_when_capped BIGINT NOT NULL DEFAULT 0;
CREATE INDEX outbox_customer_sent ON outbox (customer_id, sent_at) WHERE status = 'sent';
