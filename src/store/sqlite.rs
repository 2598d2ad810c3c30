//! The embedded ledger: one SQLite file, one worker.
//!
//! WAL journal, `synchronous = NORMAL`, and every write in a `BEGIN IMMEDIATE`
//! transaction so `busy_timeout` applies when an operator's CLI writes while
//! the worker runs. NORMAL is durable against a killed process; on power loss
//! the newest transactions may roll back, but they roll back together with
//! the feed cursor they moved, so the feed is simply re-read.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use super::row::{CLAIM_COLUMNS, COLUMNS, FlatClaim, FlatEntry};
use super::{
    AuditOf, AuditRow, Claimed, Completion, Ctx, Diff, IngestBatch, IngestStats, Listed,
    PurgeStats, Repair, Result, Store, StoreError, Summary,
};
use crate::domain::ledger::{self, DesiredState, Entry, Incoming, Op, Sent};

const CURSOR_KEY: &str = "feed_cursor";
const LAST_POLL_KEY: &str = "last_source_poll_ms";
/// Rows handled per expiry transaction.
const EXPIRY_BATCH: i64 = 500;

/// Rows per multi-row upsert: 26 columns each, well under SQLite's 32,766
/// bound parameters.
const UPSERT_CHUNK: usize = 500;

static UPSERT_HEAD: LazyLock<String> =
    LazyLock::new(|| format!("INSERT INTO postings ({COLUMNS}) "));
static UPSERT_TAIL: LazyLock<String> = LazyLock::new(|| {
    let updates = COLUMNS
        .split(',')
        .map(str::trim)
        .skip(1)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(" ON CONFLICT(id) DO UPDATE SET {updates}")
});
static SELECT_MANY: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM postings WHERE id IN (SELECT value FROM json_each(?1))")
});
static SELECT_ONE: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM postings WHERE id = ?1"));
static SELECT_EXPIRED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM postings WHERE desired_present = 1 AND publication_end_ms <= ?1 \
         ORDER BY publication_end_ms LIMIT ?2"
    )
});
static SELECT_LEASED_BY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM postings WHERE lease_owner = ?1"));
static SELECT_DEAD: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM postings WHERE dead = 1 AND id > ?1 ORDER BY id LIMIT ?2")
});
/// Records reconcile run `?2` did not see in the snapshot, that changed
/// before the run began, and that EURES holds or should hold.
static SELECT_UNSEEN_IN_SOURCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM postings WHERE id > ?1 \
           AND (source_seen_run IS NULL OR source_seen_run <> ?2) AND last_change_ms < ?2 \
           AND (desired_present = 1 OR delivered_state <> 'absent') ORDER BY id LIMIT ?3"
    )
});
static SELECT_UNSEEN_ON_EURES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM postings WHERE id > ?1 \
           AND (remote_seen_run IS NULL OR remote_seen_run <> ?2) AND last_change_ms < ?2 \
           AND delivered_state <> 'absent' ORDER BY id LIMIT ?3"
    )
});
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE postings SET lease_owner = ?1, lease_until_ms = ?2 WHERE id IN ( \
           SELECT id FROM postings WHERE due_op IS NOT NULL AND next_attempt_at_ms <= ?3 \
             AND (lease_until_ms IS NULL OR lease_until_ms < ?3) \
           ORDER BY due_rank, next_attempt_at_ms LIMIT ?4) \
         RETURNING {CLAIM_COLUMNS}, due_rank, next_attempt_at_ms"
    )
});

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// Read once the write lock is held (see [`SqliteStore::stamped`]);
    /// tests that script time replace it.
    clock: fn() -> i64,
}

