//! Liveness: nothing the agent waits for spins without pause or waits
//! forever. Each case drives a worker over real HTTP and a real ledger.

mod common;

use std::time::Duration;

use common::{Env, eventually, eventually_async};
use eures_sync::domain::ledger::Op;
use eures_sync::store::{Ctx, Listed, Repair};
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use hyper::Method;

const WAIT: Duration = Duration::from_secs(60);

/// The portal holds a newer version than JobAG ever made, and JobAG has
/// deleted the posting: the DELETE is answered 409 and re-reads a posting
/// JobAG no longer has. The agent asks EURES which version it holds and the
/// next DELETE carries it, so the copy goes without a reconcile (none runs
/// here). Before, every DELETE was answered 409 until a reconcile listed
/// the copy; they backed off meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_answered_409_learns_the_portals_version_and_the_copy_goes() {
    let env = Env::start().await;
    env.jobag.upsert(sample_posting(1));
    let running = env.worker().await;
    env.converged(WAIT).await;
    let id = sample_id(1);
    let doc = env.eures.get(&id).expect("delivered").content;
    env.eures.insert_orphan(&id, 99, doc);
    env.eures.clear_requests();
    let deleted = env.jobag.delete(&id);
    eventually(WAIT, "the copy deleted", || env.eures.get(&id).is_none()).await;
    let deletes: Vec<(u64, u16)> = env
        .eures
        .requests()
        .iter()
        .filter(|r| r.method == Method::DELETE && r.reference.as_deref() == Some(id.as_str()))
        .map(|r| (r.source_version.unwrap_or(0), r.status))
        .collect();
    let (last, refused) = deletes.split_last().expect("DELETEs");
    assert_eq!(*last, (99, 204), "{deletes:?}");
    assert!(
        !refused.is_empty() && refused.iter().all(|d| *d == (deleted, 409)),
        "{deletes:?}"
    );
    running.stop().await;
}

/// A create/update whose document was erased must be re-read from JobAG;
/// while JobAG fails, the attempt is recorded and backs off instead of
/// being claimed again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_cannot_be_re_read_backs_off() {
    let env = Env::start().await;
    env.jobag.upsert(sample_posting(1));
    let running = env.worker().await;
    env.converged(WAIT).await;
    let id = sample_id(1);
    let store = running.worker.store.clone();
    let entry = store.get(&id).await.expect("get").expect("known");
    env.jobag.set_outage(true);
    // Reconcile saw EURES hold other content: an update is due, and the
    // document was erased after the delivery.
    let ctx = Ctx {
        now_ms: chrono::Utc::now().timestamp_millis(),
        mode: eures_sync::domain::ledger::Mode::Push,
    };
    store
        .reconcile_remote(
            &[Listed {
                reference: id.clone(),
                source_version: entry.source_version,
                content_sha256: Some("0".repeat(64)),
            }],
            ctx,
            Repair::Apply,
        )
        .await
        .expect("reconcile page");
    let store2 = store.clone();
    let id2 = id.clone();
    // Each attempt's re-read retries JobAG five times with backoff (6–12 s)
    // before it counts: two of them take up to half a minute, longer on a
    // loaded machine.
    eventually_async(
        2 * WAIT,
        "the failed re-read recorded as an attempt",
        move || {
            let store = store2.clone();
            let id = id2.clone();
            async move {
                let e = store.get(&id).await.expect("get").expect("known");
                e.retry.attempts >= 2
            }
        },
    )
    .await;
    let e = store.get(&id).await.expect("get").expect("known");
    // Still due (a PUT; a create if a long re-read outlived its lease).
    assert!(matches!(e.due(), Some(Op::Update | Op::Create)), "{e:?}");
    assert!(
        e.retry
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("JobAG"),
        "{e:?}"
    );
    assert!(!e.retry.dead, "JobAG's failure is not the document's");
    env.jobag.set_outage(false);
    env.converged(WAIT).await;
    running.stop().await;
}

fn kill(mut agent: common::agent::Agent) {
    agent.kill();
}

