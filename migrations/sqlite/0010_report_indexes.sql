-- The scenario report's step funnel reads every message's scenario, step, variant, status,
-- send time and enrollment; this index holds exactly those, so the report scans it instead of
-- the outbox rows with their rendered bodies (a million messages: gigabytes of HTML).
CREATE INDEX outbox_funnel ON outbox (scenario_id, step_index, step_id, variant, status, sent_at, enrollment_id);
