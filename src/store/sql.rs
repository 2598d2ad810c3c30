//! The statements of both databases: SQL text that SQLite and PostgreSQL
//! accept unchanged (placeholders are `$N`, which sqlx's SQLite driver reads
//! as positions too), and the [`LedgerTx`] the shared transaction bodies run
//! on. What each database says differently (row locks, id lists, 0/1 flags
//! versus booleans, `MAX` versus `GREATEST`, `NOTIFY`) is its [`Dialect`],
//! a table of [`Stmt`]s kept side by side in `sqlite.rs` and `postgres.rs`.
//!
//! Statements only: nothing here decides anything (that is the planner's),
//! opens or retries a transaction (`backend.rs` does), or is used outside
//! `store/`.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::database::HasStatementCache;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Transaction, Type};

use super::row::{
    COLUMNS, ENTRY_COLUMNS, FlatEntry, Lease, Leased, RankedClaim, documents, in_claim_order,
};
use super::tx::{Leases, LedgerTx, NewAudit, Page};
use super::{Claimed, PurgeStats, QuarantineItem, Result, StoreError, Summary};
use crate::domain::ledger::{Content, DesiredState, Entry, Op};

pub(crate) const CURSOR_KEY: &str = "feed_cursor";
pub(crate) const LAST_POLL_KEY: &str = "last_source_poll_ms";
/// When a reconcile was asked for that has not completed since (epoch ms).
pub(crate) const RECONCILE_KEY: &str = "reconcile_requested_ms";
/// Forgets the request `$1` names (epoch ms), not a later one.
pub(crate) const RECONCILE_DONE: &str = "DELETE FROM agent_state WHERE key = $1 AND value = $2";
/// `reread:{id}` → when (epoch ms) to re-read the posting from JobAG: its
/// feed change was unusable, and it may have been a withdrawal. Kept until
/// a re-read succeeds, across restarts.
pub(crate) const REREAD_PREFIX: &str = "reread:";
pub(crate) const LIST_REREADS: &str =
    "SELECT key, value FROM agent_state WHERE key LIKE 'reread:%' ORDER BY key";
pub(crate) const DELETE_STATE: &str = "DELETE FROM agent_state WHERE key = $1";

/// Rows per multi-row write: 29 columns each, well under SQLite's 32,766
/// and PostgreSQL's 65,535 bound parameters.
const WRITE_CHUNK: usize = 500;

static INSERT_HEAD: LazyLock<String> =
    LazyLock::new(|| format!("INSERT INTO postings ({COLUMNS}) "));

/// Ends a multi-row insert of records: those the transaction loaded are
/// written over themselves (leases untouched).
static UPSERT_TAIL: LazyLock<String> = LazyLock::new(|| {
    let updates = COLUMNS
        .split(',')
        .map(str::trim)
        .skip(1)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(" ON CONFLICT (id) DO UPDATE SET {updates}")
});

/// The same, ending the records' leases.
static UPSERT_RELEASE_TAIL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}, lease_owner = NULL, lease_until_ms = NULL, lease_token = NULL",
        *UPSERT_TAIL
    )
});

/// Ends a multi-row insert of records the transaction did not find: one a
/// concurrent writer inserted first is skipped (a conflict to retry).
const INSERT_NEW_TAIL: &str = " ON CONFLICT (id) DO NOTHING";

/// One record, without taking any lock.
pub(crate) static SELECT_ONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {ENTRY} FROM postings WHERE id = $1",
        ENTRY = ENTRY_COLUMNS.as_str()
    )
});

/// Stores documents by posting id (`VALUES` names its columns `column1`,
/// `column2` in both databases); each replaces the one its record had.
const PUT_DOCUMENTS_HEAD: &str = "INSERT INTO documents (seq, content) \
     SELECT postings.seq, v.column2 FROM postings JOIN (";
