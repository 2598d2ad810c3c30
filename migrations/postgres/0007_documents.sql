-- Documents move out of `postings` into a table of their own, keyed by the
-- record's permanent key (see migrations/sqlite/0006_documents.sql): a
-- record is rewritten several times per delivery, its document need not
-- be. A record's document goes with it when the record is purged.
CREATE TABLE documents (
    seq     BIGINT PRIMARY KEY REFERENCES postings (seq) ON DELETE CASCADE,
    content TEXT NOT NULL
);
INSERT INTO documents (seq, content)
    SELECT seq, desired_content FROM postings WHERE desired_content IS NOT NULL;
ALTER TABLE postings DROP COLUMN desired_content;
