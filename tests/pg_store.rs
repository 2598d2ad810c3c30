//! The PostgreSQL store's rules for several processes, on the `Store` API
//! with one pool per simulated process: claims never lease a posting twice,
//! an outcome whose lease was lost only reaches the audit trail, a lease
//! that ran out is reaped as an abandoned attempt, concurrent ingests of a
//! new posting both land, leadership is exclusive and moves when it lapses,
//! and a commit that made work due wakes the listeners.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{PgDb, now_ms};
use eures_sync::domain::ledger::{
    AttemptResult, Delivered, Incoming, Mode, Op, Outcome, RetryLimits,
};
use eures_sync::domain::render::DocumentSettings;
use eures_sync::engine::feed::evaluate_page;
use eures_sync::store::{Completion, Ctx, IngestBatch, Store};
use eures_sync_sims::jobag::{sample_id, sample_posting};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

const LEASE: Duration = Duration::from_secs(30);

fn ctx() -> Ctx {
    Ctx {
        now_ms: now_ms(),
        mode: Mode::Push,
    }
}

fn change(i: u64, version: u64, patch: Value) -> Incoming {
    let mut p = sample_posting(i);
    p["version"] = json!(version);
    p["updated_at"] = json!("2026-11-20T10:00:00Z");
    for (k, v) in patch.as_object().expect("object") {
        p[k] = v.clone();
    }
    let (mut changes, quarantined) = evaluate_page(
        &[p],
        "test",
        0,
        chrono::Utc::now(),
        &DocumentSettings::default(),
    );
    assert!(quarantined.is_empty());
    changes.pop().expect("one change")
}

async fn ingest(store: &Arc<dyn Store>, changes: Vec<Incoming>) {
    store
        .ingest(
            &IngestBatch {
                changes,
                ..IngestBatch::default()
            },
            ctx(),
        )
        .await
        .expect("ingest");
}

