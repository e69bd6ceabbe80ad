-- Experiments. Each enrollment's arm, fixed when it is made: 'treatment' (sent the
-- scenario's messages), 'holdout' (the scenario's holdout) or 'control' (the shop-wide control
-- group). Held-out and control enrollments go through the same steps and reach goals the same
-- way; their steps are recorded in the outbox as 'held_out' and never sent.
ALTER TABLE enrollments ADD COLUMN arm TEXT NOT NULL DEFAULT 'treatment';
CREATE INDEX enrollments_scenario ON enrollments (scenario_id, arm);
-- The variant of its step a message was given (NULL for a step without variants).
ALTER TABLE outbox ADD COLUMN variant TEXT;
-- A step's automatic winner, once one variant won with the configured confidence: new
-- enrollments get it from `decided_at` on.
CREATE TABLE variant_decisions (
    scenario_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    winner TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (scenario_id, step_id)
);
