//! The HTTP client of the JobAG API (SPEC 4.1): change feed pages, snapshot
//! pages, single postings. One `reqwest` client (keep-alive pool, TLS
//! verification always on), bounded response bodies.
//!
//! A page is never parsed as one tree of values: its item array is read one
//! element at a time, each only scanned for its end and kept as a range of
//! the page text ([`FeedItem::Raw`]), so reading a page costs about its
//! body. The bounds SPEC 4.1 sets on what a feed may send are checked while
//! reading, before anything is built from the items. Parsing each item (and
//! quarantining a bad one) is the next stage's job, one item at a time, so
//! one bad item never fails a page. That holds for bytes too: an item that
//! holds invalid UTF-8 is handed on as [`FeedItem::Unreadable`] instead of
//! failing the page and blocking the feed.
//! Nothing here logs a token or posting content, only ids, counts and
//! statuses; error messages carry statuses and error kinds, never content.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
    /// Whole postings as they are at their version, each still JSON text.
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
    /// Each still JSON text; an item that cannot be read (or is over
    /// [`MAX_ITEM`]) is [`FeedItem::Unreadable`], for reconcile to skip.
    pub postings: Vec<FeedItem>,
    /// `None` on the last page (also when JobAG sends `""`).
    pub next_page_token: Option<String>,
}

/// One item of a page, kept as the text JobAG sent until the next stage
/// reads it: a page never becomes one tree of values, only each item in
/// turn, when it is parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// The item's JSON text, a slice of its page.
    Raw(RawItem),
    /// Bytes that cannot be an item. Holds no content: the item may carry
    /// personal data.
    Unreadable(Unreadable),
}

/// The JSON text of one item: a range of the page it came in, which it
/// shares with the page's other items (no copy per item).
#[derive(Clone, PartialEq)]
pub struct RawItem {
    page: Arc<String>,
    start: usize,
    end: usize,
}

impl fmt::Debug for RawItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text may carry personal data: its size only.
        write!(f, "RawItem({} bytes)", self.end - self.start)
    }
}

impl RawItem {
    /// The item as it is in the page.
    pub fn text(&self) -> &str {
        self.page.get(self.start..self.end).unwrap_or_default()
    }
}

/// Why a feed item could not be read, and its id when that much was legible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The item's top-level `id` string, unchecked.
    pub id: Option<String>,
    pub reason: String,
}

impl FeedItem {
    /// An item of its own, from its JSON text (unchecked until read).
    pub fn from_text(text: impl Into<String>) -> FeedItem {
        let page = Arc::new(text.into());
        let end = page.len();
        FeedItem::Raw(RawItem {
            page,
            start: 0,
            end,
        })
    }

    /// The item as a JSON value, or why it cannot be one. Only this item's
    /// tree is built, so a page costs one item's tree at a time, and only
    /// when [`too_complex`] allows: the tree of an item is then at most a
    /// few MiB, whatever its text.
    pub fn read(&self) -> Result<Value, Unreadable> {
        match self {
            FeedItem::Raw(raw) => {
                let unreadable = |reason| Unreadable {
                    id: legible_id(raw.text()),
                    reason,
                };
                if let Some(why) = too_complex(raw.text().as_bytes()) {
                    return Err(unreadable(why));
                }
                serde_json::from_str(raw.text()).map_err(|e| unreadable(item_error(&e)))
            }
            FeedItem::Unreadable(why) => Err(why.clone()),
        }
    }

    /// The item's top-level `id` string and `version` integer when it has
    /// them, read without building a tree (the rest is skipped unparsed).
    pub fn head(&self) -> (Option<String>, Option<u64>) {
        match self {
            FeedItem::Raw(raw) => serde_json::from_str::<Head>(raw.text())
                .map(|h| (h.id.string(), h.version.u64()))
                .unwrap_or_default(),
            FeedItem::Unreadable(why) => (why.id.clone(), None),
        }
    }
}

/// Reason given for an item that held bytes that are not UTF-8.
pub const INVALID_UTF8: &str = "invalid UTF-8 in the feed item";
/// Reason given for an item nested deeper than serde_json's recursion limit.
pub const TOO_DEEP: &str = "nesting deeper than 128";

