//! The HTTP client of the JobAG API (SPEC 4.1): change feed pages, snapshot
//! pages, single postings. One `reqwest` client (keep-alive pool, TLS
//! verification always on), bounded response bodies.
//!
//! Items stay raw [`serde_json::Value`]s: parsing each one (and quarantining
//! a bad one) is the next stage's job, so one bad item never fails a page.
//! That holds for bytes too: a change page is split into items before any
//! item becomes a `Value`, so an item that cannot be one (invalid UTF-8,
//! nesting beyond serde_json's recursion limit) is handed on as
//! [`FeedItem::Unreadable`] instead of failing the page and blocking the feed.
//! Nothing here logs a token or posting content, only ids, counts and
//! statuses; error messages carry statuses and error kinds, never content.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

pub use crate::http_client::SetupError;
use crate::http_client::{BodyError, describe_error, http_setup, json_error_summary, read_bounded};

/// Default bound of one response body: a feed that never ends cannot
/// exhaust memory.
pub const MAX_PAGE_BODY: usize = 64 * 1024 * 1024;

/// What went wrong talking to JobAG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// `410 Gone`: the feed no longer knows the cursor (or the snapshot its
    /// page token). Start from the beginning and reconcile.
    #[error("jobag: cursor no longer known (HTTP 410)")]
    CursorGone,
    /// `401`/`403` (or `407`): the token is wrong or missing.
    #[error("jobag: credentials refused (HTTP {0})")]
    Auth(u16),
    /// Worth retrying: `408`, `429`, `5xx`, timeouts, connection errors.
    #[error("jobag: {0}")]
    Transient(String),
    /// Any other status: the feed does not behave as the contract says.
    #[error("jobag: unexpected HTTP {0}")]
    Unexpected(u16),
    /// A `2xx` whose body is not a page (or is larger than the bound).
    #[error("jobag: bad page: {0}")]
    BadPage(String),
}

impl SourceError {
    /// Whether retrying the same call may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Transient(_))
    }
}

/// One page of the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangesPage {
    /// Whole postings as they are at their version, read only as JSON.
    pub changes: Vec<FeedItem>,
    /// Where the next read starts. When the feed omits it on an empty page,
    /// the cursor that was asked for (`""` from the beginning).
    pub next_cursor: String,
    /// More changes are ready now (read again without waiting).
    pub has_more: bool,
}

/// One page of the snapshot (every current posting).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotPage {
    pub postings: Vec<Value>,
    /// `None` on the last page (also when JobAG sends `""`).
    pub next_page_token: Option<String>,
}

/// One item of a change page.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// A JSON value, for the next stage to parse as a change.
    Json(Value),
    /// Bytes that cannot become a JSON value. Holds no content: the item
    /// may carry personal data.
    Unreadable(Unreadable),
}

/// Why a feed item could not be read, and its id when that much was legible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The item's top-level `id` string, unchecked.
    pub id: Option<String>,
    pub reason: String,
}

impl FeedItem {
    /// The item as JSON, `None` when unreadable.
    pub fn json(&self) -> Option<&Value> {
        match self {
            FeedItem::Json(v) => Some(v),
            FeedItem::Unreadable(_) => None,
        }
    }
}

/// Reason given for an item that held bytes that are not UTF-8.
pub const INVALID_UTF8: &str = "invalid UTF-8 in the feed item";
/// Reason given for an item nested deeper than serde_json's recursion limit.
pub const TOO_DEEP: &str = "nesting deeper than 128";

/// The envelope of a change page. Items are kept as raw text: serde_json
/// skips over a raw value without recursing (`ignore_value` keeps its own
/// stack), so an item of any depth cannot fail the page here.
#[derive(Deserialize)]
struct RawChanges<'a> {
    #[serde(borrow)]
    changes: Vec<&'a RawValue>,
    #[serde(default)]
    next_cursor: Option<Value>,
    #[serde(default)]
    has_more: Option<bool>,
}

#[derive(Deserialize)]
struct RawSnapshot {
    postings: Vec<Value>,
    #[serde(default)]
    next_page_token: Option<Value>,
}

