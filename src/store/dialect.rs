//! What each database says its own way: a table of [`Stmt`]s per
//! database, kept side by side here (row locks, id lists, 0/1 flags versus
//! booleans, `NOTIFY`), how each binds a list of ids, its migrations, and
//! its wording of the EURES Input API's queries ([`ExchangeSql`]). The SQL
//! both accept unchanged is `sql.rs`.
//!
//! "Locked" below means `FOR UPDATE` on PostgreSQL, so that two processes
//! writing the same posting take turns; SQLite takes no row locks, its
//! write transactions being exclusive.
//!
//! Statements only: nothing here runs one.

use std::sync::LazyLock;

use sqlx::Database;
use sqlx::database::HasStatementCache;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgQueryResult, Postgres};
use sqlx::query::QueryAs;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteQueryResult};

use super::row::{CLAIM_COLUMNS, COLUMNS};
use super::types::{ChangeKind, ExchangeFilter};

/// The statements each database words its own way. Parameters are bound
/// in the order given here, the same for both databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stmt {
    /// `{COLUMNS}` of the records whose ids are the list `$1`, in no set
    /// order; locked (on PostgreSQL in id order, so that two transactions
    /// never wait for each other in a cycle).
    SelectMany,
    /// `{COLUMNS}, lease_owner, lease_token` of the records whose ids are
    /// the list `$1`; locked as [`Stmt::SelectMany`].
    SelectLeased,
    /// `{COLUMNS}, lease_owner, lease_token` of up to `$2` records leased
    /// until before `$1`, earliest first; locked, skipping rows locked by
    /// others.
    SelectAbandoned,
    /// Leases up to `$4` due, unleased operations to `$1` until `$2` under
    /// the claim token `$5` (`$3` is now), deletions first; returns
    /// `{CLAIM_COLUMNS}, due_rank, next_attempt_at_ms` (in no order).
    Claim,
    /// `{COLUMNS}` of up to `$2` present records that ended at or before
    /// `$1`. PostgreSQL: in id order, locked, skipping rows locked by others
    /// (every worker runs the expiry pass); SQLite: earliest end first.
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
    /// `id, seq, source_version, gone` of the ids `$1`, `gone` when the
    /// ledger holds the posting as deleted in JobAG (not locked).
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
    /// `n`: how many dead letters.
    CountDead,
    /// `at`: the earliest `publication_end_ms` of a present record.
    NextExpiry,
    /// `present`: whether sqlx's migrations table exists.
    MigrationsTable,
    /// `version, description, installed_on` of the applied migrations,
    /// oldest first, `installed_on` in UTC as `YYYY-MM-DDTHH:MM:SSZ`.
    AppliedMigrations,
}

/// What one database says its own way: its statements, how it binds a
/// list of ids, how it wakes other workers, its migrations.
pub(crate) trait Dialect: Database + HasStatementCache {
    fn sql(stmt: Stmt) -> &'static str;
    /// Binds a list of ids as the next parameter of a query.
    fn bind_ids<'q, O>(
        query: QueryAs<'q, Self, O, Self::Arguments>,
        ids: &[&str],
    ) -> QueryAs<'q, Self, O, Self::Arguments>;
    /// Run inside a transaction whose commit makes work due now, to wake
    /// the other workers; `None` where there are none.
    const WAKE: Option<&'static str>;
    fn rows_affected(done: &Self::QueryResult) -> u64;
    /// The Input API's queries in this database's words.
    fn exchange() -> &'static ExchangeSql;
    /// The migrations this binary knows for this database.
    fn migrator() -> &'static Migrator;
}

// ---- SQLite ----

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

// No `FOR UPDATE`: every write transaction is exclusive.
static SQLITE_SELECT_MANY: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM postings WHERE id IN (SELECT value FROM json_each(?1))")
});
static SQLITE_SELECT_LEASED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS}, lease_owner, lease_token FROM postings \
         WHERE id IN (SELECT value FROM json_each(?1))"
    )
});
static SQLITE_SELECT_EXPIRED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM postings WHERE desired_present = 1 AND publication_end_ms <= ?1 \
         ORDER BY publication_end_ms LIMIT ?2"
    )
});
static SQLITE_SELECT_DEAD: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM postings WHERE dead = 1 AND id > ?1 ORDER BY id LIMIT ?2")
});
static SQLITE_SELECT_ABANDONED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS}, lease_owner, lease_token FROM postings \
         WHERE lease_owner IS NOT NULL AND lease_until_ms < ?1 ORDER BY lease_until_ms LIMIT ?2"
    )
});
static SQLITE_CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE postings SET lease_owner = ?1, lease_until_ms = ?2, lease_token = ?5 WHERE id IN ( \
           SELECT id FROM postings WHERE due_op IS NOT NULL AND next_attempt_at_ms <= ?3 \
             AND lease_owner IS NULL \
           ORDER BY due_rank, next_attempt_at_ms LIMIT ?4) \
         RETURNING {CLAIM_COLUMNS}, due_rank, next_attempt_at_ms"
    )
});

