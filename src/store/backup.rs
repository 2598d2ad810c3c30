//! A consistent copy of a SQLite ledger, taken while a worker writes to it
//! (`eures-sync backup`). A PostgreSQL ledger is copied with `pg_dump`.
//!
//! `VACUUM INTO` reads one snapshot (a WAL read transaction, so the worker
//! keeps writing meanwhile) and writes it compacted to a new file. The copy
//! is written under a temporary name beside the destination, switched to a
//! rollback journal (one self-contained file, no `-wal` beside it), checked
//! with `PRAGMA integrity_check`, flushed, and only then given its name: a
//! backup that fails or is killed half-way never leaves a file that looks
//! like a backup. An existing file is never overwritten.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("database url: {0}")]
    Url(String),
    #[error("no ledger at {0} (database.url)")]
    NoLedger(PathBuf),
    #[error("{0} holds no ledger tables (not migrated yet, or another database)")]
    NotALedger(PathBuf),
    #[error("{0} exists: a backup never overwrites a file, name a new one")]
    Exists(PathBuf),
    #[error("{path}: {why}")]
    Io { path: PathBuf, why: std::io::Error },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the copy failed its integrity check: {0}")]
    Integrity(String),
}

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Ledger records (postings) in the copy.
    pub postings: i64,
    /// Database migrations the copy has applied.
    pub migrations: i64,
    /// Size of the copy.
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |why| BackupError::Io {
        path: path.to_owned(),
        why,
    }
}

/// Copies the SQLite ledger `url` names to `dest`, which must not exist.
pub async fn backup_sqlite(url: &str, dest: &Path) -> Result<BackupReport, BackupError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| BackupError::Url(e.to_string()))?
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30));
    let source = options.get_filename().to_owned();
    if !source.is_file() {
        return Err(BackupError::NoLedger(source));
    }
    if dest.symlink_metadata().is_ok() {
        return Err(BackupError::Exists(dest.to_owned()));
    }
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A missing directory is named plainly (tempfile's own error names the
    // temporary file it tried).
    std::fs::metadata(dir).map_err(io(dir))?;
    let partial = tempfile::Builder::new()
        .prefix(".eures-sync-backup-")
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    let partial_path = partial
        .path()
        .to_str()
        .ok_or_else(|| BackupError::Url(format!("{}: not UTF-8", partial.path().display())))?
        .to_owned();

    let mut conn = options.connect().await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'postings'",
    )
    .fetch_one(&mut conn)
    .await?;
    if tables == 0 {
        return Err(BackupError::NotALedger(source));
    }
    // SQLite accepts an empty file as the destination of VACUUM INTO.
    sqlx::query("VACUUM INTO ?1")
        .bind(&partial_path)
        .execute(&mut conn)
        .await?;
    conn.close().await?;

    let report = check_copy(partial.path()).await?;
    partial.as_file().sync_all().map_err(io(partial.path()))?;
    let file = partial.persist_noclobber(dest).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            BackupError::Exists(dest.to_owned())
        } else {
            io(dest)(e.error)
        }
    })?;
    drop(file);
    // The new name lives in the directory: flush it too.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
    Ok(BackupReport { bytes, ..report })
}

/// Makes the copy one self-contained file and checks it.
async fn check_copy(path: &Path) -> Result<BackupReport, BackupError> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Delete)
        .connect()
        .await?;
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await?;
    if problems != ["ok"] {
        return Err(BackupError::Integrity(problems.join("; ")));
    }
    let postings: i64 = sqlx::query_scalar("SELECT count(*) FROM postings")
        .fetch_one(&mut conn)
        .await?;
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(BackupReport {
        postings,
        migrations,
        bytes: 0,
    })
}
