//! EURES push-gateway simulator: the server side of SPEC 4.2.
//!
//! Owns what the portal holds (reference → [`Vacancy`]), the history of
//! applied operations per reference, a log of every request with timings,
//! and the fault injector. Serves:
//!
//! - `PUT /api/v1/job-vacancies/{reference}`: validates the envelope and the
//!   `PositionOpening` document (well-formed XML, root `PositionOpening` in
//!   the HR-XML 3 namespace with `majorVersionID="3"` `minorVersionID="2"`);
//!   `422` when invalid, `400` when the body is not JSON, `409` when the
//!   portal holds a newer `sourceVersion`, else `201` (new) or `200`
//!   (replaced, also for the same version: idempotent retries).
//! - `DELETE /api/v1/job-vacancies/{reference}` with `X-Source-Version`:
//!   `400` without a valid header, `404` when absent, `409` when the portal
//!   holds a newer version, else `204`.
//! - `GET /api/v1/job-vacancies?page_token={t}&limit={n}`: the holdings,
//!   ordered by reference; the page token is the last reference.
//!
//! Faults ([`Faults`]) apply to every endpoint and can change at any time;
//! random ones draw from one RNG, seeded through [`EuresOptions::seed`] for
//! reproducible runs. Each request is processed in this order: read the
//! body, `hang`, `latency`, `force_status`, bearer auth, a failing
//! reference ([`EuresSim::fail_reference`]), throttle (429), random 5xx,
//! random drop (before or after applying), then the operation.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{
    DropConnection, HandlerResult, Server, bearer_ok, decode_segment, default_listen, empty,
    error_body, json_value, parse_limit, query_param, read_body,
};

/// Default and maximum `limit` of the listing.
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 5000;

/// The namespace the `PositionOpening` root must be in (SPEC 5).
pub const HR_XML_NAMESPACE: &str = "http://www.hr-xml.org/3";

/// How to start an [`EuresSim`].
#[derive(Debug, Clone)]
pub struct EuresOptions {
    /// Where to listen; `127.0.0.1:0` (an ephemeral port) by default.
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Faults active from the start (none by default).
    pub faults: Faults,
    /// Seed of the fault RNG, for reproducible runs; random when `None`.
    pub seed: Option<u64>,
    /// Whether to keep a [`RequestRecord`] per request (on by default);
    /// long benchmarks may turn it off to keep memory flat.
    pub record_requests: bool,
    /// Whether every PUT's document is checked against the EURES content
    /// rules (`super::conformance`; on by default). The benchmark turns it
    /// off: it measures the agent, and the checks cost the simulator more
    /// CPU per PUT than the whole bare client loop.
    pub check_content_rules: bool,
}

impl Default for EuresOptions {
    fn default() -> Self {
        EuresOptions {
            listen: default_listen(),
            token: None,
            faults: Faults::default(),
            seed: None,
            record_requests: true,
            check_content_rules: true,
        }
    }
}

/// Fault injection, changeable at runtime with [`EuresSim::set_faults`].
/// Ratios are probabilities in `0.0..=1.0`, drawn independently per request
/// in the order throttle, 5xx, drop. The default injects nothing.
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

/// One vacancy the portal holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Vacancy {
    /// The JobAG version the copy was made from; guards against regressions
    /// (409 for anything older).
    pub source_version: u64,
    /// The `PositionOpening` document exactly as received.
    pub content: String,
    /// Lowercase hex SHA-256 of `content`, as the listing reports it.
    pub content_sha256: String,
    /// The envelope's `status` (`ACTIVE` normally); empty when absent.
    pub status: String,
    /// The envelope's `creationTimestamp` (epoch ms); 0 when absent.
    pub creation_timestamp: i64,
    /// The envelope's `lastModificationTimestamp` (epoch ms); 0 when absent.
    pub last_modification_timestamp: i64,
    /// The whole PUT body, for assertions on any envelope field.
    pub body: Value,
}