fn wall_clock() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl SqliteStore {
    /// Opens (creating when missing) the database named by a `sqlite:` URL.
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // 1 MiB of page cache per connection (SQLite's default is 2):
            // the ledger is read by key and in index order, never scanned hot.
            .pragma("cache_size", "-1024")
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Url(format!("cannot create {}: {e}", Path::new(dir).display()))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            pool,
            clock: wall_clock,
        })
    }

    /// The same store with another clock (tests that script time).
    pub fn with_clock(self, clock: fn() -> i64) -> SqliteStore {
        SqliteStore { clock, ..self }
    }

    /// The write lock is held: read the clock now. A change stamped with a
    /// time from before a wait for the lock could fall behind a concurrent
    /// `getChanges` poll and never be reported.
    fn stamped(&self, ctx: Ctx) -> Ctx {
        Ctx {
            now_ms: ctx.now_ms.max((self.clock)()),
            ..ctx
        }
    }

    /// One keyset page of the records a reconcile run did not see (`query`
    /// selects them), each passed through `judge`: the next record and the
    /// difference to report, or `None` when nothing changes.
    #[allow(clippy::too_many_arguments)]
    async fn unseen_pass(
        &self,
        query: &str,
        run: i64,
        after: Option<&str>,
        limit: i64,
        ctx: Ctx,
        repair: Repair,
        judge: impl Fn(&Entry, Ctx) -> Option<(Entry, Option<Diff>)> + Send,
    ) -> Result<(Vec<Diff>, Option<String>)> {
        let mut tx = self.begin().await?;
        let ctx = self.stamped(ctx);
        let rows: Vec<FlatEntry> = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(after.unwrap_or(""))
            .bind(run)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let last = rows.last().map(|r| r.id.clone());
        let mut diffs = Vec::new();
        for row in rows {
            let entry = row.into_entry()?;
            let Some((next, diff)) = judge(&entry, ctx) else {
                continue;
            };
            diffs.extend(diff);
            if repair != Repair::DryRun {
                upsert(&mut tx, &next).await?;
            }
        }
        tx.commit().await?;
        Ok((diffs, last))
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

async fn load_many(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[&str],
) -> Result<HashMap<String, Entry>> {
    let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let rows: Vec<FlatEntry> = sqlx::query_as(SELECT_MANY.as_str())
        .bind(json)
        .fetch_all(&mut **tx)
        .await?;
    rows.into_iter()
        .map(|r| r.into_entry().map(|e| (e.id.clone(), e)))
        .collect()
}

async fn upsert(tx: &mut Transaction<'_, Sqlite>, e: &Entry) -> Result<()> {
    upsert_many(tx, &[e]).await
}

/// Writes records with as few statements as possible (multi-row upserts).
async fn upsert_many(tx: &mut Transaction<'_, Sqlite>, entries: &[&Entry]) -> Result<()> {
    for chunk in entries.chunks(UPSERT_CHUNK) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(UPSERT_HEAD.as_str());
        q.push_values(chunk, |mut b, e| {
            let f = FlatEntry::from_entry(e);
            b.push_bind(f.id)
                .push_bind(f.employer_cvr)
                .push_bind(f.source_version)
                .push_bind(f.source_updated_at_ms)
                .push_bind(f.desired_present)
                .push_bind(f.desired_hash)
                .push_bind(f.desired_content)
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
                .push_bind(f.last_change_ms);
        });
        q.push(UPSERT_TAIL.as_str());
        // Not cached: every batch size is its own statement, and a cache of
        // hundreds of 13,000-parameter statements costs tens of MiB.
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}

async fn set_state(tx: &mut Transaction<'_, Sqlite>, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO agent_state (key, value) VALUES (?1, ?2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn cursor(&self) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM agent_state WHERE key = ?1")
                .bind(CURSOR_KEY)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn ingest(&self, batch: &IngestBatch, ctx: Ctx) -> Result<IngestStats> {
        let mut tx = self.begin().await?;
        let ctx = self.stamped(ctx);
        let mut ids: Vec<&str> = batch.changes.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut entries = load_many(&mut tx, &ids).await?;
        let mut dirty: Vec<String> = Vec::new();
        let mut stats = IngestStats::default();
        for incoming in &batch.changes {
            let current = entries.get(&incoming.id);
            match ledger::apply_change(
                current,
                incoming.clone(),
                ctx.now_ms,
                ctx.mode,
                batch.forced,
            ) {
                Some(next) => {
                    stats.applied += 1;
                    dirty.push(next.id.clone());
                    entries.insert(next.id.clone(), next);
                }
                None => stats.ignored += 1,
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        let changed: Vec<&Entry> = dirty.iter().filter_map(|id| entries.get(id)).collect();
        upsert_many(&mut tx, &changed).await?;
        for q in &batch.quarantined {
            sqlx::query(
                "INSERT INTO quarantine (posting_id, reason, feed_position, at_ms) VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(&q.posting_id)
            .bind(&q.reason)
            .bind(&q.feed_position)
            .bind(ctx.now_ms)
            .execute(&mut *tx)
            .await?;
            stats.quarantined += 1;
        }
        if let Some(cursor) = &batch.next_cursor {
            set_state(&mut tx, CURSOR_KEY, cursor).await?;
        }
        tx.commit().await?;
        Ok(stats)
    }

    async fn set_last_poll(&self, at_ms: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        set_state(&mut tx, LAST_POLL_KEY, &at_ms.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn expire_due(&self, ctx: Ctx) -> Result<usize> {
        let mut total = 0;
        loop {
            let mut tx = self.begin().await?;
            let ctx = self.stamped(ctx);
            let rows: Vec<FlatEntry> = sqlx::query_as(SELECT_EXPIRED.as_str())
                .bind(ctx.now_ms)
                .bind(EXPIRY_BATCH)
                .fetch_all(&mut *tx)
                .await?;
            let n = rows.len();
            for row in rows {
                let entry = row.into_entry()?;
                if let Some(next) = ledger::expire(&entry, ctx.now_ms, ctx.mode) {
                    upsert(&mut tx, &next).await?;
                    total += 1;
                }
            }
            tx.commit().await?;
            if (n as i64) < EXPIRY_BATCH {
                return Ok(total);
            }
        }
    }

    async fn next_expiry_ms(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(publication_end_ms) FROM postings WHERE desired_present = 1",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 4);
        let mut tx = self.begin().await?;
        let rows: Vec<(FlatClaim, i64, i64)> = {
            use sqlx::Row;
            let raw = sqlx::query(CLAIM.as_str())
                .bind(owner)
                .bind(now_ms.saturating_add(lease_ms))
                .bind(now_ms)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
            let mut out = Vec::with_capacity(raw.len());
            for r in &raw {
                let claim = <FlatClaim as sqlx::FromRow<_>>::from_row(r)?;
                out.push((
                    claim,
                    r.try_get("due_rank")?,
                    r.try_get("next_attempt_at_ms")?,
                ));
            }
            out
        };
        tx.commit().await?;
        let mut rows = rows;
        rows.sort_by_key(|(_, rank, next)| (*rank, *next));
        rows.into_iter().map(|(c, _, _)| c.into_claimed()).collect()
    }

    async fn complete(&self, owner: &str, done: Completion<'_>, ctx: Ctx) -> Result<()> {
        self.complete_many(owner, std::slice::from_ref(&done), ctx)
            .await
    }

    async fn complete_many(&self, owner: &str, done: &[Completion<'_>], ctx: Ctx) -> Result<()> {
        let mut tx = self.begin().await?;
        let ctx = self.stamped(ctx);
        let ids: Vec<&str> = done.iter().map(|d| d.claimed.id.as_str()).collect();
        let mut entries = load_many(&mut tx, &ids).await?;
        // In order: a batch may hold several outcomes of one posting.
        for d in done {
            if let Some(entry) = entries.get(&d.claimed.id) {
                let next = ledger::apply_outcome(
                    entry,
                    &sent_of(d.claimed),
                    d.result,
                    ctx.now_ms,
                    d.limits,
                    d.backoff,
                    ctx.mode,
                );
                entries.insert(next.id.clone(), next);
            }
        }
        let mut touched: Vec<&str> = ids.clone();
        touched.sort_unstable();
        touched.dedup();
        let changed: Vec<&Entry> = touched.iter().filter_map(|id| entries.get(*id)).collect();
        upsert_many(&mut tx, &changed).await?;
        let json = serde_json::to_string(&touched).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE postings SET lease_owner = NULL, lease_until_ms = NULL \
             WHERE lease_owner = ?1 AND id IN (SELECT value FROM json_each(?2))",
        )
        .bind(owner)
        .bind(json)
        .execute(&mut *tx)
        .await?;
        let mut audit: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO audit (posting_id, employer_cvr, op, version, content_hash, outcome, detail, at_ms) ",
        );
        audit.push_values(done, |mut b, d| {
            let c = d.claimed;
            b.push_bind(c.id.clone())
                .push_bind(c.employer_cvr.clone())
                .push_bind(c.op.as_str())
                .push_bind(i64::try_from(c.version).unwrap_or(i64::MAX))
                .push_bind(c.hash.clone())
                .push_bind(d.outcome_label.to_string())
                .push_bind(match d.result {
                    ledger::AttemptResult::Rejected(why)
                    | ledger::AttemptResult::Transient(why) => Some(why.clone()),
                    _ => None,
                })
                .push_bind(ctx.now_ms);
        });
        if !done.is_empty() {
            audit.build().persistent(false).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn release(&self, owner: &str, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE postings SET lease_owner = NULL, lease_until_ms = NULL WHERE id = ?1 AND lease_owner = ?2",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_all(&self, owner: &str) -> Result<u64> {
        // Leases still held have no recorded outcome: the worker died (or
        // failed to record) mid-request, so what EURES holds is unknown.
        let mut tx = self.begin().await?;
        // Only push mode leases anything (pull mode never delivers).
        let ctx = self.stamped(Ctx {
            now_ms: 0,
            mode: crate::domain::ledger::Mode::Push,
        });
        let rows: Vec<FlatEntry> = sqlx::query_as(SELECT_LEASED_BY.as_str())
            .bind(owner)
            .fetch_all(&mut *tx)
            .await?;
        let abandoned: Vec<Entry> = rows
            .into_iter()
            .map(|r| {
                r.into_entry()
                    .map(|e| ledger::abandon(&e, ctx.now_ms, ctx.mode))
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&Entry> = abandoned.iter().collect();
        upsert_many(&mut tx, &refs).await?;
        let done = sqlx::query(
            "UPDATE postings SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner = ?1",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn next_due_ms(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(m) FROM ( \
               SELECT MIN(next_attempt_at_ms) AS m FROM postings WHERE due_op IS NOT NULL AND due_rank = 0 \
               UNION ALL \
               SELECT MIN(next_attempt_at_ms) AS m FROM postings WHERE due_op IS NOT NULL AND due_rank = 1)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn get(&self, id: &str) -> Result<Option<Entry>> {
        let row: Option<FlatEntry> = sqlx::query_as(SELECT_ONE.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(FlatEntry::into_entry).transpose()
    }

    async fn summary(&self, now_ms: i64) -> Result<Summary> {
        let mut s = Summary::default();
        let states: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM postings GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        for (state, n) in states {
            let n = u64::try_from(n).unwrap_or(0);
            match state.as_str() {
                "present" => s.present = n,
                "pending" => s.pending = n,
                "absent" => s.absent = n,
                "quarantined" => s.quarantined = n,
                _ => {}
            }
        }
        let ops: Vec<(String, i64)> = sqlx::query_as(
            "SELECT due_op, COUNT(*) FROM postings WHERE due_op IS NOT NULL GROUP BY due_op",
        )
        .fetch_all(&self.pool)
        .await?;
        for (op, n) in ops {
            let n = u64::try_from(n).unwrap_or(0);
            match op.as_str() {
                "create" => s.backlog_create = n,
                "update" => s.backlog_update = n,
                "delete" => s.backlog_delete = n,
                _ => {}
            }
        }
        let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM postings WHERE dead = 1")
            .fetch_one(&self.pool)
            .await?;
        s.dead_letters = u64::try_from(dead).unwrap_or(0);
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(due_since_ms) FROM postings WHERE due_since_ms IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        s.oldest_pending_ms = oldest.map(|t| (now_ms - t).max(0));
        let last_poll: Option<String> =
            sqlx::query_scalar("SELECT value FROM agent_state WHERE key = ?1")
                .bind(LAST_POLL_KEY)
                .fetch_optional(&self.pool)
                .await?;
        s.last_source_poll_ms = last_poll.and_then(|v| v.parse().ok());
        Ok(s)
    }

    async fn quarantined(&self, limit: i64) -> Result<Vec<(Option<String>, String)>> {
        let mut out: Vec<(Option<String>, String)> = sqlx::query_as(
            "SELECT id, COALESCE(absent_reason, '') FROM postings WHERE state = 'quarantined' ORDER BY id LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let items: Vec<(Option<String>, String)> = sqlx::query_as(
            "SELECT posting_id, reason || ' (' || feed_position || ')' FROM quarantine ORDER BY seq DESC LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        out.extend(items);
        Ok(out)
    }

    async fn ids_page(
        &self,
        employer: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM postings WHERE (?1 IS NULL OR employer_cvr = ?1) AND id > ?2 ORDER BY id LIMIT ?3",
        )
        .bind(employer)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn dead_letters(&self, after: Option<&str>, limit: i64) -> Result<Vec<Entry>> {
        let rows: Vec<FlatEntry> = sqlx::query_as(SELECT_DEAD.as_str())
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(FlatEntry::into_entry).collect()
    }

    async fn revive(&self, ids: Option<&[String]>, ctx: Ctx) -> Result<u64> {
        let mut revived = 0;
        match ids {
            Some(ids) => {
                let mut tx = self.begin().await?;
                let ctx = self.stamped(ctx);
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let entries = load_many(&mut tx, &refs).await?;
                for entry in entries.values().filter(|e| e.retry.dead) {
                    upsert(&mut tx, &ledger::revive(entry, ctx.now_ms, ctx.mode)).await?;
                    revived += 1;
                }
                tx.commit().await?;
            }
            None => loop {
                // Revived rows leave the dead set, so the first page is always fresh.
                let page = self.dead_letters(None, 500).await?;
                if page.is_empty() {
                    break;
                }
                let mut tx = self.begin().await?;
                let ctx = self.stamped(ctx);
                for entry in &page {
                    upsert(&mut tx, &ledger::revive(entry, ctx.now_ms, ctx.mode)).await?;
                    revived += 1;
                }
                tx.commit().await?;
            },
        }
        Ok(revived)
    }

    async fn audit(&self, of: AuditOf<'_>, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let (sql, key) = match of {
            AuditOf::Posting(id) => (
                "SELECT seq, posting_id, employer_cvr, op, version, content_hash, outcome, at_ms \
                 FROM audit WHERE posting_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                id,
            ),
            AuditOf::Employer(cvr) => (
                "SELECT seq, posting_id, employer_cvr, op, version, content_hash, outcome, at_ms \
                 FROM audit WHERE employer_cvr = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                cvr,
            ),
        };
        let rows: Vec<(
            i64,
            String,
            Option<String>,
            String,
            i64,
            Option<String>,
            String,
            i64,
        )> = sqlx::query_as(sql)
            .bind(key)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(seq, posting_id, employer_cvr, op, version, content_hash, outcome, at_ms)| {
                    AuditRow {
                        seq,
                        posting_id,
                        employer_cvr,
                        op,
                        version,
                        content_hash,
                        outcome,
                        at_ms,
                    }
                },
            )
            .collect())
    }

    async fn purge(&self, cutoff_ms: i64) -> Result<PurgeStats> {
        let mut tx = self.begin().await?;
        let audit = sqlx::query("DELETE FROM audit WHERE at_ms < ?1")
            .bind(cutoff_ms)
            .execute(&mut *tx)
            .await?;
        let tombstones = sqlx::query(
            "DELETE FROM postings WHERE state IN ('absent', 'quarantined') AND delivered_state = 'absent' \
             AND due_op IS NULL AND lease_owner IS NULL AND last_change_ms < ?1 \
             AND (closed_ms IS NULL OR closed_ms < ?1)",
        )
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?;
        let quarantine = sqlx::query("DELETE FROM quarantine WHERE at_ms < ?1")
            .bind(cutoff_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PurgeStats {
            audit_rows: audit.rows_affected(),
            tombstones: tombstones.rows_affected(),
            quarantine_rows: quarantine.rows_affected(),
        })
    }

    async fn known_versions(&self, ids: &[&str]) -> Result<HashMap<String, u64>> {
        let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, source_version FROM postings WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, v)| (id, u64::try_from(v).unwrap_or(0)))
            .collect())
    }

    async fn reconcile_source(
        &self,
        page: &[Incoming],
        seen: &[&str],
        run: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>> {
        let mut tx = self.begin().await?;
        let ctx = self.stamped(ctx);
        let ids: Vec<&str> = page.iter().map(|c| c.id.as_str()).collect();
        let entries = load_many(&mut tx, &ids).await?;
        let mut diffs = Vec::new();
        for incoming in page {
            let current = entries.get(&incoming.id);
            let (kind, forced) = match current {
                None => ("missing_in_ledger", repair == Repair::Force),
                Some(c) if incoming.version > c.source_version => {
                    ("newer_in_source", repair == Repair::Force)
                }
                Some(c) if incoming.version == c.source_version => {
                    let want = DesiredState::from(incoming.desired.clone());
                    if repair == Repair::Force {
                        ("resync", true)
                    } else if want.is_present() != c.desired.is_present()
                        || want.hash() != c.desired.hash()
                    {
                        ("rerendered", true)
                    } else {
                        continue;
                    }
                }
                Some(_) => continue,
            };
            let Some(next) =
                ledger::apply_change(current, incoming.clone(), ctx.now_ms, ctx.mode, forced)
            else {
                continue;
            };
            diffs.push(Diff {
                id: incoming.id.clone(),
                kind,
                detail: format!(
                    "source v{} {}; ledger v{}",
                    incoming.version,
                    describe(&next.desired),
                    current.map_or(0, |c| c.source_version)
                ),
            });
            if repair != Repair::DryRun {
                upsert(&mut tx, &next).await?;
            }
        }
        stamp(&mut tx, "source_seen_run", seen, run).await?;
        tx.commit().await?;
        Ok(diffs)
    }

    async fn reconcile_source_gone(
        &self,
        run: i64,
        after: Option<&str>,
        limit: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<(Vec<Diff>, Option<String>)> {
        self.unseen_pass(
            &SELECT_UNSEEN_IN_SOURCE,
            run,
            after,
            limit,
            ctx,
            repair,
            |entry, ctx| {
                let next = ledger::source_gone(entry, ctx.now_ms, ctx.mode)?;
                let diff = Diff {
                    id: entry.id.clone(),
                    kind: "gone_from_source",
                    detail: format!("ledger v{} not in the JobAG snapshot", entry.source_version),
                };
                Some((next, Some(diff)))
            },
        )
        .await
    }

    async fn reconcile_remote(
        &self,
        page: &[Listed],
        run: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<Vec<Diff>> {
        let mut tx = self.begin().await?;
        let ctx = self.stamped(ctx);
        let ids: Vec<&str> = page.iter().map(|l| l.reference.as_str()).collect();
        let entries = load_many(&mut tx, &ids).await?;
        let mut diffs = Vec::new();
        for item in page {
            let hash = item.content_sha256.as_deref().unwrap_or("");
            match entries.get(&item.reference) {
                None => {
                    diffs.push(Diff {
                        id: item.reference.clone(),
                        kind: "orphan_on_eures",
                        detail: format!(
                            "EURES holds v{} the ledger does not know",
                            item.source_version
                        ),
                    });
                    if repair != Repair::DryRun {
                        let orphan = ledger::orphan(
                            &item.reference,
                            item.source_version,
                            hash,
                            ctx.now_ms,
                            ctx.mode,
                        );
                        upsert(&mut tx, &orphan).await?;
                    }
                }
                Some(entry) => {
                    let next = ledger::observe_remote(
                        entry,
                        Some((item.source_version, hash)),
                        ctx.now_ms,
                        ctx.mode,
                    );
                    if next == *entry {
                        continue;
                    }
                    if let Some(op) = next
                        .due()
                        .filter(|op| Some(*op) != entry.due() || entry.delivered != next.delivered)
                    {
                        diffs.push(Diff {
                            id: item.reference.clone(),
                            kind: if op == Op::Delete {
                                "unwanted_on_eures"
                            } else {
                                "altered_on_eures"
                            },
                            detail: format!(
                                "EURES holds v{}; ledger wants {}",
                                item.source_version,
                                describe(&entry.desired)
                            ),
                        });
                    }
                    if repair != Repair::DryRun {
                        upsert(&mut tx, &next).await?;
                    }
                }
            }
        }
        stamp(&mut tx, "remote_seen_run", &ids, run).await?;
        tx.commit().await?;
        Ok(diffs)
    }

    async fn reconcile_remote_missing(
        &self,
        run: i64,
        after: Option<&str>,
        limit: i64,
        ctx: Ctx,
        repair: Repair,
    ) -> Result<(Vec<Diff>, Option<String>)> {
        self.unseen_pass(
            &SELECT_UNSEEN_ON_EURES,
            run,
            after,
            limit,
            ctx,
            repair,
            |entry, ctx| {
                let next = ledger::observe_remote(entry, None, ctx.now_ms, ctx.mode);
                if next == *entry {
                    return None;
                }
                let diff = (next.due().is_some() && next.desired.is_present()).then(|| Diff {
                    id: entry.id.clone(),
                    kind: "missing_on_eures",
                    detail: format!(
                        "ledger v{} believed delivered, EURES does not list it",
                        entry.source_version
                    ),
                });
                Some((next, diff))
            },
        )
        .await
    }
}

fn sent_of(c: &Claimed) -> Sent {
    Sent {
        op: c.op,
        version: c.version,
        hash: c.hash.clone(),
    }
}

fn describe(d: &DesiredState) -> String {
    match d {
        DesiredState::Present { .. } => "present".into(),
        DesiredState::Absent { reason } => format!("absent ({reason})"),
    }
}

async fn stamp(
    tx: &mut Transaction<'_, Sqlite>,
    column: &str,
    ids: &[&str],
    run: i64,
) -> Result<()> {
    let sql = match column {
        "source_seen_run" => {
            "UPDATE postings SET source_seen_run = ?1 WHERE id IN (SELECT value FROM json_each(?2))"
        }
        _ => {
            "UPDATE postings SET remote_seen_run = ?1 WHERE id IN (SELECT value FROM json_each(?2))"
        }
    };
    let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    sqlx::query(sql)
        .bind(run)
        .bind(json)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
