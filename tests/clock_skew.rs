//! Two workers on one PostgreSQL ledger whose clocks are two minutes apart
//! (one a minute ahead, one a minute behind, under Debian's `faketime`;
//! SPEC 3.7): no posting is delivered twice at once, nothing expires
//! early, nothing is missed, and what ends is removed on time. `.ci/run`
//! installs `faketime` when it is missing.

mod common;

use std::time::{Duration, Instant};

use common::agent::{Agent, eures_sync};
use common::{Backend, Env, eventually, merged_toml, publish};
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

/// Debian's libfaketime (package `libfaketime`, which `faketime` pulls in).
fn libfaketime() -> &'static str {
    const MULTI_THREADED: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(MULTI_THREADED).exists(),
        "{MULTI_THREADED} is missing: `apt-get install faketime` (what .ci/run does)"
    );
    MULTI_THREADED
}

/// `eures-sync run` on `env` with the wall clock shifted by `offset`
/// (`+60s`); timers keep the true monotonic clock.
fn skewed(env: &Env, name: &str, offset: &str) -> Agent {
    let config = env.dir.path().join(format!("{name}.toml"));
    let toml = merged_toml(
        &env.config_toml(),
        "[log]\nformat = \"json\"\nlevel = \"info\"\n",
    );
    std::fs::write(&config, toml).expect("write config");
    // libfaketime preloaded into the binary itself, not the `faketime`
    // wrapper, which would stand between the test's signals and the worker.
    let mut cmd = eures_sync();
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", offset)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let mut agent = Agent::start(cmd, &env.dir.path().join(format!("{name}.log")));
    agent.config = config;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_a_minute_apart_agree_on_leases_and_expiry() {
    let env = Env::start_with(Backend::Postgres).await;
    // Requests that take a while, so leases matter.
    env.eures.set_faults(Faults {
        latency: Duration::from_millis(20),
        ..Faults::none()
    });
    publish(&env.jobag, 30);
    // Five postings end 25 s from now (by the true clock).
    let ending_at = chrono::Utc::now() + chrono::Duration::seconds(25);
    let ending: Vec<String> = (31..=35).map(sample_id).collect();
    for i in 31..=35 {
        let mut posting = sample_posting(i);
        posting["publication_end"] = json!(ending_at.to_rfc3339());
        env.jobag.upsert(posting);
    }
    let mut ahead = skewed(&env, "ahead", "+60s");
    let mut behind = skewed(&env, "behind", "-60s");
    ahead.listen();
    behind.listen();
    // The clocks really are off: each worker's log stamps say so.
    for (agent, expected) in [(&ahead, 60), (&behind, -60)] {
        let log = agent.log_text();
        let first: serde_json::Value =
            serde_json::from_str(log.lines().next().expect("a log line")).expect("JSON log");
        let stamped =
            chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().expect("timestamp"))
                .expect("RFC 3339");
        let off = (stamped.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
        assert!(
            (expected - 15..=expected + 5).contains(&off),
            "the worker's clock is {off} s off, not {expected} s"
        );
    }

    // Everything arrives, the ending postings included: the worker a
    // minute ahead would think them over.
    eventually(WAIT, "all 35 copies on EURES", || env.eures.len() == 35).await;
    // Edits while both run.
    for i in 1..=10 {
        let mut posting = sample_posting(i);
        posting["title"] = json!(format!("Redigeret stilling {i}"));
        env.jobag.upsert(posting);
    }
    // The ending copies stay until their end (checked up to 3 s before it).
    let check_until = ending_at - chrono::Duration::seconds(3);
    while chrono::Utc::now() < check_until {
        for id in &ending {
            assert!(
                env.eures.get(id).is_some(),
                "{id} removed {} s before its publication_end",
                (ending_at - chrono::Utc::now()).num_seconds()
            );
        }
        ahead.assert_alive();
        behind.assert_alive();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and leave within the 5 s the SPEC allows (with 3 s of slack for a
    // loaded machine).
    let started = Instant::now();
    let deadline = ending_at + chrono::Duration::seconds(8);
    eventually(WAIT, "the ended postings removed", || {
        ending.iter().all(|id| env.eures.get(id).is_none())
    })
    .await;
    assert!(
        chrono::Utc::now() <= deadline,
        "removed {:?} after the wait began, later than 8 s after publication_end",
        started.elapsed()
    );
    env.settled(WAIT).await;
    assert_eq!(
        env.eures.overlaps(),
        0,
        "a posting had two requests in flight at once"
    );
    let ahead_log = ahead.stop().await;
    let behind_log = behind.stop().await;
    for log in [&ahead_log, &behind_log] {
        assert!(
            !log.contains("lease lost before the outcome was recorded"),
            "a lease ran out under a worker: {log}"
        );
    }
}