/// One request the simulator received, recorded when it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: Method,
    /// The `{reference}` of a PUT or DELETE; `None` for the listing and for
    /// requests that did not route.
    pub reference: Option<String>,
    /// The body's `sourceVersion` (PUT) or the `X-Source-Version` header
    /// (DELETE), when readable.
    pub source_version: Option<u64>,
    /// The status answered; 0 when no response was sent (a simulated drop,
    /// or the client gave up while the request was held).
    pub status: u16,
    /// Whether the request changed the holdings (true for a drop after
    /// applying, even though the client saw no answer).
    pub applied: bool,
    /// When the simulator started handling the request.
    pub started: Instant,
    /// When it answered (or dropped / abandoned) it.
    pub finished: Instant,
    /// When the operation changed the holdings; `None` when it did not.
    /// Applies of one reference are ordered by it (the request history's
    /// judge reads the order EURES saw, not the order answers came back).
    pub applied_at: Option<Instant>,
    /// Requests for the same reference in flight when this one arrived,
    /// itself included: above 1 means two requests worked on one posting at
    /// once.
    pub in_flight: u32,
}

/// A running EURES simulator. Stops on [`EuresSim::shutdown`] or drop.
pub struct EuresSim {
    /// The HTTP server; dropping it stops the accept loop.
    server: Server,
    /// State shared with the request handlers.
    shared: Arc<Shared>,
}

/// State shared between the control API and the HTTP handlers.
struct Shared {
    /// Holdings and history, changed together under one lock.
    portal: Mutex<Portal>,
    /// Request log and in-flight tracking, under its own lock so recording
    /// never waits for a holdings operation.
    log: Mutex<RequestLog>,
    /// Current faults; a watch so hanging requests wake when `hang` clears.
    faults: watch::Sender<Faults>,
    /// The fault RNG (seeded for reproducibility).
    rng: Mutex<StdRng>,
    /// The bearer token requests must carry, when set.
    token: RwLock<Option<String>>,
    /// Whether to append [`RequestRecord`]s.
    record_requests: AtomicBool,
    /// See [`EuresOptions::check_content_rules`].
    check_content_rules: bool,
    /// Per-reference behaviours of real gateways (see [`Quirks`]).
    quirks: Mutex<Quirks>,
}

/// What the portal holds.
#[derive(Default)]
struct Portal {
    /// Holdings by reference; a BTreeMap so listing pages are stable.
    holdings: BTreeMap<String, Stored>,
    /// Successfully applied operations per reference, in order.
    history: HashMap<String, Vec<(Method, u64)>>,
}

/// A held vacancy; the envelope is kept without `content` so the document
/// is stored once (the public [`Vacancy`] puts it back).
struct Stored {
    source_version: u64,
    content: String,
    content_sha256: String,
    status: String,
    creation_timestamp: i64,
    last_modification_timestamp: i64,
    /// The PUT body minus its `content` field.
    envelope: Value,
}

impl Stored {
    fn to_vacancy(&self) -> Vacancy {
        let mut body = self.envelope.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.insert("content".into(), Value::String(self.content.clone()));
        }
        Vacancy {
            source_version: self.source_version,
            content: self.content.clone(),
            content_sha256: self.content_sha256.clone(),
            status: self.status.clone(),
            creation_timestamp: self.creation_timestamp,
            last_modification_timestamp: self.last_modification_timestamp,
            body,
        }
    }
}

