//! What the rest of the program asks of a ledger: [`Store`] (the worker,
//! the operators' commands) and [`ExchangeStore`] (the EURES Input API).
//! Both are implemented once for either database (`generic.rs`,
//! `exchange.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use super::types::{
    AppliedMigration, AuditOf, AuditRow, Claimed, Completion, Ctx, Diff, ExchangeDetail,
    ExchangeFilter, ExchangeRef, Held, IngestBatch, IngestStats, Known, Listed, PurgeStats, Repair,
    Result, Summary, Unseen,
};
use crate::domain::ledger::{Entry, Incoming};

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn migrate(&self) -> Result<()>;
    /// The migrations this binary knows that the ledger has not applied
    /// (version and description), without applying any.
    async fn pending_migrations(&self) -> Result<Vec<(i64, String)>>;
    /// The migrations the ledger has applied, oldest first.
    async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>>;
    /// Cheap round trip for readiness.
    async fn ping(&self) -> Result<()>;
    /// The time the ledger judges by (see `Backend::stamp`): the database
    /// server's on PostgreSQL, the process's (never below a time already
    /// stamped) on SQLite. Eligibility is judged by it, so a worker whose
    /// clock is off does not take a live posting for expired.
    async fn now_ms(&self) -> Result<i64>;

    // --- several workers ---

    /// Acquires or renews, for `ttl`, the leadership of the singleton loops
    /// (feed ingest, expiry, periodic reconcile): true while `owner` leads.
    /// Anyone may take it once the holder let it expire (a killed worker);
    /// a `ttl` of zero gives it up. SQLite: always true (one worker a file).
    async fn lead(&self, owner: &str, ttl: Duration) -> Result<bool>;
    /// Calls `wake.notify_one()` whenever another process committed work
    /// that is due now, until `stop` turns true; survives database restarts.
    /// SQLite: nothing (one worker, whose delivery loop polls anyway).
    fn watch_wakeups(&self, wake: Arc<Notify>, stop: watch::Receiver<bool>);

    async fn cursor(&self) -> Result<Option<String>>;
    /// Applies a page of changes, its quarantined items and the cursor, atomically.
    async fn ingest(&self, batch: &IngestBatch, ctx: Ctx) -> Result<IngestStats>;
    async fn set_last_poll(&self, at_ms: i64) -> Result<()>;
    /// When a reconcile was asked for that has not completed since.
    async fn reconcile_requested(&self) -> Result<Option<i64>>;
    /// Postings whose feed change was unusable and that are due to be
    /// re-read from JobAG at `now_ms` (kept across restarts).
    async fn rereads_due(&self, now_ms: i64) -> Result<Vec<String>>;
    /// The posting was re-read: forgotten. `retry_at_ms`: the re-read
    /// failed, try again then.
    async fn reread_done(&self, id: &str, retry_at_ms: Option<i64>) -> Result<()>;
    /// A reconcile begun after the request made at `requested_ms`
    /// completed: the request is done (a later one stays).
    async fn reconcile_done(&self, requested_ms: i64) -> Result<()>;

    /// Moves postings whose `publication_end` passed to `Absent(expired)`.
    /// Returns how many moved.
    async fn expire_due(&self, ctx: Ctx) -> Result<usize>;
    /// The earliest `publication_end` still ahead, for the expiry timer.
    async fn next_expiry_ms(&self) -> Result<Option<i64>>;

    /// Leases up to `limit` due operations, deletions first, one per posting.
    /// Leases that ran out (their worker died with a request in flight) are
    /// taken back first, by at most one claim every 250 ms of a store, and
    /// their attempts marked abandoned: EURES may hold what was sent, so the
    /// operation now due re-sends or deletes.
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Vec<Claimed>>;
    /// Records an attempt's end, releases the lease, writes the audit row.
    async fn complete(&self, owner: &str, done: Completion<'_>, ctx: Ctx) -> Result<()>;
    /// Records several attempts' ends, in order, in one transaction.
    async fn complete_many(&self, owner: &str, done: &[Completion<'_>], ctx: Ctx) -> Result<()>;
    /// Gives back a lease without an attempt (shutdown, content to re-read).
    async fn release(&self, owner: &str, claim: &Claimed) -> Result<()>;
    /// Ends every lease this owner holds (start-up, shutdown after the
    /// drain): the next claim takes them back as abandoned attempts.
    async fn release_all(&self, owner: &str) -> Result<u64>;
    /// When a claim can next get something (ms): the earliest unleased due
    /// operation, or the earliest lease to run out; `None` when neither.
    async fn next_due_ms(&self) -> Result<Option<i64>>;

    async fn get(&self, id: &str) -> Result<Option<Entry>>;
    async fn summary(&self, now_ms: i64) -> Result<Summary>;
    /// Postings whose latest change is invalid, then feed items without a
    /// usable id or version (newest first): `(id, reason)`, at most `limit` each.
    async fn quarantined(&self, limit: i64) -> Result<Vec<(Option<String>, String)>>;

    // --- operators ---

    /// Posting ids after `after` (keyset), all or one employer's.
    async fn ids_page(
        &self,
        employer: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>>;
    /// Parked creates/updates, oldest first.
    async fn dead_letters(&self, after: Option<&str>, limit: i64) -> Result<Vec<Entry>>;
    /// Revives the named dead letters (all when `ids` is `None`); returns how many.
    async fn revive(&self, ids: Option<&[String]>, ctx: Ctx) -> Result<u64>;
    /// Audit rows of one posting or one employer, in order, after `after_seq`.
    async fn audit(&self, of: AuditOf<'_>, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>>;
    /// Deletes audit rows and quarantine records older than `cutoff_ms`,
    /// tombstones older than `tombstone_cutoff_ms`.
    async fn purge(&self, cutoff_ms: i64, tombstone_cutoff_ms: i64) -> Result<PurgeStats>;
    /// What [`Store::purge`] with these cutoffs would delete; deletes nothing.
    async fn purge_counts(&self, cutoff_ms: i64, tombstone_cutoff_ms: i64) -> Result<PurgeStats>;

    // --- reconcile: a streaming three-way diff; what a run saw is kept as
    // one bit per ledger key (`engine::reconcile`), never as a set of ids ---

    /// Applies one snapshot page: newer versions, postings the ledger lacks,
    /// documents that render differently now. `page` holds only the
    /// postings that may differ (see [`Store::known_versions`]).
    async fn reconcile_source(
        &self,
        page: &[Incoming],
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>>;
    /// The ledger key and version of each of `ids` the ledger knows.
    async fn known_versions(&self, ids: &[&str]) -> Result<HashMap<String, Known>>;
    /// The ledger key of each of `ids` the ledger knows, with the version
    /// and content hash of the copy delivered to EURES, if any.
    async fn delivered_copies(&self, ids: &[&str]) -> Result<HashMap<String, Held>>;
    /// Compares one page of the EURES listing with the ledger. `page`
    /// holds only the items that may differ (see
    /// [`Store::delivered_copies`]).
    async fn reconcile_remote(
        &self,
        page: &[Listed],
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>>;
    /// Keys and ids of up to `limit` records after key `after`, in key
    /// order, that changed before run `run` began and that `unseen` judges
    /// (not locked): the pass over what the run did not see reads these
    /// and keeps the keys it did not mark.
    async fn unseen_candidates(
        &self,
        unseen: Unseen,
        run: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>>;
    /// Judges the records `ids` that run `run` did not see (and repairs).
    async fn reconcile_unseen(
        &self,
        unseen: Unseen,
        ids: &[&str],
        run: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>>;
}

#[async_trait]
pub trait ExchangeStore: Send + Sync + 'static {
    /// Waits until every ledger write already under way has committed and
    /// returns the answer's high-water mark H: every change stamped below H
    /// has committed, and no write that commits later is stamped below H.
    /// Listings call it first and list only what is stamped below H, so an
    /// answer is one consistent cut however slowly it is read, and a poller
    /// that goes on from the highest timestamp it saw misses nothing
    /// (SPEC 4.3).
    async fn barrier(&self) -> Result<i64>;

    /// The ledger's clock (on PostgreSQL the database server's).
    async fn now_ms(&self) -> Result<i64>;

    /// When the ledger last caught up with the source (see
    /// `IngestBatch::at_source_head`), on the ledger's clock; `None` while a
    /// reconcile the feed asked for (after a `410`) has not completed.
    async fn source_head_ms(&self) -> Result<Option<i64>>;

    /// Up to `limit` references matching `filter`, after `after` (the last
    /// reference of the previous page, in the filter's order), metadata only.
    /// A page shorter than `limit` is the last one.
    async fn exchange_page(
        &self,
        filter: ExchangeFilter,
        after: Option<&ExchangeRef>,
        limit: i64,
    ) -> Result<Vec<ExchangeRef>>;

    /// The known references among `references`, in no particular order,
    /// with the document of the ACTIVE ones. Unknown references and
    /// postings that were never ACTIVE are left out.
    async fn exchange_details(&self, references: &[String]) -> Result<Vec<ExchangeDetail>>;
}
