-- A create or update whose answer was lost may still be applied by EURES
-- after the deletion that followed it (SPEC 3.8): `in_doubt` marks such a
-- posting until a verification finds nothing, `verify_at_ms` is when the
-- deletion that followed it is verified (a ledger operation, due like any
-- other, so a restart does not forget it). A record whose delivered state
-- is already unknown had such a request.
ALTER TABLE postings ADD COLUMN in_doubt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE postings ADD COLUMN verify_at_ms INTEGER;
UPDATE postings SET in_doubt = 1 WHERE delivered_state = 'unknown';
