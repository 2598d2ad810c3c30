//! The ledger's persistence: per-posting records, the feed cursor, the
//! quarantine and the audit trail. Nothing outside this module writes SQL.
//!
//! Every write loads the affected records, lets the pure planner
//! ([`crate::domain::ledger`]) compute their next state, and writes them back
//! in one transaction, together with whatever must move with them (the
//! cursor with an ingested page, the audit row with an outcome). A store never
//! decides anything itself.
//!
//! Two backends, picked by the URL scheme in [`connect`]: [`SqliteStore`]
//! (embedded, one worker) and [`PgStore`] (production, many workers and CLI
//! processes writing at once). They share everything but their dialect and
//! how they open: the `Store` methods (`backend.rs`), the transaction bodies
//! (`tx.rs`), the SQL both accept (`sql.rs`) and the flat row form (`row.rs`).

mod backend;
pub mod backup;
pub mod exchange;
pub mod postgres;
mod row;
mod sql;
pub mod sqlite;
mod tx;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use crate::domain::ledger::{
    AttemptResult, Delivered, Entry, Incoming, Mode, Op, RetryLimits, StateLabel,
};

pub use postgres::PgStore;
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
    /// The first connection failed: one line saying where, why and what
    /// to do (see `postgres::connect_error`).
    #[error("{0}")]
    Connect(String),
    /// A read-only command found no ledger, or one it must not migrate.
    #[error("{0}")]
    NotReady(String),
    /// Another process inserted a record this transaction found missing;
    /// the transaction is retried (it then finds and locks the record).
    #[error("ledger row {0}: written concurrently by another process")]
    Conflict(String),
}

impl StoreError {
    /// A transaction that failed only because of a concurrent one and is
    /// worth running again: serialization failure (40001), deadlock
    /// (40P01), or a concurrent insert of the same record.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Conflict(_) => true,
            StoreError::Db(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40001" | "40P01"))
            }
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Clock and mode every write needs.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub now_ms: i64,
    pub mode: Mode,
}

impl Ctx {
    /// A claim's context: only push mode delivers, so only it claims.
    pub(crate) fn claiming(now_ms: i64) -> Ctx {
        Ctx {
            now_ms,
            mode: Mode::Push,
        }
    }
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
    /// The feed lost our cursor: a reconcile is due (remembered until one
    /// completes, across restarts).
    pub reconcile_requested: bool,
    /// An operator's resync: accept the current version again and redeliver.
    pub forced: bool,
    /// An operator checked JobAG: accept a version however far it jumps
    /// above the ledger's ([`crate::domain::ledger::implausible_jump`]).
    pub accept_version: bool,
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
    /// When the posting's previous attempt ended (epoch ms), if it had one.
    pub last_attempt_ms: Option<i64>,
    /// This claim's own token: its outcome is recorded only while the
    /// posting's lease still carries it (SPEC 3.7), so the late outcome of
    /// an older claim of the same worker changes nothing.
    pub lease_token: i64,
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
    /// Postings EURES must not hold, by reason code (`invalid: ...` counted
    /// as `invalid`), in reason order; a reason no posting has is left out.
    pub absent_reasons: Vec<(String, u64)>,
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
            Op::Delete | Op::Verify => self.backlog_delete,
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

/// A posting the ledger knows, as a snapshot page is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The record's key: stable while the record lives.
    pub key: i64,
    pub version: u64,
    /// The ledger holds it as deleted in JobAG (a snapshot that missed it,
    /// a read answered 404): a snapshot that shows it again at that
    /// version is judged again (SPEC 3.6).
    pub gone: bool,
}

/// A posting the ledger knows, as a listing page is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The record's key: stable while the record lives.
    pub key: i64,
    /// Version and content hash of the copy delivered, if any.
    pub copy: Option<(u64, String)>,
}

