//! The delivery loop: claim due operations (deletions first) only when a
//! request slot is free, so a deletion that becomes due waits for nothing
//! but the requests already in flight; perform each; record the outcome.
//!
//! Backpressure is the store itself: nothing is queued in memory beyond the
//! claimed operations, at most `concurrency` of them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use super::{Worker, now_ms};
use crate::deliver::{Outcome, VacancyPut};
use crate::domain::ledger::{AttemptResult, Op, RetryLimits};
use crate::store::{Claimed, Completion};

/// How long the loop sleeps when nothing is due and nobody wakes it.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Auth failures: probe at most this often (SPEC 4.2).
const AUTH_PROBE_EVERY_MS: i64 = 1000;

fn to_attempt_result(outcome: &Outcome) -> AttemptResult {
    match outcome {
        Outcome::Done => AttemptResult::Done,
        Outcome::Superseded => AttemptResult::Superseded,
        Outcome::Rejected { errors } => AttemptResult::Rejected(errors.clone()),
        Outcome::Auth => AttemptResult::Auth,
        Outcome::Throttled { retry_after } => AttemptResult::Throttled {
            retry_after: *retry_after,
        },
        Outcome::Transient { why } => AttemptResult::Transient(why.clone()),
    }
}

impl Worker {
    pub(super) async fn deliver_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        while !*stop.borrow() {
            let now = now_ms();
            let throttled_until = self.health.throttled_until_ms.load(Ordering::SeqCst);
            if throttled_until > now {
                let wait = Duration::from_millis(u64::try_from(throttled_until - now).unwrap_or(0));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let mut limit = slots.available_permits();
            if self.health.auth_failing.load(Ordering::SeqCst) {
                let last = self.health.last_probe_ms.load(Ordering::SeqCst);
                if now - last < AUTH_PROBE_EVERY_MS || limit < self.settings.concurrency {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                self.health.last_probe_ms.store(now, Ordering::SeqCst);
                limit = 1;
            }
            // With requests in flight, claim only for a few free slots at
            // once: a claim per finished request costs a transaction each.
            // Nothing new starts meanwhile, so a deletion still waits only
            // for the requests already in flight.
            let in_flight = self.settings.concurrency - slots.available_permits();
            if limit == 0 || (in_flight > 0 && limit < self.claim_batch()) {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let claimed = match self
                .store
                .claim(&self.settings.owner, limit, now, self.settings.lease)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming due operations failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                let until_due = match self.store.next_due_ms().await {
                    Ok(Some(at)) => {
                        Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
                    }
                    _ => IDLE_POLL,
                };
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(until_due.clamp(Duration::from_millis(5), IDLE_POLL)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            for op in claimed {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let worker = self.clone();
                tokio::spawn(async move {
                    worker.attempt(op).await;
                    drop(permit);
                    worker.wake.notify_one();
                });
            }
        }
        // Drain: let in-flight requests finish (bounded by their timeout).
        let _ = tokio::time::timeout(
            self.settings.lease,
            slots.acquire_many(u32::try_from(self.settings.concurrency).unwrap_or(u32::MAX)),
        )
        .await;
    }

    /// Free slots worth a claim while requests are in flight.
    fn claim_batch(&self) -> usize {
        (self.settings.concurrency / 4).max(1)
    }

    /// Performs one claimed operation and records its outcome.
    pub async fn attempt(&self, op: Claimed) {
        let Some(eures) = &self.eures else {
            return;
        };
        let attempt = match op.op {
            Op::Delete => eures.delete(&op.id, op.version).await,
            Op::Create | Op::Update => {
                let Some(content) = op.content.as_deref() else {
                    // The document was erased after an earlier delivery and
                    // reconcile found EURES altered: rebuild it from the source.
                    if let Err(e) = self.reread(&op.id, true).await {
                        tracing::warn!(posting = %op.id, error = %e, "re-reading the posting failed");
                    }
                    if let Err(e) = self.store.release(&self.settings.owner, &op.id).await {
                        tracing::warn!(posting = %op.id, error = %e, "releasing lease failed");
                    }
                    return;
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
        let (outcome, elapsed) = (attempt.outcome, attempt.elapsed);
        let label = outcome.label();
        crate::telemetry::record_delivery(op.op, label, elapsed);
        tracing::info!(posting = %op.id, version = op.version, op = op.op.as_str(), outcome = label,
            elapsed_ms = elapsed.as_millis() as u64, "delivery attempt");
        match &outcome {
            Outcome::Auth => self.health.set_auth_failing(true),
            other => {
                if self.health.auth_failing.load(Ordering::SeqCst) {
                    self.health.set_auth_failing(false);
                }
                if let Outcome::Throttled { retry_after } = other {
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    let until =
                        now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(0));
                    self.health
                        .throttled_until_ms
                        .fetch_max(until, Ordering::SeqCst);
                }
            }
        }
        if matches!(outcome, Outcome::Done)
            && let Some(updated) = op.source_updated_at_ms
        {
            crate::telemetry::record_propagation((now_ms() - updated) as f64 / 1000.0);
        }
        let result = to_attempt_result(&outcome);
        let backoff = self
            .settings
            .retry
            .next_delay(op.attempts, &mut rand::rng());
        let completion = Completion {
            claimed: &op,
            result: &result,
            outcome_label: label,
            limits: RetryLimits {
                max_attempts: self.settings.max_attempts,
            },
            backoff,
        };
        if let Err(e) = self
            .store
            .complete(&self.settings.owner, completion, self.ctx())
            .await
        {
            // The lease expires and the operation is attempted again: at
            // least once, and EURES operations are idempotent.
            tracing::error!(posting = %op.id, error = %e, "recording a delivery outcome failed");
        }
        if matches!(outcome, Outcome::Superseded) {
            // EURES holds something newer than we know: learn it from the source.
            if let Err(e) = self.reread(&op.id, false).await {
                tracing::warn!(posting = %op.id, error = %e, "re-reading a superseded posting failed");
            }
        }
    }
}
