-- Marketing consent (Japan's Act on Specified Electronic Mail, GDPR): 1 given, 0 refused,
-- NULL never stated. Marketing mail goes only where it is 1. `consent_at` is when it was
-- given or refused, as the shop recorded it.
ALTER TABLE customers ADD COLUMN marketing_consent BIGINT;
ALTER TABLE customers ADD COLUMN consent_at BIGINT;
