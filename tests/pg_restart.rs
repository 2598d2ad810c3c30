//! PostgreSQL restarts while two workers (the real binary) drain a backlog
//! and the source keeps changing: the workers stay up, log and retry, and
//! EURES converges with nothing lost and no version going backwards.
//!
//! Serial by construction: this file holds this one test, and `cargo test`
//! runs test binaries one after another, so no other test shares the
//! server while it restarts. (Under cargo-nextest, which runs binaries in
//! parallel, give this binary a serial test group.) The restart command is
//! `pg_ctlcluster --skip-systemctl-redirect <version> main restart`, the
//! version read from /etc/postgresql; `EURES_TEST_PG_RESTART` overrides it
//! (a shell command).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Backend, Env, assert_churned, churn, eventually};
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::sample_posting;

fn restart_postgres() {
    let status = match std::env::var("EURES_TEST_PG_RESTART") {
        Ok(cmd) => Command::new("sh").args(["-c", &cmd]).status(),
        Err(_) => {
            let version = std::fs::read_dir("/etc/postgresql")
                .expect("/etc/postgresql (or set EURES_TEST_PG_RESTART)")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .max()
                .expect("a PostgreSQL cluster version");
            Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &version, "main", "restart"])
                .status()
        }
    };
    assert!(
        status.expect("run the restart command").success(),
        "restarting PostgreSQL failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_run_is_survived() {
    const N: u64 = 3_000;
    let env = Env::start_with(Backend::Postgres).await;
    // Slow enough that the backlog outlasts the restart (at most 2 workers
    // x 16 requests / 50 ms = 640 postings/s).
    env.eures.set_faults(Faults {
        latency: Duration::from_millis(50),
        ..Faults::none()
    });
    for i in 1..=N {
        env.jobag.upsert(sample_posting(i));
    }
    let names = ["restart-a", "restart-b"];
    let mut workers: Vec<_> = names
        .iter()
        .map(|n| env.agent(n, "info", "[reconcile]\ninterval_s = 0\n"))
        .collect();
    eventually(Duration::from_secs(120), "first copies", || {
        env.eures.len() > 300
    })
    .await;

    let restarted = Instant::now();
    restart_postgres();
    println!(
        "PostgreSQL restarted in {:.1} s with {} copies on EURES",
        restarted.elapsed().as_secs_f64(),
        env.eures.len()
    );
    // The source moves on meanwhile: withdrawals, deletions, edits.
    churn(&env.jobag, 300, "Efter genstart");
    assert!(env.eures.len() < N as usize, "the restart came mid-backlog");

    env.converged(Duration::from_secs(180)).await;
    for agent in &mut workers {
        agent.assert_alive();
    }
    env.settled(Duration::from_secs(60)).await;
    assert_churned(&env.eures, 300);
    assert_eq!(
        env.eures.overlaps(),
        0,
        "two requests for one posting were in flight at once"
    );
    // The workers noticed the restart, and got over it.
    let logs: String = workers.iter().map(|a| a.log_text()).collect();
    let mut warnings = std::collections::BTreeMap::<String, usize>::new();
    for line in logs.lines().filter(|l| l.contains("\"level\":\"WARN\"")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let message = v["fields"]["message"].as_str().unwrap_or("?").to_string();
        *warnings.entry(message).or_default() += 1;
    }
    println!("warnings logged through the restart: {warnings:#?}");
    assert!(
        logs.contains("\"level\":\"WARN\""),
        "no worker logged the outage"
    );
}