/// `WHERE true` tells SQLite's parser that `ON` starts the upsert, not a join.
const PUT_DOCUMENTS_TAIL: &str = ") AS v ON postings.id = v.column1 WHERE true \
     ON CONFLICT (seq) DO UPDATE SET content = excluded.content";
/// Documents per multi-row write (2 parameters each).
const DOCUMENT_CHUNK: usize = 500;

pub(crate) const GET_STATE: &str = "SELECT value FROM agent_state WHERE key = $1";
pub(crate) const SET_STATE: &str = "INSERT INTO agent_state (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

pub(crate) const INSERT_QUARANTINE: &str =
    "INSERT INTO quarantine (posting_id, reason, feed_position, at_ms) VALUES ($1, $2, $3, $4)";

const INSERT_AUDIT: &str = "INSERT INTO audit \
     (posting_id, employer_cvr, op, version, content_hash, outcome, detail, at_ms, worker) ";
/// Audit rows per multi-row insert (9 parameters each).
const AUDIT_CHUNK: usize = 1000;

const AUDIT_COLUMNS: &str =
    "seq, posting_id, employer_cvr, op, version, content_hash, outcome, at_ms, worker";
pub(crate) static AUDIT_OF_POSTING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {AUDIT_COLUMNS} FROM audit WHERE posting_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    )
});
pub(crate) static AUDIT_OF_EMPLOYER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {AUDIT_COLUMNS} FROM audit WHERE employer_cvr = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    )
});

/// Gives back one lease, only if `$2` still holds it.
pub(crate) const RELEASE_ONE: &str = "UPDATE postings \
     SET lease_owner = NULL, lease_until_ms = NULL, lease_token = NULL \
     WHERE id = $1 AND lease_owner = $2 AND lease_token = $3";
/// Ends every lease of `$1` at once: the next claim reaps them as abandoned.
pub(crate) const RELEASE_ALL: &str =
    "UPDATE postings SET lease_until_ms = 0 WHERE lease_owner = $1";

/// When the next claim can get something: the earliest unleased due
/// operation, or the earliest lease to run out. Each part's minimum
/// separately, so each walks its index (leased rows are skipped, and there
/// are at most workers x concurrency of them).
pub(crate) const NEXT_DUE: &str = "SELECT MIN(m) FROM ( \
       SELECT MIN(next_attempt_at_ms) AS m FROM postings \
         WHERE due_op IS NOT NULL AND due_rank = 0 AND lease_owner IS NULL \
       UNION ALL \
       SELECT MIN(next_attempt_at_ms) AS m FROM postings \
         WHERE due_op IS NOT NULL AND due_rank = 1 AND lease_owner IS NULL \
       UNION ALL \
       SELECT MIN(lease_until_ms) AS m FROM postings WHERE lease_owner IS NOT NULL) AS due";

pub(crate) const COUNT_STATES: &str = "SELECT state, COUNT(*) FROM postings GROUP BY state";
pub(crate) const COUNT_DUE_OPS: &str =
    "SELECT due_op, COUNT(*) FROM postings WHERE due_op IS NOT NULL GROUP BY due_op";
/// Desired-absent postings by reason code; an invalid posting's reason names
/// its field, so it is counted under `invalid` alone.
pub(crate) const COUNT_ABSENT_REASONS: &str = "SELECT CASE WHEN absent_reason LIKE 'invalid%' \
     THEN 'invalid' ELSE absent_reason END AS reason, COUNT(*) FROM postings \
     WHERE absent_reason IS NOT NULL GROUP BY 1 ORDER BY 1";
pub(crate) const OLDEST_DUE: &str =
    "SELECT MIN(due_since_ms) FROM postings WHERE due_since_ms IS NOT NULL";

pub(crate) const QUARANTINED_POSTINGS: &str = "SELECT id, COALESCE(absent_reason, '') FROM postings \
     WHERE state = 'quarantined' ORDER BY id LIMIT $1";
