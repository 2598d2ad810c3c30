//! Configuration (SPEC 4.6): one TOML file, every key overridable by an
//! environment variable `EURES_SYNC__SECTION__KEY`, every key with a default
//! so an empty (or, for the default path, missing) file works.
//!
//! Each value is parsed into the type its users need as it is read: a
//! duration is a [`Duration`], a file that may be absent an
//! `Option<PathBuf>`, the NACE revision a [`NaceRevision`], and a value
//! outside its range is refused right there, in one line that names the key
//! and where the value came from. A loaded [`Config`] therefore holds no
//! value left to check.
//!
//! The module must never hold a token inside [`Config`] (only file paths),
//! never let `Debug` show one or the database password, never put a
//! secret's content in an error message, and never log anything: it runs
//! before telemetry is set up.
//!
//! - this file: the settings and their defaults;
//! - `load`: the layered sources (defaults, file, environment) and the
//!   checks that involve more than one key;
//! - `parse`: how each kind of value is read from TOML or the environment
//!   (and written back, for the defaults layer);
//! - `checks`: the rules single values are held to;
//! - `errors`: [`ConfigError`] and figment's errors turned into one line;
//! - `tokens`: the secret tokens, read on demand.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::codes::NaceRevision;
use crate::domain::render::DocumentSettings;

mod checks;
mod errors;
mod load;
mod parse;
mod tokens;

#[cfg(test)]
mod tests;

pub(crate) use checks::check_no_userinfo;
pub use checks::{PLAIN_HTTP_REFUSED, USERINFO_REFUSED, check_rust_log};
pub use errors::ConfigError;
pub use tokens::{
    ENV_EURES_TOKEN, ENV_INPUT_API_TOKEN, ENV_JOBAG_TOKEN, MIN_INPUT_API_TOKEN_BYTES, Token,
};

/// How copies reach EURES (defined with the planner, which depends on it).
pub use crate::domain::ledger::Mode;

/// The file read when no `--config` is given, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Prefix of the environment variables that override file settings
/// (`EURES_SYNC__JOBAG__BASE_URL` overrides `jobag.base_url`).
pub const ENV_PREFIX: &str = "EURES_SYNC__";

/// Largest page the agent asks JobAG for.
pub const MAX_PAGE_SIZE: u32 = 5000;
/// The shortest retention `retention.audit_days` and `purge --older-than`
/// accept, in days.
pub const MIN_AUDIT_DAYS: u32 = 1;
/// Largest number of concurrent EURES requests.
pub const MAX_CONCURRENCY: usize = 1024;

/// The whole configuration. Holds no secret: tokens live in files (or
/// environment variables) read on demand by [`Config::token`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub jobag: JobagConfig,
    pub eures: EuresConfig,
    pub reconcile: ReconcileConfig,
    pub http: HttpConfig,
    pub retention: RetentionConfig,
    pub log: LogConfig,
    pub tls: TlsConfig,
}

/// `[database]`
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://...` (embedded, single worker) or `postgres://...` (many
    /// workers). A password belongs in the environment override or
    /// `PGPASSWORD`: one written in the file is refused.
    #[serde(deserialize_with = "parse::database_url")]
    pub url: String,
}

/// The URL may carry the database password (from the environment
/// override): a printed configuration shows `***` in its place.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &crate::store::display_url(&self.url))
            .finish()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/eures-sync.db?mode=rwc".to_owned(),
        }
    }
}

/// `[jobag]`: the source feed (SPEC 4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobagConfig {
    /// Root of the JobAG API; `/api/v1/postings...` is appended. An http(s)
    /// URL, plain http only to a loopback host.
    #[serde(deserialize_with = "parse::jobag_base_url")]
    pub base_url: String,
    /// File holding the bearer token (`token_file`); `None` means no
    /// `Authorization` header unless [`ENV_JOBAG_TOKEN`] gives one.
    #[serde(
        deserialize_with = "parse::optional_path",
        serialize_with = "parse::write_optional_path"
    )]
    pub token_file: Option<PathBuf>,
    /// Pause between feed polls when the feed has nothing more
    /// (`poll_interval_ms`, at least 1 ms).
    #[serde(
        rename = "poll_interval_ms",
        deserialize_with = "parse::poll_interval",
        serialize_with = "parse::write_millis"
    )]
    pub poll_interval: Duration,
    /// `limit` asked per feed or snapshot page, 1 to [`MAX_PAGE_SIZE`].
    #[serde(deserialize_with = "parse::page_size")]
    pub page_size: u32,
    /// The NACE revision of `employer.nace`, written `"2"` (Danish DB07) or
    /// `"2.1"` (DB25). It decides the section letter EURES gets.
    #[serde(
        deserialize_with = "parse::nace_revision",
        serialize_with = "parse::write_nace_revision"
    )]
    pub nace_revision: NaceRevision,
    /// Where to apply when the consent covers the posting only and the
    /// posting has no application URL: an http(s) URL with `{id}`, e.g.
    /// `https://jobnet.example/job/{id}`. Written `""` for none.
    #[serde(
        deserialize_with = "parse::posting_url_template",
        serialize_with = "parse::write_optional_text"
    )]
    pub posting_url_template: Option<String>,
}

