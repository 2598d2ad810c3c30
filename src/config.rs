//! Configuration (SPEC 4.6): one TOML file, every key overridable by an
//! environment variable `EURES_SYNC__SECTION__KEY`, every key with a default
//! so an empty (or, for the default path, missing) file works.
//!
//! This module owns reading, merging and validating the settings, and reading
//! the secret tokens from the files (or environment variables) the settings
//! name. It must never hold a secret inside [`Config`] (only file paths, so
//! `Debug` can never leak one), never put a secret's content in an error
//! message, and never log anything: it runs before telemetry is set up.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::domain::codes::NaceRevision;
use crate::domain::render::DocumentSettings;

/// The file read when no `--config` is given, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Prefix of the environment variables that override file settings
/// (`EURES_SYNC__JOBAG__BASE_URL` overrides `jobag.base_url`).
pub const ENV_PREFIX: &str = "EURES_SYNC__";

/// Environment variables carrying a token directly; each one wins over the
/// token file its key names.
pub const ENV_JOBAG_TOKEN: &str = "EURES_SYNC_JOBAG_TOKEN";
/// See [`ENV_JOBAG_TOKEN`].
pub const ENV_EURES_TOKEN: &str = "EURES_SYNC_EURES_TOKEN";
/// See [`ENV_JOBAG_TOKEN`].
pub const ENV_INPUT_API_TOKEN: &str = "EURES_SYNC_INPUT_API_TOKEN";

/// Largest page the agent asks JobAG for.
pub const MAX_PAGE_SIZE: u32 = 5000;
/// The shortest retention `retention.audit_days` and `purge --older-than`
/// accept, in days.
pub const MIN_AUDIT_DAYS: u32 = 1;
/// Largest number of concurrent EURES requests.
pub const MAX_CONCURRENCY: usize = 1024;

/// A configuration problem, in one line that names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist.
    #[error("config file {}: not found", path.display())]
    FileNotFound { path: PathBuf },
    /// The file does not parse, or a value has the wrong type.
    #[error("{0}")]
    Parse(String),
    /// A value parsed but is not acceptable.
    #[error("{key}: {why}")]
    Invalid { key: &'static str, why: String },
    /// A token file could not be read. Never carries the file's content.
    #[error("{key}: cannot read {}: {why}", path.display())]
    Secret {
        key: &'static str,
        path: PathBuf,
        why: String,
    },
}

impl ConfigError {
    fn invalid(key: &'static str, why: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            why: why.into(),
        }
    }
}

/// The whole configuration. Holds no secret: tokens live in files (or
/// environment variables) read on demand by [`Config::jobag_token`] and friends.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://...` (embedded, single worker) or `postgres://...` (many
    /// workers). A password belongs in the environment override, not the file.
    #[serde(deserialize_with = "lenient_string")]
    pub url: String,
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
    /// Root of the JobAG API; `/api/v1/postings...` is appended.
    #[serde(deserialize_with = "lenient_string")]
    pub base_url: String,
    /// File holding the bearer token; empty means no `Authorization` header.
    #[serde(deserialize_with = "lenient_string")]
    pub token_file: String,
    /// Pause between feed polls when the feed has nothing more.
    pub poll_interval_ms: u64,
    /// `limit` asked per feed or snapshot page.
    pub page_size: u32,
    /// The NACE revision of `employer.nace`: `"2"` (Danish DB07) or `"2.1"`
    /// (DB25). It decides the section letter EURES gets.
    #[serde(deserialize_with = "lenient_string")]
    pub nace_revision: String,
    /// Where to apply when the consent covers the posting only and the
    /// posting has no application URL: an http(s) URL with `{id}`, e.g.
    /// `https://jobnet.example/job/{id}`. Empty means none.
    #[serde(deserialize_with = "lenient_string")]
    pub posting_url_template: String,
}

impl Default for JobagConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8081".to_owned(),
            token_file: String::new(),
            poll_interval_ms: 1000,
            page_size: 500,
            nace_revision: "2".to_owned(),
            posting_url_template: String::new(),
        }
    }
}

/// How copies reach EURES (defined with the planner, which depends on it).
pub use crate::domain::ledger::Mode;

/// `[eures]`: the target (SPEC 4.2, 4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EuresConfig {
    pub mode: Mode,
    /// Root of the push endpoint; `/api/v1/job-vacancies...` is appended.
    #[serde(deserialize_with = "lenient_string")]
    pub base_url: String,
    /// File holding the bearer token for the push endpoint.
    #[serde(deserialize_with = "lenient_string")]
    pub token_file: String,
    /// `PostingRequester/PartyID` of every document.
    #[serde(deserialize_with = "lenient_string")]
    pub party_id: String,
    /// Requests in flight at once towards EURES.
    pub concurrency: usize,
    /// Whole-request timeout for one EURES call.
    pub request_timeout_ms: u64,
    /// Attempts for a create or update before it goes to the dead letters;
    /// deletions never give up.
    pub max_attempts: u32,
    /// Pull mode: file holding the bearer token EURES must present.
    #[serde(deserialize_with = "lenient_string")]
    pub input_api_token_file: String,
}

impl Default for EuresConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Push,
            base_url: "http://127.0.0.1:8082".to_owned(),
            token_file: String::new(),
            party_id: "STAR-DK".to_owned(),
            concurrency: 32,
            request_timeout_ms: 10_000,
            max_attempts: 20,
            input_api_token_file: String::new(),
        }
    }
}

