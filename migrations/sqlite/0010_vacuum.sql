-- no-transaction
-- The file is rewritten once, so that nothing is left of the documents
-- older agents kept inline: 0006 dropped the column, and an erasure back
-- then (before `secure_delete`) only set it to NULL, which leaves the bytes
-- in the pages' free space, where no later write is bound to overwrite
-- them (SPEC 6). VACUUM cannot run inside a transaction, hence the first
-- line. It copies every live page, so it needs as much free disk as the
-- ledger takes; README's upgrade notes give its time on a large ledger.
VACUUM;
