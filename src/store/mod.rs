//! The ledger's persistence: per-posting records, the feed cursor, the
//! quarantine and the audit trail. Nothing outside this module writes SQL.
//!
//! Every write loads the affected records, lets the pure planner
//! ([`crate::domain::ledger`]) compute their next state, and writes them back
//! in one transaction, together with whatever must move with them (the
//! cursor with an ingested page, the audit row with an outcome). A store never
//! decides anything itself.

pub mod exchange;
mod row;
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::ledger::{AttemptResult, Entry, Incoming, Mode, Op, RetryLimits, StateLabel};

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("ledger row {id}: {why}")]
    Corrupt { id: String, why: String },
    #[error("database url: {0}")]
    Url(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Clock and mode every write needs.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub now_ms: i64,
    pub mode: Mode,
}

/// A feed item without a usable id or version.
#[derive(Debug, Clone)]
pub struct QuarantineItem {
    pub posting_id: Option<String>,
    pub reason: String,
    /// Where in the feed it stood: the cursor the page was read after, and
    /// the item's index in that page.
    pub feed_position: String,
}

/// One page of feed changes to apply atomically with the cursor that follows it.
#[derive(Debug, Clone, Default)]
pub struct IngestBatch {
    pub changes: Vec<Incoming>,
    pub quarantined: Vec<QuarantineItem>,
    /// The cursor after this page; `None` leaves the cursor alone (resync).
    pub next_cursor: Option<String>,
    /// An operator's resync: accept the current version again and redeliver.
    pub forced: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Changes that moved a posting forward.
    pub applied: usize,
    /// Changes at or below the highest version seen.
    pub ignored: usize,
    pub quarantined: usize,
}

/// An operation handed to the delivery side under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub op: Op,
    /// The version to send: the highest seen.
    pub version: u64,
    pub hash: Option<String>,
    /// The document for create/update; `None` when it was erased and must be
    /// re-read from the source first.
    pub content: Option<String>,
    pub created_ms: Option<i64>,
    pub modified_ms: Option<i64>,
    pub employer_cvr: Option<String>,
    pub source_updated_at_ms: Option<i64>,
    pub attempts: u32,
}

/// Counts for `status` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub present: u64,
    pub pending: u64,
    pub absent: u64,
    pub quarantined: u64,
    pub backlog_create: u64,
    pub backlog_update: u64,
    pub backlog_delete: u64,
    pub dead_letters: u64,
    /// Age of the oldest open gap (ms), `None` when nothing is pending.
    pub oldest_pending_ms: Option<i64>,
    pub last_source_poll_ms: Option<i64>,
}

impl Summary {
    pub fn count(&self, state: StateLabel) -> u64 {
        match state {
            StateLabel::Present => self.present,
            StateLabel::Pending => self.pending,
            StateLabel::Absent => self.absent,
            StateLabel::Quarantined => self.quarantined,
        }
    }

    pub fn backlog(&self, op: Op) -> u64 {
        match op {
            Op::Create => self.backlog_create,
            Op::Update => self.backlog_update,
            Op::Delete => self.backlog_delete,
        }
    }
}