/// `[reconcile]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Seconds between periodic reconcile passes; 0 = only on demand.
    pub interval_s: u64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self { interval_s: 3600 }
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
    /// `listen`) or `host:port`.
    #[serde(
        deserialize_with = "optional_addr",
        serialize_with = "write_optional_addr"
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
    /// Audit rows and tombstones older than this are purged.
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
    /// A `tracing` filter (`info`, `eures_sync=debug,info`); `RUST_LOG` is
    /// for telemetry to honour, not read here.
    #[serde(deserialize_with = "lenient_string")]
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
    /// roots (a private CA in front of JobAG or the EURES gateway). Empty
    /// means none. Verification itself is never turned off.
    #[serde(deserialize_with = "lenient_string")]
    pub extra_ca_file: String,
}

/// How tokens given directly in the environment are looked up; injectable so
/// tests never touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`EnvLookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Loads `path` (or [`DEFAULT_CONFIG_PATH`] when `None`), merges the
    /// `EURES_SYNC__SECTION__KEY` environment overrides, and validates.
    ///
    /// A missing default file means "all defaults"; a missing file given
    /// explicitly is an error.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        check_rust_log(std::env::var("RUST_LOG").ok().as_deref())?;
        let env = Env::prefixed(ENV_PREFIX).split("__");
        Self::load_from(Self::figment(path, env)?)
    }

    /// The layered sources: defaults, then the file, then `overrides` (the
    /// process environment in [`Config::load`]; any provider in tests).
    pub fn figment(
        path: Option<&Path>,
        overrides: impl figment::Provider,
    ) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::FileNotFound {
                        path: path.to_owned(),
                    });
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.is_file() {
                    figment = figment.merge(Toml::file_exact(default));
                }
            }
        }
        Ok(figment.merge(overrides))
    }

    /// Extracts and validates a configuration from any figment.
    pub fn load_from(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(figment_error)?;
        config.validate()?;
        Ok(config)
    }

    /// Same as [`Config::load_from`]; the name `zero2prod` readers look for.
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        Self::load_from(figment)
    }

    /// Checks every value that parsed but could still be wrong. The first
    /// problem found is reported, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let db = self.database.url.trim();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres:")
            || db.starts_with("postgresql:"))
        {
            return Err(ConfigError::invalid(
                "database.url",
                "must start with sqlite: or postgres:",
            ));
        }

        check_http_url("jobag.base_url", &self.jobag.base_url)?;
        if self.jobag.poll_interval_ms == 0 {
            return Err(ConfigError::invalid(
                "jobag.poll_interval_ms",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.jobag.page_size) {
            return Err(ConfigError::invalid(
                "jobag.page_size",
                format!("must be 1–{MAX_PAGE_SIZE}"),
            ));
        }

        if NaceRevision::parse(&self.jobag.nace_revision).is_none() {
            return Err(ConfigError::invalid(
                "jobag.nace_revision",
                "must be \"2\" or \"2.1\"",
            ));
        }

        if let Some(template) = self.posting_url_template() {
            check_posting_url_template(template)?;
        }

        check_http_url("eures.base_url", &self.eures.base_url)?;
        if self.eures.party_id.trim().is_empty() {
            return Err(ConfigError::invalid("eures.party_id", "must not be empty"));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.eures.concurrency) {
            return Err(ConfigError::invalid(
                "eures.concurrency",
                format!("must be 1–{MAX_CONCURRENCY}"),
            ));
        }
        if self.eures.request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "eures.request_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.eures.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "eures.max_attempts",
                "must be at least 1",
            ));
        }
        // Pull mode's token may come from the file or the environment; its
        // presence is checked where it is read (`run`), not here.

        if self
            .http
            .input_api_listen
            .is_some_and(|a| a == self.http.listen && a.port() != 0)
        {
            return Err(ConfigError::invalid(
                "http.input_api_listen",
                "must differ from http.listen (leave it empty to share that address)",
            ));
        }

        if self.retention.audit_days < MIN_AUDIT_DAYS {
            return Err(ConfigError::invalid(
                "retention.audit_days",
                format!("must be at least {MIN_AUDIT_DAYS}"),
            ));
        }
        check_log_filter(&self.log.level).map_err(|why| ConfigError::invalid("log.level", why))?;
        Ok(())
    }

    /// What the rendered documents depend on: `eures.party_id` and
    /// `jobag.nace_revision` (validated when loaded; an unvalidated value
    /// falls back to the default revision).
    pub fn document_settings(&self) -> DocumentSettings {
        DocumentSettings {
            party_id: self.eures.party_id.clone(),
            nace_revision: NaceRevision::parse(&self.jobag.nace_revision).unwrap_or_default(),
            posting_url_template: self.posting_url_template().map(str::to_owned),
        }
    }

    /// `jobag.posting_url_template`, `None` when empty.
    fn posting_url_template(&self) -> Option<&str> {
        Some(self.jobag.posting_url_template.trim()).filter(|t| !t.is_empty())
    }

    /// The JobAG bearer token: `EURES_SYNC_JOBAG_TOKEN`, else the content of
    /// `jobag.token_file`, else none.
    pub fn jobag_token(&self) -> Result<Option<SecretString>, ConfigError> {
        self.jobag_token_with(&process_env)
    }

    /// [`Config::jobag_token`] with an injected environment.
    pub fn jobag_token_with(
        &self,
        env: EnvLookup<'_>,
    ) -> Result<Option<SecretString>, ConfigError> {
        read_token(
            env,
            ENV_JOBAG_TOKEN,
            "jobag.token_file",
            &self.jobag.token_file,
        )
    }

    /// The push endpoint's bearer token: `EURES_SYNC_EURES_TOKEN`, else the
    /// content of `eures.token_file`, else none.
    pub fn eures_token(&self) -> Result<Option<SecretString>, ConfigError> {
        self.eures_token_with(&process_env)
    }

    /// [`Config::eures_token`] with an injected environment.
    pub fn eures_token_with(
        &self,
        env: EnvLookup<'_>,
    ) -> Result<Option<SecretString>, ConfigError> {
        read_token(
            env,
            ENV_EURES_TOKEN,
            "eures.token_file",
            &self.eures.token_file,
        )
    }

    /// The token EURES must present to the Input API (pull mode):
    /// `EURES_SYNC_INPUT_API_TOKEN`, else the content of
    /// `eures.input_api_token_file`, else none.
    pub fn input_api_token(&self) -> Result<Option<SecretString>, ConfigError> {
        self.input_api_token_with(&process_env)
    }

    /// [`Config::input_api_token`] with an injected environment.
    pub fn input_api_token_with(
        &self,
        env: EnvLookup<'_>,
    ) -> Result<Option<SecretString>, ConfigError> {
        read_token(
            env,
            ENV_INPUT_API_TOKEN,
            "eures.input_api_token_file",
            &self.eures.input_api_token_file,
        )
    }

    /// `tls.extra_ca_file` as a path, `None` when empty.
    pub fn extra_ca_file(&self) -> Option<&Path> {
        non_empty_path(&self.tls.extra_ca_file)
    }

    /// `jobag.poll_interval_ms` as a duration.
    pub fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.jobag.poll_interval_ms)
    }

    /// `eures.request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.eures.request_timeout_ms)
    }

    /// `reconcile.interval_s` as a duration; `None` means on demand only.
    pub fn reconcile_interval(&self) -> Option<std::time::Duration> {
        (self.reconcile.interval_s > 0)
            .then(|| std::time::Duration::from_secs(self.reconcile.interval_s))
    }
}

