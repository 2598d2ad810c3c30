//! The faults a EURES gateway and the JobAG feed really show, one by one:
//! each case ends with EURES equal to the source and no version regressed.

mod common;

use std::time::Duration;

use common::{Env, editable, eventually};
use eures_sync::sim::eures::Faults;
use eures_sync::sim::jobag::sample_posting;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn no_regression(env: &Env) {
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
}

fn publish(env: &Env, n: u64) {
    for i in 1..=n {
        env.jobag.upsert(sample_posting(i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_in_seconds_pauses_every_request() {
    let env = Env::start().await;
    env.eures.set_faults(Faults {
        force_status: Some(429),
        retry_after_secs: 2,
        ..Faults::none()
    });
    publish(&env, 20);
    let running = env.worker().await;
    eventually(WAIT, "a 429", || {
        env.eures.requests().iter().any(|r| r.status == 429)
    })
    .await;
    let first = env
        .eures
        .requests()
        .iter()
        .find(|r| r.status == 429)
        .map(|r| r.finished)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.eures.set_faults(Faults::none());
    env.converged(WAIT).await;
    // Nothing was sent while Retry-After ran (a little slack for requests already in flight).
    let early = env
        .eures
        .requests()
        .iter()
        .filter(|r| {
            r.started > first + Duration::from_millis(100)
                && r.started < first + Duration::from_millis(1_800)
        })
        .count();
    assert_eq!(early, 0, "requests during Retry-After");
    no_regression(&env);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_http_date_is_honoured() {
    let env = Env::start().await;
    env.eures.set_faults(Faults {
        throttle_ratio: 0.5,
        throttle_http_date: true,
        retry_after_secs: 1,
        ..Faults::none()
    });
    publish(&env, 30);
    let running = env.worker().await;
    env.converged(WAIT).await;
    assert!(env.eures.requests().iter().any(|r| r.status == 429));
    no_regression(&env);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_408_and_hangs_are_retried() {
    let env = Env::start().await;
    env.eures.set_faults(Faults {
        force_status: Some(408),
        ..Faults::none()
    });
    publish(&env, 10);
    let running = env.worker().await;
    eventually(WAIT, "408s", || {
        env.eures
            .requests()
            .iter()
            .filter(|r| r.status == 408)
            .count()
            >= 10
    })
    .await;
    // Now EURES hangs past the 2 s request timeout.
    env.eures.set_faults(Faults {
        hang: true,
        ..Faults::none()
    });
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(env.eures.len(), 0);
    env.eures.set_faults(Faults::none());
    env.converged(WAIT).await;
    let e = running
        .worker
        .store
        .get(sample_posting(1)["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.retry.last_error, None, "success clears the last error");
    no_regression(&env);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_pauses_delivery_and_probes_at_most_once_a_second() {
    let env = Env::start().await;
    env.eures.set_faults(Faults {
        force_status: Some(401),
        ..Faults::none()
    });
    publish(&env, 50);
    let running = env.worker().await;
    eventually(WAIT, "auth failure noticed", || {
        running
            .worker
            .health
            .auth_failing
            .load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    // Let the requests already in flight when the first 401 came back end.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probes = env
        .eures
        .requests()
        .iter()
        .filter(|r| r.started >= from)
        .count();
    assert!(
        probes <= 4,
        "{probes} requests in 3 s while EURES refused the token"
    );
    env.eures.set_faults(Faults::none());
    env.converged(WAIT).await;
    assert!(
        !running
            .worker
            .health
            .auth_failing
            .load(std::sync::atomic::Ordering::SeqCst)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobag_outage_and_repeated_pages_lose_nothing() {
    let env = Env::start().await;
    publish(&env, 20);
    let running = env.worker().await;
    env.converged(WAIT).await;
    env.jobag.set_outage(true);
    // Changes pile up in JobAG while its feed is down.
    for i in 1..=10u64 {
        let id = sample_posting(i)["id"].as_str().unwrap().to_string();
        let mut p = editable(&env.jobag, &id);
        p["title"] = json!(format!("Under nedbrud {i}"));
        env.jobag.upsert(p);
    }
    env.jobag.delete(sample_posting(11)["id"].as_str().unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.jobag.set_outage(false);
    env.converged(WAIT).await;
    // The same changes again (a re-read cursor, a replaying feed).
    for i in 1..=10u64 {
        let id = sample_posting(i)["id"].as_str().unwrap().to_string();
        let current = env.jobag.current(&id).unwrap();
        env.jobag.push_raw(current);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.converged(WAIT).await;
    for i in 1..=10u64 {
        let id = sample_posting(i)["id"].as_str().unwrap().to_string();
        assert_eq!(
            env.eures.history(&id).len(),
            2,
            "{id}: a repeated page caused a delivery"
        );
    }
    no_regression(&env);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_failure_is_transient_and_nothing_is_lost() {
    let env = Env::start().await;
    publish(&env, 5);
    // Point the agent at the simulator with https://: the handshake fails.
    let config = env.config_toml().replace(
        &format!("base_url = \"{}\"", env.eures.base_url()),
        &format!(
            "base_url = \"{}\"",
            env.eures.base_url().replace("http://", "https://")
        ),
    );
    let cfg = eures_sync::config::Config::load_from(
        figment::Figment::new()
            .merge(<figment::providers::Toml as figment::providers::Format>::string(&config)),
    )
    .expect("config");
    let store = eures_sync::store::connect(&cfg.database.url).await.unwrap();
    let worker =
        std::sync::Arc::new(eures_sync::engine::Worker::from_config(&cfg, store.clone()).unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker.clone().run(rx));
    let id = sample_posting(1)["id"].as_str().unwrap().to_string();
    eventually(WAIT, "a failed attempt", || {
        futures::executor::block_on(store.get(&id))
            .ok()
            .flatten()
            .is_some_and(|e| e.retry.attempts >= 1)
    })
    .await;
    let e = store.get(&id).await.unwrap().unwrap();
    assert!(!e.retry.dead, "a TLS failure must not dead-letter");
    assert!(
        e.retry
            .last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("transient"),
        "{:?}",
        e.retry.last_error
    );
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    // The right URL: everything arrives.
    let running = env.worker().await;
    env.converged(WAIT).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_database_gives_a_clear_error_and_no_corruption() {
    let env = Env::start().await;
    publish(&env, 10);
    let running = env.worker().await;
    env.converged(WAIT).await;
    running.stop().await;
    let db = env.dir.path().join("ledger.db");
    // Opened read-only (file permissions do not stop root, the URL does).
    let url = format!("sqlite://{}?mode=ro", db.display());
    let store = eures_sync::store::connect(&url)
        .await
        .expect("read-only open");
    let err = store
        .set_last_poll(1)
        .await
        .expect_err("a write to a read-only ledger fails");
    let msg = err.to_string();
    assert!(
        msg.contains("read") || msg.contains("readonly"),
        "unclear error: {msg}"
    );
    assert_eq!(
        store.summary(0).await.unwrap().present,
        10,
        "the ledger is intact"
    );
    let running = env.worker().await;
    env.jobag.upsert(sample_posting(11));
    env.converged(WAIT).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_items_that_are_no_json_value_are_quarantined_and_the_feed_goes_on() {
    let env = Env::start().await;
    env.jobag.upsert(sample_posting(1));
    // A Latin-1 "é" and a lone continuation byte inside a string.
    let mut not_utf8 = br#"{"id": "bad-utf8-1", "version": 1, "title": "Caf"#.to_vec();
    not_utf8.extend_from_slice(b"\xe9 \x80\"}");
    env.jobag.push_raw_bytes(not_utf8);
    let deep = format!(
        r#"{{"id": "too-deep-1", "version": 1, "title": "Caf", "x": {}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    env.jobag.push_raw_bytes(deep);
    env.jobag.upsert(sample_posting(2));
    let running = env.worker().await;
    env.converged(WAIT).await;
    assert_eq!(env.eures.len(), 2);

    let quarantined = running.worker.store.quarantined(10).await.unwrap();
    let mut records: Vec<(Option<&str>, &str)> = quarantined
        .iter()
        .map(|(id, reason)| (id.as_deref(), reason.as_str()))
        .collect();
    records.sort();
    assert_eq!(
        records,
        [
            (
                Some("bad-utf8-1"),
                "invalid UTF-8 in the feed item (after= index=1)"
            ),
            (
                Some("too-deep-1"),
                "nesting deeper than 128 (after= index=2)"
            ),
        ],
        "the reason names the problem, never the content"
    );
    assert_eq!(
        running.worker.store.cursor().await.unwrap(),
        Some(env.jobag.head_cursor()),
        "the cursor moved past the page"
    );

    // The feed goes on: a later change arrives, and the broken items are
    // not read (or quarantined) again.
    let id = sample_posting(1)["id"].as_str().unwrap().to_string();
    let mut edited = editable(&env.jobag, &id);
    edited["title"] = json!("Efter den ødelagte side");
    env.jobag.upsert(edited);
    env.jobag.upsert(sample_posting(3));
    env.converged(WAIT).await;
    assert_eq!(env.eures.len(), 3);
    assert_eq!(running.worker.store.quarantined(10).await.unwrap().len(), 2);
    no_regression(&env);
    running.stop().await;
}
