//! The worker: ingest the feed, deliver due operations, expire postings on
//! time. Each loop is small and talks to the others only through the store
//! and a wake-up signal; none of them holds postings in memory beyond one
//! page or one claimed batch.
//!
//! Several workers may share one PostgreSQL ledger. All of them deliver
//! (the store's leases keep one posting with one worker at a time) and
//! expire what is due (an expiry is idempotent, and a leader's death must
//! not hold up the 5 s promise); only the leader ingests the feed and runs
//! reconcile. Leadership is a lease in the store that the leader renews
//! every tick and a follower tries to take every tick, so it moves within
//! seconds of a leader's death. Other processes' commits that make work due
//! wake the delivery loop through [`Store::watch_wakeups`].

pub mod delivery;
pub mod ingest;
pub mod reconcile;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, watch};

use crate::domain::eligibility::{AbsentReason, Desired};
use crate::domain::ledger::{self, Entry, Incoming, Mode};
use crate::domain::render::DocumentSettings;
use crate::eures::{EuresClient, RetryPolicy};
use crate::jobag::{JobagClient, SourceError};
use crate::store::{Ctx, IngestBatch, IngestStats, Store};

/// How long after a failed re-read of a posting whose feed change was
/// unusable it is tried again.
pub const REREAD_RETRY: Duration = Duration::from_secs(5);

/// Feed items evaluated and written per ledger transaction.
const INGEST_CHUNK: usize = 100;

/// Epoch milliseconds of the wall clock: the agent's own time for the
/// exchange timestamps and every retry schedule.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What the worker needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// What the rendered document depends on besides the posting.
    pub document: DocumentSettings,
    pub page_size: u32,
    pub poll_interval: Duration,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub retry: RetryPolicy,
    /// How long a claimed operation stays ours before another worker may take it.
    pub lease: Duration,
    /// Lease owner name; stable per process.
    pub owner: String,
    /// Periodic reconcile; `None` = only on demand (and after a lost cursor).
    pub reconcile_interval: Option<Duration>,
    /// How long leadership lasts without renewal: how soon a follower takes
    /// over from a leader that died.
    pub leader_ttl: Duration,
    /// When to verify a deletion that followed a request in doubt:
    /// `eures.request_timeout_ms` + 5 s (SPEC 3.8).
    pub verify_after: Duration,
}

/// What SPEC 3.8 adds to the request timeout before a deletion that
/// followed a request in doubt is verified.
pub const VERIFY_MARGIN: Duration = Duration::from_secs(5);

/// How long leadership lasts without renewal (several missed ticks).
pub const LEADER_TTL: Duration = Duration::from_secs(5);

/// Shared, cheap facts the HTTP side reads (readiness, metrics).
#[derive(Debug, Default)]
pub struct Health {
    /// EURES refused our credentials: delivery is paused.
    pub auth_failing: AtomicBool,
    /// Until when (epoch ms) EURES asked us to hold off (429).
    pub throttled_until_ms: AtomicI64,
    /// When the last auth probe went out (epoch ms).
    pub last_probe_ms: AtomicI64,
    /// This worker leads: it ingests the feed and reconciles.
    pub leading: AtomicBool,
    /// When EURES last gave a clear answer to a request of ours (epoch ms):
    /// a failure counts toward the dead letters only if EURES answered
    /// something since the posting's previous attempt (SPEC 4.2).
    pub eures_answered_ms: AtomicI64,
    /// A loop of the worker ended or panicked: not ready, the process exits.
    pub loop_died: AtomicBool,
}

impl Health {
    pub fn set_auth_failing(&self, failing: bool) {
        let was = self.auth_failing.swap(failing, Ordering::SeqCst);
        if was != failing {
            if failing {
                tracing::error!(
                    "EURES refuses our credentials: delivery paused, probing once a second"
                );
            } else {
                tracing::info!("EURES accepts our credentials again: delivery resumes");
            }
        }
        crate::telemetry::set_auth_failing(failing);
    }
}

pub struct Worker {
    pub store: Arc<dyn Store>,
    pub jobag: JobagClient,
    /// The push client; `None` in pull mode (EURES polls us).
    pub eures: Option<EuresClient>,
    pub settings: Settings,
    /// Wakes the delivery loop when work may have become due.
    pub wake: Arc<Notify>,
    pub health: Arc<Health>,
    /// Asks the reconcile loop for a pass now.
    pub reconcile_requested: Arc<Notify>,
}

