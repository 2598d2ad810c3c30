//! The rules single values are held to. Each check answers why a value is
//! refused, in the words the error line gives after the key; `parse` turns
//! that into an error at the key as the value is read.

use super::errors::{ConfigError, closest};
use crate::loopback::is_loopback_url_host;
use crate::store::DatabaseUrl;

/// `database.url` chooses the store by its scheme, read as the store
/// reads it. Whether a password in it is allowed depends on where it was
/// written: see `load`.
pub(super) fn check_database_url(url: &str) -> Result<(), String> {
    DatabaseUrl::parse(url)
        .map(|_| ())
        .map_err(|_| format!("must start with {}", DatabaseUrl::SCHEMES))
}

/// A base URL: http or https with a host, no user or password in it, and
/// plain http only to this machine.
pub(super) fn check_http_url(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value.trim()).map_err(|_| "not a URL".to_owned())?;
    check_no_userinfo(&url)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("not a URL (no host)".to_owned());
    }
    if url.scheme() == "http" && !url.host().is_some_and(|h| is_loopback_url_host(&h)) {
        return Err(PLAIN_HTTP_REFUSED.to_owned());
    }
    Ok(())
}

/// A user or password in a URL goes wherever the URL goes: every error
/// and log line that names the endpoint, and the documents that carry a
/// template built from it.
pub(crate) fn check_no_userinfo(url: &url::Url) -> Result<(), String> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(USERINFO_REFUSED.to_owned());
    }
    Ok(())
}

/// Why a URL with `user@` or `user:password@` is refused.
pub const USERINFO_REFUSED: &str =
    "must not hold a user or password (`user:password@`); give a token in the token file";

/// Why an `http://` base URL to another machine is refused: tokens and
/// postings would cross the network in clear.
pub const PLAIN_HTTP_REFUSED: &str =
    "http:// only to a loopback host (localhost, 127.0.0.1, ::1); use https://";

/// A template must name the posting (`{id}`) and give an http(s) URL with a
/// host once the id is in: a template that fails sends every posting-only
/// copy to `invalid: application`.
pub(super) fn check_posting_url_template(template: &str) -> Result<(), String> {
    if !template.contains("{id}") {
        return Err("must contain {id}".to_owned());
    }
    let url = url::Url::parse(&template.replace("{id}", "id")).map_err(|_| "not a URL")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user or password (`user:password@`)".to_owned());
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("must be an http or https URL".to_owned());
    }
    Ok(())
}

/// The levels a `log.level` directive may name.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// `log.level` is a `tracing` filter: comma-separated directives, each a
/// level or `target=level`. A bare word that is not a level parses as a
/// target to log at every level, which is how `inof` would silence the
/// worker: refuse it, so a typo never turns the logs off.
pub(super) fn check_log_filter(filter: &str) -> Result<(), String> {
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
