//! kill -9 of the real binary in the middle of a backlog: after a restart
//! EURES ends exactly as the source says, and no stale copy is re-created.
//! SIGTERM while slow requests are in flight: they finish, their outcomes
//! are recorded, the leases are given back, exit 0.
//! Each test runs on SQLite (`sqlite::*`) and on PostgreSQL (`postgres::*`).

mod common;

use std::time::Duration;

use common::agent::Agent;
use common::{Backend, Env, assert_churned, churn, eventually, publish};
use eures_sync::domain::ledger::Delivered;
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::sample_posting;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

common::on_both_backends!(
    kill_dash_nine_mid_backlog_loses_nothing_and_resurrects_nothing,
    sigterm_with_slow_requests_in_flight_records_them_and_exits_zero,
);

fn spawn_agent(env: &Env, life: u32) -> Agent {
    env.agent(&format!("life-{life}"), "warn", "")
}

async fn kill_dash_nine_mid_backlog_loses_nothing_and_resurrects_nothing(backend: Backend) {
    let env = Env::start_with(backend).await;
    // Slow EURES a little so the backlog is still draining when we kill.
    env.eures.set_faults(Faults {
        latency: Duration::from_millis(10),
        ..Faults::none()
    });
    let n = 3_000u64;
    for i in 1..=n {
        env.jobag.upsert(sample_posting(i));
    }

    let mut agent = spawn_agent(&env, 0);
    eventually(Duration::from_secs(60), "first copies", || {
        env.eures.len() > 300
    })
    .await;
    // Deletions, withdrawals and edits while the backlog drains.
    churn(&env.jobag, 600, "Opdateret stilling");
    tokio::time::sleep(Duration::from_millis(150)).await;
    agent.kill();
    let at_first_kill = env.eures.len();

    // More lives, each killed at a random instant (start-up included).
    let mut rng = StdRng::seed_from_u64(common::seed::seed("kill instants"));
    for life in 1..=5 {
        let mut agent = spawn_agent(&env, life);
        let at = rng.random_range(20..900u64);
        println!("life {life}: killed {at} ms after its start");
        tokio::time::sleep(Duration::from_millis(at)).await;
        agent.kill();
    }

    // The last life runs to the end.
    env.eures.set_faults(Faults::none());
    let mut agent = spawn_agent(&env, 6);
    env.converged(Duration::from_secs(120)).await;
    env.settled(Duration::from_secs(60)).await;
    agent.kill();

    assert!(
        at_first_kill < n as usize,
        "the kill landed before the backlog drained"
    );
    assert_churned(&env.eures, 600);
}

/// SIGTERM while EURES takes 1.5 s to answer each request: the worker
/// stops claiming, lets the requests in flight finish, records their
/// outcomes, gives back its leases and exits 0; nothing is lost.
async fn sigterm_with_slow_requests_in_flight_records_them_and_exits_zero(backend: Backend) {
    let env = Env::start_with(backend).await;
    env.eures.set_faults(Faults {
        latency: Duration::from_millis(1_500),
        ..Faults::none()
    });
    publish(&env.jobag, 50);
    let mut agent = spawn_agent(&env, 0);
    eventually(Duration::from_secs(60), "slow requests in flight", || {
        env.eures.in_flight() >= 8
    })
    .await;
    let in_flight = env.eures.in_flight();
    agent.signal_term();
    let status = agent.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "exit status {status}: {}",
        agent.log_text()
    );
    assert_eq!(
        env.eures.in_flight(),
        0,
        "it exited before its requests ended"
    );

    // Every copy EURES made is recorded as delivered; no lease is left.
    let held = env.eures.holdings();
    assert!(
        held.len() >= in_flight,
        "{} copies, {in_flight} requests were in flight",
        held.len()
    );
    assert!(held.len() < 50, "the backlog was done before SIGTERM");
    let store = eures_sync::store::connect(&env.db_url())
        .await
        .expect("store");
    for (id, copy) in &held {
        let e = store.get(id).await.unwrap().expect("in the ledger");
        assert_eq!(
            e.delivered,
            Delivered::Present {
                version: copy.source_version,
                hash: copy.content_sha256.clone()
            },
            "{id}: the outcome was not recorded"
        );
    }
    assert_eq!(common::leases_held(&env.db_url()).await, 0, "leases left");

    // Nothing lost: the next life delivers the rest.
    env.eures.set_faults(Faults::none());
    let agent = spawn_agent(&env, 1);
    env.settled(Duration::from_secs(60)).await;
    agent.stop().await;
}
