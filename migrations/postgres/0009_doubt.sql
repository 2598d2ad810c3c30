-- Requests in doubt and the verification of the deletion that follows them
-- (see migrations/sqlite/0008_doubt.sql).
ALTER TABLE postings ADD COLUMN in_doubt BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE postings ADD COLUMN verify_at_ms BIGINT;
UPDATE postings SET in_doubt = true WHERE delivered_state = 'unknown';
