//! Throughput of several worker processes sharing one PostgreSQL ledger,
//! and whether any two of them ever work on one posting at once.

use std::time::Duration;

use anyhow::Context;
use eures_sync_sims::eures::{EuresOptions, EuresSim};
use eures_sync_sims::jobag::{JobagOptions, JobagSim, sample_posting};

use crate::rig::{agent_exe, wait_until};

/// A database of the bench's own, dropped at the end of a run.
struct PgDb {
    admin_url: String,
    name: String,
}

impl PgDb {
    async fn create(admin_url: &str, name: &str) -> anyhow::Result<PgDb> {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to {admin_url} (is PostgreSQL running?)"))?;
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut admin)
            .await?;
        let create = format!("CREATE DATABASE {name}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut admin)
            .await?;
        Ok(PgDb {
            admin_url: admin_url.to_string(),
            name: name.to_string(),
        })
    }

    fn url(&self) -> anyhow::Result<String> {
        let mut url = url::Url::parse(&self.admin_url)?;
        url.set_path(&self.name);
        Ok(url.into())
    }

    async fn drop(self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut admin)
            .await?;
        Ok(())
    }
}

/// `n` real worker processes on one PostgreSQL ledger converge a backlog;
/// EURES answers in 2 ms and counts requests for one posting that overlap.
pub(crate) async fn workers(
    postings: u64,
    max_workers: usize,
    admin_url: &str,
) -> anyhow::Result<()> {
    for n in 1..=max_workers {
        let db = PgDb::create(admin_url, &format!("eures_bench_{}", std::process::id())).await?;
        let jobag = JobagSim::start(JobagOptions::default()).await?;
        let eures = EuresSim::start(EuresOptions {
            check_content_rules: false,
            ..EuresOptions::default()
        })
        .await?;
        eures.set_faults(eures_sync_sims::eures::Faults {
            latency: Duration::from_millis(2),
            ..eures_sync_sims::eures::Faults::none()
        });
        for i in 1..=postings {
            jobag.upsert(sample_posting(i));
        }
        let url = db.url()?;
        let store = eures_sync::store::connect(&url).await?;
        store.migrate().await?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("worker.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{url}\"\n[jobag]\nbase_url = \"{}\"\npage_size = 500\npoll_interval_ms = 100\n\
                 [eures]\nbase_url = \"{}\"\nconcurrency = 16\n[reconcile]\ninterval_s = 0\n[http]\nlisten = \"127.0.0.1:0\"\n\
                 [log]\nformat = \"json\"\nlevel = \"error\"\n",
                jobag.base_url(),
                eures.base_url()
            ),
        )?;
        let mut children = Vec::new();
        for _ in 0..n {
            children.push(
                tokio::process::Command::new(agent_exe()?)
                    .args(["run", "--config"])
                    .arg(&config)
                    .stdout(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .context("starting eures-sync (build it with --release first)")?,
            );
        }
        let took = wait_until("workers", Duration::from_secs(1800), || {
            eures.len() as u64 == postings
        })
        .await;
        for child in &mut children {
            if let Some(pid) = child.id() {
                std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()?;
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        }
        drop(store);
        db.drop().await?;
        let took = took?;
        println!(
            "| {n} worker process(es) on PostgreSQL, {postings} postings | {:.0} postings/s, {} overlapping requests | overlaps 0 |",
            postings as f64 / took.as_secs_f64(),
            eures.overlaps()
        );
    }
    Ok(())
}
