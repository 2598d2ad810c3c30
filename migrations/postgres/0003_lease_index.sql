-- Leases that ran out (a worker died with its request in flight) are found
-- before every claim and their operations marked abandoned; this keeps
-- that look cheap on a large ledger.
CREATE INDEX postings_leased ON postings (lease_until_ms) WHERE lease_owner IS NOT NULL;
