//! The SQL text both databases accept unchanged (placeholders are `$N`,
//! which sqlx's SQLite driver reads as positions too), and the keys of
//! `agent_state`. What each database says differently is `dialect.rs`.
//!
//! Text only: nothing here runs a statement or decides anything.

use std::sync::LazyLock;

use super::row::{COLUMNS, ENTRY_COLUMNS};

pub(crate) const CURSOR_KEY: &str = "feed_cursor";
pub(crate) const LAST_POLL_KEY: &str = "last_source_poll_ms";
/// When (epoch ms, the ledger's clock) a poll last found nothing more to
/// read: the ledger had caught up with the source. The Input API serves
/// nothing until this is later than its own start (SPEC 4.3).
pub(crate) const SOURCE_HEAD_KEY: &str = "source_head_ms";
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
pub(crate) const WRITE_CHUNK: usize = 500;

pub(crate) static INSERT_HEAD: LazyLock<String> =
    LazyLock::new(|| format!("INSERT INTO postings ({COLUMNS}) "));

/// Ends a multi-row insert of records: those the transaction loaded are
/// written over themselves (leases untouched).
pub(crate) static UPSERT_TAIL: LazyLock<String> = LazyLock::new(|| {
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
pub(crate) static UPSERT_RELEASE_TAIL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}, lease_owner = NULL, lease_until_ms = NULL, lease_token = NULL",
        *UPSERT_TAIL
    )
});

/// Ends a multi-row insert of records the transaction did not find: one a
/// concurrent writer inserted first is skipped (a conflict to retry).
pub(crate) const INSERT_NEW_TAIL: &str = " ON CONFLICT (id) DO NOTHING";

/// One record, without taking any lock.
pub(crate) static SELECT_ONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {ENTRY} FROM postings WHERE id = $1",
        ENTRY = ENTRY_COLUMNS.as_str()
    )
});

/// Stores documents by posting id (`VALUES` names its columns `column1`,
/// `column2` in both databases); each replaces the one its record had.
pub(crate) const PUT_DOCUMENTS_HEAD: &str = "INSERT INTO documents (seq, content) \
     SELECT postings.seq, v.column2 FROM postings JOIN (";
/// `WHERE true` tells SQLite's parser that `ON` starts the upsert, not a join.
pub(crate) const PUT_DOCUMENTS_TAIL: &str = ") AS v ON postings.id = v.column1 WHERE true \
     ON CONFLICT (seq) DO UPDATE SET content = excluded.content";
/// Documents per multi-row write (2 parameters each).
pub(crate) const DOCUMENT_CHUNK: usize = 500;

pub(crate) const GET_STATE: &str = "SELECT value FROM agent_state WHERE key = $1";
pub(crate) const SET_STATE: &str = "INSERT INTO agent_state (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

pub(crate) const INSERT_QUARANTINE: &str =
    "INSERT INTO quarantine (posting_id, reason, feed_position, at_ms) VALUES ($1, $2, $3, $4)";

pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit \
     (posting_id, employer_cvr, op, version, content_hash, outcome, detail, at_ms, worker) ";
/// Audit rows per multi-row insert (9 parameters each).
pub(crate) const AUDIT_CHUNK: usize = 1000;

pub(crate) const AUDIT_COLUMNS: &str =
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
pub(crate) const NEXT_DUE: &str = "SELECT MIN(m) AS at FROM ( \
       SELECT MIN(next_attempt_at_ms) AS m FROM postings \
         WHERE due_op IS NOT NULL AND due_rank = 0 AND lease_owner IS NULL \
       UNION ALL \
       SELECT MIN(next_attempt_at_ms) AS m FROM postings \
         WHERE due_op IS NOT NULL AND due_rank = 1 AND lease_owner IS NULL \
       UNION ALL \
       SELECT MIN(lease_until_ms) AS m FROM postings WHERE lease_owner IS NOT NULL) AS due";

pub(crate) const COUNT_STATES: &str =
    "SELECT state AS label, COUNT(*) AS n FROM postings GROUP BY state";
pub(crate) const COUNT_DUE_OPS: &str =
    "SELECT due_op AS label, COUNT(*) AS n FROM postings WHERE due_op IS NOT NULL GROUP BY due_op";
/// Desired-absent postings by reason code; an invalid posting's reason names
/// its field, so it is counted under `invalid` alone.
pub(crate) const COUNT_ABSENT_REASONS: &str = "SELECT CASE WHEN absent_reason LIKE 'invalid%' \
     THEN 'invalid' ELSE absent_reason END AS label, COUNT(*) AS n FROM postings \
     WHERE absent_reason IS NOT NULL GROUP BY 1 ORDER BY 1";
pub(crate) const OLDEST_DUE: &str =
    "SELECT MIN(due_since_ms) AS at FROM postings WHERE due_since_ms IS NOT NULL";

pub(crate) const QUARANTINED_POSTINGS: &str = "SELECT id AS posting_id, COALESCE(absent_reason, '') AS reason FROM postings \
     WHERE state = 'quarantined' ORDER BY id LIMIT $1";
pub(crate) const QUARANTINED_ITEMS: &str = "SELECT posting_id, reason || ' (' || feed_position || ')' AS reason \
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
pub(crate) const PURGE_AUDIT_COUNT: &str = "SELECT COUNT(*) AS n FROM audit WHERE at_ms < $1";
pub(crate) const PURGE_TOMBSTONES_COUNT: &str = "SELECT COUNT(*) AS n FROM postings \
     WHERE state IN ('absent', 'quarantined') AND delivered_state = 'absent' \
       AND due_op IS NULL AND lease_owner IS NULL AND last_change_ms < $1 \
       AND (closed_ms IS NULL OR closed_ms < $1)";
pub(crate) const PURGE_QUARANTINE_COUNT: &str =
    "SELECT COUNT(*) AS n FROM quarantine WHERE at_ms < $1";

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
