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

/// The shortest Input API token accepted: EURES presents it to a listener
/// that may face the internet, so it must not be guessable (SPEC 4.6).
pub const MIN_INPUT_API_TOKEN_BYTES: usize = 32;

impl Config {
    /// The token of JobAG or of the push endpoint: its environment variable
    /// ([`Token::env_var`]) when set and not blank, else the trimmed content
    /// of the file its key names, else none. For the Input API, which may
    /// have two, see [`Config::tokens`].
    pub fn token(&self, which: Token) -> Result<Option<SecretString>, ConfigError> {
        Ok(self.tokens(which)?.into_iter().next())
    }

    /// Every token accepted for `which`: none, one, or for the Input API up
    /// to two (one a line), so a new token can be handed to EURES while the
    /// old one still works.
    pub fn tokens(&self, which: Token) -> Result<Vec<SecretString>, ConfigError> {
        self.tokens_from(which, &|name| std::env::var(name).ok())
    }

    /// [`Config::token`] with an injected environment.
    #[cfg(test)]
    pub(super) fn token_from(
        &self,
        which: Token,
        env: EnvLookup<'_>,
    ) -> Result<Option<SecretString>, ConfigError> {
        Ok(self.tokens_from(which, env)?.into_iter().next())
    }

    /// [`Config::tokens`] with an injected environment.
    pub(super) fn tokens_from(
        &self,
        which: Token,
        env: EnvLookup<'_>,
    ) -> Result<Vec<SecretString>, ConfigError> {
        if let Some(value) = env(which.env_var())
            && !value.trim().is_empty()
        {
            return tokens_in(&value, which)
                .map_err(|why| ConfigError::invalid(which.env_var(), why));
        }
        let file = match which {
            Token::Jobag => &self.jobag.token_file,
            Token::Eures => &self.eures.token_file,
            Token::InputApi => &self.eures.input_api_token_file,
        };
        match file.as_deref() {
            Some(path) => read_token_file(which, path),
            None => Ok(Vec::new()),
        }
    }
}

/// The tokens a file or variable holds, one a line, blank lines aside:
/// one for JobAG and EURES, one or two for the Input API, each at least
/// [`MIN_INPUT_API_TOKEN_BYTES`] long. The refusal never quotes a token.
fn tokens_in(text: &str, which: Token) -> Result<Vec<SecretString>, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let most = if which == Token::InputApi { 2 } else { 1 };
    if lines.is_empty() {
        return Err("holds no token".to_owned());
    }
    if lines.len() > most {
        return Err(if most == 1 {
            "holds more than one line: one token only".to_owned()
        } else {
            "holds more than two tokens: one a line, the current one and the one being \
             rotated in or out"
                .to_owned()
        });
    }
    if which == Token::InputApi
        && let Some(n) = lines
            .iter()
            .position(|t| t.len() < MIN_INPUT_API_TOKEN_BYTES)
    {
        let which_one = if lines.len() > 1 {
            format!("the token on line {} is", n + 1)
        } else {
            "the token is".to_owned()
        };
        return Err(format!(
            "{which_one} shorter than {MIN_INPUT_API_TOKEN_BYTES} bytes: make one with \
             `openssl rand -hex 32`"
        ));
    }
    Ok(lines.into_iter().map(SecretString::from).collect())
}

/// The tokens of a file only its owner may read or change, as ssh holds
/// a private key; an empty file is an error, since a blank bearer token
/// would only fail later and less clearly.
fn read_token_file(which: Token, path: &Path) -> Result<Vec<SecretString>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let key = which.file_key();
    // The io::Error kind only: its Display never carries file content,
    // but keep the message short and predictable.
    let unreadable = |e: std::io::Error| ConfigError::Secret {
        key,
        path: path.to_owned(),
        why: e.kind().to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mode = file.metadata().map_err(unreadable)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{} may be read or changed by group or others (mode {:04o}): make it 0600 or \
                 0400 (chmod 600)",
                path.display(),
                mode & 0o7777
            ),
        ));
    }
    let mut content = String::new();
    file.read_to_string(&mut content).map_err(unreadable)?;
    if content.trim().is_empty() {
        return Err(ConfigError::Secret {
            key,
            path: path.to_owned(),
            why: "file is empty".to_owned(),
        });
    }
    tokens_in(&content, which)
        .map_err(|why| ConfigError::invalid(key, format!("{}: {why}", path.display())))
}
