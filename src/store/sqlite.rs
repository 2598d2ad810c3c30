//! The embedded ledger: one SQLite file, one worker.
//!
//! WAL journal, `synchronous = NORMAL`, and every write in a `BEGIN IMMEDIATE`
//! transaction so `busy_timeout` applies when an operator's CLI writes while
//! the worker runs. NORMAL is durable against a killed process; on power loss
//! the newest transactions may roll back, but they roll back together with
//! the feed cursor they moved, so the feed is simply re-read.
//!
//! This file holds only how SQLite opens, stamps, migrates and takes turns
//! writing; what it says its own way (id lists through `json_each`, 0/1
//! flags; no row locks, since the transaction is exclusive) is its table
//! in `dialect.rs`, and the `Store` itself is shared (`generic.rs`). It
//! never decides anything: the planner does. Its tests need the store's
//! own connections and transactions, so they stay beside it (the last
//! third of the file).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite, SqlitePool};
use tokio::sync::{Mutex, Notify, watch};

use super::backend::{Backend, Commit, ReapClock};
use super::dialect::Dialect;
use super::ledger_tx::Tx;
use super::types::{Result, StoreError};
use super::url::DatabaseUrl;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads outside transactions (and the rare autocommit lease release).
    pub(crate) pool: SqlitePool,
    /// Every transaction runs on this one connection. In WAL mode a
    /// connection drops its whole page cache when another connection wrote
    /// since its last transaction; with the transactions spread over the
    /// pool, nearly every one began by reading the B-trees' upper pages
    /// from the file again. One writer connection keeps them: a backfill
    /// of 20,000 postings spent 15 % less CPU per posting and held the
    /// write lock 13-20 % less.
    writer: SqlitePool,
    /// The writers of this process take turns here before `BEGIN
    /// IMMEDIATE`. SQLite itself makes a writer that finds the lock taken
    /// sleep and retry (1, 2, 5, 10 ms...), which leaves the lock idle
    /// between writers; a queue hands it on at once, in arrival order.
    /// Other processes (an operator's CLI) still meet `busy_timeout`.
    writers: Arc<Mutex<()>>,
    /// The checkpointer runs while some clone of the store lives.
    #[expect(dead_code, reason = "held, never read: counted by the checkpointer")]
    alive: Arc<()>,
    reap_clock: Arc<ReapClock>,
    /// Read once the write lock is held (see [`Backend::stamp`]); tests
    /// that script time replace it.
    clock: fn() -> i64,
    /// The highest time stamped (`i64::MIN`: not read from the ledger yet).
    stamped: Arc<AtomicI64>,
}

