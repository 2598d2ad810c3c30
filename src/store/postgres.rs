//! The production ledger: PostgreSQL, shared by several workers and by the
//! operators' CLI processes, all writing at once.
//!
//! - Every read-modify-write of postings locks the rows it loads
//!   (`FOR UPDATE`, in id order, so two transactions never wait on each
//!   other in a cycle): an ingest and a delivery outcome for the same posting
//!   in two processes take turns. A transaction that loses a race anyway
//!   (serialization failure 40001, deadlock 40P01, or a concurrent insert of
//!   a record it found missing) runs again, a few times, from the start.
//! - `claim` leases due operations with `FOR UPDATE SKIP LOCKED`: workers
//!   never wait for each other and never lease one posting twice. A lease
//!   that ran out (a killed worker) is reaped by the next claim, its attempt
//!   marked abandoned, and is anybody's to take.
//! - Leadership of the singleton loops is a leased row in `leader_lease`,
//!   timed by the database's clock, renewed by its holder.
//! - A transaction that makes work due issues `NOTIFY eures_sync`, which
//!   PostgreSQL delivers at commit; every worker `LISTEN`s on one pooled
//!   connection and reconnects when the database restarts.
//! - Pool: `max_connections` (default 10) and `acquire_timeout_ms` (default
//!   5000) may be given as query parameters of the URL; they are removed
//!   before the rest reaches the driver.
//!
//! Only how PostgreSQL opens, stamps, leads and listens lives here; what it
//! says its own way is its table in `dialect.rs`, and the `Store` methods
//! (`generic.rs`), transaction bodies (`writes.rs`) and the SQL both
//! databases accept (`sql.rs`) are shared. It never decides anything (the
//! planner does) and never holds a lock while anything but the database is
//! being waited for. How the link is protected is decided in `pg_link.rs`
//! and, with `sslrootcert`, spoken in `pg_bridge.rs`. Its tests need the
//! private pool settings, so they stay beside it (the end of the file).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, Postgres};
use sqlx::{Connection, PgPool, Pool};
use tokio::sync::{Notify, watch};

use super::backend::{Backend, Commit, ReapClock};
use super::dialect::Dialect;
use super::ledger_tx::Tx;
use super::pg_bridge::{Bridge, BridgeError};
use super::pg_link;
use super::types::{Result, StoreError};

/// The channel workers listen on for "work became due".
pub const WAKE_CHANNEL: &str = "eures_sync";
const DEFAULT_MAX_CONNECTIONS: u32 = 10;
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// The one leadership role.
const LEADER_ROLE: &str = "leader";

/// The database server's time in epoch milliseconds.
const DB_NOW_MS: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Takes or renews leadership: succeeds (returns a row) when nobody holds
/// it, `$2` holds it, or the holder let it expire. Timed by the database.
const LEAD: &str = "INSERT INTO leader_lease (role, owner, until_ms) \
     VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $3) \
     ON CONFLICT (role) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
     WHERE leader_lease.owner = excluded.owner \
        OR leader_lease.until_ms < (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
     RETURNING owner";

#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    reap_clock: Arc<ReapClock>,
    /// The TLS link of its own when `sslrootcert` names the CA; the pool
    /// reaches the server through it while the store lives.
    _bridge: Option<Arc<Bridge>>,
}

/// Pool settings carried in the URL's query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolSettings {
    max_connections: u32,
    acquire_timeout: Duration,
}

/// Splits our own pool parameters off a `postgres://` URL.
fn pool_settings(url: &str) -> Result<(String, PoolSettings)> {
    let mut parsed =
        url::Url::parse(url).map_err(|e| StoreError::Url(format!("not a URL: {e}")))?;
    let mut settings = PoolSettings {
        max_connections: DEFAULT_MAX_CONNECTIONS,
        acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
    };
    let mut rest = Vec::new();
    for (key, value) in parsed.query_pairs() {
        let number = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| StoreError::Url(format!("{key} must be a positive number")))
        };
        match key.as_ref() {
            "max_connections" => {
                settings.max_connections = u32::try_from(number()?).unwrap_or(u32::MAX);
            }
            "acquire_timeout_ms" => settings.acquire_timeout = Duration::from_millis(number()?),
            _ => rest.push((key.into_owned(), value.into_owned())),
        }
    }
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    Ok((parsed.into(), settings))
}

