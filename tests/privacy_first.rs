//! Privacy first (SPEC 3.4): withdrawals and deletions that fall due behind
//! a slow backlog of updates reach EURES ahead of it; at most the requests
//! already in flight or claimed go before them. On SQLite (`sqlite::*`) and
//! PostgreSQL (`postgres::*`).

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Env, editable, eventually, eventually_async};
use eures_sync::domain::ledger::DesiredState;
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use hyper::Method;
use serde_json::json;

common::on_both_backends!(withdrawals_and_deletions_overtake_a_backlog_of_updates);

const N: u64 = 400;

/// Updates that may start after the deletions were due and before the last
/// one started: those claimed already (16 slots, 8 claimed ahead), with a
/// margin for the test's own polling. The backlog holds N; a queue without
/// priority sends most of it first.
const AHEAD_AT_MOST: usize = 40;

async fn withdrawals_and_deletions_overtake_a_backlog_of_updates(backend: Backend) {
    let env = Env::start_with(backend).await;
    for i in 1..=N {
        env.jobag.upsert(sample_posting(i));
    }
    let running = env.worker().await;
    env.converged(Duration::from_secs(120)).await;

    // A slow portal and an update of every posting: a backlog of N updates
    // that takes seconds to drain.
    env.eures.set_faults(Faults {
        latency: Duration::from_millis(100),
        ..Faults::none()
    });
    for i in 1..=N {
        let id = sample_id(i);
        let mut p = editable(&env.jobag, &id);
        p["title"] = json!(format!("Opdateret {i}"));
        env.jobag.upsert(p);
    }
    let updates_started = |env: &Env, before: Option<Instant>| {
        env.eures
            .requests()
            .iter()
            .filter(|r| r.method == Method::PUT && r.source_version == Some(2))
            .filter(|r| before.is_none_or(|b| r.started < b))
            .count()
    };
    eventually(
        Duration::from_secs(60),
        "the update backlog draining",
        || updates_started(&env, None) >= 32,
    )
    .await;

    // The last postings of the backlog: half withdrawn, half deleted.
    let published = Instant::now();
    let targets: Vec<u64> = (N - 19..=N).collect();
    for &i in &targets {
        let id = sample_id(i);
        if i % 2 == 0 {
            let mut p = editable(&env.jobag, &id);
            p["eures_consent"] = json!(false);
            env.jobag.upsert(p);
        } else {
            env.jobag.delete(&id);
        }
    }
    // When the ledger holds all of them as due deletions (the feed is
    // polled every 50 ms): from then on, at most the requests in flight or
    // already claimed may go first.
    let store = running.worker.store.clone();
    let targets_ref = &targets;
    eventually_async(Duration::from_secs(60), "the deletions due", || {
        let store = store.clone();
        async move {
            for &i in targets_ref {
                let due = store
                    .get(&sample_id(i))
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|e| !matches!(e.desired, DesiredState::Present { .. }));
                if !due {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let due = Instant::now();
    eventually(
        Duration::from_secs(60),
        "the withdrawals and deletions",
        || {
            targets
                .iter()
                .all(|&i| env.eures.get(&sample_id(i)).is_none())
        },
    )
    .await;

    let requests = env.eures.requests();
    let last_delete = requests
        .iter()
        .filter(|r| r.method == Method::DELETE)
        .map(|r| r.started)
        .max()
        .expect("deletions were sent");
    let ahead = requests
        .iter()
        .filter(|r| r.method == Method::PUT && r.source_version == Some(2))
        .filter(|r| r.started > due && r.started < last_delete)
        .count();
    let before_due = updates_started(&env, Some(due));
    let left_behind = N as usize - before_due - ahead;
    println!(
        "updates started: {} before the withdrawals were published, {before_due} before they \
         were due ({:?} later), {ahead} between then and the last deletion ({:?} later), \
         {left_behind} after",
        updates_started(&env, Some(published)),
        due - published,
        last_delete - due
    );
    assert!(
        ahead <= AHEAD_AT_MOST,
        "{ahead} updates went ahead of the deletions (at most {AHEAD_AT_MOST})"
    );
    assert!(
        left_behind >= N as usize / 2,
        "the deletions waited for the backlog: only {left_behind} updates were left"
    );

    env.eures.set_faults(Faults::none());
    env.settled(Duration::from_secs(120)).await;
    running.stop().await;
}
