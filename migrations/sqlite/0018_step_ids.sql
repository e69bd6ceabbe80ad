-- An enrollment waits on a step by its id, not its position: inserting, removing or reordering
-- steps in a running scenario must not move customers mid-way onto another step. `next_step`
-- stays as the count of steps taken (the compare-and-set and the outbox's unique key). NULL:
-- an enrollment from before this column, placed by position until its next step.
ALTER TABLE enrollments ADD COLUMN next_step_id TEXT;
