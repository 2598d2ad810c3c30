-- Every ledger row gets a key of its own, `seq`, that never changes while
-- the row lives: reconcile marks the rows the JobAG snapshot and the EURES
-- listing showed in two in-memory bitmaps of these keys instead of stamping
-- every row twice per run (see migrations/sqlite/0005_ledger_key.sql). An
-- upsert that finds its row takes a number from the sequence all the same,
-- so keys are sparse; the bitmaps are compressed (roaring). The stamp
-- columns go.
ALTER TABLE postings ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX postings_seq ON postings (seq);
ALTER TABLE postings DROP COLUMN source_seen_run, DROP COLUMN remote_seen_run;
