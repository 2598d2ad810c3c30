//! What a database adds to its [`Dialect`] to be a ledger: how it opens its
//! pool and its transactions, the clock it stamps writes with, how it
//! migrates, leads and wakes other workers. `sqlite.rs` and `postgres.rs`
//! implement [`Backend`]; `generic.rs` and `exchange.rs` build the
//! [`Store`](super::api::Store) and the
//! [`ExchangeStore`](super::api::ExchangeStore) on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Pool;
use tokio::sync::{Notify, watch};

use super::dialect::Dialect;
use super::ledger_tx::Tx;
use super::types::Result;

/// How a transaction's commit must survive a crash of the database server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// On disk before the commit returns.
    Durable,
    /// May be lost if the database server itself crashes (not on a clean
    /// restart): for a delivery outcome only, whose loss leaves its lease to
    /// run out and the operation to be done again, at least once and
    /// idempotent. Saves a disk flush per delivery.
    Redoable,
}

/// How often a worker looks for leases that ran out. Looking costs a
/// statement per claim; a lease runs out seconds after its worker died, so
/// a quarter of a second more is nothing.
const REAP_EVERY_MS: i64 = 250;

/// When a store's next claim looks for leases that ran out.
#[derive(Debug, Default)]
pub(crate) struct ReapClock(AtomicI64);

impl ReapClock {
    /// Whether to look now (and not again for [`REAP_EVERY_MS`]).
    pub(crate) fn due(&self, now_ms: i64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
                (now_ms >= next).then_some(now_ms.saturating_add(REAP_EVERY_MS))
            })
            .is_ok()
    }
}

/// What a database adds to its [`Dialect`] to be a ledger.
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    type Db: Dialect;
    fn pool(&self) -> &Pool<Self::Db>;
    fn reap_clock(&self) -> &ReapClock;
    /// Opens a write transaction (on SQLite an exclusive one).
    async fn begin(&self, commit: Commit) -> Result<Tx<Self::Db>>;
    /// The time a transaction stamps its writes with and judges leases,
    /// retries and `publication_end` by, read once it is open (with the
    /// write lock held: a change stamped with a time from before a wait for
    /// the lock could fall behind a concurrent `getChanges` poll and never
    /// be reported). `proposed_ms` is the caller's idea of now. PostgreSQL
    /// answers with its own clock, so workers whose clocks differ agree;
    /// SQLite, with one worker, the process clock, never below a time it
    /// stamped before (SPEC 3.7).
    async fn stamp(&self, tx: &mut Tx<Self::Db>, proposed_ms: i64) -> Result<i64>;
    /// The same clock outside a transaction.
    async fn now_ms(&self) -> Result<i64>;
    /// Applies the migrations the ledger lacks (`Dialect::migrator`).
    async fn migrate(&self) -> Result<()>;
    /// Waits until every ledger write already under way has committed and
    /// returns the high-water mark (see `ExchangeStore::barrier`).
    async fn barrier(&self) -> Result<i64>;
    async fn lead(&self, owner: &str, ttl: Duration) -> Result<bool>;
    fn watch_wakeups(&self, wake: Arc<Notify>, stop: watch::Receiver<bool>);
}
