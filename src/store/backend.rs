//! The [`Store`] of either database, written once: every method runs a
//! shared transaction body (`tx.rs`) or a shared statement (`sql.rs`) on a
//! [`Backend`]. A backend supplies only what no SQL table can say: how to
//! open its pool and transactions, its migrations, leadership and
//! wake-ups.
//!
//! Transactions that lose a race with another process (serialization
//! failure, deadlock, a concurrent insert: [`StoreError::is_retryable`]) run
//! again from the start a few times; on SQLite, whose writes are exclusive,
//! that never happens. Nothing here decides anything: the planner does.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rand::RngExt;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};
use tokio::sync::{Notify, watch};

use super::row::FlatEntry;
use super::sql::{self, Dialect, Stmt, Tx};
use super::tx::{self, LedgerTx};
use super::{
    AppliedMigration, AuditOf, AuditRow, Claimed, Completion, Ctx, Diff, Held, IngestBatch,
    IngestStats, Known, Listed, PurgeStats, Repair, Result, Store, StoreError, Summary, Unseen,
};
use crate::domain::ledger::{Entry, Incoming};

/// Rows handled per expiry or revival transaction.
const BATCH: i64 = 500;
/// Runs of one transaction before a lost race is reported as an error.
const TX_ATTEMPTS: u32 = 5;

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
    fn due(&self, now_ms: i64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
                (now_ms >= next).then_some(now_ms.saturating_add(REAP_EVERY_MS))
            })
            .is_ok()
    }
}

/// What a database adds to its [`Dialect`] to be a [`Store`].
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
    async fn migrate(&self) -> Result<()>;
    async fn pending_migrations(&self) -> Result<Vec<(i64, String)>>;
    async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>>;
    /// Waits until every ledger write already under way has committed (see
    /// `ExchangeStore::barrier`).
    async fn barrier(&self) -> Result<()>;
    async fn lead(&self, owner: &str, ttl: Duration) -> Result<bool>;
    fn watch_wakeups(&self, wake: Arc<Notify>, stop: watch::Receiver<bool>);
}

