//! JobAG simulator: the server side of SPEC 4.1.
//!
//! Owns an append-only change log (the feed) and the map of current postings
//! (the snapshot), both controlled in-process through [`JobagSim`], and serves
//! them over HTTP:
//!
//! - `GET /api/v1/postings/changes?after={cursor}&limit={n}`: the feed. A
//!   cursor is `c<position>` in the log; a position before the compaction
//!   point ([`JobagSim::forget_before`]) or beyond the end of the log is
//!   answered `410 Gone`, a cursor that does not parse `400`.
//! - `GET /api/v1/postings?page_token={t}&limit={n}`: the snapshot, ordered by
//!   id; the page token is the last id of the previous page.
//! - `GET /api/v1/postings/{id}`: one current posting or `404`.
//!
//! [`JobagSim::set_feed_lie`] makes the feed answer as a broken or hostile
//! JobAG would ([`FeedLie`]), for as long as it is set.
//!
//! Every item is serialised once when it enters the simulator, so serving a
//! page copies bytes and never re-encodes JSON.
//!
//! [`sample_posting`] builds complete, valid, eligible postings for tests,
//! the demo and the benchmarks.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::{
    HandlerResult, Server, bearer_ok, decode_segment, default_listen, error_body, json_bytes,
    now_rfc3339, parse_limit, query_param,
};

mod samples;

pub use samples::{sample_document, sample_id, sample_posting};

/// Default and maximum `limit` of the feed and the snapshot.
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 5000;

/// How to start a [`JobagSim`].
#[derive(Debug, Clone)]
pub struct JobagOptions {
    /// Where to listen; `127.0.0.1:0` (an ephemeral port) by default.
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl Default for JobagOptions {
    fn default() -> Self {
        JobagOptions {
            listen: default_listen(),
            token: None,
        }
    }
}

/// What the feed answers instead of its true page while set (SPEC 4.1:
/// what a feed may not make the agent do).
#[derive(Debug, Clone)]
pub enum FeedLie {
    /// The true page, its `next_cursor` padded (with leading zeros, so it
    /// still names the right position) to this many bytes.
    LongCursor(usize),
    /// This many items more than the `limit` asked for: deletions of
    /// postings named `lie-<n>`.
    ExtraItems(usize),
    /// This body with `200`, whatever was asked.
    Body(Bytes),
    /// No items, the cursor asked for, and `has_more: true`.
    EmptyWithMore,
    /// `410 Gone` to every read, from the beginning too.
    Gone,
}

/// Requests received per endpoint, whatever the answer was (tests use them to
/// prove that a client polled, paged or backed off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobagCounters {
    /// `GET /api/v1/postings/changes`.
    pub changes: u64,
    /// `GET /api/v1/postings` (snapshot pages).
    pub snapshot: u64,
    /// `GET /api/v1/postings/{id}`.
    pub get: u64,
    /// Anything else (unknown paths, wrong methods).
    pub other: u64,
}

/// A running JobAG simulator. Stops on [`JobagSim::shutdown`] or drop.
pub struct JobagSim {
    /// The HTTP server; dropping it stops the accept loop.
    server: Server,
    /// State shared with the request handlers.
    shared: Arc<Shared>,
}

/// State shared between the control API and the HTTP handlers.
struct Shared {
    /// The feed and the snapshot, changed together under one lock.
    feed: Mutex<Feed>,
    /// While set, every endpoint answers 503.
    outage: AtomicBool,
    /// While set, `GET /api/v1/postings/{id}` answers 503 (the feed and the
    /// snapshot work).
    posting_reads_failing: AtomicBool,
    /// While set, the snapshot (`GET /api/v1/postings`) answers 503 (the
    /// feed and single-posting reads work).
    snapshot_failing: AtomicBool,
    /// The bearer token requests must carry, when set.
    token: RwLock<Option<String>>,
    /// While set, what the feed answers instead of its true page.
    lie: Mutex<Option<FeedLie>>,
    /// Per-endpoint request counters (see [`JobagCounters`]).
    changes: AtomicU64,
    snapshot: AtomicU64,
    get: AtomicU64,
    other: AtomicU64,
}