impl Worker {
    /// Builds a worker from the configuration and an open store.
    pub fn from_config(
        config: &crate::config::Config,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Worker> {
        use crate::config::Token;
        let extra_ca = config.tls.extra_ca_file.as_deref();
        let jobag = JobagClient::new(
            &config.jobag.base_url,
            config.token(Token::Jobag)?,
            config.eures.request_timeout,
            extra_ca,
        )?;
        let eures = match config.eures.mode {
            Mode::Push => Some(EuresClient::new(
                &config.eures.base_url,
                config.token(Token::Eures)?,
                config.eures.request_timeout,
                config.eures.concurrency,
                extra_ca,
            )?),
            Mode::Pull => None,
        };
        let owner = if config.database.url.starts_with("sqlite:") {
            // One worker per SQLite file: a restarted process takes back
            // the leases its predecessor held.
            "local".to_string()
        } else {
            format!("worker-{}-{}", std::process::id(), now_ms())
        };
        Ok(Worker {
            store,
            jobag,
            eures,
            settings: Settings {
                mode: config.eures.mode,
                document: config.document_settings(),
                page_size: config.jobag.page_size,
                poll_interval: config.jobag.poll_interval,
                concurrency: config.eures.concurrency,
                max_attempts: config.eures.max_attempts,
                retry: RetryPolicy::default(),
                // The lease must outlast the request it covers (bounded by
                // the request timeout) plus the clock skew between workers;
                // it is also how long a killed worker's operations wait.
                lease: config.eures.request_timeout.saturating_mul(2) + Duration::from_secs(5),
                owner,
                reconcile_interval: config.reconcile.interval,
                leader_ttl: LEADER_TTL,
                verify_after: config.eures.request_timeout + VERIFY_MARGIN,
            },
            wake: Arc::new(Notify::new()),
            health: Arc::new(Health::default()),
            reconcile_requested: Arc::new(Notify::new()),
        })
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            now_ms: now_ms(),
            mode: self.settings.mode,
        }
    }

