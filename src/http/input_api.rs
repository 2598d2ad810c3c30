//! The EURES Input API (SPEC 4.3): the four calls the EURES portal polls in
//! pull mode, answered from the ledger's exchange facts.
//!
//! - `GET  {BASE}/ping` → `200` text/plain;
//! - `GET  {BASE}/getAll` → `{"allReferences": [Ref...]}`, every ACTIVE copy;
//! - `GET  {BASE}/getChanges/{ts}` → created / modified / closed references
//!   whose last modification is at or after `ts` (epoch ms, inclusive) and
//!   below the answer's high-water mark, fixed when the call starts;
//! - `POST {BASE}/getDetails` with `["ref", ...]` (at most
//!   [`MAX_DETAILS`]) → `{"details": {"ref": {...}}}`.
//!
//! Until the ledger has caught up with the source once after the start,
//! the three data calls answer `503` (a restored backup must not serve a
//! posting withdrawn since as ACTIVE).
//!
//! Owns the HTTP shapes, the bearer-token check and the streaming of the
//! answers. It must never write the ledger, never build a listing in memory
//! (lists are streamed a page at a time from keyset queries), never serve a
//! document for a copy that is not ACTIVE, never write `null` for an absent
//! value, and never log or echo a token or a document.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::StoreError;
use crate::store::exchange::{
    ChangeKind, ExchangeDetail, ExchangeFilter, ExchangeRef, ExchangeStore, by_reference,
};

/// Where the Input API lives.
pub const BASE: &str = "/input/api/jv/v0.1";
/// References one getDetails call may ask for (SPEC 4.3).
pub const MAX_DETAILS: usize = 1_000;
/// `source` of every reference we serve.
pub const SOURCE: &str = "JobAG";
/// `contentFormatVersion` of every document we serve.
pub const CONTENT_FORMAT_VERSION: &str = "1.3";

/// Rows per keyset page of a listing: one page is one chunk of the body.
const PAGE_ROWS: i64 = 1_000;
/// References per details query: bounds the documents held at once.
const DETAILS_CHUNK: usize = 100;
/// Largest getDetails body read. 1,000 references of JobAG's longest ids
/// (128 characters, quoted, with a comma) take 131,002 bytes; twice that
/// leaves room for any whitespace a client pretty-prints with.
pub const MAX_DETAILS_BODY: usize = 256 * 1024;

/// What the Input API needs: the ledger's exchange view and the token.
#[derive(Clone)]
pub struct InputApi {
    /// Read-only view of the ledger.
    store: Arc<dyn ExchangeStore>,
    /// SHA-256 of each bearer token EURES may present (two while one is
    /// rotated). Only the digests are kept, and comparing digests makes the
    /// check independent of where the presented token first differs, and
    /// of its length.
    token_digests: Arc<[[u8; 32]]>,
    /// Whether the data calls wait for the source (see [`SourceGate`]).
    gate: Arc<SourceGate>,
}

/// The data calls answer `503` until the ledger has caught up with the
/// source at or after `since_ms` (the ledger's clock when the process
/// started); once it has, for good.
#[derive(Debug, Default)]
struct SourceGate {
    since_ms: Option<i64>,
    open: AtomicBool,
}

impl InputApi {
    /// An Input API that answers from the ledger at once: for a view of a
    /// ledger nothing feeds (tests of the API itself).
    pub fn new(store: Arc<dyn ExchangeStore>, token: &SecretString) -> InputApi {
        InputApi {
            store,
            token_digests: digests(std::slice::from_ref(token)),
            gate: Arc::new(SourceGate {
                since_ms: None,
                open: AtomicBool::new(true),
            }),
        }
    }