/// The feed and the snapshot.
struct Feed {
    /// Append-only change log, each item as serialised JSON; a cursor is a
    /// position in it.
    log: Vec<Bytes>,
    /// Compaction point: cursors before this position are unknown (410), and
    /// "from the beginning" starts here.
    forgotten: usize,
    /// Current postings by id, serialised; a BTreeMap so snapshot paging by
    /// "last id seen" is stable and cheap.
    current: BTreeMap<String, Bytes>,
    /// Highest version the log carries per id, kept after deletion, so the
    /// next upsert or delete gets a higher one.
    versions: HashMap<String, u64>,
}

impl Feed {
    fn bump_version(&mut self, id: &str, version: u64) {
        match self.versions.get_mut(id) {
            Some(v) => *v = (*v).max(version),
            None => {
                self.versions.insert(id.to_owned(), version);
            }
        }
    }

    fn next_version(&self, id: &str) -> u64 {
        self.versions.get(id).copied().unwrap_or(0) + 1
    }
}

/// What the feed carries of a published change.
#[derive(Clone, Copy)]
enum FeedItem {
    /// The change as published.
    Intact,
    /// The change with an invalid UTF-8 byte in its title.
    Damaged,
    /// Nothing: only the snapshot changes.
    Silent,
}

/// The cursor string for log position `position` (what `next_cursor`
/// carries after `position` items).
pub fn cursor(position: usize) -> String {
    format!("c{position}")
}

