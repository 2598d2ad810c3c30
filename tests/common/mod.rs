//! Shared harness: both simulators on loopback, a fresh SQLite ledger in a
//! temporary directory, and a worker (in-process or the real binary).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eures_sync::config::Config;
use eures_sync::deliver::RetryPolicy;
use eures_sync::domain::eligibility::{Desired, evaluate};
use eures_sync::domain::posting::{ParsedChange, parse_change};
use eures_sync::engine::Worker;
use eures_sync::sim::eures::{EuresOptions, EuresSim};
use eures_sync::sim::jobag::{JobagOptions, JobagSim};
use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::Value;
use tokio::sync::watch;

pub struct Env {
    pub jobag: JobagSim,
    pub eures: EuresSim,
    pub dir: tempfile::TempDir,
}

pub struct Running {
    pub worker: Arc<Worker>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("worker stops within 60 s")
            .expect("worker task");
        result.expect("worker exits cleanly");
    }
}

impl Env {
    pub async fn start() -> Env {
        Env {
            jobag: JobagSim::start(JobagOptions::default())
                .await
                .expect("jobag sim"),
            eures: EuresSim::start(EuresOptions::default())
                .await
                .expect("eures sim"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn db_url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join("ledger.db").display()
        )
    }

    pub fn config_toml(&self) -> String {
        format!(
            "[database]\nurl = \"{}\"\n[jobag]\nbase_url = \"{}\"\npoll_interval_ms = 50\n\
             [eures]\nbase_url = \"{}\"\nconcurrency = 16\nrequest_timeout_ms = 2000\nmax_attempts = 1000\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            self.db_url(),
            self.jobag.base_url(),
            self.eures.base_url()
        )
    }

    pub fn config(&self) -> Config {
        Config::load_from(Figment::new().merge(Toml::string(&self.config_toml()))).expect("config")
    }

    /// A worker in this process with short retry delays.
    pub async fn worker(&self) -> Running {
        let config = self.config();
        let store = eures_sync::store::connect(&config.database.url)
            .await
            .expect("store");
        let mut worker = Worker::from_config(&config, store).expect("worker");
        worker.settings.retry = RetryPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        let worker = Arc::new(worker);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(worker.clone().run(rx));
        Running { worker, stop, task }
    }

    /// A pull-mode configuration (SPEC 4.3): the same ledger and JobAG as
    /// [`Env::config`], `eures.mode = "pull"`, and the Input API token
    /// written to a file in the temporary directory.
    pub fn pull_config(&self, token: &str) -> Config {
        let path = self.dir.path().join("input-api.token");
        std::fs::write(&path, token).expect("token file");
        let pull = format!(
            "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n",
            path.display()
        );
        Config::load_from(
            Figment::new()
                .merge(Toml::string(&self.config_toml()))
                .merge(Toml::string(&pull)),
        )
        .expect("pull config")
    }

    /// Like [`Env::worker`], from a given configuration.
    pub async fn worker_with(&self, config: Config) -> Running {
        let store = eures_sync::store::connect(&config.database.url)
            .await
            .expect("store");
        let mut worker = Worker::from_config(&config, store).expect("worker");
        worker.settings.retry = RetryPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        let worker = Arc::new(worker);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(worker.clone().run(rx));
        Running { worker, stop, task }
    }

    /// What EURES must hold according to the source: id → content hash.
    pub fn expected(&self) -> BTreeMap<String, String> {
        let now = chrono::Utc::now();
        let mut out = BTreeMap::new();
        for id in self.jobag.ids() {
            let Some(p) = self.jobag.current(&id) else {
                continue;
            };
            if let ParsedChange::Change(c) = parse_change(&p)
                && let Desired::Present { hash, .. } = evaluate(&c, now, "STAR-DK")
            {
                out.insert(id, hash);
            }
        }
        out
    }

    /// What EURES holds: id → content hash.
    pub fn held(&self) -> BTreeMap<String, String> {
        self.eures
            .holdings()
            .into_iter()
            .map(|(id, v)| (id, v.content_sha256))
            .collect()
    }

    pub async fn converged(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let expected = self.expected();
            let held = self.held();
            if expected == held {
                return;
            }
            if started.elapsed() > timeout {
                let missing: Vec<_> = expected
                    .keys()
                    .filter(|k| !held.contains_key(*k))
                    .take(5)
                    .collect();
                let extra: Vec<_> = held
                    .keys()
                    .filter(|k| !expected.contains_key(*k))
                    .take(5)
                    .collect();
                let stale: Vec<_> = expected
                    .iter()
                    .filter(|(k, h)| held.get(*k).is_some_and(|x| x != *h))
                    .map(|(k, _)| k)
                    .take(5)
                    .collect();
                panic!(
                    "EURES did not converge in {timeout:?}: expected {} held {}; missing {missing:?} extra {extra:?} stale {stale:?}",
                    expected.len(),
                    held.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `f` until true, at most `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A copy of a current posting without version/updated_at, to edit and upsert.
pub fn editable(jobag: &JobagSim, id: &str) -> Value {
    let mut p = jobag.current(id).expect("posting exists");
    let o = p.as_object_mut().expect("object");
    o.remove("version");
    o.remove("updated_at");
    p
}