/// An opaque token as a string: JSON strings as they are, numbers written
/// out, `null` and `""` as none.
fn token_of(v: Option<Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The JobAG client. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct JobagClient {
    http: reqwest::Client,
    /// Root given in `jobag.base_url`; API paths are appended to it.
    base: Url,
    /// `Bearer <token>`, marked sensitive so `Debug` of a request hides it.
    auth: Option<HeaderValue>,
    /// Schedule of the `*_with_retry` helpers.
    backoff: ExponentialBuilder,
    /// Bound of one response body.
    max_body: usize,
}

impl fmt::Debug for JobagClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobagClient")
            .field("base", &self.base.as_str())
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("max_body", &self.max_body)
            .finish()
    }
}

/// Default schedule of the `*_with_retry` helpers: 5 retries, 200 ms
/// doubling to at most 10 s, with jitter.
pub fn default_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(5)
        .with_jitter()
}

impl JobagClient {
    /// Builds the client. `timeout` bounds each whole call (a page of
    /// `jobag.page_size` postings included); `extra_ca` is a PEM bundle of
    /// roots trusted besides the system ones.
    pub fn new(
        base_url: &str,
        token: Option<SecretString>,
        timeout: Duration,
        extra_ca: Option<&Path>,
    ) -> Result<Self, SetupError> {
        let (base, http, auth) = http_setup(
            "jobag",
            base_url,
            token,
            timeout,
            extra_ca,
            reqwest::Client::builder(),
        )?;
        Ok(Self {
            http,
            base,
            auth,
            backoff: default_backoff(),
            max_body: MAX_PAGE_BODY,
        })
    }

    /// Replaces the schedule of the `*_with_retry` helpers.
    pub fn with_backoff(mut self, backoff: ExponentialBuilder) -> Self {
        self.backoff = backoff;
        self
    }

