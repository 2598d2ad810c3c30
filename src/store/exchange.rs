//! The EURES Input API's view of the ledger (SPEC 4.3): per reference the
//! exchange facts the planner stamped (ACTIVE or CLOSED, creation, last
//! modification, closing), read a page at a time in key order, and the
//! documents of the ACTIVE copies.
//!
//! Implements [`ExchangeStore`] once for both ledgers; its queries are each
//! database's [`ExchangeSql`](super::dialect::ExchangeSql) (the same text
//! but for how each writes "true" and a list of ids). It must never write
//! the ledger (the planner decides and stamps, the worker writes), never
//! page by OFFSET or load every row, never select content in a listing,
//! and never hand out the content of a copy that is not ACTIVE. A posting
//! that was never ACTIVE (`created_ms IS NULL`) has no reference here at
//! all.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::backend::Backend;
use super::dialect::Dialect;
use super::postgres::PgStore;
use super::row::{DetailRow, RefRow};
use super::sqlite::SqliteStore;
use super::types::Result;
use super::url::DatabaseUrl;

pub use super::api::ExchangeStore;
pub use super::types::{ChangeKind, ExchangeDetail, ExchangeFilter, ExchangeRef};

/// Opens the Input API's view of the database a URL names. It gets its own
/// connections, so EURES's polling never waits for the worker's pool (nor the
/// other way round).
pub async fn connect_exchange(url: &str) -> Result<Arc<dyn ExchangeStore>> {
    Ok(match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite { .. } => Arc::new(SqliteStore::connect(url).await?),
        DatabaseUrl::Postgres => Arc::new(PgStore::connect(url).await?),
    })
}