fn wall_clock() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl SqliteStore {
    /// Opens (creating when missing) the database named by a `sqlite:` URL.
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        Self::open(url, true).await
    }

    /// Opens the database named by a `sqlite:` URL only if it exists: a
    /// read-only command must not leave an empty ledger behind.
    pub async fn open_existing(url: &str) -> Result<SqliteStore> {
        Self::open(url, false).await
    }

    async fn open(url: &str, create: bool) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            // 1 MiB of page cache per connection (SQLite's default is 2):
            // the ledger is read by key and in index order, never scanned hot.
            .pragma("cache_size", "-1024")
            // Statement journals in memory: a multi-row upsert inside a
            // transaction keeps the pages it changes until it ends, and on
            // a file that is a pwrite per page (5 % of the writer thread's
            // time in a 20,000-posting backfill; its body ran 15 % shorter).
            .pragma("temp_store", "memory")
            // The reader connection copies the WAL back into the database
            // (see `checkpoint_behind`); a writer does it itself, holding
            // the write lock, only when the WAL has grown this far anyway.
            .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES)
            // Fewer prepared statements kept per connection than sqlx's 100:
            // the ledger uses a few dozen, and each holds its own memory.
            .statement_cache_capacity(48)
            // Erased means gone from disk (SPEC 6): deleted rows and freed
            // pages are overwritten with zeros, not merely unlinked.
            .pragma("secure_delete", "on")
            .foreign_keys(true);
        if DatabaseUrl::parse(url)? == (DatabaseUrl::Sqlite { in_memory: false }) {
            let file = options.get_filename();
            if !create && !file.exists() {
                return Err(StoreError::NotReady(format!(
                    "no ledger at {url} ({} does not exist); run `eures-sync migrate` to create \
                     one, or point database.url at the worker's ledger",
                    file.display()
                )));
            }
            owner_only(file, create)?;
        }
        // One writer at a time anyway, on a connection of its own; one more
        // serves the reads, which are single short statements (a third
        // connection cost about 3 MiB of peak RSS at a million postings).
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .before_acquire(|conn, _| Box::pin(async move { Ok(in_step(conn)) }))
            .connect_with(options.clone())
            .await?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .before_acquire(|conn, _| Box::pin(async move { Ok(in_step(conn)) }))
            .connect_with(options)
            .await?;
        let alive = Arc::new(());
        let writers = Arc::new(Mutex::new(()));
        checkpoint_behind(pool.clone(), writers.clone(), Arc::downgrade(&alive));
        Ok(SqliteStore {
            pool,
            writer,
            alive,
            writers,
            reap_clock: Arc::default(),
            clock: wall_clock,
            stamped: Arc::new(AtomicI64::new(i64::MIN)),
        })
    }

    /// The same store with another clock (tests that script time).
    pub fn with_clock(self, clock: fn() -> i64) -> SqliteStore {
        SqliteStore { clock, ..self }
    }
}

/// Makes the ledger readable by its owner only (SPEC 6): a folder it
/// creates gets 0700, an existing folder that group or others may enter is
/// narrowed to 0700 (one shared with others, sticky or writable by them
/// like /tmp, is refused: the ledger needs a folder of its own), the file
/// is created 0600 (SQLite gives its WAL and shared-memory files the
/// database file's mode), and existing files that others could read are
/// narrowed to 0600.
fn owner_only(file: &Path, create: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let failed = |what: &str, path: &Path, e: std::io::Error| {
        StoreError::Url(format!("cannot {what} {}: {e}", path.display()))
    };
    if let Some(dir) = file.parent()
        && !dir.as_os_str().is_empty()
    {
        if create && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| failed("create", dir, e))?;
        }
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.permissions().mode() & 0o7777;
            match folder_access(mode) {
                FolderAccess::OwnerOnly => {}
                FolderAccess::Narrow => {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
                        |e| {
                            StoreError::Url(format!(
                                "the ledger's folder {} may be read by group or others (mode \
                                 {mode:04o}) and cannot be narrowed to 0700: {e}",
                                dir.display()
                            ))
                        },
                    )?;
                    tracing::warn!(
                        folder = %dir.display(),
                        was = %format!("{mode:04o}"),
                        "narrowed the ledger's folder to 0700 (owner only)"
                    );
                }
                FolderAccess::Shared => {
                    return Err(StoreError::Url(format!(
                        "the ledger's folder {} is shared with other users (mode {mode:04o}): \
                         give the ledger a folder of its own (mode 0700)",
                        dir.display()
                    )));
                }
            }
        }
    }
    if create {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(file)
            .map_err(|e| failed("create", file, e))?;
    }
    for path in [
        file.to_path_buf(),
        wal_sibling(file, "-wal"),
        wal_sibling(file, "-shm"),
    ] {
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| failed("restrict", &path, e))?;
        }
    }
    Ok(())
}

/// What to do with the ledger's folder, by its mode.
#[derive(Debug, PartialEq, Eq)]
enum FolderAccess {
    /// Nobody but its owner may enter it.
    OwnerOnly,
    /// Group or others may look in: narrowed to 0700.
    Narrow,
    /// Others may write in it, or it is sticky (a place for everyone's
    /// files): narrowing it would take it from them, so it is refused.
    Shared,
}

