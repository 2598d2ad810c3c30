//! One open transaction of either database and the statements it offers
//! the transaction bodies (`writes.rs`): [`LedgerTx`], implemented once
//! for [`Tx`] over any [`Dialect`]. On PostgreSQL every load locks the rows
//! it returns (`FOR UPDATE`, in id order, or skipping rows locked by others
//! where a page says so) so that two processes writing the same posting
//! take turns; on SQLite the transaction itself is exclusive.
//!
//! Never here: opening, committing or retrying a transaction
//! (`generic.rs`), or any decision (the planner's).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Transaction, Type,
};

use super::dialect::{Dialect, Stmt};
use super::row::{
    DocumentOf, FlatEntry, Id, Lease, Leased, RankedClaim, Seq, documents, in_claim_order,
};
use super::sql::{
    AUDIT_CHUNK, DOCUMENT_CHUNK, INSERT_AUDIT, INSERT_HEAD, INSERT_NEW_TAIL, INSERT_QUARANTINE,
    PURGE_AUDIT, PURGE_QUARANTINE, PURGE_TOMBSTONES, PUT_DOCUMENTS_HEAD, PUT_DOCUMENTS_TAIL,
    SET_STATE, UPSERT_RELEASE_TAIL, UPSERT_TAIL, WRITE_CHUNK,
};
use super::types::{Claimed, PurgeStats, QuarantineItem, Result, StoreError};
use crate::domain::ledger::{Content, DesiredState, Entry, Op};

/// Records a page selects (and, on PostgreSQL, locks): see
/// [`Stmt::SelectExpired`] and [`Stmt::SelectDead`] for their order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Page<'a> {
    /// Present records whose `publication_end` is at or before `now_ms`.
    Expired { now_ms: i64, limit: i64 },
    /// Dead letters after `after`.
    Dead { after: &'a str, limit: i64 },
}

/// A new audit row.
#[derive(Debug, Clone)]
pub(crate) struct NewAudit<'a> {
    pub posting_id: &'a str,
    pub employer_cvr: Option<&'a str>,
    pub op: Op,
    pub version: i64,
    pub content_hash: Option<&'a str>,
    pub outcome: &'a str,
    pub detail: Option<&'a str>,
    pub at_ms: i64,
    pub worker: &'a str,
}

/// The statements one open transaction offers the transaction bodies.
#[async_trait]
pub(crate) trait LedgerTx: Send {
    /// The records of `ids` that exist (locked on PostgreSQL).
    async fn load_many(&mut self, ids: &[&str]) -> Result<HashMap<String, Entry>>;
    /// The records of `ids` that exist (locked on PostgreSQL) and who holds
    /// each one's lease.
    async fn load_leased(
        &mut self,
        ids: &[&str],
    ) -> Result<HashMap<String, (Entry, Option<Lease>)>>;
    /// A page of records (locked on PostgreSQL), in the order its
    /// statement gives.
    async fn load_page(&mut self, page: Page<'_>) -> Result<Vec<Entry>>;
    /// Up to `limit` records whose lease ran out before `now_ms`, with
    /// their holders (on PostgreSQL locked, skipping rows locked by others).
    async fn load_abandoned(&mut self, now_ms: i64, limit: i64) -> Result<Vec<(Entry, String)>>;
    /// Writes records, as few statements as it can: `loaded` over the ones
    /// this transaction loaded, `new` ones it did not find only if still
    /// absent (a concurrent insert fails the transaction with
    /// [`StoreError::Conflict`]).
    async fn write(&mut self, loaded: &[&Entry], new: &[&Entry], leases: Leases) -> Result<()>;
    async fn set_state(&mut self, key: &str, value: &str) -> Result<()>;
    async fn quarantine(&mut self, item: &QuarantineItem, at_ms: i64) -> Result<()>;
    /// Leases up to `limit` due, unleased operations to `owner` until
    /// `until_ms` under the claim's `token`, deletions first, in claim
    /// order.
    async fn lease_due(
        &mut self,
        owner: &str,
        token: i64,
        until_ms: i64,
        limit: i64,
        now_ms: i64,
    ) -> Result<Vec<Claimed>>;
    async fn append_audit(&mut self, rows: &[NewAudit<'_>]) -> Result<()>;
    /// Deletes what retention no longer keeps: audit rows and quarantine
    /// records older than `cutoff_ms`, tombstones older than
    /// `tombstone_cutoff_ms`.
    async fn purge(&mut self, cutoff_ms: i64, tombstone_cutoff_ms: i64) -> Result<PurgeStats>;
    /// Wakes the workers waiting for due work once this transaction commits
    /// (PostgreSQL `NOTIFY`; nothing to do for a single SQLite worker).
    async fn wake_workers(&mut self) -> Result<()>;
}

/// What a write does to the leases of the records it writes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leases {
    /// Left as they are: an attempt may be under way.
    Keep,
    /// Ended: the attempt's outcome is what is written (or it was abandoned).
    End,
}

/// One open transaction of either database, with the writer's turn it
/// holds until it ends, where the database has one (see `SqliteStore`).
pub(crate) struct Tx<DB: Database>(
    pub Transaction<'static, DB>,
    #[expect(
        dead_code,
        reason = "held, never read: the turn ends with the transaction"
    )]
    pub Option<tokio::sync::OwnedMutexGuard<()>>,
);

