-- Documents move out of `postings` into a table of their own, keyed by the
-- record's permanent key. A record is rewritten several times per delivery
-- (its lease, its outcome), and with its 3-4 KB document inline each of
-- those writes copied the whole document again into the WAL: one record
-- filled a page. Without it a page holds dozens of records, and claims
-- and outcomes neither read nor write documents. A record's document goes
-- with it when the record is purged.
CREATE TABLE documents (
    seq     INTEGER PRIMARY KEY REFERENCES postings (seq) ON DELETE CASCADE,
    content TEXT NOT NULL
);
INSERT INTO documents (seq, content)
    SELECT seq, desired_content FROM postings WHERE desired_content IS NOT NULL;
ALTER TABLE postings DROP COLUMN desired_content;