fn folder_access(mode: u32) -> FolderAccess {
    if mode & 0o1002 != 0 {
        FolderAccess::Shared
    } else if mode & 0o077 != 0 {
        FolderAccess::Narrow
    } else {
        FolderAccess::OwnerOnly
    }
}

fn wal_sibling(file: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// How long a statement waits for another connection's lock (an operator's
/// command writing while the worker runs).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// WAL pages (4 KiB each) after which a committing writer checkpoints:
/// see [`checkpoint_behind`].
const WAL_BACKSTOP_PAGES: &str = "4000";
/// How often the reader connection checkpoints the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// The longest the WAL file goes without being emptied: erased content
/// must leave it within 60 s (SPEC 6), and this leaves room for many
/// retries behind readers.
const EMPTY_WAL_EVERY: Duration = Duration::from_secs(5);
/// How long an emptying that is due waits for readers (an operator's
/// command, the Input API) and other processes' writers, holding this
/// process's writers back meanwhile.
const EMPTY_WAL_WAIT: Duration = Duration::from_millis(250);
/// After an emptying that is due failed, the next try.
const EMPTY_WAL_RETRY: Duration = Duration::from_secs(2);

/// Copies what the WAL holds back into the database file, on the reader
/// connection, every [`CHECKPOINT_EVERY`], until the store is dropped.
/// With SQLite's automatic checkpoint the committing writer did it every
/// 1,000 pages, inside its transaction: the copy and its fsync held the
/// write lock. A passive checkpoint runs beside the writer and never waits
/// for it. The WAL only starts over from its beginning when a writer finds
/// it wholly copied, which a busy writer seldom does, so writers still
/// checkpoint at [`WAL_BACKSTOP_PAGES`] (16 MiB): by then nearly all of it
/// is copied, and the WAL starts over (its effect on the backfill rate:
/// BENCHMARKS.md).
///
/// Starting over does not remove anything: the old frames stay in the
/// file, erased content included, until new ones overwrite them. Only a
/// TRUNCATE checkpoint empties the file, and it needs a moment when no
/// writer is inside a transaction. One is tried whenever a passive
/// checkpoint has copied everything, without waiting; writers that never
/// pause leave no such moment, so once the file has gone
/// [`EMPTY_WAL_EVERY`] without being emptied the checkpointer takes the
/// writers' turn itself (no writer of this process is then inside a
/// transaction) and empties it.
fn checkpoint_behind(pool: SqlitePool, writers: Arc<Mutex<()>>, alive: std::sync::Weak<()>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut due = tokio::time::Instant::now() + EMPTY_WAL_EVERY;
        loop {
            every.tick().await;
            if alive.strong_count() == 0 {
                return;
            }
            if tokio::time::Instant::now() >= due {
                // Copy the WAL back first, writers still going, so that the
                // turn is held only for what they wrote since and the
                // truncation itself: a withdrawal waits behind it no longer.
                if let Err(e) = checkpoint(&pool, "PRAGMA wal_checkpoint(PASSIVE)").await {
                    tracing::debug!(error = %e, "checkpointing the WAL failed; emptying it anyway");
                }
                let turn = writers.lock().await;
                // Never wait for the read connection while holding the
                // writers back: whoever holds it may be waiting for them.
                let Some(mut conn) = pool.try_acquire() else {
                    continue;
                };
                let done = truncate_wal(&mut conn, EMPTY_WAL_WAIT).await;
                drop(conn);
                drop(turn);
                let now = tokio::time::Instant::now();
                due = match done {
                    Ok(true) => now + EMPTY_WAL_EVERY,
                    Ok(false) => {
                        tracing::debug!("emptying the WAL waited in vain for a reader");
                        now + EMPTY_WAL_RETRY
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "emptying the WAL failed");
                        now + EMPTY_WAL_RETRY
                    }
                };
                continue;
            }
            match checkpoint(&pool, "PRAGMA wal_checkpoint(PASSIVE)").await {
                // Everything copied back: empty the WAL now if no writer
                // is busy, so erased content leaves it at once (SPEC 6).
                Ok(Checkpoint {
                    busy: false,
                    log,
                    copied,
                }) if log > 0 && copied == log => match truncate_now(&pool).await {
                    Ok(true) => due = tokio::time::Instant::now() + EMPTY_WAL_EVERY,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "truncating the WAL failed; trying again")
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "checkpointing the WAL failed; trying again")
                }
            }
        }
    });
}

