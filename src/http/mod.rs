//! The agent's own HTTP listener: `/metrics`, `/healthz`, `/readyz`, and the
//! EURES Input API in pull mode ([`input_api`]), on `http.listen` or, with
//! `http.input_api_listen`, on an address of its own. [`listener`] bounds
//! what clients may hold. It reads the store and the worker's health flags;
//! it never writes the ledger, and no answer carries an error's text.

pub mod input_api;
pub mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio::time::Instant;

pub use listener::{INPUT_API_CONNECTIONS, Limits, OPS_CONNECTIONS, serve_router};

use crate::engine::{Health, now_ms};
use crate::store::Store;

/// The ledger summary behind `/metrics` is computed at most once per this,
/// however often and by however many scrapers it is asked for: it counts
/// the whole ledger.
pub const SUMMARY_MAX_AGE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub health: Arc<Health>,
    /// The EURES Input API, served in pull mode only.
    pub input_api: Option<input_api::InputApi>,
}

/// When the ledger summary was last computed for `/metrics`.
#[derive(Debug, Default)]
pub struct SummaryCache {
    /// Held while computing, so concurrent scrapes wait for one result
    /// instead of each querying the ledger.
    last: tokio::sync::Mutex<Option<Instant>>,
    /// Times the summary was computed (tests read it).
    computed: AtomicU64,
}

impl SummaryCache {
    /// How many times the ledger summary was computed.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Publishes a fresh summary unless the last one is younger than
    /// [`SUMMARY_MAX_AGE`] (its gauges are still in the recorder). A failed
    /// read counts as a computation too: an unreachable database is not
    /// asked more often either.
    async fn refresh(&self, store: &dyn Store) {
        let mut last = self.last.lock().await;
        if last.is_some_and(|at| at.elapsed() < SUMMARY_MAX_AGE) {
            return;
        }
        match store.summary(now_ms()).await {
            Ok(summary) => crate::telemetry::publish_summary(&summary),
            Err(e) => tracing::warn!(error = %e, "metrics: reading the ledger summary failed"),
        }
        self.computed.fetch_add(1, Ordering::Relaxed);
        *last = Some(Instant::now());
    }
}

/// `/readyz` asks the database at most once per this, however many probes
/// arrive: the probes are unauthenticated and may face the network.
pub const READINESS_MAX_AGE: Duration = Duration::from_secs(1);

/// The last database check behind `/readyz`.
#[derive(Debug, Default)]
pub struct ReadinessCache {
    /// When the database was last asked and whether it answered. Held
    /// while asking, so concurrent probes wait for that one answer instead
    /// of each taking a connection from the worker's pool.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl ReadinessCache {
    /// Whether the database answered a check at most [`READINESS_MAX_AGE`]
    /// old, asking it again only when the last answer is older.
    async fn database_answers(&self, store: &dyn Store) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, answered)) = *last
            && at.elapsed() < READINESS_MAX_AGE
        {
            return answered;
        }
        let answered = store.ping().await.is_ok();
        crate::telemetry::readiness_checked();
        // Stamped when the answer came: a check that took long (the pool's
        // acquire timeout) is not repeated by every probe that waited for it.
        *last = Some((Instant::now(), answered));
        answered
    }
}

/// What the operations routes read.
#[derive(Clone)]
struct Ops {
    app: AppState,
    summary: Arc<SummaryCache>,
    readiness: Arc<ReadinessCache>,
}

/// Everything on one address: the operations routes, and the Input API
/// when `state` has one.
pub fn router(state: AppState) -> Router {
    let input_api = state.input_api.clone();
    let app = ops_router(state, Arc::default());
    match input_api {
        Some(api) => app.merge(input_api::router(api)),
        None => app,
    }
}

/// `/metrics`, `/healthz` and `/readyz`, without the Input API.
pub fn ops_router(state: AppState, summary: Arc<SummaryCache>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route_layer(middleware::from_fn(no_body))
        .with_state(Ops {
            app: state,
            summary,
            readiness: Arc::default(),
        })
}

/// The operations routes take no body: one announced is refused before it
/// is read.
async fn no_body(req: Request, next: Next) -> Response {
    if declared_length(&req).is_some_and(|n| n > 0) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "this endpoint takes no request body\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// The `Content-Length` a request announces, if it announces one.
pub(crate) fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    let handle = crate::telemetry::metrics_handle();
    ops.summary.refresh(ops.app.store.as_ref()).await;
    crate::telemetry::set_auth_failing(ops.app.health.auth_failing.load(Ordering::SeqCst));
    crate::telemetry::collect_process();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// Fixed texts only: the database's error may name hosts, users or worse,
/// and this answer may face the network.
async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.app.health.loop_died.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: a worker loop ended; the process is stopping",
        );
    }
    if !ops.readiness.database_answers(ops.app.store.as_ref()).await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database does not answer",
        );
    }
    if ops.app.health.auth_failing.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: delivery paused, EURES refuses our credentials",
        );
    }
    (StatusCode::OK, "ready")
}

/// Binds `listen` and serves [`router`] until `stop` turns true, under
/// [`Limits::ops`], or the default [`Limits`] when the Input API shares the
/// address. Returns the bound address (useful with port 0) and the server
/// task.
pub async fn serve(
    listen: SocketAddr,
    state: AppState,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    // Install the recorder before the worker records anything.
    let _ = crate::telemetry::metrics_handle();
    let limits = match state.input_api {
        Some(_) => Limits::default(),
        None => Limits::ops(),
    };
    serve_router("http.listen", listen, router(state), limits, stop).await
}
