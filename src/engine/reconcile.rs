//! Reconcile: the same comparison as delivery, done against the source's
//! snapshot and EURES's own listing instead of the ledger's belief.
//!
//! Four streaming passes, each a page at a time (the next page of the
//! snapshot or the listing is read while the ledger takes the current one):
//! the JobAG snapshot against the ledger; ledger records the snapshot did
//! not show (deleted in JobAG); the EURES listing against the ledger; ledger
//! records the listing did not show. What a run saw is kept as one bit per
//! ledger record, by the record's key, in two compressed bitmaps (about
//! 130 KiB per million records): no pass keeps ids in memory, and the
//! ledger is only written where it is wrong. The remote passes act only on
//! a complete listing: a listing that fails half-way repairs nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use roaring::RoaringTreemap;

use super::Worker;
use super::feed::evaluate_feed_page;
use crate::domain::ledger::Mode;
use crate::eures::ListedVacancy;
use crate::jobag::FeedItem;
use crate::store::{Diff, Listed, Repair, Unseen};

/// Rows per ledger page in the "not seen" passes.
const LEDGER_PAGE: i64 = 2000;
/// Items per EURES listing page.
const LISTING_PAGE: u32 = 1000;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReconcileReport {
    /// Differences found, by kind.
    pub differences: BTreeMap<&'static str, u64>,
    pub source_postings: u64,
    pub eures_items: u64,
    /// False when the EURES listing could not be read to the end.
    pub listing_complete: bool,
    pub elapsed_ms: u64,
    /// Items of the snapshot or the listing that could not be used: the
    /// run went on without them.
    pub skipped: u64,
    /// The first [`SKIPPED_SHOWN`] of them.
    pub skipped_items: Vec<SkippedItem>,
}

/// How many skipped items a report names (all are counted).
pub const SKIPPED_SHOWN: usize = 100;

/// An item a reconcile run could not use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedItem {
    /// `jobag snapshot` or `eures listing`.
    pub from: &'static str,
    /// Its id (or reference) when it had a valid one.
    pub id: Option<String>,
    pub reason: String,
}

/// Where reconcile is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    Source,
    SourceGone,
    Listing,
    ListingMissing,
}

/// The ledger records a run saw in the snapshot or in the listing, by key.
struct Seen {
    /// Where they were seen: what the pass over the others judges.
    source: Unseen,
    keys: RoaringTreemap,
}

impl Seen {
    fn new(source: Unseen) -> Seen {
        Seen {
            source,
            keys: RoaringTreemap::new(),
        }
    }

    fn mark(&mut self, key: i64) {
        // Any bijection of i64 onto u64 will do: keys are only compared.
        self.keys.insert(key as u64);
    }

    fn saw(&self, key: i64) -> bool {
        self.keys.contains(key as u64)
    }
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Source => "reading the JobAG snapshot",
            Phase::SourceGone => "checking for postings gone from JobAG",
            Phase::Listing => "reading the EURES listing",
            Phase::ListingMissing => "checking for copies missing on EURES",
        }
    }
}

impl Worker {
    /// Runs one reconcile. `on_diff` sees every difference as it is found;
    /// `progress` sees each page (phase, items so far).
    pub async fn reconcile(
        &self,
        repair: Repair,
        on_diff: &mut (dyn FnMut(&Diff) + Send),
        progress: &(dyn Fn(Phase, u64) + Sync),
    ) -> anyhow::Result<ReconcileReport> {
        let started = std::time::Instant::now();
        // The ledger's clock: the run start is compared with the times it
        // stamps, and a process clock ahead would judge postings this very
        // run inserted as gone from the source (SPEC 3.9).
        let run = self.store.now_ms().await?;
        let mut report = ReconcileReport::default();
        let passes = async {
            self.source_passes(run, repair, on_diff, progress, &mut report)
                .await?;
            if self.settings.mode == Mode::Push {
                self.remote_passes(run, repair, on_diff, progress, &mut report)
                    .await?;
            }
            anyhow::Ok(())
        }
        .await;
        self.wake.notify_one();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        if let Err(e) = passes {
            crate::telemetry::record_reconcile(None);
            return Err(e);
        }
        let partial = self.settings.mode == Mode::Push && !report.listing_complete;
        crate::telemetry::record_reconcile(Some((
            if partial { "partial" } else { "ok" },
            &report.differences,
            report.elapsed_ms,
        )));
        tracing::info!(
            differences = report.differences.values().sum::<u64>(),
            source_postings = report.source_postings,
            eures_items = report.eures_items,
            elapsed_ms = report.elapsed_ms,
            repair = ?repair,
            "reconcile finished"
        );
        Ok(report)
    }

