-- Which worker (lease owner) recorded the attempt: lets an operator see who
-- delivered what when several workers share a PostgreSQL ledger. Not
-- personal data: `worker-<pid>-<start ms>` or `local`.
ALTER TABLE audit ADD COLUMN worker TEXT;
