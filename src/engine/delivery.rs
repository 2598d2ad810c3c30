//! The delivery loop: claim due operations (deletions first) while fewer
//! than `concurrency` plus a short waiting line are claimed and unfinished,
//! perform each as a request slot frees, record the outcome. The waiting
//! line (half the concurrency) keeps the slots busy while the next claim
//! waits for its turn at the ledger; a deletion that becomes due waits for
//! the requests in flight and at most that line.
//!
//! Backpressure is the store itself: nothing is queued in memory beyond the
//! claimed and unfinished operations (at most one and a half times
//! `concurrency`) and the outcomes on their way to the ledger (a channel
//! of four times `concurrency`, and the batch being written).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::worker::pause;
use super::{Worker, now_ms};
use crate::domain::ledger::{AttemptResult, Hold, Op, Outcome, RetryLimits, guards};
use crate::eures::{EuresClient, VacancyPut};
use crate::store::{Claimed, Completion, Listed, Repair};

/// While busy, wait this long for more slots to free before claiming, so a
/// claim takes several operations at once. It bounds the extra wait of a
/// deletion that becomes due.
const CLAIM_GATHER: Duration = Duration::from_millis(1);

/// How long the recorder gathers outcomes for one transaction.
const RECORD_GATHER: Duration = Duration::from_millis(5);

/// At most this many outcomes per ledger transaction.
const RECORD_BATCH: usize = 256;

/// How long the loop sleeps when nothing is due and nobody wakes it.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// The shortest sleep until the next operation is due.
const MIN_IDLE: Duration = Duration::from_millis(5);
/// How long after a failed claim the next is tried.
const CLAIM_RETRY: Duration = Duration::from_secs(1);
/// Auth failures: probe at most this often (SPEC 4.2).
const AUTH_PROBE_EVERY_MS: i64 = 1000;
/// While credentials are refused, how often the loop looks whether a
/// probe may go out.
const AUTH_WAIT: Duration = Duration::from_millis(100);

/// What the worker knows of a claim on its own clocks, taken when the
/// claim was asked for (no later than the ledger granted it).
#[derive(Debug, Clone, Copy)]
struct ClaimClock {
    /// When the claim was asked for, on the monotonic clock: the lease was
    /// granted no earlier, so time since then is never less than the
    /// ledger's since the grant.
    asked: tokio::time::Instant,
    /// The ledger's clock when it granted the claim.
    claimed_at_ms: i64,
    /// The lease granted, from `claimed_at_ms`.
    lease_ms: i64,
    /// The process clock minus the ledger's at the claim: turns a time the
    /// ledger stamped into one comparable with the process clock.
    ledger_to_process_ms: i64,
}