fn json_ids(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

impl Dialect for Sqlite {
    fn sql(stmt: Stmt) -> &'static str {
        match stmt {
            Stmt::SelectMany => SQLITE_SELECT_MANY.as_str(),
            Stmt::SelectLeased => SQLITE_SELECT_LEASED.as_str(),
            Stmt::SelectAbandoned => SQLITE_SELECT_ABANDONED.as_str(),
            Stmt::Claim => SQLITE_CLAIM.as_str(),
            Stmt::SelectExpired => SQLITE_SELECT_EXPIRED.as_str(),
            Stmt::SelectDead | Stmt::ListDead => SQLITE_SELECT_DEAD.as_str(),
            Stmt::UnseenInSnapshot => {
                "SELECT seq, id FROM postings WHERE seq > $1 AND last_change_ms < $2 \
                   AND (desired_present = 1 OR delivered_state <> 'absent') ORDER BY seq LIMIT $3"
            }
            Stmt::UnseenInListing => {
                "SELECT seq, id FROM postings WHERE seq > $1 AND last_change_ms < $2 \
                   AND delivered_state <> 'absent' ORDER BY seq LIMIT $3"
            }
            Stmt::KnownVersions => {
                "SELECT id, seq, source_version, \
                   (desired_present = 0 AND absent_reason IS NOT NULL AND absent_reason = 'deleted') AS gone \
                 FROM postings WHERE id IN (SELECT value FROM json_each($1))"
            }
            Stmt::DeliveredCopies => {
                "SELECT id, seq, delivered_state, delivered_version, delivered_hash \
                 FROM postings WHERE id IN (SELECT value FROM json_each($1))"
            }
            Stmt::EraseDocuments => {
                "DELETE FROM documents WHERE seq IN (SELECT seq FROM postings \
                   WHERE id IN (SELECT value FROM json_each($1))) RETURNING seq"
            }
            Stmt::WithDocument => {
                "SELECT postings.id FROM postings JOIN documents ON documents.seq = postings.seq \
                 WHERE postings.id IN (SELECT value FROM json_each($1))"
            }
            Stmt::DocumentsOf => {
                "SELECT postings.id, documents.content FROM postings \
                 JOIN documents ON documents.seq = postings.seq \
                 WHERE postings.id IN (SELECT value FROM json_each($1))"
            }
            Stmt::CountDead => "SELECT COUNT(*) AS n FROM postings WHERE dead = 1",
            Stmt::NextExpiry => {
                "SELECT MIN(publication_end_ms) AS at FROM postings WHERE desired_present = 1"
            }
            Stmt::MigrationsTable => {
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
                   AND name = '_sqlx_migrations') AS present"
            }
            Stmt::AppliedMigrations => {
                "SELECT version, description, \
                   strftime('%Y-%m-%dT%H:%M:%SZ', installed_on) AS installed_on \
                 FROM _sqlx_migrations WHERE success ORDER BY version"
            }
        }
    }

    fn bind_ids<'q, O>(
        query: QueryAs<'q, Sqlite, O, SqliteArguments>,
        ids: &[&str],
    ) -> QueryAs<'q, Sqlite, O, SqliteArguments> {
        query.bind(json_ids(ids))
    }

    /// One worker a file: nobody to wake.
    const WAKE: Option<&'static str> = None;

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn exchange() -> &'static ExchangeSql {
        &SQLITE_EXCHANGE
    }

    fn migrator() -> &'static Migrator {
        &SQLITE_MIGRATOR
    }
}
// ---- PostgreSQL ----

static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

static PG_SELECT_MANY: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM postings WHERE id = ANY($1) ORDER BY id FOR UPDATE")
});
static PG_SELECT_LEASED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS}, lease_owner, lease_token FROM postings \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    )
});
/// Every worker runs the expiry pass: rows another one is expiring (or
/// anyone is writing) are skipped, and expiry is idempotent.
static PG_SELECT_EXPIRED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM postings WHERE desired_present AND publication_end_ms <= $1 \
         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
    )
});
static PG_SELECT_DEAD: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM postings WHERE dead AND id > $1 ORDER BY id LIMIT $2")
});
static PG_SELECT_DEAD_LOCKED: LazyLock<String> =
    LazyLock::new(|| format!("{} FOR UPDATE", PG_SELECT_DEAD.as_str()));