fn parse_cursor(s: &str) -> Option<usize> {
    let digits = s.strip_prefix('c')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl JobagSim {
    /// Binds `opts.listen` and starts serving an empty feed.
    pub async fn start(opts: JobagOptions) -> io::Result<JobagSim> {
        let shared = Arc::new(Shared {
            feed: Mutex::new(Feed {
                log: Vec::new(),
                forgotten: 0,
                current: BTreeMap::new(),
                versions: HashMap::new(),
            }),
            outage: AtomicBool::new(false),
            posting_reads_failing: AtomicBool::new(false),
            snapshot_failing: AtomicBool::new(false),
            token: RwLock::new(opts.token),
            lie: Mutex::new(None),
            changes: AtomicU64::new(0),
            snapshot: AtomicU64::new(0),
            get: AtomicU64::new(0),
            other: AtomicU64::new(0),
        });
        let handler_state = shared.clone();
        let server =
            Server::start(opts.listen, move |req| handle(handler_state.clone(), req)).await?;
        Ok(JobagSim { server, shared })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Stops serving: the listener closes and open connections are dropped.
    pub fn shutdown(&self) {
        self.server.stop();
    }

    fn feed(&self) -> MutexGuard<'_, Feed> {
        lock(&self.shared.feed)
    }

    /// Publishes a new state of a posting: assigns the next version of its id
    /// (1, 2, 3, ...) and `updated_at` = now unless the JSON already carries
    /// them, appends it to the feed and makes it the current posting.
    /// Returns the version the item carries.
    ///
    /// # Panics
    /// When `posting` has no string `id` or a `version` that is not an
    /// unsigned integer: use [`JobagSim::push_raw`] for malformed changes.
    pub fn upsert(&self, posting: Value) -> u64 {
        self.publish(posting, FeedItem::Intact)
    }

    /// Like [`JobagSim::upsert`], but the feed carries the change damaged
    /// in transit (an invalid UTF-8 byte inside its `title`), while the
    /// snapshot and the single-posting read serve it intact: to see whether
    /// a client learns such a posting's state from JobAG.
    ///
    /// # Panics
    /// As [`JobagSim::upsert`], and when the posting has no string `title`.
    pub fn upsert_damaged(&self, posting: Value) -> u64 {
        self.publish(posting, FeedItem::Damaged)
    }

    /// Like [`JobagSim::upsert`], but the feed does not carry the change
    /// (yet): the snapshot and the single-posting read serve it, as when the
    /// feed lags behind JobAG's own state. The change is never announced;
    /// [`JobagSim::push_raw`] can announce it later.
    ///
    /// # Panics
    /// As [`JobagSim::upsert`].
    pub fn upsert_unannounced(&self, posting: Value) -> u64 {
        self.publish(posting, FeedItem::Silent)
    }

    fn publish(&self, mut posting: Value, item: FeedItem) -> u64 {
        let Some(obj) = posting.as_object_mut() else {
            panic!("JobagSim::upsert needs a JSON object; use push_raw for malformed changes");
        };
        let Some(id) = obj.get("id").and_then(Value::as_str).map(str::to_owned) else {
            panic!("JobagSim::upsert needs a string `id`; use push_raw for malformed changes");
        };
        if !obj.contains_key("updated_at") {
            obj.insert("updated_at".into(), Value::String(now_rfc3339()));
        }
        let mut feed = self.feed();
        let version = match obj.get("version") {
            None => {
                let v = feed.next_version(&id);
                obj.insert("version".into(), json!(v));
                v
            }
            Some(v) => v.as_u64().unwrap_or_else(|| {
                panic!("JobagSim::upsert: `version` must be an unsigned integer, got {v}")
            }),
        };
        let bytes = Bytes::from(serde_json::to_vec(&posting).expect("JSON values serialise"));
        feed.bump_version(&id, version);
        match item {
            FeedItem::Silent => {}
            FeedItem::Damaged => {
                let mut broken = bytes.to_vec();
                let title = br#""title":""#;
                let at = broken
                    .windows(title.len())
                    .position(|w| w == title)
                    .expect("JobagSim::upsert_damaged needs a string `title`");
                broken.insert(at + title.len(), 0xff);
                feed.log.push(Bytes::from(broken));
            }
            FeedItem::Intact => feed.log.push(bytes.clone()),
        }
        feed.current.insert(id, bytes);
        version
    }

    /// Deletes a posting: appends `{"id", "version": next, "deleted": true,
    /// "updated_at"}` and removes it from the snapshot. Works for an id the
    /// simulator never saw (its version is then 1). Returns the version.
    pub fn delete(&self, id: &str) -> u64 {
        let updated_at = now_rfc3339();
        let mut feed = self.feed();
        let version = feed.next_version(id);
        let item = json!({"id": id, "version": version, "deleted": true, "updated_at": updated_at});
        feed.bump_version(id, version);
        feed.log.push(Bytes::from(item.to_string()));
        feed.current.remove(id);
        version
    }

    /// Removes a posting from the snapshot without a word in the feed: a
    /// deletion the feed lost, which only reconcile can learn. Returns
    /// whether the snapshot held it.
    pub fn vanish(&self, id: &str) -> bool {
        self.feed().current.remove(id).is_some()
    }

    /// Puts a posting back into the snapshot, as it was, without a word in
    /// the feed: a snapshot that lagged, or a read that wrongly said `404`.
    pub fn reappear(&self, posting: &Value) {
        let Some(id) = posting.get("id").and_then(Value::as_str) else {
            return;
        };
        let bytes = Bytes::from(posting.to_string());
        self.feed().current.insert(id.to_owned(), bytes);
    }

    /// Appends `item` to the feed exactly as given, without touching the
    /// snapshot: for malformed changes and for repeated or out-of-order
    /// versions. When it carries a string `id` and an integer `version`
    /// above the id's highest, later upserts and deletes continue after it.
    pub fn push_raw(&self, item: Value) {
        let bytes = Bytes::from(serde_json::to_vec(&item).expect("JSON values serialise"));
        let mut feed = self.feed();
        if let (Some(id), Some(version)) = (
            item.get("id").and_then(Value::as_str),
            item.get("version").and_then(Value::as_u64),
        ) {
            feed.bump_version(id, version);
        }
        feed.log.push(bytes);
    }

    /// Appends `bytes` to the feed as one item, byte for byte, even when they
    /// are no JSON value a parser will take (invalid UTF-8 in a string,
    /// nesting beyond a recursion limit): to see how a client copes with a
    /// broken page. The snapshot is untouched. Bytes that break the JSON
    /// syntax of the page make every page that carries them unreadable.
    pub fn push_raw_bytes(&self, bytes: impl Into<Bytes>) {
        self.feed().log.push(bytes.into());
    }

    /// Puts `bytes` into the snapshot as one item, byte for byte, sorted
    /// under `key` (its place in the paging), whatever they are: to see how
    /// a reconcile copes with an item it cannot use. The feed is untouched.
    pub fn put_raw_snapshot_item(&self, key: &str, bytes: impl Into<Bytes>) {
        self.feed().current.insert(key.to_owned(), bytes.into());
    }

    /// The current posting with this id, as served by the snapshot.
    pub fn current(&self, id: &str) -> Option<Value> {
        let bytes = self.feed().current.get(id)?.clone();
        Some(serde_json::from_slice(&bytes).expect("stored JSON parses"))
    }

    /// Ids of all current postings, in order.
    pub fn ids(&self) -> Vec<String> {
        self.feed().current.keys().cloned().collect()
    }

    /// The highest version the feed carries for this id (deleted or not).
    pub fn latest_version(&self, id: &str) -> Option<u64> {
        self.feed().versions.get(id).copied()
    }

    /// Number of current (not deleted) postings.
    pub fn len(&self) -> usize {
        self.feed().current.len()
    }

    /// Whether there is no current posting.
    pub fn is_empty(&self) -> bool {
        self.feed().current.is_empty()
    }

    /// Number of items ever appended to the feed (compacted ones included).
    pub fn log_len(&self) -> usize {
        self.feed().log.len()
    }

    /// The cursor that points at the end of the feed right now.
    pub fn head_cursor(&self) -> String {
        cursor(self.log_len())
    }

    /// Compaction: cursors before log position `position` (clamped to the
    /// log length) become unknown and are answered `410 Gone`; reading from
    /// the beginning starts at `position`. Never moves backwards.
    pub fn forget_before(&self, position: usize) {
        let mut feed = self.feed();
        let position = position.min(feed.log.len());
        feed.forgotten = feed.forgotten.max(position);
    }

    /// While `on`, single-posting reads answer 503 and nothing else does:
    /// a re-read of one posting fails while the feed flows.
    pub fn set_posting_reads_failing(&self, on: bool) {
        self.shared
            .posting_reads_failing
            .store(on, Ordering::Relaxed);
    }

    /// While `on`, snapshot pages answer 503 and nothing else does: a
    /// reconcile cannot complete while the feed flows.
    pub fn set_snapshot_failing(&self, on: bool) {
        self.shared.snapshot_failing.store(on, Ordering::Relaxed);
    }

    /// While `Some`, the feed answers with this lie instead of its true
    /// page; the snapshot and single reads stay true.
    pub fn set_feed_lie(&self, lie: Option<FeedLie>) {
        *lock(&self.shared.lie) = lie;
    }

    /// While `true`, every endpoint answers `503 Service Unavailable`.
    pub fn set_outage(&self, on: bool) {
        self.shared.outage.store(on, Ordering::Relaxed);
    }

    /// Requires `Authorization: Bearer <token>` on every request (401
    /// otherwise), or no authentication with `None`.
    pub fn set_token(&self, token: Option<String>) {
        *self.shared.token.write().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// Requests received so far, per endpoint.
    pub fn counters(&self) -> JobagCounters {
        let s = &self.shared;
        JobagCounters {
            changes: s.changes.load(Ordering::Relaxed),
            snapshot: s.snapshot.load(Ordering::Relaxed),
            get: s.get.load(Ordering::Relaxed),
            other: s.other.load(Ordering::Relaxed),
        }
    }

    /// Sets every request counter back to zero.
    pub fn reset_counters(&self) {
        let s = &self.shared;
        for c in [&s.changes, &s.snapshot, &s.get, &s.other] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Locks a mutex, ignoring poisoning: the simulator's state stays usable
/// after a panicking test thread.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Route {
    Changes,
    Snapshot,
    Get(String),
    MethodNotAllowed,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    let route = match path {
        "/api/v1/postings/changes" => Route::Changes,
        "/api/v1/postings" => Route::Snapshot,
        _ => match path.strip_prefix("/api/v1/postings/") {
            Some(seg) if !seg.is_empty() && !seg.contains('/') => match decode_segment(seg) {
                Some(id) => Route::Get(id.into_owned()),
                None => return Route::NotFound,
            },
            _ => return Route::NotFound,
        },
    };
    if method == Method::GET {
        route
    } else {
        Route::MethodNotAllowed
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> HandlerResult {
    let route = route(req.method(), req.uri().path());
    let counter = match route {
        Route::Changes => &shared.changes,
        Route::Snapshot => &shared.snapshot,
        Route::Get(_) => &shared.get,
        Route::MethodNotAllowed | Route::NotFound => &shared.other,
    };
    counter.fetch_add(1, Ordering::Relaxed);

    let failing = match route {
        Route::Get(_) => shared.posting_reads_failing.load(Ordering::Relaxed),
        Route::Snapshot => shared.snapshot_failing.load(Ordering::Relaxed),
        _ => false,
    };
    if shared.outage.load(Ordering::Relaxed) || failing {
        return Ok(error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "",
            "simulated JobAG outage",
        ));
    }
    {
        let token = shared.token.read().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = token.as_deref()
            && !bearer_ok(req.headers(), token)
        {
            let mut resp = error_body(
                StatusCode::UNAUTHORIZED,
                "Authorization",
                "bearer token required",
            );
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Ok(resp);
        }
    }

    let query = req.uri().query();
    Ok(match route {
        Route::Changes => changes(&shared, query),
        Route::Snapshot => snapshot(&shared, query),
        Route::Get(id) => match lock(&shared.feed).current.get(&id).cloned() {
            Some(bytes) => json_bytes(StatusCode::OK, bytes),
            None => error_body(StatusCode::NOT_FOUND, "id", "no such posting"),
        },
        Route::MethodNotAllowed => {
            error_body(StatusCode::METHOD_NOT_ALLOWED, "", "method not allowed")
        }
        Route::NotFound => error_body(StatusCode::NOT_FOUND, "", "no such endpoint"),
    })
}

/// Joins serialised JSON values into `prefix [a,b,...] suffix`.
fn join_items(prefix: &str, items: &[Bytes], suffix: &str) -> Vec<u8> {
    let len = prefix.len() + suffix.len() + 2 + items.iter().map(|b| b.len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(prefix.as_bytes());
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.push(b']');
    out.extend_from_slice(suffix.as_bytes());
    out
}

fn changes(shared: &Shared, query: Option<&str>) -> hyper::Response<axum::body::Body> {
    let limit = match parse_limit(query, DEFAULT_LIMIT, MAX_LIMIT) {
        Ok(n) => n,
        Err(msg) => return error_body(StatusCode::BAD_REQUEST, "limit", &msg),
    };
    let after = query_param(query, "after");
    let after = match after.as_deref() {
        None => None,
        Some(s) => match parse_cursor(s) {
            Some(p) => Some(p),
            None => return error_body(StatusCode::BAD_REQUEST, "after", "malformed cursor"),
        },
    };
    let lie = lock(&shared.lie).clone();
    match &lie {
        Some(FeedLie::Gone) => {
            return error_body(StatusCode::GONE, "after", "cursor no longer known");
        }
        Some(FeedLie::Body(body)) => return json_bytes(StatusCode::OK, body.clone()),
        Some(FeedLie::EmptyWithMore) => {
            let asked = query_param(query, "after").unwrap_or_default();
            let body = json!({"changes": [], "next_cursor": asked, "has_more": true});
            return json_bytes(StatusCode::OK, Bytes::from(body.to_string()));
        }
        Some(FeedLie::ExtraItems(extra)) => {
            let items: Vec<Bytes> = (0..limit + extra)
                .map(|n| {
                    let item = json!({"id": format!("lie-{n}"), "version": 1, "deleted": true,
                                      "updated_at": now_rfc3339()});
                    Bytes::from(item.to_string())
                })
                .collect();
            let suffix = ",\"next_cursor\":\"c0\",\"has_more\":false}";
            return json_bytes(StatusCode::OK, join_items("{\"changes\":", &items, suffix));
        }
        Some(FeedLie::LongCursor(_)) | None => {}
    }
    let (items, end, has_more) = {
        let feed = lock(&shared.feed);
        let start = match after {
            None => feed.forgotten,
            Some(p) if p < feed.forgotten || p > feed.log.len() => {
                return error_body(StatusCode::GONE, "after", "cursor no longer known");
            }
            Some(p) => p,
        };
        let end = (start + limit).min(feed.log.len());
        (feed.log[start..end].to_vec(), end, end < feed.log.len())
    };
    let mut next = cursor(end);
    if let Some(FeedLie::LongCursor(len)) = lie {
        let zeros = "0".repeat(len.saturating_sub(next.len()));
        next.insert_str(1, &zeros);
    }
    let suffix = format!(",\"next_cursor\":\"{next}\",\"has_more\":{has_more}}}");
    json_bytes(StatusCode::OK, join_items("{\"changes\":", &items, &suffix))
}

fn snapshot(shared: &Shared, query: Option<&str>) -> hyper::Response<axum::body::Body> {
    let limit = match parse_limit(query, DEFAULT_LIMIT, MAX_LIMIT) {
        Ok(n) => n,
        Err(msg) => return error_body(StatusCode::BAD_REQUEST, "limit", &msg),
    };
    let token = query_param(query, "page_token").filter(|t| !t.is_empty());
    let (items, next) = {
        let feed = lock(&shared.feed);
        let lower = match token.as_deref() {
            Some(t) => Bound::Excluded(t),
            None => Bound::Unbounded,
        };
        let mut range = feed.current.range::<str, _>((lower, Bound::Unbounded));
        let mut items = Vec::with_capacity(limit.min(feed.current.len()));
        let mut last = None;
        for (id, bytes) in range.by_ref().take(limit) {
            items.push(bytes.clone());
            last = Some(id);
        }
        let next = match range.next() {
            Some(_) => last.cloned(),
            None => None,
        };
        (items, next)
    };
    let suffix = format!(",\"next_page_token\":{}}}", Value::from(next));
    json_bytes(
        StatusCode::OK,
        join_items("{\"postings\":", &items, &suffix),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(parse_cursor(&cursor(0)), Some(0));
        assert_eq!(parse_cursor(&cursor(1234)), Some(1234));
        for bad in ["", "c", "12", "c-1", "c1x", "x1", "c+1"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn join_items_builds_arrays() {
        let items = [Bytes::from_static(b"1"), Bytes::from_static(b"{}")];
        assert_eq!(join_items("{\"a\":", &items, "}"), b"{\"a\":[1,{}]}");
        assert_eq!(join_items("{\"a\":", &[], "}"), b"{\"a\":[]}");
    }
}
