//! The ledger's persistence: per-posting records, the feed cursor, the
//! quarantine and the audit trail. Nothing outside this module writes SQL.
//!
//! Every write loads the affected records, lets the pure planner
//! ([`crate::domain::ledger`]) compute their next state, and writes them back
//! in one transaction, together with whatever must move with them (the
//! cursor with an ingested page, the audit row with an outcome). A store never
//! decides anything itself.
//!
//! Two backends, picked by the URL scheme ([`DatabaseUrl`]) in [`connect`]:
//! [`SqliteStore`] (embedded, one worker) and [`PgStore`] (production, many
//! workers and CLI processes writing at once). They share everything but
//! their dialect and how they open. Each module imports only those listed
//! before it:
//!
//! - `types`: the public values and [`StoreError`]; `url`: [`DatabaseUrl`];
//!   `api`: the [`Store`] and [`exchange::ExchangeStore`] traits;
//! - `row`: the rows statements return, by name;
//! - `sql`: the SQL both databases accept; `dialect`: what each says its
//!   own way, side by side;
//! - `ledger_tx`: one open transaction and the statements it offers;
//! - `writes`: what each write does inside its transaction;
//! - `backend`: what a database adds to its dialect (opening, clock,
//!   migrating, leading, waking);
//! - `generic`: the [`Store`] written once over a backend;
//! - `sqlite`, `postgres`: the two backends;
//! - `pg_link`: how the link to a PostgreSQL server is protected, decided
//!   from its URL; `pg_bridge`: that link's TLS when `sslrootcert` names
//!   the CA;
//! - `exchange`: the Input API's view, over either backend; `open`:
//!   [`connect`] and friends; `backup`: a copy of a SQLite ledger.

mod api;
mod backend;
pub mod backup;
mod dialect;
pub mod exchange;
mod generic;
mod ledger_tx;
mod open;
mod pg_bridge;
mod pg_link;
pub mod postgres;
mod row;
mod sql;
pub mod sqlite;
mod types;
mod url;
mod writes;

pub use api::Store;
pub use open::{connect, open_existing, open_unchecked, trust_roots};
pub use pg_link::TrustRoots;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use types::{
    AppliedMigration, AuditOf, AuditRow, Claimed, Completion, Ctx, Diff, Held, IngestBatch,
    IngestStats, Known, Listed, PurgeStats, QuarantineItem, Repair, Result, StoreError, Summary,
    Unseen,
};
pub use url::{DatabaseUrl, display_url, holds_password};