static PG_SELECT_ABANDONED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS}, lease_owner, lease_token FROM postings \
         WHERE lease_owner IS NOT NULL AND lease_until_ms < $1 \
         ORDER BY lease_until_ms LIMIT $2 FOR UPDATE SKIP LOCKED"
    )
});
/// The MATERIALIZED CTE runs the locking pick exactly once; SKIP LOCKED
/// passes over rows another worker is claiming or another transaction is
/// writing, and `lease_owner IS NULL` over those already leased (expired
/// leases were reaped just before, in the same transaction).
static PG_CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH picked AS MATERIALIZED ( \
           SELECT id AS picked_id FROM postings \
           WHERE due_op IS NOT NULL AND next_attempt_at_ms <= $3 \
             AND lease_owner IS NULL \
           ORDER BY due_rank, next_attempt_at_ms LIMIT $4 \
           FOR UPDATE SKIP LOCKED) \
         UPDATE postings SET lease_owner = $1, lease_until_ms = $2, lease_token = $5 \
         WHERE id = ANY (ARRAY (SELECT picked_id FROM picked)) \
         RETURNING {CLAIM_COLUMNS}, due_rank, next_attempt_at_ms"
    )
});

/// Ids as a `TEXT[]` parameter, for `= ANY($n)`.
fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

impl Dialect for Postgres {
    fn sql(stmt: Stmt) -> &'static str {
        match stmt {
            Stmt::SelectMany => PG_SELECT_MANY.as_str(),
            Stmt::SelectLeased => PG_SELECT_LEASED.as_str(),
            Stmt::SelectAbandoned => PG_SELECT_ABANDONED.as_str(),
            Stmt::Claim => PG_CLAIM.as_str(),
            Stmt::SelectExpired => PG_SELECT_EXPIRED.as_str(),
            Stmt::SelectDead => PG_SELECT_DEAD_LOCKED.as_str(),
            Stmt::ListDead => PG_SELECT_DEAD.as_str(),
            Stmt::UnseenInSnapshot => {
                "SELECT seq, id FROM postings WHERE seq > $1 AND last_change_ms < $2 \
                   AND (desired_present OR delivered_state <> 'absent') ORDER BY seq LIMIT $3"
            }
            Stmt::UnseenInListing => {
                "SELECT seq, id FROM postings WHERE seq > $1 AND last_change_ms < $2 \
                   AND delivered_state <> 'absent' ORDER BY seq LIMIT $3"
            }
            Stmt::KnownVersions => {
                "SELECT id, seq, source_version, \
                   (NOT desired_present AND absent_reason IS NOT NULL AND absent_reason = 'deleted') AS gone \
                 FROM postings WHERE id = ANY($1)"
            }
            Stmt::DeliveredCopies => {
                "SELECT id, seq, delivered_state, delivered_version, delivered_hash \
                 FROM postings WHERE id = ANY($1)"
            }
            Stmt::EraseDocuments => {
                "DELETE FROM documents WHERE seq IN (SELECT seq FROM postings WHERE id = ANY($1)) \
                 RETURNING seq"
            }
            Stmt::WithDocument => {
                "SELECT postings.id FROM postings JOIN documents ON documents.seq = postings.seq \
                 WHERE postings.id = ANY($1)"
            }
            Stmt::DocumentsOf => {
                "SELECT postings.id, documents.content FROM postings \
                 JOIN documents ON documents.seq = postings.seq WHERE postings.id = ANY($1)"
            }
            Stmt::CountDead => "SELECT COUNT(*) AS n FROM postings WHERE dead",
            Stmt::NextExpiry => {
                "SELECT MIN(publication_end_ms) AS at FROM postings WHERE desired_present"
            }
            Stmt::MigrationsTable => {
                "SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS present"
            }
            Stmt::AppliedMigrations => {
                "SELECT version, description, \
                   to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                   AS installed_on \
                 FROM _sqlx_migrations WHERE success ORDER BY version"
            }
        }
    }

    fn bind_ids<'q, O>(
        query: QueryAs<'q, Postgres, O, PgArguments>,
        ids: &[&str],
    ) -> QueryAs<'q, Postgres, O, PgArguments> {
        query.bind(owned(ids))
    }

    /// Delivered to every listening worker when the transaction commits.
    const WAKE: Option<&'static str> = Some("NOTIFY eures_sync");

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn exchange() -> &'static ExchangeSql {
        &POSTGRES_EXCHANGE
    }

    fn migrator() -> &'static Migrator {
        &POSTGRES_MIGRATOR
    }
}
// ---- the EURES Input API (SPEC 4.3) ----

