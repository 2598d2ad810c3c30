//! Opening the ledger a database URL names, as a [`Store`]: the one place
//! that picks SQLite or PostgreSQL for the worker and the operators'
//! commands (the Input API's view opens in `exchange.rs`).

use std::sync::Arc;

use super::api::Store;
use super::pg_link::TrustRoots;
use super::postgres::{self, PgStore};
use super::sqlite::SqliteStore;
use super::types::{Result, StoreError};
use super::url::{DatabaseUrl, display_url};

/// Opens the store a database URL names (`sqlite:` or `postgres:`),
/// creating a missing SQLite file.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    Ok(match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite { .. } => Arc::new(SqliteStore::connect(url).await?),
        DatabaseUrl::Postgres => Arc::new(PgStore::connect(url).await?),
    })
}

/// Opens an existing ledger for a command that only reads (SPEC 4.6): it
/// never creates a database or runs a migration. A missing SQLite file,
/// or a ledger behind this binary's migrations, is an error naming the URL
/// (password hidden) and what to run.
pub async fn open_existing(url: &str) -> Result<Arc<dyn Store>> {
    let store = open_unchecked(url).await?;
    let pending = store.pending_migrations().await?;
    if let Some((version, description)) = pending.first() {
        return Err(StoreError::NotReady(format!(
            "the ledger at {} is behind this binary: {} migration(s) pending, from {version} \
             ({description}); run `eures-sync migrate` (stop the workers first)",
            display_url(url),
            pending.len()
        )));
    }
    Ok(store)
}

/// Opens an existing ledger without creating or migrating it, whatever
/// migrations it lacks (`migrate --status`).
pub async fn open_unchecked(url: &str) -> Result<Arc<dyn Store>> {
    Ok(match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite { .. } => Arc::new(SqliteStore::open_existing(url).await?),
        DatabaseUrl::Postgres => Arc::new(PgStore::connect(url).await?),
    })
}

/// Which roots the database link a URL names trusts (SPEC 6), as the start
/// line and `migrate --status` report it; a link the agent would refuse is
/// the same error [`connect`] gives, before any connection.
pub fn trust_roots(url: &str) -> Result<TrustRoots> {
    Ok(match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite { .. } => TrustRoots::Embedded,
        DatabaseUrl::Postgres => postgres::trust_roots(url)?,
    })
}
