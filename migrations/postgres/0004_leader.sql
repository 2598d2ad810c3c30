-- PostgreSQL only (one SQLite file has one worker, always the leader).
-- Leadership of the singleton loops (feed ingest, expiry, periodic
-- reconcile) as a lease: one row per role, held by `owner` until
-- `until_ms` (epoch ms of the database's clock, so workers' clocks may
-- differ). The holder renews it; anyone takes it once it has expired.
CREATE TABLE leader_lease (
    role     TEXT PRIMARY KEY NOT NULL,
    owner    TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
