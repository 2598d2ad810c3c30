//! The HTTP side: routing, the fault sequence every request goes through,
//! and the PUT, DELETE, single read and listing operations.

use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::document::check_position_opening;
use super::faults::{Fate, draw_fate, throttled};
use super::log::Tracker;
use super::quirks::{
    keep_tombstone, quirk_answer, release_hold, take_delete_hold, take_hold, tombstone,
};
use super::{Shared, Stored, lock, sha256_hex};
use crate::{
    DropConnection, HandlerResult, bearer_ok, decode_segment, empty, error_body, json_value,
    parse_limit, query_param, read_body,
};

/// Default and maximum `limit` of the listing.
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 5000;

pub(super) enum Route {
    Put(String),
    Delete(String),
    Get(String),
    List,
    MethodNotAllowed,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    if path == "/api/v1/job-vacancies" {
        return if method == Method::GET {
            Route::List
        } else {
            Route::MethodNotAllowed
        };
    }
    let Some(seg) = path.strip_prefix("/api/v1/job-vacancies/") else {
        return Route::NotFound;
    };
    if seg.is_empty() || seg.contains('/') {
        return Route::NotFound;
    }
    let Some(reference) = decode_segment(seg) else {
        return Route::NotFound;
    };
    match *method {
        Method::PUT => Route::Put(reference.into_owned()),
        Method::DELETE => Route::Delete(reference.into_owned()),
        Method::GET => Route::Get(reference.into_owned()),
        _ => Route::MethodNotAllowed,
    }
}

pub(super) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> HandlerResult {
    let (parts, body) = req.into_parts();
    let route = route(&parts.method, parts.uri.path());
    let reference = match &route {
        Route::Put(r) | Route::Delete(r) | Route::Get(r) => Some(r.clone()),
        _ => None,
    };
    let mut t = Tracker::begin(shared.clone(), parts.method.clone(), reference);

    // Read the whole body first, whatever the answer will be, so the
    // connection stays reusable and the record carries the version.
    let body = match &route {
        Route::Put(_) => match read_body(body).await {
            Ok(b) => Some(b),
            Err(e) => {
                return t.answer(error_body(StatusCode::BAD_REQUEST, "body", &e.to_string()));
            }
        },
        _ => None,
    };
    let parsed: Option<Result<Value, serde_json::Error>> =
        body.as_deref().map(serde_json::from_slice);
    let header_version = parts
        .headers
        .get("x-source-version")
        .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()));
    t.source_version = match &route {
        Route::Put(_) => parsed
            .as_ref()
            .and_then(|p| p.as_ref().ok())
            .and_then(|v| v.get("sourceVersion"))
            .and_then(Value::as_u64),
        Route::Delete(_) => header_version.flatten(),
        _ => None,
    };

    let mut faults = *shared.faults.borrow();
    if faults.hang {
        let mut rx = shared.faults.subscribe();
        // Fails only when the simulator is gone; the connection goes with it.
        if rx.wait_for(|f| !f.hang).await.is_err() {
            return Err(DropConnection);
        }
        faults = *shared.faults.borrow();
    }
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if let Some(code) = faults.force_status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let resp = if status == StatusCode::TOO_MANY_REQUESTS {
            throttled(status, &faults)
        } else if status.is_success() {
            empty(status)
        } else {
            error_body(status, "", "simulated forced status")
        };
        return t.answer(resp);
    }
    {
        let token = shared.token.read().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = token.as_deref()
            && !bearer_ok(&parts.headers, token)
        {
            let mut resp = error_body(
                StatusCode::UNAUTHORIZED,
                "Authorization",
                "bearer token required",
            );
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return t.answer(resp);
        }
    }
    let fate = draw_fate(&shared, &faults);
    match fate {
        Fate::Throttle => return t.answer(throttled(StatusCode::TOO_MANY_REQUESTS, &faults)),
        Fate::ServerError(status) => {
            return t.answer(error_body(status, "", "simulated server error"));
        }
        Fate::DropBefore => return Err(DropConnection),
        Fate::Normal | Fate::DropAfter => {}
    }
    if let Route::Put(reference) | Route::Delete(reference) = &route
        && let Some(resp) = quirk_answer(&shared, reference)
    {
        return t.answer(resp);
    }
    if let Route::Put(reference) = &route
        && let Some(hold) = take_hold(&shared, reference)
        && let Some(parsed) = parsed
    {
        // Applied after `hold` even if the client gave up meanwhile, as a
        // gateway that queued the request would.
        let applying = tokio::spawn(held_put(
            shared.clone(),
            reference.clone(),
            parsed,
            hold.after,
        ));
        if hold.accepted_at_once {
            return t.answer(empty(StatusCode::ACCEPTED));
        }
        let Ok((resp, applied)) = applying.await else {
            return Err(DropConnection);
        };
        t.applied = applied;
        return t.answer(resp);
    }

    if let Route::Delete(reference) = &route
        && let Some(Some(version)) = header_version
        && let Some(hold) = take_delete_hold(&shared, reference)
    {
        let applying = tokio::spawn(held_delete(
            shared.clone(),
            reference.clone(),
            version,
            hold,
        ));
        let Ok((resp, applied)) = applying.await else {
            return Err(DropConnection);
        };
        t.applied = applied;
        return t.answer(resp);
    }

    let (resp, applied) = match route {
        Route::Put(reference) => {
            let Some(parsed) = parsed else {
                return t.answer(error_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "",
                    "simulator: PUT body not read",
                ));
            };
            put(&shared, reference, parsed)
        }
        Route::Delete(reference) => match header_version {
            None => (
                error_body(
                    StatusCode::BAD_REQUEST,
                    "X-Source-Version",
                    "header required",
                ),
                false,
            ),
            Some(None) => (
                error_body(
                    StatusCode::BAD_REQUEST,
                    "X-Source-Version",
                    "must be an unsigned integer",
                ),
                false,
            ),
            Some(Some(version)) => delete(&shared, reference, version),
        },
        Route::Get(reference) => (get_one(&shared, &reference), false),
        Route::List => (list(&shared, parts.uri.query()), false),
        Route::MethodNotAllowed => (
            error_body(StatusCode::METHOD_NOT_ALLOWED, "", "method not allowed"),
            false,
        ),
        Route::NotFound => (
            error_body(StatusCode::NOT_FOUND, "", "no such endpoint"),
            false,
        ),
    };
    t.applied = applied;
    t.applied_at = applied.then(Instant::now);
    if matches!(fate, Fate::DropAfter) {
        return Err(DropConnection);
    }
    t.answer(resp)
}

