//! Starting an [`EuresSim`] and its control API: faults, credentials,
//! and the holdings as tests read and drift them.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use hyper::Method;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use tokio::sync::watch;

use super::handlers::handle;
use super::{
    EuresSim, Faults, Portal, Quirks, RequestLog, Shared, Stored, Vacancy, lock, now_ms, sha256_hex,
};
use crate::{Server, default_listen};

/// How to start an [`EuresSim`].
#[derive(Debug, Clone)]
pub struct EuresOptions {
    /// Where to listen; `127.0.0.1:0` (an ephemeral port) by default.
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Faults active from the start (none by default).
    pub faults: Faults,
    /// Seed of the fault RNG, for reproducible runs; random when `None`.
    pub seed: Option<u64>,
    /// Whether to keep a [`RequestRecord`](super::RequestRecord) per
    /// request (on by default); long benchmarks may turn it off to keep
    /// memory flat.
    pub record_requests: bool,
    /// Whether every PUT's document is checked against the EURES content
    /// rules (`crate::conformance`; on by default). The benchmark turns it
    /// off: it measures the agent, and the checks cost the simulator more
    /// CPU per PUT than the whole bare client loop.
    pub check_content_rules: bool,
}

impl Default for EuresOptions {
    fn default() -> Self {
        EuresOptions {
            listen: default_listen(),
            token: None,
            faults: Faults::default(),
            seed: None,
            record_requests: true,
            check_content_rules: true,
        }
    }
}

impl EuresSim {
    /// Binds `opts.listen` and starts serving empty holdings.
    pub async fn start(opts: EuresOptions) -> io::Result<EuresSim> {
        let rng = match opts.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng::<StdRng>(),
        };
        let shared = Arc::new(Shared {
            portal: Mutex::new(Portal::default()),
            log: Mutex::new(RequestLog::default()),
            faults: watch::Sender::new(opts.faults),
            rng: Mutex::new(rng),
            token: RwLock::new(opts.token),
            record_requests: AtomicBool::new(opts.record_requests),
            check_content_rules: opts.check_content_rules,
            quirks: Mutex::new(Quirks::default()),
        });
        let handler_state = shared.clone();
        let server =
            Server::start(opts.listen, move |req| handle(handler_state.clone(), req)).await?;
        Ok(EuresSim { server, shared })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Stops serving: the listener closes and open connections (held ones
    /// included) are dropped.
    pub fn shutdown(&self) {
        self.server.stop();
    }

    /// Requires `Authorization: Bearer <token>` on every request (401
    /// otherwise), or no authentication with `None`.
    pub fn set_token(&self, token: Option<String>) {
        *self.shared.token.write().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// Replaces the active faults; requests already held by `hang` resume
    /// when the new value has `hang == false`.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.send_replace(faults);
    }

    /// The active faults.
    pub fn faults(&self) -> Faults {
        *self.shared.faults.borrow()
    }

    /// A snapshot of everything the portal holds.
    pub fn holdings(&self) -> BTreeMap<String, Vacancy> {
        lock(&self.shared.portal)
            .holdings
            .iter()
            .map(|(k, v)| (k.clone(), v.to_vacancy()))
            .collect()
    }

    /// The vacancy held under `reference`.
    pub fn get(&self, reference: &str) -> Option<Vacancy> {
        lock(&self.shared.portal)
            .holdings
            .get(reference)
            .map(Stored::to_vacancy)
    }

    /// Number of vacancies held.
    pub fn len(&self) -> usize {
        lock(&self.shared.portal).holdings.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        lock(&self.shared.portal).holdings.is_empty()
    }

    /// Operations applied over HTTP for `reference`, in order: `(PUT,
    /// sourceVersion)` for each stored PUT, `(DELETE, X-Source-Version)` for
    /// each removal. Tamper methods do not appear here.
    pub fn history(&self, reference: &str) -> Vec<(Method, u64)> {
        lock(&self.shared.portal)
            .history
            .get(reference)
            .cloned()
            .unwrap_or_default()
    }

    /// Drift for reconcile tests: replaces the content (and its hash) of a
    /// held vacancy, keeping its version. Returns false when not held.
    pub fn tamper_content(&self, reference: &str, new_content: impl Into<String>) -> bool {
        let mut portal = lock(&self.shared.portal);
        let Some(stored) = portal.holdings.get_mut(reference) else {
            return false;
        };
        stored.content = new_content.into();
        stored.content_sha256 = sha256_hex(&stored.content);
        true
    }

    /// Drift for reconcile tests: makes the portal hold a vacancy nobody
    /// sent (replacing any held one), with an `ACTIVE` envelope stamped now.
    pub fn insert_orphan(&self, reference: &str, source_version: u64, content: impl Into<String>) {
        let content = content.into();
        let now = now_ms();
        let stored = Stored {
            source_version,
            content_sha256: sha256_hex(&content),
            content,
            status: "ACTIVE".into(),
            creation_timestamp: now,
            last_modification_timestamp: now,
            envelope: json!({
                "reference": reference, "source": "JobAG", "status": "ACTIVE",
                "sourceVersion": source_version, "contentFormatVersion": "1.3",
                "creationTimestamp": now, "lastModificationTimestamp": now,
            }),
        };
        lock(&self.shared.portal)
            .holdings
            .insert(reference.to_owned(), stored);
    }

    /// Drift for reconcile tests: silently drops a held vacancy.
    pub fn remove(&self, reference: &str) -> Option<Vacancy> {
        lock(&self.shared.portal)
            .holdings
            .remove(reference)
            .map(|s| s.to_vacancy())
    }
}
