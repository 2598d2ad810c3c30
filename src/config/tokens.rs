//! The secret tokens. Each one is given either directly in an environment
//! variable or as a file that a key names; [`Config::token`] is the one way
//! to read any of them, on demand, so the secret itself never sits in
//! [`Config`]. Pull mode cannot run without the Input API token, but
//! whether one is given is known only once it is read: `run` refuses to
//! start without it.

use std::path::Path;

use secrecy::SecretString;

use super::{Config, ConfigError};

/// Environment variables carrying a token directly; each one wins over the
/// token file its key names.
pub const ENV_JOBAG_TOKEN: &str = "EURES_SYNC_JOBAG_TOKEN";
/// See [`ENV_JOBAG_TOKEN`].
pub const ENV_EURES_TOKEN: &str = "EURES_SYNC_EURES_TOKEN";
/// See [`ENV_JOBAG_TOKEN`].
pub const ENV_INPUT_API_TOKEN: &str = "EURES_SYNC_INPUT_API_TOKEN";

/// Which token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The bearer token the agent presents to JobAG.
    Jobag,
    /// The bearer token the agent presents to the push endpoint.
    Eures,
    /// The bearer token EURES must present to the Input API (pull mode).
    InputApi,
}

impl Token {
    /// The environment variable giving the token directly.
    pub fn env_var(self) -> &'static str {
        match self {
            Token::Jobag => ENV_JOBAG_TOKEN,
            Token::Eures => ENV_EURES_TOKEN,
            Token::InputApi => ENV_INPUT_API_TOKEN,
        }
    }

    /// The key naming the token's file.
    pub fn file_key(self) -> &'static str {
        match self {
            Token::Jobag => "jobag.token_file",
            Token::Eures => "eures.token_file",
            Token::InputApi => "eures.input_api_token_file",
        }
    }
}

/// How the environment is looked up; injectable so tests never touch the
/// process environment.
pub(super) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// A token: its environment variable ([`Token::env_var`]) when set and
    /// not blank, else the trimmed content of the file its key names, else
    /// none.
    pub fn token(&self, which: Token) -> Result<Option<SecretString>, ConfigError> {
        self.token_from(which, &|name| std::env::var(name).ok())
    }

    /// [`Config::token`] with an injected environment.
    pub(super) fn token_from(
        &self,
        which: Token,
        env: EnvLookup<'_>,
    ) -> Result<Option<SecretString>, ConfigError> {
        if let Some(value) = env(which.env_var()) {
            let value = value.trim();
            if !value.is_empty() {
                return Ok(Some(SecretString::from(value)));
            }
        }
        let file = match which {
            Token::Jobag => &self.jobag.token_file,
            Token::Eures => &self.eures.token_file,
            Token::InputApi => &self.eures.input_api_token_file,
        };
        file.as_deref()
            .map(|path| read_token_file(which.file_key(), path))
            .transpose()
    }
}

/// The file's content, trimmed. An empty file is an error: a blank bearer
/// token would only fail later and less clearly.
fn read_token_file(key: &'static str, path: &Path) -> Result<SecretString, ConfigError> {
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
    Ok(SecretString::from(token))
}
