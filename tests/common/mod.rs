//! Shared harness: both simulators on loopback, a fresh ledger (SQLite in a
//! temporary directory, or a PostgreSQL database of its own), and a worker
//! (in-process or the real binary).
//!
//! PostgreSQL: every [`Env`] creates `eures_test_<secs>_<pid>_<n>` through
//! the admin URL (`EURES_TEST_PG`, default the local `test` database) and
//! drops it when dropped; databases of that pattern older than an hour
//! (left by killed runs) are dropped first.
#![allow(dead_code)]

pub mod agent;
pub mod history;
pub mod seed;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eures_sync::config::Config;
use eures_sync::domain::eligibility::{Desired, evaluate};
use eures_sync::domain::posting::{ParsedChange, parse_change};
use eures_sync::domain::render::DocumentSettings;
use eures_sync::engine::Worker;
use eures_sync::eures::RetryPolicy;
use eures_sync_sims::eures::{EuresOptions, EuresSim};
use eures_sync_sims::jobag::{JobagOptions, JobagSim};
use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::Value;
use tokio::sync::watch;

/// Which ledger a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates, for each named `async fn(Backend)`, a test on SQLite
/// (`sqlite::name`) and one on PostgreSQL (`postgres::name`).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

pub struct Env {
    pub jobag: JobagSim,
    pub eures: EuresSim,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// The database of a PostgreSQL test, dropped with the `Env`.
    pub pg: Option<PgDb>,
}