/// What `PRAGMA wal_checkpoint` answered.
struct Checkpoint {
    busy: bool,
    log: i64,
    copied: i64,
}

async fn checkpoint(
    conn: impl sqlx::SqliteExecutor<'_>,
    pragma: &'static str,
) -> std::result::Result<Checkpoint, sqlx::Error> {
    let (busy, log, copied): (i64, i64, i64) = sqlx::query_as(pragma).fetch_one(conn).await?;
    Ok(Checkpoint {
        busy: busy != 0,
        log,
        copied,
    })
}

/// A TRUNCATE checkpoint: copies the WAL back and empties the file; true
/// when it did. It waits for readers and writers through the busy handler,
/// here at most `wait`, so the read connection is never stalled behind a
/// writer's transaction for longer than the caller accepts.
async fn truncate_wal(
    conn: &mut sqlx::SqliteConnection,
    wait: Duration,
) -> std::result::Result<bool, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {}",
        wait.as_millis()
    )))
    .execute(&mut *conn)
    .await?;
    let done = checkpoint(&mut *conn, "PRAGMA wal_checkpoint(TRUNCATE)").await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {}",
        BUSY_TIMEOUT.as_millis()
    )))
    .execute(&mut *conn)
    .await?;
    done.map(|c| !c.busy)
}

/// [`truncate_wal`] if no writer is busy at this moment.
async fn truncate_now(pool: &SqlitePool) -> std::result::Result<bool, sqlx::Error> {
    truncate_wal(&mut *pool.acquire().await?, Duration::ZERO).await
}

/// Whether an idle connection may be handed out. On some errors (a full
/// disk, an I/O error) SQLite rolls the transaction back by itself; the
/// ROLLBACK sqlx sends afterwards then fails, and sqlx keeps counting the
/// connection as inside a transaction, so every later `BEGIN IMMEDIATE` on
/// it is refused and the loops that use it never recover. Such a connection
/// is closed instead (a new one replaces it). Idle connections hold no
/// transaction of ours: the pool's release ping has run the dropped
/// transaction's rollback by then, so the count is exact.
fn in_step(conn: &sqlx::SqliteConnection) -> bool {
    use sqlx::Connection;
    if conn.is_in_transaction() {
        tracing::warn!(
            "a ledger connection lost its transaction (SQLite rolled it back itself): replacing it"
        );
        return false;
    }
    true
}

#[async_trait]
impl Backend for SqliteStore {
    type Db = Sqlite;

    fn pool(&self) -> &Pool<Sqlite> {
        &self.pool
    }

    fn reap_clock(&self) -> &ReapClock {
        &self.reap_clock
    }

    /// `BEGIN IMMEDIATE`: nobody else writes until it ends. Every commit
    /// is as durable as `synchronous = NORMAL` makes it.
    async fn begin(&self, _commit: Commit) -> Result<Tx<Sqlite>> {
        let turn = self.writers.clone().lock_owned().await;
        Ok(Tx(
            self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Some(turn),
        ))
    }

