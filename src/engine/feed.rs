//! The feed: the leader polls JobAG's change feed and applies each page to
//! the ledger in chunks of [`INGEST_CHUNK`] items, one transaction each
//! (the chunk's changes and quarantined items; the last chunk also moves
//! the cursor). A feed event only moves `desired`; it never sends anything
//! itself. Single postings are re-read from JobAG here too: on an
//! operator's resync, when EURES holds something newer, and when the feed
//! named a posting it could not describe.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;

use super::worker::pause;
use super::{Worker, now_ms};
use crate::domain::eligibility::{AbsentReason, Desired, evaluate};
use crate::domain::ledger::{self, Entry, Incoming};
use crate::domain::posting::{ParsedChange, parse_change, valid_id};
use crate::domain::render::DocumentSettings;
use crate::jobag::{FeedItem, SourceError, Unreadable};
use crate::store::{IngestBatch, IngestStats, QuarantineItem};

/// How long after a failed re-read of a posting whose feed change was
/// unusable it is tried again.
pub const REREAD_RETRY: Duration = Duration::from_secs(5);

/// Feed items evaluated and written per ledger transaction.
const INGEST_CHUNK: usize = 100;

/// The longest wait between polls after failures in a row.
const POLL_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// JobAG answered a single-posting read with something that is no usable
/// posting (no id or version, not JSON).
#[derive(Debug, thiserror::Error)]
#[error("posting {id}: JobAG returned an unusable posting: {reason}")]
pub struct UnusablePosting {
    id: String,
    reason: String,
}

/// What one poll of the feed did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Polled {
    pub stats: IngestStats,
    /// More pages wait now.
    pub has_more: bool,
    /// The feed forgot the cursor (`410`): the next read starts from the
    /// beginning.
    pub started_over: bool,
}

/// A feed answer that is no failure of the transport, yet must not make
/// the agent ask again at once (SPEC 4.1): each backs off like a failure.
#[derive(Debug, thiserror::Error)]
pub enum FeedLie {
    #[error("the feed says more changes wait but sent none")]
    EmptyWithMore,
    #[error("the feed answered 410 Gone to a read from the beginning")]
    GoneFromTheBeginning,
    #[error("the feed forgot our cursor again before we caught up after starting over")]
    GoneAgain,
}

