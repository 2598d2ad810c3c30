//! The rows the ledger's statements return, by name: the flat column form
//! of a ledger [`Entry`] (and of a claimed operation), and one struct per
//! other shape of result, shared by both databases. A generic caller then
//! needs only its database to decode the column types (`String`, `i64`,
//! `bool`), not one bound per row shape. Mapping only: no statement runs
//! here, and no value is decided here that the planner did not compute.

use std::sync::LazyLock;

use crate::domain::ledger::{Content, Delivered, DesiredState, Doubt, Entry, Exchange, Op, Retry};

use super::types::{Claimed, ExchangeRef, StoreError, Summary};

/// The columns of `postings` a record writes, in the order [`FlatEntry`]
/// binds them. Its document is a row of `documents` (see [`Content`]).
pub(crate) const COLUMNS: &str = "id, employer_cvr, source_version, source_updated_at_ms, \
    desired_present, desired_hash, publication_end_ms, absent_reason, \
    delivered_state, delivered_version, delivered_hash, attempts, next_attempt_at_ms, \
    last_error, dead, forced, due_since_ms, created_ms, modified_ms, closed_ms, active, \
    due_op, due_rank, state, last_change_ms, strikes, last_attempt_ms, in_doubt, verify_at_ms";

/// What reads a record on its own, outside a write transaction: [`COLUMNS`]
/// and whether it has a document (without reading the document). A write
/// transaction learns that in a statement of its own, once the records are
/// locked: see `Tx::mark_documents`.
pub(crate) static ENTRY_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{COLUMNS}, EXISTS (SELECT 1 FROM documents WHERE documents.seq = postings.seq) \
         AS has_document"
    )
});

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct FlatEntry {
    pub id: String,
    pub employer_cvr: Option<String>,
    pub source_version: i64,
    pub source_updated_at_ms: Option<i64>,
    pub desired_present: bool,
    pub desired_hash: Option<String>,
    /// Read only, and only by [`ENTRY_COLUMNS`]: a document is written on
    /// its own (see [`documents`]).
    #[sqlx(default)]
    pub has_document: bool,
    pub publication_end_ms: Option<i64>,
    pub absent_reason: Option<String>,
    pub delivered_state: String,
    pub delivered_version: Option<i64>,
    pub delivered_hash: Option<String>,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub dead: bool,
    pub forced: bool,
    pub due_since_ms: Option<i64>,
    pub created_ms: Option<i64>,
    pub modified_ms: Option<i64>,
    pub closed_ms: Option<i64>,
    pub active: bool,
    pub due_op: Option<String>,
    pub due_rank: Option<i64>,
    pub state: String,
    pub last_change_ms: i64,
    pub strikes: i64,
    pub last_attempt_ms: Option<i64>,
    pub in_doubt: bool,
    pub verify_at_ms: Option<i64>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl FlatEntry {
    pub fn from_entry(e: &Entry) -> FlatEntry {
        let (desired_present, desired_hash, has_document, publication_end_ms, absent_reason) =
            match &e.desired {
                DesiredState::Present {
                    hash,
                    content,
                    publication_end_ms,
                } => (
                    true,
                    Some(hash.clone()),
                    content.is_some(),
                    Some(*publication_end_ms),
                    None,
                ),
                DesiredState::Absent { reason } => (false, None, false, None, Some(reason.clone())),
            };
        let (delivered_state, delivered_version, delivered_hash) = match &e.delivered {
            Delivered::Absent => ("absent", None, None),
            Delivered::Present { version, hash } => {
                ("present", Some(to_i64(*version)), Some(hash.clone()))
            }
            Delivered::Unknown => ("unknown", None, None),
        };
        let due = e.due();
        FlatEntry {
            id: e.id.clone(),
            employer_cvr: e.employer_cvr.clone(),
            source_version: to_i64(e.source_version),
            source_updated_at_ms: e.source_updated_at_ms,
            desired_present,
            desired_hash,
            has_document,
            publication_end_ms,
            absent_reason,
            delivered_state: delivered_state.to_string(),
            delivered_version,
            delivered_hash,
            attempts: i64::from(e.retry.attempts),
            next_attempt_at_ms: e.retry.next_attempt_at_ms,
            last_error: e.retry.last_error.clone(),
            dead: e.retry.dead,
            forced: e.retry.forced,
            due_since_ms: e.retry.due_since_ms,
            created_ms: e.exchange.created_ms,
            modified_ms: e.exchange.modified_ms,
            closed_ms: e.exchange.closed_ms,
            active: e.exchange.active,
            due_op: due.map(|op| op.as_str().to_string()),
            due_rank: due.map(Op::rank),
            state: e.state().as_str().to_string(),
            last_change_ms: e.last_change_ms,
            strikes: i64::from(e.retry.strikes),
            last_attempt_ms: e.retry.last_attempt_ms,
            in_doubt: e.doubt.in_doubt,
            verify_at_ms: e.doubt.verify_at_ms,
        }
    }

    pub fn into_entry(self) -> Result<Entry, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt {
            id: self.id.clone(),
            why: why.to_string(),
        };
        let desired = if self.desired_present {
            DesiredState::Present {
                hash: self
                    .desired_hash
                    .clone()
                    .ok_or_else(|| corrupt("present without hash"))?,
                content: self.has_document.then_some(Content::Stored),
                publication_end_ms: self
                    .publication_end_ms
                    .ok_or_else(|| corrupt("present without publication_end"))?,
            }
        } else {
            DesiredState::Absent {
                reason: self.absent_reason.clone().unwrap_or_default(),
            }
        };
        let delivered = match self.delivered_state.as_str() {
            "present" => Delivered::Present {
                version: u64::try_from(self.delivered_version.unwrap_or(0)).unwrap_or(0),
                hash: self.delivered_hash.clone().unwrap_or_default(),
            },
            "absent" => Delivered::Absent,
            "unknown" => Delivered::Unknown,
            _ => return Err(corrupt("unknown delivered state")),
        };
        Ok(Entry {
            id: self.id,
            employer_cvr: self.employer_cvr,
            source_version: u64::try_from(self.source_version).unwrap_or(0),
            source_updated_at_ms: self.source_updated_at_ms,
            desired,
            delivered,
            retry: Retry {
                attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
                strikes: u32::try_from(self.strikes).unwrap_or(u32::MAX),
                last_attempt_ms: self.last_attempt_ms,
                next_attempt_at_ms: self.next_attempt_at_ms,
                last_error: self.last_error,
                dead: self.dead,
                forced: self.forced,
                due_since_ms: self.due_since_ms,
            },
            exchange: Exchange {
                created_ms: self.created_ms,
                modified_ms: self.modified_ms,
                closed_ms: self.closed_ms,
                active: self.active,
            },
            last_change_ms: self.last_change_ms,
            doubt: Doubt {
                in_doubt: self.in_doubt,
                verify_at_ms: self.verify_at_ms,
            },
        })
    }
}

