-- A failed attempt counts toward `eures.max_attempts` only while EURES
-- answers other requests (SPEC 4.2): `attempts` keeps every failure in a
-- row (it sets the backoff), `strikes` only those that count, and
-- `last_attempt_ms` when the previous attempt ended, against which "EURES
-- answered since" is judged.
ALTER TABLE postings ADD COLUMN strikes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE postings ADD COLUMN last_attempt_ms INTEGER;
UPDATE postings SET strikes = attempts WHERE attempts > 0;