impl ClaimClock {
    /// The ledger's clock now, carried forward from the claim by the
    /// monotonic clock (never the wall clock, which may be off).
    fn ledger_now_ms(&self) -> i64 {
        let since = i64::try_from(self.asked.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.claimed_at_ms.saturating_add(since)
    }

    /// Whether the claimed request may still go out ([`guards::may_send`]):
    /// sent later, it could land after another worker took the posting over.
    fn may_send(&self, request_timeout: Duration) -> bool {
        let timeout_ms = i64::try_from(request_timeout.as_millis()).unwrap_or(i64::MAX);
        guards::may_send(
            self.claimed_at_ms.saturating_add(self.lease_ms),
            self.ledger_now_ms(),
            timeout_ms,
        )
    }

    /// A process-clock reading on the ledger's clock, as of the claim.
    fn on_ledger_clock(&self, process_ms: i64) -> i64 {
        process_ms.saturating_sub(self.ledger_to_process_ms)
    }
}

/// Whether a failure without a clear answer counts as a strike
/// ([`guards::counts_as_strike`]). `answered_ms`: when EURES last clearly
/// answered any request, on the process clock (0: never); `started_ms`: when
/// this attempt started, on the process clock. Both are moved onto the
/// ledger's clock before they are compared with `last_attempt_ms`, which the
/// ledger stamped: a worker a minute ahead of the database would otherwise
/// count every failure of an outage's first minute as the document's own
/// (SPEC 3.9).
fn answered_since_previous(
    answered_ms: i64,
    last_attempt_ms: Option<i64>,
    started_ms: i64,
    clock: ClaimClock,
) -> bool {
    guards::counts_as_strike(
        (answered_ms > 0).then(|| clock.on_ledger_clock(answered_ms)),
        last_attempt_ms,
        clock.on_ledger_clock(started_ms),
    )
}

/// One finished attempt on its way to the ledger.
struct Finished {
    claimed: Claimed,
    result: AttemptResult,
    label: &'static str,
    backoff: Duration,
}

/// Waits for the next finished attempts and gathers those that follow
/// within [`RECORD_GATHER`] into `batch`; false once no sender is left.
/// Outcomes that finish close together share a transaction: its cost is
/// mostly per transaction (statements, commit, a turn at the write lock),
/// and their requests' slots are free already: only the leases wait.
async fn gather(finished: &mut mpsc::Receiver<Finished>, batch: &mut Vec<Finished>) -> bool {
    if finished.recv_many(batch, RECORD_BATCH).await == 0 {
        return false;
    }
    let until = tokio::time::Instant::now() + RECORD_GATHER;
    while batch.len() < RECORD_BATCH {
        let space = RECORD_BATCH - batch.len();
        match tokio::time::timeout_at(until, finished.recv_many(batch, space)).await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    true
}

/// The two bounds on delivery's work in hand.
struct Lanes {
    /// Requests in flight: at most `concurrency`.
    slots: Arc<Semaphore>,
    /// Places for operations claimed and unfinished: in flight, or waiting
    /// for a slot in claim order (the semaphore is first come, first
    /// served). Half the concurrency more than the slots, so the slots stay
    /// busy while the next claim waits for its turn at the ledger.
    places: Arc<Semaphore>,
    /// How many operations may be claimed and unfinished at once.
    capacity: usize,
    /// Fewer free places than this make a claim wait [`CLAIM_GATHER`] for
    /// more, while others are unfinished.
    worth_a_claim: usize,
    /// All `slots` permits: the drain waits until it holds them all.
    concurrency: usize,
}

impl Lanes {
    fn new(concurrency: usize) -> Lanes {
        let capacity = concurrency + concurrency / 2;
        Lanes {
            slots: Arc::new(Semaphore::new(concurrency)),
            places: Arc::new(Semaphore::new(capacity)),
            capacity,
            worth_a_claim: (concurrency / 4).max(1),
            concurrency,
        }
    }

    fn free(&self) -> usize {
        self.places.available_permits()
    }
}

/// How many operations the next claim may take, and the time it claims at.
struct Room {
    limit: usize,
    now: i64,
}

impl Worker {
    /// Claims due operations, sends each as a request slot frees, and hands
    /// the outcomes to [`Worker::record_loop`], until the stop; then lets
    /// the requests in flight finish.
    pub(super) async fn delivery_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let lanes = Lanes::new(self.settings.concurrency);
        // Outcomes go to the ledger in batches: one transaction for many
        // acknowledgements. The bound is the backpressure on requests.
        let (finished_tx, finished_rx) = mpsc::channel::<Finished>(self.settings.concurrency * 4);
        let recorder = tokio::spawn(self.clone().record_loop(finished_rx));
        while !*stop.borrow() {
            let Some(room) = self.room_to_claim(&lanes, &mut stop).await else {
                continue;
            };
            let asked = tokio::time::Instant::now();
            let claimed = self.claim(room, &mut stop).await;
            let process_now = now_ms();
            for op in claimed {
                let clock = ClaimClock {
                    asked,
                    claimed_at_ms: op.claimed_at_ms,
                    lease_ms: i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX),
                    ledger_to_process_ms: process_now.saturating_sub(op.claimed_at_ms),
                };
                let Ok(place) = lanes.places.clone().acquire_owned().await else {
                    break;
                };
                self.send(op, clock, place, &lanes, &finished_tx, &stop);
            }
        }
        self.drain(&lanes).await;
        drop(finished_tx);
        let _ = recorder.await;
    }