#[async_trait]
impl<B> ExchangeStore for B
where
    B: Backend,
    // What the statements need of the database: run, bind and decode the
    // column types the named rows (`row.rs`) are made of.
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'r> &'r str: ColumnIndex<<B::Db as Database>::Row> + Encode<'r, B::Db> + Type<B::Db>,
    String: for<'r> Decode<'r, B::Db> + Type<B::Db>,
    i64: for<'r> Decode<'r, B::Db> + for<'r> Encode<'r, B::Db> + Type<B::Db>,
    bool: for<'r> Decode<'r, B::Db> + Type<B::Db>,
{
    async fn barrier(&self) -> Result<i64> {
        Backend::barrier(self).await
    }

    async fn now_ms(&self) -> Result<i64> {
        Backend::now_ms(self).await
    }

    async fn source_head_ms(&self) -> Result<Option<i64>> {
        // A feed read again from the beginning after a `410` is compacted:
        // it no longer holds the deletions the ledger missed. Until the
        // reconcile it asked for completes, the ledger has not caught up.
        if super::generic::state(self.pool(), super::sql::RECONCILE_KEY)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let value = super::generic::state(self.pool(), super::sql::SOURCE_HEAD_KEY).await?;
        Ok(value.and_then(|v| v.parse().ok()))
    }

    async fn exchange_page(
        &self,
        filter: ExchangeFilter,
        after: Option<&ExchangeRef>,
        limit: i64,
    ) -> Result<Vec<ExchangeRef>> {
        let sql = <B::Db as Dialect>::exchange().page(filter, after.is_some());
        let mut query = sqlx::query_as::<_, RefRow>(sql)
            .bind(limit.max(0))
            .bind(filter.before_ms());
        match (filter, after) {
            (ExchangeFilter::Active { .. }, None) => {}
            (ExchangeFilter::Active { .. }, Some(a)) => query = query.bind(a.reference.as_str()),
            (ExchangeFilter::Changed { since_ms, .. }, None) => query = query.bind(since_ms),
            (ExchangeFilter::Changed { .. }, Some(a)) => {
                query = query.bind(a.modified_ms).bind(a.reference.as_str());
            }
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.into_iter().map(RefRow::into_ref).collect()
    }

    async fn exchange_details(&self, references: &[String]) -> Result<Vec<ExchangeDetail>> {
        if references.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = references.iter().map(String::as_str).collect();
        let sql = <B::Db as Dialect>::exchange().details();
        let rows: Vec<DetailRow> = <B::Db as Dialect>::bind_ids(sqlx::query_as(sql), &ids)
            .fetch_all(self.pool())
            .await?;
        rows.into_iter()
            .map(|row| {
                let meta = row.meta.into_ref()?;
                let content = if meta.is_active() { row.content } else { None };
                Ok(ExchangeDetail { meta, content })
            })
            .collect()
    }
}

/// Indexes details by reference, for answering in the caller's order.
pub fn by_reference(details: Vec<ExchangeDetail>) -> HashMap<String, ExchangeDetail> {
    details
        .into_iter()
        .map(|d| (d.meta.reference.clone(), d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::eligibility::{AbsentReason, Desired};
    use crate::domain::ledger::{Incoming, Mode};
    use crate::store::{Ctx, IngestBatch, Store};
    use chrono::DateTime;

    const FAR: i64 = 4_102_444_800_000; // 2100-01-01

    struct Ledger {
        store: SqliteStore,
        _dir: tempfile::TempDir,
    }

    async fn ledger() -> Ledger {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
        // Time is scripted here: no wall clock behind the store's back.
        let store = SqliteStore::connect(&url)
            .await
            .expect("connect")
            .with_clock(|| 0);
        Store::migrate(&store).await.expect("migrate");
        Ledger { store, _dir: dir }
    }

    fn present(id: &str, version: u64, doc: &str, end_ms: i64) -> Incoming {
        Incoming {
            id: id.into(),
            version,
            updated_at_ms: Some(1),
            employer_cvr: Some("12345678".into()),
            desired: Desired::Present {
                content: format!("<doc>{doc}</doc>"),
                hash: format!("hash-{doc}"),
                publication_end: DateTime::from_timestamp_millis(end_ms).expect("valid instant"),
            },
        }
    }

    fn absent(id: &str, version: u64, reason: AbsentReason) -> Incoming {
        Incoming {
            id: id.into(),
            version,
            updated_at_ms: Some(1),
            employer_cvr: None,
            desired: Desired::Absent(reason),
        }
    }

    impl Ledger {
        async fn apply(&self, changes: Vec<Incoming>, now_ms: i64, forced: bool) {
            self.store
                .ingest(
                    &IngestBatch {
                        changes,
                        forced,
                        ..IngestBatch::default()
                    },
                    Ctx {
                        now_ms,
                        mode: Mode::Pull,
                    },
                )
                .await
                .expect("ingest");
        }

        /// Every page of a filter, walked by keyset with a small page size.
        async fn all(&self, filter: ExchangeFilter) -> Vec<ExchangeRef> {
            let mut out: Vec<ExchangeRef> = Vec::new();
            loop {
                let page = self
                    .store
                    .exchange_page(filter, out.last(), 7)
                    .await
                    .expect("page");
                let done = page.len() < 7;
                out.extend(page);
                if done {
                    return out;
                }
            }
        }

        async fn changes(&self, since_ms: i64) -> HashMap<ChangeKind, Vec<String>> {
            let mut out = HashMap::new();
            for kind in ChangeKind::ALL {
                let refs = self
                    .all(ExchangeFilter::Changed {
                        kind,
                        since_ms,
                        before_ms: i64::MAX,
                    })
                    .await;
                for r in &refs {
                    assert_eq!(r.kind(), kind, "{r:?} listed as {kind:?}");
                    assert!(r.modified_ms >= since_ms);
                }
                out.insert(kind, refs.into_iter().map(|r| r.reference).collect());
            }
            out
        }

        async fn active(&self) -> Vec<String> {
            self.all(ExchangeFilter::Active {
                before_ms: i64::MAX,
            })
            .await
            .into_iter()
            .map(|r| r.reference)
            .collect()
        }

        async fn detail(&self, id: &str) -> Option<ExchangeDetail> {
            let mut d = self
                .store
                .exchange_details(&[id.to_string()])
                .await
                .expect("details");
            assert!(d.len() <= 1);
            d.pop()
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_copy_lives_is_edited_closes_and_comes_back() {
        let l = ledger().await;
        l.apply(vec![present("p1", 1, "a", FAR)], 1_000, false)
            .await;
        assert_eq!(l.active().await, ids(&["p1"]));
        let c = l.changes(0).await;
        assert_eq!(c[&ChangeKind::Created], ids(&["p1"]));
        let d = l.detail("p1").await.expect("known");
        assert_eq!(d.content.as_deref(), Some("<doc>a</doc>"));
        assert_eq!((d.meta.created_ms, d.meta.modified_ms), (1_000, 1_000));

        // A real edit: modified, creation kept.
        l.apply(vec![present("p1", 2, "b", FAR)], 2_000, false)
            .await;
        let c = l.changes(1_001).await;
        assert_eq!(c[&ChangeKind::Modified], ids(&["p1"]));
        assert!(c[&ChangeKind::Created].is_empty());
        let d = l.detail("p1").await.expect("known");
        assert_eq!((d.meta.created_ms, d.meta.modified_ms), (1_000, 2_000));
        assert_eq!(d.content.as_deref(), Some("<doc>b</doc>"));

        // An edit that renders the same document changes nothing.
        l.apply(vec![present("p1", 3, "b", FAR)], 3_000, false)
            .await;
        assert!(l.changes(2_001).await.values().all(Vec::is_empty));

        // Withdrawal: closed, no content, not in getAll; inclusive bound.
        l.apply(vec![absent("p1", 4, AbsentReason::NoConsent)], 4_000, false)
            .await;
        assert!(l.active().await.is_empty());
        let c = l.changes(4_000).await;
        assert_eq!(c[&ChangeKind::Closed], ids(&["p1"]));
        let d = l.detail("p1").await.expect("tombstone stays");
        assert_eq!(d.content, None);
        assert!(!d.meta.is_active());
        assert_eq!(d.meta.closed_ms, Some(4_000));
        assert!(l.changes(4_001).await.values().all(Vec::is_empty));

        // Re-consent: created again, new creation timestamp, no closing.
        l.apply(vec![present("p1", 5, "b", FAR)], 5_000, false)
            .await;
        let c = l.changes(4_001).await;
        assert_eq!(c[&ChangeKind::Created], ids(&["p1"]));
        assert!(c[&ChangeKind::Closed].is_empty());
        let d = l.detail("p1").await.expect("known");
        assert_eq!(d.meta.created_ms, 5_000);
        assert_eq!(d.meta.closed_ms, None);
        assert!(d.content.is_some());
    }

    #[tokio::test]
    async fn never_active_postings_and_unknown_ids_have_no_reference() {
        let l = ledger().await;
        l.apply(
            vec![
                absent("no-consent", 1, AbsentReason::NoConsent),
                absent("gone", 1, AbsentReason::Deleted),
                absent("bad", 1, AbsentReason::Invalid("title: missing".into())),
            ],
            1_000,
            false,
        )
        .await;
        assert!(l.active().await.is_empty());
        assert!(l.changes(0).await.values().all(Vec::is_empty));
        let d = l
            .store
            .exchange_details(&ids(&["no-consent", "gone", "bad", "never-seen"]))
            .await
            .expect("details");
        assert!(d.is_empty(), "{d:?}");
    }

    #[tokio::test]
    async fn expiry_closes_the_copy() {
        let l = ledger().await;
        l.apply(vec![present("short", 1, "a", 1_500)], 1_000, false)
            .await;
        let moved = l
            .store
            .expire_due(Ctx {
                now_ms: 1_600,
                mode: Mode::Pull,
            })
            .await
            .expect("expire");
        assert_eq!(moved, 1);
        let c = l.changes(1_600).await;
        assert_eq!(c[&ChangeKind::Closed], ids(&["short"]));
        assert_eq!(l.detail("short").await.expect("known").content, None);
    }

    /// Many references share one stamp (a whole ingested page does): the
    /// keyset must neither skip nor repeat any of them across pages.
    #[tokio::test]
    async fn pages_walk_every_reference_once_across_equal_timestamps() {
        let l = ledger().await;
        let batch = |range: std::ops::Range<u32>, version: u64, doc: &str| {
            range
                .map(|i| present(&format!("p{i:03}"), version, doc, FAR))
                .collect::<Vec<_>>()
        };
        l.apply(batch(0..40, 1, "a"), 1_000, false).await;
        l.apply(batch(40..60, 1, "a"), 2_000, false).await;
        l.apply(batch(10..25, 2, "b"), 2_000, false).await;
        let closing: Vec<Incoming> = (20..30)
            .map(|i| absent(&format!("p{i:03}"), 3, AbsentReason::Deleted))
            .collect();
        l.apply(closing, 3_000, false).await;

        let all = l
            .all(ExchangeFilter::Active {
                before_ms: i64::MAX,
            })
            .await;
        let mut expected: Vec<String> = (0..60)
            .filter(|i| !(20..30).contains(i))
            .map(|i| format!("p{i:03}"))
            .collect();
        assert_eq!(
            all.iter().map(|r| r.reference.clone()).collect::<Vec<_>>(),
            expected
        );

        let c = l.changes(0).await;
        let mut listed: Vec<String> = c.values().flatten().cloned().collect();
        listed.sort();
        expected = (0..60).map(|i| format!("p{i:03}")).collect();
        assert_eq!(listed, expected, "each reference exactly once");
        assert_eq!(c[&ChangeKind::Closed].len(), 10);
        assert_eq!(c[&ChangeKind::Modified].len(), 10); // p010..p019
        assert_eq!(c[&ChangeKind::Created].len(), 40);
        let since = l.changes(2_000).await;
        assert_eq!(since.values().map(Vec::len).sum::<usize>(), 40);
    }

    /// SPEC 4.3: rebuilding (a full resync re-reading every posting) must not
    /// close or re-create anything the source did not change.
    #[tokio::test]
    async fn a_full_resync_of_the_same_documents_changes_nothing_on_the_exchange() {
        let l = ledger().await;
        let live: Vec<Incoming> = (0..5)
            .map(|i| present(&format!("p{i}"), 1, &format!("doc{i}"), FAR))
            .collect();
        l.apply(live.clone(), 1_000, false).await;
        l.apply(vec![absent("p4", 2, AbsentReason::Deleted)], 2_000, false)
            .await;
        let all_ids = ids(&["p0", "p1", "p2", "p3", "p4"]);
        let mut before = l.store.exchange_details(&all_ids).await.expect("details");
        before.sort_by(|a, b| a.meta.reference.cmp(&b.meta.reference));

        // The operator's `resync --all`: same versions, same documents, forced.
        let mut again: Vec<Incoming> = live.into_iter().take(4).collect();
        again.push(absent("p4", 2, AbsentReason::Deleted));
        l.apply(again, 9_000, true).await;

        let mut after = l.store.exchange_details(&all_ids).await.expect("details");
        after.sort_by(|a, b| a.meta.reference.cmp(&b.meta.reference));
        assert_eq!(before, after, "exchange facts and documents untouched");
        assert!(
            l.changes(2_001).await.values().all(Vec::is_empty),
            "nothing reported after the rebuild"
        );
        assert_eq!(l.active().await, ids(&["p0", "p1", "p2", "p3"]));
    }

    #[tokio::test]
    async fn details_carry_content_only_for_active_copies() {
        let l = ledger().await;
        l.apply(
            vec![present("a", 1, "x", FAR), present("c", 1, "y", FAR)],
            1_000,
            false,
        )
        .await;
        l.apply(vec![absent("c", 2, AbsentReason::Internal)], 2_000, false)
            .await;
        let d = by_reference(
            l.store
                .exchange_details(&ids(&["a", "c", "zzz"]))
                .await
                .expect("details"),
        );
        assert_eq!(d.len(), 2);
        assert!(d["a"].content.is_some() && d["a"].meta.is_active());
        assert!(d["c"].content.is_none() && !d["c"].meta.is_active());
    }

    #[tokio::test]
    async fn every_page_query_is_a_range_scan_over_its_own_index() {
        let l = ledger().await;
        let cases = [
            (ExchangeFilter::Active { before_ms: 0 }, "postings_x_active"),
            (
                ExchangeFilter::Changed {
                    kind: ChangeKind::Created,
                    since_ms: 0,
                    before_ms: 0,
                },
                "postings_x_created",
            ),
            (
                ExchangeFilter::Changed {
                    kind: ChangeKind::Modified,
                    since_ms: 0,
                    before_ms: 0,
                },
                "postings_x_modified",
            ),
            (
                ExchangeFilter::Changed {
                    kind: ChangeKind::Closed,
                    since_ms: 0,
                    before_ms: 0,
                },
                "postings_x_closed",
            ),
        ];
        for (filter, index) in cases {
            for next in [false, true] {
                let sql = format!(
                    "EXPLAIN QUERY PLAN {}",
                    <sqlx::Sqlite as Dialect>::exchange().page(filter, next)
                );
                let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(sql))
                    .bind(1_000_i64)
                    .bind(9_000_i64);
                q = match (filter, next) {
                    (ExchangeFilter::Active { .. }, false) => q,
                    (ExchangeFilter::Active { .. }, true) => q.bind("p1"),
                    (_, false) => q.bind(0_i64),
                    (_, true) => q.bind(5_i64).bind("p1"),
                };
                let plan: Vec<String> = q
                    .fetch_all(&l.store.pool)
                    .await
                    .expect("plan")
                    .into_iter()
                    .map(|r| r.3)
                    .collect();
                let plan = plan.join(" | ");
                assert!(plan.contains(index), "{filter:?} next={next}: {plan}");
                assert!(!plan.contains("TEMP B-TREE"), "{filter:?}: sorts: {plan}");
                // Each page seeks to where it starts; it never re-reads the
                // rows of the pages before it.
                let range = match (filter, next) {
                    (ExchangeFilter::Active { .. }, false) => None,
                    (ExchangeFilter::Active { .. }, true) => Some("(id>?)"),
                    (_, false) => Some("(modified_ms>? AND modified_ms<?)"),
                    (_, true) => Some("((modified_ms,id)>(?,?) AND modified_ms<?)"),
                };
                if let Some(range) = range {
                    assert!(plan.contains(range), "{filter:?} next={next}: {plan}");
                }
                assert!(
                    plan.contains("COVERING INDEX"),
                    "{filter:?}: reads rows: {plan}"
                );
            }
        }
    }
}
