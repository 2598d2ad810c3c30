//! Classification of a push endpoint's answer (SPEC 4.2) into one
//! [`Outcome`]. Pure: no IO, no clock reads (the current time is a
//! parameter of [`parse_retry_after`]). The caller decides what to do with an
//! outcome (record, reschedule, dead-letter, pause); this module never does.
//!
//! Decisions beyond the SPEC table, so a status can neither wedge a posting
//! nor make it spin:
//!
//! - PUT, any other `2xx` (e.g. `202 Accepted`): done, the gateway took
//!   responsibility for the request.
//! - PUT, `404`, `405`, `410`, `411`, `414`, `415` and every other `4xx` not
//!   named below: rejected. The same request will get the same answer, so
//!   retrying only burns attempts; the posting goes to the dead letters,
//!   from where an operator retries it once the endpoint is fixed
//!   (`dead-letters retry --all` after a misconfigured base URL).
//! - `421 Misdirected Request` and `425 Too Early`: transient, the status
//!   itself says a retry is the fix.
//! - `407 Proxy Authentication Required`: auth; like a bad token it blocks
//!   every request, so delivery pauses instead of dead-lettering postings.
//! - `1xx`, `3xx` (the client does not follow redirects) and codes outside
//!   100..=599: transient, retried with backoff (and, for a create or update,
//!   bounded by `eures.max_attempts`).
//! - `503` with `Retry-After` stays transient (only `429` throttles all
//!   requests, as SPEC 4.2 says).
//! - DELETE: `2xx`, `404` and `410` are done (the copy is gone); `409`
//!   superseded; `401`/`403`/`407` auth; `429` throttled; everything else,
//!   `400`/`422` included, transient, because deletions never give up (SPEC
//!   4.2): they are retried with capped backoff and never dead-lettered.
//! - GET (listing): `2xx` done, `401`/`403`/`407` auth, `429` throttled,
//!   anything else transient (reconcile gives up the pass and tries later).

use std::time::{Duration, SystemTime};

/// The longest `Retry-After` honoured; a larger value is cut to it so a
/// broken header cannot stop delivery for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Longest rejection summary kept, in characters.
pub const MAX_ERRORS_LEN: usize = 500;

/// What one call to the push endpoint came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The portal holds what was sent (or, for a delete, nothing).
    Done,
    /// The portal holds a newer `sourceVersion`: not an error, the agent
    /// re-reads the source.
    Superseded,
    /// The content is refused; permanent until the posting changes or an
    /// operator retries. `errors` is one line, at most [`MAX_ERRORS_LEN`]
    /// characters. It may echo posting content: store it, never log it.
    Rejected { errors: String },
    /// Credentials refused: pause all delivery, fail readiness, probe.
    Auth,
    /// Too many requests: hold all requests for `retry_after` (backoff
    /// when the header was absent or unreadable).
    Throttled { retry_after: Option<Duration> },
    /// Worth retrying with backoff: `408`, `5xx`, timeouts, connection
    /// errors and the statuses the module doc lists. `why` is one short line
    /// without content (a status or an error kind).
    Transient { why: String },
}

impl Outcome {
    /// The metric label value (`eures_sync_deliveries_total{outcome}`).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "ok",
            Outcome::Superseded => "superseded",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Auth => "auth",
            Outcome::Throttled { .. } => "throttled",
            Outcome::Transient { .. } => "transient",
        }
    }

    /// `true` for [`Outcome::Done`].
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done)
    }

    /// A transient outcome for an IO failure (connect, timeout, reset).
    pub fn transient(why: impl Into<String>) -> Self {
        Outcome::Transient { why: why.into() }
    }
}

fn status_why(status: u16) -> String {
    format!("HTTP {status}")
}

/// Classifies the answer to `PUT /api/v1/job-vacancies/{reference}`.
/// `retry_after` is the parsed `Retry-After` header (see
/// [`parse_retry_after`]); `body` is the (bounded) response body.
pub fn classify_put(status: u16, retry_after: Option<Duration>, body: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Done,
        409 => Outcome::Superseded,
        400 | 422 => Outcome::Rejected {
            errors: summarize_errors(status, body),
        },
        413 => Outcome::Rejected {
            errors: "HTTP 413: document too large".to_owned(),
        },
        401 | 403 | 407 => Outcome::Auth,
        429 => Outcome::Throttled { retry_after },
        408 | 421 | 425 => Outcome::transient(status_why(status)),
        500..=599 => Outcome::transient(status_why(status)),
        400..=499 => Outcome::Rejected {
            errors: summarize_errors(status, body),
        },
        _ => Outcome::transient(status_why(status)),
    }
}

/// Classifies the answer to `DELETE /api/v1/job-vacancies/{reference}`.
/// Never [`Outcome::Rejected`]: deletions never give up.
pub fn classify_delete(status: u16, retry_after: Option<Duration>, _body: &str) -> Outcome {
    match status {
        200..=299 | 404 | 410 => Outcome::Done,
        409 => Outcome::Superseded,
        401 | 403 | 407 => Outcome::Auth,
        429 => Outcome::Throttled { retry_after },
        _ => Outcome::transient(status_why(status)),
    }
}

