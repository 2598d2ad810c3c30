//! Dead letters tell a document that breaks EURES from a EURES that is
//! down (SPEC 4.2): a portal-wide outage, however long, sends nothing to
//! the dead letters and everything is delivered afterwards without an
//! operator; a document the portal keeps failing on while it serves every
//! other request still goes there.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Env, editable, eventually_async};
use eures_sync::config::Config;
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn with_max_attempts(env: &Env, max_attempts: u32) -> Config {
    Config::load_from(
        Figment::new()
            .merge(Toml::string(&env.config_toml()))
            .merge(Toml::string(&format!(
                "[eures]\nmax_attempts = {max_attempts}\n[reconcile]\ninterval_s = 0\n"
            ))),
    )
    .expect("config")
}

/// How long EURES answers every request with 503.
const OUTAGE: Duration = Duration::from_secs(60);

/// A 60 s outage with the default `max_attempts` of 20, while the source
/// keeps changing: new postings, edits, a withdrawal and a deletion wait
/// behind it. The test worker backs off at most 0.5 s (with full jitter:
/// 0.25 s on average), so every waiting posting fails far more often than
/// `max_attempts` allows (a production worker, whose backoff reaches 5
/// minutes, meets that many failures only after hours).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixty_second_outage_dead_letters_nothing_and_everything_is_delivered_after_it() {
    let env = Env::start().await;
    for i in 1..=20 {
        env.jobag.upsert(sample_posting(i));
    }
    let default = eures_sync::config::EuresConfig::default().max_attempts;
    assert_eq!(default, 20);
    let config = with_max_attempts(&env, default);
    let running = env.worker_with(config).await;
    env.converged(WAIT).await;

    env.eures.set_faults(Faults {
        force_status: Some(503),
        ..Faults::none()
    });
    let outage = Instant::now();
    // What piles up behind the outage.
    for i in 21..=30 {
        env.jobag.upsert(sample_posting(i));
    }
    for i in 1..=5 {
        let mut p = editable(&env.jobag, &sample_id(i));
        p["title"] = json!(format!("Under nedbruddet {i}"));
        env.jobag.upsert(p);
    }
    let mut withdrawn = editable(&env.jobag, &sample_id(6));
    withdrawn["eures_consent"] = json!(false);
    env.jobag.upsert(withdrawn);
    env.jobag.delete(&sample_id(7));
    let waiting: Vec<String> = (1..=7).chain(21..=30).map(sample_id).collect();

    let store = running.worker.store.clone();
    while outage.elapsed() < OUTAGE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let during = store.summary(0).await.expect("summary");
        assert_eq!(
            during.dead_letters,
            0,
            "a dead letter {:?} into the outage",
            outage.elapsed()
        );
    }
    // Every waiting posting failed more often than max_attempts allows.
    let requests = env.eures.requests();
    for id in &waiting {
        let failed = requests
            .iter()
            .filter(|r| r.reference.as_deref() == Some(id.as_str()) && r.status == 503)
            .count();
        assert!(failed > 20, "{id} failed only {failed} times");
    }
    env.eures.set_faults(Faults::none());
    let ended = Instant::now();
    env.settled(WAIT).await;
    let after = store.summary(0).await.expect("summary");
    assert_eq!(after.dead_letters, 0, "dead letters after the outage");
    assert_eq!(after.present, 28);
    eprintln!(
        "outage of {OUTAGE:?}, everything delivered {:?} after it ended",
        ended.elapsed()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_failing_while_others_pass_is_dead_lettered() {
    let env = Arc::new(Env::start().await);
    for i in 1..=10 {
        env.jobag.upsert(sample_posting(i));
    }
    let broken = sample_id(1);
    env.eures.fail_reference(&broken, Some(500));
    let running = env.worker_with(with_max_attempts(&env, 3)).await;
    // Other postings keep changing, so EURES keeps answering other
    // requests between the broken document's attempts.
    let stop = Arc::new(AtomicBool::new(false));
    let edits = {
        let stop = stop.clone();
        let env = env.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && n < 2_000 {
                n += 1;
                let id = sample_id(2 + n % 9);
                let mut p = editable(&env.jobag, &id);
                p["title"] = json!(format!("Edit {n}"));
                env.jobag.upsert(p);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let store = running.worker.store.clone();
    eventually_async(WAIT, "the broken document in the dead letters", || {
        let store = store.clone();
        async move {
            // Until the worker has migrated the new ledger, nothing to read.
            let dead = store.dead_letters(None, 10).await;
            dead.is_ok_and(|d| d.len() == 1)
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    edits.await.expect("edits");
    let dead = store.dead_letters(None, 10).await.expect("dead letters");
    assert_eq!(dead[0].id, broken);
    assert!(env.eures.get(&broken).is_none());
    // Everything else is delivered.
    let others = || env.held().keys().filter(|id| **id != broken).count();
    common::eventually(WAIT, "the other nine delivered", || others() == 9).await;
    running.stop().await;
}
