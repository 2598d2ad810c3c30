//! A withdrawal hidden in a damaged feed change whose re-read from JobAG
//! fails is remembered in the ledger with the page that carried it: the
//! worker killed (kill -9) meanwhile, the next one re-reads the posting
//! once JobAG answers, and the copy goes. No reconcile runs (its interval
//! is an hour): only the remembered re-read can find the withdrawal.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Env, editable, eventually};
use eures_sync_sims::jobag::{sample_id, sample_posting};
use serde_json::json;

common::on_both_backends!(a_failed_reread_of_a_damaged_withdrawal_survives_a_kill);

const WAIT: Duration = Duration::from_secs(60);

async fn a_failed_reread_of_a_damaged_withdrawal_survives_a_kill(backend: Backend) {
    let env = Env::start_with(backend).await;
    env.jobag.upsert(sample_posting(1));
    env.jobag.upsert(sample_posting(2));
    let mut first = env.agent("first", "info", "");
    first.listen();
    env.converged(WAIT).await;
    let id = sample_id(1);

    // The withdrawal reaches the feed damaged, and JobAG's single-posting
    // reads fail: the re-read cannot learn it.
    env.jobag.set_posting_reads_failing(true);
    let mut withdrawn = editable(&env.jobag, &id);
    withdrawn["eures_consent"] = json!(false);
    env.jobag.upsert_damaged(withdrawn);
    let started = Instant::now();
    while !first
        .log_text()
        .contains("re-reading a posting whose feed change was unusable failed")
    {
        first.assert_alive();
        assert!(
            started.elapsed() < WAIT,
            "no failed re-read: {}",
            first.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    assert!(
        env.eures.get(&id).is_some(),
        "the copy went without a re-read"
    );

    // JobAG answers again; a new worker, its cursor past the damaged change.
    env.jobag.set_posting_reads_failing(false);
    let mut second = env.agent("second", "info", "");
    second.listen();
    eventually(WAIT, "the withdrawn copy deleted", || {
        env.eures.get(&id).is_none()
    })
    .await;
    assert!(env.eures.get(&sample_id(2)).is_some());
    env.settled(WAIT).await;
    second.stop().await;
}
