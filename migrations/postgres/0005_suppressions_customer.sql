-- A person's wish (unsubscribe, manual) follows them across a change of address: the send and
-- the enqueue look entries up by the customer they were recorded for, too.
CREATE INDEX suppressions_customer ON suppressions (customer_id);
