//! kill -9 of the real binary in the middle of a backlog: after a restart
//! EURES ends exactly as the source says, and no stale copy is re-created.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, editable};
use eures_sync::sim::eures::Faults;
use eures_sync::sim::jobag::sample_posting;
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_mid_backlog_loses_nothing_and_resurrects_nothing() {
    let env = Env::start().await;
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
    for i in 1..=600u64 {
        let id = sample_posting(i)["id"].as_str().unwrap().to_string();
        match i % 3 {
            0 => {
                env.jobag.delete(&id);
            }
            1 => {
                let mut p = editable(&env.jobag, &id);
                p["eures_consent"] = json!(false);
                env.jobag.upsert(p);
            }
            _ => {
                let mut p = editable(&env.jobag, &id);
                p["title"] = json!(format!("Opdateret stilling {i}"));
                env.jobag.upsert(p);
            }
        }
    }
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
    for (reference, _) in env.eures.holdings() {
        let versions: Vec<u64> = env
            .eures
            .history(&reference)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "{reference}: {versions:?}"
        );
    }
    for i in (3..=600u64).step_by(3) {
        let id = sample_posting(i)["id"].as_str().unwrap().to_string();
        let history = env.eures.history(&id);
        let versions: Vec<u64> = history.iter().map(|(_, v)| *v).collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "stale re-create of {id}: {history:?}"
        );
        assert!(
            env.eures.get(&id).is_none(),
            "deleted posting {id} is on EURES"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let env = Env::start().await;
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