/// Classifies the answer to `GET /api/v1/job-vacancies` (the listing);
/// never [`Outcome::Rejected`] nor [`Outcome::Superseded`].
pub fn classify_get(status: u16, retry_after: Option<Duration>, _body: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Done,
        401 | 403 | 407 => Outcome::Auth,
        429 => Outcome::Throttled { retry_after },
        _ => Outcome::transient(status_why(status)),
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date. A date in
/// the past gives zero; anything above [`MAX_RETRY_AFTER`] is cut to it;
/// anything unreadable gives `None` (the caller falls back to backoff).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: delta-seconds. Too many digits for u64 is "very long".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// One line summarising a `400`/`422` body: `field: message; field: message`
/// from `{"errors": [{"field", "message"}]}`, else a top-level `message` or
/// `error` string, else the body itself; control characters flattened,
/// at most [`MAX_ERRORS_LEN`] characters. Never empty.
pub fn summarize_errors(status: u16, body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| errors_from_json(&v));
    let text = match from_json {
        Some(s) => s,
        None => {
            let body = one_line(body);
            if body.is_empty() {
                status_why(status)
            } else {
                format!("{}: {body}", status_why(status))
            }
        }
    };
    truncate_chars(&one_line(&text), MAX_ERRORS_LEN)
}

fn errors_from_json(v: &serde_json::Value) -> Option<String> {
    let str_of = |v: Option<&serde_json::Value>| -> Option<String> {
        match v? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    if let Some(list) = v.get("errors").and_then(|e| e.as_array()) {
        let parts: Vec<String> = list
            .iter()
            .filter_map(|e| {
                if let Some(s) = e.as_str() {
                    return Some(s.to_owned());
                }
                let field = str_of(e.get("field"));
                let message = str_of(e.get("message"));
                match (field, message) {
                    (Some(f), Some(m)) => Some(format!("{f}: {m}")),
                    (Some(f), None) => Some(format!("{f}: invalid")),
                    (None, Some(m)) => Some(m),
                    (None, None) => None,
                }
            })
            .collect();
        if !parts.is_empty() {
            return Some(parts.join("; "));
        }
    }
    ["message", "error", "detail", "title"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_owned))
        .filter(|s| !s.trim().is_empty())
}