impl<DB: Database> Tx<DB> {
    pub async fn commit(self) -> Result<()> {
        Ok(self.0.commit().await?)
    }
}

#[async_trait]
impl<DB> LedgerTx for Tx<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB> + Default,
    for<'r> &'r str: ColumnIndex<DB::Row> + Encode<'r, DB> + Type<DB>,
    for<'r> Option<&'r str>: Encode<'r, DB>,
    String: for<'r> Decode<'r, DB> + for<'r> Encode<'r, DB> + Type<DB>,
    Option<String>: for<'r> Encode<'r, DB>,
    i64: for<'r> Decode<'r, DB> + for<'r> Encode<'r, DB> + Type<DB>,
    Option<i64>: for<'r> Encode<'r, DB>,
    bool: for<'r> Decode<'r, DB> + for<'r> Encode<'r, DB> + Type<DB>,
{
    async fn load_many(&mut self, ids: &[&str]) -> Result<HashMap<String, Entry>> {
        let rows: Vec<FlatEntry> = DB::bind_ids(sqlx::query_as(DB::sql(Stmt::SelectMany)), ids)
            .fetch_all(&mut *self.0)
            .await?;
        let mut loaded = rows
            .into_iter()
            .map(|r| r.into_entry().map(|e| (e.id.clone(), e)))
            .collect::<Result<HashMap<_, _>>>()?;
        self.mark_documents(loaded.values_mut()).await?;
        Ok(loaded)
    }

    async fn load_leased(
        &mut self,
        ids: &[&str],
    ) -> Result<HashMap<String, (Entry, Option<Lease>)>> {
        let rows: Vec<Leased> = DB::bind_ids(sqlx::query_as(DB::sql(Stmt::SelectLeased)), ids)
            .fetch_all(&mut *self.0)
            .await?;
        let mut loaded = rows
            .into_iter()
            .map(|r| r.into_parts().map(|(e, lease)| (e.id.clone(), (e, lease))))
            .collect::<Result<HashMap<_, _>>>()?;
        self.mark_documents(loaded.values_mut().map(|(e, _)| e))
            .await?;
        Ok(loaded)
    }

    async fn load_page(&mut self, page: Page<'_>) -> Result<Vec<Entry>> {
        let stmt = match page {
            Page::Expired { .. } => Stmt::SelectExpired,
            Page::Dead { .. } => Stmt::SelectDead,
        };
        let query = sqlx::query_as(DB::sql(stmt));
        let query = match page {
            Page::Expired { now_ms, limit } => query.bind(now_ms).bind(limit),
            Page::Dead { after, limit } => query.bind(after).bind(limit),
        };
        let rows: Vec<FlatEntry> = query.fetch_all(&mut *self.0).await?;
        let mut loaded = rows
            .into_iter()
            .map(FlatEntry::into_entry)
            .collect::<Result<Vec<_>>>()?;
        self.mark_documents(loaded.iter_mut()).await?;
        Ok(loaded)
    }

    async fn load_abandoned(&mut self, now_ms: i64, limit: i64) -> Result<Vec<(Entry, String)>> {
        let rows: Vec<Leased> = sqlx::query_as(DB::sql(Stmt::SelectAbandoned))
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *self.0)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if let (entry, Some(lease)) = row.into_parts()? {
                out.push((entry, lease.owner));
            }
        }
        self.mark_documents(out.iter_mut().map(|(e, _)| e)).await?;
        Ok(out)
    }

    async fn write(&mut self, loaded: &[&Entry], new: &[&Entry], leases: Leases) -> Result<()> {
        let tail = match leases {
            Leases::Keep => UPSERT_TAIL.as_str(),
            Leases::End => UPSERT_RELEASE_TAIL.as_str(),
        };
        for chunk in loaded.chunks(WRITE_CHUNK) {
            insert_entries(chunk, tail)
                .build()
                .persistent(false)
                .execute(&mut *self.0)
                .await?;
        }
        for chunk in new.chunks(WRITE_CHUNK) {
            let done = insert_entries(chunk, INSERT_NEW_TAIL)
                .build()
                .persistent(false)
                .execute(&mut *self.0)
                .await?;
            if DB::rows_affected(&done) < chunk.len() as u64 {
                let ids = chunk.iter().map(|e| e.id.as_str()).collect::<Vec<_>>();
                return Err(StoreError::Conflict(ids.join(", ")));
            }
        }
        let (store, erase) = documents(loaded);
        // A record inserted just now has no document to erase.
        let (store_new, _) = documents(new);
        for chunk in store
            .chunks(DOCUMENT_CHUNK)
            .chain(store_new.chunks(DOCUMENT_CHUNK))
        {
            let mut q: QueryBuilder<DB> = QueryBuilder::new(PUT_DOCUMENTS_HEAD);
            q.push_values(chunk, |mut b, (id, doc)| {
                b.push_bind(*id).push_bind(*doc);
            });
            q.push(PUT_DOCUMENTS_TAIL);
            q.build().persistent(false).execute(&mut *self.0).await?;
        }
        if !erase.is_empty() {
            let _: Vec<Seq> = DB::bind_ids(sqlx::query_as(DB::sql(Stmt::EraseDocuments)), &erase)
                .fetch_all(&mut *self.0)
                .await?;
        }
        Ok(())
    }

    async fn set_state(&mut self, key: &str, value: &str) -> Result<()> {
        sqlx::query(SET_STATE)
            .bind(key)
            .bind(value)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn quarantine(&mut self, item: &QuarantineItem, at_ms: i64) -> Result<()> {
        sqlx::query(INSERT_QUARANTINE)
            .bind(item.posting_id.as_deref())
            .bind(item.reason.as_str())
            .bind(item.feed_position.as_str())
            .bind(at_ms)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn lease_due(
        &mut self,
        owner: &str,
        token: i64,
        until_ms: i64,
        limit: i64,
        now_ms: i64,
    ) -> Result<Vec<Claimed>> {
        let rows: Vec<RankedClaim> = sqlx::query_as(DB::sql(Stmt::Claim))
            .bind(owner)
            .bind(until_ms)
            .bind(now_ms)
            .bind(limit)
            .bind(token)
            .fetch_all(&mut *self.0)
            .await?;
        let mut claimed = in_claim_order(rows, now_ms)?;
        // Read now that the claim holds the rows: an edit that committed
        // before is seen whole, and none can commit until this ends.
        let sent: Vec<&str> = claimed
            .iter()
            .filter(|c| matches!(c.op, Op::Create | Op::Update))
            .map(|c| c.id.as_str())
            .collect();
        if !sent.is_empty() {
            let docs: Vec<DocumentOf> =
                DB::bind_ids(sqlx::query_as(DB::sql(Stmt::DocumentsOf)), &sent)
                    .fetch_all(&mut *self.0)
                    .await?;
            let mut docs: HashMap<String, String> =
                docs.into_iter().map(|d| (d.id, d.content)).collect();
            for c in claimed
                .iter_mut()
                .filter(|c| matches!(c.op, Op::Create | Op::Update))
            {
                c.content = docs.remove(&c.id);
            }
        }
        Ok(claimed)
    }

    async fn append_audit(&mut self, rows: &[NewAudit<'_>]) -> Result<()> {
        for chunk in rows.chunks(AUDIT_CHUNK) {
            let mut q: QueryBuilder<DB> = QueryBuilder::new(INSERT_AUDIT);
            q.push_values(chunk, |mut b, row| {
                b.push_bind(row.posting_id.to_owned())
                    .push_bind(row.employer_cvr.map(str::to_owned))
                    .push_bind(row.op.as_str().to_owned())
                    .push_bind(row.version)
                    .push_bind(row.content_hash.map(str::to_owned))
                    .push_bind(row.outcome.to_owned())
                    .push_bind(row.detail.map(str::to_owned))
                    .push_bind(row.at_ms)
                    .push_bind(row.worker.to_owned());
            });
            q.build().persistent(false).execute(&mut *self.0).await?;
        }
        Ok(())
    }

    /// Deletes what retention no longer keeps.
    async fn purge(&mut self, cutoff_ms: i64, tombstone_cutoff_ms: i64) -> Result<PurgeStats> {
        let mut deleted = [0u64; 3];
        for (n, (sql, before)) in [
            (PURGE_AUDIT, cutoff_ms),
            (PURGE_TOMBSTONES, tombstone_cutoff_ms),
            (PURGE_QUARANTINE, cutoff_ms),
        ]
        .into_iter()
        .enumerate()
        {
            let done = sqlx::query(sql).bind(before).execute(&mut *self.0).await?;
            deleted[n] = DB::rows_affected(&done);
        }
        Ok(PurgeStats::from(deleted))
    }

    async fn wake_workers(&mut self) -> Result<()> {
        if let Some(sql) = DB::WAKE {
            sqlx::query(sql).execute(&mut *self.0).await?;
        }
        Ok(())
    }
}

impl<DB> Tx<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> &'r str: ColumnIndex<DB::Row> + Encode<'r, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
{
    /// Marks the loaded records that have a document: [`Content::Stored`].
    /// A statement of its own, after the records are locked: on PostgreSQL
    /// a subquery of the locking `SELECT` would look as of the statement's
    /// start, before a concurrent writer of the record committed, and could
    /// miss the document it stored (which the next write would then erase).
    async fn mark_documents<'e>(
        &mut self,
        entries: impl Iterator<Item = &'e mut Entry>,
    ) -> Result<()> {
        let mut present: HashMap<String, &'e mut Entry> = entries
            .filter(|e| e.desired.is_present())
            .map(|e| (e.id.clone(), e))
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = present.keys().map(String::as_str).collect();
        let held: Vec<Id> = DB::bind_ids(sqlx::query_as(DB::sql(Stmt::WithDocument)), &ids)
            .fetch_all(&mut *self.0)
            .await?;
        for Id { id } in held {
            if let Some(DesiredState::Present { content, .. }) =
                present.get_mut(&id).map(|e| &mut e.desired)
            {
                *content = Some(Content::Stored);
            }
        }
        Ok(())
    }
}

/// A multi-row `INSERT` of `entries` in [`COLUMNS`] order, ended by `tail`.
/// Built fresh each time: every batch size is its own statement, and caching
/// hundreds of 13,000-parameter statements would cost tens of MiB.
fn insert_entries<DB>(entries: &[&Entry], tail: &str) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB>,
    bool: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut q: QueryBuilder<DB> = QueryBuilder::new(INSERT_HEAD.as_str());
    q.push_values(entries, |mut b, e| {
        let f = FlatEntry::from_entry(e);
        b.push_bind(f.id)
            .push_bind(f.employer_cvr)
            .push_bind(f.source_version)
            .push_bind(f.source_updated_at_ms)
            .push_bind(f.desired_present)
            .push_bind(f.desired_hash)
            .push_bind(f.publication_end_ms)
            .push_bind(f.absent_reason)
            .push_bind(f.delivered_state)
            .push_bind(f.delivered_version)
            .push_bind(f.delivered_hash)
            .push_bind(f.attempts)
            .push_bind(f.next_attempt_at_ms)
            .push_bind(f.last_error)
            .push_bind(f.dead)
            .push_bind(f.forced)
            .push_bind(f.due_since_ms)
            .push_bind(f.created_ms)
            .push_bind(f.modified_ms)
            .push_bind(f.closed_ms)
            .push_bind(f.active)
            .push_bind(f.due_op)
            .push_bind(f.due_rank)
            .push_bind(f.state)
            .push_bind(f.last_change_ms)
            .push_bind(f.strikes)
            .push_bind(f.last_attempt_ms)
            .push_bind(f.in_doubt)
            .push_bind(f.verify_at_ms);
    });
    q.push(tail);
    q
}