/// The longest `next_cursor` taken from the feed (SPEC 4.1); a longer one
/// is a feed error, since the agent would store it and send it back.
pub const MAX_CURSOR_LEN: usize = 1024;
/// The largest item taken (SPEC 4.1): a change over it fails its page, a
/// snapshot item over it is skipped.
pub const MAX_ITEM: usize = 1024 * 1024;

/// Most arrays and objects an item may hold. A tree costs about 150 bytes
/// per array or object for two bytes of text (`[]`); a posting holds a few
/// dozen.
pub const MAX_ITEM_CONTAINERS: usize = 4096;
/// Most values an item may hold, counted by their separators; a value costs
/// 32 bytes or more in a tree for as few as two of text (`1,`).
pub const MAX_ITEM_VALUES: usize = 65_536;

/// Why the JSON text of one item would cost too much as a tree, when it
/// would: a scan of its bytes that counts the arrays, objects and values
/// outside strings (nothing is built, so its cost is the same for any text).
pub fn too_complex(text: &[u8]) -> Option<String> {
    let (mut in_string, mut escaped) = (false, false);
    let (mut containers, mut separators) = (0usize, 0usize);
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => containers += 1,
            b',' | b':' => separators += 1,
            _ => {}
        }
    }
    if containers > MAX_ITEM_CONTAINERS {
        Some(format!(
            "more than {MAX_ITEM_CONTAINERS} arrays and objects in one item"
        ))
    } else if separators > MAX_ITEM_VALUES {
        Some(format!("more than {MAX_ITEM_VALUES} values in one item"))
    } else {
        None
    }
}

/// What makes a whole page unusable, beyond JSON syntax (SPEC 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lie {
    CursorTooLong,
    CursorNotAToken,
    TooManyItems(usize),
    ItemTooLarge,
}

impl fmt::Display for Lie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lie::CursorTooLong => write!(f, "next_cursor longer than {MAX_CURSOR_LEN} bytes"),
            Lie::CursorNotAToken => f.write_str("next_cursor is not a string or a number"),
            Lie::TooManyItems(limit) => write!(f, "more items than the limit of {limit}"),
            Lie::ItemTooLarge => write!(f, "an item larger than {MAX_ITEM} bytes"),
        }
    }
}

/// What to do with an item over [`MAX_ITEM`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Oversize {
    /// Fail the page (the feed: skipping a change would lose it silently).
    FailPage,
    /// Keep it as [`FeedItem::Unreadable`] (the snapshot: reconcile skips it).
    Skip,
}

/// How a page is read: the name of its item array, and its bounds.
#[derive(Clone, Copy)]
struct PageShape<'c> {
    items: &'static str,
    token: &'static str,
    /// At most this many items (`None`: as many as the body bound allows).
    limit: Option<usize>,
    oversize: Oversize,
    /// Where the reader notes which bound the page broke, so the error says
    /// it in words of its own rather than serde's.
    lie: &'c Cell<Option<Lie>>,
}

impl PageShape<'_> {
    fn broke<E: de::Error>(&self, lie: Lie) -> E {
        self.lie.set(Some(lie));
        E::custom(lie)
    }
}

/// A page as read: items still borrowed from the text.
struct Envelope<'a> {
    items: Vec<Item<'a>>,
    token: Option<String>,
    has_more: Option<bool>,
}

/// One item as read from the page text.
enum Item<'a> {
    Raw(&'a RawValue),
    TooLarge(&'a RawValue),
}

impl<'de> DeserializeSeed<'de> for PageShape<'_> {
    type Value = Envelope<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Envelope<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageShape<'_> {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with `{}`", self.items)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut items = None;
        let mut token = None;
        let mut has_more = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.items {
                if items.is_some() {
                    return Err(de::Error::duplicate_field(self.items));
                }
                items = Some(map.next_value_seed(Items(self))?);
            } else if key == self.token {
                if token.is_some() {
                    return Err(de::Error::duplicate_field(self.token));
                }
                token = Some(map.next_value_seed(Token(self))?);
            } else if key == "has_more" {
                has_more = map.next_value::<Option<bool>>()?;
            } else {
                // Skipped without recursing: any depth is fine here.
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Envelope {
            items: items.ok_or_else(|| de::Error::missing_field(self.items))?,
            token: token.flatten(),
            has_more,
        })
    }
}

