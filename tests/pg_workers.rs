//! Several workers (the real binary) on one PostgreSQL ledger: they share a
//! backlog without ever working on one posting at once, and killing the
//! leader or a delivering worker with kill -9 loses nothing.
//!
//! Who did what is read from the audit trail, which names the worker (lease
//! owner `worker-<pid>-<ms>`) of every attempt.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::{Backend, Env, assert_churned, churn, eventually, publish};
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::sample_id;

/// Periodic reconcile off: these tests watch delivery and leadership only.
const WORKER_TOML: &str = "[reconcile]\ninterval_s = 0\n";

struct Workers {
    agents: Vec<Agent>,
}

impl Workers {
    fn start(env: &Env, n: usize) -> Workers {
        let agents = (0..n)
            .map(|i| env.agent(&format!("worker-{i}"), "warn", WORKER_TOML))
            .collect();
        Workers { agents }
    }

    /// kill -9 of the worker with this process id.
    fn kill(&mut self, pid: u32) {
        let at = self
            .agents
            .iter()
            .position(|a| a.pid() == pid)
            .expect("a worker of ours");
        self.agents.remove(at).kill();
    }

    fn assert_alive(&mut self) {
        for agent in &mut self.agents {
            agent.assert_alive();
        }
    }
}

/// Process id of a worker from its lease owner name `worker-<pid>-<ms>`.
fn pid_of(owner: &str) -> u32 {
    owner
        .split('-')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a worker name: {owner}"))
}

async fn leader(pool: &sqlx::PgPool) -> Option<String> {
    sqlx::query_scalar(
        "SELECT owner FROM leader_lease \
         WHERE until_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
    )
    .fetch_optional(pool)
    .await
    .expect("read leader_lease")
}

/// Successful attempts per worker, from the audit trail.
async fn ok_by_worker(pool: &sqlx::PgPool) -> BTreeMap<String, i64> {
    let rows: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT worker, COUNT(*) FROM audit WHERE outcome = 'ok' GROUP BY worker")
            .fetch_all(pool)
            .await
            .expect("read audit");
    rows.into_iter()
        .map(|(w, n)| (w.unwrap_or_default(), n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_backlog_without_overlap() {
    const N: u64 = 20_000;
    let env = Env::start_with(Backend::Postgres).await;
    let pool = env.pg.as_ref().expect("postgres").pool().await;
    env.eures.set_faults(Faults {
        latency: Duration::from_millis(2),
        ..Faults::none()
    });
    publish(&env.jobag, N);

    let started = Instant::now();
    let mut workers = Workers::start(&env, 3);
    env.converged(Duration::from_secs(300)).await;
    let elapsed = started.elapsed();
    workers.assert_alive();

    assert_eq!(env.eures.len(), N as usize, "every posting delivered");
    assert_eq!(
        env.eures.overlaps(),
        0,
        "two requests for one posting were in flight at once"
    );
    let puts = (1..=N)
        .map(|i| env.eures.history(&sample_id(i)).len())
        .sum::<usize>();
    assert_eq!(puts, N as usize, "some posting was delivered twice");

    let share = ok_by_worker(&pool).await;
    let total: i64 = share.values().sum();
    println!(
        "{N} postings, 3 workers: {:.1} s, {:.0} postings/s; successful deliveries by worker: {share:?}",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(total, N as i64);
    assert_eq!(share.len(), 3, "every worker delivered: {share:?}");
    for (worker, n) in &share {
        assert!(
            *n * 100 >= total * 15,
            "{worker} delivered only {n} of {total}: {share:?}"
        );
    }
    assert!(leader(&pool).await.is_some(), "one worker leads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_and_a_deliverer_loses_nothing() {
    const N: u64 = 4_000;
    let env = Env::start_with(Backend::Postgres).await;
    let pool = env.pg.as_ref().expect("postgres").pool().await;
    env.eures.set_faults(Faults {
        latency: Duration::from_millis(5),
        ..Faults::none()
    });
    publish(&env.jobag, N);
    let mut workers = Workers::start(&env, 3);
    eventually(Duration::from_secs(120), "first copies", || {
        env.eures.len() > 400
    })
    .await;

    // kill -9 of the leader, then edits only a new leader can ingest.
    let first = leader(&pool).await.expect("a leader");
    workers.kill(pid_of(&first));
    let moved = Instant::now();
    println!("killed the leader {first}");
    churn(&env.jobag, 600, "Opdateret stilling");
    // Then kill -9 of one of the two delivering followers, with requests
    // in flight: the last worker must take over leadership and reap both
    // killed workers' leases.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deliverer = workers.agents[0].pid();
    workers.kill(deliverer);
    println!("killed the deliverer, process {deliverer}");
    assert!(
        env.eures.len() < N as usize,
        "the kills landed before the backlog drained"
    );
    // Leadership moves within seconds (the lease lasts 5 s).
    let last = workers.agents[0].pid();
    let second = loop {
        if let Some(owner) = leader(&pool).await
            && owner != first
        {
            break owner;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(15),
            "leadership did not move"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "leadership moved to {second} {:.1} s after the leader died",
        moved.elapsed().as_secs_f64()
    );
    assert_eq!(pid_of(&second), last, "the surviving worker leads");

    env.converged(Duration::from_secs(180)).await;
    workers.assert_alive();
    assert_eq!(leader(&pool).await.as_deref(), Some(second.as_str()));
    env.settled(Duration::from_secs(60)).await;
    assert_churned(&env.eures, 600);
    let share = ok_by_worker(&pool).await;
    assert!(
        share
            .keys()
            .any(|w| w.starts_with(&format!("worker-{deliverer}-"))),
        "the killed deliverer had delivered: {share:?}"
    );
    assert_eq!(
        env.eures.overlaps(),
        0,
        "two requests for one posting were in flight at once"
    );
}