    async fn stamp(&self, tx: &mut Tx<Sqlite>, proposed_ms: i64) -> Result<i64> {
        let mut floor = self.stamped.load(Ordering::SeqCst);
        if floor == i64::MIN {
            // The highest time the ledger holds, once per process: a clock
            // set back (by hand, or by NTP after a jump ahead) must not
            // stamp a change below what `getChanges` callers have seen.
            let stored: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(modified_ms) FROM postings WHERE created_ms IS NOT NULL",
            )
            .fetch_one(&mut *tx.0)
            .await?;
            floor = stored.unwrap_or(i64::MIN + 1);
        }
        let now = proposed_ms.max((self.clock)()).max(floor);
        self.stamped.fetch_max(now, Ordering::SeqCst);
        Ok(now)
    }

    async fn now_ms(&self) -> Result<i64> {
        Ok((self.clock)().max(self.stamped.load(Ordering::SeqCst)))
    }

    async fn migrate(&self) -> Result<()> {
        Sqlite::migrator().run(&self.writer).await?;
        Ok(())
    }

    /// The write lock is held while the mark is read: every write stamped
    /// before it has committed, and one that takes the lock later reads a
    /// clock at or past the mark (never below what this process stamped).
    async fn barrier(&self) -> Result<i64> {
        let _turn = self.writers.lock().await;
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mark = (self.clock)().max(self.stamped.load(Ordering::SeqCst));
        tx.commit().await?;
        Ok(mark)
    }

    /// One worker a file: it always leads.
    async fn lead(&self, _owner: &str, _ttl: Duration) -> Result<bool> {
        Ok(true)
    }

    /// One worker a file, whose delivery loop polls: nothing to listen for.
    fn watch_wakeups(&self, _wake: Arc<Notify>, _stop: watch::Receiver<bool>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::eligibility::Desired;
    use crate::domain::ledger::{Incoming, Mode};
    use crate::store::{Ctx, IngestBatch, Store};

    async fn ingest_present(store: &SqliteStore, id: &str, now_ms: i64) {
        let change = Incoming {
            id: id.into(),
            version: 1,
            updated_at_ms: None,
            employer_cvr: None,
            desired: Desired::Present {
                content: "<doc/>".into(),
                hash: "h".into(),
                publication_end: chrono::DateTime::from_timestamp_millis(4_102_444_800_000)
                    .unwrap(),
            },
        };
        let batch = IngestBatch {
            changes: vec![change],
            ..IngestBatch::default()
        };
        let ctx = Ctx {
            now_ms,
            mode: Mode::Pull,
        };
        Store::ingest(store, &batch, ctx).await.unwrap();
    }

    /// A clock set back (by hand, or by NTP after a jump ahead) between two
    /// runs: the exchange times go on from the highest one stored, so a
    /// `getChanges` caller that has seen it misses nothing (SPEC 3.7).
    #[tokio::test]
    async fn the_clock_never_stamps_below_a_time_the_ledger_holds() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("l.db").display());
        let store = SqliteStore::connect(&url)
            .await
            .unwrap()
            .with_clock(|| 5_000_000);
        Store::migrate(&store).await.unwrap();
        ingest_present(&store, "a", 0).await;
        let a = Store::get(&store, "a").await.unwrap().unwrap();
        assert_eq!(a.exchange.created_ms, Some(5_000_000));
        store.pool.close().await;
        store.writer.close().await;

        let store = SqliteStore::connect(&url)
            .await
            .unwrap()
            .with_clock(|| 1_000);
        ingest_present(&store, "b", 1_000).await;
        ingest_present(&store, "c", 1_000).await;
        let b = Store::get(&store, "b").await.unwrap().unwrap();
        let c = Store::get(&store, "c").await.unwrap().unwrap();
        assert_eq!(b.exchange.created_ms, Some(5_000_000));
        assert_eq!(c.exchange.created_ms, Some(5_000_000));
    }

    #[tokio::test]
    async fn a_transaction_sqlite_ended_itself_does_not_spoil_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("l.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&store.pool)
            .await
            .unwrap();
        // RAISE(ROLLBACK) ends the transaction inside SQLite, as a full disk
        // or an I/O error can; no root or small file system needed.
        sqlx::query(
            "CREATE TRIGGER t_fails BEFORE INSERT ON t BEGIN SELECT RAISE(ROLLBACK, 'simulated full disk'); END",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        // The store's own transactions, on its one writer connection.
        for _ in 0..8 {
            let mut tx = store.begin(Commit::Durable).await.unwrap();
            let e = sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&mut *tx.0)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("simulated full disk"), "{e}");
        }
        // More transactions than there are connections: every one of them
        // would otherwise be refused.
        for _ in 0..8 {
            let mut tx = store.begin(Commit::Durable).await.unwrap();
            sqlx::query("INSERT INTO t VALUES (2)")
                .execute(&mut *tx.0)
                .await
                .unwrap_err();
        }
        sqlx::query("DROP TRIGGER t_fails")
            .execute(&store.pool)
            .await
            .unwrap();
        for _ in 0..4 {
            let mut tx = store.begin(Commit::Durable).await.unwrap();
            sqlx::query("INSERT INTO t VALUES (3)")
                .execute(&mut *tx.0)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(rows, 4);
    }

    #[tokio::test]
    async fn the_wal_is_copied_back_without_a_writer_doing_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("l.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let mut tx = store.begin(Commit::Durable).await.unwrap();
        sqlx::query("CREATE TABLE t (x TEXT)")
            .execute(&mut *tx.0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // 100 pages: far below the pages at which a writer checkpoints.
        for _ in 0..10 {
            let mut tx = store.begin(Commit::Durable).await.unwrap();
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) \
                 INSERT INTO t SELECT printf('%.3000c', 'x') FROM n",
            )
            .execute(&mut *tx.0)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        let copied = |min: u64| {
            std::fs::metadata(&file)
                .map(|m| m.len() >= min)
                .unwrap_or(false)
        };
        for _ in 0..100 {
            if copied(100 * 4096) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the database file still holds {} bytes after 2 s",
            std::fs::metadata(&file).unwrap().len()
        );
    }

    #[test]
    fn a_folder_others_may_enter_is_narrowed_and_a_shared_one_refused() {
        assert_eq!(folder_access(0o700), FolderAccess::OwnerOnly);
        assert_eq!(folder_access(0o500), FolderAccess::OwnerOnly);
        assert_eq!(folder_access(0o755), FolderAccess::Narrow);
        assert_eq!(folder_access(0o750), FolderAccess::Narrow);
        assert_eq!(folder_access(0o2770), FolderAccess::Narrow);
        assert_eq!(folder_access(0o1777), FolderAccess::Shared);
        assert_eq!(folder_access(0o777), FolderAccess::Shared);
        assert_eq!(folder_access(0o1700), FolderAccess::Shared);
    }

    #[tokio::test]
    async fn the_ledger_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("new");
        let file = folder.join("l.db");
        let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        let mut tx = store.begin(Commit::Durable).await.unwrap();
        sqlx::query("CREATE TABLE t (x TEXT)")
            .execute(&mut *tx.0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&wal_sibling(&file, "-shm")), 0o600);
        drop(store);

        // A ledger that others could read is narrowed when opened.
        let old = dir.path().join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        SqliteStore::connect(&format!("sqlite://{}?mode=rwc", old.display()))
            .await
            .unwrap();
        assert_eq!(mode(&old), 0o600);
    }

    #[tokio::test]
    async fn deleted_content_leaves_neither_the_file_nor_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("l.db");
        let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        let secret = "Karoline Birkedal <karoline@example.dk>";
        let mut tx = store.begin(Commit::Durable).await.unwrap();
        sqlx::query("CREATE TABLE t (x TEXT)")
            .execute(&mut *tx.0)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO t SELECT $1 || printf('%.500c', 'x') FROM (SELECT 1 UNION SELECT 2)",
        )
        .bind(secret)
        .execute(&mut *tx.0)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let on_disk = || {
            let mut found = false;
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                found |= bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            }
            found
        };
        // The check can see the content while it is stored.
        let mut seen = false;
        for _ in 0..100 {
            seen = on_disk();
            if seen {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(seen, "the content never reached the disk");

        let mut tx = store.begin(Commit::Durable).await.unwrap();
        sqlx::query("DELETE FROM t")
            .execute(&mut *tx.0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        for _ in 0..150 {
            if !on_disk() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("deleted content still on disk 3 s after the delete");
    }

    /// Writers that never pause (one is always inside a transaction) and
    /// readers whose snapshots overlap leave the checkpointer no quiet
    /// moment: the WAL file is still emptied, and erased content leaves
    /// it, within the 60 s of SPEC 6.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_emptied_while_writers_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("l.db");
        let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        let secret = "Karoline Birkedal <karoline.Xw9@example.dk>";
        let mut tx = store.begin(Commit::Durable).await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT)")
            .execute(&mut *tx.0)
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) \
             INSERT INTO t SELECT i, printf('%.2000c', 'x') FROM n",
        )
        .execute(&mut *tx.0)
        .await
        .unwrap();
        sqlx::query("INSERT INTO t VALUES (0, $1 || printf('%.500c', 'z'))")
            .bind(secret)
            .execute(&mut *tx.0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2i64)
            .map(|w| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0i64;
                    while !stop.load(Ordering::Relaxed) && n < 100_000 {
                        n += 1;
                        let mut tx = store.begin(Commit::Durable).await.unwrap();
                        sqlx::query("UPDATE t SET x = printf('%d %.2000c', $1, 'y') WHERE id = $2")
                            .bind(n)
                            .bind(1 + (n * 2 + w) % 200)
                            .execute(&mut *tx.0)
                            .await
                            .unwrap();
                        // Busy inside the transaction, as a worker rendering
                        // a page of postings is; the other writer waits.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        tx.commit().await.unwrap();
                    }
                    n
                })
            })
            .collect();
        // Readers beside them, as operators' commands or the Input API
        // are: their read transactions overlap, so one always holds a
        // snapshot older than the newest commit.
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let (file, stop) = (file.clone(), stop.clone());
                tokio::spawn(async move {
                    use sqlx::Connection;
                    let url = format!("sqlite://{}", file.display());
                    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(10 * r)).await;
                    for _ in 0..20_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut tx = conn.begin().await.unwrap();
                        let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
                            .fetch_one(&mut *tx)
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        tx.commit().await.unwrap();
                    }
                })
            })
            .collect();
        let wal = wal_sibling(&file, "-wal");
        let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        let in_wal = || {
            let bytes = std::fs::read(&wal).unwrap_or_default();
            bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
        };
        // The secret is in the WAL, then erased while the writers go on.
        let started = std::time::Instant::now();
        while !in_wal() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "never in the WAL"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut tx = store.begin(Commit::Durable).await.unwrap();
        sqlx::query("DELETE FROM t WHERE id = 0")
            .execute(&mut *tx.0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let erased = std::time::Instant::now();
        let bound = Duration::from_secs(60);
        let (mut emptied, mut last) = (false, wal_len());
        while (!emptied || in_wal()) && erased.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let len = wal_len();
            // Only a truncation makes the file shorter.
            emptied |= len < last;
            last = len;
        }
        let took = erased.elapsed();
        eprintln!("the WAL was emptied {took:?} after the erasure");
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
        let mut written = 0;
        for w in writers {
            written += w.await.unwrap();
        }
        assert!(
            written > 100,
            "the writers wrote only {written} transactions"
        );
        assert!(
            emptied && !in_wal(),
            "after {took:?} of writers that never pause ({written} transactions) the WAL \
             (now {} bytes) was emptied: {emptied}; still holds the erased content: {}",
            wal_len(),
            in_wal()
        );
    }
}