    /// The worker's Input API: nothing is served until the ledger has
    /// caught up with the source at or after `started_ms` (the ledger's
    /// clock at the start), so a restored or rebuilt ledger never serves a
    /// posting as ACTIVE that the source withdrew meanwhile (SPEC 4.3).
    /// Each of `tokens` is accepted (the configuration gives one, or two
    /// during a rotation).
    pub fn waiting_for_source(
        store: Arc<dyn ExchangeStore>,
        tokens: &[SecretString],
        started_ms: i64,
    ) -> InputApi {
        InputApi {
            store,
            token_digests: digests(tokens),
            gate: Arc::new(SourceGate {
                since_ms: Some(started_ms),
                open: AtomicBool::new(false),
            }),
        }
    }

    /// Whether the data calls may be answered now.
    async fn source_caught_up(&self) -> Result<bool, StoreError> {
        if self.gate.open.load(Ordering::Acquire) {
            return Ok(true);
        }
        let since = self.gate.since_ms.unwrap_or(i64::MIN);
        let caught_up = self
            .store
            .source_head_ms()
            .await?
            .is_some_and(|head| head >= since);
        if caught_up {
            self.gate.open.store(true, Ordering::Release);
            tracing::info!("input api: the ledger has caught up with the source; serving");
        }
        Ok(caught_up)
    }

    /// Compares with every accepted token, whichever matches.
    fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented.as_bytes());
        self.token_digests.iter().fold(false, |any, token| {
            any | constant_time_eq(token, &presented)
        })
    }
}

fn digests(tokens: &[SecretString]) -> Arc<[[u8; 32]]> {
    tokens
        .iter()
        .map(|t| digest(t.expose_secret().as_bytes()))
        .collect()
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(Sha256::digest(bytes).as_slice());
    out
}

/// Equality that looks at every byte whatever the contents.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

/// The Input API routes, each behind the bearer-token check, then its body
/// limit.
pub fn router(api: InputApi) -> Router {
    let limit = |max: usize| middleware::from_fn_with_state(max, limit_body);
    let gate = || middleware::from_fn_with_state(api.clone(), wait_for_source);
    Router::new()
        .route(&format!("{BASE}/ping"), get(ping).layer(limit(0)))
        .route(
            &format!("{BASE}/getAll"),
            get(get_all).layer(limit(0)).layer(gate()),
        )
        .route(
            &format!("{BASE}/getChanges/{{ts}}"),
            get(get_changes).layer(limit(0)).layer(gate()),
        )
        .route(
            &format!("{BASE}/getDetails"),
            post(get_details)
                .layer(limit(MAX_DETAILS_BODY))
                .layer(gate()),
        )
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token))
        .with_state(api)
}

/// `{"error": "..."}` with a status: one line an operator can act on.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "input api: reading the ledger failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the ledger could not be read; try again",
    )
}

/// A refusal the client caused: counted in a metric, never logged one line
/// each (a client hammering the API must not flood the log).
fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    crate::telemetry::input_api_refused(status.as_u16());
    error(status, message)
}

fn too_large(max: usize) -> Response {
    refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body may hold at most {max} bytes here"),
    )
}

/// Refuses a body larger than the route needs before reading any of it,
/// when the client announces its length (a body without one is bounded
/// where it is read).
async fn limit_body(State(max): State<usize>, req: Request, next: Next) -> Response {
    let max_len = u64::try_from(max).unwrap_or(u64::MAX);
    if super::declared_length(&req).is_some_and(|n| n > max_len) {
        return too_large(max);
    }
    next.run(req).await
}

/// `503` with `Retry-After` until the ledger has caught up with the source.
async fn wait_for_source(State(api): State<InputApi>, req: Request, next: Next) -> Response {
    match api.source_caught_up().await {
        Ok(true) => next.run(req).await,
        Ok(false) => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent is catching up with JobAG after its start; try again shortly",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
        Err(e) => internal(&e),
    }
}

async fn require_token(State(api): State<InputApi>, req: Request, next: Next) -> Response {
    let why = match bearer(req.headers()) {
        Some(token) if api.accepts(token) => return next.run(req).await,
        Some(_) => "the bearer token is not valid",
        None => "a bearer token is required (Authorization: Bearer <token>)",
    };
    let mut response = refused(StatusCode::UNAUTHORIZED, why);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"eures-input-api\""),
    );
    // A client without the token gets nothing more on this connection: it
    // cannot keep a slot for guessing, and a body sent along is not read.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn ping() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
}

