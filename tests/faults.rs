//! The faults a EURES gateway and the JobAG feed really show, one by one:
//! each case ends with EURES equal to the source and no version regressed.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use common::{Env, editable, eventually, eventually_async, now_ms, publish};
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::sample_posting;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A 429 with `Retry-After` pauses every request, not only the throttled
/// posting's: work that becomes due during the pause waits for its end.
/// One posting is throttled, so no other request can be in flight when the
/// pause begins; the window checked is the agent's own pause, read from
/// its health state, less a margin for the two clocks' granularity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_in_seconds_pauses_every_request() {
    let env = Env::start().await;
    env.eures.set_faults(Faults {
        force_status: Some(429),
        retry_after_secs: 5,
        ..Faults::none()
    });
    publish(&env.jobag, 1);
    let running = env.worker().await;
    let paused_until = || {
        running
            .worker
            .health
            .throttled_until_ms
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    eventually(WAIT, "the pause a 429 asks for", || {
        paused_until() > now_ms()
    })
    .await;
    let paused_at = std::time::Instant::now();
    let pause_end = paused_at + Duration::from_millis((paused_until() - now_ms()).max(0) as u64);
    env.eures.set_faults(Faults::none());
    // New work during the pause.
    for i in 2..=11 {
        env.jobag.upsert(sample_posting(i));
    }
    eventually(WAIT, "the new postings ingested", || {
        futures::executor::block_on(running.worker.store.cursor())
            .ok()
            .flatten()
            == Some(env.jobag.head_cursor())
    })
    .await;
    let ingested = std::time::Instant::now();
    assert!(
        ingested + Duration::from_secs(1) < pause_end,
        "the new postings were ingested {:?} after the pause began: too late to test it",
        ingested - paused_at
    );
    env.converged(WAIT).await;
    let margin = Duration::from_millis(200);
    let early: Vec<_> = env
        .eures
        .requests()
        .into_iter()
        .filter(|r| r.started > paused_at && r.started + margin < pause_end)
        .map(|r| (r.method, r.reference, r.started - paused_at))
        .collect();
    assert!(
        early.is_empty(),
        "requests during the {:?} of Retry-After: {early:?}",
        pause_end - paused_at
    );
    env.settled(WAIT).await;
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
    publish(&env.jobag, 30);
    let running = env.worker().await;
    env.converged(WAIT).await;
    assert!(env.eures.requests().iter().any(|r| r.status == 429));
    env.settled(WAIT).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_408_and_hangs_are_retried() {
    let env = Env::start().await;
    env.eures.set_faults(Faults {
        force_status: Some(408),
        ..Faults::none()
    });
    publish(&env.jobag, 10);
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
    let hung = std::time::Instant::now();
    env.eures.set_faults(Faults {
        hang: true,
        ..Faults::none()
    });
    eventually(WAIT, "a held request given up by the agent", || {
        env.eures
            .requests()
            .iter()
            .any(|r| r.started >= hung && r.status == 0)
    })
    .await;
    assert_eq!(env.eures.len(), 0);
    env.eures.set_faults(Faults::none());
    env.converged(WAIT).await;
    // EURES may converge through requests held during the hang and applied
    // when it ended, after the agent had given up on them: the agent learns
    // of success only from its own retry, which then clears the error.
    let id = sample_posting(1)["id"].as_str().unwrap().to_string();
    eventually_async(WAIT, "success to clear the last error", || async {
        let e = running.worker.store.get(&id).await.unwrap().unwrap();
        e.retry.last_error.is_none()
    })
    .await;
    env.settled(WAIT).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_pauses_delivery_and_probes_at_most_once_a_second() {
    let env = Env::start().await;
    env.eures.set_faults(Faults {
        force_status: Some(401),
        ..Faults::none()
    });
    publish(&env.jobag, 50);
    let running = env.worker().await;
    eventually(WAIT, "auth failure noticed", || {
        running
            .worker
            .health
            .auth_failing
            .load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    // Let the requests already claimed when the first 401 came back end:
    // the window starts once at most one request has started in the last
    // second (a worker that kept sending would never get there).
    eventually(
        WAIT,
        "the requests claimed before the pause answered",
        || {
            let second_ago = std::time::Instant::now() - Duration::from_secs(1);
            env.eures.in_flight() == 0
                && env
                    .eures
                    .requests()
                    .iter()
                    .filter(|r| r.started >= second_ago)
                    .count()
                    <= 1
        },
    )
    .await;
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
    env.settled(WAIT).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobag_outage_and_repeated_pages_lose_nothing() {
    let env = Env::start().await;
    publish(&env.jobag, 20);
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
    eventually(WAIT, "the repeated changes read", || {
        futures::executor::block_on(running.worker.store.cursor())
            .ok()
            .flatten()
            == Some(env.jobag.head_cursor())
    })
    .await;
    env.converged(WAIT).await;
    for i in 1..=10u64 {
        let id = sample_posting(i)["id"].as_str().unwrap().to_string();
        assert_eq!(
            env.eures.history(&id).len(),
            2,
            "{id}: a repeated page caused a delivery"
        );
    }
    env.settled(WAIT).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_failure_is_transient_and_nothing_is_lost() {
    let env = Env::start().await;
    publish(&env.jobag, 5);
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
    env.settled(WAIT).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_database_gives_a_clear_error_and_no_corruption() {
    let env = Env::start().await;
    publish(&env.jobag, 10);
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
    env.settled(WAIT).await;
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
    env.settled(WAIT).await;
    running.stop().await;
}

/// A change damaged in the feed for a posting that names its id: the state
/// is learnt from JobAG instead, so a withdrawal hidden in a damaged change
/// still removes the copy, and a new posting whose only change is damaged
/// still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_change_is_learnt_from_jobag_instead() {
    let env = Env::start().await;
    env.jobag.upsert(sample_posting(1));
    env.jobag.upsert(sample_posting(2));
    let running = env.worker().await;
    env.converged(WAIT).await;
    assert_eq!(env.eures.len(), 2);

    let withdrawn_id = sample_posting(1)["id"].as_str().unwrap().to_string();
    let mut withdrawn = editable(&env.jobag, &withdrawn_id);
    withdrawn["eures_consent"] = json!(false);
    env.jobag.upsert_damaged(withdrawn);
    env.jobag.upsert_damaged(sample_posting(3));
    env.converged(WAIT).await;
    assert!(
        env.eures.get(&withdrawn_id).is_none(),
        "the withdrawal was lost"
    );
    assert!(
        env.eures
            .get(sample_posting(3)["id"].as_str().unwrap())
            .is_some()
    );
    let quarantined = running.worker.store.quarantined(10).await.unwrap();
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    assert!(
        quarantined
            .iter()
            .all(|(_, why)| why.starts_with("invalid UTF-8 in the feed item")),
        "{quarantined:?}"
    );
    env.settled(WAIT).await;
    running.stop().await;
}

/// A tmpfs mounted for one test, unmounted when dropped, also when the test
/// panics (lazily if the ledger's files are still open then).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`) on `dir`; the reason
    /// when that is refused (not root, no mount(8)). Its root is the
    /// owner's only: the store refuses a ledger folder others may enter,
    /// and a tmpfs root is world-writable unless told otherwise.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            dir: dir.to_owned(),
        })
    }

    /// Writes a filler file until the file system refuses more; returns
    /// the bytes written.
    fn fill(&self, name: &str) -> usize {
        let mut file = std::fs::File::create(self.dir.join(name)).expect("filler file");
        let chunk = vec![0x5a_u8; 64 * 1024];
        let mut written = 0;
        // Bounded: 64 GiB, far beyond any tmpfs a test mounts.
        for _ in 0..1_000_000 {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", self.dir.display()),
            }
        }
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
    }
}

/// A connection of the test's own to a SQLite ledger.
async fn sqlite_conn(url: &str) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .expect("sqlite url")
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("sqlite connection")
}