    /// Replaces the bound of one response body ([`MAX_PAGE_BODY`]).
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// The root this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET {base}/api/v1/postings/changes?after={cursor}&limit={n}`.
    /// `after` `None` (or `""`) reads from the beginning.
    pub async fn changes(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ChangesPage, SourceError> {
        let after = after.filter(|a| !a.is_empty());
        let mut url = self.url(&["api", "v1", "postings", "changes"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(a) = after {
                q.append_pair("after", a);
            }
            q.append_pair("limit", &limit.to_string());
        }
        let body = match self.get(url).await? {
            Fetched::Body(body) => body,
            Fetched::NotFound(status) => return Err(SourceError::Unexpected(status)),
            Fetched::Gone => return Err(SourceError::CursorGone),
        };
        let (text, replaced) = decode_lossy(&body);
        let raw: RawChanges = serde_json::from_str(&text)
            .map_err(|e| SourceError::BadPage(json_error_summary(&e)))?;
        let next_cursor = match token_of(raw.next_cursor) {
            Some(c) => c,
            None if raw.changes.is_empty() => after.unwrap_or_default().to_owned(),
            None => return Err(SourceError::BadPage("next_cursor missing".to_owned())),
        };
        let mut located = 0;
        let damaged: Vec<bool> = raw
            .changes
            .iter()
            .map(|item| match span_in(&text, item.get()) {
                Some((start, end)) => {
                    let n = replaced.partition_point(|&at| at < end)
                        - replaced.partition_point(|&at| at < start);
                    located += n;
                    n > 0
                }
                // Raw values borrow from the text, so this does not happen;
                // were it to, suspecting every item is the safe side.
                None => !replaced.is_empty(),
            })
            .collect();
        if located < replaced.len() {
            // The cursor itself may be what was damaged: taking it could
            // skip or repeat changes, so the page is refused as a whole.
            return Err(SourceError::BadPage(
                "invalid UTF-8 outside the feed items".to_owned(),
            ));
        }
        let changes = raw
            .changes
            .into_iter()
            .zip(damaged)
            .map(|(item, damaged)| read_item(item, damaged))
            .collect();
        let page = ChangesPage {
            has_more: raw.has_more.unwrap_or(false),
            changes,
            next_cursor,
        };
        tracing::debug!(
            changes = page.changes.len(),
            has_more = page.has_more,
            "jobag changes page"
        );
        Ok(page)
    }

    /// `GET {base}/api/v1/postings?page_token={t}&limit={n}`: one page of
    /// every current posting. `410` means the page token expired
    /// ([`SourceError::CursorGone`]: restart the snapshot).
    pub async fn snapshot_page(
        &self,
        page_token: Option<&str>,
        limit: u32,
    ) -> Result<SnapshotPage, SourceError> {
        let mut url = self.url(&["api", "v1", "postings"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = page_token.filter(|t| !t.is_empty()) {
                q.append_pair("page_token", t);
            }
            q.append_pair("limit", &limit.to_string());
        }
        let body = match self.get(url).await? {
            Fetched::Body(body) => body,
            Fetched::NotFound(status) => return Err(SourceError::Unexpected(status)),
            Fetched::Gone => return Err(SourceError::CursorGone),
        };
        let raw: RawSnapshot = serde_json::from_slice(&body)
            .map_err(|e| SourceError::BadPage(json_error_summary(&e)))?;
        tracing::debug!(postings = raw.postings.len(), "jobag snapshot page");
        Ok(SnapshotPage {
            postings: raw.postings,
            next_page_token: token_of(raw.next_page_token),
        })
    }

    /// `GET {base}/api/v1/postings/{id}`: the posting as it is now, `None`
    /// when JobAG does not have it (`404`, or `410`). An id no URL path can
    /// carry (`""`, `"."`, `".."`) is a posting JobAG cannot have: `None`.
    pub async fn posting(&self, id: &str) -> Result<Option<Value>, SourceError> {
        if matches!(id, "" | "." | "..") {
            return Ok(None);
        }
        let url = self.url(&["api", "v1", "postings", id]);
        let body = match self.get(url).await? {
            Fetched::Body(body) => body,
            Fetched::NotFound(_) | Fetched::Gone => {
                tracing::debug!(id, "jobag posting not found");
                return Ok(None);
            }
        };
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| SourceError::BadPage(json_error_summary(&e)))?;
        if !value.is_object() {
            return Err(SourceError::BadPage(
                "posting is not a JSON object".to_owned(),
            ));
        }
        tracing::debug!(id, "jobag posting read");
        Ok(Some(value))
    }

    /// Runs `op` until it succeeds, fails with a non-transient error, or
    /// the client's backoff schedule ([`default_backoff`]) runs out. For
    /// one-off calls (an operator's resync); the feed loop has its own pace.
    pub async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, SourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SourceError>>,
    {
        op.retry(self.backoff)
            .when(SourceError::is_transient)
            .notify(|e: &SourceError, delay: Duration| {
                tracing::debug!(error = %e, delay_ms = delay.as_millis() as u64, "jobag retry");
            })
            .await
    }

    /// [`JobagClient::posting`] retried on transient errors.
    pub async fn posting_with_retry(&self, id: &str) -> Result<Option<Value>, SourceError> {
        self.with_retry(|| self.posting(id)).await
    }

    /// [`JobagClient::changes`] retried on transient errors.
    pub async fn changes_with_retry(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ChangesPage, SourceError> {
        self.with_retry(|| self.changes(after, limit)).await
    }

    /// [`JobagClient::snapshot_page`] retried on transient errors.
    pub async fn snapshot_page_with_retry(
        &self,
        page_token: Option<&str>,
        limit: u32,
    ) -> Result<SnapshotPage, SourceError> {
        self.with_retry(|| self.snapshot_page(page_token, limit))
            .await
    }

    /// The base URL with `segments` appended, each one percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `parse_base` checked that the base can carry a path.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends a GET and reads the bounded body of a `2xx`; maps every other
    /// answer onto [`SourceError`], leaving `404`/`410` to the caller.
    async fn get(&self, url: Url) -> Result<Fetched, SourceError> {
        let mut request = self.http.get(url);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| SourceError::Transient(describe_error(&e)))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            404 => return Ok(Fetched::NotFound(status)),
            410 => return Ok(Fetched::Gone),
            401 | 403 | 407 => return Err(SourceError::Auth(status)),
            408 | 429 | 500..=599 => {
                return Err(SourceError::Transient(format!("HTTP {status}")));
            }
            _ => return Err(SourceError::Unexpected(status)),
        }
        match read_bounded(response, self.max_body).await {
            (body, None) => Ok(Fetched::Body(body)),
            (_, Some(BodyError::TooLarge(limit))) => Err(SourceError::BadPage(format!(
                "body larger than {limit} bytes"
            ))),
            (_, Some(BodyError::Failed(why))) => Err(SourceError::Transient(why)),
        }
    }
}

/// The body as text with every invalid UTF-8 sequence replaced by U+FFFD,
/// and where (byte offsets in the text) the replacements went: a U+FFFD the
/// feed sent itself is content, one of ours marks a damaged item.
fn decode_lossy(body: &[u8]) -> (Cow<'_, str>, Vec<usize>) {
    if let Ok(text) = std::str::from_utf8(body) {
        return (Cow::Borrowed(text), Vec::new());
    }
    let mut text = String::with_capacity(body.len() + 16);
    let mut replaced = Vec::new();
    for chunk in body.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            replaced.push(text.len());
            text.push(char::REPLACEMENT_CHARACTER);
        }
    }
    (Cow::Owned(text), replaced)
}

