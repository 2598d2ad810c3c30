//! Leadership: which of the workers sharing a ledger ingests the feed and
//! reconciles. It is a lease in the store that the leader renews every
//! tick and a follower tries to take every tick, so it moves within
//! seconds of a leader's death.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::Worker;
use super::worker::pause;

impl Worker {
    /// How often leadership is renewed or tried, and a follower's pause.
    pub(super) fn leader_tick(&self) -> Duration {
        self.settings
            .poll_interval
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// Whether this worker runs the singleton loops now.
    pub fn is_leader(&self) -> bool {
        self.health.leading.load(Ordering::SeqCst)
    }

    /// Takes or renews leadership once; a failure counts as not leading.
    pub(super) async fn try_lead(&self) -> bool {
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

    pub(super) async fn leader_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while pause(&mut stop, self.leader_tick()).await {
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
}