impl Worker {
    /// Polls while leading: at once while pages wait, every
    /// `poll_interval` once caught up, and after failures in a row a
    /// `poll_interval` longer each time (at most [`POLL_BACKOFF_CAP`]).
    pub(super) async fn feed_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        // Read from the beginning after a `410`, and not caught up since.
        let mut starting_over = false;
        while !*stop.borrow() {
            if !self.is_leader() {
                pause(&mut stop, self.leader_tick()).await;
                continue;
            }
            let polled = match self.poll_once().await {
                Ok(p) if p.started_over && starting_over => Err(FeedLie::GoneAgain.into()),
                Ok(p) => {
                    starting_over = (starting_over || p.started_over) && p.has_more;
                    Ok(p.has_more)
                }
                Err(e) => Err(e),
            };
            let wait = match polled {
                Ok(true) => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok(false) => {
                    failures = 0;
                    // Caught up: the re-reads that failed before, if due.
                    self.reread_damaged().await;
                    self.settings.poll_interval
                }
                Err(e) => {
                    crate::telemetry::record_feed_poll_failure();
                    failures = failures.saturating_add(1);
                    let wait = self
                        .settings
                        .poll_interval
                        .saturating_mul(failures.min(30))
                        .min(POLL_BACKOFF_CAP);
                    tracing::warn!(jobag = %self.jobag.base_url(), error = %e, retry_in_ms = wait.as_millis() as u64, "feed poll failed");
                    wait
                }
            };
            if !wait.is_zero() && !pause(&mut stop, wait).await {
                break;
            }
        }
    }

    /// Reads one page of the feed after the stored cursor and applies it.
    /// A page the feed client refuses (SPEC 4.1's bounds) applies nothing;
    /// an empty page that says more wait moves the cursor it names, and is
    /// then an error, so the loop backs off instead of asking again at once.
    pub async fn poll_once(&self) -> anyhow::Result<Polled> {
        let cursor = self.store.cursor().await?.filter(|c| !c.is_empty());
        let page = match self
            .jobag
            .changes(cursor.as_deref(), self.settings.page_size)
            .await
        {
            Ok(page) => page,
            Err(SourceError::CursorGone) if cursor.is_none() => {
                return Err(FeedLie::GoneFromTheBeginning.into());
            }
            Err(SourceError::CursorGone) => {
                tracing::warn!(
                    "the feed no longer knows our cursor: reading it again from the beginning"
                );
                self.store
                    .ingest(
                        &IngestBatch {
                            next_cursor: Some(String::new()),
                            reconcile_requested: true,
                            ..IngestBatch::default()
                        },
                        self.ctx(),
                    )
                    .await?;
                self.reconcile_requested.notify_one();
                return Ok(Polled {
                    stats: IngestStats::default(),
                    has_more: true,
                    started_over: true,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let stalled = page.has_more && page.changes.is_empty();
        let position = cursor.unwrap_or_default();
        // A page is applied in chunks, the cursor with the last one, so the
        // memory a page costs (documents rendered, records copied) stays
        // bounded whatever `page_size` is. A crash between chunks re-reads
        // the page; the versions already applied are then ignored.
        let mut rest = page.changes;
        let mut first = 0;
        let mut stats = IngestStats::default();
        loop {
            let tail = rest.split_off(rest.len().min(INGEST_CHUNK));
            let chunk = std::mem::replace(&mut rest, tail);
            let last = rest.is_empty();
            let (changes, quarantined) = evaluate_feed_page(
                &chunk,
                &position,
                first,
                self.ledger_now().await,
                &self.settings.document,
            );
            first += chunk.len();
            drop(chunk);
            let batch = IngestBatch {
                changes,
                quarantined,
                next_cursor: last.then(|| page.next_cursor.clone()),
                at_source_head: last && !page.has_more,
                ..IngestBatch::default()
            };
            let applied = self.store.ingest(&batch, self.ctx()).await?;
            crate::telemetry::record_quarantined(applied.quarantined);
            if !batch.quarantined.is_empty() {
                self.reread_damaged().await;
            }
            stats.applied += applied.applied;
            stats.ignored += applied.ignored;
            stats.quarantined += applied.quarantined;
            if applied.applied > 0 {
                self.wake.notify_one();
            }
            if last {
                break;
            }
        }
        if stalled {
            return Err(FeedLie::EmptyWithMore.into());
        }
        self.store.set_last_poll(now_ms()).await?;
        if stats.applied > 0 {
            self.wake.notify_one();
        }
        Ok(Polled {
            stats,
            has_more: page.has_more,
            started_over: false,
        })
    }

    /// Re-reads one posting from JobAG and applies it. `forced` (an
    /// operator's resync, or content that must be rebuilt) redelivers even
    /// an unchanged version; a posting JobAG no longer has is deleted.
    pub async fn reread(&self, id: &str, forced: bool) -> anyhow::Result<IngestStats> {
        self.reread_with(id, forced, false).await
    }

    /// An operator's resync that also accepts a version jumping implausibly
    /// far above the ledger's, once they have checked it in JobAG.
    pub async fn reread_accepting_version(&self, id: &str) -> anyhow::Result<IngestStats> {
        self.reread_with(id, true, true).await
    }

    async fn reread_with(
        &self,
        id: &str,
        forced: bool,
        accept_version: bool,
    ) -> anyhow::Result<IngestStats> {
        let current = self.store.get(id).await?;
        let fetched = self.jobag.posting_with_retry(id).await?;
        let now = self.ledger_now().await;
        let (incoming, forced) = match fetched {
            Some(value) => {
                let (mut changes, quarantined) = evaluate_page(
                    std::slice::from_ref(&value),
                    "reread",
                    0,
                    now,
                    &self.settings.document,
                );
                if let Some(q) = quarantined.into_iter().next() {
                    return Err(UnusablePosting {
                        id: id.to_string(),
                        reason: q.reason,
                    }
                    .into());
                }
                (changes.pop(), forced)
            }
            // Known gone already: applying it again would only undo the
            // backoff of what is due (a DELETE answered 409 re-reads, and
            // must not be retried at once, again and again).
            None if !forced && current.as_ref().is_some_and(ledger::is_gone) => {
                return Ok(IngestStats::default());
            }
            // The deletion carries no version of its own: applied at the
            // ledger's version, which only a forced change may do.
            None => (
                current
                    .as_ref()
                    .map(|cur| absent_at(cur, AbsentReason::Deleted)),
                true,
            ),
        };
        let Some(incoming) = incoming else {
            return Ok(IngestStats::default());
        };
        self.apply_one(incoming, forced, accept_version).await
    }

    async fn apply_one(
        &self,
        incoming: Incoming,
        forced: bool,
        accept_version: bool,
    ) -> anyhow::Result<IngestStats> {
        let stats = self
            .store
            .ingest(
                &IngestBatch {
                    changes: vec![incoming],
                    forced,
                    accept_version,
                    ..IngestBatch::default()
                },
                self.ctx(),
            )
            .await?;
        self.wake.notify_one();
        Ok(stats)
    }

    /// The feed carried changes that named a posting but could not be used
    /// (not JSON, no usable version): each posting's state is learnt from
    /// JobAG instead, since the lost change may have been a withdrawal or a
    /// new posting. When JobAG's own copy is unusable too, a copy on EURES
    /// is withdrawn until a readable version arrives: when in doubt, the
    /// copy goes.
    ///
    /// The postings to re-read are kept in the ledger with the page that
    /// named them: one whose re-read fails is tried again
    /// [`REREAD_RETRY`] later, by this run or the next.
    pub(crate) async fn reread_damaged(&self) {
        // The ledger's clock: it stamped when each is due.
        let now = self.store.now_ms().await.unwrap_or_else(|_| now_ms());
        let ids = match self.store.rereads_due(now).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "reading the postings to re-read failed");
                return;
            }
        };
        for id in &ids {
            let id = id.as_str();
            let outcome = match self.reread(id, false).await {
                Err(e) if e.is::<UnusablePosting>() => {
                    tracing::warn!(posting = id, error = %e,
                        "neither the feed nor JobAG gave a usable copy: the EURES copy is withdrawn until a readable version arrives");
                    self.withdraw_unreadable(id).await
                }
                other => other.map(|_| ()),
            };
            let retry_at = match outcome {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(posting = id, error = %e, retry_in_s = REREAD_RETRY.as_secs(),
                        "re-reading a posting whose feed change was unusable failed");
                    Some(now.saturating_add(REREAD_RETRY.as_millis() as i64))
                }
            };
            if let Err(e) = self.store.reread_done(id, retry_at).await {
                tracing::warn!(posting = id, error = %e, "recording a re-read failed; it is done again");
            }
        }
    }

    async fn withdraw_unreadable(&self, id: &str) -> anyhow::Result<()> {
        let Some(current) = self.store.get(id).await? else {
            return Ok(());
        };
        let why = AbsentReason::Invalid("unreadable in the feed and in JobAG".into());
        self.apply_one(absent_at(&current, why), true, false)
            .await?;
        Ok(())
    }
}

