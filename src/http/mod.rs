//! The agent's own HTTP listener: `/metrics`, `/healthz`, `/readyz`, and the
//! EURES Input API in pull mode ([`input_api`]). It reads the store and the
//! worker's health flags; it never writes the ledger.

pub mod input_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine::{Health, now_ms};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub health: Arc<Health>,
    /// The EURES Input API, served in pull mode only.
    pub input_api: Option<input_api::InputApi>,
}

pub fn router(state: AppState) -> Router {
    let input_api = state.input_api.clone();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    match input_api {
        Some(api) => app.merge(input_api::router(api)),
        None => app,
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let handle = crate::telemetry::metrics_handle();
    match state.store.summary(now_ms()).await {
        Ok(summary) => crate::telemetry::publish_summary(&summary),
        Err(e) => tracing::warn!(error = %e, "metrics: reading the ledger summary failed"),
    }
    crate::telemetry::set_auth_failing(state.health.auth_failing.load(Ordering::SeqCst));
    crate::telemetry::collect_process();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.store.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"));
    }
    if state.health.auth_failing.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "delivery paused: EURES refuses our credentials".to_string(),
        );
    }
    (StatusCode::OK, "ready".to_string())
}

/// Binds `listen` and serves until `stop` turns true. Returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve(
    listen: SocketAddr,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    // Install the recorder before the worker records anything.
    let _ = crate::telemetry::metrics_handle();
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "http server failed");
        }
    });
    Ok((addr, task))
}
