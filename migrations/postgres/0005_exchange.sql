-- The EURES Input API (pull mode, SPEC 4.3): the same partial indexes as
-- migrations/sqlite/0002_exchange.sql, one per list the API serves, each
-- carrying every column a page returns so a page is an index-only range
-- scan that never reads the documents.
--
-- - getAll: every ACTIVE copy, by reference;
-- - getChanges: created / modified / closed references, each by
--   (last modification, reference), from the caller's timestamp on.

CREATE INDEX postings_x_active ON postings (id, created_ms, modified_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NULL AND active = TRUE;

CREATE INDEX postings_x_created ON postings (modified_ms, id, created_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NULL AND created_ms = modified_ms;

CREATE INDEX postings_x_modified ON postings (modified_ms, id, created_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NULL AND created_ms <> modified_ms;

CREATE INDEX postings_x_closed ON postings (modified_ms, id, created_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NOT NULL;
