//! kill -9 of the real binary in the middle of a backlog: after a restart
//! EURES ends exactly as the source says, and no stale copy is re-created.
//! Each test runs on SQLite (`sqlite::*`) and on PostgreSQL (`postgres::*`).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Env, assert_churned, assert_no_regression, churn};
use eures_sync::sim::eures::Faults;
use eures_sync::sim::jobag::sample_posting;

common::on_both_backends!(
    kill_dash_nine_mid_backlog_loses_nothing_and_resurrects_nothing,
    sigterm_drains_and_exits_zero,
);

fn spawn_agent(env: &Env) -> Child {
    let config = env.dir.path().join("agent.toml");
    std::fs::write(&config, env.config_toml()).expect("write config");
    Command::new(env!("CARGO_BIN_EXE_eures-sync"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start eures-sync")
}

async fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

    let mut agent = spawn_agent(&env);
    wait_until(Duration::from_secs(60), "first copies", || {
        env.eures.len() > 300
    })
    .await;
    // Deletions, withdrawals and edits while the backlog drains.
    churn(&env.jobag, 600, "Opdateret stilling");
    tokio::time::sleep(Duration::from_millis(150)).await;
    agent.kill().expect("kill -9");
    let _ = agent.wait();
    let at_first_kill = env.eures.len();

    // More lives, each killed at a random instant (start-up included).
    for _ in 0..5 {
        let mut agent = spawn_agent(&env);
        let at = rand::random_range(20..900u64);
        tokio::time::sleep(Duration::from_millis(at)).await;
        agent.kill().expect("kill -9");
        let _ = agent.wait();
    }

    // Third life runs to the end.
    env.eures.set_faults(Faults::none());
    let mut agent = spawn_agent(&env);
    env.converged(Duration::from_secs(120)).await;
    agent.kill().expect("stop");
    let _ = agent.wait();

    assert!(
        at_first_kill < n as usize,
        "the kill landed before the backlog drained"
    );
    assert_no_regression(&env.eures);
    assert_churned(&env.eures, 600);
}

async fn sigterm_drains_and_exits_zero(backend: Backend) {
    let env = Env::start_with(backend).await;
    for i in 1..=50 {
        env.jobag.upsert(sample_posting(i));
    }
    let agent = spawn_agent(&env);
    wait_until(Duration::from_secs(60), "copies", || env.eures.len() == 50).await;
    let pid = agent.id();
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let mut agent = agent;
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = agent.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
}