/// The reconcile a lost cursor (`410 Gone`) asks for is kept in the
/// ledger: a run that cannot finish (EURES down) is tried again, and a
/// restart does not forget it, even with periodic reconcile off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_asked_for_by_a_lost_cursor_survives_failures_and_restarts() {
    let env = Env::start().await;
    for i in 1..=3 {
        env.jobag.upsert(sample_posting(i));
    }
    const NO_PERIODIC: &str = "[reconcile]\ninterval_s = 0";
    let first = env.agent("first", "info", NO_PERIODIC);
    env.converged(WAIT).await;
    kill(first);
    // The feed forgets the cursor the ledger holds.
    env.jobag.upsert(sample_posting(4));
    env.jobag.forget_before(env.jobag.log_len());
    env.eures.set_faults(Faults {
        force_status: Some(503),
        ..Faults::none()
    });
    let second = env.agent("second", "info", NO_PERIODIC);
    let store = eures_sync::store::connect(&env.db_url())
        .await
        .expect("store");
    let probe = store.clone();
    eventually_async(WAIT, "the reconcile request in the ledger", move || {
        let store = probe.clone();
        async move { store.reconcile_requested().await.expect("read").is_some() }
    })
    .await;
    // Its runs fail while EURES answers 503: the request stays.
    eventually(WAIT, "a listing read refused", || {
        env.eures
            .requests()
            .iter()
            .any(|r| r.reference.is_none() && r.status == 503)
    })
    .await;
    assert!(
        store.reconcile_requested().await.expect("read").is_some(),
        "a reconcile that could not read the listing completed nothing"
    );
    kill(second);
    // Meanwhile a copy nobody sent appeared on EURES: only a reconcile
    // finds it.
    let doc = env.eures.get(&sample_id(1)).expect("held").content;
    env.eures.insert_orphan("orphan-1", 1, doc);
    env.eures.set_faults(Faults::none());
    let third = env.agent("third", "info", NO_PERIODIC);
    eventually(
        WAIT,
        "the orphan deleted by the requested reconcile",
        || env.eures.get("orphan-1").is_none(),
    )
    .await;
    let probe = store.clone();
    eventually_async(WAIT, "the request done", move || {
        let store = probe.clone();
        async move { store.reconcile_requested().await.expect("read").is_none() }
    })
    .await;
    env.converged(WAIT).await;
    kill(third);
}

/// Any worker expires what is due: a follower (another worker holds the
/// lead and has gone silent, say a leader that hangs) still takes an
/// expired posting off EURES within 5 s of its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_expires_postings_on_time() {
    let env = Env::start_with(common::Backend::Postgres).await;
    let mut p = sample_posting(1);
    let end = chrono::Utc::now() + chrono::Duration::seconds(6);
    p["publication_end"] =
        serde_json::json!(end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    env.jobag.upsert(p);
    let running = env.worker().await;
    env.converged(WAIT).await;
    let pool = env.pg.as_ref().expect("postgres").pool().await;
    sqlx::query("UPDATE leader_lease SET owner = 'elsewhere', until_ms = $1")
        .bind(i64::MAX / 2)
        .execute(&pool)
        .await
        .expect("hand the lead to a silent worker");
    eventually(WAIT, "following", || !running.worker.is_leader()).await;
    let id = sample_id(1);
    assert!(env.eures.get(&id).is_some(), "delivered before its end");
    eventually(WAIT, "the expired copy deleted", || {
        env.eures.get(&id).is_none()
    })
    .await;
    let late = chrono::Utc::now() - end;
    eprintln!(
        "deleted {} ms after publication_end",
        late.num_milliseconds()
    );
    assert!(
        late <= chrono::Duration::seconds(5),
        "deleted {} ms after publication_end",
        late.num_milliseconds()
    );
    running.stop().await;
}
/// A snapshot that lagged made reconcile hold a posting as deleted in
/// JobAG; the next snapshot shows it again at the same version: reconcile
/// judges it again and creates the copy again (SPEC 3.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_revives_a_posting_it_wrongly_held_as_deleted() {
    let env = Env::start().await;
    // A portal with tombstones refuses the same version after its DELETE
    // (409): there the copy returns with the posting's next version.
    env.eures.set_tombstones(false);
    for i in 1..=2 {
        env.jobag.upsert(sample_posting(i));
    }
    let running = env.worker().await;
    env.converged(WAIT).await;
    let id = sample_id(1);
    let posting = env.jobag.current(&id).expect("current");
    assert!(env.jobag.vanish(&id));
    running
        .worker
        .reconcile(Repair::Apply, &mut |_| {}, &|_, _| {})
        .await
        .expect("reconcile");
    eventually(
        WAIT,
        "the copy withdrawn on the lagging snapshot's word",
        || env.eures.get(&id).is_none(),
    )
    .await;
    env.jobag.reappear(&posting);
    let mut kinds = Vec::new();
    running
        .worker
        .reconcile(Repair::Apply, &mut |d| kinds.push(d.kind), &|_, _| {})
        .await
        .expect("reconcile");
    assert!(kinds.contains(&"back_in_source"), "{kinds:?}");
    env.converged(WAIT).await;
    assert!(env.eures.get(&id).is_some(), "created again");
    running.stop().await;
}