    /// Only the source side: what `resync --all` does with `Repair::Force`.
    pub async fn reconcile_source_only(
        &self,
        repair: Repair,
        progress: &(dyn Fn(Phase, u64) + Sync),
    ) -> anyhow::Result<ReconcileReport> {
        let started = std::time::Instant::now();
        let mut report = ReconcileReport::default();
        let run = self.store.now_ms().await?;
        self.source_passes(run, repair, &mut |_| {}, progress, &mut report)
            .await?;
        self.wake.notify_one();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    async fn source_passes(
        &self,
        run: i64,
        repair: Repair,
        on_diff: &mut (dyn FnMut(&Diff) + Send),
        progress: &(dyn Fn(Phase, u64) + Sync),
        report: &mut ReconcileReport,
    ) -> anyhow::Result<()> {
        // 1. The JobAG snapshot against the ledger. The next page is read
        // while the ledger takes this one: HTTP and JSON on one side, the
        // database on the other (at most two pages in memory).
        let page_size = self.settings.page_size;
        let mut seen = Seen::new(Unseen::InSnapshot);
        let mut fetched = self.jobag.snapshot_page_with_retry(None, page_size).await;
        loop {
            let page = fetched?;
            let next = page.next_page_token.clone().filter(|t| !t.is_empty());
            let following = async {
                match &next {
                    Some(t) => Some(
                        self.jobag
                            .snapshot_page_with_retry(Some(t), page_size)
                            .await,
                    ),
                    None => None,
                }
            };
            let (taken, following) = tokio::join!(
                self.take_snapshot_page(&page.postings, &mut seen, repair, on_diff, report),
                following
            );
            taken?;
            progress(Phase::Source, report.source_postings);
            match following {
                Some(f) => fetched = f,
                None => break,
            }
        }
        // 2. Ledger records the snapshot did not show.
        self.unseen_pass(&seen, run, repair, on_diff, progress, report)
            .await?;
        Ok(())
    }

    /// Compares one snapshot page with the ledger (and repairs). An item
    /// that cannot be used is skipped and reported; one that names a
    /// posting the ledger knows leaves that posting as it is (it counts as
    /// seen, so the run does not take it for deleted).
    async fn take_snapshot_page(
        &self,
        postings: &[FeedItem],
        seen: &mut Seen,
        repair: Repair,
        on_diff: &mut (dyn FnMut(&Diff) + Send),
        report: &mut ReconcileReport,
    ) -> anyhow::Result<()> {
        // Render only what may differ: postings the ledger lacks, holds at
        // an older version, or holds as deleted in JobAG (a verdict the
        // snapshot now contradicts); a resync renders everything.
        let heads: Vec<_> = postings.iter().map(FeedItem::head).collect();
        let ids: Vec<&str> = heads.iter().filter_map(|(id, _)| id.as_deref()).collect();
        let known = self.store.known_versions(&ids).await?;
        for k in known.values() {
            seen.mark(k.key);
        }
        let needed: Vec<FeedItem> = postings
            .iter()
            .zip(&heads)
            .filter(|(_, head)| {
                repair.forces()
                    || match head {
                        (Some(id), Some(v)) => known
                            .get(id.as_str())
                            .is_none_or(|k| *v > k.version || (k.gone && *v == k.version)),
                        _ => true,
                    }
            })
            .map(|(p, _)| p.clone())
            .collect();
        let (incoming, quarantined) = evaluate_feed_page(
            &needed,
            "snapshot",
            0,
            self.ledger_now().await,
            &self.settings.document,
        );
        drop(needed);
        report.skip(
            "jobag snapshot",
            quarantined.into_iter().map(|q| (q.posting_id, q.reason)),
        );
        report.source_postings += postings.len() as u64;
        if incoming.is_empty() {
            return Ok(());
        }
        let diffs = self
            .store
            .reconcile_source(&incoming, self.ctx(), repair)
            .await?;
        report.record(diffs, on_diff);
        Ok(())
    }

    async fn remote_passes(
        &self,
        run: i64,
        repair: Repair,
        on_diff: &mut (dyn FnMut(&Diff) + Send),
        progress: &(dyn Fn(Phase, u64) + Sync),
        report: &mut ReconcileReport,
    ) -> anyhow::Result<()> {
        let Some(eures) = &self.eures else {
            return Ok(());
        };
        // 3. EURES's own listing against the ledger, the next page read
        // while the ledger takes this one.
        let mut seen = Seen::new(Unseen::InListing);
        let mut fetched = eures.list_page(None, LISTING_PAGE).await;
        loop {
            let page = match fetched {
                Ok(page) => page,
                Err(outcome) => {
                    tracing::warn!(
                        outcome = outcome.label(),
                        "EURES listing failed: remote passes skipped"
                    );
                    report.listing_complete = false;
                    return Ok(());
                }
            };
            report.skip(
                "eures listing",
                page.invalid
                    .iter()
                    .map(|shown| (None, format!("reference is no valid posting id: {shown}"))),
            );
            let next = page.next_page_token.clone().filter(|t| !t.is_empty());
            let following = async {
                match &next {
                    Some(t) => Some(eures.list_page(Some(t), LISTING_PAGE).await),
                    None => None,
                }
            };
            let (taken, following) = tokio::join!(
                self.take_listing_page(&page.items, &mut seen, repair, on_diff, report),
                following
            );
            taken?;
            progress(Phase::Listing, report.eures_items);
            match following {
                Some(f) => fetched = f,
                None => break,
            }
        }
        report.listing_complete = true;
        // 4. Ledger records the (complete) listing did not show.
        self.unseen_pass(&seen, run, repair, on_diff, progress, report)
            .await?;
        Ok(())
    }

    /// Compares one page of the EURES listing with the ledger (and repairs).
    async fn take_listing_page(
        &self,
        items: &[ListedVacancy],
        seen: &mut Seen,
        repair: Repair,
        on_diff: &mut (dyn FnMut(&Diff) + Send),
        report: &mut ReconcileReport,
    ) -> anyhow::Result<()> {
        report.eures_items += items.len() as u64;
        // Compare in full only what may differ: copies the ledger does
        // not believe EURES holds at this version and hash.
        let ids: Vec<&str> = items.iter().map(|i| i.reference.as_str()).collect();
        let held = self.store.delivered_copies(&ids).await?;
        for h in held.values() {
            seen.mark(h.key);
        }
        let listed: Vec<Listed> = items
            .iter()
            .filter(|i| {
                held.get(&i.reference)
                    .and_then(|h| h.copy.as_ref())
                    .is_none_or(|(version, hash)| {
                        *version != i.source_version
                            || i.content_sha256.as_deref() != Some(hash.as_str())
                    })
            })
            .map(|i| Listed {
                reference: i.reference.clone(),
                source_version: i.source_version,
                content_sha256: i.content_sha256.clone(),
            })
            .collect();
        if listed.is_empty() {
            return Ok(());
        }
        let diffs = self
            .store
            .reconcile_remote(&listed, self.ctx(), repair)
            .await?;
        report.record(diffs, on_diff);
        Ok(())
    }

    /// Walks the ledger for records run `run` did not see: in the snapshot
    /// or in the listing. Reads keys and ids only; judges (and locks) just
    /// the records `seen` lacks.
    async fn unseen_pass(
        &self,
        seen: &Seen,
        run: i64,
        repair: Repair,
        on_diff: &mut (dyn FnMut(&Diff) + Send),
        progress: &(dyn Fn(Phase, u64) + Sync),
        report: &mut ReconcileReport,
    ) -> anyhow::Result<()> {
        let unseen = seen.source;
        let phase = match unseen {
            Unseen::InSnapshot => Phase::SourceGone,
            Unseen::InListing => Phase::ListingMissing,
        };
        let mut after = i64::MIN;
        let mut found = 0;
        loop {
            let rows = self
                .store
                .unseen_candidates(unseen, run, after, LEDGER_PAGE)
                .await?;
            let Some((last, _)) = rows.last() else {
                return Ok(());
            };
            after = *last;
            let ids: Vec<&str> = rows
                .iter()
                .filter(|(key, _)| !seen.saw(*key))
                .map(|(_, id)| id.as_str())
                .collect();
            if !ids.is_empty() {
                let diffs = self
                    .store
                    .reconcile_unseen(unseen, &ids, run, self.ctx(), repair)
                    .await?;
                found += diffs.len() as u64;
                report.record(diffs, on_diff);
            }
            progress(phase, found);
        }
    }
}

impl ReconcileReport {
    /// Counts, names (up to [`SKIPPED_SHOWN`]) and logs the items of one page
    /// that were skipped; one log line per page, however many.
    fn skip(
        &mut self,
        from: &'static str,
        items: impl IntoIterator<Item = (Option<String>, String)>,
    ) {
        let mut count = 0u64;
        let mut first: Option<(Option<String>, String)> = None;
        for (id, reason) in items {
            count += 1;
            if first.is_none() {
                first = Some((id.clone(), reason.clone()));
            }
            if self.skipped_items.len() < SKIPPED_SHOWN {
                self.skipped_items.push(SkippedItem { from, id, reason });
            }
        }
        self.skipped += count;
        if let Some((id, reason)) = first {
            tracing::warn!(
                from,
                count,
                first_id = id.as_deref().unwrap_or("-"),
                first_reason = %reason,
                "reconcile skipped items it could not use"
            );
        }
    }

