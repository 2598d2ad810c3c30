//! Expiry: takes postings off EURES when their `publication_end` passes.
//! Every worker runs it, leader or not: an expiry is idempotent, and a
//! leader's death must not hold up the 5 s promise.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::worker::pause;
use super::{Worker, now_ms};

/// The longest sleep between two looks: postings with an earlier end may
/// have arrived since the last one, and the SPEC allows 5 s.
const MAX_SLEEP: Duration = Duration::from_millis(1000);

/// The shortest sleep, so an end already past does not spin the loop.
const MIN_SLEEP: Duration = Duration::from_millis(10);

impl Worker {
    pub(super) async fn expiry_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            match self.store.expire_due(self.ctx()).await {
                Ok(n) if n > 0 => {
                    tracing::info!(count = n, "postings expired");
                    self.wake.notify_one();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "expiry pass failed"),
            }
            let until_next = match self.store.next_expiry_ms().await {
                Ok(Some(at)) => {
                    Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(MAX_SLEEP)
                }
                _ => MAX_SLEEP,
            };
            if !pause(&mut stop, until_next.max(MIN_SLEEP)).await {
                break;
            }
        }
    }
}
