-- Each claim leases a posting under a token of its own (SPEC 3.7): an
-- outcome is recorded only while the lease still carries the token of the
-- claim that sent the request, so the late outcome of an older claim of the
-- same worker (its lease ran out and it claimed the posting again) changes
-- nothing. Leases taken before this migration have none and are reaped.
ALTER TABLE postings ADD COLUMN lease_token BIGINT;