/// What writing `entries` does to their documents: the new ones to store
/// (id, document), and the ids of those that no longer keep one. A record
/// whose document is [`Content::Stored`] leaves it as it is.
pub(crate) fn documents<'e>(entries: &[&'e Entry]) -> (Vec<(&'e str, &'e str)>, Vec<&'e str>) {
    let mut store = Vec::new();
    let mut erase = Vec::new();
    for e in entries {
        match &e.desired {
            DesiredState::Present {
                content: Some(Content::New(doc)),
                ..
            } => store.push((e.id.as_str(), doc.as_str())),
            DesiredState::Present {
                content: Some(Content::Stored),
                ..
            } => {}
            _ => erase.push(e.id.as_str()),
        }
    }
    (store, erase)
}

/// A record with its lease (`SELECT {COLUMNS}, lease_owner, lease_token`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Leased {
    #[sqlx(flatten)]
    pub entry: FlatEntry,
    pub lease_owner: Option<String>,
    pub lease_token: Option<i64>,
}

/// Who holds a record's lease, and under which claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub owner: String,
    pub token: Option<i64>,
}

impl Leased {
    pub fn into_parts(self) -> Result<(Entry, Option<Lease>), StoreError> {
        let lease = self.lease_owner.map(|owner| Lease {
            owner,
            token: self.lease_token,
        });
        Ok((self.entry.into_entry()?, lease))
    }
}

