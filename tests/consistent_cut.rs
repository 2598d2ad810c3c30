//! A `getChanges` answer is one consistent cut (SPEC 4.3): a portal that
//! reads a long answer slowly and then goes on from the highest
//! `lastModificationTimestamp` it saw misses no change made meanwhile,
//! whatever order the writes commit in.
//!
//! The portal here is a raw socket with a small receive buffer over the
//! agent's real HTTP listener: it reads until the answer has reached its
//! closed section, stops reading (the listener's writes block), lets the
//! ledger change, then reads the rest.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use common::{Backend, Env, editable, eventually_async, now_ms, on_both_backends};
use eures_sync::domain::eligibility::{AbsentReason, Desired};
use eures_sync::domain::ledger::{Incoming, Mode};
use eures_sync::engine::Health;
use eures_sync::http::input_api::{BASE, InputApi};
use eures_sync::http::{AppState, serve};
use eures_sync::store::{Ctx, IngestBatch, Store};
use eures_sync_sims::jobag::sample_posting;
use secrecy::SecretString;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

on_both_backends!(a_slowly_read_answer_misses_nothing_written_meanwhile);

/// SPEC 4.3: after a start, the data calls wait for the source. A ledger
/// that slept through a withdrawal (a stopped agent, a restored backup) must
/// not serve the withdrawn posting as ACTIVE while JobAG cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_start_nothing_is_served_until_the_source_has_been_read() {
    let env = Env::start().await;
    let pull = pull_mode(&env);
    let posting = sample_posting(1);
    let id = posting["id"].as_str().expect("id").to_string();
    env.jobag.upsert(posting);
    let http = reqwest::Client::new();
    let call = |base: String, path: &'static str| input_api(&http, base, path);

    let mut agent = env.agent("first", "info", &pull);
    let base = format!("http://{}", agent.listen());
    eventually_async(Duration::from_secs(30), "the copy is served", || {
        let call = call(base.clone(), "getAll");
        let id = id.clone();
        async move {
            let (status, body) = call.await;
            status == 200 && body.contains(&id)
        }
    })
    .await;
    agent.stop().await;

    // Withdrawn while no agent runs; JobAG then cannot be read.
    let mut withdrawn = editable(&env.jobag, &id);
    withdrawn["eures_consent"] = serde_json::json!(false);
    env.jobag.upsert(withdrawn);
    env.jobag.set_outage(true);

    let mut agent = env.agent("second", "info", &pull);
    let base = format!("http://{}", agent.listen());
    for _ in 0..10 {
        let (ping, _) = call(base.clone(), "ping").await;
        assert_eq!(ping, 200, "ping answers while the agent catches up");
        for path in ["getAll", "getChanges/0"] {
            let (status, body) = call(base.clone(), path).await;
            assert_eq!(status, 503, "{path} before the source was read: {body}");
            assert!(!body.contains(&id), "{path}: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    env.jobag.set_outage(false);
    eventually_async(Duration::from_secs(30), "served once caught up", || {
        let call = call(base.clone(), "getAll");
        async move { call.await.0 == 200 }
    })
    .await;
    let (_, all) = call(base.clone(), "getAll").await;
    assert!(!all.contains(&id), "withdrawn, yet listed ACTIVE: {all}");
    let (_, changes) = call(base.clone(), "getChanges/0").await;
    let changes: Value = serde_json::from_str(&changes).expect("json");
    assert!(
        answer_of(&changes).closed.contains(&id),
        "the withdrawal is reported: {changes}"
    );
    agent.stop().await;
}

/// SPEC 4.3 after a restore: the copy's feed cursor is gone (the feed was
/// compacted since, and with it the deletion), so the feed starts over
/// and asks for a reconcile. Until that completes the ledger has not caught
/// up: a posting deleted after the backup is never served as ACTIVE, even
/// while JobAG's snapshot cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_ledger_behind_a_compacted_feed_serves_nothing_deleted_since() {
    let env = Env::start().await;
    let pull = pull_mode(&env);
    let (deleted, kept) = (sample_posting(1), sample_posting(2));
    let deleted_id = deleted["id"].as_str().expect("id").to_string();
    let kept_id = kept["id"].as_str().expect("id").to_string();
    env.jobag.upsert(deleted);
    env.jobag.upsert(kept);
    let http = reqwest::Client::new();
    let call = |base: String, path: &'static str| input_api(&http, base, path);
    let served = |base: String, present: &'static [bool; 2]| {
        let call = call(base, "getAll");
        let ids = [deleted_id.clone(), kept_id.clone()];
        async move {
            let (status, body) = call.await;
            status == 200
                && ids
                    .iter()
                    .zip(present)
                    .all(|(id, p)| body.contains(id) == *p)
        }
    };

    let mut agent = env.agent("before", "info", &pull);
    let base = format!("http://{}", agent.listen());
    eventually_async(Duration::from_secs(30), "both served", || {
        served(base.clone(), &[true, true])
    })
    .await;
    agent.stop().await;
    let ledger = env.dir.path().join("ledger.db");
    let files = |dir: &std::path::Path| {
        ["", "-wal", "-shm"].map(|suffix| dir.join(format!("ledger.db{suffix}")))
    };
    let backup = env.dir.path().join("backup");
    std::fs::create_dir(&backup).expect("backup dir");
    for (from, to) in files(env.dir.path()).iter().zip(files(&backup)) {
        if from.exists() {
            std::fs::copy(from, to).expect("back up");
        }
    }

    // After the backup: the deletion, served as such.
    let mut agent = env.agent("after", "info", &pull);
    let base = format!("http://{}", agent.listen());
    env.jobag.delete(&deleted_id);
    eventually_async(Duration::from_secs(30), "the deletion served", || {
        served(base.clone(), &[false, true])
    })
    .await;
    agent.stop().await;

    // The ledger is lost and restored; the feed forgot what came before.
    for (live, copy) in files(env.dir.path()).iter().zip(files(&backup)) {
        let _ = std::fs::remove_file(live);
        if copy.exists() {
            std::fs::copy(copy, live).expect("restore");
        }
    }
    assert!(ledger.exists());
    env.jobag.forget_before(env.jobag.log_len());
    env.jobag.set_snapshot_failing(true);
    let mut agent = env.agent("restored", "info", &pull);
    let base = format!("http://{}", agent.listen());
    let mut waited = 0;
    for _ in 0..25 {
        let (status, body) = call(base.clone(), "getAll").await;
        assert!(
            !(status == 200 && body.contains(&deleted_id)),
            "deleted after the backup, yet served ACTIVE: {body}"
        );
        waited += usize::from(status == 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(waited > 0, "the restored agent never waited for the source");

    env.jobag.set_snapshot_failing(false);
    eventually_async(Duration::from_secs(30), "served once reconciled", || {
        served(base.clone(), &[false, true])
    })
    .await;
    let (_, changes) = call(base.clone(), "getChanges/0").await;
    let changes: Value = serde_json::from_str(&changes).expect("json");
    assert!(
        answer_of(&changes).closed.contains(&deleted_id),
        "the deletion is reported: {changes}"
    );
    agent.stop().await;
}

/// The extra configuration of pull mode, with the test's Input API token
/// in a file of `env`'s own.
fn pull_mode(env: &Env) -> String {
    let token = env.dir.path().join("input-api.token");
    common::write_secret(&token, TOKEN);
    format!(
        "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n",
        token.display()
    )
}

/// One Input API call with the test's token: its status and body.
async fn input_api(http: &reqwest::Client, base: String, path: &str) -> (u16, String) {
    let answer = http
        .get(format!("{base}{BASE}/{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("input api");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

const TOKEN: &str = "consistent-cut-test-token-0a9f3c51e2";
/// Tombstones ahead of the changes: an answer of several megabytes, more
/// than the listener's socket buffers hold, so its writes block while the
/// portal does not read.
const TOMBSTONES: usize = 50_000;
const FAR_MS: i64 = 4_102_444_800_000;

fn present(id: &str, version: u64) -> Incoming {
    Incoming {
        id: id.into(),
        version,
        updated_at_ms: Some(1),
        employer_cvr: Some("12345678".into()),
        desired: Desired::Present {
            content: format!("<doc>{id} v{version}</doc>"),
            hash: format!("hash-{id}-{version}"),
            publication_end: DateTime::from_timestamp_millis(FAR_MS).expect("instant"),
        },
    }
}

fn withdrawn(id: &str, version: u64) -> Incoming {
    Incoming {
        id: id.into(),
        version,
        updated_at_ms: Some(1),
        employer_cvr: None,
        desired: Desired::Absent(AbsentReason::NoConsent),
    }
}

async fn apply(store: &dyn Store, changes: Vec<Incoming>) {
    store
        .ingest(
            &IngestBatch {
                changes,
                ..IngestBatch::default()
            },
            Ctx {
                now_ms: now_ms(),
                mode: Mode::Pull,
            },
        )
        .await
        .expect("ingest");
}

/// The references of one answer by section, and its highest timestamp.
#[derive(Debug, Default)]
struct Answer {
    created: BTreeSet<String>,
    closed: BTreeSet<String>,
    highest: i64,
}

fn answer_of(body: &Value) -> Answer {
    let mut a = Answer::default();
    for (section, into) in [
        ("createdReferences", &mut a.created),
        ("modifiedReferences", &mut BTreeSet::new()),
        ("closedReferences", &mut a.closed),
    ] {
        for r in body[section].as_array().expect("section") {
            into.insert(r["reference"].as_str().expect("reference").to_string());
            let ts = r["lastModificationTimestamp"].as_i64().expect("timestamp");
            a.highest = a.highest.max(ts);
        }
    }
    a
}

/// Joins the chunks of a chunked HTTP/1.1 body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(
            std::str::from_utf8(&body[..line_end])
                .expect("ascii")
                .trim(),
            16,
        )
        .expect("chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// A getChanges call whose answer is read up to its closed section only,
/// through a receive buffer of a few kilobytes.
struct SlowReader {
    stream: TcpStream,
    read: Vec<u8>,
}

impl SlowReader {
    async fn open(addr: std::net::SocketAddr, since: i64) -> SlowReader {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("small buffer");
        let mut stream = socket.connect(addr).await.expect("connect");
        let request = format!(
            "GET {BASE}/getChanges/{since} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut reader = SlowReader {
            stream,
            read: Vec::new(),
        };
        let marker = b"\"closedReferences\":[";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !reader.read.windows(marker.len()).any(|w| w == marker) {
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout_at(deadline, reader.stream.read(&mut buf))
                .await
                .expect("the answer reaches its closed section within 30 s")
                .expect("read");
            assert!(n > 0, "the answer ended before its closed section");
            reader.read.extend_from_slice(&buf[..n]);
        }
        reader
    }

    async fn finish(mut self) -> Value {
        tokio::time::timeout(
            Duration::from_secs(60),
            self.stream.read_to_end(&mut self.read),
        )
        .await
        .expect("the rest of the answer within 60 s")
        .expect("read");
        let split = self
            .read
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers");
        let head = String::from_utf8_lossy(&self.read[..split]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let body = &self.read[split + 4..];
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_vec()
        };
        serde_json::from_slice(&body).expect("a complete JSON answer")
    }
}

async fn get_changes(addr: std::net::SocketAddr, since: i64) -> Value {
    reqwest::Client::new()
        .get(format!("http://{addr}{BASE}/getChanges/{since}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("getChanges")
        .json()
        .await
        .expect("json")
}

async fn a_slowly_read_answer_misses_nothing_written_meanwhile(backend: Backend) {
    let env = Env::start_with(backend).await;
    let store = eures_sync::store::connect(&env.db_url())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");

    // The answer's bulk: copies that lived and closed.
    let ids: Vec<String> = (0..TOMBSTONES).map(|i| format!("t{i:06}")).collect();
    for chunk in ids.chunks(2_000) {
        apply(&*store, chunk.iter().map(|id| present(id, 1)).collect()).await;
    }
    for chunk in ids.chunks(2_000) {
        apply(&*store, chunk.iter().map(|id| withdrawn(id, 2)).collect()).await;
    }
    // Live copies, withdrawn while the answer is read.
    apply(
        &*store,
        vec![
            present("live-y", 1),
            present("live-z", 1),
            present("live-w", 1),
        ],
    )
    .await;

    let exchange = eures_sync::store::exchange::connect_exchange(&env.db_url())
        .await
        .expect("exchange view");
    let state = AppState {
        store: store.clone(),
        health: Arc::new(Health::default()),
        input_api: Some(InputApi::new(exchange, &SecretString::from(TOKEN))),
    };
    let (stop, rx) = watch::channel(false);
    let (addr, task) = serve("127.0.0.1:0".parse().expect("addr"), state, rx)
        .await
        .expect("listener");

    let reader = SlowReader::open(addr, 0).await;
    // The listener fills its buffers and waits for the portal.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new copy, then a withdrawal stamped after it.
    apply(&*store, vec![present("new-x", 1)]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    apply(&*store, vec![withdrawn("live-y", 2)]).await;

    // PostgreSQL only: a withdrawal that reads its clock first but commits
    // last (its record is locked by another transaction meanwhile), and a
    // later one that commits at once.
    let held = match &env.pg {
        Some(db) => {
            let pool = db.pool().await;
            let mut lock = pool.begin().await.expect("begin");
            sqlx::query("SELECT id FROM postings WHERE id = 'live-z' FOR UPDATE")
                .execute(&mut *lock)
                .await
                .expect("row lock");
            let late = {
                let store = store.clone();
                tokio::spawn(async move { apply(&*store, vec![withdrawn("live-z", 2)]).await })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !late.is_finished(),
                "the held withdrawal waits for the lock"
            );
            apply(&*store, vec![withdrawn("live-w", 2)]).await;
            Some((lock, late))
        }
        None => None,
    };

    let first = answer_of(&reader.finish().await);
    if let Some((lock, late)) = held {
        lock.commit().await.expect("release");
        tokio::time::timeout(Duration::from_secs(30), late)
            .await
            .expect("the held withdrawal commits")
            .expect("task");
    }
    // The portal goes on from the highest timestamp it saw.
    let second = answer_of(&get_changes(addr, first.highest).await);
    let created: BTreeSet<&String> = first.created.iter().chain(&second.created).collect();
    let closed: BTreeSet<&String> = first.closed.iter().chain(&second.closed).collect();
    assert!(
        created.contains(&"new-x".to_string()),
        "the copy created while the answer was read is never reported \
         (first answer up to {}, the second from there: {:?})",
        first.highest,
        second
    );
    assert!(
        closed.contains(&"live-y".to_string()),
        "withdrawal not reported"
    );
    if env.pg.is_some() {
        for id in ["live-z", "live-w"] {
            assert!(
                closed.contains(&id.to_string()),
                "the withdrawal of {id} is never reported: the copy stays public \
                 (second answer: {second:?})"
            );
        }
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