/// A PUT a gateway held for `hold` before applying it.
async fn held_put(
    shared: Arc<Shared>,
    reference: String,
    parsed: Result<Value, serde_json::Error>,
    hold: Duration,
) -> (Response<Body>, bool) {
    tokio::time::sleep(hold).await;
    let done = put(&shared, reference.clone(), parsed);
    release_hold(&shared, reference, done.1);
    done
}

/// A DELETE a gateway held for `hold` before applying it.
async fn held_delete(
    shared: Arc<Shared>,
    reference: String,
    version: u64,
    hold: Duration,
) -> (Response<Body>, bool) {
    tokio::time::sleep(hold).await;
    let done = delete(&shared, reference.clone(), version);
    release_hold(&shared, reference, done.1);
    done
}

pub(super) fn put(
    shared: &Shared,
    reference: String,
    parsed: Result<Value, serde_json::Error>,
) -> (Response<Body>, bool) {
    let mut body = match parsed {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("not JSON: {e}");
            return (error_body(StatusCode::BAD_REQUEST, "body", &msg), false);
        }
    };
    let Some(obj) = body.as_object_mut() else {
        return (
            error_body(
                StatusCode::UNPROCESSABLE_ENTITY,
                "body",
                "must be a JSON object",
            ),
            false,
        );
    };
    let mut errors = Vec::new();
    if obj.get("reference").and_then(Value::as_str) != Some(reference.as_str()) {
        errors
            .push(json!({"field": "reference", "message": "must equal the reference in the path"}));
    }
    let source_version = obj.get("sourceVersion").and_then(Value::as_u64);
    if source_version.is_none() {
        errors.push(json!({"field": "sourceVersion", "message": "must be an unsigned integer"}));
    }
    let content = match obj.remove("content") {
        Some(Value::String(s)) => match check_position_opening(&s) {
            Ok(()) if shared.check_content_rules => conformant(s, &mut errors),
            Ok(()) => Some(s),
            Err(why) => {
                errors.push(json!({"field": "content", "message": why}));
                None
            }
        },
        Some(_) => {
            errors.push(json!({"field": "content", "message": "must be a string"}));
            None
        }
        None => {
            errors.push(json!({"field": "content", "message": "required"}));
            None
        }
    };
    let (Some(source_version), Some(content), true) = (source_version, content, errors.is_empty())
    else {
        return (
            json_value(StatusCode::UNPROCESSABLE_ENTITY, &json!({"errors": errors})),
            false,
        );
    };
    let content_sha256 = sha256_hex(&content);
    let stored = Stored {
        source_version,
        content_sha256: content_sha256.clone(),
        content,
        status: obj
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        creation_timestamp: obj
            .get("creationTimestamp")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        last_modification_timestamp: obj
            .get("lastModificationTimestamp")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        envelope: body,
    };
    let ok_body = json!({
        "reference": reference, "sourceVersion": source_version, "contentSha256": content_sha256,
    });

    let mut portal = lock(&shared.portal);
    if let Some(gone) = tombstone(shared, &reference)
        && gone >= source_version
    {
        drop(portal);
        return (conflict(gone), false);
    }
    let status = match portal.holdings.get_mut(&reference) {
        Some(held) if held.source_version > source_version => {
            let held = held.source_version;
            drop(portal);
            return (conflict(held), false);
        }
        Some(held) => {
            *held = stored;
            StatusCode::OK
        }
        None => {
            portal.holdings.insert(reference.clone(), stored);
            StatusCode::CREATED
        }
    };
    portal
        .history
        .entry(reference)
        .or_default()
        .push((Method::PUT, source_version));
    drop(portal);
    (json_value(status, &ok_body), true)
}