/// Accepts a string, or a number or boolean written where a string is meant:
/// the environment carries only text, and figment parses `EURES_SYNC__EURES__PARTY_ID=12345`
/// as a number.
/// A template must name the posting (`{id}`) and give an http(s) URL with a
/// host once the id is in: a template that fails sends every
/// posting-only copy to `invalid: application`.
fn check_posting_url_template(template: &str) -> Result<(), ConfigError> {
    const KEY: &str = "jobag.posting_url_template";
    if !template.contains("{id}") {
        return Err(ConfigError::invalid(KEY, "must contain {id}"));
    }
    let url = url::Url::parse(&template.replace("{id}", "id"))
        .map_err(|_| ConfigError::invalid(KEY, "not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(KEY, "must be an http or https URL"));
    }
    Ok(())
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_char<E: serde::de::Error>(self, v: char) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    de.deserialize_any(V)
}

/// `""` (or nothing) is none, anything else must be a socket address.
fn optional_addr<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = lenient_string(de)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom("not a socket address: write host:port, e.g. 0.0.0.0:9465")
    })
}

fn write_optional_addr<S: serde::Serializer>(
    addr: &Option<SocketAddr>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match addr {
        Some(addr) => ser.collect_str(addr),
        None => ser.serialize_str(""),
    }
}

/// The levels a `log.level` directive may name.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// `log.level` is a `tracing` filter: comma-separated directives, each a
/// level or `target=level`. A bare word that is not a level parses as a
/// target to log at every level, which is how `inof` would silence the
/// worker: refuse it, so a typo never turns the logs off.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const WHAT: &str = "must be a level (trace, debug, info, warn, error, off) or \
                        comma-separated target=level directives";
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(WHAT.to_owned());
    }
    for directive in &directives {
        let level = directive.rsplit_once('=').map_or(*directive, |(_, l)| l);
        if !LOG_LEVELS
            .iter()
            .any(|l| l.eq_ignore_ascii_case(level.trim()))
        {
            let hint = closest(&level.trim().to_ascii_lowercase(), &LOG_LEVELS)
                .map(|l| format!(" (did you mean `{l}`?)"))
                .unwrap_or_default();
            return Err(format!("{WHAT}{hint}"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|_| WHAT.to_owned())
}

/// `RUST_LOG` (given as `value`), when set and not blank, overrides
/// `log.level`: it is held to the same rules, so a typo in it is an error
/// naming it rather than a worker that logs nothing.
pub fn check_rust_log(value: Option<&str>) -> Result<(), ConfigError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(filter) => {
            check_log_filter(filter).map_err(|why| ConfigError::invalid("RUST_LOG", why))
        }
        None => Ok(()),
    }
}

fn non_empty_path(s: &str) -> Option<&Path> {
    let s = s.trim();
    (!s.is_empty()).then(|| Path::new(s))
}

fn check_http_url(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(value.trim()).map_err(|_| ConfigError::invalid(key, "not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(key, "must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(key, "not a URL (no host)"));
    }
    if url.scheme() == "http" && !url.host().is_some_and(|h| is_loopback_url_host(&h)) {
        return Err(ConfigError::invalid(key, PLAIN_HTTP_REFUSED));
    }
    Ok(())
}

/// Why an `http://` base URL to another machine is refused: tokens and
/// postings would cross the network in clear.
pub const PLAIN_HTTP_REFUSED: &str =
    "http:// only to a loopback host (localhost, 127.0.0.1, ::1); use https://";