    /// How much to claim now. `None` after waiting instead: while EURES
    /// asks us to hold off, while its refusal of our credentials allows
    /// only a probe a second (sent alone), or while every place is taken;
    /// also once the stop has come.
    async fn room_to_claim(&self, lanes: &Lanes, stop: &mut watch::Receiver<bool>) -> Option<Room> {
        let now = now_ms();
        let throttled_until = self.health.throttled_until_ms.load(Ordering::SeqCst);
        if throttled_until > now {
            let wait = Duration::from_millis(u64::try_from(throttled_until - now).unwrap_or(0));
            pause(stop, wait).await;
            return None;
        }
        let mut limit = lanes.free();
        if self.health.auth_failing.load(Ordering::SeqCst) {
            let last = self.health.last_probe_ms.load(Ordering::SeqCst);
            if now - last < AUTH_PROBE_EVERY_MS || limit < lanes.capacity {
                pause(stop, AUTH_WAIT).await;
                return None;
            }
            self.health.last_probe_ms.store(now, Ordering::SeqCst);
            limit = 1;
        }
        // Claim in batches while busy (each claim is a transaction), but
        // never hold claimed work back: whatever is claimed starts as soon
        // as a slot frees.
        let unfinished = lanes.capacity - lanes.free();
        if limit < lanes.worth_a_claim && unfinished > 0 {
            if !pause(stop, CLAIM_GATHER).await {
                return None;
            }
            limit = lanes.free();
        }
        if limit == 0 {
            self.wait_for_work(stop, IDLE_POLL).await;
            return None;
        }
        Some(Room { limit, now })
    }

    /// Claims up to `room.limit` due operations, deletions first. Nothing
    /// after a wait: until the next operation is due, or a second after a
    /// claim that failed.
    async fn claim(&self, room: Room, stop: &mut watch::Receiver<bool>) -> Vec<Claimed> {
        let claimed = self
            .store
            .claim(
                &self.settings.owner,
                room.limit,
                room.now,
                self.settings.lease,
            )
            .await;
        match claimed {
            Ok(claimed) if !claimed.is_empty() => claimed,
            Ok(_) => {
                let until_due = match self.store.next_due_ms().await {
                    Ok(Some(at)) => {
                        Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
                    }
                    _ => IDLE_POLL,
                };
                self.wait_for_work(stop, until_due.clamp(MIN_IDLE, IDLE_POLL))
                    .await;
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming due operations failed");
                pause(stop, CLAIM_RETRY).await;
                Vec::new()
            }
        }
    }