pub(crate) const QUARANTINED_ITEMS: &str = "SELECT posting_id, reason || ' (' || feed_position || ')' \
     FROM quarantine ORDER BY seq DESC LIMIT $1";

pub(crate) const IDS_PAGE: &str = "SELECT id FROM postings \
     WHERE ($1 IS NULL OR employer_cvr = $1) AND id > $2 ORDER BY id LIMIT $3";

pub(crate) const PURGE_AUDIT: &str = "DELETE FROM audit WHERE at_ms < $1";
/// Tombstones: nothing wanted, nothing held, nothing due or leased.
pub(crate) const PURGE_TOMBSTONES: &str = "DELETE FROM postings \
     WHERE state IN ('absent', 'quarantined') AND delivered_state = 'absent' \
       AND due_op IS NULL AND lease_owner IS NULL AND last_change_ms < $1 \
       AND (closed_ms IS NULL OR closed_ms < $1)";
pub(crate) const PURGE_QUARANTINE: &str = "DELETE FROM quarantine WHERE at_ms < $1";
/// How many rows each purge statement above would delete (`purge --dry-run`).
pub(crate) const PURGE_AUDIT_COUNT: &str = "SELECT COUNT(*) FROM audit WHERE at_ms < $1";
pub(crate) const PURGE_TOMBSTONES_COUNT: &str = "SELECT COUNT(*) FROM postings \
     WHERE state IN ('absent', 'quarantined') AND delivered_state = 'absent' \
       AND due_op IS NULL AND lease_owner IS NULL AND last_change_ms < $1 \
       AND (closed_ms IS NULL OR closed_ms < $1)";
pub(crate) const PURGE_QUARANTINE_COUNT: &str = "SELECT COUNT(*) FROM quarantine WHERE at_ms < $1";

/// The statements each database words its own way. Parameters are bound
/// in the order given here, the same for both databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stmt {
    /// `{COLUMNS}` of the records whose ids are the list `$1`; locked.
    SelectMany,
    /// `{COLUMNS}, lease_owner` of the records whose ids are the list `$1`;
    /// locked.
    SelectLeased,
    /// `{COLUMNS}, lease_owner` of up to `$2` records leased until before
    /// `$1`, earliest first; locked, skipping rows locked by others.
    SelectAbandoned,
    /// Leases up to `$4` due, unleased operations to `$1` until `$2`
    /// (`$3` is now), deletions first; returns `{CLAIM_COLUMNS}, due_rank,
    /// next_attempt_at_ms`.
    Claim,
    /// `{COLUMNS}` of present records that ended at or before `$1`, at most
    /// `$2`, in id order; locked.
    SelectExpired,
    /// `{COLUMNS}` of dead letters after `$1`, at most `$2`, in id order;
    /// locked.
    SelectDead,
    /// The same, not locked (a listing).
    ListDead,
    /// `seq, id` of up to `$3` records after key `$1`, in key order, that
    /// changed before `$2` and that EURES holds or should hold (not locked).
    UnseenInSnapshot,
    /// The same for records believed on EURES.
    UnseenInListing,
    /// `id, seq, source_version` of the ids `$1` (not locked).
    KnownVersions,
    /// `id, seq, delivered_state, delivered_version, delivered_hash` of the
    /// ids `$1` (not locked).
    DeliveredCopies,
    /// Deletes the documents of the records whose ids are the list `$1`;
    /// returns their `seq`.
    EraseDocuments,
    /// `id` of the records whose ids are the list `$1` that have a document.
    WithDocument,
    /// `id, content` of the documents of the records whose ids are the
    /// list `$1`.
    DocumentsOf,
    CountDead,
    NextExpiry,
}