async fn get_all(State(api): State<InputApi>) -> Response {
    let before_ms = match api.store.barrier().await {
        Ok(mark) => mark,
        Err(e) => return internal(&e),
    };
    let listing = Listing::new(
        api.store.clone(),
        vec![("allReferences", ExchangeFilter::Active { before_ms })],
    );
    streamed(listing.into_stream()).await
}

async fn get_changes(State(api): State<InputApi>, Path(ts): Path<String>) -> Response {
    let Some(since_ms) = parse_timestamp(&ts) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "the timestamp must be a non-negative integer: epoch milliseconds UTC",
        );
    };
    let before_ms = match api.store.barrier().await {
        Ok(mark) => mark,
        Err(e) => return internal(&e),
    };
    let section = |name, kind| {
        (
            name,
            ExchangeFilter::Changed {
                kind,
                since_ms,
                before_ms,
            },
        )
    };
    let listing = Listing::new(
        api.store.clone(),
        vec![
            section("createdReferences", ChangeKind::Created),
            section("modifiedReferences", ChangeKind::Modified),
            section("closedReferences", ChangeKind::Closed),
        ],
    );
    streamed(listing.into_stream()).await
}

/// Epoch milliseconds: ASCII digits only, within `i64`.
fn parse_timestamp(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

async fn get_details(State(api): State<InputApi>, body: Body) -> Response {
    let references = match read_references(body).await {
        Ok(r) => r,
        Err(BadDetails::TooLarge) => return too_large(MAX_DETAILS_BODY),
        Err(BadDetails::Malformed(why)) => return refused(StatusCode::BAD_REQUEST, why),
        Err(BadDetails::Unreadable) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
    };
    let details = Details {
        store: api.store.clone(),
        references,
        next: 0,
        opened: false,
        written: false,
    };
    streamed(details.into_stream()).await
}

/// Why a getDetails body is refused.
#[derive(Debug)]
enum BadDetails {
    /// Longer than [`MAX_DETAILS_BODY`] (413).
    TooLarge,
    /// Not what the call takes (400).
    Malformed(String),
    /// The client broke off while sending it.
    Unreadable,
}

/// Reads at most `max` bytes of `body`: a body that announced no length is
/// cut off as soon as it passes the bound, never buffered whole.
async fn read_bounded(body: Body, max: usize) -> Result<Vec<u8>, BadDetails> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BadDetails::Unreadable)?;
        if bytes.len() + chunk.len() > max {
            return Err(BadDetails::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The getDetails body: a JSON array of at most [`MAX_DETAILS`] strings,
/// de-duplicated in order (the answer is an object keyed by reference).
async fn read_references(body: Body) -> Result<Vec<String>, BadDetails> {
    let too_many = || {
        BadDetails::Malformed(format!(
            "getDetails takes at most {MAX_DETAILS} references per call; split the request"
        ))
    };
    let bytes = read_bounded(body, MAX_DETAILS_BODY).await?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        BadDetails::Malformed(format!("the body must be a JSON array of references: {e}"))
    })?;
    let serde_json::Value::Array(items) = value else {
        return Err(BadDetails::Malformed(
            "the body must be a JSON array of references".into(),
        ));
    };
    if items.len() > MAX_DETAILS {
        return Err(too_many());
    }
    let mut seen = HashSet::with_capacity(items.len());
    let mut references = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let serde_json::Value::String(reference) = item else {
            return Err(BadDetails::Malformed(format!(
                "every reference must be a JSON string; item {index} is not"
            )));
        };
        if seen.insert(reference.clone()) {
            references.push(reference);
        }
    }
    Ok(references)
}