/// Byte range of `part` within `whole`, when it is a slice of it (a raw
/// value borrowed from the text always is).
fn span_in(whole: &str, part: &str) -> Option<(usize, usize)> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some((start, end))
}

/// One raw item as a [`FeedItem`]; `damaged` when it held bytes that were
/// not UTF-8 (its text then carries our U+FFFD in their place).
fn read_item(raw: &RawValue, damaged: bool) -> FeedItem {
    if damaged {
        return FeedItem::Unreadable(Unreadable {
            id: legible_id(raw),
            reason: INVALID_UTF8.to_owned(),
        });
    }
    match serde_json::from_str(raw.get()) {
        Ok(value) => FeedItem::Json(value),
        Err(e) => FeedItem::Unreadable(Unreadable {
            id: legible_id(raw),
            reason: item_error(&e),
        }),
    }
}

/// The top-level `id` string of an item that is no `Value`. Reading only
/// that field skips the rest without recursing, so depth does not matter.
fn legible_id(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Head {
        id: Option<String>,
    }
    serde_json::from_str::<Head>(raw.get()).ok()?.id
}

/// Why a syntactically valid item still is no `Value`. serde_json's messages
/// for these are fixed texts that quote nothing; its position, relative to
/// the item, would only confuse.
fn item_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or_default();
    if msg == "recursion limit exceeded" {
        TOO_DEEP.to_owned()
    } else if e.classify() == serde_json::error::Category::Syntax && !msg.contains('"') {
        format!("unreadable JSON: {msg}")
    } else {
        "unreadable JSON".to_owned()
    }
}

