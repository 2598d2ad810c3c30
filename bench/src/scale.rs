//! Peak RSS of the real binary building a large ledger, and of a
//! reconcile of it.

use std::time::{Duration, Instant};

use anyhow::Context;
use eures_sync_sims::jobag::sample_posting;

use crate::rig::{Rig, agent_exe};

/// Peak resident set (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Runs the agent binary and follows its peak RSS until `done` or exit.
async fn run_agent(
    args: &[&str],
    config: &std::path::Path,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<(Duration, u64)> {
    let mut child = tokio::process::Command::new(agent_exe()?)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting eures-sync (build it with --release first)")?;
    let pid = child.id().context("pid")?;
    let started = Instant::now();
    let mut peak = 0;
    loop {
        peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        if done() {
            break;
        }
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "eures-sync {args:?} failed: {status}");
            break;
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "eures-sync {args:?} did not finish within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    if child.try_wait()?.is_none() {
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()?;
        child.wait().await?;
    }
    Ok((took, peak))
}

pub(crate) async fn scale(postings: u64) -> anyhow::Result<()> {
    let rig = Rig::new(32, 100).await?;
    for i in 1..=postings {
        rig.jobag.upsert(sample_posting(i));
    }
    let config = rig.dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[jobag]\nbase_url = \"{}\"\npage_size = 500\npoll_interval_ms = 100\n\
             [eures]\nbase_url = \"{}\"\n[reconcile]\ninterval_s = 0\n[http]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\nlevel = \"error\"\n",
            rig.config.database.url,
            rig.jobag.base_url(),
            rig.eures.base_url()
        ),
    )?;
    let (took, worker_peak) = run_agent(&["run"], &config, Duration::from_secs(3600), || {
        rig.eures.len() as u64 == postings
    })
    .await?;
    println!(
        "| worker building a {postings}-posting ledger: backfill / peak RSS | {:.0} postings/s / {:.1} MiB | ≤ 64 MiB |",
        postings as f64 / took.as_secs_f64(),
        worker_peak as f64 / 1024.0
    );
    let (took, reconcile_peak) = run_agent(
        &["reconcile", "--dry-run"],
        &config,
        Duration::from_secs(3600),
        || false,
    )
    .await?;
    println!(
        "| reconcile of {postings} postings (JobAG snapshot + EURES listing + ledger) / peak RSS | {:.1} s / {:.1} MiB | ≤ 60 s |",
        took.as_secs_f64(),
        reconcile_peak as f64 / 1024.0
    );
    Ok(())
}