/// Why a streamed body stops.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("encoding the answer: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Sends a body produced chunk by chunk. The first chunk is produced before
/// the status line, so a ledger failure at the start is a clean `500`; a
/// failure later aborts the body, and the client sees a broken transfer,
/// never a truncated document that parses.
async fn streamed<S>(stream: S) -> Response
where
    S: Stream<Item = Result<Bytes, StreamError>> + Send + 'static,
{
    let mut stream = Box::pin(stream);
    let first = match stream.next().await {
        Some(Err(e)) => return internal(&e),
        first => first,
    };
    let rest = stream.map(|chunk| {
        chunk.inspect_err(|e| {
            tracing::error!(error = %e, "input api: reading the ledger failed mid-answer; aborting it");
        })
    });
    let body = futures::stream::iter(first).chain(rest);
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// `Ref` of SPEC 4.3; absent values are left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefJson<'a> {
    reference: &'a str,
    source: &'static str,
    status: &'static str,
    creation_timestamp: i64,
    last_modification_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    closing_timestamp: Option<i64>,
}

fn status(r: &ExchangeRef) -> &'static str {
    if r.is_active() { "ACTIVE" } else { "CLOSED" }
}

impl<'a> From<&'a ExchangeRef> for RefJson<'a> {
    fn from(r: &'a ExchangeRef) -> Self {
        RefJson {
            reference: &r.reference,
            source: SOURCE,
            status: status(r),
            creation_timestamp: r.created_ms,
            last_modification_timestamp: r.modified_ms,
            closing_timestamp: r.closed_ms,
        }
    }
}

/// One entry of getDetails; `content` only while ACTIVE.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DetailJson<'a> {
    reference: &'a str,
    source: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    content_format_version: &'static str,
    creation_timestamp: i64,
    last_modification_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    closing_timestamp: Option<i64>,
}

impl<'a> DetailJson<'a> {
    /// `None` for an ACTIVE copy whose document is not in the ledger (a
    /// ledger written in push mode erases delivered documents): better
    /// unknown to EURES for a while than ACTIVE without content.
    fn of(d: &'a ExchangeDetail) -> Option<Self> {
        let active = d.meta.is_active();
        if active && d.content.is_none() {
            tracing::warn!(
                posting = %d.meta.reference,
                "input api: ACTIVE copy without a document in the ledger; left out of getDetails until it is re-read (resync)"
            );
            return None;
        }
        Some(DetailJson {
            reference: &d.meta.reference,
            source: SOURCE,
            status: status(&d.meta),
            content: if active { d.content.as_deref() } else { None },
            content_format_version: CONTENT_FORMAT_VERSION,
            creation_timestamp: d.meta.created_ms,
            last_modification_timestamp: d.meta.modified_ms,
            closing_timestamp: d.meta.closed_ms,
        })
    }
}