/// A GET's answer before the endpoint-specific reading.
enum Fetched {
    Body(Vec<u8>),
    NotFound(u16),
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_client::test_server::{Reply, reply, serve};
    use serde_json::json;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn client(base: &str, token: Option<&str>) -> JobagClient {
        JobagClient::new(base, token.map(SecretString::from), TIMEOUT, None)
            .unwrap()
            .with_backoff(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(1))
                    .with_max_delay(Duration::from_millis(5))
                    .with_max_times(3),
            )
    }

    #[tokio::test]
    async fn changes_reads_a_page_and_keeps_bad_items_raw() {
        let body = r#"{"changes": [
            {"id": "a", "version": 1, "deleted": true, "updated_at": "2026-01-01T00:00:00Z"},
            {"id": 5, "version": "x"},
            "not even an object",
            null
          ], "next_cursor": "c-2", "has_more": true, "extra": 1}"#;
        let (base, mut rx) = serve(vec![reply(200, &[], body)]).await;
        let page = client(&base, Some("jt"))
            .changes(Some("c 1&"), 500)
            .await
            .unwrap();
        assert_eq!(page.changes.len(), 4);
        assert_eq!(page.changes[0].json().unwrap()["id"], json!("a"));
        assert_eq!(page.changes[2], FeedItem::Json(json!("not even an object")));
        assert_eq!(page.next_cursor, "c-2");
        assert!(page.has_more);
        let req = rx.recv().await.unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(
            req.target,
            "/api/v1/postings/changes?after=c+1%26&limit=500"
        );
        assert_eq!(req.header("authorization"), Some("Bearer jt"));
    }

    /// A `200` carrying `body` as it is, UTF-8 or not.
    fn reply_bytes(body: &[u8]) -> Reply {
        let mut raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        Reply::Raw(raw)
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn unreadable(id: Option<&str>, reason: &str) -> FeedItem {
        FeedItem::Unreadable(Unreadable {
            id: id.map(str::to_owned),
            reason: reason.to_owned(),
        })
    }

    #[tokio::test]
    async fn items_that_are_no_json_value_do_not_fail_the_page() {
        let mut body = Vec::new();
        body.extend_from_slice(br#"{"changes": [{"id": "good-1", "version": 1},"#);
        body.extend_from_slice(
            b"{\"id\": \"bad-utf8\", \"version\": 2, \"title\": \"Caf\xe9 \xff\xfe\"},",
        );
        body.extend_from_slice(
            format!(r#"{{"id": "deep", "version": 3, "x": {}}},"#, nested(200)).as_bytes(),
        );
        body.extend_from_slice(format!("{},", nested(129)).as_bytes());
        body.extend_from_slice(br#"{"id": "surrogate", "title": "\ud800"},"#);
        body.extend_from_slice(br#"{"id": 7, "salary": 1e400},"#);
        // U+FFFD sent by the feed itself is content, not damage.
        body.extend_from_slice("{\"id\": \"good-2\", \"title\": \"\u{fffd}\"}".as_bytes());
        body.extend_from_slice(
            format!(r#"], "extra": {}, "next_cursor": "c9"}}"#, nested(300)).as_bytes(),
        );
        let (base, _rx) = serve(vec![reply_bytes(&body)]).await;
        let page = client(&base, None).changes(None, 10).await.unwrap();
        assert_eq!(page.next_cursor, "c9");
        assert_eq!(
            page.changes,
            vec![
                FeedItem::Json(json!({"id": "good-1", "version": 1})),
                unreadable(Some("bad-utf8"), INVALID_UTF8),
                unreadable(Some("deep"), TOO_DEEP),
                unreadable(None, TOO_DEEP),
                unreadable(
                    Some("surrogate"),
                    "unreadable JSON: unexpected end of hex escape"
                ),
                unreadable(None, "unreadable JSON: number out of range"),
                FeedItem::Json(json!({"id": "good-2", "title": "\u{fffd}"})),
            ]
        );
        // Nothing the items held is in a reason.
        for item in &page.changes {
            if let FeedItem::Unreadable(u) = item {
                assert!(!u.reason.contains("Caf"), "{u:?}");
            }
        }
    }

    #[tokio::test]
    async fn damage_outside_the_items_refuses_the_page() {
        let (base, _rx) = serve(vec![
            reply_bytes(b"{\"changes\": [{\"id\": \"a\"}], \"next_cursor\": \"c\xff\"}"),
            reply_bytes(b"{\"changes\": [], \"note\": \"\xc3\"}"),
            reply_bytes(format!(r#"{{"changes": [], "next_cursor": {}}}"#, nested(200)).as_bytes()),
        ])
        .await;
        let c = client(&base, None);
        for _ in 0..2 {
            assert_eq!(
                c.changes(None, 10).await.unwrap_err(),
                SourceError::BadPage("invalid UTF-8 outside the feed items".into())
            );
        }
        let e = c.changes(None, 10).await.unwrap_err();
        assert!(matches!(e, SourceError::BadPage(_)), "{e:?}");
    }

    #[tokio::test]
    async fn changes_from_the_beginning_sends_no_after() {
        let (base, mut rx) = serve(vec![
            reply(200, &[], r#"{"changes": [], "next_cursor": "c0"}"#),
            reply(200, &[], r#"{"changes": []}"#),
            reply(200, &[], r#"{"changes": [], "next_cursor": null}"#),
            reply(200, &[], r#"{"changes": [{"id": "a"}]}"#),
            reply(200, &[], r#"{"changes": [], "next_cursor": 42}"#),
        ])
        .await;
        let c = client(&base, None);
        let page = c.changes(None, 10).await.unwrap();
        assert_eq!(page.next_cursor, "c0");
        assert!(!page.has_more, "has_more defaults to false");
        let req = rx.recv().await.unwrap();
        assert_eq!(req.target, "/api/v1/postings/changes?limit=10");
        assert_eq!(req.header("authorization"), None);
        // Empty page without a cursor: stay where we were.
        assert_eq!(c.changes(Some("c7"), 10).await.unwrap().next_cursor, "c7");
        assert_eq!(c.changes(Some(""), 10).await.unwrap().next_cursor, "");
        assert_eq!(
            rx.recv().await.unwrap().target,
            "/api/v1/postings/changes?after=c7&limit=10"
        );
        assert_eq!(
            rx.recv().await.unwrap().target,
            "/api/v1/postings/changes?limit=10"
        );
        // Items without a cursor cannot be acknowledged.
        assert_eq!(
            c.changes(Some("c7"), 10).await.unwrap_err(),
            SourceError::BadPage("next_cursor missing".into())
        );
        assert_eq!(c.changes(None, 10).await.unwrap().next_cursor, "42");
    }

    #[tokio::test]
    async fn changes_errors_by_status() {
        let (base, _rx) = serve(vec![
            reply(410, &[], ""),
            reply(401, &[], ""),
            reply(403, &[], ""),
            reply(503, &[], ""),
            reply(429, &[("Retry-After", "1")], ""),
            reply(408, &[], ""),
            reply(404, &[], ""),
            reply(400, &[], ""),
            reply(302, &[("Location", "http://elsewhere/")], ""),
            reply(200, &[], "<html>not json</html>"),
            reply(200, &[], r#"{"changes": {"id": "secret title"}}"#),
            Reply::Close,
        ])
        .await;
        let c = client(&base, None);
        assert_eq!(
            c.changes(Some("old"), 1).await.unwrap_err(),
            SourceError::CursorGone
        );
        assert_eq!(
            c.changes(None, 1).await.unwrap_err(),
            SourceError::Auth(401)
        );
        assert_eq!(
            c.changes(None, 1).await.unwrap_err(),
            SourceError::Auth(403)
        );
        for s in [503, 429, 408] {
            assert_eq!(
                c.changes(None, 1).await.unwrap_err(),
                SourceError::Transient(format!("HTTP {s}"))
            );
        }
        for s in [404, 400, 302] {
            assert_eq!(
                c.changes(None, 1).await.unwrap_err(),
                SourceError::Unexpected(s)
            );
        }
        let e = c.changes(None, 1).await.unwrap_err();
        assert!(matches!(e, SourceError::BadPage(_)), "{e:?}");
        let e = c.changes(None, 1).await.unwrap_err();
        assert!(matches!(e, SourceError::BadPage(_)), "{e:?}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = c.changes(None, 1).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
    }

    #[tokio::test]
    async fn endless_body_is_cut_at_the_bound() {
        let (base, _rx) = serve(vec![Reply::Endless]).await;
        let c = client(&base, None).with_max_body(1024 * 1024);
        let e = c.changes(None, 1).await.unwrap_err();
        assert_eq!(
            e,
            SourceError::BadPage("body larger than 1048576 bytes".into())
        );
    }

    #[tokio::test]
    async fn declared_oversize_body_is_refused_unread() {
        let (base, _rx) = serve(vec![reply(200, &[], &"x".repeat(4096))]).await;
        let c = client(&base, None).with_max_body(100);
        let e = c.snapshot_page(None, 1).await.unwrap_err();
        assert_eq!(e, SourceError::BadPage("body larger than 100 bytes".into()));
    }

    #[tokio::test]
    async fn timeout_is_transient() {
        let (base, _rx) = serve(vec![Reply::Hang(Duration::from_secs(10))]).await;
        let c = JobagClient::new(&base, None, Duration::from_millis(200), None).unwrap();
        assert_eq!(
            c.changes(None, 1).await.unwrap_err(),
            SourceError::Transient("timeout".into())
        );
    }

    #[tokio::test]
    async fn snapshot_pages() {
        let (base, mut rx) = serve(vec![
            reply(
                200,
                &[],
                r#"{"postings": [{"id": "a"}, 7], "next_page_token": "t2"}"#,
            ),
            reply(200, &[], r#"{"postings": [], "next_page_token": null}"#),
            reply(200, &[], r#"{"postings": [], "next_page_token": ""}"#),
            reply(410, &[], ""),
        ])
        .await;
        let c = client(&base, None);
        let p = c.snapshot_page(None, 2).await.unwrap();
        assert_eq!(p.postings, vec![json!({"id": "a"}), json!(7)]);
        assert_eq!(p.next_page_token.as_deref(), Some("t2"));
        assert_eq!(rx.recv().await.unwrap().target, "/api/v1/postings?limit=2");
        assert_eq!(
            c.snapshot_page(Some("t2"), 2)
                .await
                .unwrap()
                .next_page_token,
            None
        );
        assert_eq!(
            rx.recv().await.unwrap().target,
            "/api/v1/postings?page_token=t2&limit=2"
        );
        assert_eq!(
            c.snapshot_page(Some("t3"), 2)
                .await
                .unwrap()
                .next_page_token,
            None
        );
        assert_eq!(
            c.snapshot_page(Some("t4"), 2).await.unwrap_err(),
            SourceError::CursorGone
        );
    }

    #[tokio::test]
    async fn posting_by_id() {
        let (base, mut rx) = serve(vec![
            reply(200, &[], r#"{"id": "a/b c", "version": 3}"#),
            reply(404, &[], ""),
            reply(410, &[], ""),
            reply(200, &[], "[1]"),
            reply(500, &[], ""),
        ])
        .await;
        let c = client(&base, Some("t"));
        let p = c.posting("a/b c").await.unwrap().unwrap();
        assert_eq!(p["version"], json!(3));
        assert_eq!(
            rx.recv().await.unwrap().target,
            "/api/v1/postings/a%2Fb%20c"
        );
        assert_eq!(c.posting("gone").await.unwrap(), None);
        assert_eq!(c.posting("gone").await.unwrap(), None);
        assert!(matches!(c.posting("x").await, Err(SourceError::BadPage(_))));
        assert_eq!(
            c.posting("x").await.unwrap_err(),
            SourceError::Transient("HTTP 500".into())
        );
        for id in ["", ".", ".."] {
            assert_eq!(c.posting(id).await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn posting_with_retry_retries_only_transient_errors() {
        let (base, mut rx) = serve(vec![
            reply(503, &[], ""),
            Reply::Close,
            reply(200, &[], r#"{"id": "p", "version": 1}"#),
            reply(401, &[], ""),
        ])
        .await;
        let c = client(&base, None);
        let p = c.posting_with_retry("p").await.unwrap().unwrap();
        assert_eq!(p["id"], json!("p"));
        for _ in 0..3 {
            rx.recv().await.unwrap();
        }
        // Auth is not retried: exactly one more request.
        assert_eq!(
            c.posting_with_retry("p").await.unwrap_err(),
            SourceError::Auth(401)
        );
        rx.recv().await.unwrap();
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let replies = (0..10).map(|_| reply(502, &[], "")).collect();
        let (base, mut rx) = serve(replies).await;
        let c = client(&base, None);
        assert_eq!(
            c.changes_with_retry(None, 1).await.unwrap_err(),
            SourceError::Transient("HTTP 502".into())
        );
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 4, "one call and three retries");
    }

    #[test]
    fn setup_errors_and_debug() {
        let e = JobagClient::new("nope", None, TIMEOUT, None).unwrap_err();
        assert!(e.to_string().starts_with("jobag.base_url: "), "{e}");
        let e = JobagClient::new("http://jobag.example", None, TIMEOUT, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("jobag.base_url: {}", crate::config::PLAIN_HTTP_REFUSED)
        );
        let e =
            JobagClient::new("http://localhost", Some("a\nb".into()), TIMEOUT, None).unwrap_err();
        assert!(matches!(e, SetupError::Token { client: "jobag" }));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let e = JobagClient::new("http://localhost", None, TIMEOUT, Some(&ca)).unwrap_err();
        assert!(e.to_string().starts_with("tls.extra_ca_file: "), "{e}");
        let c = JobagClient::new("http://localhost", Some("s3cr3t".into()), TIMEOUT, None).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
