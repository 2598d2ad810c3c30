//! Fault injection: the faults a test sets, and the random draw that
//! decides each request's fate.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use rand::RngExt;

use super::{Shared, lock};
use crate::error_body;

/// Fault injection, changeable at runtime with
/// [`EuresSim::set_faults`](super::EuresSim::set_faults). Ratios are
/// probabilities in `0.0..=1.0`, drawn independently per request in the
/// order throttle, 5xx, drop. The default injects nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Share of requests answered 500, 502 or 503 (at random) without
    /// applying the operation: transient server errors.
    pub error_5xx_ratio: f64,
    /// Share of requests answered `429 Too Many Requests` with a
    /// `Retry-After` header, without applying the operation.
    pub throttle_ratio: f64,
    /// The delay `Retry-After` announces, in seconds.
    pub retry_after_secs: u64,
    /// Send `Retry-After` as an HTTP date (now + delay) instead of seconds:
    /// clients must understand both forms.
    pub throttle_http_date: bool,
    /// Share of requests whose connection is closed without any response;
    /// half of them are applied first (the client cannot tell which, which
    /// is what makes idempotent retries necessary).
    pub drop_ratio: f64,
    /// Sleep before answering every request (after `hang`), e.g. to make
    /// requests overlap or to exercise client timeouts.
    pub latency: Duration,
    /// Answer every request with this status and nothing applied (401/403:
    /// bad credentials, 503: outage, 429: with `Retry-After`); a number that
    /// is not a status code answers 500.
    pub force_status: Option<u16>,
    /// Hold every request, unanswered, until this is turned off again.
    pub hang: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_5xx_ratio: 0.0,
            throttle_ratio: 0.0,
            retry_after_secs: 1,
            throttle_http_date: false,
            drop_ratio: 0.0,
            latency: Duration::ZERO,
            force_status: None,
            hang: false,
        }
    }
}

impl Faults {
    /// No faults at all (the default).
    pub fn none() -> Faults {
        Faults::default()
    }
}

/// What the random draws decided for one request.
pub(super) enum Fate {
    Normal,
    Throttle,
    ServerError(StatusCode),
    DropBefore,
    DropAfter,
}

pub(super) fn draw_fate(shared: &Shared, faults: &Faults) -> Fate {
    if faults.throttle_ratio <= 0.0 && faults.error_5xx_ratio <= 0.0 && faults.drop_ratio <= 0.0 {
        return Fate::Normal;
    }
    let mut rng = lock(&shared.rng);
    if faults.throttle_ratio > 0.0 && rng.random::<f64>() < faults.throttle_ratio {
        return Fate::Throttle;
    }
    if faults.error_5xx_ratio > 0.0 && rng.random::<f64>() < faults.error_5xx_ratio {
        let status = [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ][rng.random_range(0..3usize)];
        return Fate::ServerError(status);
    }
    if faults.drop_ratio > 0.0 && rng.random::<f64>() < faults.drop_ratio {
        return if rng.random::<bool>() {
            Fate::DropAfter
        } else {
            Fate::DropBefore
        };
    }
    Fate::Normal
}

pub(super) fn throttled(status: StatusCode, faults: &Faults) -> Response<Body> {
    let mut resp = error_body(status, "", "simulated throttling");
    let value = if faults.throttle_http_date {
        httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(faults.retry_after_secs))
    } else {
        faults.retry_after_secs.to_string()
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    resp
}