/// A JSON object of named arrays, each filled by walking one filter's
/// keyset pages: `{"a":[...],"b":[...]}`, one page per chunk.
struct Listing {
    store: Arc<dyn ExchangeStore>,
    /// Array name and the filter that fills it, in output order.
    sections: Vec<(&'static str, ExchangeFilter)>,
    /// The section being written.
    section: usize,
    /// Last reference of the previous page of this section.
    after: Option<ExchangeRef>,
    /// The current section's `"name":[` is written.
    opened: bool,
    /// The current array has an element (the next one needs a comma).
    written: bool,
}

impl Listing {
    fn new(store: Arc<dyn ExchangeStore>, sections: Vec<(&'static str, ExchangeFilter)>) -> Self {
        Listing {
            store,
            sections,
            section: 0,
            after: None,
            opened: false,
            written: false,
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StreamError> {
        let Some(&(name, filter)) = self.sections.get(self.section) else {
            return Ok(None);
        };
        let mut buf = Vec::with_capacity(64 * 1024);
        if !self.opened {
            buf.push(if self.section == 0 { b'{' } else { b',' });
            serde_json::to_writer(&mut buf, name)?;
            buf.extend_from_slice(b":[");
            self.opened = true;
            self.written = false;
            self.after = None;
        }
        let page = self
            .store
            .exchange_page(filter, self.after.as_ref(), PAGE_ROWS)
            .await?;
        for r in &page {
            if self.written {
                buf.push(b',');
            }
            self.written = true;
            serde_json::to_writer(&mut buf, &RefJson::from(r))?;
        }
        if i64::try_from(page.len()).unwrap_or(i64::MAX) < PAGE_ROWS {
            buf.push(b']');
            self.opened = false;
            self.section += 1;
            if self.section == self.sections.len() {
                buf.push(b'}');
            }
        } else {
            self.after = page.into_iter().next_back();
        }
        Ok(Some(Bytes::from(buf)))
    }

    fn into_stream(self) -> impl Stream<Item = Result<Bytes, StreamError>> + Send + 'static {
        chunks(self, |mut l| async move {
            let chunk = l.next_chunk().await;
            (chunk, l)
        })
    }
}

/// getDetails' answer, a chunk of references per query.
struct Details {
    store: Arc<dyn ExchangeStore>,
    /// The requested references, de-duplicated, in request order.
    references: Vec<String>,
    /// Index of the first reference not yet answered.
    next: usize,
    /// `{"details":{` is written.
    opened: bool,
    /// An entry is written (the next one needs a comma).
    written: bool,
}

impl Details {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StreamError> {
        if self.opened && self.next >= self.references.len() {
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(64 * 1024);
        if !self.opened {
            buf.extend_from_slice(b"{\"details\":{");
            self.opened = true;
        }
        let end = (self.next + DETAILS_CHUNK).min(self.references.len());
        let wanted = &self.references[self.next..end];
        let found = by_reference(self.store.exchange_details(wanted).await?);
        for reference in wanted {
            let Some(entry) = found.get(reference).and_then(DetailJson::of) else {
                continue;
            };
            if self.written {
                buf.push(b',');
            }
            self.written = true;
            serde_json::to_writer(&mut buf, reference)?;
            buf.push(b':');
            serde_json::to_writer(&mut buf, &entry)?;
        }
        self.next = end;
        if self.next >= self.references.len() {
            buf.extend_from_slice(b"}}");
        }
        Ok(Some(Bytes::from(buf)))
    }

    fn into_stream(self) -> impl Stream<Item = Result<Bytes, StreamError>> + Send + 'static {
        chunks(self, |mut d| async move {
            let chunk = d.next_chunk().await;
            (chunk, d)
        })
    }
}

/// Turns a chunk producer into a stream that ends after `Ok(None)` or right
/// after the first error.
fn chunks<W, F, Fut>(writer: W, step: F) -> impl Stream<Item = Result<Bytes, StreamError>> + Send
where
    W: Send + 'static,
    F: Fn(W) -> Fut + Send + 'static,
    Fut: Future<Output = (Result<Option<Bytes>, StreamError>, W)> + Send,
{
    futures::stream::unfold(Some(writer), move |state| {
        let next = state.map(&step);
        async move {
            match next?.await {
                (Ok(Some(chunk)), w) => Some((Ok(chunk), Some(w))),
                (Ok(None), _) => None,
                (Err(e), _) => Some((Err(e), None)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger that serves `pages_ok` full pages, then fails.
    struct Failing {
        pages_ok: usize,
        calls: std::sync::atomic::AtomicUsize,
    }

    fn broken() -> StoreError {
        StoreError::Corrupt {
            id: String::new(),
            why: "simulated failure".into(),
        }
    }

    #[async_trait::async_trait]
    impl ExchangeStore for Failing {
        async fn barrier(&self) -> crate::store::Result<i64> {
            Ok(2)
        }

        async fn now_ms(&self) -> crate::store::Result<i64> {
            Ok(2)
        }

        async fn source_head_ms(&self) -> crate::store::Result<Option<i64>> {
            Ok(None)
        }

        async fn exchange_page(
            &self,
            _filter: ExchangeFilter,
            _after: Option<&ExchangeRef>,
            limit: i64,
        ) -> crate::store::Result<Vec<ExchangeRef>> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n >= self.pages_ok {
                return Err(broken());
            }
            Ok((0..limit)
                .map(|i| ExchangeRef {
                    reference: format!("r{n}-{i:04}"),
                    active: true,
                    created_ms: 1,
                    modified_ms: 1,
                    closed_ms: None,
                })
                .collect())
        }

        async fn exchange_details(
            &self,
            _references: &[String],
        ) -> crate::store::Result<Vec<ExchangeDetail>> {
            Err(broken())
        }
    }

    async fn serve_failing(pages_ok: usize) -> String {
        let api = InputApi::new(
            Arc::new(Failing {
                pages_ok,
                calls: Default::default(),
            }),
            &SecretString::from("t"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router(api)).await });
        format!("http://{addr}{BASE}")
    }

    #[tokio::test]
    async fn a_failure_before_the_first_page_is_a_clean_500() {
        let base = serve_failing(0).await;
        let http = reqwest::Client::new();
        for req in [
            http.get(format!("{base}/getAll")),
            http.get(format!("{base}/getChanges/0")),
            http.post(format!("{base}/getDetails")).body("[\"a\"]"),
        ] {
            let resp = req.bearer_auth("t").send().await.expect("answer");
            assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body: serde_json::Value = resp.json().await.expect("JSON error");
            assert!(body["error"].is_string(), "{body}");
        }
    }

    #[tokio::test]
    async fn a_failure_mid_answer_breaks_the_body_instead_of_truncating_it() {
        for path in ["getAll", "getChanges/0"] {
            let base = serve_failing(2).await;
            let sent = reqwest::Client::new()
                .get(format!("{base}/{path}"))
                .bearer_auth("t")
                .send()
                .await;
            // Depending on how much hyper had flushed, the client sees the
            // break while reading the head or the body; never a clean end.
            if let Ok(resp) = sent {
                assert_eq!(resp.status(), StatusCode::OK);
                assert!(
                    resp.bytes().await.is_err(),
                    "{path}: the body must not end cleanly"
                );
            }
        }
    }

    #[test]
    fn timestamps_are_plain_non_negative_integers() {
        assert_eq!(parse_timestamp("0"), Some(0));
        assert_eq!(parse_timestamp("1763633700000"), Some(1_763_633_700_000));
        for bad in [
            "",
            "-1",
            "+5",
            "1.5",
            "1e3",
            "abc",
            " 1",
            "99999999999999999999",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn token_check_compares_whole_tokens() {
        let a = digest(b"secret-token");
        assert!(constant_time_eq(&a, &digest(b"secret-token")));
        assert!(!constant_time_eq(&a, &digest(b"secret-toke")));
        assert!(!constant_time_eq(&a, &digest(b"secret-token ")));
        assert!(!constant_time_eq(&a, &digest(b"")));
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn absent_values_are_left_out_not_null() {
        let r = ExchangeRef {
            reference: "p1".into(),
            active: true,
            created_ms: 5,
            modified_ms: 7,
            closed_ms: None,
        };
        let json = serde_json::to_string(&RefJson::from(&r)).expect("encodes");
        assert_eq!(
            json,
            r#"{"reference":"p1","source":"JobAG","status":"ACTIVE","creationTimestamp":5,"lastModificationTimestamp":7}"#
        );
        let closed = ExchangeDetail {
            meta: ExchangeRef {
                active: false,
                closed_ms: Some(9),
                modified_ms: 9,
                ..r
            },
            content: Some("<must-not-leak/>".into()),
        };
        let json =
            serde_json::to_string(&DetailJson::of(&closed).expect("served")).expect("encodes");
        assert!(
            !json.contains("null") && !json.contains("content\""),
            "{json}"
        );
        assert!(json.contains(r#""status":"CLOSED""#) && json.contains(r#""closingTimestamp":9"#));
    }
}
