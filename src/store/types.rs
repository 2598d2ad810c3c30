//! The ledger's public values: what callers hand a store and what it
//! hands back, for the worker, the operators' commands and the EURES Input
//! API. Plain data and the error type; no SQL and no I/O.

use std::time::Duration;

use crate::domain::ledger::{
    AttemptResult, Delivered, Entry, Incoming, Mode, Op, RetryLimits, StateLabel,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("ledger row {id}: {why}")]
    Corrupt { id: String, why: String },
    /// `database.url` cannot work: what is wrong with it, never the
    /// password.
    #[error("database.url: {0}")]
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
    /// The last chunk of a page after which the feed has nothing more: the
    /// ledger has caught up with the source, recorded with the changes
    /// (the Input API waits for it after a start, SPEC 4.3).
    pub at_source_head: bool,
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
    /// When the lease was taken, on the ledger's clock (the clock of
    /// `last_attempt_ms`): what lets the worker relate the ledger's times
    /// to its own without comparing two clocks (SPEC 3.9).
    pub claimed_at_ms: i64,
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
    /// Rows deleted by the three purge statements, in the order
    /// `LedgerTx::purge` runs them: audit, tombstones, quarantine.
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

/// How getChanges sorts a reference (SPEC 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Not closed, and created at its last modification.
    Created,
    /// Not closed, changed after its creation.
    Modified,
    /// Has a closing timestamp.
    Closed,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 3] = [
        ChangeKind::Created,
        ChangeKind::Modified,
        ChangeKind::Closed,
    ];
}

/// Which references a page lists, and in which order. Every filter lists
/// only references last modified before `before_ms`, the answer's
/// high-water mark ([`ExchangeStore::barrier`](super::api::ExchangeStore::barrier)):
/// a change stamped at or after it belongs to the next answer, so an answer
/// read slowly is still one consistent cut (SPEC 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeFilter {
    /// Every ACTIVE copy, ordered by reference (getAll).
    Active { before_ms: i64 },
    /// References of one kind whose last modification is in
    /// `[since_ms, before_ms)`, ordered by (last modification, reference)
    /// (getChanges).
    Changed {
        kind: ChangeKind,
        since_ms: i64,
        before_ms: i64,
    },
}

impl ExchangeFilter {
    /// The answer's high-water mark.
    pub fn before_ms(self) -> i64 {
        match self {
            ExchangeFilter::Active { before_ms } | ExchangeFilter::Changed { before_ms, .. } => {
                before_ms
            }
        }
    }
}

/// One reference's exchange facts, without its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRef {
    /// The JobAG posting id.
    pub reference: String,
    /// The ledger's ACTIVE flag; see [`ExchangeRef::is_active`].
    pub active: bool,
    /// When the copy last became ACTIVE (epoch ms, the agent's clock).
    pub created_ms: i64,
    /// When the copy's content or status last changed (epoch ms).
    pub modified_ms: i64,
    /// When the copy was closed; `None` while ACTIVE.
    pub closed_ms: Option<i64>,
}

impl ExchangeRef {
    /// ACTIVE on the exchange. A row that is flagged active but carries a
    /// closing timestamp (which the planner never writes) counts as CLOSED:
    /// when in doubt, the copy goes.
    pub fn is_active(&self) -> bool {
        self.active && self.closed_ms.is_none()
    }

    /// How getChanges reports this reference.
    pub fn kind(&self) -> ChangeKind {
        if self.closed_ms.is_some() {
            ChangeKind::Closed
        } else if self.created_ms == self.modified_ms {
            ChangeKind::Created
        } else {
            ChangeKind::Modified
        }
    }
}

/// One reference's facts and, while it is ACTIVE, its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDetail {
    pub meta: ExchangeRef,
    /// The rendered PositionOpening; `None` when the copy is CLOSED, and also
    /// when an ACTIVE copy's document was erased (a ledger written in push
    /// mode): the caller must then not serve it as ACTIVE.
    pub content: Option<String>,
}