/// Requests seen, and which references have one in flight.
#[derive(Default)]
struct RequestLog {
    /// Finished requests, in finishing order.
    records: Vec<RequestRecord>,
    /// Requests in flight per reference (entries removed at zero).
    in_flight: HashMap<String, u32>,
    /// Requests that started while another one for the same reference was
    /// in flight.
    overlaps: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl EuresSim {
    /// Binds `opts.listen` and starts serving empty holdings.
    pub async fn start(opts: EuresOptions) -> io::Result<EuresSim> {
        let rng = match opts.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng::<StdRng>(),
        };
        let shared = Arc::new(Shared {
            portal: Mutex::new(Portal::default()),
            log: Mutex::new(RequestLog::default()),
            faults: watch::Sender::new(opts.faults),
            rng: Mutex::new(rng),
            token: RwLock::new(opts.token),
            record_requests: AtomicBool::new(opts.record_requests),
            check_content_rules: opts.check_content_rules,
            quirks: Mutex::new(Quirks::default()),
        });
        let handler_state = shared.clone();
        let server =
            Server::start(opts.listen, move |req| handle(handler_state.clone(), req)).await?;
        Ok(EuresSim { server, shared })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Stops serving: the listener closes and open connections (held ones
    /// included) are dropped.
    pub fn shutdown(&self) {
        self.server.stop();
    }

    /// Requires `Authorization: Bearer <token>` on every request (401
    /// otherwise), or no authentication with `None`.
    pub fn set_token(&self, token: Option<String>) {
        *self.shared.token.write().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// Replaces the active faults; requests already held by `hang` resume
    /// when the new value has `hang == false`.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.send_replace(faults);
    }

    /// The active faults.
    pub fn faults(&self) -> Faults {
        *self.shared.faults.borrow()
    }

    /// Turns request recording on or off (records kept so far stay).
    pub fn set_record_requests(&self, on: bool) {
        self.shared.record_requests.store(on, Ordering::Relaxed);
    }

    /// Every finished request so far, in finishing order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).records.clone()
    }

    /// Forgets the recorded requests and resets [`EuresSim::overlaps`].
    pub fn clear_requests(&self) {
        let mut log = lock(&self.shared.log);
        log.records.clear();
        log.overlaps = 0;
    }

    /// Requests that started while another request for the same reference
    /// was in flight (two overlapping requests count 1). Zero proves that no
    /// reference was ever worked on by two requests at once.
    pub fn overlaps(&self) -> usize {
        lock(&self.shared.log).overlaps
    }

    /// A snapshot of everything the portal holds.
    pub fn holdings(&self) -> BTreeMap<String, Vacancy> {
        lock(&self.shared.portal)
            .holdings
            .iter()
            .map(|(k, v)| (k.clone(), v.to_vacancy()))
            .collect()
    }

    /// The vacancy held under `reference`.
    pub fn get(&self, reference: &str) -> Option<Vacancy> {
        lock(&self.shared.portal)
            .holdings
            .get(reference)
            .map(Stored::to_vacancy)
    }

    /// Number of vacancies held.
    pub fn len(&self) -> usize {
        lock(&self.shared.portal).holdings.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        lock(&self.shared.portal).holdings.is_empty()
    }

    /// Operations applied over HTTP for `reference`, in order: `(PUT,
    /// sourceVersion)` for each stored PUT, `(DELETE, X-Source-Version)` for
    /// each removal. Tamper methods do not appear here.
    pub fn history(&self, reference: &str) -> Vec<(Method, u64)> {
        lock(&self.shared.portal)
            .history
            .get(reference)
            .cloned()
            .unwrap_or_default()
    }

    /// Drift for reconcile tests: replaces the content (and its hash) of a
    /// held vacancy, keeping its version. Returns false when not held.
    pub fn tamper_content(&self, reference: &str, new_content: impl Into<String>) -> bool {
        let mut portal = lock(&self.shared.portal);
        let Some(stored) = portal.holdings.get_mut(reference) else {
            return false;
        };
        stored.content = new_content.into();
        stored.content_sha256 = sha256_hex(&stored.content);
        true
    }

    /// Drift for reconcile tests: makes the portal hold a vacancy nobody
    /// sent (replacing any held one), with an `ACTIVE` envelope stamped now.
    pub fn insert_orphan(&self, reference: &str, source_version: u64, content: impl Into<String>) {
        let content = content.into();
        let now = now_ms();
        let stored = Stored {
            source_version,
            content_sha256: sha256_hex(&content),
            content,
            status: "ACTIVE".into(),
            creation_timestamp: now,
            last_modification_timestamp: now,
            envelope: json!({
                "reference": reference, "source": "JobAG", "status": "ACTIVE",
                "sourceVersion": source_version, "contentFormatVersion": "1.3",
                "creationTimestamp": now, "lastModificationTimestamp": now,
            }),
        };
        lock(&self.shared.portal)
            .holdings
            .insert(reference.to_owned(), stored);
    }

    /// Drift for reconcile tests: silently drops a held vacancy.
    pub fn remove(&self, reference: &str) -> Option<Vacancy> {
        lock(&self.shared.portal)
            .holdings
            .remove(reference)
            .map(|s| s.to_vacancy())
    }
}

/// The request history, as the judge of the test suite reads it: every
/// reference's requests with their arrival, apply and answer times.
impl EuresSim {
    /// Requests being handled right now (held, slowed, or between arrival
    /// and answer); 0 when the portal is quiet.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.log)
            .in_flight
            .values()
            .map(|n| *n as usize)
            .sum()
    }

