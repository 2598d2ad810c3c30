//! What the agent does with each answer of the EURES push endpoint that no
//! other test gives it (SPEC 4.2): `409` to a PUT and to a DELETE (the
//! portal holds something newer: re-read JobAG), `413` (permanent for a
//! create, never for a deletion), and the default `eures.max_attempts`.
//! Each on SQLite (`sqlite::*`) and PostgreSQL (`postgres::*`).

mod common;

use std::time::Duration;

use common::{Backend, Env, editable, eventually, eventually_async};
use eures_sync::config::Config;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use hyper::Method;
use serde_json::json;

common::on_both_backends!(
    a_409_to_a_put_rereads_jobag_and_sends_the_newer_version,
    a_409_to_a_delete_rereads_jobag_and_sends_what_it_holds,
    a_413_dead_letters_a_create_but_never_a_deletion,
    the_default_max_attempts_dead_letters_a_posting_the_portal_keeps_failing,
);

const WAIT: Duration = Duration::from_secs(60);

/// A document the portal accepts, unlike anything the agent renders.
const SOMEONE_ELSES: &str =
    r#"<PositionOpening xmlns="http://www.hr-xml.org/3" majorVersionID="3" minorVersionID="2"/>"#;

/// `(method, version, status)` of every request EURES saw for `id`.
fn requests(env: &Env, id: &str) -> Vec<(Method, u64, u16)> {
    env.eures
        .request_histories()
        .remove(id)
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.method, r.source_version.unwrap_or(0), r.status))
        .collect()
}

/// The feed lags behind JobAG: it tells of v1 while JobAG already holds
/// v2, and EURES holds v2 (sent by someone else). The agent's PUT v1 is
/// answered 409; it re-reads the posting from JobAG and sends v2.
async fn a_409_to_a_put_rereads_jobag_and_sends_the_newer_version(backend: Backend) {
    let env = Env::start_with(backend).await;
    let id = sample_id(1);
    env.jobag.upsert(sample_posting(1));
    let mut newer = editable(&env.jobag, &id);
    newer["title"] = json!("Den nyere udgave");
    let v2 = env.jobag.upsert_unannounced(newer);
    env.eures.insert_orphan(&id, v2, SOMEONE_ELSES);

    let running = env.worker().await;
    env.settled(WAIT).await;
    // The retry may go out once more before the re-read lands: each stale
    // request is answered 409, and the last one sends v2.
    let sent = requests(&env, &id);
    let (last, stale) = sent.split_last().expect("requests");
    assert_eq!(*last, (Method::PUT, v2, 200), "{sent:?}");
    assert!(!stale.is_empty(), "{sent:?}");
    assert!(
        stale.iter().all(|r| *r == (Method::PUT, 1, 409)),
        "{sent:?}"
    );
    assert!(
        env.eures
            .get(&id)
            .expect("held")
            .content
            .contains("Den nyere udgave")
    );
    assert!(
        env.jobag.counters().get >= 1,
        "the posting was not re-read from JobAG"
    );
    running.stop().await;
}

/// The feed tells of a withdrawal (v2) while JobAG already holds a
/// re-consent (v3), and EURES holds v3. The agent's DELETE v2 is answered
/// 409; it re-reads JobAG, learns v3 and sends it (it does not ask EURES
/// for its version: nothing is to be deleted any more).
async fn a_409_to_a_delete_rereads_jobag_and_sends_what_it_holds(backend: Backend) {
    let env = Env::start_with(backend).await;
    let id = sample_id(1);
    env.jobag.upsert(sample_posting(1));
    let running = env.worker().await;
    env.settled(WAIT).await;

    let mut withdrawn = editable(&env.jobag, &id);
    withdrawn["eures_consent"] = json!(false);
    withdrawn["version"] = json!(2);
    withdrawn["updated_at"] = json!("2026-11-20T10:00:00Z");
    let mut reconsented = editable(&env.jobag, &id);
    reconsented["title"] = json!("Samtykke igen");
    reconsented["version"] = json!(3);
    env.jobag.upsert_unannounced(reconsented);
    env.eures.insert_orphan(&id, 3, SOMEONE_ELSES);
    env.jobag.push_raw(withdrawn);

    env.settled(WAIT).await;
    let sent = requests(&env, &id);
    assert_eq!(sent[0], (Method::PUT, 1, 201), "{sent:?}");
    assert_eq!(sent.last(), Some(&(Method::PUT, 3, 200)), "{sent:?}");
    let between = &sent[1..sent.len() - 1];
    assert!(!between.is_empty(), "{sent:?}");
    assert!(
        between.iter().all(|r| *r == (Method::DELETE, 2, 409)),
        "{sent:?}"
    );
    assert!(
        env.eures
            .get(&id)
            .expect("held")
            .content
            .contains("Samtykke igen")
    );
    running.stop().await;
}