impl Default for JobagConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8081".to_owned(),
            token_file: None,
            poll_interval: Duration::from_millis(1000),
            page_size: 500,
            nace_revision: NaceRevision::Rev2,
            posting_url_template: None,
        }
    }
}

/// `[eures]`: the target (SPEC 4.2, 4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EuresConfig {
    pub mode: Mode,
    /// Root of the push endpoint; `/api/v1/job-vacancies...` is appended.
    /// An http(s) URL, plain http only to a loopback host.
    #[serde(deserialize_with = "parse::eures_base_url")]
    pub base_url: String,
    /// File holding the bearer token for the push endpoint; `None` means
    /// none unless [`ENV_EURES_TOKEN`] gives one.
    #[serde(
        deserialize_with = "parse::optional_path",
        serialize_with = "parse::write_optional_path"
    )]
    pub token_file: Option<PathBuf>,
    /// `PostingRequester/PartyID` of every document; never blank.
    #[serde(deserialize_with = "parse::party_id")]
    pub party_id: String,
    /// Requests in flight at once towards EURES, 1 to [`MAX_CONCURRENCY`].
    #[serde(deserialize_with = "parse::concurrency")]
    pub concurrency: usize,
    /// Whole-request timeout for one EURES call (`request_timeout_ms`, at
    /// least 1 ms).
    #[serde(
        rename = "request_timeout_ms",
        deserialize_with = "parse::request_timeout",
        serialize_with = "parse::write_millis"
    )]
    pub request_timeout: Duration,
    /// Attempts for a create or update before it goes to the dead letters
    /// (at least 1); deletions never give up.
    #[serde(deserialize_with = "parse::max_attempts")]
    pub max_attempts: u32,
    /// Pull mode: file holding the bearer token EURES must present; `None`
    /// leaves it to [`ENV_INPUT_API_TOKEN`].
    #[serde(
        deserialize_with = "parse::optional_path",
        serialize_with = "parse::write_optional_path"
    )]
    pub input_api_token_file: Option<PathBuf>,
}

impl Default for EuresConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Push,
            base_url: "http://127.0.0.1:8082".to_owned(),
            token_file: None,
            party_id: "STAR-DK".to_owned(),
            concurrency: 32,
            request_timeout: Duration::from_millis(10_000),
            max_attempts: 20,
            input_api_token_file: None,
        }
    }
}

/// `[reconcile]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Time between periodic reconcile passes (`interval_s`, whole
    /// seconds); `None` (written 0) means only on demand.
    #[serde(
        rename = "interval_s",
        deserialize_with = "parse::optional_seconds",
        serialize_with = "parse::write_optional_seconds"
    )]
    pub interval: Option<Duration>,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(3600)),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Metrics, health and (pull mode) the Input API.
    pub listen: SocketAddr,
    /// Pull mode: the Input API on an address of its own, so `/metrics`
    /// need not face EURES. Written `""` (none: the Input API shares
    /// `listen`) or `host:port`; never the same address as `listen`.
    #[serde(
        deserialize_with = "parse::optional_addr",
        serialize_with = "parse::write_optional_addr"
    )]
    pub input_api_listen: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            input_api_listen: None,
        }
    }
}

/// `[retention]` (SPEC 6)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Audit rows and tombstones older than this many days are purged (at
    /// least [`MIN_AUDIT_DAYS`]).
    #[serde(deserialize_with = "parse::audit_days")]
    pub audit_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { audit_days: 400 }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    #[default]
    Auto,
    Json,
    Text,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `eures_sync=debug,info`) whose every
    /// directive names a level; `RUST_LOG` is for telemetry to honour, not
    /// read here.
    #[serde(deserialize_with = "parse::log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".to_owned(),
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of extra root certificates trusted next to the system
    /// roots (a private CA in front of JobAG or the EURES gateway); `None`
    /// (written `""`) means none. Verification itself is never turned off.
    #[serde(
        deserialize_with = "parse::optional_path",
        serialize_with = "parse::write_optional_path"
    )]
    pub extra_ca_file: Option<PathBuf>,
}

impl Config {
    /// What the rendered documents depend on: `eures.party_id`,
    /// `jobag.nace_revision` and `jobag.posting_url_template`.
    pub fn document_settings(&self) -> DocumentSettings {
        DocumentSettings {
            party_id: self.eures.party_id.clone(),
            nace_revision: self.jobag.nace_revision,
            posting_url_template: self.jobag.posting_url_template.clone(),
        }
    }
}