/// The item array, read one element at a time: each is only scanned for
/// its end (serde_json keeps one byte per level of nesting for that) and
/// borrowed from the text, so the page's bounds are checked before
/// anything is built from it.
struct Items<'c>(PageShape<'c>);

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = Vec<Item<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Item<'de>>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = Vec<Item<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` as an array", self.0.items)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Item<'de>>, A::Error> {
        let shape = self.0;
        let mut items = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if shape.limit.is_some_and(|limit| items.len() >= limit) {
                return Err(shape.broke(Lie::TooManyItems(items.len())));
            }
            if raw.get().len() > MAX_ITEM {
                match shape.oversize {
                    Oversize::FailPage => return Err(shape.broke(Lie::ItemTooLarge)),
                    Oversize::Skip => items.push(Item::TooLarge(raw)),
                }
            } else {
                items.push(Item::Raw(raw));
            }
        }
        Ok(items)
    }
}

/// An opaque token as a string: JSON strings as they are, numbers written
/// out, `null` and `""` as none; anything else, or a string over
/// [`MAX_CURSOR_LEN`], fails the page.
struct Token<'c>(PageShape<'c>);

impl<'de> DeserializeSeed<'de> for Token<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Token<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` as a string", self.0.token)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<String>, E> {
        if s.len() > MAX_CURSOR_LEN {
            return Err(self.0.broke(Lie::CursorTooLong));
        }
        Ok((!s.is_empty()).then(|| s.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Option<String>, E> {
        Ok(Some(n.to_string()))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Option<String>, E> {
        Ok(Some(n.to_string()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Option<String>, E> {
        Ok(serde_json::Number::from_f64(n).map(|n| n.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<String>, E> {
        Err(self.0.broke(Lie::CursorNotAToken))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Option<String>, A::Error> {
        Err(self.0.broke(Lie::CursorNotAToken))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Option<String>, A::Error> {
        Err(self.0.broke(Lie::CursorNotAToken))
    }
}

/// An item's top-level `id` and `version`, each whatever JSON it is.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Head {
    id: Scalar,
    version: Scalar,
}

/// A JSON value as far as `Head` needs it: a string, a non-negative
/// integer, or something else (skipped unparsed, so of any depth).
#[derive(Default)]
enum Scalar {
    Str(String),
    U64(u64),
    #[default]
    Other,
}

impl Scalar {
    fn string(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn u64(self) -> Option<u64> {
        match self {
            Scalar::U64(n) => Some(n),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(s.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar::U64(n))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
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
    /// `after` `None` (or `""`) reads from the beginning. A page that breaks
    /// a bound of SPEC 4.1 (more than `limit` items, an item over
    /// [`MAX_ITEM`], a cursor over [`MAX_CURSOR_LEN`]) is
    /// [`SourceError::BadPage`]: none of it is taken.
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
        let body = match self.get(url, self.max_body).await? {
            Fetched::Body(body) => body,
            Fetched::NotFound(status) => return Err(SourceError::Unexpected(status)),
            Fetched::Gone => return Err(SourceError::CursorGone),
        };
        let lie = Cell::new(None);
        let shape = PageShape {
            items: "changes",
            token: "next_cursor",
            limit: Some(limit as usize),
            oversize: Oversize::FailPage,
            lie: &lie,
        };
        let ReadPage {
            items: changes,
            token,
            has_more,
        } = read_page(body, shape)?;
        let next_cursor = match token {
            Some(c) => c,
            None if changes.is_empty() => after.unwrap_or_default().to_owned(),
            None => return Err(SourceError::BadPage("next_cursor missing".to_owned())),
        };
        let page = ChangesPage {
            has_more: has_more.unwrap_or(false),
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
    /// ([`SourceError::CursorGone`]: restart the snapshot). An item that
    /// cannot be read is handed on as [`FeedItem::Unreadable`], never
    /// failing the page.
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
        let body = match self.get(url, self.max_body).await? {
            Fetched::Body(body) => body,
            Fetched::NotFound(status) => return Err(SourceError::Unexpected(status)),
            Fetched::Gone => return Err(SourceError::CursorGone),
        };
        let lie = Cell::new(None);
        let shape = PageShape {
            items: "postings",
            token: "next_page_token",
            limit: None,
            oversize: Oversize::Skip,
            lie: &lie,
        };
        let ReadPage {
            items: postings,
            token: next_page_token,
            ..
        } = read_page(body, shape)?;
        tracing::debug!(postings = postings.len(), "jobag snapshot page");
        Ok(SnapshotPage {
            postings,
            next_page_token,
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
        let body = match self.get(url, self.max_body.min(MAX_ITEM)).await? {
            Fetched::Body(body) => body,
            Fetched::NotFound(_) | Fetched::Gone => {
                tracing::debug!(id, "jobag posting not found");
                return Ok(None);
            }
        };
        if let Some(why) = too_complex(&body) {
            return Err(SourceError::BadPage(why));
        }
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
    async fn get(&self, url: Url, max_body: usize) -> Result<Fetched, SourceError> {
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
        match read_bounded(response, max_body).await {
            (body, None) => Ok(Fetched::Body(body)),
            (_, Some(BodyError::TooLarge(limit))) => Err(SourceError::BadPage(format!(
                "body larger than {limit} bytes"
            ))),
            (_, Some(BodyError::Failed(why))) => Err(SourceError::Transient(why)),
        }
    }
}

/// Splits a page body into its items (as ranges of the page text), its
/// token and `has_more`, checking the page's bounds as it goes. An item
/// that held bytes that are not UTF-8 becomes [`FeedItem::Unreadable`]; such
/// bytes anywhere else fail the page (the cursor itself may be what was
/// damaged: taking it could skip or repeat changes).
fn read_page(body: Vec<u8>, shape: PageShape<'_>) -> Result<ReadPage, SourceError> {
    let (text, replaced) = decode_lossy(body);
    let page = Arc::new(text);
    let mut de = serde_json::Deserializer::from_str(&page);
    let read = shape
        .deserialize(&mut de)
        .and_then(|e| de.end().map(|()| e));
    let envelope = match read {
        Ok(envelope) => envelope,
        Err(e) => {
            return Err(SourceError::BadPage(match shape.lie.get() {
                Some(lie) => lie.to_string(),
                None => json_error_summary(&e),
            }));
        }
    };
    let mut located = 0;
    let mut items = Vec::with_capacity(envelope.items.len());
    for item in &envelope.items {
        let (Item::Raw(raw) | Item::TooLarge(raw)) = *item;
        // Raw values borrow from the page text, so a span always exists;
        // were it missing, suspecting the item is the safe side.
        let span = span_in(&page, raw.get());
        let damaged = match span {
            Some((start, end)) => {
                let n = replaced.partition_point(|&at| at < end)
                    - replaced.partition_point(|&at| at < start);
                located += n;
                n > 0
            }
            None => true,
        };
        let unreadable = |reason: String| {
            FeedItem::Unreadable(Unreadable {
                id: legible_id(raw.get()),
                reason,
            })
        };
        items.push(match (item, span) {
            (Item::Raw(_), Some((start, end))) if !damaged => FeedItem::Raw(RawItem {
                page: Arc::clone(&page),
                start,
                end,
            }),
            (Item::TooLarge(_), _) if !damaged => {
                unreadable(format!("item larger than {MAX_ITEM} bytes"))
            }
            _ => unreadable(INVALID_UTF8.to_owned()),
        });
    }
    if located < replaced.len() {
        return Err(SourceError::BadPage(
            "invalid UTF-8 outside the feed items".to_owned(),
        ));
    }
    Ok(ReadPage {
        items,
        token: envelope.token,
        has_more: envelope.has_more,
    })
}

/// A page as [`read_page`] hands it on.
struct ReadPage {
    items: Vec<FeedItem>,
    token: Option<String>,
    has_more: Option<bool>,
}

/// The body as text with every invalid UTF-8 sequence replaced by U+FFFD,
/// and where (byte offsets in the text) the replacements went: a U+FFFD the
/// feed sent itself is content, one of ours marks a damaged item. Valid
/// UTF-8 (the normal case) is taken over without a copy.
fn decode_lossy(body: Vec<u8>) -> (String, Vec<usize>) {
    let body = match String::from_utf8(body) {
        Ok(text) => return (text, Vec::new()),
        Err(e) => e.into_bytes(),
    };
    let mut text = String::with_capacity(body.len() + 16);
    let mut replaced = Vec::new();
    for chunk in body.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            replaced.push(text.len());
            text.push(char::REPLACEMENT_CHARACTER);
        }
    }
    (text, replaced)
}

/// Byte range of `part` within `whole`, when it is a slice of it (a raw
/// value borrowed from the text always is).
fn span_in(whole: &str, part: &str) -> Option<(usize, usize)> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some((start, end))
}

/// The top-level `id` string of an item that is no `Value`. Reading only
/// that field skips the rest without recursing, so depth does not matter.
fn legible_id(raw: &str) -> Option<String> {
    serde_json::from_str::<Head>(raw).ok()?.id.string()
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
        assert_eq!(page.changes[0].read().unwrap()["id"], json!("a"));
        assert_eq!(page.changes[0].head(), (Some("a".into()), Some(1)));
        assert_eq!(page.changes[1].head(), (None, None));
        assert_eq!(page.changes[2].read().unwrap(), json!("not even an object"));
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

    fn unreadable(id: Option<&str>, reason: &str) -> Result<Value, Unreadable> {
        Err(Unreadable {
            id: id.map(str::to_owned),
            reason: reason.to_owned(),
        })
    }

    fn read_all(items: &[FeedItem]) -> Vec<Result<Value, Unreadable>> {
        items.iter().map(FeedItem::read).collect()
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
            read_all(&page.changes),
            vec![
                Ok(json!({"id": "good-1", "version": 1})),
                unreadable(Some("bad-utf8"), INVALID_UTF8),
                unreadable(Some("deep"), TOO_DEEP),
                unreadable(None, TOO_DEEP),
                unreadable(
                    Some("surrogate"),
                    "unreadable JSON: unexpected end of hex escape"
                ),
                unreadable(None, "unreadable JSON: number out of range"),
                Ok(json!({"id": "good-2", "title": "\u{fffd}"})),
            ]
        );
        // Nothing the items held is in a reason.
        for item in read_all(&page.changes) {
            if let Err(u) = item {
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

    fn page_of(items: &[String], cursor: &str) -> String {
        format!(
            r#"{{"changes": [{}], "next_cursor": "{cursor}", "has_more": false}}"#,
            items.join(",")
        )
    }

    fn deletion(i: usize) -> String {
        format!(r#"{{"id": "p-{i}", "version": 1, "deleted": true}}"#)
    }

    #[tokio::test]
    async fn a_page_beyond_the_bounds_of_spec_4_1_is_refused_whole() {
        let three: Vec<String> = (0..3).map(deletion).collect();
        let big_title = "x".repeat(MAX_ITEM);
        let big = format!(r#"{{"id": "big", "version": 1, "title": "{big_title}"}}"#);
        let at_bound = format!(
            r#"{{"id": "ok", "version": 1, "t": "{}"}}"#,
            "y".repeat(MAX_ITEM - 35)
        );
        assert_eq!(at_bound.len(), MAX_ITEM);
        let (base, _rx) = serve(vec![
            reply(200, &[], &page_of(&three, "c3")),
            reply(200, &[], &page_of(&three, "c3")),
            reply(
                200,
                &[],
                &page_of(&[deletion(0)], &"k".repeat(MAX_CURSOR_LEN + 1)),
            ),
            reply(
                200,
                &[],
                &page_of(&[deletion(0)], &"k".repeat(MAX_CURSOR_LEN)),
            ),
            reply(200, &[], &page_of(&[deletion(0), big], "c2")),
            reply(200, &[], &page_of(&[at_bound], "c1")),
            reply(200, &[], r#"{"changes": [], "next_cursor": true}"#),
            reply(
                200,
                &[],
                r#"{"changes": [], "changes": [], "next_cursor": "c"}"#,
            ),
        ])
        .await;
        let c = client(&base, None);
        assert_eq!(
            c.changes(None, 2).await.unwrap_err(),
            SourceError::BadPage("more items than the limit of 2".into())
        );
        assert_eq!(c.changes(None, 3).await.unwrap().changes.len(), 3);
        assert_eq!(
            c.changes(None, 10).await.unwrap_err(),
            SourceError::BadPage(format!("next_cursor longer than {MAX_CURSOR_LEN} bytes"))
        );
        assert_eq!(
            c.changes(None, 10).await.unwrap().next_cursor.len(),
            MAX_CURSOR_LEN
        );
        assert_eq!(
            c.changes(None, 10).await.unwrap_err(),
            SourceError::BadPage(format!("an item larger than {MAX_ITEM} bytes"))
        );
        let page = c.changes(None, 10).await.unwrap();
        assert_eq!(page.changes[0].head(), (Some("ok".into()), Some(1)));
        assert_eq!(
            c.changes(None, 10).await.unwrap_err(),
            SourceError::BadPage("next_cursor is not a string or a number".into())
        );
        let e = c.changes(None, 10).await.unwrap_err();
        assert!(
            matches!(&e, SourceError::BadPage(m) if m.contains("duplicate")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_page_of_nested_arrays_is_read_one_item_at_a_time() {
        // Items nested as deep as serde_json builds trees: each becomes a
        // tree only when read, and the page holds only their text.
        let item = format!("{}{}", "[".repeat(120), "]".repeat(120));
        let items: Vec<String> = (0..500).map(|_| item.clone()).collect();
        let body = page_of(&items, "c500");
        let (base, _rx) = serve(vec![reply(200, &[], &body)]).await;
        let page = client(&base, None).changes(None, 500).await.unwrap();
        assert_eq!(page.changes.len(), 500);
        for item in &page.changes {
            assert!(matches!(item, FeedItem::Raw(raw) if raw.text().len() == 240));
        }
        assert!(page.changes[0].read().unwrap().is_array());
        assert_eq!(page.changes[1].head(), (None, None));
    }

    #[test]
    fn an_item_too_costly_as_a_tree_is_unreadable_before_it_is_built() {
        let many = format!(
            r#"{{"id": "wide", "version": 1, "x": [{}]}}"#,
            vec!["[]"; MAX_ITEM_CONTAINERS].join(",")
        );
        assert_eq!(
            FeedItem::from_text(many).read(),
            unreadable(
                Some("wide"),
                &format!("more than {MAX_ITEM_CONTAINERS} arrays and objects in one item")
            )
        );
        let values = format!("[{}]", vec!["1"; MAX_ITEM_VALUES + 2].join(","));
        assert_eq!(
            FeedItem::from_text(values).read(),
            unreadable(
                None,
                &format!("more than {MAX_ITEM_VALUES} values in one item")
            )
        );
        // Brackets and separators inside strings are text, escaped quotes
        // included.
        let text = format!(
            r#"{{"id": "t", "version": 1, "title": "\"{}"}}"#,
            "[,:".repeat(MAX_ITEM_VALUES)
        );
        assert!(FeedItem::from_text(text).read().is_ok());
    }

    #[tokio::test]
    async fn one_bad_snapshot_item_does_not_fail_its_page() {
        let mut body = br#"{"postings": [{"id": "a", "version": 1},"#.to_vec();
        body.extend_from_slice(b"{\"id\": \"bad-utf8\", \"title\": \"\xff\"},");
        body.extend_from_slice(format!(r#"{{"id": "deep", "x": {}}},"#, nested(300)).as_bytes());
        body.extend_from_slice(
            format!(r#"{{"id": "huge", "x": "{}"}}"#, "z".repeat(MAX_ITEM)).as_bytes(),
        );
        body.extend_from_slice(br#"], "next_page_token": "t2"}"#);
        let (base, _rx) = serve(vec![reply_bytes(&body)]).await;
        let p = client(&base, None).snapshot_page(None, 2).await.unwrap();
        assert_eq!(p.next_page_token.as_deref(), Some("t2"));
        assert_eq!(
            read_all(&p.postings),
            vec![
                Ok(json!({"id": "a", "version": 1})),
                unreadable(Some("bad-utf8"), INVALID_UTF8),
                unreadable(Some("deep"), TOO_DEEP),
                unreadable(Some("huge"), &format!("item larger than {MAX_ITEM} bytes")),
            ]
        );
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
        assert_eq!(
            read_all(&p.postings),
            vec![Ok(json!({"id": "a"})), Ok(json!(7))]
        );
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