/// `413` to a create is permanent: one request, then a dead letter with the
/// reason, which leaves by itself when the posting changes. `413` to a
/// deletion is retried until it succeeds.
async fn a_413_dead_letters_a_create_but_never_a_deletion(backend: Backend) {
    let env = Env::start_with(backend).await;
    let (big, other) = (sample_id(1), sample_id(2));
    env.jobag.upsert(sample_posting(1));
    env.jobag.upsert(sample_posting(2));
    env.eures.fail_reference(&big, Some(413));
    let running = env.worker().await;
    let store = running.worker.store.clone();
    eventually_async(WAIT, "the create dead-lettered", || async {
        store
            .get(&big)
            .await
            .ok()
            .flatten()
            .is_some_and(|e| e.retry.dead)
    })
    .await;
    let dead = store.dead_letters(None, 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].retry.last_error.as_deref(),
        Some("rejected: HTTP 413: document too large")
    );
    eventually(WAIT, "the other posting delivered", || {
        env.eures.get(&other).is_some()
    })
    .await;
    // Nothing due (a dead letter aside), nothing in flight.
    env.judged(WAIT).await;
    assert_eq!(
        requests(&env, &big),
        [(Method::PUT, 1, 413)],
        "a permanent refusal is not retried"
    );

    // A deletion answered 413 is retried, never dead-lettered.
    env.eures.fail_reference(&other, Some(413));
    env.jobag.delete(&other);
    eventually(WAIT, "three refused deletions", || {
        requests(&env, &other)
            .iter()
            .filter(|(m, _, s)| *m == Method::DELETE && *s == 413)
            .count()
            >= 3
    })
    .await;
    let e = store.get(&other).await.unwrap().expect("known");
    assert!(!e.retry.dead, "a deletion went to the dead letters");
    env.eures.fail_reference(&other, None);
    eventually(WAIT, "the deletion", || env.eures.get(&other).is_none()).await;

    // The dead letter leaves by itself when the posting changes.
    env.eures.fail_reference(&big, None);
    let mut smaller = editable(&env.jobag, &big);
    smaller["title"] = json!("Kortere");
    env.jobag.upsert(smaller);
    env.settled(WAIT).await;
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    running.stop().await;
}

/// Without `eures.max_attempts` in the configuration, a create the portal
/// keeps failing (`500` for this one reference while other requests go
/// through) goes to the dead letters after exactly 20 failures that count.
async fn the_default_max_attempts_dead_letters_a_posting_the_portal_keeps_failing(
    backend: Backend,
) {
    let env = Env::start_with(backend).await;
    let toml = env.config_toml().replace("max_attempts = 1000\n", "");
    assert!(!toml.contains("max_attempts"), "{toml}");
    let config = Config::load_from(
        figment::Figment::new()
            .merge(<figment::providers::Toml as figment::providers::Format>::string(&toml)),
    )
    .expect("config");
    let (broken, busy) = (sample_id(1), sample_id(2));
    env.jobag.upsert(sample_posting(1));
    env.jobag.upsert(sample_posting(2));
    env.eures.fail_reference(&broken, Some(500));
    let running = env.worker_with(config).await;
    let store = running.worker.store.clone();

    // Other requests succeed all along: an edit of another posting every
    // 100 ms.
    let mut edits = 0;
    let started = std::time::Instant::now();
    loop {
        // Nothing until the worker has migrated its ledger.
        let e = store.get(&broken).await.ok().flatten();
        if e.as_ref().is_some_and(|e| e.retry.dead) {
            break;
        }
        assert!(started.elapsed() < WAIT, "not dead after {:?}: {e:?}", WAIT);
        let mut p = editable(&env.jobag, &busy);
        edits += 1;
        p["title"] = json!(format!("Travl {edits}"));
        env.jobag.upsert(p);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = store.get(&broken).await.unwrap().expect("known");
    // A failure counts only when EURES answered another request since the
    // posting's previous attempt (SPEC 4.2): exactly 20 counted, and the
    // attempts that did not count (none succeeded elsewhere in between) on
    // top.
    assert_eq!(e.retry.strikes, 20, "{e:?}");
    assert!(e.retry.attempts >= 20, "{e:?}");
    // Nothing due (the dead letter aside), nothing in flight.
    env.judged(WAIT).await;
    let sent = requests(&env, &broken);
    assert_eq!(sent.len(), e.retry.attempts as usize, "{sent:?}");
    assert!(sent.iter().all(|r| *r == (Method::PUT, 1, 500)), "{sent:?}");
    let delivered = requests(&env, &busy)
        .iter()
        .filter(|(_, _, s)| *s == 200)
        .count();
    assert!(
        delivered >= 5,
        "only {delivered} other deliveries meanwhile"
    );

    env.eures.fail_reference(&broken, None);
    let mut fixed = editable(&env.jobag, &broken);
    fixed["title"] = json!("Rettet");
    env.jobag.upsert(fixed);
    env.settled(WAIT).await;
    running.stop().await;
}
