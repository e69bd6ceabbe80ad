-- The products a message recommended (a JSON array of SKUs, in the order shown), for sent
-- messages and for held-out ones (what they would have shown): the scenario report counts
-- customers who bought one of them within the goal window. NULL: it recommended nothing.
ALTER TABLE outbox ADD COLUMN recommended TEXT;
