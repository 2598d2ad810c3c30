-- The ledger: one row per posting the agent has seen. `desired_*` is what EURES
-- should hold, `delivered_*` what EURES acknowledged. `due_op`, `due_rank` and
-- `state` are derived from those two by the domain planner on every write and
-- stored only so that the claim, status and metrics queries can use indexes.
CREATE TABLE postings (
    id                   TEXT PRIMARY KEY NOT NULL,
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
    lease_until_ms       INTEGER,
    -- Reconcile run that last saw the posting in the JobAG snapshot / in the
    -- EURES listing; stamps instead of in-memory sets keep reconcile streaming.
    source_seen_run      INTEGER,
    remote_seen_run      INTEGER
);

CREATE INDEX postings_due ON postings (due_rank, next_attempt_at_ms) WHERE due_op IS NOT NULL;
CREATE INDEX postings_expiry ON postings (publication_end_ms) WHERE desired_present = 1;
CREATE INDEX postings_state ON postings (state);
CREATE INDEX postings_employer ON postings (employer_cvr);
CREATE INDEX postings_exchange ON postings (modified_ms) WHERE created_ms IS NOT NULL;
CREATE INDEX postings_dead ON postings (dead) WHERE dead = 1;

-- Small key/value facts: the feed cursor, the last successful poll.
CREATE TABLE agent_state (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Feed items that carried no usable id or version. Only the reason and the
-- place in the feed are kept, never the raw item (it may hold personal data).
CREATE TABLE quarantine (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    posting_id    TEXT,
    reason        TEXT NOT NULL,
    feed_position TEXT NOT NULL,
    at_ms         INTEGER NOT NULL
);

-- Every delivery attempt (SPEC 6): what was transferred, when, with what result.
CREATE TABLE audit (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    posting_id   TEXT NOT NULL,
    employer_cvr TEXT,
    op           TEXT NOT NULL,
    version      INTEGER NOT NULL,
    content_hash TEXT,
    outcome      TEXT NOT NULL,
    detail       TEXT,
    at_ms        INTEGER NOT NULL
);

CREATE INDEX audit_posting ON audit (posting_id, seq);
CREATE INDEX audit_employer ON audit (employer_cvr, seq);
CREATE INDEX audit_at ON audit (at_ms);
CREATE INDEX postings_due_since ON postings (due_since_ms) WHERE due_since_ms IS NOT NULL;