    fn record(&mut self, diffs: Vec<Diff>, on_diff: &mut (dyn FnMut(&Diff) + Send)) {
        for d in &diffs {
            *self.differences.entry(d.kind).or_insert(0) += 1;
            on_diff(d);
        }
    }
}

/// The longest pause before a requested reconcile that failed is tried
/// again.
const RECONCILE_RETRY_CAP: Duration = Duration::from_secs(60);

impl Worker {
    /// Reconciles every `interval`, and when the feed forgot our cursor
    /// (the snapshot then tells what the feed can no longer): that request
    /// is kept in the ledger and tried again, with backoff, until a run
    /// completes, across restarts.
    pub(super) async fn reconcile_loop(
        self: std::sync::Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let every = self.settings.reconcile_interval;
        let mut next_periodic = every.map(|d| tokio::time::Instant::now() + d);
        let mut failures: u32 = 0;
        while !*stop.borrow() {
            let requested = if self.is_leader() {
                match self.store.reconcile_requested().await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the reconcile request failed");
                        None
                    }
                }
            } else {
                None
            };
            let periodic = next_periodic.is_some_and(|at| at <= tokio::time::Instant::now());
            if self.is_leader() && (requested.is_some() || periodic) {
                if periodic {
                    next_periodic = every.map(|d| tokio::time::Instant::now() + d);
                }
                // A run over a large ledger takes tens of seconds: a stop
                // does not wait for it. Each repair is its own transaction,
                // and a requested run stays requested until one completes.
                let mut no_diffs = |_: &Diff| {};
                let run = tokio::select! {
                    run = self.reconcile(Repair::Apply, &mut no_diffs, &|_, _| {}) => run,
                    _ = stop.changed() => {
                        tracing::info!("reconcile interrupted by the stop");
                        break;
                    }
                };
                match run {
                    Ok(report) if report.listing_complete || self.settings.mode == Mode::Pull => {
                        failures = 0;
                        if let Some(at) = requested
                            && let Err(e) = self.store.reconcile_done(at).await
                        {
                            tracing::warn!(error = %e, "forgetting the reconcile request failed");
                        }
                    }
                    Ok(_) => failures = failures.saturating_add(1),
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, "reconcile failed; trying again later");
                    }
                }
            }
            // A pending request is looked at again after a backoff (from 1 s,
            // doubling, at most a minute); otherwise the loop sleeps until
            // the next periodic run or a request.
            let retry = Duration::from_secs(1u64 << failures.min(6)).min(RECONCILE_RETRY_CAP);
            let until_periodic = next_periodic
                .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
                .unwrap_or(RECONCILE_RETRY_CAP);
            tokio::select! {
                _ = tokio::time::sleep(retry.min(until_periodic).max(Duration::from_millis(10))) => {}
                _ = self.reconcile_requested.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_remembers_exactly_the_keys_it_marked() {
        let mut seen = Seen::new(Unseen::InSnapshot);
        let marked = [i64::MIN, -1, 0, 1, 65_536, 4_000_000_000, i64::MAX];
        for k in marked {
            seen.mark(k);
        }
        for k in marked {
            assert!(seen.saw(k), "{k}");
        }
        for k in [i64::MIN + 1, -2, 2, 65_535, 4_000_000_001, i64::MAX - 1] {
            assert!(!seen.saw(k), "{k}");
        }
    }
}
