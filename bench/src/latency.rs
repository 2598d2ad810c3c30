//! Propagation latency at steady state, and a withdrawal sent behind a
//! backlog of updates.

use std::time::{Duration, Instant};

use anyhow::Context;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use serde_json::json;

use crate::rig::{Rig, wait_until};

pub(crate) async fn latency(backlog: u64) -> anyhow::Result<()> {
    let rig = Rig::new(32, 100).await?;
    for i in 1..=200 {
        rig.jobag.upsert(sample_posting(i));
    }
    let (worker, stop, task) = rig.worker().await?;
    wait_until("warm-up", Duration::from_secs(60), || {
        rig.eures.len() == 200
    })
    .await?;
    // Steady state: one edit every 20 ms, measured from the moment the
    // change is visible in the feed to the moment EURES holds it.
    let mut samples = Vec::new();
    for round in 0..300u64 {
        let (id, v) = retitle(&rig, 1 + round % 200, format!("Udvikler runde {round}"))?;
        let t = wait_until("propagation", Duration::from_secs(10), || {
            rig.eures.get(&id).is_some_and(|x| x.source_version == v)
        })
        .await?;
        samples.push(t.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    samples.sort_by(f64::total_cmp);
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    println!(
        "| propagation at steady state, 100 ms poll (p50 / p99 of 300 edits) | {p50:.0} / {p99:.0} ms | p99 ≤ 250 ms |"
    );

    // A withdrawal behind a backlog of updates: every posting edited at
    // once, the withdrawal sent while most of the updates still wait.
    for i in 201..=backlog {
        rig.jobag.upsert(sample_posting(i));
    }
    wait_until(
        "backlog postings delivered",
        Duration::from_secs(1800),
        || rig.eures.len() as u64 == backlog,
    )
    .await?;
    // A gateway that answers in 20 ms keeps the backlog from draining while
    // we look: the backlog is real, not already delivered.
    rig.eures.set_faults(eures_sync_sims::eures::Faults {
        latency: Duration::from_millis(20),
        ..eures_sync_sims::eures::Faults::none()
    });
    let mut last = (String::new(), 0);
    for i in 2..=backlog {
        last = retitle(&rig, i, format!("Opdateret {i}"))?;
    }
    let store = worker.store.clone();
    let started = Instant::now();
    // Wait until the feed is read to the end: the updates are the ledger's backlog.
    while started.elapsed() < Duration::from_secs(600) {
        if store
            .get(&last.0)
            .await?
            .is_some_and(|e| e.source_version == last.1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued = store
        .summary(eures_sync::engine::now_ms())
        .await?
        .backlog_update;
    let target = sample_posting(1)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut p = rig.jobag.current(&target).context("posting")?;
    if let Some(o) = p.as_object_mut() {
        o.remove("version");
        o.remove("updated_at");
    }
    p["eures_consent"] = json!(false);
    rig.jobag.upsert(p);
    let t = wait_until("withdrawal", Duration::from_secs(60), || {
        rig.eures.get(&target).is_none()
    })
    .await?;
    let left = store
        .summary(eures_sync::engine::now_ms())
        .await?
        .backlog_update;
    println!(
        "| withdrawal behind a backlog of {queued} due updates (feed change → EURES delete; EURES answering in 20 ms) | {:.0} ms ({left} updates still queued after) | ≤ 1 s |",
        t.as_secs_f64() * 1000.0
    );
    let _ = stop.send(true);
    task.await??;
    Ok(())
}

/// Publishes a new version of sample posting `i` with `title`; returns its
/// id and the version JobAG gave it.
fn retitle(rig: &Rig, i: u64, title: String) -> anyhow::Result<(String, u64)> {
    let id = sample_id(i);
    let mut p = rig.jobag.current(&id).context("posting")?;
    if let Some(o) = p.as_object_mut() {
        o.remove("version");
        o.remove("updated_at");
    }
    p["title"] = json!(title);
    Ok((id, rig.jobag.upsert(p)))
}
