-- A failed attempt counts toward `eures.max_attempts` only while EURES
-- answers other requests (see migrations/sqlite/0007_strikes.sql).
ALTER TABLE postings ADD COLUMN strikes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE postings ADD COLUMN last_attempt_ms BIGINT;
UPDATE postings SET strikes = attempts WHERE attempts > 0;
