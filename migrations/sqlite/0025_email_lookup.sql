-- Customers are looked up by e-mail address in any case (support's search, rebuy customer show,
-- GET /v1/customers/{id}): the index is on the lower-cased address, so that look-up is a seek
-- instead of a scan of every customer. It replaces the index on the address as stored (one index,
-- so imports write no more than before).
DROP INDEX customers_email;
CREATE INDEX customers_email ON customers (lower(email));
