//! Feed ingestion: one page of JobAG changes becomes one ledger transaction
//! (changes, quarantined items and the cursor after them, together). A feed
//! event only moves `desired`; it never sends anything itself.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::eligibility::evaluate;
use crate::domain::ledger::Incoming;
use crate::domain::posting::{ParsedChange, parse_change, valid_id};
use crate::domain::render::DocumentSettings;
use crate::jobag::{FeedItem, Unreadable};
use crate::store::QuarantineItem;

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
    evaluate_all(items.iter().map(Ok), position, first, now, document)
}

/// [`evaluate_page`] for a page as the feed client reads it: an item that
/// could not even be read as JSON is quarantined with the client's reason.
pub fn evaluate_feed_page(
    items: &[FeedItem],
    position: &str,
    first: usize,
    now: DateTime<Utc>,
    document: &DocumentSettings,
) -> (Vec<Incoming>, Vec<QuarantineItem>) {
    let items = items.iter().map(|item| match item {
        FeedItem::Json(value) => Ok(value),
        FeedItem::Unreadable(why) => Err(why),
    });
    evaluate_all(items, position, first, now, document)
}

fn evaluate_all<'a, I>(
    items: I,
    position: &str,
    first: usize,
    now: DateTime<Utc>,
    document: &DocumentSettings,
) -> (Vec<Incoming>, Vec<QuarantineItem>)
where
    I: Iterator<Item = Result<&'a Value, &'a Unreadable>> + Clone,
{
    // Only the newest version of a posting in a page can win: skip rendering
    // the others (a backlog after an outage repeats ids).
    let mut newest: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for item in items.clone().filter_map(Result::ok) {
        if let (Some(id), Some(v)) = (
            item.get("id").and_then(Value::as_str),
            item.get("version").and_then(Value::as_u64),
        ) {
            let e = newest.entry(id).or_insert(v);
            *e = (*e).max(v);
        }
    }
    let mut incoming = Vec::with_capacity(items.size_hint().0);
    let mut quarantined = Vec::new();
    for (index, item) in items.enumerate() {
        let index = first + index;
        let parsed = match item {
            Ok(value) => parse_change(value),
            Err(unreadable) => ParsedChange::Quarantined {
                id: unreadable.id.clone().filter(|id| valid_id(id)),
                reason: unreadable.reason.clone(),
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
                if let crate::domain::eligibility::Desired::Absent(reason) = &desired
                    && matches!(reason, crate::domain::eligibility::AbsentReason::Invalid(_))
                {
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
            FeedItem::Json(json!({"id": "a", "version": 1, "deleted": true})),
            FeedItem::Unreadable(Unreadable {
                id: Some("b".into()),
                reason: "invalid UTF-8 in the feed item".into(),
            }),
            FeedItem::Unreadable(Unreadable {
                id: Some("not an id \u{fffd}".into()),
                reason: "nesting deeper than 128".into(),
            }),
            FeedItem::Json(json!({"id": "c", "version": 1, "deleted": true})),
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