    /// Every finished request that named a reference, grouped by reference,
    /// each group in arrival order.
    pub fn request_histories(&self) -> BTreeMap<String, Vec<RequestRecord>> {
        let mut out: BTreeMap<String, Vec<RequestRecord>> = BTreeMap::new();
        for record in lock(&self.shared.log).records.iter() {
            if let Some(reference) = &record.reference {
                out.entry(reference.clone())
                    .or_default()
                    .push(record.clone());
            }
        }
        for requests in out.values_mut() {
            requests.sort_by_key(|r| r.started);
        }
        out
    }
}

enum Route {
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

/// Tracks one request from start to finish: counts it in flight for its
/// reference and records it when dropped, so a request abandoned mid-way
/// (client gone, simulated drop, shutdown) is still accounted for.
struct Tracker {
    shared: Arc<Shared>,
    method: Method,
    reference: Option<String>,
    source_version: Option<u64>,
    status: u16,
    applied: bool,
    started: Instant,
    applied_at: Option<Instant>,
    in_flight: u32,
}

impl Tracker {
    fn begin(shared: Arc<Shared>, method: Method, reference: Option<String>) -> Tracker {
        let started = Instant::now();
        let mut in_flight = 0;
        if let Some(r) = &reference {
            let mut log = lock(&shared.log);
            let n = log.in_flight.entry(r.clone()).or_insert(0);
            let overlapping = *n > 0;
            *n += 1;
            in_flight = *n;
            if overlapping {
                log.overlaps += 1;
            }
        }
        Tracker {
            shared,
            method,
            reference,
            source_version: None,
            status: 0,
            applied: false,
            started,
            applied_at: None,
            in_flight,
        }
    }