/// A change that takes `current` off EURES at the ledger's own version.
fn absent_at(current: &Entry, reason: AbsentReason) -> Incoming {
    Incoming {
        id: current.id.clone(),
        version: current.source_version,
        updated_at_ms: None,
        employer_cvr: None,
        desired: Desired::Absent(reason),
    }
}

/// Parses and evaluates one page of feed items. `position` names where the
/// page was read (the cursor it followed) and `first` the index of the first
/// item in that page, for the quarantine record.
pub fn evaluate_page(
    items: &[Value],
    position: &str,
    first: usize,
    now: DateTime<Utc>,
    document: &DocumentSettings,
) -> (Vec<Incoming>, Vec<QuarantineItem>) {
    let head = |v: &Value| {
        (
            v.get("id").and_then(Value::as_str).map(str::to_owned),
            v.get("version").and_then(Value::as_u64),
        )
    };
    let read = |v| Ok(Cow::Borrowed(v));
    evaluate_all(items, head, read, position, first, now, document)
}

/// [`evaluate_page`] for a page as the JobAG client reads it: each item is
/// parsed in turn (one item's tree at a time), and an item that could not
/// even be read as JSON is quarantined with the client's reason.
pub fn evaluate_feed_page(
    items: &[FeedItem],
    position: &str,
    first: usize,
    now: DateTime<Utc>,
    document: &DocumentSettings,
) -> (Vec<Incoming>, Vec<QuarantineItem>) {
    let read = |item: &FeedItem| item.read().map(Cow::Owned);
    evaluate_all(items, FeedItem::head, read, position, first, now, document)
}

