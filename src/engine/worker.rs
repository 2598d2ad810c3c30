//! The worker itself: what it needs from the configuration, the facts it
//! shares with the HTTP side, and `run`, which starts every loop and stops
//! them all when the caller asks or when one of them dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, watch};

use crate::domain::ledger::Mode;
use crate::domain::render::DocumentSettings;
use crate::eures::{EuresClient, RetryPolicy};
use crate::jobag::JobagClient;
use crate::store::{Ctx, Store};

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
    /// `eures.request_timeout_ms`: a claimed request goes out only while
    /// its lease has this and a margin left (SPEC 3.9).
    pub request_timeout: Duration,
}

/// What SPEC 3.8 adds to the request timeout before a deletion that
/// followed a request in doubt is verified: the margin a claim's lease
/// must have left beyond the request timeout before it is sent.
pub const VERIFY_MARGIN: Duration =
    Duration::from_millis(crate::domain::ledger::guards::SEND_MARGIN_MS as u64);

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
        let owner = if crate::store::DatabaseUrl::is_sqlite(&config.database.url) {
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
                request_timeout: config.eures.request_timeout,
            },
            wake: Arc::new(Notify::new()),
            health: Arc::new(Health::default()),
            reconcile_requested: Arc::new(Notify::new()),
        })
    }

    pub(super) fn ctx(&self) -> Ctx {
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
        loops.spawn("leader", self.clone().leader_loop(halted.clone()));
        loops.spawn("feed", self.clone().feed_loop(halted.clone()));
        loops.spawn("expiry", self.clone().expiry_loop(halted.clone()));
        loops.spawn("reconcile", self.clone().reconcile_loop(halted.clone()));
        // The totals stop after the delivery loop has drained, so the last
        // line counts the requests that finished during the drain.
        let (totals_stop, totals_stopped) = watch::channel(false);
        let totals = match self.settings.mode {
            Mode::Push => {
                loops.spawn("delivery", self.clone().delivery_loop(halted.clone()));
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

/// Sleeps for `d` unless the stop comes first. Returns whether the loop
/// goes on: false once the stop is set, or once its sender is gone (then
/// nothing could ever stop the loop, and nothing waits for it either).
pub(super) async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow_and_update() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        changed = stop.changed() => {
            if changed.is_err() {
                return false;
            }
        }
    }
    !*stop.borrow()
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

    #[tokio::test]
    async fn a_pause_without_a_stop_sleeps_its_time_and_goes_on() {
        let (_stop_tx, mut stop) = watch::channel(false);
        let started = std::time::Instant::now();
        assert!(pause(&mut stop, Duration::from_millis(30)).await);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn a_stop_cuts_a_pause_short() {
        let (stop_tx, mut stop) = watch::channel(false);
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = stop_tx.send(true);
            stop_tx
        });
        let paused = tokio::time::timeout(
            Duration::from_secs(5),
            pause(&mut stop, Duration::from_secs(60)),
        )
        .await;
        assert_eq!(paused, Ok(false));
        drop(stopper.await);
    }

    #[tokio::test]
    async fn a_stop_set_before_the_pause_ends_it_at_once() {
        let (_stop_tx, mut stop) = watch::channel(true);
        let paused = tokio::time::timeout(
            Duration::from_secs(5),
            pause(&mut stop, Duration::from_secs(60)),
        )
        .await;
        assert_eq!(paused, Ok(false));
    }

    #[tokio::test]
    async fn a_stop_channel_whose_sender_is_gone_ends_the_pause() {
        let (stop_tx, mut stop) = watch::channel(false);
        drop(stop_tx);
        let paused = tokio::time::timeout(
            Duration::from_secs(5),
            pause(&mut stop, Duration::from_secs(60)),
        )
        .await;
        assert_eq!(paused, Ok(false));
    }
}
