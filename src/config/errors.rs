//! [`ConfigError`], and figment's errors turned into the one line an
//! operator reads: the key, what is wrong in their words, and where the
//! value came from, never the value itself.

use std::path::PathBuf;

use super::{ENV_PREFIX, MAX_CONCURRENCY, MAX_PAGE_SIZE, MIN_AUDIT_DAYS};

/// A configuration problem, in one line that names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist.
    #[error("config file {}: not found", path.display())]
    FileNotFound { path: PathBuf },
    /// The file is not TOML. Says where and what, never the text there
    /// (the line may hold a secret).
    #[error("config file {}: line {line}, column {column}: {why}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        why: String,
    },
    /// A value is of the wrong type or out of its range.
    #[error("{0}")]
    Parse(String),
    /// A value parsed but does not fit with another one, or `RUST_LOG` is
    /// not a filter.
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
    pub(super) fn invalid(key: &'static str, why: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            why: why.into(),
        }
    }
}

/// Turns figment's error into one line naming the key and where the value
/// came from (file or environment variable). The value itself is never
/// quoted (it may be a password inside a URL), and Rust's type names are
/// replaced by what an operator should write.
pub(super) fn figment_error(err: figment::Error) -> ConfigError {
    let from_env = err
        .metadata
        .as_ref()
        .is_some_and(|md| md.name.contains(ENV_PREFIX));
    let mut path = err.path.clone();
    let why = match &err.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            // figment's path sometimes ends with the unknown field already
            // and sometimes stops at its parent.
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
        figment::error::Kind::Message(message) => without_quoted_source(message),
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

/// A TOML syntax error in `text` (the content of `path`): its line and
/// column (from 1) and the parser's reason, which describes what was
/// expected, never the text found.
pub(super) fn syntax_error(
    path: &std::path::Path,
    text: &str,
    err: &toml::de::Error,
) -> ConfigError {
    let offset = err.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::Syntax {
        path: path.to_owned(),
        line,
        column,
        why: one_line(err.message()),
    }
}

/// figment's text of a TOML syntax error quotes the line it is on: keep its
/// first line (where) and the reason, drop the quoted source.
fn without_quoted_source(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| {
            let rest = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !rest.starts_with('|') && !l.is_empty()
        })
        .collect();
    one_line(&kept.join(" "))
}

/// The known name nearest to a misspelt one, if it is near enough to be
/// the likely intent.
pub(super) fn closest(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
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

/// What a numeric key accepts, in the words its range check uses, for a
/// value that did not even parse as a number of the key's type (a negative
/// number, a decimal, text, a number too large for the key).
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