/// The condition a row of this kind meets, word for word the WHERE clause
/// of its partial index in `migrations/sqlite/0002_exchange.sql` (and
/// `migrations/postgres/0005_exchange.sql`).
fn change_condition(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Created => {
            "created_ms IS NOT NULL AND closed_ms IS NULL AND created_ms = modified_ms"
        }
        ChangeKind::Modified => {
            "created_ms IS NOT NULL AND closed_ms IS NULL AND created_ms <> modified_ms"
        }
        ChangeKind::Closed => "created_ms IS NOT NULL AND closed_ms IS NOT NULL",
    }
}

/// Condition of an ACTIVE copy; the WHERE clause of `postings_x_active`,
/// `{TRUE}` standing for the database's way to write true.
const ACTIVE_CONDITION: &str = "created_ms IS NOT NULL AND closed_ms IS NULL AND active = {TRUE}";

const REF_COLUMNS: &str = "id, active, created_ms, modified_ms, closed_ms";

/// One database's exchange queries, built once (sqlx takes `'static` SQL
/// text only): at slot `2 * filter_slot(filter)` of `pages` the first page,
/// after it the next ones.
pub(crate) struct ExchangeSql {
    pages: Vec<String>,
    details: String,
}

impl ExchangeSql {
    /// `truth` is how the database writes true (SQLite's partial indexes
    /// match `active = 1` only); `ids_in` selects the ids of the list `$1`.
    fn new(truth: &str, ids_in: &str) -> ExchangeSql {
        let active = ACTIVE_CONDITION.replace("{TRUE}", truth);
        // `$2` is the answer's high-water mark. In getAll's key order it is
        // a filter, not a range: `+` keeps SQLite from planning around it
        // (it would scan the primary key instead of the partial index).
        let by_reference = |next: &str| {
            format!(
                "SELECT {REF_COLUMNS} FROM postings WHERE {active} AND +modified_ms < $2{next} \
                 ORDER BY id LIMIT $1"
            )
        };
        // A following page starts after the previous page's last row, which is
        // at or after `since` already. Repeating `modified_ms >= since` there
        // would make SQLite start every page's range at `since` instead.
        let by_change = |kind: ChangeKind, from: &str| {
            format!(
                "SELECT {REF_COLUMNS} FROM postings WHERE {} AND modified_ms < $2 AND {from} \
                 ORDER BY modified_ms, id LIMIT $1",
                change_condition(kind)
            )
        };
        let mut pages = vec![by_reference(""), by_reference(" AND id > $3")];
        for kind in ChangeKind::ALL {
            pages.push(by_change(kind, "modified_ms >= $3"));
            pages.push(by_change(kind, "(modified_ms, id) > ($3, $4)"));
        }
        let details = format!(
            "SELECT {REF_COLUMNS}, \
               CASE WHEN active = {truth} AND closed_ms IS NULL AND desired_present = {truth} \
                    THEN (SELECT content FROM documents WHERE documents.seq = postings.seq) \
               END AS content \
             FROM postings WHERE {ids_in} AND created_ms IS NOT NULL"
        );
        ExchangeSql { pages, details }
    }

    /// The query of the details of the references in the list `$1`.
    pub(crate) fn details(&self) -> &str {
        self.details.as_str()
    }

    /// The query of one page: the first (`next == false`) or a following one.
    pub(crate) fn page(&self, filter: ExchangeFilter, next: bool) -> &str {
        self.pages[2 * filter_slot(filter) + usize::from(next)].as_str()
    }
}

pub(crate) static SQLITE_EXCHANGE: LazyLock<ExchangeSql> =
    LazyLock::new(|| ExchangeSql::new("1", "id IN (SELECT value FROM json_each($1))"));
pub(crate) static POSTGRES_EXCHANGE: LazyLock<ExchangeSql> =
    LazyLock::new(|| ExchangeSql::new("TRUE", "id = ANY($1)"));

/// Position of a filter's queries in [`ExchangeSql::pages`] (kinds in `ChangeKind::ALL` order).
fn filter_slot(filter: ExchangeFilter) -> usize {
    match filter {
        ExchangeFilter::Active { .. } => 0,
        ExchangeFilter::Changed { kind, .. } => match kind {
            ChangeKind::Created => 1,
            ChangeKind::Modified => 2,
            ChangeKind::Closed => 3,
        },
    }
}