/// The content when it keeps every EURES content rule the project knows
/// (`crate::conformance`); else each broken rule becomes an error whose
/// `field` is the rule id.
fn conformant(content: String, errors: &mut Vec<Value>) -> Option<String> {
    let violations = crate::conformance::check(&content);
    if violations.is_empty() {
        return Some(content);
    }
    for v in violations {
        errors.push(json!({"field": v.rule, "message": v.message}));
    }
    None
}

fn conflict(held: u64) -> Response<Body> {
    json_value(
        StatusCode::CONFLICT,
        &json!({
            "errors": [{"field": "sourceVersion",
                        "message": format!("the portal holds sourceVersion {held}")}],
            "sourceVersion": held,
        }),
    )
}

/// Applies a DELETE; returns the response and whether the holdings changed.
fn delete(shared: &Shared, reference: String, version: u64) -> (Response<Body>, bool) {
    let mut portal = lock(&shared.portal);
    keep_tombstone(shared, &reference, version);
    match portal.holdings.get(&reference) {
        None => (
            error_body(StatusCode::NOT_FOUND, "reference", "not held"),
            false,
        ),
        Some(held) if held.source_version > version => {
            let held = held.source_version;
            drop(portal);
            (conflict(held), false)
        }
        Some(_) => {
            portal.holdings.remove(&reference);
            portal
                .history
                .entry(reference)
                .or_default()
                .push((Method::DELETE, version));
            (empty(StatusCode::NO_CONTENT), true)
        }
    }
}

fn list(shared: &Shared, query: Option<&str>) -> Response<Body> {
    let limit = match parse_limit(query, DEFAULT_LIMIT, MAX_LIMIT) {
        Ok(n) => n,
        Err(msg) => return error_body(StatusCode::BAD_REQUEST, "limit", &msg),
    };
    let token = query_param(query, "page_token").filter(|t| !t.is_empty());
    let (items, next) = {
        let portal = lock(&shared.portal);
        let lower = match token.as_deref() {
            Some(t) => Bound::Excluded(t),
            None => Bound::Unbounded,
        };
        let mut range = portal.holdings.range::<str, _>((lower, Bound::Unbounded));
        let mut items = Vec::with_capacity(limit.min(portal.holdings.len()));
        let mut last = None;
        for (reference, v) in range.by_ref().take(limit) {
            items.push(json!({
                "reference": reference,
                "sourceVersion": v.source_version,
                "contentSha256": v.content_sha256,
            }));
            last = Some(reference);
        }
        let next = range.next().and(last.cloned());
        (items, next)
    };
    json_value(
        StatusCode::OK,
        &json!({"items": items, "next_page_token": next}),
    )
}

/// `GET /api/v1/job-vacancies/{reference}`: what the portal holds of one
/// reference (SPEC 4.2), `404` when nothing.
fn get_one(shared: &Shared, reference: &str) -> Response<Body> {
    let portal = lock(&shared.portal);
    match portal.holdings.get(reference) {
        Some(v) => json_value(
            StatusCode::OK,
            &json!({"reference": reference, "sourceVersion": v.source_version,
                    "contentSha256": v.content_sha256}),
        ),
        None => error_body(StatusCode::NOT_FOUND, "reference", "not held"),
    }
}