/// Runs a whole transaction again when it lost a race with another process
/// (the next run sees, and locks, what the winner wrote).
async fn retrying<R, F, Fut>(what: &'static str, mut run: F) -> Result<R>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R>>,
{
    let mut attempt = 1;
    loop {
        match run().await {
            Err(e) if e.is_retryable() && attempt < TX_ATTEMPTS => {
                tracing::debug!(error = %e, what, attempt, "transaction lost a race; running it again");
                let jitter = rand::rng().random_range(1..=10 * u64::from(attempt));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Runs a shared transaction body on a fresh transaction of `$store` and
/// commits it, all again when it lost a race (see [`retrying`]).
macro_rules! transact {
    ($store:expr, $what:literal, |$tx:ident| $body:expr) => {
        transact!($store, $what, Commit::Durable, |$tx| $body)
    };
    // With the context the body stamps its writes with, its clock read
    // once the transaction is open (`Backend::stamp`).
    ($store:expr, $what:literal, $commit:expr, $ctx:ident, |$tx:ident| $body:expr) => {
        retrying($what, || async move {
            let mut $tx = $store.begin($commit).await?;
            let $ctx = Ctx {
                now_ms: $store.stamp(&mut $tx, $ctx.now_ms).await?,
                ..$ctx
            };
            let out = {
                let $tx = &mut $tx;
                $body
            }
            .await?;
            $tx.commit().await?;
            Ok(out)
        })
        .await
    };
    ($store:expr, $what:literal, $commit:expr, |$tx:ident| $body:expr) => {
        retrying($what, || async move {
            let mut $tx = $store.begin($commit).await?;
            let out = {
                let $tx = &mut $tx;
                $body
            }
            .await?;
            $tx.commit().await?;
            Ok(out)
        })
        .await
    };
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

#[async_trait]
impl<B> Store for B
where
    B: Backend,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'r> FlatEntry: FromRow<'r, <B::Db as Database>::Row>,
    for<'r> AuditRow: FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (String, i64): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (String, i64, i64, bool): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (String, i64, String, Option<i64>, Option<String>):
        FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (i64, String): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (Option<String>, String): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (i64,): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (Option<i64>,): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (String,): FromRow<'r, <B::Db as Database>::Row>,
    for<'t> &'t str: Encode<'t, B::Db> + Type<B::Db>,
    for<'t> Option<&'t str>: Encode<'t, B::Db> + Type<B::Db>,
    i64: for<'t> Encode<'t, B::Db> + Type<B::Db>,
    Tx<B::Db>: LedgerTx,
{
    async fn migrate(&self) -> Result<()> {
        Backend::migrate(self).await
    }

    async fn pending_migrations(&self) -> Result<Vec<(i64, String)>> {
        Backend::pending_migrations(self).await
    }

    async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>> {
        Backend::applied_migrations(self).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    async fn now_ms(&self) -> Result<i64> {
        Backend::now_ms(self).await
    }

    async fn lead(&self, owner: &str, ttl: Duration) -> Result<bool> {
        Backend::lead(self, owner, ttl).await
    }

    fn watch_wakeups(&self, wake: Arc<Notify>, stop: watch::Receiver<bool>) {
        Backend::watch_wakeups(self, wake, stop);
    }

    async fn cursor(&self) -> Result<Option<String>> {
        state(self.pool(), sql::CURSOR_KEY).await
    }

    async fn ingest(&self, batch: &IngestBatch, ctx: Ctx) -> Result<IngestStats> {
        transact!(self, "ingest", Commit::Durable, ctx, |tx| tx::ingest(
            tx, batch, ctx
        ))
    }

    async fn set_last_poll(&self, at_ms: i64) -> Result<()> {
        let at = at_ms.to_string();
        let at = at.as_str();
        transact!(self, "poll", |tx| tx.set_state(sql::LAST_POLL_KEY, at))
    }

    async fn rereads_due(&self, now_ms: i64) -> Result<Vec<String>> {
        // (key, value): the row type the other state reads already decode.
        let rows: Vec<(Option<String>, String)> = sqlx::query_as(sql::LIST_REREADS)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, at)| at.parse::<i64>().is_ok_and(|at| at <= now_ms))
            .filter_map(|(key, _)| key?.strip_prefix(sql::REREAD_PREFIX).map(str::to_string))
            .collect())
    }

    async fn reread_done(&self, id: &str, retry_at_ms: Option<i64>) -> Result<()> {
        let key = format!("{}{id}", sql::REREAD_PREFIX);
        let key = key.as_str();
        match retry_at_ms {
            None => {
                sqlx::query(sql::DELETE_STATE)
                    .bind(key)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }
            Some(at) => {
                let at = at.to_string();
                let at = at.as_str();
                transact!(self, "reread", |tx| tx.set_state(key, at))
            }
        }
    }

    async fn reconcile_requested(&self) -> Result<Option<i64>> {
        Ok(state(self.pool(), sql::RECONCILE_KEY)
            .await?
            .and_then(|v| v.parse().ok()))
    }

    async fn reconcile_done(&self, requested_ms: i64) -> Result<()> {
        let at = requested_ms.to_string();
        let at = at.as_str();
        transact!(self, "reconcile request", |tx| async move {
            sqlx::query(sql::RECONCILE_DONE)
                .bind(sql::RECONCILE_KEY)
                .bind(at)
                .execute(&mut *tx.0)
                .await?;
            Ok::<(), StoreError>(())
        })
    }

    async fn expire_due(&self, ctx: Ctx) -> Result<usize> {
        let mut total = 0;
        loop {
            let (expired, read) = transact!(self, "expiry", Commit::Durable, ctx, |tx| {
                tx::expire_page(tx, BATCH, ctx)
            })?;
            total += expired;
            if (read as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    async fn next_expiry_ms(&self) -> Result<Option<i64>> {
        min(self.pool(), <B::Db as Dialect>::sql(Stmt::NextExpiry)).await
    }

    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease_ms = millis(lease);
        // Each claim its own token: an outcome is recorded only under the
        // claim that sent it (SPEC 3.7).
        let token: i64 = rand::random();
        let ctx = Ctx::claiming(now_ms);
        transact!(self, "claim", Commit::Durable, ctx, |tx| {
            let now_ms = ctx.now_ms;
            let reap = self.reap_clock().due(now_ms);
            tx::claim(
                tx,
                owner,
                token,
                now_ms.saturating_add(lease_ms),
                limit,
                now_ms,
                reap,
            )
        })
    }

    async fn complete(&self, owner: &str, done: Completion<'_>, ctx: Ctx) -> Result<()> {
        self.complete_many(owner, std::slice::from_ref(&done), ctx)
            .await
    }

    async fn complete_many(&self, owner: &str, done: &[Completion<'_>], ctx: Ctx) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        transact!(self, "complete", Commit::Redoable, ctx, |tx| tx::complete(
            tx, owner, done, ctx
        ))
    }

    async fn release(&self, owner: &str, claim: &Claimed) -> Result<()> {
        sqlx::query(sql::RELEASE_ONE)
            .bind(claim.id.as_str())
            .bind(owner)
            .bind(claim.lease_token)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn release_all(&self, owner: &str) -> Result<u64> {
        // Locks rows in no set order: it may deadlock with an ingest.
        retrying("release", || async move {
            let done = sqlx::query(sql::RELEASE_ALL)
                .bind(owner)
                .execute(self.pool())
                .await?;
            Ok(<B::Db as Dialect>::rows_affected(&done))
        })
        .await
    }

    async fn next_due_ms(&self) -> Result<Option<i64>> {
        min(self.pool(), sql::NEXT_DUE).await
    }

    async fn get(&self, id: &str) -> Result<Option<Entry>> {
        let row: Option<FlatEntry> = sqlx::query_as(sql::SELECT_ONE.as_str())
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(FlatEntry::into_entry).transpose()
    }

    async fn summary(&self, now_ms: i64) -> Result<Summary> {
        let pool = self.pool();
        let (dead,): (i64,) = sqlx::query_as(<B::Db as Dialect>::sql(Stmt::CountDead))
            .fetch_one(pool)
            .await?;
        Ok(Summary::from_counts(
            sqlx::query_as(sql::COUNT_STATES).fetch_all(pool).await?,
            sqlx::query_as(sql::COUNT_DUE_OPS).fetch_all(pool).await?,
            sqlx::query_as(sql::COUNT_ABSENT_REASONS)
                .fetch_all(pool)
                .await?,
            dead,
            min(pool, sql::OLDEST_DUE).await?,
            state(pool, sql::LAST_POLL_KEY).await?,
            now_ms,
        ))
    }

    async fn quarantined(&self, limit: i64) -> Result<Vec<(Option<String>, String)>> {
        let mut out: Vec<(Option<String>, String)> = sqlx::query_as(sql::QUARANTINED_POSTINGS)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let items: Vec<(Option<String>, String)> = sqlx::query_as(sql::QUARANTINED_ITEMS)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        out.extend(items);
        Ok(out)
    }

    async fn ids_page(
        &self,
        employer: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(sql::IDS_PAGE)
            .bind(employer)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn dead_letters(&self, after: Option<&str>, limit: i64) -> Result<Vec<Entry>> {
        let rows: Vec<FlatEntry> = sqlx::query_as(<B::Db as Dialect>::sql(Stmt::ListDead))
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(FlatEntry::into_entry).collect()
    }

    async fn revive(&self, ids: Option<&[String]>, ctx: Ctx) -> Result<u64> {
        if let Some(ids) = ids {
            return transact!(self, "revive", Commit::Durable, ctx, |tx| tx::revive_ids(
                tx, ids, ctx
            ));
        }
        let mut total = 0;
        loop {
            let revived = transact!(self, "revive", Commit::Durable, ctx, |tx| {
                tx::revive_page(tx, BATCH, ctx)
            })?;
            if revived == 0 {
                return Ok(total);
            }
            total += revived;
        }
    }

    async fn audit(&self, of: AuditOf<'_>, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let (sql, key) = match of {
            AuditOf::Posting(id) => (sql::AUDIT_OF_POSTING.as_str(), id),
            AuditOf::Employer(cvr) => (sql::AUDIT_OF_EMPLOYER.as_str(), cvr),
        };
        Ok(sqlx::query_as(sql)
            .bind(key)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    async fn purge(&self, cutoff_ms: i64, tombstone_cutoff_ms: i64) -> Result<PurgeStats> {
        transact!(self, "purge", |tx| tx.purge(cutoff_ms, tombstone_cutoff_ms))
    }

    async fn purge_counts(&self, cutoff_ms: i64, tombstone_cutoff_ms: i64) -> Result<PurgeStats> {
        let mut counts = [0u64; 3];
        for (n, (sql, before)) in [
            (sql::PURGE_AUDIT_COUNT, cutoff_ms),
            (sql::PURGE_TOMBSTONES_COUNT, tombstone_cutoff_ms),
            (sql::PURGE_QUARANTINE_COUNT, cutoff_ms),
        ]
        .into_iter()
        .enumerate()
        {
            let (count,): (i64,) = sqlx::query_as(sql)
                .bind(before)
                .fetch_one(self.pool())
                .await?;
            counts[n] = u64::try_from(count).unwrap_or(0);
        }
        Ok(PurgeStats::from(counts))
    }

    async fn reconcile_source(
        &self,
        page: &[Incoming],
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>> {
        transact!(self, "reconcile", Commit::Durable, ctx, |tx| {
            tx::reconcile_source(tx, page, ctx, repair)
        })
    }

    async fn known_versions(&self, ids: &[&str]) -> Result<HashMap<String, Known>> {
        let rows: Vec<(String, i64, i64, bool)> = <B::Db as Dialect>::bind_ids(
            sqlx::query_as(<B::Db as Dialect>::sql(Stmt::KnownVersions)),
            ids,
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, key, v, gone)| {
                let version = u64::try_from(v).unwrap_or(0);
                (id, Known { key, version, gone })
            })
            .collect())
    }

    async fn delivered_copies(&self, ids: &[&str]) -> Result<HashMap<String, Held>> {
        type Row = (String, i64, String, Option<i64>, Option<String>);
        let rows: Vec<Row> = <B::Db as Dialect>::bind_ids(
            sqlx::query_as(<B::Db as Dialect>::sql(Stmt::DeliveredCopies)),
            ids,
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, key, state, version, hash)| {
                let copy = match (state.as_str(), version, hash) {
                    ("present", Some(v), Some(hash)) => Some((u64::try_from(v).unwrap_or(0), hash)),
                    _ => None,
                };
                (id, Held { key, copy })
            })
            .collect())
    }

    async fn reconcile_remote(
        &self,
        page: &[Listed],
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>> {
        transact!(self, "reconcile", Commit::Durable, ctx, |tx| {
            tx::reconcile_remote(tx, page, ctx, repair)
        })
    }

    async fn unseen_candidates(
        &self,
        unseen: Unseen,
        run: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>> {
        let stmt = match unseen {
            Unseen::InSnapshot => Stmt::UnseenInSnapshot,
            Unseen::InListing => Stmt::UnseenInListing,
        };
        Ok(sqlx::query_as(<B::Db as Dialect>::sql(stmt))
            .bind(after)
            .bind(run)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    async fn reconcile_unseen(
        &self,
        unseen: Unseen,
        ids: &[&str],
        run: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>> {
        transact!(self, "reconcile", Commit::Durable, ctx, |tx| {
            tx::reconcile_unseen(tx, unseen, ids, run, ctx, repair)
        })
    }
}

/// A value of `agent_state`.
async fn state<DB>(pool: &Pool<DB>, key: &str) -> Result<Option<String>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    let row: Option<(String,)> = sqlx::query_as(sql::GET_STATE)
        .bind(key)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(v,)| v))
}

/// The one nullable number a `SELECT MIN(...)` returns.
async fn min<DB>(pool: &Pool<DB>, sql: &'static str) -> Result<Option<i64>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> (Option<i64>,): FromRow<'r, DB::Row>,
{
    let (m,): (Option<i64>,) = sqlx::query_as(sql).fetch_one(pool).await?;
    Ok(m)
}
