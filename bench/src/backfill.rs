//! The initial backfill against the ceiling: a bare HTTP client loop
//! sending the same documents with the same concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use eures_sync::domain::eligibility::{Desired, evaluate};
use eures_sync::domain::posting::{ParsedChange, parse_change};
use eures_sync::domain::render::DocumentSettings;
use eures_sync::eures::{EuresClient, VacancyPut};
use eures_sync_sims::jobag::sample_posting;
use serde_json::json;

use crate::rig::{SimProcess, Spent, agent_config, cpu_seconds, start_worker};

/// The documents the backfill sends, rendered as the agent renders them.
fn backfill_documents(postings: u64) -> Vec<(String, String)> {
    let now = chrono::Utc::now();
    (1..=postings)
        .filter_map(|i| {
            let mut p = sample_posting(i);
            p["version"] = json!(1);
            p["updated_at"] = json!("2026-11-20T10:00:00Z");
            match parse_change(&p) {
                ParsedChange::Change(c) => match evaluate(&c, now, &DocumentSettings::default()) {
                    Desired::Present { content, .. } => Some((c.id, content)),
                    Desired::Absent(_) => None,
                },
                ParsedChange::Quarantined { .. } => None,
            }
        })
        .collect()
}

/// The ceiling: the same documents PUT by a bare client loop with the same
/// concurrency against fresh simulators in their own process.
async fn ceiling(postings: u64, concurrency: usize) -> anyhow::Result<(f64, Spent)> {
    let docs = Arc::new(backfill_documents(postings));
    let mut sims = SimProcess::start(0, docs.len()).await?;
    let client = Arc::new(EuresClient::new(
        &sims.eures_url,
        None,
        Duration::from_secs(10),
        concurrency,
        None,
    )?);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, docs, next) = (client.clone(), docs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((id, content)) = docs.get(i) else {
                    break;
                };
                let _ = client
                    .put(&VacancyPut {
                        reference: id,
                        source_version: 1,
                        content,
                        creation_timestamp_ms: 0,
                        last_modification_timestamp_ms: 0,
                    })
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    sims.held(Duration::from_secs(10))
        .await
        .context("ceiling loop lost requests")?;
    sims.stop().await?;
    Ok((docs.len() as f64 / secs, Spent { wall: secs, cpu }))
}

pub(crate) async fn backfill(postings: u64, concurrency: usize) -> anyhow::Result<()> {
    let mut sims = SimProcess::start(postings, postings as usize).await?;
    let dir = tempfile::tempdir()?;
    let config = agent_config(&dir, &sims.jobag_url, &sims.eures_url, concurrency, 100)?;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let (_worker, stop, task) = start_worker(&config).await?;
    sims.held(Duration::from_secs(1800)).await?;
    let took = started.elapsed();
    let agent = Spent {
        wall: took.as_secs_f64(),
        cpu: cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before),
    };
    let _ = stop.send(true);
    task.await??;
    sims.stop().await?;
    let agent_rate = postings as f64 / took.as_secs_f64();
    let (ceiling_rate, bare) = ceiling(postings, concurrency).await?;
    println!(
        "| backfill of {postings} postings (SQLite, concurrency {concurrency}; simulators in their own process) | {agent_rate:.0} postings/s ({}, the agent's process) | ≥ 5,000/s |",
        agent.describe(postings)
    );
    println!(
        "| bare HTTP client loop, same documents and concurrency | {ceiling_rate:.0} PUT/s ({}, the loop's process) | |",
        bare.describe(postings)
    );
    if let (Some(agent_cpu), Some(bare_cpu)) = (agent.cpu, bare.cpu) {
        println!(
            "| agent CPU per posting / bare loop CPU per PUT | {:.1}× | ≤ 4× |",
            agent_cpu / bare_cpu
        );
    }
    println!(
        "| agent throughput / bare loop throughput | {:.0} % | |",
        100.0 * agent_rate / ceiling_rate
    );
    Ok(())
}
