-- The ledger on PostgreSQL: the same tables and columns as
-- migrations/sqlite/0001_ledger.sql (keep the two in step), with BIGINT for
-- SQLite's INTEGER, BOOLEAN for its 0/1 flags and BIGSERIAL for its
-- AUTOINCREMENT. `desired_*` is what EURES should hold, `delivered_*` what
-- EURES acknowledged. `due_op`, `due_rank` and `state` are derived from those
-- two by the domain planner on every write and stored only so that the
-- claim, status and metrics queries can use indexes.
--
-- Ids sort with the "C" collation: byte order, as in SQLite, so keyset pages
-- and lock order do not depend on the server's locale.
CREATE TABLE postings (
    id                   TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    employer_cvr         TEXT,
    source_version       BIGINT NOT NULL,
    source_updated_at_ms BIGINT,
    desired_present      BOOLEAN NOT NULL,
    desired_hash         TEXT,
    desired_content      TEXT,
    publication_end_ms   BIGINT,
    absent_reason        TEXT,
    delivered_state      TEXT NOT NULL,   -- absent | present | unknown
    delivered_version    BIGINT,
    delivered_hash       TEXT,
    attempts             BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms   BIGINT NOT NULL,
    last_error           TEXT,
    dead                 BOOLEAN NOT NULL DEFAULT FALSE,
    forced               BOOLEAN NOT NULL DEFAULT FALSE,
    due_since_ms         BIGINT,
    created_ms           BIGINT,
    modified_ms          BIGINT,
    closed_ms            BIGINT,
    active               BOOLEAN NOT NULL DEFAULT FALSE,
    due_op               TEXT,
    due_rank             BIGINT,
    state                TEXT NOT NULL,
    last_change_ms       BIGINT NOT NULL,
    -- Which worker holds the due operation, and until when (epoch ms of the
    -- worker's clock). An expired lease is anybody's to take.
    lease_owner          TEXT,
    lease_until_ms       BIGINT,
    -- Reconcile run that last saw the posting in the JobAG snapshot / in the
    -- EURES listing; stamps instead of in-memory sets keep reconcile streaming.
    source_seen_run      BIGINT,
    remote_seen_run      BIGINT
);

CREATE INDEX postings_due ON postings (due_rank, next_attempt_at_ms) WHERE due_op IS NOT NULL;
CREATE INDEX postings_expiry ON postings (publication_end_ms) WHERE desired_present;
CREATE INDEX postings_state ON postings (state);
CREATE INDEX postings_employer ON postings (employer_cvr);
CREATE INDEX postings_exchange ON postings (modified_ms) WHERE created_ms IS NOT NULL;
-- Keyset pages of dead letters go by id.
CREATE INDEX postings_dead ON postings (id) WHERE dead;

-- Small key/value facts: the feed cursor, the last successful poll.
CREATE TABLE agent_state (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Feed items that carried no usable id or version. Only the reason and the
-- place in the feed are kept, never the raw item (it may hold personal data).
CREATE TABLE quarantine (
    seq           BIGSERIAL PRIMARY KEY,
    posting_id    TEXT,
    reason        TEXT NOT NULL,
    feed_position TEXT NOT NULL,
    at_ms         BIGINT NOT NULL
);

-- Every delivery attempt (SPEC 6): what was transferred, when, with what result.
CREATE TABLE audit (
    seq          BIGSERIAL PRIMARY KEY,
    posting_id   TEXT NOT NULL,
    employer_cvr TEXT,
    op           TEXT NOT NULL,
    version      BIGINT NOT NULL,
    content_hash TEXT,
    outcome      TEXT NOT NULL,
    detail       TEXT,
    at_ms        BIGINT NOT NULL
);

CREATE INDEX audit_posting ON audit (posting_id, seq);
CREATE INDEX audit_employer ON audit (employer_cvr, seq);
CREATE INDEX audit_at ON audit (at_ms);
CREATE INDEX postings_due_since ON postings (due_since_ms) WHERE due_since_ms IS NOT NULL;