/// The options the driver reads from `url`, our pool parameters removed,
/// and the link decided for them.
fn link(url: &str) -> Result<(pg_link::Link, PoolSettings)> {
    let (url, settings) = pool_settings(url)?;
    let options = PgConnectOptions::from_str(&url)
        .map_err(|e| StoreError::Url(e.to_string()))?
        .application_name("eures-sync");
    let link = pg_link::decide(options, &url, &|name| std::env::var(name).ok())?;
    Ok((link, settings))
}

/// Which roots the link to the server a `postgres://` URL names trusts;
/// the same refusals as [`PgStore::connect`], without connecting.
pub(super) fn trust_roots(url: &str) -> Result<pg_link::TrustRoots> {
    Ok(link(url)?.0.trust)
}

impl PgStore {
    /// Connects to the database a `postgres://` URL names (one connection
    /// at once, so a wrong URL fails here; more as work needs them).
    pub async fn connect(url: &str) -> Result<PgStore> {
        let (link, settings) = link(url)?;
        if let Some(warning) = &link.warning {
            tracing::warn!("{warning}");
        }
        let target = link.options.clone();
        let (bridge, options) = match link.bridge {
            Some(spec) => match Bridge::start(spec, link.options, settings.acquire_timeout).await {
                Ok((bridge, options)) => (Some(Arc::new(bridge)), options),
                Err(BridgeError::Setup(e)) => return Err(e),
                Err(BridgeError::Link(e)) => {
                    return Err(StoreError::Connect(connect_error(&target, &e)));
                }
            },
            None => (None, link.options),
        };
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // A connection that died with a database restart is noticed
            // before use and replaced; one in steady use needs no ping
            // (sqlx tests every connection as it comes back anyway).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > Duration::from_secs(1) {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            Err(e) => {
                // The pool retries a refused connection until its acquire
                // timeout, then says only that it timed out: one plain
                // connection tells the operator which of the two it was.
                let e = match e {
                    sqlx::Error::PoolTimedOut => probe(&target).await.unwrap_or(e),
                    e => e,
                };
                return Err(StoreError::Connect(connect_error(&target, &e)));
            }
        };
        Ok(PgStore {
            pool,
            reap_clock: Arc::default(),
            _bridge: bridge,
        })
    }
}

/// Why the first connection failed, in one line for the operator: where
/// (host:port, database, user; never the password), the cause once, and
/// what to do about it.
fn connect_error(options: &PgConnectOptions, e: &sqlx::Error) -> String {
    let target = format!(
        "cannot connect to database \"{}\" at {}:{} as user \"{}\"",
        options.get_database().unwrap_or(options.get_username()),
        options.get_host(),
        options.get_port(),
        options.get_username()
    );
    let (cause, fix) = connect_cause(e);
    format!("{target}: {cause}; {fix}")
}

/// Why a TCP connection to the server fails, if it fails at once (a
/// refused port, an unknown host); `None` for a unix socket, a connection
/// that succeeds, or one that hangs.
async fn probe(options: &PgConnectOptions) -> Option<sqlx::Error> {
    let host = options.get_host();
    if host.starts_with('/') {
        return None;
    }
    let connect = tokio::net::TcpStream::connect((host, options.get_port()));
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Err(e)) => Some(sqlx::Error::Io(e)),
        Ok(Ok(_)) | Err(_) => None,
    }
}