    /// Notes the status of `resp` and passes it on.
    fn answer(&mut self, resp: Response<Body>) -> HandlerResult {
        self.status = resp.status().as_u16();
        Ok(resp)
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let finished = Instant::now();
        let mut log = lock(&self.shared.log);
        if let Some(r) = &self.reference
            && let Some(n) = log.in_flight.get_mut(r)
        {
            *n -= 1;
            if *n == 0 {
                log.in_flight.remove(r);
            }
        }
        if self.shared.record_requests.load(Ordering::Relaxed) {
            let record = RequestRecord {
                method: self.method.clone(),
                reference: self.reference.take(),
                source_version: self.source_version,
                status: self.status,
                applied: self.applied,
                started: self.started,
                finished,
                applied_at: self.applied_at,
                in_flight: self.in_flight,
            };
            log.records.push(record);
        }
    }
}

/// What the random draws decided for one request.
enum Fate {
    Normal,
    Throttle,
    ServerError(StatusCode),
    DropBefore,
    DropAfter,
}

fn draw_fate(shared: &Shared, faults: &Faults) -> Fate {
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

fn throttled(status: StatusCode, faults: &Faults) -> Response<Body> {
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

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> HandlerResult {
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
    if let Some(resp) = quirk_answer(&shared, &route) {
        return t.answer(resp);
    }
    if let Route::Put(reference) = &route
        && let Some(hold) = take_hold(&shared, reference)
        && let Some(parsed) = parsed
    {
        // Applied after `hold` even if the client gave up meanwhile, as a
        // gateway that queued the request would.
        let applying = tokio::spawn(held_put(shared.clone(), reference.clone(), parsed, hold));
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

/// Applies a PUT; returns the response and whether the holdings changed.
fn put(
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
/// (`super::conformance`); else each broken rule becomes an error whose
/// `field` is the rule id.
fn conformant(content: String, errors: &mut Vec<Value>) -> Option<String> {
    let violations = super::conformance::check(&content);
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

/// Whether `c` may appear in an XML 1.0 document.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Checks that `xml` is a well-formed, namespace-well-formed document whose
/// root is an HR-XML 3.2 `PositionOpening`. Reads every event, so a defect
/// anywhere in the document is found. The error says what is wrong.
pub fn check_position_opening(xml: &str) -> Result<(), String> {
    if let Some((at, c)) = xml.char_indices().find(|&(_, c)| !xml_char(c)) {
        return Err(format!(
            "character U+{:04X} at byte {at} is not allowed in XML 1.0",
            c as u32
        ));
    }
    let mut reader = NsReader::from_str(xml);
    let mut depth = 0usize;
    let mut root_seen = false;
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok(step) => step,
            Err(e) => {
                let at = reader.error_position();
                return Err(format!("not well-formed XML at byte {at}: {e}"));
            }
        };
        if let ResolveResult::Unknown(prefix) = &ns {
            return Err(format!("undeclared namespace prefix {prefix:?}"));
        }
        let ns_is_hr = matches!(&ns, ResolveResult::Bound(n) if n.0 == HR_XML_NAMESPACE);
        match event {
            Event::Start(e) => {
                open_element(&e, depth, &mut root_seen, ns_is_hr)?;
                depth += 1;
            }
            Event::Empty(e) => open_element(&e, depth, &mut root_seen, ns_is_hr)?,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) => {
                if depth == 0 && !t.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
                    return Err("text outside the root element".into());
                }
            }
            Event::CData(_) if depth == 0 => return Err("CDATA outside the root element".into()),
            Event::GeneralRef(r) => {
                if depth == 0 {
                    return Err("reference outside the root element".into());
                }
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if xml_char(c) => {}
                        _ => return Err(format!("invalid character reference &{};", &*r)),
                    }
                } else {
                    let name: &str = &r;
                    if !matches!(name, "amp" | "lt" | "gt" | "quot" | "apos") {
                        return Err(format!("undefined entity &{name};"));
                    }
                }
            }
            Event::Eof => break,
            Event::CData(_)
            | Event::Comment(_)
            | Event::Decl(_)
            | Event::PI(_)
            | Event::DocType(_) => {}
        }
    }
    if !root_seen {
        return Err("no root element".into());
    }
    if depth != 0 {
        return Err(format!("{depth} element(s) not closed at end of document"));
    }
    Ok(())
}

/// Checks an opening (or empty) element; the first one is the root.
fn open_element(
    e: &BytesStart<'_>,
    depth: usize,
    root_seen: &mut bool,
    ns_is_hr: bool,
) -> Result<(), String> {
    check_attributes(e)?;
    if depth == 0 {
        if *root_seen {
            return Err("more than one root element".into());
        }
        *root_seen = true;
        check_root(e, ns_is_hr)?;
    }
    Ok(())
}

fn check_attributes(e: &BytesStart<'_>) -> Result<(), String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("malformed attribute: {e}"))?;
        attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?;
    }
    Ok(())
}

