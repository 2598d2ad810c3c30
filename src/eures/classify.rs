//! Classification of a push endpoint's answer (SPEC 4.2) into one
//! [`Outcome`], the domain's type (`domain/src/ledger/outcome.rs`), which
//! the planner takes as it is. Pure: no IO, no clock reads (the current
//! time is a parameter of [`parse_retry_after`]). What an outcome does
//! (record, reschedule, dead-letter, pause) is the domain's decision;
//! this module only maps statuses.
//!
//! Decisions beyond the SPEC table, so a status can neither wedge a posting
//! nor make it spin:
//!
//! - PUT, `202 Accepted`: accepted for later (SPEC 4.2), so in doubt: the
//!   gateway may apply it after a deletion that follows, which is therefore
//!   verified (SPEC 3.8). Any other `2xx`: done.
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

pub use crate::domain::ledger::Outcome;

/// The longest `Retry-After` honoured; a larger value is cut to it so a
/// broken header cannot stop delivery for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Longest rejection summary kept, in characters.
pub const MAX_ERRORS_LEN: usize = 500;

fn status_why(status: u16) -> String {
    format!("HTTP {status}")
}

/// Classifies the answer to `PUT /api/v1/job-vacancies/{reference}`.
/// `retry_after` is the parsed `Retry-After` header (see
/// [`parse_retry_after`]); `body` is the (bounded) response body.
pub fn classify_put(status: u16, retry_after: Option<Duration>, body: &str) -> Outcome {
    match status {
        202 => Outcome::Accepted,
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

/// One line summarising a `400`/`422` body: the status and the field names
/// EURES gave (`HTTP 422: fields content, sourceVersion` from `{"errors":
/// [{"field", "message"}]}`), never its messages or the body, which may echo
/// the posting's content (SPEC 6). At most [`MAX_ERRORS_LEN`] characters.
pub fn summarize_errors(status: u16, body: &str) -> String {
    let fields = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .map(|v| field_names(&v))
        .unwrap_or_default();
    let text = if fields.is_empty() {
        status_why(status)
    } else {
        format!("{}: fields {}", status_why(status), fields.join(", "))
    };
    truncate_chars(&text, MAX_ERRORS_LEN)
}

/// The `field` of each entry of `errors`, kept only when it looks like a
/// field name (a path of letters, digits and `._-/[]`, at most 64
/// characters): anything else could be content.
fn field_names(v: &serde_json::Value) -> Vec<String> {
    let looks_like_a_name = |f: &str| {
        !f.is_empty()
            && f.len() <= 64
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/[]".contains(c))
    };
    let mut names: Vec<String> = Vec::new();
    for entry in v
        .get("errors")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(field) = entry.get("field").and_then(|f| f.as_str())
            && looks_like_a_name(field)
            && !names.iter().any(|n| n == field)
        {
            names.push(field.to_owned());
        }
    }
    names
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
        // 202 is in doubt, other 2xx are done; 1xx, 3xx and nonsense are
        // transient.
        assert_eq!(classify_put(202, NONE, ""), Outcome::Accepted);
        assert_eq!(classify_put(202, NONE, "").label(), "ok");
        for s in [200, 201, 203, 204, 206] {
            assert_eq!(classify_put(s, NONE, ""), Outcome::Done, "{s}");
        }
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
    fn a_rejection_keeps_the_status_and_field_names_only() {
        let body = r#"{"errors": [
            {"field": "content", "message": "Karoline Birkedal is not a PositionOpening"},
            {"field": "sourceVersion", "message": "must be\npositive"},
            {"field": "content", "message": "twice"}]}"#;
        assert_eq!(
            rejected(&classify_put(422, NONE, body)),
            "HTTP 422: fields content, sourceVersion"
        );
        let body = r#"{"errors": [{"message": "bad"}, {"field": "x"}, "plain",
            {"field": "karoline@example.dk is wrong"}]}"#;
        assert_eq!(
            rejected(&classify_put(400, NONE, body)),
            "HTTP 400: fields x"
        );
        let body = r#"{"message": "Karoline Birkedal: schema violation"}"#;
        assert_eq!(rejected(&classify_put(400, NONE, body)), "HTTP 400");
    }

    #[test]
    fn rejection_tolerates_non_json_and_empty_bodies() {
        assert_eq!(
            rejected(&classify_put(400, NONE, "<html>\n<b>Bad</b>\r\n</html>")),
            "HTTP 400"
        );
        assert_eq!(rejected(&classify_put(422, NONE, "")), "HTTP 422");
        assert_eq!(rejected(&classify_put(422, NONE, "{}")), "HTTP 422");
        assert_eq!(
            rejected(&classify_put(422, NONE, r#"{"errors": []}"#)),
            "HTTP 422"
        );
        assert!(rejected(&classify_put(413, NONE, "")).starts_with("HTTP 413"));
    }

    #[test]
    fn rejection_summary_is_capped_at_500_chars() {
        let many: Vec<String> = (0..200)
            .map(|i| format!(r#"{{"field":"field_number_{i}","message":"ææææææææ"}}"#))
            .collect();
        let body = format!(r#"{{"errors":[{}]}}"#, many.join(","));
        let s = rejected(&classify_put(422, NONE, &body)).to_owned();
        assert_eq!(s.chars().count(), MAX_ERRORS_LEN);
        assert!(s.ends_with('…'));
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