/// A connection failure's cause and its fix, from what the driver said.
fn connect_cause(e: &sqlx::Error) -> (String, &'static str) {
    const URL: &str = "(database.url, or EURES_SYNC__DATABASE__URL)";
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => (
            "connection refused".into(),
            "check that PostgreSQL runs there and listens on that address and port \
             (database.url, or EURES_SYNC__DATABASE__URL)",
        ),
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => (
            "timed out".into(),
            "check the host and port, and any firewall on the way \
             (database.url, or EURES_SYNC__DATABASE__URL)",
        ),
        sqlx::Error::PoolTimedOut => (
            "timed out".into(),
            "check the host and port, and any firewall on the way; a slow network may need \
             a larger acquire_timeout_ms in the URL",
        ),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => (
                "database does not exist".into(),
                "create it (`createdb -O USER NAME`) or correct the database name in the URL \
                 (database.url, or EURES_SYNC__DATABASE__URL)",
            ),
            Some("28P01" | "28000") => (
                format!("authentication failed ({})", db.message()),
                "check the user and the password in the URL (the password is not shown \
                 here) and the server's pg_hba.conf",
            ),
            _ => (db.message().to_owned(), URL),
        },
        sqlx::Error::Tls(tls) => (
            format!("TLS failed: {tls}"),
            "check sslmode and sslrootcert in the URL against the server's certificate",
        ),
        sqlx::Error::Io(io) => (io.to_string(), URL),
        other => (other.to_string(), URL),
    }
}