fn check_root(e: &BytesStart<'_>, ns_is_hr: bool) -> Result<(), String> {
    let local = e.local_name();
    if local.as_ref() != "PositionOpening" {
        return Err(format!(
            "root element is {:?}, expected PositionOpening",
            e.name().as_ref()
        ));
    }
    if !ns_is_hr {
        return Err(format!(
            "PositionOpening must be in namespace {HR_XML_NAMESPACE}"
        ));
    }
    for (name, want) in [("majorVersionID", "3"), ("minorVersionID", "2")] {
        let value = e
            .try_get_attribute(name)
            .map_err(|err| format!("malformed attribute: {err}"))?
            .map(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map(|v| v.into_owned())
            });
        match value {
            None => return Err(format!("PositionOpening lacks {name}=\"{want}\"")),
            Some(Ok(v)) if v == want => {}
            Some(Ok(v)) => {
                return Err(format!(
                    "PositionOpening has {name}=\"{v}\", expected \"{want}\""
                ));
            }
            Some(Err(err)) => return Err(format!("bad attribute value: {err}")),
        }
    }
    Ok(())
}

// --- Per-reference behaviours of real gateways: a document the portal
// keeps failing on while every other request passes. ---

/// What a gateway does to some references only, and what it remembers
/// of deleted ones.
#[derive(Default)]
struct Quirks {
    /// References whose PUT and DELETE are answered with this status,
    /// nothing applied (a document that breaks the portal).
    failing: HashMap<String, u16>,
    /// A gateway that keeps no tombstones: a late PUT after a DELETE
    /// creates the copy again.
    no_tombstones: bool,
    /// The highest `X-Source-Version` each reference was deleted with: a
    /// PUT at or below it is answered `409` (SPEC 4.2).
    tombstones: HashMap<String, u64>,
    /// The next PUT of each reference is held this long before it is
    /// applied, answered or not.
    holds: HashMap<String, Duration>,
    /// References whose held PUT is waiting now.
    holding: HashMap<String, u32>,
    /// When the last held PUT of each reference was applied.
    held_applied: HashMap<String, Instant>,
}

impl EuresSim {
    /// Answers every PUT and DELETE of `reference` with `status` (nothing
    /// applied) while every other request is served; `None` ends it.
    pub fn fail_reference(&self, reference: &str, status: Option<u16>) {
        let mut quirks = lock(&self.shared.quirks);
        match status {
            Some(s) => quirks.failing.insert(reference.to_owned(), s),
            None => quirks.failing.remove(reference),
        };
    }
}

impl EuresSim {
    /// Turns tombstones off (a gateway that keeps none, so a late PUT of
    /// an older version after a DELETE recreates the copy) or on again.
    pub fn set_tombstones(&self, keep: bool) {
        lock(&self.shared.quirks).no_tombstones = !keep;
    }

    /// Holds the next PUT of `reference` for `hold` before applying it,
    /// whether or not the client is still waiting for the answer.
    pub fn hold_next_put(&self, reference: &str, hold: Duration) {
        lock(&self.shared.quirks)
            .holds
            .insert(reference.to_owned(), hold);
    }

    /// Whether a held PUT of `reference` is waiting now.
    pub fn is_holding(&self, reference: &str) -> bool {
        lock(&self.shared.quirks).holding.contains_key(reference)
    }

    /// When the last held PUT of `reference` was applied.
    pub fn held_put_applied(&self, reference: &str) -> Option<Instant> {
        lock(&self.shared.quirks)
            .held_applied
            .get(reference)
            .copied()
    }
}

fn tombstone(shared: &Shared, reference: &str) -> Option<u64> {
    let quirks = lock(&shared.quirks);
    if quirks.no_tombstones {
        return None;
    }
    quirks.tombstones.get(reference).copied()
}

fn keep_tombstone(shared: &Shared, reference: &str, version: u64) {
    let mut quirks = lock(&shared.quirks);
    let v = quirks.tombstones.entry(reference.to_owned()).or_insert(0);
    *v = (*v).max(version);
}