/// How a finished attempt is recorded.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub claimed: &'a Claimed,
    pub result: &'a AttemptResult,
    /// Metric/audit label of the outcome.
    pub outcome_label: &'a str,
    pub limits: RetryLimits,
    /// Delay before the next attempt if this one failed.
    pub backoff: Duration,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn migrate(&self) -> Result<()>;
    /// Cheap round trip for readiness.
    async fn ping(&self) -> Result<()>;

    async fn cursor(&self) -> Result<Option<String>>;
    /// Applies a page of changes, its quarantined items and the cursor, atomically.
    async fn ingest(&self, batch: &IngestBatch, ctx: Ctx) -> Result<IngestStats>;
    async fn set_last_poll(&self, at_ms: i64) -> Result<()>;

    /// Moves postings whose `publication_end` passed to `Absent(expired)`.
    /// Returns how many moved.
    async fn expire_due(&self, ctx: Ctx) -> Result<usize>;
    /// The earliest `publication_end` still ahead, for the expiry timer.
    async fn next_expiry_ms(&self) -> Result<Option<i64>>;

    /// Leases up to `limit` due operations, deletions first, one per posting.
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Vec<Claimed>>;
    /// Records an attempt's end, releases the lease, writes the audit row.
    async fn complete(&self, owner: &str, done: Completion<'_>, ctx: Ctx) -> Result<()>;
    /// Records several attempts' ends; a store may do it in one transaction.
    async fn complete_many(&self, owner: &str, done: &[Completion<'_>], ctx: Ctx) -> Result<()> {
        for d in done {
            self.complete(owner, d.clone(), ctx).await?;
        }
        Ok(())
    }
    /// Gives back a lease without an attempt (shutdown, content to re-read).
    async fn release(&self, owner: &str, id: &str) -> Result<()>;
    /// Gives back every lease this owner holds (start-up, shutdown), or every
    /// expired lease of anyone.
    async fn release_all(&self, owner: &str) -> Result<u64>;
    /// When the next due operation becomes ready (ms), if any.
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
    /// Deletes audit rows, tombstones and quarantine records older than `cutoff_ms`.
    async fn purge(&self, cutoff_ms: i64) -> Result<PurgeStats>;

    // --- reconcile: a streaming three-way diff through stamps, not sets ---

    /// Applies one snapshot page: newer versions, postings the ledger lacks,
    /// documents that render differently now. Stamps every id with `run`.
    /// `seen` names every posting of the snapshot page, `page` only those
    /// evaluated (the others the ledger holds at the same version already).
    async fn reconcile_source(
        &self,
        page: &[Incoming],
        seen: &[&str],
        run: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>>;
    /// The highest version the ledger holds for each of `ids` it knows.
    async fn known_versions(&self, ids: &[&str]) -> Result<std::collections::HashMap<String, u64>>;
    /// Records older than `run` that the snapshot did not show: deleted in
    /// JobAG. Keyset page after `after`; returns the diffs and the last id read.
    async fn reconcile_source_gone(
        &self,
        run: i64,
        after: Option<&str>,
        limit: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<(Vec<Diff>, Option<String>)>;
    /// Compares one page of the EURES listing with the ledger.
    async fn reconcile_remote(
        &self,
        page: &[Listed],
        run: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>>;
    /// Records the ledger believes are on EURES that the listing did not show.
    async fn reconcile_remote_missing(
        &self,
        run: i64,
        after: Option<&str>,
        limit: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<(Vec<Diff>, Option<String>)>;
}

/// Whose audit trail.
#[derive(Debug, Clone, Copy)]
pub enum AuditOf<'a> {
    Posting(&'a str),
    Employer(&'a str),
}

/// One delivery attempt as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub posting_id: String,
    pub employer_cvr: Option<String>,
    pub op: String,
    pub version: i64,
    pub content_hash: Option<String>,
    pub outcome: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeStats {
    pub audit_rows: u64,
    pub tombstones: u64,
    pub quarantine_rows: u64,
}

/// Whether reconcile writes what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Only report (`--dry-run`); stamps are still written.
    DryRun,
    /// Make the ledger say what is true; due operations follow.
    Apply,
    /// Resync: also redeliver what already matches.
    Force,
}

/// One item of the EURES listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub reference: String,
    pub source_version: u64,
    pub content_sha256: Option<String>,
}

/// A difference reconcile found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diff {
    pub id: String,
    /// `missing_in_ledger`, `newer_in_source`, `rerendered`, `gone_from_source`,
    /// `orphan_on_eures`, `unwanted_on_eures`, `altered_on_eures`, `missing_on_eures`, `resync`.
    pub kind: &'static str,
    pub detail: String,
}

/// Opens the store a database URL names (`sqlite:` or `postgres:`).
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Err(StoreError::Url(
            "postgres:// ledgers are not available in this build yet; use a sqlite:// URL".into(),
        ))
    } else {
        Err(StoreError::Url(
            "database.url must start with sqlite: or postgres:".into(),
        ))
    }
}
