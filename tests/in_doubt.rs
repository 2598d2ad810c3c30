//! Requests in doubt (SPEC 3.8): a create whose answer was lost, or that
//! was answered `202 Accepted` (SPEC 4.2), may be applied by a gateway
//! after the withdrawal's DELETE. The real binary
//! verifies such a deletion after `request_timeout_ms` + 5 s and deletes
//! the copy again, without waiting for a reconcile (turned off here), and
//! the verification is a ledger operation that survives a kill -9.

mod common;

use std::time::{Duration, Instant};

use common::{Env, editable, eventually};
use eures_sync_sims::jobag::{sample_id, sample_posting};
use hyper::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
/// `eures.request_timeout_ms` of the test configuration.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// SPEC 3.8: the copy is gone within the request timeout + 5 s + one retry
/// (one more request, at most a request timeout).
const WINDOW: Duration =
    Duration::from_secs(REQUEST_TIMEOUT.as_secs() + 5 + REQUEST_TIMEOUT.as_secs());
/// How long the gateway holds the create: past the request timeout, so the
/// agent gives up on it, and past the withdrawal's DELETE.
const HOLD: Duration = Duration::from_secs(4);

/// A worker with no periodic reconcile: only the verification can find
/// the late copy.
fn spawn(env: &Env, name: &str) -> common::agent::Agent {
    env.agent(name, "info", "[reconcile]\ninterval_s = 0\n")
}

fn kill(mut agent: common::agent::Agent) {
    agent.kill();
}

/// The posting is published, its create held by a gateway without
/// tombstones, its consent withdrawn while the create is held. Returns
/// once the withdrawal's DELETE went out.
async fn create_held_then_withdrawn(env: &Env, id: &str) {
    create_held_then_withdrawn_at(env, id, false).await;
}

async fn create_held_then_withdrawn_at(env: &Env, id: &str, tombstones: bool) {
    env.eures.set_tombstones(tombstones);
    env.eures.hold_next_put(id, HOLD);
    env.jobag.upsert(sample_posting(1));
    eventually(WAIT, "the create held by the gateway", || {
        env.eures.is_holding(id)
    })
    .await;
    let mut p = editable(&env.jobag, id);
    p["eures_consent"] = json!(false);
    env.jobag.upsert(p);
    eventually(WAIT, "the withdrawal's DELETE", || {
        env.eures
            .requests()
            .iter()
            .any(|r| r.method == Method::DELETE && r.reference.as_deref() == Some(id))
    })
    .await;
    assert!(
        env.eures.held_put_applied(id).is_none(),
        "the DELETE came before the held create was applied"
    );
}

/// The gateway, keeping no tombstones, answers the create `202` at once
/// and applies it `HOLD` later, after the withdrawal's DELETE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_accepted_for_later_and_applied_after_the_withdrawals_delete_is_deleted_again() {
    let env = Env::start().await;
    let id = sample_id(1);
    let worker = spawn(&env, "w");
    env.eures.set_tombstones(false);
    env.eures.accept_next_put_later(&id, HOLD);
    env.jobag.upsert(sample_posting(1));
    eventually(WAIT, "the create accepted for later", || {
        env.eures.is_holding(&id)
    })
    .await;
    let mut p = editable(&env.jobag, &id);
    p["eures_consent"] = json!(false);
    env.jobag.upsert(p);
    eventually(WAIT, "the withdrawal's DELETE", || {
        env.eures
            .requests()
            .iter()
            .any(|r| r.method == Method::DELETE && r.reference.as_deref() == Some(id.as_str()))
    })
    .await;
    assert!(
        env.eures.held_put_applied(&id).is_none(),
        "the DELETE came before the accepted create was applied"
    );
    let lived = late_copy_lifetime(&env, &id).await;
    eprintln!("the late copy of a 202 lived {lived:?} (window {WINDOW:?})");
    assert!(lived <= WINDOW, "the late copy lived {lived:?}");
    kill(worker);
}

