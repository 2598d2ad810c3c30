-- The EURES Input API (SPEC 4.3) reads the exchange columns of `postings`
-- (created_ms, modified_ms, closed_ms, active) in key order, a page at a
-- time, never by OFFSET. One partial index per list it serves, so each page
-- is a range scan over exactly the rows it returns:
--
-- - getAll: every ACTIVE copy, by reference;
-- - getChanges: created / modified / closed references, each by
--   (last modification, reference), from the caller's timestamp on.
--
-- The WHERE clauses are repeated word for word in src/store/exchange.rs:
-- SQLite uses a partial index only when the query states its condition.
-- Every index carries all the columns a page returns: a page never reads
-- the table rows, which hold the documents.

CREATE INDEX postings_x_active ON postings (id, created_ms, modified_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NULL AND active = 1;

CREATE INDEX postings_x_created ON postings (modified_ms, id, created_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NULL AND created_ms = modified_ms;

CREATE INDEX postings_x_modified ON postings (modified_ms, id, created_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NULL AND created_ms <> modified_ms;

CREATE INDEX postings_x_closed ON postings (modified_ms, id, created_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NOT NULL;
