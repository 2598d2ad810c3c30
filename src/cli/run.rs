//! `eures-sync run`: the worker and its HTTP listener until a signal.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::{Config, Token};
use crate::engine::Worker;
use crate::http::{AppState, Limits, serve, serve_router};

pub async fn run(config: Config, config_path: Option<&Path>) -> anyhow::Result<()> {
    // The secrets first: a token refused is one line, and nothing is
    // opened, created or logged before it.
    let input_api_tokens = input_api_tokens(&config)?;
    config.token(Token::Jobag)?;
    config.token(Token::Eures)?;
    let _one_worker = hold_sqlite_ledger(&config.database.url)?;
    let mut signals = Signals::install()?;
    let trust_roots = crate::store::trust_roots(&config.database.url)?;
    tracing::info!(
        version = crate::telemetry::VERSION,
        commit = crate::telemetry::COMMIT,
        config = %config_path.unwrap_or(Path::new(crate::config::DEFAULT_CONFIG_PATH)).display(),
        config_found = config_path.is_some() || Path::new(crate::config::DEFAULT_CONFIG_PATH).is_file(),
        database = %crate::store::display_url(&config.database.url),
        database_trust_roots = %trust_roots,
        mode = %config.eures.mode,
        "starting"
    );
    let store = crate::store::connect(&config.database.url).await?;
    store.migrate().await.context("applying migrations")?;
    let worker = Arc::new(Worker::from_config(&config, store.clone())?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let input_api = match input_api_tokens {
        Some(tokens) => Some(input_api(&config, &tokens).await?),
        None => None,
    };
    // The Input API apart from /metrics when an address is given for it.
    let (shared, apart) = match (config.http.input_api_listen, input_api) {
        (Some(listen), Some(api)) => (None, Some((listen, api))),
        (Some(_), None) => {
            tracing::warn!(
                "http.input_api_listen is set but eures.mode is push: nothing is served there"
            );
            (None, None)
        }
        (None, api) => (api, None),
    };
    let state = AppState {
        store,
        health: worker.health.clone(),
        input_api: shared,
    };
    let (addr, http) = serve(config.http.listen, state, stop_rx.clone()).await?;
    let api_http = match apart {
        Some((listen, api)) => {
            let (addr, task) = serve_router(
                "http.input_api_listen",
                listen,
                crate::http::input_api::router(api),
                Limits::input_api(),
                stop_rx.clone(),
            )
            .await?;
            tracing::info!(input_api_listen = %addr, "serving the Input API on its own address");
            Some(task)
        }
        None => None,
    };
    tracing::info!(listen = %addr, mode = %config.eures.mode, "eures-sync running");
    let mut running = tokio::spawn(worker.run(stop_rx));
    tokio::select! {
        ended = &mut running => {
            // A loop died: the worker has drained and says which.
            let _ = stop_tx.send(true);
            ended.context("worker task")??;
            anyhow::bail!("the worker stopped without a signal");
        }
        () = signals.next() => {}
    }
    tracing::info!(
        deadline_s = SHUTDOWN_DEADLINE.as_secs(),
        "stopping: finishing in-flight work (a second signal stops at once)"
    );
    let _ = stop_tx.send(true);
    tokio::select! {
        ended = &mut running => ended.context("worker task")??,
        () = signals.next() => {
            tracing::error!("second signal: stopping without waiting for in-flight requests; the next start takes their postings back and delivers them again");
            anyhow::bail!("stopped by a second signal before in-flight work finished");
        }
        () = tokio::time::sleep(SHUTDOWN_DEADLINE) => {
            tracing::error!(
                deadline_s = SHUTDOWN_DEADLINE.as_secs(),
                "shutdown deadline passed: stopping without waiting for in-flight requests; the next start takes their postings back and delivers them again"
            );
            anyhow::bail!("in-flight work did not finish within the shutdown deadline");
        }
    }
    let _ = http.await;
    if let Some(task) = api_http {
        let _ = task.await;
    }
    Ok(())
}

/// One worker a SQLite ledger: `run` holds an exclusive lock on
/// `<ledger>.lock` (with its process id inside) for as long as it runs, so
/// a second worker on the same file is refused with one line naming the
/// process that holds it. The kernel drops the lock when the process ends,
/// however it ends.
fn hold_sqlite_ledger(url: &str) -> anyhow::Result<Option<std::fs::File>> {
    use crate::store::DatabaseUrl;
    use std::str::FromStr;
    if !matches!(
        DatabaseUrl::parse(url),
        Ok(DatabaseUrl::Sqlite { in_memory: false })
    ) {
        return Ok(None);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
    let mut path = options.get_filename().as_os_str().to_owned();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?
    };
    {
        // A lock file left by an older agent with a wider mode: the
        // ledger's files are its owner's only (SPEC 6).
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
    }
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "{}", std::process::id())?;
            file.flush()?;
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            anyhow::bail!(
                "the SQLite ledger {} is in use by another worker (process {}): one worker \
                 a SQLite ledger; use PostgreSQL for several",
                options.get_filename().display(),
                holder.trim()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The tokens EURES may present to the Input API in pull mode (SPEC 4.3),
/// `None` in push mode.
fn input_api_tokens(config: &Config) -> anyhow::Result<Option<Vec<secrecy::SecretString>>> {
    if config.eures.mode != crate::domain::ledger::Mode::Pull {
        return Ok(None);
    }
    let tokens = config.tokens(Token::InputApi)?;
    if tokens.is_empty() {
        anyhow::bail!(
            "{}: pull mode needs the Input API token (a file, or {})",
            Token::InputApi.file_key(),
            Token::InputApi.env_var()
        );
    }
    Ok(Some(tokens))
}

/// The EURES Input API in pull mode, accepting each of `tokens`.
async fn input_api(
    config: &Config,
    tokens: &[secrecy::SecretString],
) -> anyhow::Result<crate::http::input_api::InputApi> {
    let store = crate::store::exchange::connect_exchange(&config.database.url).await?;
    let started_ms = store.now_ms().await?;
    Ok(crate::http::input_api::InputApi::waiting_for_source(
        store, tokens, started_ms,
    ))
}

/// How long a stop may take to finish in-flight requests before the process
/// ends without them (the systemd unit's `TimeoutStopSec` is above it).
pub const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// SIGTERM and SIGINT, as one stream.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