/// Waits for the held create to land, then for the copy to go again;
/// returns how long the copy lived.
async fn late_copy_lifetime(env: &Env, id: &str) -> Duration {
    eventually(WAIT, "the held create applied", || {
        env.eures.held_put_applied(id).is_some()
    })
    .await;
    let applied = env.eures.held_put_applied(id).expect("applied");
    eventually(WAIT, "the late copy deleted again", || {
        env.eures.get(id).is_none()
    })
    .await;
    let lived = applied.elapsed();
    let history = env.eures.history(id);
    assert_eq!(
        history.last().map(|(m, _)| m.clone()),
        Some(Method::DELETE),
        "{history:?}"
    );
    assert!(
        history.iter().any(|(m, _)| *m == Method::PUT),
        "the held create did land: {history:?}"
    );
    lived
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_applied_after_the_withdrawals_delete_is_deleted_again() {
    let env = Env::start().await;
    let id = sample_id(1);
    let worker = spawn(&env, "w");
    let started = Instant::now();
    create_held_then_withdrawn(&env, &id).await;
    let lived = late_copy_lifetime(&env, &id).await;
    eprintln!(
        "the late copy lived {lived:?} (window {WINDOW:?}); test took {:?}",
        started.elapsed()
    );
    assert!(lived <= WINDOW, "the late copy lived {lived:?}");
    // The verification found nothing more: nothing stays due.
    let url = env.db_url();
    common::eventually_async(WAIT, "nothing due, nothing in flight", || {
        let url = url.clone();
        let eures = &env.eures;
        async move { common::ledger_busy(&url).await == 0 && eures.in_flight() == 0 }
    })
    .await;
    let gets = env
        .eures
        .requests()
        .iter()
        .filter(|r| r.method == Method::GET && r.reference.as_deref() == Some(id.as_str()))
        .count();
    assert!(gets >= 1, "the deletion was verified with a GET");
    kill(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_survives_a_kill_dash_nine() {
    let env = Env::start().await;
    let id = sample_id(1);
    let worker = spawn(&env, "first");
    create_held_then_withdrawn(&env, &id).await;
    // Once the DELETE's outcome is in the ledger, the worker dies.
    let store = eures_sync::store::connect(&env.db_url())
        .await
        .expect("store");
    let deadline = Instant::now() + WAIT;
    loop {
        let entry = store.get(&id).await.expect("read").expect("record");
        if entry.doubt.verify_at_ms.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no verification scheduled: {entry:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(worker);
    let worker = spawn(&env, "second");
    let lived = late_copy_lifetime(&env, &id).await;
    eprintln!("the late copy lived {lived:?} across a restart (window {WINDOW:?})");
    assert!(lived <= WINDOW, "the late copy lived {lived:?}");
    kill(worker);
}

/// A conforming portal keeps a tombstone: the late create is answered 409
/// and never shows; the verification finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_with_tombstones_refuses_the_late_create() {
    let env = Env::start().await;
    let id = sample_id(1);
    let worker = spawn(&env, "w");
    create_held_then_withdrawn_at(&env, &id, true).await;
    eventually(WAIT, "the verification", || {
        env.eures
            .requests()
            .iter()
            .any(|r| r.method == Method::GET && r.reference.as_deref() == Some(id.as_str()))
    })
    .await;
    assert!(env.eures.get(&id).is_none());
    assert!(
        env.eures.held_put_applied(&id).is_none(),
        "the late create was refused"
    );
    assert_eq!(env.eures.history(&id), [], "nothing ever applied");
    kill(worker);
}

/// A withdrawal's DELETE held by the gateway past the request timeout, the
/// consent given again meanwhile: the agent's retried DELETE and then the
/// new create go out, and the held DELETE, carrying the older version, is
/// applied last. The portal holds a newer `sourceVersion`, so it answers
/// `409` and keeps the copy (SPEC 4.2): the version every request carries is
/// what keeps a late deletion from removing a wanted copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_applied_after_the_re_create_leaves_the_newer_copy() {
    let env = Env::start().await;
    let id = sample_id(1);
    let worker = spawn(&env, "w");
    env.jobag.upsert(sample_posting(1));
    env.converged(WAIT).await;
    env.eures.hold_next_delete(&id, HOLD);
    let mut p = editable(&env.jobag, &id);
    p["eures_consent"] = json!(false);
    let withdrawn = env.jobag.upsert(p);
    eventually(WAIT, "the withdrawal's DELETE held", || {
        env.eures.is_holding(&id)
    })
    .await;
    eventually(WAIT, "the DELETE retried once the first timed out", || {
        env.eures.get(&id).is_none()
    })
    .await;
    let mut p = editable(&env.jobag, &id);
    p["eures_consent"] = json!(true);
    let consented = env.jobag.upsert(p);
    eventually(WAIT, "the copy created again", || {
        env.eures
            .get(&id)
            .is_some_and(|c| c.source_version == consented)
    })
    .await;
    assert!(
        env.eures.is_holding(&id),
        "the re-create came before the held DELETE was applied"
    );
    eventually(WAIT, "the held DELETE answered", || {
        !env.eures.is_holding(&id)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.eures.get(&id).map(|c| c.source_version),
        Some(consented),
        "the late DELETE (version {withdrawn}) removed the newer copy"
    );
    env.converged(WAIT).await;
    kill(worker);
}