/// Columns a claim returns (then `due_rank, next_attempt_at_ms` for [`RankedClaim`]).
/// The documents are read after the claim, in a statement of its own: on
/// PostgreSQL a subquery here would read them as of the statement's start,
/// which may be older than the row versions the `UPDATE` locked and
/// returns (an edit committed meanwhile would pair its new version and
/// hash with the old document).
/// A deletion carries the highest version known: the source's, or the one
/// EURES listed for the copy (reconcile), whichever is higher.
pub(crate) const CLAIM_COLUMNS: &str = "id, due_op, \
    CASE WHEN due_op = 'delete' AND delivered_version > source_version \
         THEN delivered_version ELSE source_version END AS source_version, \
    desired_hash, created_ms, modified_ms, employer_cvr, source_updated_at_ms, attempts, \
    last_attempt_ms, lease_token";

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct FlatClaim {
    pub id: String,
    pub due_op: Option<String>,
    pub source_version: i64,
    pub desired_hash: Option<String>,
    pub created_ms: Option<i64>,
    pub modified_ms: Option<i64>,
    pub employer_cvr: Option<String>,
    pub source_updated_at_ms: Option<i64>,
    pub attempts: i64,
    pub last_attempt_ms: Option<i64>,
    pub lease_token: Option<i64>,
}

/// A claimed row with what orders it: `RETURNING` keeps no order.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RankedClaim {
    #[sqlx(flatten)]
    pub claim: FlatClaim,
    pub due_rank: i64,
    pub next_attempt_at_ms: i64,
}

/// Claimed operations in claim order: deletions first, then the longest due.
/// `claimed_at_ms` is the claim's time on the ledger's clock.
pub(crate) fn in_claim_order(
    mut rows: Vec<RankedClaim>,
    claimed_at_ms: i64,
) -> Result<Vec<Claimed>, StoreError> {
    rows.sort_by_key(|r| (r.due_rank, r.next_attempt_at_ms));
    rows.into_iter()
        .map(|r| r.claim.into_claimed(claimed_at_ms))
        .collect()
}

impl FlatClaim {
    pub fn into_claimed(self, claimed_at_ms: i64) -> Result<Claimed, StoreError> {
        let op = self
            .due_op
            .as_deref()
            .and_then(Op::parse)
            .ok_or_else(|| StoreError::Corrupt {
                id: self.id.clone(),
                why: "claimed without a due operation".into(),
            })?;
        let upsert = matches!(op, Op::Create | Op::Update);
        Ok(Claimed {
            id: self.id,
            op,
            version: u64::try_from(self.source_version).unwrap_or(0),
            hash: if upsert { self.desired_hash } else { None },
            content: None,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            employer_cvr: self.employer_cvr,
            source_updated_at_ms: self.source_updated_at_ms,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            last_attempt_ms: self.last_attempt_ms,
            lease_token: self.lease_token.unwrap_or_default(),
            claimed_at_ms,
        })
    }
}

/// One number (`... AS n`).
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct Count {
    pub n: i64,
}

impl Count {
    pub fn get(self) -> u64 {
        u64::try_from(self.n).unwrap_or(0)
    }
}

/// The one nullable time a `SELECT MIN(...) AS at` returns.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct Earliest {
    pub at: Option<i64>,
}

/// A count per value of a column (`... AS label, COUNT(*) AS n`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct CountOf {
    pub label: String,
    pub n: i64,
}

/// A row of `agent_state`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct StateRow {
    pub key: String,
    pub value: String,
}

/// The value of one `agent_state` key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct StateValue {
    pub value: String,
}

/// A posting id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Id {
    pub id: String,
}

/// A record's key (`postings.seq`).
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct Seq {
    #[expect(dead_code, reason = "returned by the statement, not needed")]
    pub seq: i64,
}

/// A record's key and posting id, in key order.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Keyed {
    pub seq: i64,
    pub id: String,
}

/// A stored document by posting id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DocumentOf {
    pub id: String,
    pub content: String,
}

/// A quarantined posting or feed item: its id if it had one, and why.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Quarantined {
    pub posting_id: Option<String>,
    pub reason: String,
}

/// What a snapshot page is compared with (`Stmt::KnownVersions`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct KnownRow {
    pub id: String,
    pub seq: i64,
    pub source_version: i64,
    pub gone: bool,
}