/// Whether `host` (a database host, or a URL's host text) names this
/// machine over its loopback interface: `localhost`, `127.0.0.0/8` or
/// `::1` (IPv4-mapped included). Any other name counts as remote even when
/// it resolves to a local address: the decision must not depend on DNS.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// [`is_loopback_host`] of a parsed URL's host.
pub fn is_loopback_url_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => is_loopback_host(name),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Reads one token: the environment variable first (blank counts as unset),
/// then the file (trimmed; an empty file is an error, a blank bearer token
/// would only fail later and less clearly).
fn read_token(
    env: EnvLookup<'_>,
    env_name: &str,
    key: &'static str,
    file: &str,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(value) = env(env_name) {
        let value = value.trim();
        if !value.is_empty() {
            return Ok(Some(SecretString::from(value)));
        }
    }
    let Some(path) = non_empty_path(file) else {
        return Ok(None);
    };
    let content = std::fs::read_to_string(path).map_err(|e| ConfigError::Secret {
        key,
        path: path.to_owned(),
        // The io::Error kind only: its Display never carries file content,
        // but keep the message short and predictable.
        why: e.kind().to_string(),
    })?;
    let token = content.trim();
    if token.is_empty() {
        return Err(ConfigError::Secret {
            key,
            path: path.to_owned(),
            why: "file is empty".to_owned(),
        });
    }
    Ok(Some(SecretString::from(token)))
}

/// Turns figment's error into one line naming the key and where the value
/// came from (file or environment variable). The value itself is never
/// quoted (it may be a password inside a URL), and Rust's type names are
/// replaced by what an operator should write.
fn figment_error(err: figment::Error) -> ConfigError {
    let from_env = err
        .metadata
        .as_ref()
        .is_some_and(|md| md.name.contains(ENV_PREFIX));
    let mut path = err.path.clone();
    let why = match &err.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            // figment's path already ends with the field; not always.
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            let what = if path.len() == 1 { "section" } else { "key" };
            match closest(field, expected) {
                Some(known) => format!("unknown {what} (did you mean `{known}`?)"),
                None => format!("unknown {what}"),
            }
        }
        figment::error::Kind::InvalidType(actual, expected)
        | figment::error::Kind::InvalidValue(actual, expected) => {
            match allowed_range(&path.join(".")) {
                Some(range) => format!("must be {range} (found {})", kind_of(actual)),
                None => format!(
                    "wrong value: found {}, expected {}",
                    kind_of(actual),
                    plain_expectation(expected)
                ),
            }
        }
        figment::error::Kind::UnknownVariant(found, expected) => {
            let choices = expected.join(", ");
            match closest(found, expected) {
                Some(known) => format!("unknown choice (did you mean `{known}`? one of {choices})"),
                None => format!("unknown choice (one of {choices})"),
            }
        }
        kind => one_line(&kind.to_string()),
    };
    let key = path.join(".");
    let origin = match &err.metadata {
        Some(_) if from_env && !path.is_empty() => {
            format!(" (environment variable {})", env_var_name(&path))
        }
        Some(md) => match &md.source {
            Some(source) => format!(" (in {} {source})", md.name),
            None => format!(" (in {})", md.name),
        },
        None => String::new(),
    };
    if key.is_empty() {
        ConfigError::Parse(format!("config: {why}{origin}"))
    } else {
        ConfigError::Parse(format!("{key}: {why}{origin}"))
    }
}

/// The known name nearest to a misspelt one, if it is near enough to be
/// the likely intent.
fn closest(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), *k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// `EURES_SYNC__JOBAG__BASE_URL` for the path `jobag.base_url`;
/// `EURES_SYNC__JOBAG__*` for a whole section.
fn env_var_name(path: &[String]) -> String {
    let upper: Vec<String> = path.iter().map(|p| p.to_ascii_uppercase()).collect();
    let section = if path.len() == 1 { "__*" } else { "" };
    format!("{ENV_PREFIX}{}{section}", upper.join("__"))
}

/// What a numeric key accepts, in the words `validate` uses, for a value
/// that did not even parse as one (a negative number, a decimal, text,
/// a number too large for the key).
fn allowed_range(key: &str) -> Option<String> {
    Some(match key {
        "jobag.page_size" => format!("1–{MAX_PAGE_SIZE}"),
        "eures.concurrency" => format!("1–{MAX_CONCURRENCY}"),
        "retention.audit_days" => format!("a whole number, at least {MIN_AUDIT_DAYS}"),
        "jobag.poll_interval_ms" | "eures.request_timeout_ms" | "eures.max_attempts" => {
            "a whole number, at least 1".to_owned()
        }
        "reconcile.interval_s" => "a whole number of seconds, 0 or more".to_owned(),
        _ => return None,
    })
}

/// What kind of value was found, without the value.
fn kind_of(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "a number",
        Actual::Float(_) => "a decimal number",
        Actual::Char(_) | Actual::Str(_) => "text",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "nothing",
        Actual::Option => "an optional value",
        Actual::Seq => "a list",
        Actual::NewtypeStruct => "a value",
        Actual::Map => "a table",
        Actual::Enum | Actual::UnitVariant | Actual::NewtypeVariant => "a choice",
        Actual::TupleVariant | Actual::StructVariant => "a choice",
        Actual::Other(_) => "another kind of value",
    }
}

