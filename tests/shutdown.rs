//! Stopping `eures-sync run` while requests hang (SPEC 4.5, issue of
//! supervision): a stop waits for in-flight work, but not for ever. A second
//! SIGTERM ends it at once, and so does the shutdown deadline; either way
//! the process exits non-zero and the next start delivers what was cut off.

mod common;

use std::time::{Duration, Instant};

use common::agent::Agent;
use common::{Env, eventually, publish};
use eures_sync::cli::SHUTDOWN_DEADLINE;
use eures_sync_sims::eures::Faults;

const WAIT: Duration = Duration::from_secs(60);

/// A worker whose EURES requests hang (with a request timeout far beyond
/// the test), with at least one of them in flight.
async fn worker_with_requests_hanging(env: &Env) -> Agent {
    env.eures.set_faults(Faults {
        hang: true,
        ..Faults::none()
    });
    publish(&env.jobag, 3);
    let mut agent = env.agent("hanging", "info", "[eures]\nrequest_timeout_ms = 600000\n");
    agent.listen();
    eventually(WAIT, "a request in flight", || env.eures.in_flight() > 0).await;
    agent
}

/// After `agent` was cut off: a new start takes the postings back and
/// delivers them.
async fn next_start_delivers(env: &Env) {
    env.eures.set_faults(Faults::none());
    let agent = env.agent("again", "info", "");
    env.settled(WAIT).await;
    assert_eq!(env.eures.len(), 3);
    agent.stop().await;
}

async fn draining(agent: &mut Agent) {
    let started = Instant::now();
    while !agent
        .log_text()
        .contains("stopping: finishing in-flight work")
    {
        agent.assert_alive();
        assert!(
            started.elapsed() < WAIT,
            "no stop logged: {}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain_at_once() {
    let env = Env::start().await;
    let mut agent = worker_with_requests_hanging(&env).await;
    agent.signal_term();
    draining(&mut agent).await;
    // The requests still hang: the worker keeps waiting for them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.assert_alive();
    let second = Instant::now();
    agent.signal_term();
    let status = agent.wait_exit(Duration::from_secs(10)).await;
    let log = agent.log_text();
    assert!(!status.success(), "{status}: {log}");
    assert!(log.contains("second signal"), "{log}");
    assert!(second.elapsed() < Duration::from_secs(10));
    next_start_delivers(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_at_the_shutdown_deadline() {
    let env = Env::start().await;
    let mut agent = worker_with_requests_hanging(&env).await;
    let stop = Instant::now();
    agent.signal_term();
    let status = agent
        .wait_exit(SHUTDOWN_DEADLINE + Duration::from_secs(30))
        .await;
    let took = stop.elapsed();
    let log = agent.log_text();
    assert!(!status.success(), "{status}: {log}");
    assert!(log.contains("shutdown deadline passed"), "{log}");
    assert!(
        took >= SHUTDOWN_DEADLINE - Duration::from_secs(1),
        "it waited {took:?}, less than the deadline"
    );
    next_start_delivers(&env).await;
}
