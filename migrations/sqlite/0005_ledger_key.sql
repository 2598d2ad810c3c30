-- Every ledger row gets a key of its own, `seq`, that never changes while
-- the row lives: reconcile marks the rows the JobAG snapshot and the EURES
-- listing showed in two in-memory bitmaps of these keys (1 bit per row)
-- instead of stamping every row twice per run. The plain rowid would not
-- do: VACUUM may renumber it unless it is an INTEGER PRIMARY KEY, so the
-- table is rebuilt with one (the existing rowids become the keys). The
-- stamp columns go.

CREATE TABLE postings_keyed (
    seq                  INTEGER PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    employer_cvr         TEXT,
    source_version       INTEGER NOT NULL,
    source_updated_at_ms INTEGER,
    desired_present      INTEGER NOT NULL,
    desired_hash         TEXT,
    desired_content      TEXT,
    publication_end_ms   INTEGER,
    absent_reason        TEXT,
    delivered_state      TEXT NOT NULL,   -- absent | present | unknown
    delivered_version    INTEGER,
    delivered_hash       TEXT,
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms   INTEGER NOT NULL,
    last_error           TEXT,
    dead                 INTEGER NOT NULL DEFAULT 0,
    forced               INTEGER NOT NULL DEFAULT 0,
    due_since_ms         INTEGER,
    created_ms           INTEGER,
    modified_ms          INTEGER,
    closed_ms            INTEGER,
    active               INTEGER NOT NULL DEFAULT 0,
    due_op               TEXT,
    due_rank             INTEGER,
    state                TEXT NOT NULL,
    last_change_ms       INTEGER NOT NULL,
    lease_owner          TEXT,
    lease_until_ms       INTEGER
);

INSERT INTO postings_keyed (seq, id, employer_cvr, source_version, source_updated_at_ms,
    desired_present, desired_hash, desired_content, publication_end_ms, absent_reason,
    delivered_state, delivered_version, delivered_hash, attempts, next_attempt_at_ms,
    last_error, dead, forced, due_since_ms, created_ms, modified_ms, closed_ms, active,
    due_op, due_rank, state, last_change_ms, lease_owner, lease_until_ms)
SELECT rowid, id, employer_cvr, source_version, source_updated_at_ms,
    desired_present, desired_hash, desired_content, publication_end_ms, absent_reason,
    delivered_state, delivered_version, delivered_hash, attempts, next_attempt_at_ms,
    last_error, dead, forced, due_since_ms, created_ms, modified_ms, closed_ms, active,
    due_op, due_rank, state, last_change_ms, lease_owner, lease_until_ms
FROM postings;

DROP TABLE postings;
ALTER TABLE postings_keyed RENAME TO postings;

-- The indexes of 0001, 0002 and 0004, word for word (the WHERE clauses of
-- the exchange indexes are repeated in src/store/exchange.rs).
CREATE INDEX postings_due ON postings (due_rank, next_attempt_at_ms) WHERE due_op IS NOT NULL;
CREATE INDEX postings_expiry ON postings (publication_end_ms) WHERE desired_present = 1;
CREATE INDEX postings_state ON postings (state);
CREATE INDEX postings_employer ON postings (employer_cvr);
CREATE INDEX postings_exchange ON postings (modified_ms) WHERE created_ms IS NOT NULL;
CREATE INDEX postings_dead ON postings (dead) WHERE dead = 1;
CREATE INDEX postings_due_since ON postings (due_since_ms) WHERE due_since_ms IS NOT NULL;
CREATE INDEX postings_x_active ON postings (id, created_ms, modified_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NULL AND active = 1;
CREATE INDEX postings_x_created ON postings (modified_ms, id, created_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NULL AND created_ms = modified_ms;
CREATE INDEX postings_x_modified ON postings (modified_ms, id, created_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NULL AND created_ms <> modified_ms;
CREATE INDEX postings_x_closed ON postings (modified_ms, id, created_ms, active, closed_ms)
    WHERE created_ms IS NOT NULL AND closed_ms IS NOT NULL;
CREATE INDEX postings_leased ON postings (lease_until_ms) WHERE lease_owner IS NOT NULL;