/// A fresh database and `n` stores on it, migrated.
async fn stores(n: usize) -> (PgDb, Vec<Arc<dyn Store>>) {
    let db = PgDb::create().await;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            eures_sync::store::connect(&db.url())
                .await
                .expect("connect"),
        );
    }
    out[0].migrate().await.expect("migrate");
    (db, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_never_lease_a_posting_twice() {
    let (_db, stores) = stores(3).await;
    ingest(
        &stores[0],
        (1..=600).map(|i| change(i, 1, json!({}))).collect(),
    )
    .await;
    let mut tasks = Vec::new();
    for (w, store) in stores.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim(&format!("w{w}"), 7, now_ms(), LEASE)
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    break mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut per_worker = Vec::new();
    for t in tasks {
        let mine = t.await.expect("task");
        per_worker.push(mine.len());
        for id in mine {
            assert!(seen.insert(id.clone()), "{id} leased twice");
        }
    }
    assert_eq!(seen.len(), 600, "every due posting leased once");
    assert!(per_worker.iter().all(|n| *n > 0), "{per_worker:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_leaves_the_record_to_its_new_holder() {
    let (db, stores) = stores(2).await;
    let (a, b) = (&stores[0], &stores[1]);
    ingest(a, vec![change(1, 1, json!({}))]).await;
    // a leases for 1 ms and stalls; b reaps the lease and takes the operation.
    let stale = a
        .claim("a", 1, now_ms(), Duration::from_millis(1))
        .await
        .expect("claim")
        .pop()
        .expect("claimed");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let fresh = b
        .claim("b", 1, now_ms(), LEASE)
        .await
        .expect("claim")
        .pop()
        .expect("reclaimed");
    assert_eq!(fresh.id, stale.id);
    let reaped = b.get(&stale.id).await.expect("get").expect("known");
    assert_eq!(
        reaped.delivered,
        Delivered::Unknown,
        "the stalled attempt is abandoned"
    );

    let done = |claimed| Completion {
        claimed,
        result: &AttemptResult::Eures {
            outcome: Outcome::Done,
            portal_answered: true,
        },
        outcome_label: "ok",
        limits: RetryLimits {
            max_attempts: 5,
            verify_after: Duration::from_secs(7),
        },
        backoff: Duration::ZERO,
    };
    a.complete("a", done(&stale), ctx())
        .await
        .expect("complete");
    let after = b.get(&stale.id).await.expect("get").expect("known");
    assert_eq!(after, reaped, "a's late outcome changed b's record");
    b.complete("b", done(&fresh), ctx())
        .await
        .expect("complete");
    let after = b.get(&stale.id).await.expect("get").expect("known");
    assert_eq!(after.due(), None);
    assert!(matches!(after.delivered, Delivered::Present { .. }));

    let pool = db.pool().await;
    let workers: Vec<(String, String)> =
        sqlx::query_as("SELECT worker, outcome FROM audit WHERE posting_id = $1 ORDER BY seq")
            .bind(&stale.id)
            .fetch_all(&pool)
            .await
            .expect("audit");
    assert_eq!(
        workers,
        vec![("a".into(), "ok".into()), ("b".into(), "ok".into())],
        "both attempts are in the audit trail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_of_a_new_posting_both_land() {
    let (_db, stores) = stores(2).await;
    for round in 0..20u64 {
        let i = 100 + round;
        let (a, b) = (stores[0].clone(), stores[1].clone());
        let first = tokio::spawn(async move { ingest(&a, vec![change(i, 1, json!({}))]).await });
        let second = tokio::spawn(async move {
            ingest(&b, vec![change(i, 2, json!({"title": "Version two"}))]).await
        });
        first.await.expect("first");
        second.await.expect("second");
        let e = stores[0]
            .get(&sample_id(i))
            .await
            .expect("get")
            .expect("known");
        assert_eq!(e.source_version, 2, "the newer version wins in any order");
        assert_eq!(e.due(), Some(Op::Create));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_is_exclusive_and_moves_when_it_lapses() {
    let (_db, stores) = stores(2).await;
    let (a, b) = (&stores[0], &stores[1]);
    // Long enough that no stall of a loaded machine lets it lapse here.
    let held = Duration::from_secs(60);
    assert!(a.lead("a", held).await.expect("lead"));
    assert!(!b.lead("b", held).await.expect("lead"));
    assert!(a.lead("a", held).await.expect("renew"));
    assert!(!b.lead("b", held).await.expect("lead"));
    // A short renewal: b takes over once it lapses, and not before.
    let short = Duration::from_millis(200);
    let renewed = std::time::Instant::now();
    assert!(a.lead("a", short).await.expect("renew"));
    let mut tries = 0;
    while !b.lead("b", held).await.expect("lead") {
        tries += 1;
        assert!(tries < 1_000, "a's lapsed leadership never moved");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        renewed.elapsed() >= short,
        "b took over {:?} into a's {short:?}",
        renewed.elapsed()
    );
    assert!(!a.lead("a", held).await.expect("lead"));
    // Resigning hands it over at once.
    assert!(b.lead("b", Duration::ZERO).await.expect("resign"));
    let mut tries = 0;
    while !a.lead("a", held).await.expect("lead") {
        tries += 1;
        assert!(tries < 100, "b resigned, yet a cannot lead");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_made_work_due_wakes_the_listeners() {
    let (_db, stores) = stores(2).await;
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop) = watch::channel(false);
    stores[1].watch_wakeups(wake.clone(), stop);
    // The listener wakes once when it starts listening.
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect("listening");

    // Nothing due: an ineligible posting never wanted on EURES.
    ingest(
        &stores[0],
        vec![change(1, 1, json!({"eures_consent": false}))],
    )
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), wake.notified())
            .await
            .is_err(),
        "woken although nothing became due"
    );
    ingest(&stores[0], vec![change(2, 1, json!({}))]).await;
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .expect("woken by the commit");
    let _ = stop_tx.send(true);
}

/// Pull mode's getChanges must not miss a change being committed while it
/// reads: the exchange barrier waits for every write transaction under way
/// (each holds the table's ROW EXCLUSIVE lock from its start, before it
/// reads its clock) and for nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_barrier_waits_for_writes_under_way() {
    use sqlx::Connection;
    let (db, _stores) = stores(1).await;
    let exchange = eures_sync::store::exchange::connect_exchange(&db.url())
        .await
        .expect("exchange view");
    // Nothing under way: the barrier passes at once.
    tokio::time::timeout(Duration::from_secs(5), exchange.barrier())
        .await
        .expect("an idle barrier returns")
        .expect("barrier");
    let mut writer = sqlx::PgConnection::connect(&db.url())
        .await
        .expect("writer connection");
    sqlx::raw_sql("BEGIN; LOCK TABLE postings IN ROW EXCLUSIVE MODE")
        .execute(&mut writer)
        .await
        .expect("a write under way");
    let waiting = tokio::spawn(async move { exchange.barrier().await });
    // The barrier queues behind the write: its lock request shows, not
    // granted, in pg_locks (or the barrier already passed, wrongly).
    let mut tries = 0;
    loop {
        let queued: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE NOT granted \
             AND relation = 'postings'::regclass \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&mut writer)
        .await
        .expect("pg_locks");
        if queued > 0 || waiting.is_finished() {
            break;
        }
        tries += 1;
        assert!(tries < 1_000, "the barrier neither queued nor passed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !waiting.is_finished(),
        "the barrier passed a write under way"
    );
    sqlx::raw_sql("COMMIT")
        .execute(&mut writer)
        .await
        .expect("commit");
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the barrier returns once the write committed")
        .expect("task")
        .expect("barrier");
}