fn evaluate_all<'a, T>(
    items: &'a [T],
    head: impl Fn(&'a T) -> (Option<String>, Option<u64>),
    read: impl Fn(&'a T) -> Result<Cow<'a, Value>, Unreadable>,
    position: &str,
    first: usize,
    now: DateTime<Utc>,
    document: &DocumentSettings,
) -> (Vec<Incoming>, Vec<QuarantineItem>) {
    // Only the newest version of a posting in a page can win: skip rendering
    // the others (a backlog after an outage repeats ids).
    let mut newest: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for item in items {
        if let (Some(id), Some(v)) = head(item) {
            let e = newest.entry(id).or_insert(v);
            *e = (*e).max(v);
        }
    }
    let mut incoming = Vec::with_capacity(items.len());
    let mut quarantined = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let index = first + index;
        let parsed = match read(item) {
            Ok(value) => parse_change(&value),
            Err(unreadable) => ParsedChange::Quarantined {
                id: unreadable.id.filter(|id| valid_id(id)),
                reason: unreadable.reason,
            },
        };
        match parsed {
            ParsedChange::Change(change) => {
                if newest
                    .get(change.id.as_str())
                    .is_some_and(|&v| v > change.version)
                {
                    continue;
                }
                let desired = evaluate(&change, now, document);
                if let Desired::Absent(reason @ AbsentReason::Invalid(_)) = &desired {
                    tracing::warn!(posting = %change.id, version = change.version, %reason, "posting is invalid");
                }
                incoming.push(Incoming {
                    employer_cvr: change.employer_cvr().map(str::to_string),
                    updated_at_ms: change.updated_at.map(|t| t.timestamp_millis()),
                    id: change.id,
                    version: change.version,
                    desired,
                });
            }
            ParsedChange::Quarantined { id, reason } => {
                tracing::warn!(posting = id.as_deref().unwrap_or("-"), %reason, position, index, "feed item quarantined");
                quarantined.push(QuarantineItem {
                    posting_id: id,
                    reason,
                    feed_position: format!("after={position} index={index}"),
                });
            }
        }
    }
    (incoming, quarantined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_items_are_quarantined_and_the_rest_flows() {
        let items = vec![
            json!({"id": "a", "version": 1, "deleted": true, "updated_at": "2026-11-20T10:00:00Z"}),
            json!("garbage"),
            json!({"version": 3}),
            json!({"id": "b", "version": 2, "updated_at": "2026-11-20T10:00:00Z", "status": 7}),
        ];
        let (incoming, quarantined) =
            evaluate_page(&items, "c42", 0, Utc::now(), &DocumentSettings::default());
        assert_eq!(incoming.len(), 2);
        assert_eq!(quarantined.len(), 2);
        assert_eq!(quarantined[0].feed_position, "after=c42 index=1");
        assert!(quarantined[1].reason.contains("id"));
    }

    #[test]
    fn unreadable_items_are_quarantined_with_the_readers_reason() {
        let items = vec![
            FeedItem::from_text(r#"{"id": "a", "version": 1, "deleted": true}"#),
            FeedItem::Unreadable(Unreadable {
                id: Some("b".into()),
                reason: "invalid UTF-8 in the feed item".into(),
            }),
            FeedItem::Unreadable(Unreadable {
                id: Some("not an id \u{fffd}".into()),
                reason: "nesting deeper than 128".into(),
            }),
            FeedItem::from_text(r#"{"id": "c", "version": 1, "deleted": true}"#),
        ];
        let (incoming, quarantined) =
            evaluate_feed_page(&items, "c7", 10, Utc::now(), &DocumentSettings::default());
        let ids: Vec<_> = incoming.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        let q: Vec<_> = quarantined
            .iter()
            .map(|q| {
                (
                    q.posting_id.as_deref(),
                    q.reason.as_str(),
                    q.feed_position.as_str(),
                )
            })
            .collect();
        assert_eq!(
            q,
            [
                (
                    Some("b"),
                    "invalid UTF-8 in the feed item",
                    "after=c7 index=11"
                ),
                (None, "nesting deeper than 128", "after=c7 index=12"),
            ]
        );
    }

    #[test]
    fn only_the_newest_version_in_a_page_is_evaluated() {
        let items = vec![
            json!({"id": "a", "version": 1, "deleted": true}),
            json!({"id": "a", "version": 3, "deleted": true}),
            json!({"id": "a", "version": 2, "deleted": true}),
        ];
        let (incoming, _) = evaluate_page(&items, "", 0, Utc::now(), &DocumentSettings::default());
        assert_eq!(incoming.len(), 1);
        assert_eq!(incoming[0].version, 3);
    }
}
