//! `eures-sync run`: the worker and its HTTP listener until a signal.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;
use crate::engine::Worker;
use crate::http::{AppState, Limits, serve, serve_router};

pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = crate::store::connect(&config.database.url).await?;
    store.migrate().await.context("applying migrations")?;
    let worker = Arc::new(Worker::from_config(&config, store.clone())?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let input_api = input_api(&config).await?;
    // The Input API apart from /metrics when an address is given for it.
    let (shared, apart) = match (config.http.input_api_listen, input_api) {
        (Some(listen), Some(api)) => (None, Some((listen, api))),
        (Some(_), None) => {
            tracing::warn!(
                "http.input_api_listen is set but eures.mode is push: nothing is served there"
            );
            (None, None)
        }
        (None, api) => (api, None),
    };
    let state = AppState {
        store,
        health: worker.health.clone(),
        input_api: shared,
    };
    let (addr, http) = serve(config.http.listen, state, stop_rx.clone()).await?;
    let api_http = match apart {
        Some((listen, api)) => {
            let (addr, task) = serve_router(
                "http.input_api_listen",
                listen,
                crate::http::input_api::router(api),
                Limits::default(),
                stop_rx.clone(),
            )
            .await?;
            tracing::info!(input_api_listen = %addr, "serving the Input API on its own address");
            Some(task)
        }
        None => None,
    };
    tracing::info!(listen = %addr, mode = %config.eures.mode, "eures-sync running");
    let running = tokio::spawn(worker.run(stop_rx));
    wait_for_signal().await?;
    tracing::info!("stopping: finishing in-flight work");
    let _ = stop_tx.send(true);
    running.await.context("worker task")??;
    let _ = http.await;
    if let Some(task) = api_http {
        let _ = task.await;
    }
    Ok(())
}

/// The EURES Input API in pull mode (SPEC 4.3), `None` in push mode.
async fn input_api(config: &Config) -> anyhow::Result<Option<crate::http::input_api::InputApi>> {
    if config.eures.mode != crate::domain::ledger::Mode::Pull {
        return Ok(None);
    }
    let token = config
        .input_api_token()?
        .context("eures.input_api_token_file: pull mode needs the Input API token (a file, or EURES_SYNC_INPUT_API_TOKEN)")?;
    let store = crate::store::exchange::connect_exchange(&config.database.url).await?;
    Ok(Some(crate::http::input_api::InputApi::new(store, &token)))
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