/// The admin connection tests create their databases through.
pub fn pg_admin_url() -> String {
    std::env::var("EURES_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A database of one test's own.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    /// Creates a fresh database; drops leftovers older than an hour first.
    pub async fn create() -> PgDb {
        use sqlx::Connection;
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let name = format!(
            "eures_test_{now}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let mut admin = pg_admin().await;
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'eures_test_%'")
                .fetch_all(&mut admin)
                .await
                .expect("list test databases");
        for old in names {
            let created: Option<u64> = old
                .strip_prefix("eures_test_")
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse().ok());
            if created.is_some_and(|c| c + 3600 < now) {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {old} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        PgDb { name }
    }

    pub fn url(&self) -> String {
        let admin = pg_admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }

    /// A connection pool on this database, for assertions.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url())
            .await
            .expect("connect to test database")
    }
}

/// The admin connection, retried while the server is (re)starting.
async fn pg_admin() -> sqlx::PgConnection {
    use sqlx::Connection;
    let started = Instant::now();
    loop {
        match sqlx::PgConnection::connect(&pg_admin_url()).await {
            Ok(c) => return c,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("waiting for PostgreSQL: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("PostgreSQL at {} is not reachable: {e}", pg_admin_url()),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if std::env::var_os("EURES_TEST_KEEP_DB").is_some() {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let name = self.name.clone();
        // Drop runs outside any async context we could await in: use a
        // thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut admin = pg_admin().await;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

pub struct Running {
    pub worker: Arc<Worker>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("worker stops within 60 s")
            .expect("worker task");
        result.expect("worker exits cleanly");
    }
}

impl Env {
    /// Simulators and a SQLite ledger.
    pub async fn start() -> Env {
        Env::start_with(Backend::Sqlite).await
    }

    pub async fn start_with(backend: Backend) -> Env {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDb::create().await),
        };
        Env {
            jobag: JobagSim::start(JobagOptions::default())
                .await
                .expect("jobag sim"),
            eures: EuresSim::start(EuresOptions {
                seed: Some(seed::seed("EURES simulator fault draws")),
                ..EuresOptions::default()
            })
            .await
            .expect("eures sim"),
            dir: tempfile::tempdir().expect("tempdir"),
            backend,
            pg,
        }
    }

    pub fn db_url(&self) -> String {
        match &self.pg {
            Some(db) => db.url(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.dir.path().join("ledger.db").display()
            ),
        }
    }

    pub fn config_toml(&self) -> String {
        format!(
            "[database]\nurl = \"{}\"\n[jobag]\nbase_url = \"{}\"\npoll_interval_ms = 50\n\
             [eures]\nbase_url = \"{}\"\nconcurrency = 16\nrequest_timeout_ms = 2000\nmax_attempts = 1000\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            self.db_url(),
            self.jobag.base_url(),
            self.eures.base_url()
        )
    }

    pub fn config(&self) -> Config {
        Config::load_from(Figment::new().merge(Toml::string(&self.config_toml()))).expect("config")
    }

    /// A worker in this process with short retry delays.
    pub async fn worker(&self) -> Running {
        self.worker_with(self.config()).await
    }

    /// A pull-mode configuration (SPEC 4.3): the same ledger and JobAG as
    /// [`Env::config`], `eures.mode = "pull"`, and the Input API token
    /// written to a file in the temporary directory.
    pub fn pull_config(&self, token: &str) -> Config {
        let path = self.dir.path().join("input-api.token");
        write_secret(&path, token);
        let pull = format!(
            "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n",
            path.display()
        );
        Config::load_from(
            Figment::new()
                .merge(Toml::string(&self.config_toml()))
                .merge(Toml::string(&pull)),
        )
        .expect("pull config")
    }

    /// Like [`Env::worker`], from a given configuration.
    pub async fn worker_with(&self, config: Config) -> Running {
        let store = eures_sync::store::connect(&config.database.url)
            .await
            .expect("store");
        let mut worker = Worker::from_config(&config, store).expect("worker");
        worker.settings.retry = RetryPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        let worker = Arc::new(worker);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(worker.clone().run(rx));
        Running { worker, stop, task }
    }

    /// Starts the real binary (`eures-sync run`) on this environment, with
    /// `extra_toml` set over its configuration (`<dir>/<name>.toml`); its
    /// log (JSON, at `level`) goes to `<dir>/<name>.log`.
    pub fn agent(&self, name: &str, level: &str, extra_toml: &str) -> agent::Agent {
        let config = self.dir.path().join(format!("{name}.toml"));
        let log = format!("[log]\nformat = \"json\"\nlevel = \"{level}\"\n");
        let toml = merged_toml(&merged_toml(&self.config_toml(), extra_toml), &log);
        std::fs::write(&config, toml).expect("write config");
        agent::Agent::spawn(&config, &self.dir.path().join(format!("{name}.log")))
    }

    /// What EURES must hold according to the source: id → content hash.
    pub fn expected(&self) -> BTreeMap<String, String> {
        let now = chrono::Utc::now();
        let mut out = BTreeMap::new();
        for id in self.jobag.ids() {
            let Some(p) = self.jobag.current(&id) else {
                continue;
            };
            if let ParsedChange::Change(c) = parse_change(&p)
                && let Desired::Present { hash, .. } =
                    evaluate(&c, now, &DocumentSettings::default())
            {
                out.insert(id, hash);
            }
        }
        out
    }

    /// What EURES holds: id → content hash.
    pub fn held(&self) -> BTreeMap<String, String> {
        self.eures
            .holdings()
            .into_iter()
            .map(|(id, v)| (id, v.content_sha256))
            .collect()
    }

    /// Waits until EURES holds exactly what the source says. What the source
    /// says is rendered again only when the feed moved (or every 2 s, for
    /// the clock), and the holdings are compared only when their count
    /// already matches: with a large backlog the check itself must not
    /// starve the workers.
    pub async fn converged(&self, timeout: Duration) {
        let started = Instant::now();
        let mut expected = self.expected();
        let mut rendered = (self.jobag.log_len(), Instant::now());
        loop {
            if self.jobag.log_len() != rendered.0 || rendered.1.elapsed() > Duration::from_secs(2) {
                rendered = (self.jobag.log_len(), Instant::now());
                expected = self.expected();
            }
            if self.eures.len() == expected.len() && self.held() == expected {
                return;
            }
            if started.elapsed() > timeout {
                let expected = self.expected();
                let held = self.held();
                let missing: Vec<_> = expected
                    .keys()
                    .filter(|k| !held.contains_key(*k))
                    .take(5)
                    .collect();
                let extra: Vec<_> = held
                    .keys()
                    .filter(|k| !expected.contains_key(*k))
                    .take(5)
                    .collect();
                let stale: Vec<_> = expected
                    .iter()
                    .filter(|(k, h)| held.get(*k).is_some_and(|x| x != *h))
                    .map(|(k, _)| k)
                    .take(5)
                    .collect();
                panic!(
                    "EURES did not converge in {timeout:?}: expected {} held {}; missing {missing:?} extra {extra:?} stale {stale:?}",
                    expected.len(),
                    held.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How long after the first verdict the history is judged again: long
/// enough for a stale request still on its way (a retry, a held request let
/// go) to arrive and be applied.
const LOOK_AGAIN: Duration = Duration::from_millis(500);

impl Env {
    /// Waits until EURES holds what the source says and the ledger is quiet,
    /// then judges every reference's request history; looks again a moment
    /// later, so a late stale request is seen too. Ends every test that
    /// delivers.
    pub async fn settled(&self, timeout: Duration) {
        self.settled_on(&self.db_url(), timeout).await;
    }

    /// [`Env::settled`] for a ledger at another URL than [`Env::db_url`].
    pub async fn settled_on(&self, db_url: &str, timeout: Duration) {
        self.converged(timeout).await;
        self.judged_on(db_url, timeout).await;
        assert_eq!(
            self.held(),
            self.expected(),
            "EURES moved after the ledger went quiet"
        );
    }

    /// Waits until the ledger is quiet and judges every reference's request
    /// history; looks again a moment later (EURES must not have moved): for
    /// a test whose source is not a snapshot EURES can be compared with.
    pub async fn judged(&self, timeout: Duration) {
        self.judged_on(&self.db_url(), timeout).await;
    }

    async fn judged_on(&self, db_url: &str, timeout: Duration) {
        let started = Instant::now();
        loop {
            let busy = ledger_busy(db_url).await;
            let in_flight = self.eures.in_flight();
            if busy == 0 && in_flight == 0 {
                break;
            }
            assert!(
                started.elapsed() < timeout,
                "the ledger did not become quiet in {timeout:?}: {busy} record(s) due or leased, \
                 {in_flight} request(s) in flight at EURES"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        history::assert_sound(&history::judge(&self.eures.request_histories()));
        let held = self.held();
        tokio::time::sleep(LOOK_AGAIN).await;
        assert_eq!(self.held(), held, "EURES moved after the ledger went quiet");
        assert_eq!(ledger_busy(db_url).await, 0, "the ledger woke up again");
        history::assert_sound(&history::judge(&self.eures.request_histories()));
    }
}

/// Records of the ledger at `db_url` with an operation due (dead letters
/// aside) or a lease held (see [`leases_held`]).
pub async fn ledger_busy(db_url: &str) -> i64 {
    ledger_count(
        db_url,
        "SELECT COUNT(*) FROM postings WHERE (due_op IS NOT NULL AND NOT dead) \
         OR (lease_owner IS NOT NULL AND lease_until_ms > 0)",
    )
    .await
}

/// Records of the ledger at `db_url` whose lease someone holds (a lease
/// given back keeps its owner, ended: `lease_until_ms = 0`).
pub async fn leases_held(db_url: &str) -> i64 {
    ledger_count(
        db_url,
        "SELECT COUNT(*) FROM postings WHERE lease_owner IS NOT NULL AND lease_until_ms > 0",
    )
    .await
}

/// The ledger's records by state (`present`, `pending`, `absent`,
/// `quarantined`, each there even when 0), as the state gauges show them.
pub async fn ledger_states(db_url: &str) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = ["present", "pending", "absent", "quarantined"]
        .into_iter()
        .map(|s| (s.to_string(), 0.0))
        .collect();
    for (state, n) in ledger_rows(
        db_url,
        "SELECT state, COUNT(*) FROM postings GROUP BY state",
    )
    .await
    {
        out.insert(state, n as f64);
    }
    out
}

async fn ledger_count(db_url: &str, sql: &'static str) -> i64 {
    ledger_rows(db_url, &format!("SELECT '', ({sql})"))
        .await
        .first()
        .map_or(0, |(_, n)| *n)
}

/// Rows of `(text, count)` from a query on the ledger at `db_url`, through
/// a connection of the test's own.
async fn ledger_rows(db_url: &str, sql: &str) -> Vec<(String, i64)> {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    if db_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(db_url)
            .await
            .expect("connect to the SQLite ledger");
        let rows = sqlx::query_as(sql)
            .fetch_all(&mut conn)
            .await
            .expect("query the ledger");
        let _ = conn.close().await;
        rows
    } else {
        let mut conn = sqlx::PgConnection::connect(db_url)
            .await
            .expect("connect to the PostgreSQL ledger");
        let rows = sqlx::query_as(sql)
            .fetch_all(&mut conn)
            .await
            .expect("query the ledger");
        let _ = conn.close().await;
        rows
    }
}

/// Awaits `f` until true, at most `timeout`.
pub async fn eventually_async<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Changes postings `1..=n` while a backlog drains: `i % 3 == 0` deleted,
/// `1` consent withdrawn, `2` retitled `"{title} {i}"`.
pub fn churn(jobag: &JobagSim, n: u64, title: &str) {
    for i in 1..=n {
        let id = eures_sync_sims::jobag::sample_id(i);
        match i % 3 {
            0 => {
                jobag.delete(&id);
            }
            1 => {
                let mut p = editable(jobag, &id);
                p["eures_consent"] = serde_json::json!(false);
                jobag.upsert(p);
            }
            _ => {
                let mut p = editable(jobag, &id);
                p["title"] = serde_json::json!(format!("{title} {i}"));
                jobag.upsert(p);
            }
        }
    }
}

/// After a [`churn`] of `1..=n` converged: the deleted and withdrawn ones are
/// gone (with a DELETE last if they ever reached EURES), and no version of
/// theirs went backwards.
pub fn assert_churned(eures: &EuresSim, n: u64) {
    for i in 1..=n {
        let id = eures_sync_sims::jobag::sample_id(i);
        let history = eures.history(&id);
        assert!(
            history.windows(2).all(|w| w[0].1 <= w[1].1),
            "{id}: versions regressed {history:?}"
        );
        if i % 3 != 2 {
            assert!(eures.get(&id).is_none(), "{id} should be gone");
            if let Some((method, _)) = history.last() {
                assert_eq!(method, hyper::Method::DELETE, "{id}: {history:?}");
            }
        }
    }
}

/// `base` with the keys of `extra` set over it, table by table.
pub fn merged_toml(base: &str, extra: &str) -> String {
    let mut base: toml::Table = base.parse().expect("base TOML");
    let extra: toml::Table = extra.parse().expect("extra TOML");
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(table)), toml::Value::Table(more)) => table.extend(more),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
    toml::to_string(&base).expect("TOML")
}

/// Writes a secret (a token file) readable by its owner only, as the agent
/// requires of one.
pub fn write_secret(path: &std::path::Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// Publishes sample postings `1..=n`.
pub fn publish(jobag: &JobagSim, n: u64) {
    for i in 1..=n {
        jobag.upsert(eures_sync_sims::jobag::sample_posting(i));
    }
}

/// The wall clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Polls `f` until true, at most `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A copy of a current posting without version/updated_at, to edit and upsert.
pub fn editable(jobag: &JobagSim, id: &str) -> Value {
    let mut p = jobag.current(id).expect("posting exists");
    let o = p.as_object_mut().expect("object");
    o.remove("version");
    o.remove("updated_at");
    p
}

/// The variable that lets a test skip a check its machine cannot run.
pub const ALLOW_SKIP: &str = "EURES_TEST_ALLOW_SKIP";

/// A test that cannot run its check here fails, unless `EURES_TEST_ALLOW_SKIP`
/// names it (or is `all`): a skip that passes silently reads as a pass. The
/// line goes straight to the process's stderr, which the test harness does
/// not capture, so a skip is visible in the summary of a green run.
pub fn skip_or_fail(test: &str, why: &str) {
    let allowed = std::env::var(ALLOW_SKIP).unwrap_or_default();
    let allowed = allowed
        .split(',')
        .map(str::trim)
        .any(|name| name == "all" || name == test);
    assert!(
        allowed,
        "{test} cannot run: {why}. Set {ALLOW_SKIP}={test} to skip it knowingly."
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}