/// What a reconcile run did not see a record in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unseen {
    /// The JobAG snapshot: deleted in JobAG. Judges records EURES holds or
    /// should hold.
    InSnapshot,
    /// The complete EURES listing. Judges records believed on EURES.
    InListing,
}

impl Unseen {
    /// Whether a record is within this pass's scope (the same condition
    /// the candidates' SQL states).
    pub(crate) fn judges(self, entry: &Entry) -> bool {
        let held = entry.delivered != Delivered::Absent;
        match self {
            Unseen::InSnapshot => held || entry.desired.is_present(),
            Unseen::InListing => held,
        }
    }
}

/// Whose audit trail.
#[derive(Debug, Clone, Copy)]
pub enum AuditOf<'a> {
    Posting(&'a str),
    Employer(&'a str),
}

/// One delivery attempt as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub posting_id: String,
    pub employer_cvr: Option<String>,
    pub op: String,
    pub version: i64,
    pub content_hash: Option<String>,
    pub outcome: String,
    pub at_ms: i64,
    /// The lease owner that made the attempt (`None` before it was kept).
    pub worker: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeStats {
    pub audit_rows: u64,
    pub tombstones: u64,
    pub quarantine_rows: u64,
}

impl From<[u64; 3]> for PurgeStats {
    /// Rows deleted by the three purge statements, in the order of `sql.rs`.
    fn from([audit_rows, tombstones, quarantine_rows]: [u64; 3]) -> Self {
        PurgeStats {
            audit_rows,
            tombstones,
            quarantine_rows,
        }
    }
}

/// Whether reconcile writes what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Only report (`--dry-run`): nothing is written.
    DryRun,
    /// Make the ledger say what is true; due operations follow.
    Apply,
    /// Resync: also redeliver what already matches.
    Force,
    /// Resync's dry run: finds what `Force` would, writes nothing.
    ForceDryRun,
}

impl Repair {
    /// Whether what already matches is redelivered too (a resync).
    pub fn forces(self) -> bool {
        matches!(self, Repair::Force | Repair::ForceDryRun)
    }

    /// Whether what is found is written.
    pub fn writes(self) -> bool {
        matches!(self, Repair::Apply | Repair::Force)
    }
}

/// A migration the ledger has applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
    /// When, in UTC (`YYYY-MM-DDTHH:MM:SSZ`), as the database recorded it.
    pub installed_on: Option<String>,
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
    /// `missing_in_ledger`, `newer_in_source`, `rerendered`, `back_in_source`, `gone_from_source`,
    /// `orphan_on_eures`, `unwanted_on_eures`, `altered_on_eures`, `missing_on_eures`, `resync`.
    pub kind: &'static str,
    pub detail: String,
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
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open_existing(url).await?))
    } else {
        connect(url).await
    }
}

/// A database URL fit for messages: any password replaced by `***`.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(an unreadable database URL)".to_owned(),
    }
}

/// Which of `known` the ledger has not applied, given the versions it has.
fn not_applied(known: &sqlx::migrate::Migrator, applied: &[i64]) -> Vec<(i64, String)> {
    known
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| (m.version, m.description.to_string()))
        .collect()
}

/// Opens the store a database URL names (`sqlite:` or `postgres:`).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        Err(StoreError::Url(
            "database.url must start with sqlite: or postgres:".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::display_url;

    #[test]
    fn a_url_for_messages_never_carries_the_password() {
        assert_eq!(
            display_url("postgres://eures:Sekret-Pw-1@db.example:6432/ledger?sslmode=verify-full"),
            "postgres://eures:***@db.example:6432/ledger?sslmode=verify-full"
        );
        assert_eq!(
            display_url("postgres://eures@db.example/ledger"),
            "postgres://eures@db.example/ledger"
        );
        assert_eq!(
            display_url("sqlite://data/eures-sync.db?mode=rwc"),
            "sqlite://data/eures-sync.db?mode=rwc"
        );
        assert!(!display_url("postgres://a:b c@/x").contains("b c"));
    }
}
