//! The [`Store`] of either database, written once: every method runs a
//! transaction body (`writes.rs`) or a shared statement (`sql.rs`,
//! `dialect.rs`) on a [`Backend`], which supplies only what no SQL table
//! can say (see `backend.rs`).
//!
//! Transactions that lose a race with another process (serialization
//! failure, deadlock, a concurrent insert: [`StoreError::is_retryable`]) run
//! again from the start a few times; on SQLite, whose writes are exclusive,
//! that never happens. Nothing here decides anything: the planner does.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::RngExt;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Type};
use tokio::sync::{Notify, watch};

use super::api::Store;
use super::backend::{Backend, Commit};
use super::dialect::{Dialect, Stmt};
use super::ledger_tx::{LedgerTx, Tx};
use super::row::{
    self, Count, DeliveredRow, Earliest, Exists, FlatEntry, Id, Keyed, KnownRow, MigrationRow,
    Quarantined, StateRow, StateValue,
};
use super::sql;
use super::types::{
    AppliedMigration, AuditOf, AuditRow, Claimed, Completion, Ctx, Diff, Held, IngestBatch,
    IngestStats, Known, Listed, PurgeStats, Repair, Result, StoreError, Summary, Unseen,
};
use super::writes;
use crate::domain::ledger::{Entry, Incoming};

/// Rows handled per expiry or revival transaction.
const BATCH: i64 = 500;
/// Runs of one transaction before a lost race is reported as an error.
const TX_ATTEMPTS: u32 = 5;

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

