//! `eures-sync sim`: both simulators as a local stand-in for JobAG and EURES,
//! so `eures-sync run` with the default configuration has something to talk to.

use std::net::SocketAddr;

use anyhow::Context;

use eures_sync_sims::eures::{EuresOptions, EuresSim};
use eures_sync_sims::jobag::{JobagOptions, JobagSim, sample_posting};

pub async fn run(
    jobag_listen: SocketAddr,
    eures_listen: SocketAddr,
    postings: u64,
) -> anyhow::Result<()> {
    let jobag = JobagSim::start(JobagOptions {
        listen: jobag_listen,
        ..JobagOptions::default()
    })
    .await
    .with_context(|| format!("JobAG simulator on {jobag_listen}"))?;
    let eures = EuresSim::start(EuresOptions {
        listen: eures_listen,
        record_requests: false,
        ..EuresOptions::default()
    })
    .await
    .with_context(|| format!("EURES simulator on {eures_listen}"))?;
    for i in 1..=postings {
        jobag.upsert(sample_posting(i));
    }
    println!(
        "JobAG simulator  {} ({postings} sample postings)",
        jobag.base_url()
    );
    println!("EURES simulator  {}", eures.base_url());
    println!("Ctrl-C stops both.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("EURES simulator held {} copies", eures.len());
    Ok(())
}