/// The hold set for the next PUT of `reference`, taken (one PUT only).
fn take_hold(shared: &Shared, reference: &str) -> Option<Duration> {
    let mut quirks = lock(&shared.quirks);
    let hold = quirks.holds.remove(reference)?;
    *quirks.holding.entry(reference.to_owned()).or_insert(0) += 1;
    Some(hold)
}

async fn held_put(
    shared: Arc<Shared>,
    reference: String,
    parsed: Result<Value, serde_json::Error>,
    hold: Duration,
) -> (Response<Body>, bool) {
    tokio::time::sleep(hold).await;
    let done = put(&shared, reference.clone(), parsed);
    let mut quirks = lock(&shared.quirks);
    if let Some(n) = quirks.holding.get_mut(&reference) {
        *n -= 1;
        if *n == 0 {
            quirks.holding.remove(&reference);
        }
    }
    if done.1 {
        quirks.held_applied.insert(reference, Instant::now());
    }
    done
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

/// The answer a quirk gives instead of the operation, if any.
fn quirk_answer(shared: &Shared, route: &Route) -> Option<Response<Body>> {
    let (Route::Put(reference) | Route::Delete(reference)) = route else {
        return None;
    };
    let code = *lock(&shared.quirks).failing.get(reference)?;
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(error_body(
        status,
        "",
        "simulated failure of this reference",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<PositionOpening xmlns="http://www.hr-xml.org/3" xmlns:oa="http://www.openapplications.org/oagis/9" majorVersionID="3" minorVersionID="2">
  <DocumentID schemeID="JOBAG">x</DocumentID>
  <PositionTitle>Udvikler &amp; tester &#xF8;</PositionTitle>
  <oa:CityName>København Ø</oa:CityName>
  <PositionFormattedDescription><Content><![CDATA[<p>hi</p>]]></Content></PositionFormattedDescription>
  <Empty/>
</PositionOpening>
"#;

    #[test]
    fn accepts_a_valid_document() {
        assert_eq!(check_position_opening(OK), Ok(()));
        let empty_root = r#"<PositionOpening xmlns="http://www.hr-xml.org/3" majorVersionID="3" minorVersionID="2"/>"#;
        assert_eq!(check_position_opening(empty_root), Ok(()));
    }

    #[test]
    fn rejects_bad_documents() {
        let cases = [
            ("", "no root"),
            ("not xml", "text outside"),
            (&OK.replace("</PositionOpening>", ""), "not closed"),
            (
                &OK.replace("</PositionTitle>", "</Title>"),
                "not well-formed",
            ),
            (
                &OK.replace(" majorVersionID=\"3\"", ""),
                "lacks majorVersionID",
            ),
            (
                &OK.replace("minorVersionID=\"2\"", "minorVersionID=\"1\""),
                "minorVersionID=\"1\"",
            ),
            (
                &OK.replace("xmlns=\"http://www.hr-xml.org/3\"", ""),
                "namespace",
            ),
            (
                &OK.replace("PositionOpening", "JobPosting"),
                "expected PositionOpening",
            ),
            (&OK.replace("&amp;", "&nbsp;"), "undefined entity"),
            (&OK.replace("&amp;", "&"), "not well-formed"),
            (&OK.replace("&#xF8;", "&#x1;"), "character reference"),
            (
                &OK.replace("tester", "te\u{1}ster"),
                "not allowed in XML 1.0",
            ),
            (
                &OK.replace("<Empty/>", "<x:Empty/>"),
                "undeclared namespace prefix",
            ),
            (&format!("{OK}<PositionOpening/>"), "more than one root"),
            (
                &OK.replace("schemeID=\"JOBAG\"", "schemeID=\"A\" schemeID=\"B\""),
                "attribute",
            ),
        ];
        for (doc, want) in cases {
            let err = check_position_opening(doc).expect_err(want);
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