/// Runs a transaction body (an expression using `tx`, the open
/// transaction, that gives a future) on a fresh transaction of `$store`
/// and commits it, all again when it lost a race (see [`retrying`]). With
/// `|tx, ctx|` the body gets `ctx` with the clock its writes are stamped
/// with, read once the transaction is open (`Backend::stamp`).
macro_rules! transact {
    ($store:expr, $what:literal, $commit:expr, |$tx:ident $(, $ctx:ident)?| $body:expr) => {
        retrying($what, || async move {
            let mut $tx = $store.begin($commit).await?;
            $(
                let $ctx = Ctx {
                    now_ms: $store.stamp(&mut $tx, $ctx.now_ms).await?,
                    ..$ctx
                };
            )?
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
    // What the statements need of the database: run, bind and decode the
    // column types the named rows (`row.rs`) are made of.
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'r> &'r str: ColumnIndex<<B::Db as Database>::Row> + Encode<'r, B::Db> + Type<B::Db>,
    for<'r> Option<&'r str>: Encode<'r, B::Db>,
    String: for<'r> Decode<'r, B::Db> + Type<B::Db>,
    i64: for<'r> Decode<'r, B::Db> + for<'r> Encode<'r, B::Db> + Type<B::Db>,
    bool: for<'r> Decode<'r, B::Db> + Type<B::Db>,
    Tx<B::Db>: LedgerTx,
{
    async fn migrate(&self) -> Result<()> {
        Backend::migrate(self).await
    }

    async fn pending_migrations(&self) -> Result<Vec<(i64, String)>> {
        let applied: Vec<i64> = self
            .applied_migrations()
            .await?
            .into_iter()
            .map(|m| m.version)
            .collect();
        Ok(<B::Db as Dialect>::migrator()
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect())
    }

    async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>> {
        let table: Exists = sqlx::query_as(<B::Db as Dialect>::sql(Stmt::MigrationsTable))
            .fetch_one(self.pool())
            .await?;
        if !table.present {
            return Ok(Vec::new());
        }
        let rows: Vec<MigrationRow> =
            sqlx::query_as(<B::Db as Dialect>::sql(Stmt::AppliedMigrations))
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| AppliedMigration {
                version: r.version,
                description: r.description,
                installed_on: r.installed_on,
            })
            .collect())
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
        transact!(self, "ingest", Commit::Durable, |tx, ctx| {
            writes::ingest(tx, batch, ctx)
        })
    }

    async fn set_last_poll(&self, at_ms: i64) -> Result<()> {
        let at = at_ms.to_string();
        let at = at.as_str();
        transact!(self, "poll", Commit::Durable, |tx| {
            tx.set_state(sql::LAST_POLL_KEY, at)
        })
    }

    async fn rereads_due(&self, now_ms: i64) -> Result<Vec<String>> {
        let rows: Vec<StateRow> = sqlx::query_as(sql::LIST_REREADS)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .filter(|row| row.value.parse::<i64>().is_ok_and(|at| at <= now_ms))
            .filter_map(|row| row.key.strip_prefix(sql::REREAD_PREFIX).map(str::to_string))
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
                transact!(self, "reread", Commit::Durable, |tx| {
                    tx.set_state(key, at)
                })
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
        transact!(
            self,
            "reconcile request",
            Commit::Durable,
            |tx| async move {
                sqlx::query(sql::RECONCILE_DONE)
                    .bind(sql::RECONCILE_KEY)
                    .bind(at)
                    .execute(&mut *tx.0)
                    .await?;
                Ok::<(), StoreError>(())
            }
        )
    }

    async fn expire_due(&self, ctx: Ctx) -> Result<usize> {
        let mut total = 0;
        loop {
            let (expired, read) = transact!(self, "expiry", Commit::Durable, |tx, ctx| {
                writes::expire_page(tx, BATCH, ctx)
            })?;
            total += expired;
            if (read as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    async fn next_expiry_ms(&self) -> Result<Option<i64>> {
        earliest(self.pool(), <B::Db as Dialect>::sql(Stmt::NextExpiry)).await
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
        transact!(self, "claim", Commit::Durable, |tx, ctx| {
            let now_ms = ctx.now_ms;
            let reap = self.reap_clock().due(now_ms);
            writes::claim(
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
        transact!(self, "complete", Commit::Redoable, |tx, ctx| {
            writes::complete(tx, owner, done, ctx)
        })
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
        earliest(self.pool(), sql::NEXT_DUE).await
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
        let dead: Count = sqlx::query_as(<B::Db as Dialect>::sql(Stmt::CountDead))
            .fetch_one(pool)
            .await?;
        Ok(row::summary(
            sqlx::query_as(sql::COUNT_STATES).fetch_all(pool).await?,
            sqlx::query_as(sql::COUNT_DUE_OPS).fetch_all(pool).await?,
            sqlx::query_as(sql::COUNT_ABSENT_REASONS)
                .fetch_all(pool)
                .await?,
            dead,
            earliest(pool, sql::OLDEST_DUE).await?,
            state(pool, sql::LAST_POLL_KEY).await?,
            now_ms,
        ))
    }

    async fn quarantined(&self, limit: i64) -> Result<Vec<(Option<String>, String)>> {
        let postings: Vec<Quarantined> = sqlx::query_as(sql::QUARANTINED_POSTINGS)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let items: Vec<Quarantined> = sqlx::query_as(sql::QUARANTINED_ITEMS)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(postings
            .into_iter()
            .chain(items)
            .map(|q| (q.posting_id, q.reason))
            .collect())
    }

    async fn ids_page(
        &self,
        employer: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>> {
        let rows: Vec<Id> = sqlx::query_as(sql::IDS_PAGE)
            .bind(employer)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(|row| row.id).collect())
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
            return transact!(self, "revive", Commit::Durable, |tx, ctx| {
                writes::revive_ids(tx, ids, ctx)
            });
        }
        let mut total = 0;
        loop {
            let revived = transact!(self, "revive", Commit::Durable, |tx, ctx| {
                writes::revive_page(tx, BATCH, ctx)
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
        transact!(self, "purge", Commit::Durable, |tx| {
            tx.purge(cutoff_ms, tombstone_cutoff_ms)
        })
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
            let count: Count = sqlx::query_as(sql)
                .bind(before)
                .fetch_one(self.pool())
                .await?;
            counts[n] = count.get();
        }
        Ok(PurgeStats::from(counts))
    }

    async fn reconcile_source(
        &self,
        page: &[Incoming],
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>> {
        transact!(self, "reconcile", Commit::Durable, |tx, ctx| {
            writes::reconcile_source(tx, page, ctx, repair)
        })
    }

    async fn known_versions(&self, ids: &[&str]) -> Result<HashMap<String, Known>> {
        let rows: Vec<KnownRow> = <B::Db as Dialect>::bind_ids(
            sqlx::query_as(<B::Db as Dialect>::sql(Stmt::KnownVersions)),
            ids,
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let known = Known {
                    key: r.seq,
                    version: u64::try_from(r.source_version).unwrap_or(0),
                    gone: r.gone,
                };
                (r.id, known)
            })
            .collect())
    }

    async fn delivered_copies(&self, ids: &[&str]) -> Result<HashMap<String, Held>> {
        let rows: Vec<DeliveredRow> = <B::Db as Dialect>::bind_ids(
            sqlx::query_as(<B::Db as Dialect>::sql(Stmt::DeliveredCopies)),
            ids,
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let held = Held {
                    key: r.seq,
                    copy: r.copy(),
                };
                (r.id, held)
            })
            .collect())
    }

    async fn reconcile_remote(
        &self,
        page: &[Listed],
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>> {
        transact!(self, "reconcile", Commit::Durable, |tx, ctx| {
            writes::reconcile_remote(tx, page, ctx, repair)
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
        let rows: Vec<Keyed> = sqlx::query_as(<B::Db as Dialect>::sql(stmt))
            .bind(after)
            .bind(run)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(|r| (r.seq, r.id)).collect())
    }

    async fn reconcile_unseen(
        &self,
        unseen: Unseen,
        ids: &[&str],
        run: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>> {
        transact!(self, "reconcile", Commit::Durable, |tx, ctx| {
            writes::reconcile_unseen(tx, unseen, ids, run, ctx, repair)
        })
    }
}

/// A value of `agent_state`.
pub(super) async fn state<DB>(pool: &Pool<DB>, key: &str) -> Result<Option<String>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> &'r str: ColumnIndex<DB::Row> + Encode<'r, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
{
    let row: Option<StateValue> = sqlx::query_as(sql::GET_STATE)
        .bind(key)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| r.value))
}

/// The one nullable time a `SELECT MIN(...) AS at` returns.
async fn earliest<DB>(pool: &Pool<DB>, sql: &'static str) -> Result<Option<i64>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
{
    let row: Earliest = sqlx::query_as(sql).fetch_one(pool).await?;
    Ok(row.at)
}