/// serde's expectation (`u32`, `usize`, `a string`) in an operator's words.
fn plain_expectation(expected: &str) -> String {
    match expected.trim() {
        "u8" => "a whole number, 0–255".to_owned(),
        "u16" => "a whole number, 0–65535".to_owned(),
        "u32" => format!("a whole number, 0–{}", u32::MAX),
        "u64" | "u128" | "usize" => "a whole number (0 or more)".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        other => one_line(other),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::value::{Dict, Map, Value};
    use figment::{Metadata, Profile, Provider};
    use secrecy::ExposeSecret;
    use std::collections::HashMap;
    use std::io::Write;
    use std::str::FromStr;

    /// Environment-like overrides built from pairs, parsed the way figment's
    /// `Env::prefixed(ENV_PREFIX).split("__")` parses the process environment
    /// (prefix stripped, lowercased, `__` nests, values parsed by
    /// `Value::from_str`), so tests never mutate the process environment.
    struct FakeEnv(Vec<(&'static str, &'static str)>);

    impl Provider for FakeEnv {
        fn metadata(&self) -> Metadata {
            // What the real provider says, so errors word it the same way.
            Env::prefixed(ENV_PREFIX).split("__").metadata()
        }

        fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
            let mut dict = Dict::new();
            for (k, v) in &self.0 {
                let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
                    continue;
                };
                let key = rest.to_ascii_lowercase().replace("__", ".");
                let value = Value::from_str(v).map_err(|e| figment::Error::from(e.to_string()))?;
                let nested = figment::util::nest(&key, value)
                    .into_dict()
                    .ok_or_else(|| figment::Error::from("bad key".to_owned()))?;
                dict = merge_dicts(dict, nested);
            }
            Ok(Profile::Default.collect(dict))
        }
    }

    fn merge_dicts(mut a: Dict, b: Dict) -> Dict {
        for (k, v) in b {
            match (a.remove(&k), v) {
                (Some(Value::Dict(_, da)), Value::Dict(tag, db)) => {
                    a.insert(k, Value::Dict(tag, merge_dicts(da, db)));
                }
                (_, v) => {
                    a.insert(k, v);
                }
            }
        }
        a
    }

    fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        from_toml_env(toml, vec![])
    }

    fn from_toml_env(
        toml: &str,
        env: Vec<(&'static str, &'static str)>,
    ) -> Result<Config, ConfigError> {
        Config::load_from(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .merge(FakeEnv(env)),
        )
    }

    fn err_of(toml: &str) -> String {
        match from_toml(toml) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_gives_the_spec_defaults() {
        let c = from_toml("").unwrap();
        assert_eq!(c.database.url, "sqlite://data/eures-sync.db?mode=rwc");
        assert_eq!(c.jobag.base_url, "http://127.0.0.1:8081");
        assert_eq!(c.jobag.token_file, "");
        assert_eq!(c.jobag.poll_interval_ms, 1000);
        assert_eq!(c.jobag.page_size, 500);
        assert_eq!(c.eures.mode, Mode::Push);
        assert_eq!(c.eures.base_url, "http://127.0.0.1:8082");
        assert_eq!(c.eures.token_file, "");
        assert_eq!(c.eures.party_id, "STAR-DK");
        assert_eq!(c.eures.concurrency, 32);
        assert_eq!(c.eures.request_timeout_ms, 10_000);
        assert_eq!(c.eures.max_attempts, 20);
        assert_eq!(c.eures.input_api_token_file, "");
        assert_eq!(c.reconcile.interval_s, 3600);
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.http.input_api_listen, None);
        assert_eq!(c.retention.audit_days, 400);
        assert_eq!(c.log.format, LogFormat::Auto);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.tls.extra_ca_file, "");
        assert_eq!(c, Config::default());
        assert_eq!(c.extra_ca_file(), None);
        assert_eq!(
            c.reconcile_interval(),
            Some(std::time::Duration::from_secs(3600))
        );
    }

    #[test]
    fn committed_default_file_matches_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        let c = Config::load_from(Config::figment(Some(&path), FakeEnv(vec![])).unwrap()).unwrap();
        assert_eq!(c, Config::default());
        // Through the real environment provider too (the test process sets no
        // EURES_SYNC__ variable).
        if !std::env::vars().any(|(k, _)| k.starts_with(ENV_PREFIX)) {
            assert_eq!(Config::load(Some(&path)).unwrap(), Config::default());
        }
        // Every key is written out in the file, not only defaulted.
        let text = std::fs::read_to_string(&path).unwrap();
        let table: toml_like::Table = toml_like::parse(&text);
        let defaults = serde_json::to_value(Config::default()).unwrap();
        for (section, keys) in defaults.as_object().unwrap() {
            for key in keys.as_object().unwrap().keys() {
                assert!(
                    table.contains(&(section.clone(), key.clone())),
                    "{section}.{key} missing from {DEFAULT_CONFIG_PATH}"
                );
            }
        }
    }

    /// Just enough of a TOML reader to list `[section]` / `key =` pairs.
    mod toml_like {
        pub type Table = std::collections::HashSet<(String, String)>;
        pub fn parse(text: &str) -> Table {
            let mut section = String::new();
            let mut out = Table::new();
            for line in text.lines().map(str::trim) {
                if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = s.trim().to_owned();
                } else if let Some((k, _)) = line.split_once('=')
                    && !line.starts_with('#')
                {
                    out.insert((section.clone(), k.trim().to_owned()));
                }
            }
            out
        }
    }

    #[test]
    fn toml_overrides_defaults_key_by_key() {
        let c = from_toml(
            r#"
            [eures]
            mode = "pull"
            concurrency = 8
            input_api_token_file = "/run/secrets/input"
            [http]
            listen = "0.0.0.0:9000"
            [log]
            format = "json"
            "#,
        )
        .unwrap();
        assert_eq!(c.eures.mode, Mode::Pull);
        assert_eq!(c.eures.concurrency, 8);
        assert_eq!(c.eures.party_id, "STAR-DK", "untouched keys keep defaults");
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = from_toml_env(
            "[jobag]\nbase_url = \"http://file:1\"\npage_size = 10\n",
            vec![
                (
                    "EURES_SYNC__JOBAG__BASE_URL",
                    "https://jobag.example:8443/root",
                ),
                ("EURES_SYNC__EURES__CONCURRENCY", "64"),
                ("EURES_SYNC__EURES__MODE", "pull"),
                ("EURES_SYNC__EURES__INPUT_API_TOKEN_FILE", "/tmp/t"),
                ("EURES_SYNC__HTTP__LISTEN", "127.0.0.1:0"),
                ("EURES_SYNC__RECONCILE__INTERVAL_S", "0"),
                ("EURES_SYNC__DATABASE__URL", "postgres://u@db/eures"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.jobag.base_url, "https://jobag.example:8443/root");
        assert_eq!(c.jobag.page_size, 10, "file value kept");
        assert_eq!(c.eures.concurrency, 64);
        assert_eq!(c.eures.mode, Mode::Pull);
        assert_eq!(c.http.listen.port(), 0);
        assert_eq!(c.reconcile_interval(), None);
        assert_eq!(c.database.url, "postgres://u@db/eures");
    }

    #[test]
    fn numeric_looking_env_value_for_a_string_key_is_accepted() {
        let c = from_toml_env("", vec![("EURES_SYNC__EURES__PARTY_ID", "12345")]).unwrap();
        assert_eq!(c.eures.party_id, "12345");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = from_toml_env("", vec![("EURES_SYNC__EURES__CONCURRENCY", "many")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("eures.concurrency: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err_of("[eures]\nmode = \"sideways\"\n");
        assert!(e.starts_with("eures.mode: "), "{e}");
        let e = err_of("[http]\nlisten = \"nowhere\"\n");
        assert!(e.starts_with("http.listen: "), "{e}");
    }

    #[test]
    fn toml_syntax_error_is_one_line() {
        let e = err_of("[eures\nconcurrency = = 3\n");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn validation_names_each_key() {
        let cases = [
            (
                "[database]\nurl = \"mysql://x\"",
                "database.url: must start with sqlite: or postgres:",
            ),
            (
                "[jobag]\nbase_url = \"not a url\"",
                "jobag.base_url: not a URL",
            ),
            (
                "[jobag]\nbase_url = \"ftp://x\"",
                "jobag.base_url: must be an http or https URL",
            ),
            (
                "[jobag]\npoll_interval_ms = 0",
                "jobag.poll_interval_ms: must be at least 1",
            ),
            ("[jobag]\npage_size = 0", "jobag.page_size: must be 1–5000"),
            (
                "[jobag]\npage_size = 5001",
                "jobag.page_size: must be 1–5000",
            ),
            (
                "[jobag]\nnace_revision = \"3\"",
                "jobag.nace_revision: must be \"2\" or \"2.1\"",
            ),
            (
                "[jobag]\nnace_revision = \"\"",
                "jobag.nace_revision: must be \"2\" or \"2.1\"",
            ),
            (
                "[jobag]\nposting_url_template = \"https://jobnet.example/job\"",
                "jobag.posting_url_template: must contain {id}",
            ),
            (
                "[jobag]\nposting_url_template = \"ftp://jobnet.example/{id}\"",
                "jobag.posting_url_template: must be an http or https URL",
            ),
            (
                "[jobag]\nposting_url_template = \"jobnet/{id}\"",
                "jobag.posting_url_template: not a URL",
            ),
            ("[eures]\nbase_url = \"\"", "eures.base_url: not a URL"),
            (
                "[eures]\nparty_id = \" \"",
                "eures.party_id: must not be empty",
            ),
            (
                "[eures]\nconcurrency = 0",
                "eures.concurrency: must be 1–1024",
            ),
            (
                "[eures]\nconcurrency = 1025",
                "eures.concurrency: must be 1–1024",
            ),
            (
                "[eures]\nrequest_timeout_ms = 0",
                "eures.request_timeout_ms: must be at least 1",
            ),
            (
                "[eures]\nmax_attempts = 0",
                "eures.max_attempts: must be at least 1",
            ),
            (
                "[retention]\naudit_days = 0",
                "retention.audit_days: must be at least 1",
            ),
            (
                "[log]\nlevel = \"\"",
                "log.level: must be a level (trace, debug, info, warn, error, off) or \
                 comma-separated target=level directives",
            ),
        ];
        for (toml, want) in cases {
            assert_eq!(err_of(toml), want, "for {toml:?}");
        }
    }

    #[test]
    fn input_api_listen_is_empty_or_an_address_of_its_own() {
        let c = from_toml("[http]\ninput_api_listen = \"0.0.0.0:9465\"").unwrap();
        assert_eq!(
            c.http.input_api_listen,
            Some("0.0.0.0:9465".parse().unwrap())
        );
        let c = from_toml_env(
            "[http]\ninput_api_listen = \"0.0.0.0:9465\"",
            vec![("EURES_SYNC__HTTP__INPUT_API_LISTEN", "\"\"")],
        )
        .unwrap();
        assert_eq!(c.http.input_api_listen, None, "the environment empties it");
        let c = from_toml_env(
            "",
            vec![("EURES_SYNC__HTTP__INPUT_API_LISTEN", "[::1]:9465")],
        )
        .unwrap();
        assert_eq!(c.http.input_api_listen, Some("[::1]:9465".parse().unwrap()));
        let e = err_of("[http]\ninput_api_listen = \"everywhere\"");
        assert!(
            e.starts_with("http.input_api_listen: not a socket address"),
            "{e}"
        );
        assert_eq!(
            err_of("[http]\nlisten = \"127.0.0.1:9464\"\ninput_api_listen = \"127.0.0.1:9464\""),
            "http.input_api_listen: must differ from http.listen (leave it empty to share that address)"
        );
        // Port 0 asks for any free port, twice: two different addresses.
        from_toml("[http]\nlisten = \"127.0.0.1:0\"\ninput_api_listen = \"127.0.0.1:0\"").unwrap();
    }

    #[test]
    fn plain_http_only_to_a_loopback_host() {
        for key in ["jobag", "eures"] {
            for remote in [
                "http://jobag.example",
                "http://10.0.0.1:8080",
                "http://[2001:db8::1]/",
                "http://localhost.example",
                "http://127.0.0.1.example",
            ] {
                assert_eq!(
                    err_of(&format!("[{key}]\nbase_url = \"{remote}\"")),
                    format!("{key}.base_url: {PLAIN_HTTP_REFUSED}"),
                    "{remote}"
                );
            }
            for fine in [
                "http://localhost:8081",
                "http://LOCALHOST",
                "http://127.0.0.1:1",
                "http://127.8.9.10:1/root",
                "http://[::1]:8082",
                "http://[::ffff:127.0.0.1]:8082",
                "https://jobag.example",
                "https://10.0.0.1:8443/root",
            ] {
                from_toml(&format!("[{key}]\nbase_url = \"{fine}\""))
                    .unwrap_or_else(|e| panic!("{fine}: {e}"));
            }
        }
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(!is_loopback_host("0.0.0.0"));
        assert!(!is_loopback_host("db.example"));
        assert!(!is_loopback_host("/var/run/postgresql"));
    }

    #[test]
    fn limits_are_inclusive() {
        let c =
            from_toml("[jobag]\npage_size = 5000\n[eures]\nconcurrency = 1024\nmax_attempts = 1")
                .unwrap();
        assert_eq!(c.jobag.page_size, 5000);
        assert_eq!(c.eures.concurrency, 1024);
        let c = from_toml("[jobag]\npage_size = 1\n[eures]\nconcurrency = 1").unwrap();
        assert_eq!(c.jobag.page_size, 1);
        from_toml("[database]\nurl = \"postgresql://h/db\"").unwrap();
        from_toml("[database]\nurl = \"sqlite::memory:\"").unwrap();
    }

    #[test]
    fn unknown_keys_and_sections_are_errors_naming_them() {
        let e = err_of("[eures]\nconcurency = 4\n");
        assert!(
            e.starts_with("eures.concurency: unknown key (did you mean `concurrency`?)"),
            "{e}"
        );
        let e = err_of("[databse]\nurl = \"sqlite://x.db\"\n");
        assert!(
            e.starts_with("databse: unknown section (did you mean `database`?)"),
            "{e}"
        );
        let e = err_of("[future]\nx = 2\n");
        assert!(e.starts_with("future: unknown section"), "{e}");
        assert!(!e.contains("did you mean"), "{e}");
        let e = from_toml_env("", vec![("EURES_SYNC__EURES__CONCURENCY", "4")])
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("(environment variable EURES_SYNC__EURES__CONCURENCY)"),
            "{e}"
        );
        let e = from_toml_env("", vec![("EURES_SYNC__DATABSE__URL", "sqlite://x.db")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("databse: unknown section"), "{e}");
        assert!(
            e.ends_with("(environment variable EURES_SYNC__DATABSE__*)"),
            "{e}"
        );
    }

    #[test]
    fn wrong_values_are_described_not_quoted() {
        let e = err_of("[eures]\nconcurrency = \"forty\"\n");
        assert!(
            e.starts_with("eures.concurrency: must be 1–1024 (found text)"),
            "{e}"
        );
        assert!(!e.contains("forty") && !e.contains("usize"), "{e}");
        // A number that does not fit the key's type is out of its range,
        // said as the range, never as the type.
        for (toml, want) in [
            (
                "[eures]\nconcurrency = -1\n",
                "eures.concurrency: must be 1–1024",
            ),
            (
                "[jobag]\npage_size = 99999999999\n",
                "jobag.page_size: must be 1–5000",
            ),
            (
                "[retention]\naudit_days = 1.5\n",
                "retention.audit_days: must be a whole number, at least 1",
            ),
            (
                "[eures]\nmax_attempts = -3\n",
                "eures.max_attempts: must be a whole number, at least 1",
            ),
        ] {
            let e = err_of(toml);
            assert!(e.starts_with(want), "{toml}: {e}");
            for rust in ["u32", "u64", "usize", "i64"] {
                assert!(!e.contains(rust), "{toml}: {e}");
            }
        }
        let e = err_of("[eures]\nmode = \"pul\"\n");
        assert!(
            e.starts_with("eures.mode: unknown choice (did you mean `pull`? one of push, pull)"),
            "{e}"
        );
        let e = err_of("[database]\nurl = [\"postgres://u:hunter2@db/x\"]\n");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn log_level_must_parse_as_levels() {
        for good in ["info", "WARN", "eures_sync=debug,info", "info,sqlx=off"] {
            from_toml(&format!("[log]\nlevel = \"{good}\"\n")).unwrap();
        }
        let e = err_of("[log]\nlevel = \"inof\"\n");
        assert!(e.starts_with("log.level: must be a level"), "{e}");
        assert!(e.ends_with("(did you mean `info`?)"), "{e}");
        for bad in ["", "eures_sync", "eures_sync=loud", "info,,="] {
            let e = err_of(&format!("[log]\nlevel = \"{bad}\"\n"));
            assert!(e.starts_with("log.level: "), "{bad}: {e}");
        }
    }

    #[test]
    fn a_rust_log_is_held_to_the_rules_of_log_level() {
        for good in [
            None,
            Some(""),
            Some("  "),
            Some("debug"),
            Some("eures_sync=debug,warn"),
        ] {
            check_rust_log(good).unwrap();
        }
        for bad in ["inof", "eures_sync", "eures_sync=loud"] {
            let e = check_rust_log(Some(bad)).unwrap_err().to_string();
            assert!(e.starts_with("RUST_LOG: must be a level"), "{bad}: {e}");
        }
    }

    #[test]
    fn explicit_missing_file_is_an_error_default_missing_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = Config::figment(Some(&missing), FakeEnv(vec![])).unwrap_err();
        assert!(matches!(e, ConfigError::FileNotFound { .. }));
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }

    #[test]
    fn explicit_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[eures]\nparty_id = \"X-1\"\n").unwrap();
        let c = Config::load_from(
            Config::figment(
                Some(&path),
                FakeEnv(vec![("EURES_SYNC__EURES__CONCURRENCY", "3")]),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(c.eures.party_id, "X-1");
        assert_eq!(c.eures.concurrency, 3);
    }

    #[test]
    fn error_from_a_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[eures]\nconcurrency = \"x\"\n").unwrap();
        let e = Config::load_from(Config::figment(Some(&path), FakeEnv(vec![])).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("eures.concurrency: "), "{e}");
        assert!(e.contains("bad.toml"), "{e}");
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write_file(dir: &Path, name: &str, content: &str) -> String {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(content.as_bytes()).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn tokens_are_read_from_files_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.jobag.token_file = write_file(dir.path(), "j", "  jobag-secret\n");
        c.eures.token_file = write_file(dir.path(), "e", "eures-secret\r\n");
        c.eures.input_api_token_file = write_file(dir.path(), "i", "\tinput-secret ");
        let j = c.jobag_token_with(&no_env).unwrap().unwrap();
        let e = c.eures_token_with(&no_env).unwrap().unwrap();
        let i = c.input_api_token_with(&no_env).unwrap().unwrap();
        assert_eq!(j.expose_secret(), "jobag-secret");
        assert_eq!(e.expose_secret(), "eures-secret");
        assert_eq!(i.expose_secret(), "input-secret");
    }

    #[test]
    fn no_file_no_env_means_no_token() {
        let c = Config::default();
        assert!(c.jobag_token_with(&no_env).unwrap().is_none());
        assert!(c.eures_token_with(&no_env).unwrap().is_none());
        assert!(c.input_api_token_with(&no_env).unwrap().is_none());
    }

    #[test]
    fn env_token_wins_over_the_file_and_blank_env_is_unset() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.eures.token_file = write_file(dir.path(), "e", "from-file");
        let vars: HashMap<&str, &str> = [
            (ENV_EURES_TOKEN, " from-env \n"),
            (ENV_JOBAG_TOKEN, "   "),
            (ENV_INPUT_API_TOKEN, "input-env"),
        ]
        .into();
        let env = |name: &str| vars.get(name).map(|v| v.to_string());
        let e = c.eures_token_with(&env).unwrap().unwrap();
        assert_eq!(e.expose_secret(), "from-env");
        assert!(c.jobag_token_with(&env).unwrap().is_none());
        let i = c.input_api_token_with(&env).unwrap().unwrap();
        assert_eq!(i.expose_secret(), "input-env");
    }

    #[test]
    fn token_errors_name_key_and_file_never_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.eures.token_file = dir.path().join("missing").to_string_lossy().into_owned();
        let e = c.eures_token_with(&no_env).unwrap_err().to_string();
        assert!(e.starts_with("eures.token_file: cannot read "), "{e}");
        assert!(e.contains("missing"), "{e}");

        c.jobag.token_file = write_file(dir.path(), "empty", " \n");
        let e = c.jobag_token_with(&no_env).unwrap_err().to_string();
        assert!(e.starts_with("jobag.token_file: "), "{e}");
        assert!(e.contains("empty"), "{e}");

        // A directory is unreadable as a file.
        c.eures.input_api_token_file = dir.path().to_string_lossy().into_owned();
        let e = c.input_api_token_with(&no_env).unwrap_err().to_string();
        assert!(e.starts_with("eures.input_api_token_file: "), "{e}");
    }

    #[test]
    fn debug_shows_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.eures.token_file = write_file(dir.path(), "e", "super-secret-token");
        let token = c.eures_token_with(&no_env).unwrap().unwrap();
        let dbg = format!("{c:?} {token:?}");
        assert!(!dbg.contains("super-secret-token"), "{dbg}");
    }
}