/// What a listing page is compared with (`Stmt::DeliveredCopies`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DeliveredRow {
    pub id: String,
    pub seq: i64,
    pub delivered_state: String,
    pub delivered_version: Option<i64>,
    pub delivered_hash: Option<String>,
}

impl DeliveredRow {
    /// Version and content hash of the copy delivered, if any.
    pub fn copy(&self) -> Option<(u64, String)> {
        match (
            self.delivered_state.as_str(),
            self.delivered_version,
            &self.delivered_hash,
        ) {
            ("present", Some(v), Some(hash)) => Some((u64::try_from(v).unwrap_or(0), hash.clone())),
            _ => None,
        }
    }
}

/// Whether a table exists (`... AS present`).
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct Exists {
    pub present: bool,
}

/// A migration the ledger applied (`Stmt::AppliedMigrations`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct MigrationRow {
    pub version: i64,
    pub description: String,
    pub installed_on: Option<String>,
}

/// One reference of the EURES Input API, without its document.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RefRow {
    pub id: String,
    pub active: bool,
    pub created_ms: Option<i64>,
    pub modified_ms: Option<i64>,
    pub closed_ms: Option<i64>,
}

impl RefRow {
    pub fn into_ref(self) -> Result<ExchangeRef, StoreError> {
        let Some(created_ms) = self.created_ms else {
            return Err(StoreError::Corrupt {
                id: self.id,
                why: "exchange reference without a creation timestamp".into(),
            });
        };
        Ok(ExchangeRef {
            reference: self.id,
            active: self.active,
            created_ms,
            // The planner stamps both together; should the second be
            // missing, the copy reads as unmodified since its creation.
            modified_ms: self.modified_ms.unwrap_or(created_ms),
            closed_ms: self.closed_ms,
        })
    }
}

/// One reference with its document, where the query gives it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DetailRow {
    #[sqlx(flatten)]
    pub meta: RefRow,
    pub content: Option<String>,
}

/// The summary from the rows of the counting queries (`sql.rs`).
pub(crate) fn summary(
    states: Vec<CountOf>,
    due_ops: Vec<CountOf>,
    absent_reasons: Vec<CountOf>,
    dead_letters: Count,
    oldest_due_since_ms: Option<i64>,
    last_poll: Option<String>,
    now_ms: i64,
) -> Summary {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let mut s = Summary {
        dead_letters: dead_letters.get(),
        oldest_pending_ms: oldest_due_since_ms.map(|t| (now_ms - t).max(0)),
        last_source_poll_ms: last_poll.and_then(|v| v.parse().ok()),
        absent_reasons: absent_reasons
            .into_iter()
            .map(|r| (r.label, n(r.n)))
            .collect(),
        ..Summary::default()
    };
    for CountOf { label, n: count } in states {
        match label.as_str() {
            "present" => s.present = n(count),
            "pending" => s.pending = n(count),
            "absent" => s.absent = n(count),
            "quarantined" => s.quarantined = n(count),
            _ => {}
        }
    }
    for CountOf { label, n: count } in due_ops {
        match label.as_str() {
            "create" => s.backlog_create = n(count),
            "update" => s.backlog_update = n(count),
            // A verification is the end of a deletion.
            "delete" | "verify" => s.backlog_delete += n(count),
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, desired: DesiredState) -> Entry {
        Entry {
            id: id.into(),
            employer_cvr: None,
            source_version: 1,
            source_updated_at_ms: None,
            desired,
            delivered: Delivered::Absent,
            retry: Retry::default(),
            exchange: Exchange::default(),
            last_change_ms: 0,
            doubt: Doubt::default(),
        }
    }

    fn present(content: Option<Content>) -> DesiredState {
        DesiredState::Present {
            hash: "h".into(),
            content,
            publication_end_ms: 0,
        }
    }

    #[test]
    fn only_new_documents_are_written_and_unkept_ones_erased() {
        let entries = [
            entry("new", present(Some(Content::New("<doc/>".into())))),
            entry("kept", present(Some(Content::Stored))),
            entry("delivered", present(None)),
            entry(
                "withdrawn",
                DesiredState::Absent {
                    reason: "deleted".into(),
                },
            ),
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        let (store, erase) = documents(&refs);
        assert_eq!(store, [("new", "<doc/>")]);
        assert_eq!(erase, ["delivered", "withdrawn"]);
    }
}