/// What one database says its own way: its statements, how it binds a
/// list of ids, how it wakes other workers.
pub(crate) trait Dialect: Database + HasStatementCache {
    fn sql(stmt: Stmt) -> &'static str;
    /// Binds a list of ids as the next parameter of a query.
    fn bind_ids<'q, O>(
        query: sqlx::query::QueryAs<'q, Self, O, Self::Arguments>,
        ids: &[&str],
    ) -> sqlx::query::QueryAs<'q, Self, O, Self::Arguments>;
    /// Run inside a transaction whose commit makes work due now, to wake
    /// the other workers; `None` where there are none.
    const WAKE: Option<&'static str>;
    fn rows_affected(done: &Self::QueryResult) -> u64;
    /// The Input API's queries in this database's words.
    fn exchange() -> &'static super::exchange::ExchangeSql;
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
    for<'r> FlatEntry: FromRow<'r, DB::Row>,
    for<'r> Leased: FromRow<'r, DB::Row>,
    for<'r> RankedClaim: FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (String, String): FromRow<'r, DB::Row>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
    bool: for<'t> Encode<'t, DB> + Type<DB>,
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
            let _: Vec<(i64,)> =
                DB::bind_ids(sqlx::query_as(DB::sql(Stmt::EraseDocuments)), &erase)
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
        let mut claimed = in_claim_order(rows)?;
        // Read now that the claim holds the rows: an edit that committed
        // before is seen whole, and none can commit until this ends.
        let sent: Vec<&str> = claimed
            .iter()
            .filter(|c| matches!(c.op, Op::Create | Op::Update))
            .map(|c| c.id.as_str())
            .collect();
        if !sent.is_empty() {
            let docs: Vec<(String, String)> =
                DB::bind_ids(sqlx::query_as(DB::sql(Stmt::DocumentsOf)), &sent)
                    .fetch_all(&mut *self.0)
                    .await?;
            let mut docs: HashMap<String, String> = docs.into_iter().collect();
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
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
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
        let held: Vec<(String,)> = DB::bind_ids(sqlx::query_as(DB::sql(Stmt::WithDocument)), &ids)
            .fetch_all(&mut *self.0)
            .await?;
        for (id,) in held {
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
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
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

impl<DB> Tx<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    /// Deletes what retention no longer keeps.
    pub async fn purge(&mut self, cutoff_ms: i64, tombstone_cutoff_ms: i64) -> Result<PurgeStats> {
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
}

impl Summary {
    /// Assembles the summary from the rows of the counting queries above.
    pub(crate) fn from_counts(
        states: Vec<(String, i64)>,
        due_ops: Vec<(String, i64)>,
        absent_reasons: Vec<(String, i64)>,
        dead_letters: i64,
        oldest_due_since_ms: Option<i64>,
        last_poll: Option<String>,
        now_ms: i64,
    ) -> Summary {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let mut s = Summary {
            dead_letters: n(dead_letters),
            oldest_pending_ms: oldest_due_since_ms.map(|t| (now_ms - t).max(0)),
            last_source_poll_ms: last_poll.and_then(|v| v.parse().ok()),
            absent_reasons: absent_reasons
                .into_iter()
                .map(|(reason, count)| (reason, n(count)))
                .collect(),
            ..Summary::default()
        };
        for (state, count) in states {
            match state.as_str() {
                "present" => s.present = n(count),
                "pending" => s.pending = n(count),
                "absent" => s.absent = n(count),
                "quarantined" => s.quarantined = n(count),
                _ => {}
            }
        }
        for (op, count) in due_ops {
            match op.as_str() {
                "create" => s.backlog_create = n(count),
                "update" => s.backlog_update = n(count),
                // A verification is the end of a deletion.
                "delete" | "verify" => s.backlog_delete += n(count),
                _ => {}
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_writes_every_column_but_the_id() {
        let n = COLUMNS.split(',').count();
        assert_eq!(UPSERT_TAIL.matches("= excluded.").count(), n - 1);
        assert!(!UPSERT_TAIL.contains("id = excluded.id,"));
        assert!(!UPSERT_TAIL.contains(" id = excluded.id"));
        assert!(INSERT_HEAD.contains(&format!("({COLUMNS})")));
    }
}