/// `PRAGMA integrity_check`, its rows joined (`ok` when intact).
async fn integrity_check(url: &str) -> String {
    let mut conn = sqlite_conn(url).await;
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("integrity_check runs");
    rows.into_iter()
        .map(|(r,)| r)
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_full_gives_a_clear_error_loses_nothing_and_recovers() {
    let env = Env::start().await;
    let fs = match Tmpfs::mount(&env.dir.path().join("ledger-fs"), "16m") {
        Ok(fs) => fs,
        Err(why) => {
            common::skip_or_fail(
                "database_full_gives_a_clear_error_loses_nothing_and_recovers",
                &format!("cannot mount a tmpfs for the ledger ({why}); it needs root"),
            );
            return;
        }
    };
    let url = format!("sqlite://{}?mode=rwc", fs.dir.join("ledger.db").display());
    let toml = env.config_toml().replace(&env.db_url(), &url);
    let config = eures_sync::config::Config::load_from(
        figment::Figment::new()
            .merge(<figment::providers::Toml as figment::providers::Format>::string(&toml)),
    )
    .expect("config");
    publish(&env.jobag, 10);
    let running = env.worker_with(config).await;
    env.converged(WAIT).await;

    // Deliveries in flight when the space runs out: EURES applies them, but
    // their outcomes cannot be written.
    env.eures.set_faults(Faults {
        latency: Duration::from_millis(1_500),
        ..Faults::none()
    });
    for i in 11..=20 {
        env.jobag.upsert(sample_posting(i));
    }
    eventually(WAIT, "the new postings ingested", || {
        futures::executor::block_on(running.worker.store.cursor())
            .ok()
            .flatten()
            == Some(env.jobag.head_cursor())
    })
    .await;
    // The worker claims them and EURES holds each for 1.5 s.
    eventually(WAIT, "the ten creates in flight", || {
        env.eures.in_flight() == 10
    })
    .await;

    // Empty the write-ahead log (it would otherwise take new frames in
    // space it already holds), then take every free block.
    let mut conn = sqlite_conn(&url).await;
    for attempt in 0.. {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut conn)
            .await
            .expect("checkpoint");
        if busy == 0 {
            break;
        }
        assert!(attempt < 100, "the WAL could not be checkpointed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(conn);
    assert!(fs.fill("filler") > 0);
    let cursor_when_full = running.worker.store.cursor().await.unwrap();

    // Changes while the disk is full: new postings, an edit, a deletion.
    for i in 21..=30 {
        env.jobag.upsert(sample_posting(i));
    }
    let edited_id = sample_posting(1)["id"].as_str().unwrap().to_string();
    let mut edited = editable(&env.jobag, &edited_id);
    edited["title"] = json!("Skrevet mens disken var fuld");
    env.jobag.upsert(edited);
    env.jobag.delete(sample_posting(2)["id"].as_str().unwrap());

    // The worker's own feed poll fails with one clear line.
    let err = running
        .worker
        .poll_once()
        .await
        .expect_err("a feed poll cannot be recorded on a full disk");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("database or disk is full"),
        "unclear error: {msg}"
    );
    assert!(!msg.contains('\n'), "not one line: {msg}");
    // EURES applies the in-flight creates; their outcomes cannot be written.
    eventually(WAIT, "the in-flight creates applied", || {
        env.eures.len() == 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary = running.worker.store.summary(0).await.unwrap();
    assert_eq!(
        summary.backlog_create, 10,
        "the outcomes were lost, the operations kept: {summary:?}"
    );
    assert_eq!(
        running.worker.store.cursor().await.unwrap(),
        cursor_when_full,
        "the cursor moved without its page"
    );
    assert_eq!(integrity_check(&url).await, "ok", "the ledger while full");

    // Space again: the worker carries on by itself and nothing is lost.
    std::fs::remove_file(fs.dir.join("filler")).expect("remove filler");
    env.eures.set_faults(Faults::none());
    env.converged(WAIT).await;
    assert!(
        env.eures
            .get(sample_posting(2)["id"].as_str().unwrap())
            .is_none()
    );
    assert_eq!(
        running.worker.store.cursor().await.unwrap(),
        Some(env.jobag.head_cursor())
    );
    // The lost outcomes' leases run out and the creates are sent again
    // (EURES operations are idempotent): the ledger settles.
    eventually_async(WAIT, "the ledger settled", || async {
        let s = running.worker.store.summary(0).await.unwrap();
        (s.present, s.pending, s.absent) == (29, 0, 1)
    })
    .await;
    env.settled_on(&url, WAIT).await;
    running.stop().await;
    assert_eq!(
        integrity_check(&url).await,
        "ok",
        "the ledger after recovery"
    );
    drop(fs);
}

/// `eures_sync_feed_poll_failures_total` as the agent's `/metrics` shows it.
async fn feed_poll_failures(metrics: &str) -> f64 {
    let text = reqwest::get(metrics)
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with("eures_sync_feed_poll_failures_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The peak resident set of a process so far, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// The ledger's files (database and write-ahead log), in bytes.
fn ledger_bytes(dir: &Path) -> u64 {
    ["ledger.db", "ledger.db-wal", "ledger.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// A page of one change whose single item is `bytes` long.
fn page_with_item_of(bytes: usize, cursor: &str) -> Vec<u8> {
    let head = r#"{"id": "big-1", "version": 1, "deleted": true, "pad": ""#;
    let pad = "x".repeat(bytes - head.len() - 2);
    format!(r#"{{"changes": [{head}{pad}"}}], "next_cursor": "{cursor}", "has_more": false}}"#)
        .into_bytes()
}

/// A page of `items` deletions, each padded to about 1,000,000 bytes with
/// nested arrays: as one tree of values it would cost some 70 times its
/// size.
fn page_of_nested_arrays(items: usize, cursor: &str) -> Vec<u8> {
    let unit = "[[[[[[[[]]]]]]]],";
    let pad = unit.repeat(1_000_000 / unit.len());
    let mut body = b"{\"changes\": [".to_vec();
    for i in 0..items {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(
            format!(r#"{{"id": "nest-{i}", "version": 1, "deleted": true, "pad": [{pad}[]]}}"#)
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(r#"], "next_cursor": "{cursor}", "has_more": false}}"#).as_bytes(),
    );
    body
}

/// SPEC 4.1, what a feed (or a compromised JobAG) may not make the agent
/// do, against the real binary: each lie is told for three seconds while a
/// true change waits behind it. Nothing of a refused page is applied (the
/// cursor stays, the waiting change does not arrive, none of the lie's
/// items reaches the ledger), the poll backs off (a bounded number of
/// requests, one log line per failure) and counts each failure, and the
/// change arrives once the feed is sane again. Then a page of 63 items of
/// nested arrays (63 MB) is read with a peak RSS that stays a small
/// multiple of its size, and the ledger stays small throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_feed_applies_nothing_backs_off_and_is_survived() {
    use eures_sync_sims::jobag::FeedLie;
    const LIE_FOR: Duration = Duration::from_secs(3);
    let env = Env::start().await;
    publish(&env.jobag, 3);
    let mut agent = env.agent("lies", "info", "[jobag]\npage_size = 100\n");
    let metrics = format!("http://{}/metrics", agent.listen());
    env.converged(WAIT).await;
    let store = eures_sync::store::open_existing(&env.db_url())
        .await
        .expect("ledger");
    let lies = [
        ("a 2,000-byte cursor", FeedLie::LongCursor(2000)),
        ("101 items for a limit of 100", FeedLie::ExtraItems(1)),
        (
            "a 2 MiB item",
            FeedLie::Body(page_with_item_of(2 << 20, "c0").into()),
        ),
        ("an empty page with has_more", FeedLie::EmptyWithMore),
        ("410 to every read", FeedLie::Gone),
    ];
    for (k, (what, lie)) in lies.into_iter().enumerate() {
        let gone = matches!(lie, FeedLie::Gone);
        env.jobag.set_feed_lie(Some(lie));
        // A poll sent before the lie began ends first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cursor = store.cursor().await.unwrap();
        let failures = feed_poll_failures(&metrics).await;
        let lines = agent.log_text().lines().count();
        let requests = env.jobag.counters().changes;
        // Starting over after a 410 reconciles against the (true)
        // snapshot, which may bring a waiting change in: none waits then.
        let waiting = (!gone).then(|| {
            let p = sample_posting(10 + k as u64);
            env.jobag.upsert(p.clone());
            p["id"].as_str().unwrap().to_string()
        });
        tokio::time::sleep(LIE_FOR).await;
        let failed = feed_poll_failures(&metrics).await - failures;
        let asked = env.jobag.counters().changes - requests;
        let logged = agent.log_text().lines().count() - lines;
        env.jobag.set_feed_lie(None);
        agent.assert_alive();
        assert!(failed >= 1.0, "{what}: no poll failure counted");
        // Polls 50 ms apart, each wait 50 ms longer: at most ~10 in 3 s.
        assert!(asked <= 15, "{what}: {asked} feed requests in {LIE_FOR:?}");
        assert!(
            logged as f64 <= 2.0 * failed + 6.0,
            "{what}: {logged} log lines for {failed} failures"
        );
        assert_eq!(
            store.cursor().await.unwrap(),
            cursor,
            "{what}: the cursor moved"
        );
        for id in waiting
            .iter()
            .map(String::as_str)
            .chain(["big-1", "lie-0", "lie-100"])
        {
            assert!(
                store.get(id).await.unwrap().is_none(),
                "{what}: {id} was applied"
            );
        }
        eprintln!("{what}: {failed} failures, {asked} requests, {logged} log lines");
        // Sane again: what waited arrives.
        env.converged(WAIT).await;
    }

    let pid = agent.pid();
    let rss_before = peak_rss_kib(pid);
    let page = page_of_nested_arrays(63, &env.jobag.head_cursor());
    let page_kib = page.len() as u64 / 1024;
    let requests = env.jobag.counters().changes;
    env.jobag.set_feed_lie(Some(FeedLie::Body(page.into())));
    eventually(WAIT, "the page of nested arrays asked for", || {
        env.jobag.counters().changes > requests
    })
    .await;
    env.jobag.set_feed_lie(None);
    eventually_async(WAIT, "its items quarantined", || async {
        store
            .quarantined(200)
            .await
            .unwrap()
            .iter()
            .filter_map(|(id, _)| id.as_deref().filter(|id| id.starts_with("nest-")))
            .collect::<std::collections::HashSet<_>>()
            .len()
            == 63
    })
    .await;
    let rss_after = peak_rss_kib(pid);
    eprintln!(
        "page of nested arrays: {page_kib} KiB; peak RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        rss_after <= rss_before.max(64 * 1024) + 3 * page_kib,
        "peak RSS {rss_after} KiB after a page of {page_kib} KiB (before: {rss_before} KiB)"
    );
    let (_, reason) = store
        .quarantined(200)
        .await
        .unwrap()
        .into_iter()
        .find(|(id, _)| id.as_deref() == Some("nest-0"))
        .unwrap();
    assert!(
        reason.starts_with("more than 4096 arrays and objects"),
        "{reason}"
    );

    let ledger = ledger_bytes(env.dir.path());
    eprintln!(
        "ledger {ledger} bytes; log {} bytes",
        agent.log_text().len()
    );
    assert!(ledger < 16 << 20, "ledger of {ledger} bytes");
    env.jobag.upsert(sample_posting(40));
    env.converged(WAIT).await;
    agent.stop().await;
}
