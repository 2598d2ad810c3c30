//! EURES push-gateway simulator: the server side of SPEC 4.2.
//!
//! Owns what the portal holds (reference → [`Vacancy`]), the history of
//! applied operations per reference, a log of every request with timings,
//! and the fault injector. Serves:
//!
//! - `PUT /api/v1/job-vacancies/{reference}`: validates the envelope and the
//!   `PositionOpening` document (well-formed XML, root `PositionOpening` in
//!   the HR-XML 3 namespace with `majorVersionID="3"` `minorVersionID="2"`);
//!   `422` when invalid, `400` when the body is not JSON, `409` when the
//!   portal holds a newer `sourceVersion`, else `201` (new) or `200`
//!   (replaced, also for the same version: idempotent retries).
//! - `DELETE /api/v1/job-vacancies/{reference}` with `X-Source-Version`:
//!   `400` without a valid header, `404` when absent, `409` when the portal
//!   holds a newer version, else `204`.
//! - `GET /api/v1/job-vacancies?page_token={t}&limit={n}`: the holdings,
//!   ordered by reference; the page token is the last reference.
//!
//! Faults ([`Faults`]) apply to every endpoint and can change at any time;
//! random ones draw from one RNG, seeded through [`EuresOptions::seed`] for
//! reproducible runs. Each request is processed in this order: read the
//! body, `hang`, `latency`, `force_status`, bearer auth, a failing
//! reference ([`EuresSim::fail_reference`]), throttle (429), random 5xx,
//! random drop (before or after applying), then the operation.
//!
//! The files split the simulator by concern: `server` starts it and holds
//! its control API, `faults` the injected failures, `log` the request log
//! and history queries, `handlers` the HTTP operations, `document` the
//! `PositionOpening` check and `quirks` the per-reference behaviours of
//! real gateways (failing references, tombstones, held PUTs).

mod document;
mod faults;
mod handlers;
mod log;
mod quirks;
mod server;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use hyper::Method;
use rand::rngs::StdRng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::Server;

pub use document::{HR_XML_NAMESPACE, check_position_opening};
pub use faults::Faults;
pub use log::RequestRecord;
pub use server::EuresOptions;

use log::RequestLog;
use quirks::Quirks;

/// One vacancy the portal holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Vacancy {
    /// The JobAG version the copy was made from; guards against regressions
    /// (409 for anything older).
    pub source_version: u64,
    /// The `PositionOpening` document exactly as received.
    pub content: String,
    /// Lowercase hex SHA-256 of `content`, as the listing reports it.
    pub content_sha256: String,
    /// The envelope's `status` (`ACTIVE` normally); empty when absent.
    pub status: String,
    /// The envelope's `creationTimestamp` (epoch ms); 0 when absent.
    pub creation_timestamp: i64,
    /// The envelope's `lastModificationTimestamp` (epoch ms); 0 when absent.
    pub last_modification_timestamp: i64,
    /// The whole PUT body, for assertions on any envelope field.
    pub body: Value,
}

/// A running EURES simulator. Stops on [`EuresSim::shutdown`] or drop.
pub struct EuresSim {
    /// The HTTP server; dropping it stops the accept loop.
    server: Server,
    /// State shared with the request handlers.
    shared: Arc<Shared>,
}

/// State shared between the control API and the HTTP handlers.
struct Shared {
    /// Holdings and history, changed together under one lock.
    portal: Mutex<Portal>,
    /// Request log and in-flight tracking, under its own lock so recording
    /// never waits for a holdings operation.
    log: Mutex<RequestLog>,
    /// Current faults; a watch so hanging requests wake when `hang` clears.
    faults: watch::Sender<Faults>,
    /// The fault RNG (seeded for reproducibility).
    rng: Mutex<StdRng>,
    /// The bearer token requests must carry, when set.
    token: RwLock<Option<String>>,
    /// Whether to append [`RequestRecord`]s.
    record_requests: AtomicBool,
    /// See [`EuresOptions::check_content_rules`].
    check_content_rules: bool,
    /// Per-reference behaviours of real gateways (see [`Quirks`]).
    quirks: Mutex<Quirks>,
}

/// What the portal holds.
#[derive(Default)]
struct Portal {
    /// Holdings by reference; a BTreeMap so listing pages are stable.
    holdings: BTreeMap<String, Stored>,
    /// Successfully applied operations per reference, in order.
    history: HashMap<String, Vec<(Method, u64)>>,
}

/// A held vacancy; the envelope is kept without `content` so the document
/// is stored once (the public [`Vacancy`] puts it back).
struct Stored {
    source_version: u64,
    content: String,
    content_sha256: String,
    status: String,
    creation_timestamp: i64,
    last_modification_timestamp: i64,
    /// The PUT body minus its `content` field.
    envelope: Value,
}

impl Stored {
    fn to_vacancy(&self) -> Vacancy {
        let mut body = self.envelope.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.insert("content".into(), Value::String(self.content.clone()));
        }
        Vacancy {
            source_version: self.source_version,
            content: self.content.clone(),
            content_sha256: self.content_sha256.clone(),
            status: self.status.clone(),
            creation_timestamp: self.creation_timestamp,
            last_modification_timestamp: self.last_modification_timestamp,
            body,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
