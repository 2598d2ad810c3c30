//! Fencing and clocks (SPEC 3.7), at the ledger's own interface: each claim
//! leases a posting under a token of its own, and only that claim's outcome
//! is recorded; on PostgreSQL every lease, retry, expiry and exchange time
//! is the database's, so a worker whose clock is a minute off changes
//! nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use common::{Backend, Env, now_ms};
use eures_sync::domain::eligibility::Desired;
use eures_sync::domain::ledger::{AttemptResult, Delivered, Incoming, Mode, Outcome, RetryLimits};
use eures_sync::store::{AuditOf, Claimed, Completion, Ctx, IngestBatch, Store};

common::on_both_backends!(an_outcome_of_an_older_claim_of_the_same_worker_changes_nothing);

const OWNER: &str = "worker-a";

fn present(id: &str, version: u64, end_ms: i64) -> Incoming {
    Incoming {
        id: id.into(),
        version,
        updated_at_ms: Some(1),
        employer_cvr: Some("12345678".into()),
        desired: Desired::Present {
            content: format!("<doc>{id} v{version}</doc>"),
            hash: format!("hash-{id}-{version}"),
            publication_end: DateTime::from_timestamp_millis(end_ms).expect("valid instant"),
        },
    }
}

async fn ledger(env: &Env) -> Arc<dyn Store> {
    let store = eures_sync::store::connect(&env.db_url())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    store
}

async fn ingest(store: &dyn Store, change: Incoming, ctx: Ctx) {
    store
        .ingest(
            &IngestBatch {
                changes: vec![change],
                ..IngestBatch::default()
            },
            ctx,
        )
        .await
        .expect("ingest");
}

async fn complete(store: &dyn Store, claimed: &Claimed, result: &AttemptResult, label: &str) {
    store
        .complete(
            OWNER,
            Completion {
                claimed,
                result,
                outcome_label: label,
                limits: RetryLimits {
                    max_attempts: 1,
                    verify_after: Duration::from_secs(15),
                },
                backoff: Duration::from_millis(1),
            },
            Ctx {
                now_ms: now_ms(),
                mode: Mode::Push,
            },
        )
        .await
        .expect("complete");
}

async fn an_outcome_of_an_older_claim_of_the_same_worker_changes_nothing(backend: Backend) {
    let env = Env::start_with(backend).await;
    let store = ledger(&env).await;
    let push = Ctx {
        now_ms: now_ms(),
        mode: Mode::Push,
    };
    ingest(&*store, present("p1", 1, now_ms() + 3_600_000), push).await;

    // A claim whose lease runs out with its request still out...
    let first = store
        .claim(OWNER, 10, now_ms(), Duration::from_millis(1))
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    // ...is reaped and claimed again by the same worker (reaping runs at
    // most every 250 ms).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = store
        .claim(OWNER, 10, now_ms(), Duration::from_secs(60))
        .await
        .expect("claim again");
    assert_eq!(second.len(), 1, "the lease ran out: due again");
    assert_ne!(first[0].lease_token, second[0].lease_token);

    // The old request's answer arrives late: a rejection, with
    // max_attempts = 1 it would make a dead letter. It changes nothing.
    complete(
        &*store,
        &first[0],
        &AttemptResult::Eures {
            outcome: Outcome::Rejected {
                errors: "HTTP 422: fields title".into(),
            },
            portal_answered: true,
        },
        "rejected",
    )
    .await;
    let entry = store.get("p1").await.expect("get").expect("known");
    assert!(
        !entry.retry.dead,
        "an older claim's outcome made a dead letter"
    );
    assert!(entry.due().is_some(), "still the current claim's to finish");
    let audit = store
        .audit(AuditOf::Posting("p1"), 0, 100)
        .await
        .expect("audit");
    assert!(
        audit.iter().any(|a| a.outcome == "rejected"),
        "the older claim's outcome is kept in the audit trail: {audit:?}"
    );

    // The current claim's outcome is recorded.
    complete(
        &*store,
        &second[0],
        &AttemptResult::Eures {
            outcome: Outcome::Done,
            portal_answered: true,
        },
        "ok",
    )
    .await;
    let entry = store.get("p1").await.expect("get").expect("known");
    assert!(
        matches!(entry.delivered, Delivered::Present { .. }),
        "{entry:?}"
    );
    assert_eq!(entry.due(), None);
}

/// A worker whose clock is a minute ahead (or behind) of the database's:
/// its leases last what they should, it expires nothing early, and the
/// exchange times it stamps are the database's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_judges_time_by_its_own_clock() {
    let env = Env::start_with(Backend::Postgres).await;
    let store = ledger(&env).await;
    let ahead = |ms: i64| Ctx {
        now_ms: now_ms() + ms,
        mode: Mode::Pull,
    };
    // Ends in 30 s by the database's clock.
    let end = now_ms() + 30_000;
    ingest(&*store, present("p1", 1, end), ahead(60_000)).await;
    let entry = store.get("p1").await.expect("get").expect("known");
    assert!(
        entry.desired.is_present(),
        "a clock a minute ahead judged it expired: {entry:?}"
    );
    assert_eq!(
        store.expire_due(ahead(60_000)).await.expect("expiry pass"),
        0,
        "expired 30 s early by a clock a minute ahead"
    );
    // Exchange times are the database's, not a minute behind.
    let before = now_ms();
    ingest(&*store, present("p2", 1, end), ahead(-60_000)).await;
    let entry = store.get("p2").await.expect("get").expect("known");
    let created = entry.exchange.created_ms.expect("created on the exchange");
    assert!(
        (before - 5_000..=now_ms() + 5_000).contains(&created),
        "created at {created}, {} ms from the database's now",
        created - before
    );

    // A lease taken by a worker a minute ahead lasts its 10 s, not 70 s;
    // one taken by a worker a minute behind is not already over.
    let pool = sqlx::PgPool::connect(&env.db_url()).await.expect("pool");
    ingest(
        &*store,
        present("p3", 1, now_ms() + 3_600_000),
        Ctx {
            now_ms: now_ms(),
            mode: Mode::Push,
        },
    )
    .await;
    let claimed = store
        .claim(OWNER, 10, now_ms() + 60_000, Duration::from_secs(10))
        .await
        .expect("claim");
    assert!(claimed.iter().any(|c| c.id == "p3"));
    let until: i64 = sqlx::query_scalar("SELECT lease_until_ms FROM postings WHERE id = 'p3'")
        .fetch_one(&pool)
        .await
        .expect("lease");
    let left = until - now_ms();
    assert!(
        (5_000..=11_000).contains(&left),
        "the lease ends {left} ms from now, not about 10 s"
    );
    pool.close().await;
}