/// Listens for wake-ups until `stop`, reconnecting with a capped backoff.
async fn listen(pool: PgPool, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    while !*stop.borrow() {
        let connect = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(WAKE_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let connected = tokio::select! {
            c = connect => c,
            _ = stop.changed() => return,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(200u64 << failures.min(5));
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "LISTEN for wake-ups failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        if failures > 0 {
            tracing::info!("listening for wake-ups again");
        }
        failures = 0;
        // Notifications sent while nobody listened are lost: look now.
        wake.notify_one();
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection dropped and was replaced: anything
                    // sent in between is lost, so look now.
                    Ok(None) => wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the wake-up listener; reconnecting");
                        break;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }
}

#[async_trait]
impl Backend for PgStore {
    type Db = Postgres;

    fn pool(&self) -> &Pool<Postgres> {
        &self.pool
    }

    fn reap_clock(&self) -> &ReapClock {
        &self.reap_clock
    }

    /// Every write transaction first takes the table lock all writers
    /// share (`ROW EXCLUSIVE` conflicts with none of them), so that its
    /// clock is read after it and [`Backend::barrier`] can wait for it.
    ///
    /// Its rows come in index order, never sorted: every `ORDER BY` of a
    /// write transaction has an index, and a sort there means reading
    /// every matching row. Without statistics (a new database, the first
    /// minute of an initial backfill) PostgreSQL guesses that 0.5 % of the
    /// due rows are unleased and then sorted every due row on every claim
    /// rather than read the first few off `postings_due`: 10-15 ms instead
    /// of 0.5 ms a claim at 20,000 postings, growing with the backlog.
    async fn begin(&self, commit: Commit) -> Result<Tx<Postgres>> {
        Ok(Tx(
            match commit {
                Commit::Durable => {
                    self.pool
                        .begin_with(
                            "BEGIN; SET LOCAL enable_sort = off; \
                             LOCK TABLE postings IN ROW EXCLUSIVE MODE",
                        )
                        .await?
                }
                Commit::Redoable => {
                    self.pool
                        .begin_with(
                            "BEGIN; SET LOCAL synchronous_commit = off; \
                             SET LOCAL enable_sort = off; \
                             LOCK TABLE postings IN ROW EXCLUSIVE MODE",
                        )
                        .await?
                }
            },
            None,
        ))
    }

    /// The database's clock: the caller's is not even looked at, so a
    /// worker whose clock is off by a minute leases, retries, expires and
    /// stamps exchange times like the others (SPEC 3.7).
    async fn stamp(&self, tx: &mut Tx<Postgres>, _proposed_ms: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(DB_NOW_MS).fetch_one(&mut *tx.0).await?)
    }

    async fn now_ms(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(DB_NOW_MS).fetch_one(&self.pool).await?)
    }

    /// `SHARE` conflicts with the `ROW EXCLUSIVE` lock every write
    /// transaction takes before it reads its clock: this waits for those
    /// under way, and reads the mark while no write can start. A write that
    /// starts later reads the clock after the mark was read, so it stamps at
    /// or above it, whenever it commits.
    async fn barrier(&self) -> Result<i64> {
        let mut tx = self
            .pool
            .begin_with("BEGIN; LOCK TABLE postings IN SHARE MODE")
            .await?;
        let mark: i64 = sqlx::query_scalar(DB_NOW_MS).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(mark)
    }

    async fn migrate(&self) -> Result<()> {
        // sqlx holds an advisory lock while migrating: workers starting
        // together apply each migration once.
        Postgres::migrator().run(&self.pool).await?;
        Ok(())
    }

    async fn lead(&self, owner: &str, ttl: Duration) -> Result<bool> {
        let held: Option<(String,)> = sqlx::query_as(LEAD)
            .bind(LEADER_ROLE)
            .bind(owner)
            .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4))
            .fetch_optional(&self.pool)
            .await?;
        Ok(held.is_some())
    }

    fn watch_wakeups(&self, wake: Arc<Notify>, stop: watch::Receiver<bool>) {
        tokio::spawn(listen(self.pool.clone(), wake, stop));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_parameters_are_ours_and_the_rest_reaches_the_driver() {
        let (url, s) = pool_settings(
            "postgres://u:p@db:5432/eures?sslmode=require&max_connections=3&acquire_timeout_ms=250",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@db:5432/eures?sslmode=require");
        assert_eq!(s.max_connections, 3);
        assert_eq!(s.acquire_timeout, Duration::from_millis(250));
        let (url, s) = pool_settings("postgresql://db/eures?max_connections=2").unwrap();
        assert_eq!(url, "postgresql://db/eures");
        assert_eq!(s.max_connections, 2);
        assert_eq!(s.acquire_timeout, DEFAULT_ACQUIRE_TIMEOUT);
        assert!(pool_settings("postgres://db/x?max_connections=0").is_err());
        assert!(pool_settings("postgres://db/x?acquire_timeout_ms=soon").is_err());
    }

    #[test]
    fn commits_notify_the_channel_workers_listen_on() {
        assert_eq!(
            <Postgres as Dialect>::WAKE,
            Some(format!("NOTIFY {WAKE_CHANNEL}").as_str())
        );
    }

    /// A new database (no statistics yet) with 20,000 due operations: the
    /// claim's plan reads them off `postings_due` in order, no sort.
    #[tokio::test]
    async fn claims_read_due_rows_in_index_order_even_without_statistics() {
        let admin_url = std::env::var("EURES_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let name = format!("eures_unit_claim_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let store = PgStore::connect(&format!("{base}/{name}")).await.unwrap();
        store.migrate().await.unwrap();
        sqlx::query(
            "INSERT INTO postings (id, source_version, desired_present, desired_hash, \
               delivered_state, next_attempt_at_ms, state, last_change_ms, due_op, due_rank) \
             SELECT 'P' || i, 1, true, 'h', 'absent', i, 'pending', 1, 'create', 1 \
             FROM generate_series(1, 20000) AS i",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let claim = <Postgres as Dialect>::sql(crate::store::dialect::Stmt::Claim)
            .replace("$1", "'w'")
            .replace("$2", "1")
            .replace("$3", "100000")
            .replace("$4", "16")
            .replace("$5", "7");
        let mut tx = store.begin(Commit::Durable).await.unwrap();
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {claim}")))
            .fetch_all(&mut *tx.0)
            .await
            .unwrap();
        drop(tx);
        store.pool.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan using postings_due") && !plan.contains("Sort"),
            "{plan}"
        );
    }
}
