-- Idempotency keys are kept for a day (`Store::prune_keys`); this finds the old ones.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