/// Collapses every run of whitespace and control characters into one space.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_ERRORS_LEN * 4));
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
        if out.len() > MAX_ERRORS_LEN * 4 {
            break;
        }
    }
    out
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((cut, _)) => {
            // Keep `max` characters in all, the last one an ellipsis.
            let keep = s[..cut].char_indices().nth(max - 1).map_or(cut, |(i, _)| i);
            format!("{}…", &s[..keep])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Option<Duration> = None;

    fn rejected(o: &Outcome) -> &str {
        match o {
            Outcome::Rejected { errors } => errors,
            other => panic!("expected rejected, got {other:?}"),
        }
    }

    #[test]
    fn put_follows_the_spec_table() {
        for s in [200, 201, 204] {
            assert_eq!(classify_put(s, NONE, ""), Outcome::Done, "{s}");
        }
        assert_eq!(classify_put(409, NONE, ""), Outcome::Superseded);
        for s in [400, 422, 413] {
            assert_eq!(classify_put(s, NONE, "").label(), "rejected", "{s}");
        }
        for s in [401, 403] {
            assert_eq!(classify_put(s, NONE, ""), Outcome::Auth, "{s}");
        }
        let ra = Some(Duration::from_secs(7));
        assert_eq!(
            classify_put(429, ra, ""),
            Outcome::Throttled { retry_after: ra }
        );
        assert_eq!(
            classify_put(429, NONE, ""),
            Outcome::Throttled { retry_after: None }
        );
        for s in [408, 500, 502, 503, 504, 599] {
            assert_eq!(
                classify_put(s, NONE, "oops"),
                Outcome::transient(format!("HTTP {s}")),
                "{s}"
            );
        }
    }

    #[test]
    fn put_other_statuses_neither_wedge_nor_spin() {
        // Other 4xx: the same request gets the same answer: rejected.
        for s in [404, 405, 406, 410, 411, 412, 414, 415, 418, 451, 499] {
            assert_eq!(classify_put(s, NONE, "").label(), "rejected", "{s}");
        }
        assert_eq!(rejected(&classify_put(404, NONE, "")), "HTTP 404");
        // Statuses whose fix is a retry.
        for s in [421, 425] {
            assert_eq!(classify_put(s, NONE, "").label(), "transient", "{s}");
        }
        assert_eq!(classify_put(407, NONE, ""), Outcome::Auth);
        // Other 2xx are done; 1xx, 3xx and nonsense are transient.
        assert_eq!(classify_put(202, NONE, ""), Outcome::Done);
        for s in [0, 100, 199, 301, 302, 304, 307, 308, 600, 999, u16::MAX] {
            assert_eq!(classify_put(s, NONE, "").label(), "transient", "{s}");
        }
    }

    #[test]
    fn delete_follows_the_spec_table_and_never_gives_up() {
        for s in [200, 202, 204, 404, 410] {
            assert_eq!(classify_delete(s, NONE, ""), Outcome::Done, "{s}");
        }
        assert_eq!(classify_delete(409, NONE, ""), Outcome::Superseded);
        for s in [401, 403, 407] {
            assert_eq!(classify_delete(s, NONE, ""), Outcome::Auth, "{s}");
        }
        let ra = Some(Duration::from_secs(2));
        assert_eq!(
            classify_delete(429, ra, ""),
            Outcome::Throttled { retry_after: ra }
        );
        for s in 0..1000u16 {
            assert_ne!(classify_delete(s, NONE, "{}").label(), "rejected", "{s}");
        }
        for s in [400, 405, 408, 413, 422, 500, 503, 301] {
            assert_eq!(classify_delete(s, NONE, "").label(), "transient", "{s}");
        }
    }

    #[test]
    fn get_listing_statuses() {
        assert_eq!(classify_get(200, NONE, ""), Outcome::Done);
        assert_eq!(classify_get(401, NONE, ""), Outcome::Auth);
        assert_eq!(classify_get(403, NONE, ""), Outcome::Auth);
        assert_eq!(classify_get(429, NONE, "").label(), "throttled");
        for s in [400, 404, 500, 503] {
            assert_eq!(classify_get(s, NONE, "").label(), "transient", "{s}");
        }
    }

    #[test]
    fn labels_are_the_metric_values() {
        let all = [
            (Outcome::Done, "ok"),
            (Outcome::Superseded, "superseded"),
            (
                Outcome::Rejected {
                    errors: String::new(),
                },
                "rejected",
            ),
            (Outcome::Auth, "auth"),
            (Outcome::Throttled { retry_after: None }, "throttled"),
            (Outcome::transient("x"), "transient"),
        ];
        for (o, label) in all {
            assert_eq!(o.label(), label);
        }
    }

    #[test]
    fn rejection_errors_are_summarised_in_one_line() {
        let body = r#"{"errors": [
            {"field": "content", "message": "not a PositionOpening"},
            {"field": "sourceVersion", "message": "must be\npositive"}]}"#;
        assert_eq!(
            rejected(&classify_put(422, NONE, body)),
            "content: not a PositionOpening; sourceVersion: must be positive"
        );
        let body = r#"{"errors": [{"message": "bad"}, {"field": "x"}, "plain"]}"#;
        assert_eq!(
            rejected(&classify_put(400, NONE, body)),
            "bad; x: invalid; plain"
        );
        let body = r#"{"message": "schema violation"}"#;
        assert_eq!(rejected(&classify_put(400, NONE, body)), "schema violation");
    }

    #[test]
    fn rejection_tolerates_non_json_and_empty_bodies() {
        assert_eq!(
            rejected(&classify_put(400, NONE, "<html>\n<b>Bad</b>\r\n</html>")),
            "HTTP 400: <html> <b>Bad</b> </html>"
        );
        assert_eq!(rejected(&classify_put(422, NONE, "")), "HTTP 422");
        assert_eq!(rejected(&classify_put(422, NONE, "{}")), "HTTP 422: {}");
        assert_eq!(
            rejected(&classify_put(422, NONE, r#"{"errors": []}"#)),
            r#"HTTP 422: {"errors": []}"#
        );
        assert!(rejected(&classify_put(413, NONE, "")).starts_with("HTTP 413"));
    }

    #[test]
    fn rejection_summary_is_capped_at_500_chars() {
        let many: Vec<String> = (0..200)
            .map(|i| format!(r#"{{"field":"f{i}","message":"ææææææææ"}}"#))
            .collect();
        let body = format!(r#"{{"errors":[{}]}}"#, many.join(","));
        let s = rejected(&classify_put(422, NONE, &body)).to_owned();
        assert_eq!(s.chars().count(), MAX_ERRORS_LEN);
        assert!(s.ends_with('…'));
        let raw = "é".repeat(10_000);
        let s = rejected(&classify_put(400, NONE, &raw)).to_owned();
        assert_eq!(s.chars().count(), MAX_ERRORS_LEN);
        let short = summarize_errors(400, &"x".repeat(MAX_ERRORS_LEN - 10));
        assert_eq!(short.chars().count(), MAX_ERRORS_LEN, "{short}");
        assert!(!short.ends_with('…'));
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // Past dates: go now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // Far future: capped.
        assert_eq!(
            parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        // The obsolete formats httpdate reads are accepted too.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn retry_after_garbage_is_none() {
        let now = SystemTime::now();
        for v in [
            "",
            "  ",
            "-5",
            "1.5",
            "soon",
            "5s",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now), None, "{v:?}");
        }
    }
}