    /// The time eligibility is judged by: the ledger's (on PostgreSQL the
    /// database server's), so workers whose clocks differ judge
    /// `publication_end` alike. The process clock if the ledger does not
    /// answer (the write that follows fails then anyway).
    pub(crate) async fn ledger_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.store
            .now_ms()
            .await
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or_else(chrono::Utc::now)
    }

    /// Reads one page of the feed after the stored cursor and applies it.
    /// Returns the stats and whether more pages wait.
    pub async fn poll_once(&self) -> anyhow::Result<(IngestStats, bool)> {
        let cursor = self.store.cursor().await?.filter(|c| !c.is_empty());
        let page = match self
            .jobag
            .changes(cursor.as_deref(), self.settings.page_size)
            .await
        {
            Ok(page) => page,
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
                return Ok((IngestStats::default(), true));
            }
            Err(e) => return Err(e.into()),
        };
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
            let (changes, quarantined) = ingest::evaluate_feed_page(
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
        self.store.set_last_poll(now_ms()).await?;
        if stats.applied > 0 {
            self.wake.notify_one();
        }
        Ok((stats, page.has_more))
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
                let (mut changes, quarantined) = ingest::evaluate_page(
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

    /// How often leadership is renewed or tried, and a follower's pause.
    fn leader_tick(&self) -> Duration {
        self.settings
            .poll_interval
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// Whether this worker runs the singleton loops now.
    pub fn is_leader(&self) -> bool {
        self.health.leading.load(Ordering::SeqCst)
    }

    /// Takes or renews leadership once; a failure counts as not leading.
    async fn try_lead(&self) -> bool {
        let leading = match self
            .store
            .lead(&self.settings.owner, self.settings.leader_ttl)
            .await
        {
            Ok(leading) => leading,
            Err(e) => {
                tracing::warn!(error = %e, "renewing leadership failed");
                false
            }
        };
        crate::telemetry::set_leader(leading);
        if self.health.leading.swap(leading, Ordering::SeqCst) != leading {
            if leading {
                tracing::info!(owner = %self.settings.owner, "leading: ingesting the feed, reconciling");
            } else {
                tracing::info!(owner = %self.settings.owner, "following: delivering and expiring only");
            }
        }
        leading
    }

    async fn lead_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(self.leader_tick()) => {}
                _ = stop.changed() => break,
            }
            self.try_lead().await;
        }
        // Hand over at once instead of letting the lease run out.
        crate::telemetry::set_leader(false);
        if self.health.leading.swap(false, Ordering::SeqCst)
            && let Err(e) = self.store.lead(&self.settings.owner, Duration::ZERO).await
        {
            tracing::warn!(error = %e, "giving up leadership failed; it expires by itself");
        }
    }

    /// A follower's pause before it looks again.
    async fn follow(&self, stop: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(self.leader_tick()) => {}
            _ = stop.changed() => {}
        }
    }

    async fn ingest_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        while !*stop.borrow() {
            if !self.is_leader() {
                self.follow(&mut stop).await;
                continue;
            }
            let pause = match self.poll_once().await {
                Ok((_, true)) => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok((_, false)) => {
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
                        .min(Duration::from_secs(30));
                    tracing::warn!(jobag = %self.jobag.base_url(), error = %e, retry_in_ms = wait.as_millis() as u64, "feed poll failed");
                    wait
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    async fn expiry_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Wake at least once a second: postings with an earlier end may have
        // arrived since the last look; the SPEC allows 5 s.
        const MAX_SLEEP: Duration = Duration::from_millis(1000);
        while !*stop.borrow() {
            match self.store.expire_due(self.ctx()).await {
                Ok(n) if n > 0 => {
                    tracing::info!(count = n, "postings expired");
                    self.wake.notify_one();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "expiry pass failed"),
            }
            let pause = match self.store.next_expiry_ms().await {
                Ok(Some(at)) => {
                    Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(MAX_SLEEP)
                }
                _ => MAX_SLEEP,
            };
            tokio::select! {
                _ = tokio::time::sleep(pause.max(Duration::from_millis(10))) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Runs every loop until `stop` turns true, then drains in-flight
    /// deliveries and gives back their leases. A loop that ends on its own
    /// or panics stops the others (they drain as on a signal) and makes
    /// `run` fail naming it: a worker with a dead loop would answer
    /// `/healthz` and do nothing, so the process exits and its supervisor
    /// restarts it.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        self.store.migrate().await.context("applying migrations")?;
        let released = self.store.release_all(&self.settings.owner).await?;
        if released > 0 {
            tracing::info!(count = released, "reclaimed leases of a previous run");
        }
        // The loops stop on this channel: on the caller's signal, or when
        // one of them dies.
        let (halt, halted) = watch::channel(false);
        self.store.watch_wakeups(self.wake.clone(), halted.clone());
        self.try_lead().await;
        let mut loops = Loops::default();
        loops.spawn("leader", self.clone().lead_loop(halted.clone()));
        loops.spawn("feed", self.clone().ingest_loop(halted.clone()));
        loops.spawn("expiry", self.clone().expiry_loop(halted.clone()));
        loops.spawn("reconcile", self.clone().reconcile_loop(halted.clone()));
        // The totals stop after the delivery loop has drained, so the last
        // line counts the requests that finished during the drain.
        let (totals_stop, totals_stopped) = watch::channel(false);
        let totals = match self.settings.mode {
            Mode::Push => {
                loops.spawn("delivery", self.clone().deliver_loop(halted.clone()));
                Some(tokio::spawn(crate::telemetry::log_delivery_totals(
                    totals_stopped,
                )))
            }
            Mode::Pull => None,
        };
        let died = supervise(&mut loops, &mut stop, &halt, || {
            self.health.loop_died.store(true, Ordering::SeqCst);
        })
        .await;
        if let Some(totals) = totals {
            let _ = totals_stop.send(true);
            let _ = totals.await;
        }
        self.store.release_all(&self.settings.owner).await?;
        if let Some((name, how)) = died {
            anyhow::bail!("the worker's {name} loop {}", how.as_str());
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// How a worker loop came to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoopEnd {
    Returned,
    Panicked,
}

impl LoopEnd {
    fn as_str(self) -> &'static str {
        match self {
            LoopEnd::Returned => "ended",
            LoopEnd::Panicked => "panicked",
        }
    }
}

/// Waits until every loop has ended. They are all stopped (`halt`) when
/// the caller's `stop` turns true, or as soon as one ends on its own or
/// panics: that first one is returned, after `died` has been told.
async fn supervise(
    loops: &mut Loops,
    stop: &mut watch::Receiver<bool>,
    halt: &watch::Sender<bool>,
    died: impl Fn(),
) -> Option<(&'static str, LoopEnd)> {
    let mut first = None;
    let mut signalled = false;
    loop {
        if !signalled && *stop.borrow_and_update() {
            signalled = true;
            let _ = halt.send(true);
        }
        tokio::select! {
            ended = loops.next() => {
                let Some((name, how)) = ended else { return first };
                if how == LoopEnd::Panicked || !*halt.borrow() {
                    tracing::error!(
                        worker_loop = name,
                        "the {name} loop {}: stopping the worker so that its supervisor restarts it",
                        how.as_str()
                    );
                    died();
                    first.get_or_insert((name, how));
                    let _ = halt.send(true);
                }
            }
            changed = stop.changed(), if !signalled => {
                if changed.is_err() {
                    signalled = true;
                    let _ = halt.send(true);
                }
            }
        }
    }
}

/// The worker's loops, by name, as they end.
#[derive(Default)]
struct Loops {
    set: tokio::task::JoinSet<()>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Loops {
    fn spawn(&mut self, name: &'static str, body: impl Future<Output = ()> + Send + 'static) {
        let id = self.set.spawn(body).id();
        self.names.insert(id, name);
    }

    /// The next loop to end and how; `None` once all have.
    async fn next(&mut self) -> Option<(&'static str, LoopEnd)> {
        let (id, how) = match self.set.join_next_with_id().await? {
            Ok((id, ())) => (id, LoopEnd::Returned),
            Err(e) => (e.id(), LoopEnd::Panicked),
        };
        Some((self.names.remove(&id).unwrap_or("unnamed"), how))
    }
}

/// JobAG answered a single-posting read with something that is no usable
/// posting (no id or version, not JSON).
#[derive(Debug, thiserror::Error)]
#[error("posting {id}: JobAG returned an unusable posting: {reason}")]
pub struct UnusablePosting {
    id: String,
    reason: String,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A loop as the worker's are: runs until halted, then returns.
    async fn until_halted(mut halted: watch::Receiver<bool>) {
        while !*halted.borrow_and_update() {
            if halted.changed().await.is_err() {
                return;
            }
        }
    }

    /// Supervises two well-behaved loops and `third`; `stop_after` sends
    /// the caller's stop. Returns what `supervise` named and how often it
    /// reported a death.
    async fn supervised<F>(
        third: impl FnOnce(watch::Receiver<bool>) -> F,
        stop_after: Option<Duration>,
    ) -> (Option<(&'static str, LoopEnd)>, usize)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (halt, halted) = watch::channel(false);
        let (stop_tx, mut stop) = watch::channel(false);
        let mut loops = Loops::default();
        loops.spawn("feed", until_halted(halted.clone()));
        loops.spawn("third", third(halted.clone()));
        loops.spawn("expiry", until_halted(halted));
        let stopper = tokio::spawn(async move {
            match stop_after {
                Some(after) => {
                    tokio::time::sleep(after).await;
                    let _ = stop_tx.send(true);
                }
                None => std::future::pending().await,
            }
        });
        let deaths = AtomicUsize::new(0);
        let died = tokio::time::timeout(
            Duration::from_secs(10),
            supervise(&mut loops, &mut stop, &halt, || {
                deaths.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .await
        .expect("every loop ends once one has died or a stop came");
        stopper.abort();
        (died, deaths.into_inner())
    }

    #[tokio::test]
    async fn a_panicking_loop_stops_the_others_and_is_named() {
        let (died, deaths) = supervised(
            |_| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                panic!("injected");
            },
            None,
        )
        .await;
        assert_eq!(died, Some(("third", LoopEnd::Panicked)));
        assert_eq!(deaths, 1);
    }

    #[tokio::test]
    async fn a_loop_that_returns_on_its_own_stops_the_others() {
        let (died, deaths) = supervised(|_| async {}, None).await;
        assert_eq!(died, Some(("third", LoopEnd::Returned)));
        assert_eq!(deaths, 1);
    }

    #[tokio::test]
    async fn a_stop_ends_every_loop_and_nothing_died() {
        let (died, deaths) = supervised(until_halted, Some(Duration::from_millis(20))).await;
        assert_eq!(died, None);
        assert_eq!(deaths, 0);
    }

    #[tokio::test]
    async fn a_panic_during_the_drain_is_still_reported() {
        let (died, deaths) = supervised(
            |halted| async move {
                until_halted(halted).await;
                panic!("injected while draining");
            },
            Some(Duration::from_millis(20)),
        )
        .await;
        assert_eq!(died, Some(("third", LoopEnd::Panicked)));
        assert_eq!(deaths, 1);
    }
}
