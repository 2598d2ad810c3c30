//! Where the settings come from: the built-in defaults, then the file, then
//! the `EURES_SYNC__SECTION__KEY` environment overrides; and the checks that
//! need more than one key, made once everything is read.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::checks::check_rust_log;
use super::errors::{figment_error, syntax_error};
use super::{Config, ConfigError, DEFAULT_CONFIG_PATH, ENV_PREFIX};

impl Config {
    /// What the binary runs on: `path` (or [`DEFAULT_CONFIG_PATH`] when
    /// `None`) under the process environment's overrides, with `RUST_LOG`
    /// held to the rules of `log.level`.
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
                check_syntax(path)?;
                figment = figment.merge(Toml::file_exact(path));
            }
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.is_file() {
                    check_syntax(default)?;
                    figment = figment.merge(Toml::file_exact(default));
                }
            }
        }
        Ok(figment.merge(overrides))
    }

    /// Reads a configuration from any figment: each value is parsed and
    /// checked as it is read, then the keys that depend on each other.
    pub fn load_from(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(figment_error)?;
        check_password_source(&figment, &config.database.url)?;
        config.check_keys_together()?;
        Ok(config)
    }

    /// The one rule that spans keys: the Input API's own address must not
    /// be the shared one (port 0, any free port, is two addresses).
    fn check_keys_together(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }
}

/// The file parses as TOML, or the error says where and why without the
/// text there: figment's own error quotes the line, which may hold a
/// password or token written where it does not belong.
fn check_syntax(path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Parse(format!(
            "config file {}: cannot read it: {}",
            path.display(),
            e.kind()
        ))
    })?;
    match text.parse::<toml::Table>() {
        Ok(_) => Ok(()),
        Err(e) => Err(syntax_error(path, &text, &e)),
    }
}

/// A database password comes from the environment (the override
/// `EURES_SYNC__DATABASE__URL`, or `PGPASSWORD`), never from the file,
/// which is committed, copied and shown around (SPEC 4.6). Where the URL
/// was written is figment's record of the value's provider.
fn check_password_source(figment: &Figment, url: &str) -> Result<(), ConfigError> {
    if !crate::store::holds_password(url) {
        return Ok(());
    }
    let metadata = figment
        .find_value("database.url")
        .ok()
        .and_then(|value| figment.get_metadata(value.tag()).cloned());
    let origin = match &metadata {
        Some(md) if md.name.contains(ENV_PREFIX) => return Ok(()),
        Some(md) => match &md.source {
            Some(source) => format!(" (in {} {source})", md.name),
            None => format!(" (in {})", md.name),
        },
        None => String::new(),
    };
    Err(ConfigError::Parse(format!(
        "database.url: must not hold a password in the file; give the URL with it in \
         {ENV_PREFIX}DATABASE__URL, or the password in PGPASSWORD{origin}"
    )))
}