    /// Sends one claimed operation once a request slot is free, in a task
    /// of its own; `place` is its place among the claimed and unfinished.
    fn send(
        self: &Arc<Self>,
        op: Claimed,
        clock: ClaimClock,
        place: OwnedSemaphorePermit,
        lanes: &Lanes,
        finished: &mpsc::Sender<Finished>,
        stop: &watch::Receiver<bool>,
    ) {
        let worker = self.clone();
        let finished = finished.clone();
        let slots = lanes.slots.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(slot) = slots.acquire_owned().await else {
                return;
            };
            if *stop.borrow() {
                // Never started: the lease goes back with the rest when the
                // worker stops.
                return;
            }
            if !clock.may_send(worker.settings.request_timeout) {
                // Waited too long for a slot: another worker may hold the
                // posting by now, and this request could land after its.
                tracing::info!(posting = %op.id, op = op.op.as_str(),
                    "the lease has too little time left to send: given back unsent");
                if let Err(e) = worker.store.release(&worker.settings.owner, &op).await {
                    tracing::warn!(posting = %op.id, error = %e, "releasing lease failed");
                }
                drop(place);
                worker.wake.notify_one();
                return;
            }
            worker.attempt(op, clock, &finished).await;
            drop(slot);
            drop(place);
            worker.wake.notify_one();
        });
    }

    /// Sleeps for `d` unless work may have become due or the stop comes.
    async fn wait_for_work(&self, stop: &mut watch::Receiver<bool>, d: Duration) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(d) => {}
            _ = stop.changed() => {}
        }
    }

    /// Lets the requests in flight finish: each is bounded by the request
    /// timeout, the wait as a whole by the lease they hold.
    async fn drain(&self, lanes: &Lanes) {
        let all = u32::try_from(lanes.concurrency).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(self.settings.lease, lanes.slots.acquire_many(all)).await;
    }

    /// Writes finished attempts to the ledger, as many per transaction as
    /// finish close together (at most [`RECORD_BATCH`]).
    async fn record_loop(self: Arc<Self>, mut finished: mpsc::Receiver<Finished>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while gather(&mut finished, &mut batch).await {
            self.record(&batch).await;
            for f in batch.drain(..) {
                if let AttemptResult::Eures {
                    outcome: Outcome::Superseded,
                    ..
                } = f.result
                {
                    self.learn_superseded(f.claimed);
                }
            }
            self.wake.notify_one();
        }
    }

    /// Records a batch of outcomes in one transaction.
    async fn record(&self, batch: &[Finished]) {
        let limits = RetryLimits {
            max_attempts: self.settings.max_attempts,
            verify_after: self.settings.verify_after,
        };
        let completions: Vec<Completion<'_>> = batch
            .iter()
            .map(|f| Completion {
                claimed: &f.claimed,
                result: &f.result,
                outcome_label: f.label,
                limits,
                backoff: f.backoff,
            })
            .collect();
        if let Err(e) = self
            .store
            .complete_many(&self.settings.owner, &completions, self.ctx())
            .await
        {
            // The leases expire and the operations are attempted again:
            // at least once, and EURES operations are idempotent.
            tracing::error!(error = %e, count = batch.len(), "recording delivery outcomes failed");
        }
    }

    /// EURES holds something newer than we know: learn it from the source,
    /// and for a deletion from EURES too, in a task of its own.
    fn learn_superseded(self: &Arc<Self>, claimed: Claimed) {
        let worker = self.clone();
        tokio::spawn(async move {
            if let Err(e) = worker.reread(&claimed.id, false).await {
                tracing::warn!(posting = %claimed.id, error = %e, "re-reading a superseded posting failed");
            }
            if claimed.op == Op::Delete {
                worker.learn_held_version(&claimed.id).await;
            }
        });
    }

    /// A DELETE was answered 409: the portal holds a version above the one
    /// sent (one JobAG never made, or one the ledger lost track of when an
    /// answer was lost). The portal's own word for it is recorded as a
    /// reconcile listing it would be, so the next DELETE carries it (SPEC
    /// 4.2: the highest version seen) instead of being refused until the
    /// next reconcile.
    async fn learn_held_version(&self, id: &str) {
        let Some(eures) = &self.eures else {
            return;
        };
        // The re-read before this may have found the posting wanted again
        // (JobAG holds what EURES holds): then nothing is to be deleted.
        match self.store.get(id).await {
            Ok(Some(entry)) if entry.due() == Some(Op::Delete) => {}
            _ => return,
        }
        match eures.get_one(id).await {
            Ok(Some(held)) => {
                let listed = Listed {
                    reference: held.reference,
                    source_version: held.source_version,
                    content_sha256: held.content_sha256,
                };
                if let Err(e) = self
                    .store
                    .reconcile_remote(std::slice::from_ref(&listed), self.ctx(), Repair::Apply)
                    .await
                {
                    tracing::warn!(posting = %id, error = %e, "recording the version EURES holds failed");
                } else {
                    tracing::info!(posting = %id, version = listed.source_version, "a deletion answered 409: EURES holds this version, the next DELETE carries it");
                }
            }
            // Gone meanwhile: the next DELETE is answered 404, which is done.
            Ok(None) => {}
            Err(outcome) => {
                tracing::warn!(posting = %id, outcome = ?outcome, "asking EURES which version it holds failed; the DELETE is retried");
            }
        }
    }

    /// What any answer of EURES tells the whole worker: credentials
    /// refused or accepted again, a pause asked for, the portal working.
    fn note_answer(&self, outcome: &Outcome) {
        match outcome.holds_delivery() {
            Some(Hold::Credentials) => self.health.set_auth_failing(true),
            other => {
                if self.health.auth_failing.load(Ordering::SeqCst) {
                    self.health.set_auth_failing(false);
                }
                if let Some(Hold::Requests { retry_after }) = other {
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    let until =
                        now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(0));
                    self.health
                        .throttled_until_ms
                        .fetch_max(until, Ordering::SeqCst);
                }
            }
        }
        if outcome.answered() {
            self.health
                .eures_answered_ms
                .fetch_max(now_ms(), Ordering::SeqCst);
        }
    }

    /// Hands an attempt's result to the recorder with the backoff its
    /// attempt count earns.
    async fn finish(
        &self,
        finished: &mpsc::Sender<Finished>,
        op: Claimed,
        result: AttemptResult,
        label: &'static str,
    ) {
        let backoff = self
            .settings
            .retry
            .next_delay(op.attempts, &mut rand::rng());
        let _ = finished
            .send(Finished {
                claimed: op,
                result,
                label,
                backoff,
            })
            .await;
    }

    /// Looks whether EURES holds a copy it should not (SPEC 3.8) and
    /// records what it found: nothing ends the doubt, a copy makes the
    /// deletion due again.
    async fn verify(&self, eures: &EuresClient, op: Claimed, finished: &mpsc::Sender<Finished>) {
        // Only creates and updates become dead letters: for a verification,
        // whether EURES answered others meanwhile decides nothing.
        let (result, label) = match eures.get_one(&op.id).await {
            Ok(None) => {
                self.note_answer(&Outcome::Done);
                let result = AttemptResult::Eures {
                    outcome: Outcome::Done,
                    portal_answered: true,
                };
                (result, "absent")
            }
            Ok(Some(copy)) => {
                tracing::warn!(posting = %op.id, version = copy.source_version,
                    "a deleted copy is on EURES again (a request in doubt landed late): deleting it again");
                self.note_answer(&Outcome::Done);
                let result = AttemptResult::Found {
                    version: copy.source_version,
                    hash: copy.content_sha256.unwrap_or_default(),
                };
                (result, "found")
            }
            Err(outcome) => {
                self.note_answer(&outcome);
                let label = outcome.label();
                let result = AttemptResult::Eures {
                    outcome,
                    portal_answered: true,
                };
                (result, label)
            }
        };
        crate::telemetry::record_verification(label);
        self.finish(finished, op, result, label).await;
    }

    /// Performs one claimed operation and hands its outcome to the recorder.
    #[tracing::instrument(name = "delivery", skip_all,
        fields(posting = %op.id, version = op.version, op = op.op.as_str(), outcome = tracing::field::Empty))]
    async fn attempt(&self, op: Claimed, clock: ClaimClock, finished: &mpsc::Sender<Finished>) {
        let Some(eures) = &self.eures else {
            return;
        };
        let started_ms = now_ms();
        let sent = match op.op {
            Op::Verify => return self.verify(eures, op, finished).await,
            Op::Delete => eures.delete(&op.id, op.version).await,
            Op::Create | Op::Update => {
                let Some(content) = op.content.as_deref() else {
                    return self.rebuild(op, finished).await;
                };
                let now = now_ms();
                eures
                    .put(&VacancyPut {
                        reference: &op.id,
                        source_version: op.version,
                        content,
                        creation_timestamp_ms: op.created_ms.unwrap_or(now),
                        last_modification_timestamp_ms: op.modified_ms.unwrap_or(now),
                    })
                    .await
            }
        };
        let (outcome, elapsed) = (sent.outcome, sent.elapsed);
        let label = outcome.label();
        tracing::Span::current().record("outcome", label);
        crate::telemetry::record_delivery(op.op, label, elapsed);
        if outcome.is_done() {
            tracing::debug!(posting = %op.id, version = op.version, op = op.op.as_str(), outcome = label,
                elapsed_ms = elapsed.as_millis() as u64, "delivery attempt");
        } else {
            tracing::info!(posting = %op.id, version = op.version, op = op.op.as_str(), outcome = label,
                elapsed_ms = elapsed.as_millis() as u64, "delivery attempt");
        }
        self.note_answer(&outcome);
        if outcome.is_done()
            && let Some(updated) = op.source_updated_at_ms
        {
            crate::telemetry::record_propagation((now_ms() - updated) as f64 / 1000.0);
        }
        let portal_answered = answered_since_previous(
            self.health.eures_answered_ms.load(Ordering::SeqCst),
            op.last_attempt_ms,
            started_ms,
            clock,
        );
        let result = AttemptResult::Eures {
            outcome,
            portal_answered,
        };
        self.finish(finished, op, result, label).await;
    }

    /// A create or update whose document was erased after an earlier
    /// delivery, and that reconcile found altered on EURES: a forced re-read
    /// rebuilds the document from the source, and the lease goes back so
    /// the operation is claimed again with it.
    async fn rebuild(&self, op: Claimed, finished: &mpsc::Sender<Finished>) {
        match self.reread(&op.id, true).await {
            Ok(stats) if stats.applied > 0 => {
                if let Err(e) = self.store.release(&self.settings.owner, &op).await {
                    tracing::warn!(posting = %op.id, error = %e, "releasing lease failed");
                }
            }
            // JobAG answered a version older than the ledger's (a read that
            // lags behind the feed): nothing to rebuild the document from
            // yet. An attempt, so it backs off like a failed re-read.
            Ok(_) => {
                tracing::info!(posting = %op.id, version = op.version,
                    "JobAG answered an older version than the one to rebuild; trying again later");
                let result = AttemptResult::NotSent(
                    "JobAG answered an older version than the one to rebuild".into(),
                );
                self.finish(finished, op, result, "not_sent").await;
            }
            // Recorded as an attempt, so it backs off instead of being
            // claimed again at once, ahead of all else.
            Err(e) => {
                tracing::warn!(posting = %op.id, error = %e, "re-reading the posting failed");
                let result =
                    AttemptResult::NotSent("the document could not be re-read from JobAG".into());
                self.finish(finished, op, result, "not_sent").await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(lease: Duration, ledger_to_process_ms: i64) -> ClaimClock {
        ClaimClock {
            asked: tokio::time::Instant::now(),
            claimed_at_ms: 1_000_000,
            lease_ms: lease.as_millis() as i64,
            ledger_to_process_ms,
        }
    }

    /// The process clock a minute ahead of the ledger's: the last answer
    /// came before the previous attempt (an outage since), so the failure
    /// is no strike, whichever way the clocks are off.
    #[test]
    fn strikes_compare_times_on_one_clock() {
        let minute = 60_000;
        for skew in [minute, 0, -minute] {
            let previous_ledger = 1_000_000;
            let previous_process = previous_ledger + skew;
            let c = clock(Duration::from_secs(30), skew);
            let before = previous_process - 5_000;
            let after = previous_process + 5_000;
            assert!(
                !answered_since_previous(before, Some(previous_ledger), after, c),
                "skew {skew}: an answer before the previous attempt counted"
            );
            assert!(
                answered_since_previous(after, Some(previous_ledger), after, c),
                "skew {skew}: an answer after the previous attempt not counted"
            );
        }
    }

    #[test]
    fn a_claim_is_sent_only_while_its_lease_has_a_request_and_its_margin_left() {
        let timeout = Duration::from_secs(2);
        let now = tokio::time::Instant::now();
        // Claimed `ago` with a lease of `lease`.
        let with = |lease: u64, ago: u64| ClaimClock {
            asked: now - Duration::from_secs(ago),
            claimed_at_ms: 1_000_000,
            lease_ms: Duration::from_secs(lease).as_millis() as i64,
            ledger_to_process_ms: 0,
        };
        assert!(with(60, 0).may_send(timeout));
        assert!(
            with(9, 2).may_send(timeout),
            "7 s left: the request and its margin"
        );
        assert!(!with(9, 3).may_send(timeout), "6 s left: given back unsent");
        assert!(!with(9, 10).may_send(timeout), "ran out");
    }
}
