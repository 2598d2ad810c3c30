//! The HTTP listener's limits (SPEC 4.5), over real sockets: clients that
//! send nothing, drip header lines or idle on a keep-alive connection are
//! cut off on time while `/healthz` keeps answering and the descriptors come
//! back; open connections are capped; bodies larger than a route needs are
//! refused with 413 before they are read; refused Input API requests are
//! counted, not logged; `/metrics` computes its ledger summary at most once
//! a second; `/readyz` and `/metrics` carry no error text; and
//! `http.input_api_listen` serves the Input API apart from `/metrics`.
//!
//! The timeouts are shortened through [`Limits`] so nothing waits 60 s.
//! Tests that count descriptors or metric deltas take [`SERIAL`] so the
//! others in this binary do not disturb their counts.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Env, PgDb, eventually};
use eures_sync::engine::Health;
use eures_sync::http::input_api::{BASE, InputApi, MAX_DETAILS, MAX_DETAILS_BODY};
use eures_sync::http::{
    AppState, Limits, READINESS_MAX_AGE, SummaryCache, ops_router, router, serve_router,
};
use eures_sync::store::Store;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, watch};

const TOKEN: &str = "listener-test-token-0123456789abcdef";

static SERIAL: Mutex<()> = Mutex::const_new(());

fn short() -> Limits {
    Limits {
        head_timeout: Duration::from_millis(1000),
        idle_timeout: Duration::from_millis(2500),
        request_timeout: Duration::from_secs(5),
        max_connections: 512,
    }
}

/// A migrated SQLite ledger in `env`'s directory.
async fn ledger(env: &Env) -> Arc<dyn Store> {
    let store = eures_sync::store::connect(&env.db_url())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    store
}

async fn app_state(env: &Env, store: Arc<dyn Store>) -> AppState {
    let exchange = eures_sync::store::exchange::connect_exchange(&env.db_url())
        .await
        .expect("exchange view");
    AppState {
        store,
        health: Arc::new(Health::default()),
        input_api: Some(InputApi::new(exchange, &SecretString::from(TOKEN))),
    }
}

/// A running listener; stops when dropped.
struct Served {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    async fn start(app: axum::Router, limits: Limits) -> Served {
        let _ = eures_sync::telemetry::metrics_handle();
        let (stop, rx) = watch::channel(false);
        let (addr, task) = serve_router(
            "http.listen",
            "127.0.0.1:0".parse().unwrap(),
            app,
            limits,
            rx,
        )
        .await
        .expect("listen");
        Served {
            addr,
            stop,
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the listener stops within 10 s")
                .expect("listener task");
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One request on a connection of its own; the status line's code and the
/// body. `None` when no answer came within 5 s.
async fn request(addr: SocketAddr, raw: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        tcp.write_all(raw.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.get(9..12)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

fn get(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra_headers}\r\n")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Sockets this process accepted on `port` and still holds open (server
/// side, not the listening one; connections still in the kernel's accept
/// queue have no inode yet).
fn accepted_on(port: u16) -> usize {
    // By inode: /proc/net/tcp is read in several chunks and is not a
    // snapshot, so a socket can be listed twice while connections come and
    // go between two reads.
    let mut held = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // Held open by the server: ESTABLISHED (01) or CLOSE_WAIT (08,
            // the client closed, the server not yet). A socket the server
            // has closed leaves both states at once, even while the kernel
            // still lists it (FIN_WAIT, with its inode for a moment); one
            // still in the accept queue has no inode yet.
            let open = matches!(f.get(3).copied(), Some("01" | "08"));
            let inode = f.get(9).copied().unwrap_or("0");
            if local_port == Some(port) && open && inode != "0" {
                held.insert(inode.to_owned());
            }
        }
    }
    held.len()
}

/// The value of one sample of the process' metrics (0 when absent).
fn metric(name_and_labels: &str) -> f64 {
    let text = eures_sync::telemetry::metrics_handle().render();
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// How a test client's connection ended.
#[derive(Debug, Clone, Copy)]
struct Ended {
    /// From when its clock started (connect, or the end of its answer) to
    /// when the server closed it.
    after: Duration,
    /// Bytes it managed to send meanwhile.
    sent: usize,
}

/// A client that connects and sends nothing.
async fn silent(addr: SocketAddr) -> Option<Ended> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    let since = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    matches!(n, Ok(Ok(0)) | Ok(Err(_))).then(|| Ended {
        after: since.elapsed(),
        sent: 0,
    })
}

/// A client that drips a header line a byte at a time, never finishing.
async fn dripping(addr: SocketAddr) -> Option<Ended> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let tcp = TcpStream::connect(addr).await.ok()?;
    let since = Instant::now();
    let (mut rd, mut wr) = tcp.into_split();
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    let drip = tokio::spawn(async move {
        let line = b"GET /healthz HTTP/1.1\r\n";
        if wr.write_all(line).await.is_err() {
            return;
        }
        counted.fetch_add(line.len(), Ordering::SeqCst);
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b"X").await.is_err() {
                break;
            }
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await;
    let after = since.elapsed();
    drip.abort();
    let sent = sent.load(Ordering::SeqCst);
    matches!(n, Ok(Ok(0)) | Ok(Err(_))).then_some(Ended { after, sent })
}

/// A client that makes one keep-alive request, reads the answer, then idles.
async fn keep_alive(addr: SocketAddr) -> Option<Ended> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let since = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    matches!(n, Ok(Ok(0)) | Ok(Err(_))).then(|| Ended {
        after: since.elapsed(),
        sent: 0,
    })
}

fn within(ended: &[Option<Ended>], what: &str, from: Duration, to: Duration) {
    for (i, e) in ended.iter().enumerate() {
        let e = e.unwrap_or_else(|| panic!("{what} {i}: not closed by the server"));
        assert!(
            e.after >= from && e.after <= to,
            "{what} {i}: closed after {:?}, expected {from:?}..{to:?}",
            e.after
        );
    }
}

/// 120 clients that connect and send nothing, 30 that drip a header line
/// and 20 idling on keep-alive: the first two kinds are cut at the head
/// timeout, the last at the idle timeout (not before); `/healthz` answers
/// throughout; the descriptors come back to where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_on_time_while_healthz_answers() {
    let _serial = SERIAL.lock().await;
    let env = Env::start().await;
    let store = ledger(&env).await;
    let served = Served::start(router(app_state(&env, store).await), short()).await;
    let addr = served.addr;
    assert_eq!(
        request(addr, &get("/healthz", "")).await,
        Some((200, "ok".into()))
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = open_fds();
    let cut_before = metric("eures_sync_http_connections_cut_total{reason=\"head_timeout\"}");

    let silent: Vec<_> = (0..120).map(|_| tokio::spawn(silent(addr))).collect();
    let dripping: Vec<_> = (0..30).map(|_| tokio::spawn(dripping(addr))).collect();
    let idling: Vec<_> = (0..20).map(|_| tokio::spawn(keep_alive(addr))).collect();

    // /healthz, on fresh connections, every 100 ms while they hang on.
    let started = Instant::now();
    let mut probes = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        let answered = Instant::now();
        assert_eq!(
            request(addr, &get("/healthz", "")).await,
            Some((200, "ok".into())),
            "/healthz at {:?}",
            started.elapsed()
        );
        assert!(answered.elapsed() < Duration::from_secs(1));
        probes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(probes >= 20, "{probes}");

    let join = |handles: Vec<tokio::task::JoinHandle<Option<Ended>>>| async move {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("client task"));
        }
        out
    };
    let silent = join(silent).await;
    let dripping = join(dripping).await;
    let idling = join(idling).await;
    let slack = Duration::from_millis(1500);
    within(
        &silent,
        "silent client",
        Duration::from_millis(900),
        short().head_timeout + slack,
    );
    within(
        &dripping,
        "dripping client",
        Duration::from_millis(900),
        short().head_timeout + slack,
    );
    assert!(
        dripping.iter().flatten().all(|e| e.sent > 25),
        "the drippers kept sending: {dripping:?}"
    );
    within(
        &idling,
        "keep-alive client",
        short().idle_timeout - Duration::from_millis(100),
        short().idle_timeout + slack,
    );
    assert!(
        metric("eures_sync_http_connections_cut_total{reason=\"head_timeout\"}") - cut_before
            >= 150.0
    );

    eventually(
        Duration::from_secs(5),
        "descriptors back to the baseline",
        || open_fds() <= baseline,
    )
    .await;
    served.stop().await;
}

/// With room for 8 connections, 40 silent clients never hold more than 8
/// accepted sockets; a `/healthz` behind them waits its turn and is answered
/// once the head timeout has cleared them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() {
    let _serial = SERIAL.lock().await;
    let env = Env::start().await;
    let store = ledger(&env).await;
    let limits = Limits {
        max_connections: 8,
        ..short()
    };
    let served = Served::start(router(app_state(&env, store).await), limits).await;
    let addr = served.addr;

    let clients: Vec<_> = (0..40).map(|_| tokio::spawn(silent(addr))).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe_started = Instant::now();
    let probe = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.expect("probe connects");
        tcp.write_all(get("/healthz", "").as_bytes())
            .await
            .expect("probe writes");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut out))
            .await
            .expect("answered within 15 s")
            .expect("probe reads");
        String::from_utf8_lossy(&out).into_owned()
    });
    let mut most = 0;
    while !probe.is_finished() && probe_started.elapsed() < Duration::from_secs(20) {
        most = most.max(accepted_on(addr.port()));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let answer = probe.await.expect("probe task");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        probe_started.elapsed() >= Duration::from_millis(800),
        "the probe waited behind the cap"
    );
    // Without the cap all 40 would show.
    assert!(most <= 8, "{most} connections accepted at once");
    assert!(most >= 7, "the cap was reached: {most}");
    for c in clients {
        assert!(
            c.await.expect("client").is_some(),
            "every silent client was cut"
        );
    }
    served.stop().await;
}

/// A handler that has not answered within the request timeout is answered
/// 503 by the listener; the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_does_not_answer_in_time_gets_503() {
    let app = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route("/fast", axum::routing::get(|| async { "ok" }));
    let limits = Limits {
        request_timeout: Duration::from_millis(500),
        ..short()
    };
    let served = Served::start(app, limits).await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let response = http
        .get(format!("http://{}/slow", served.addr))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 503);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let response = http
        .get(format!("http://{}/fast", served.addr))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    served.stop().await;
}

/// A response whose status line came within 2 s of sending only the head.
async fn answer_to_head_only(addr: SocketAddr, head: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("write head");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf))
        .await
        .expect("answered without the body being sent")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Bodies larger than a route needs are refused with 413 before any of them
/// is sent; getDetails takes what 1,000 references need and no more; every
/// refusal (401, 413, 400) is counted by status and none is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_what_a_route_needs_are_refused_before_they_are_read() {
    let _serial = SERIAL.lock().await;
    let env = Env::start().await;
    let store = ledger(&env).await;
    let served = Served::start(router(app_state(&env, store).await), short()).await;
    let addr = served.addr;
    let refused = |status: &str| {
        metric(&format!(
            "eures_sync_input_api_refused_total{{status=\"{status}\"}}"
        ))
    };
    let before: BTreeMap<&str, f64> = ["400", "401", "413"].map(|s| (s, refused(s))).into();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");

    // Announced too large: answered at once, the body never sent.
    let details = format!("{BASE}/getDetails");
    let head = |len: usize| {
        format!(
            "POST {details} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    assert_eq!(answer_to_head_only(addr, &head(10_000_000)).await, 413);
    assert_eq!(
        answer_to_head_only(addr, &head(MAX_DETAILS_BODY + 1)).await,
        413
    );
    let get_all =
        format!("GET {BASE}/getAll HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 10\r\n\r\n");
    assert_eq!(answer_to_head_only(addr, &get_all).await, 413);
    let metrics = "GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(answer_to_head_only(addr, metrics).await, 413);

    // Not announced (chunked): cut off once past the bound. The server stops
    // reading there, so the client's last writes may fail; the answer came
    // before the connection closed.
    let chunked = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST {details} HTTP/1.1\r\nHost: t\r\n{auth}Transfer-Encoding: chunked\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.expect("head");
        let chunk = format!("{:x}\r\n{}\r\n", 10_000, " ".repeat(10_000));
        for _ in 0..40 {
            if tcp.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = tcp.write_all(b"0\r\n\r\n").await;
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), chunked)
        .await
        .expect("the chunked request is answered");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let http = reqwest::Client::new();
    let url = format!("http://{addr}{details}");

    // 1,000 references of the longest id JobAG may use, pretty-printed.
    let longest = "x".repeat(128);
    let refs: Vec<String> = (0..MAX_DETAILS)
        .map(|i| format!("{}{i:04}", &longest[..124]))
        .collect();
    let pretty = serde_json::to_string_pretty(&refs).expect("json");
    assert!(pretty.len() <= MAX_DETAILS_BODY, "{}", pretty.len());
    let response = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body(pretty)
        .send()
        .await
        .expect("details request");
    assert_eq!(response.status(), 200);

    // Refusals of other kinds.
    for _ in 0..3 {
        let response = http.post(&url).body("[]").send().await.expect("request");
        assert_eq!(response.status(), 401);
    }
    let response = http
        .get(format!("http://{addr}{BASE}/getChanges/yesterday"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let response = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body("{\"not\": \"an array\"}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);

    let delta = |s: &str| refused(s) - before[s];
    assert_eq!(
        delta("413"),
        4.0,
        "three announced, one chunked (metrics is not the Input API)"
    );
    assert_eq!(delta("401"), 3.0);
    assert_eq!(delta("400"), 2.0);
    served.stop().await;
}

/// However often `/metrics` is scraped, the ledger summary is computed at
/// most once a second; a scrape after a second computes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_summary_is_computed_at_most_once_a_second() {
    let env = Env::start().await;
    let store = ledger(&env).await;
    let state = app_state(&env, store).await;
    let cache = Arc::new(SummaryCache::default());
    let served = Served::start(ops_router(state, cache.clone()), short()).await;
    let url = format!("http://{}/metrics", served.addr);
    let http = reqwest::Client::new();

    let started = Instant::now();
    let mut scrapes = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        let batch = (0..10).map(|_| http.get(&url).send());
        for response in futures::future::join_all(batch).await {
            let response = response.expect("scrape");
            assert_eq!(response.status(), 200);
            let text = response.text().await.expect("body");
            assert!(
                text.contains("eures_sync_postings{state=\"present\"}"),
                "{text}"
            );
            scrapes += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let computed = cache.computed();
    assert!(scrapes >= 50, "{scrapes}");
    assert!(
        (computed as f64) <= elapsed.ceil() + 1.0,
        "{computed} summaries for {scrapes} scrapes in {elapsed:.1} s"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    http.get(&url).send().await.expect("scrape");
    assert_eq!(cache.computed(), computed + 1);
    served.stop().await;
}

/// With the database gone, `/readyz` says so in fixed words once its last
/// check has aged out, and `/metrics`
/// still answers: neither carries the database's error text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_metrics_carry_no_error_text() {
    use sqlx::Connection;
    let db = PgDb::create().await;
    let store = eures_sync::store::connect(&format!("{}?acquire_timeout_ms=1000", db.url()))
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let state = AppState {
        store,
        health: Arc::new(Health::default()),
        input_api: None,
    };
    let served = Served::start(router(state), short()).await;
    assert_eq!(
        request(served.addr, &get("/readyz", "")).await,
        Some((200, "ready".into()))
    );

    let mut admin = sqlx::PgConnection::connect(&common::pg_admin_url())
        .await
        .expect("admin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {} WITH (FORCE)",
        db.name
    )))
    .execute(&mut admin)
    .await
    .expect("drop the ledger's database");

    // The check behind the "ready" above is reused for up to a second.
    tokio::time::sleep(READINESS_MAX_AGE + Duration::from_millis(100)).await;
    let (status, body) = request(served.addr, &get("/readyz", ""))
        .await
        .expect("readyz answers");
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: the database does not answer")
    );
    let (status, body) = request(served.addr, &get("/metrics", ""))
        .await
        .expect("metrics answers");
    assert_eq!(status, 200);
    for leak in [db.name.as_str(), "does not exist", "error"] {
        assert!(!body.contains(leak), "/metrics carries {leak:?}");
    }
    served.stop().await;
}

/// A worker loop that died makes `/readyz` fail (the process is on its way
/// out so that its supervisor restarts it), in fixed words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_once_a_worker_loop_died() {
    let env = Env::start().await;
    let store = ledger(&env).await;
    let health = Arc::new(Health::default());
    let state = AppState {
        store,
        health: health.clone(),
        input_api: None,
    };
    let served = Served::start(router(state), short()).await;
    assert_eq!(
        request(served.addr, &get("/readyz", "")).await,
        Some((200, "ready".into()))
    );
    health
        .loop_died
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        request(served.addr, &get("/readyz", "")).await,
        Some((
            503,
            "not ready: a worker loop ended; the process is stopping".into()
        ))
    );
    assert_eq!(
        request(served.addr, &get("/healthz", ""))
            .await
            .map(|(s, _)| s),
        Some(200)
    );
    served.stop().await;
}

/// The real binary in pull mode with `http.input_api_listen`: the Input API
/// answers there and not on `http.listen`, `/metrics` answers on
/// `http.listen` and not there; 50 refused requests are counted in the
/// metric and leave no line in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_input_api_can_listen_apart_from_metrics() {
    let env = Env::start().await;
    let config = env.dir.path().join("apart.toml");
    std::fs::write(
        &config,
        format!(
            "{}input_api_listen = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
            env.config_toml()
        ),
    )
    .expect("config");
    let log_path = env.dir.path().join("apart.log");
    let mut cmd = common::agent::eures_sync();
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("EURES_SYNC__EURES__MODE", "pull")
        .env("EURES_SYNC_INPUT_API_TOKEN", TOKEN);
    let mut agent = common::agent::Agent::start(cmd, &log_path);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let field = |name: &str| {
        log().lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["fields"][name].as_str().map(str::to_string)
        })
    };
    let started = Instant::now();
    let (ops, api) = loop {
        if let (Some(ops), Some(api)) = (field("listen"), field("input_api_listen")) {
            break (ops, api);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the binary did not report its addresses: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let http = reqwest::Client::new();
    let status = |url: String, token: Option<&str>| {
        let mut req = http.get(url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move { req.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(
        status(format!("http://{api}{BASE}/ping"), Some(TOKEN)).await,
        200
    );
    assert_eq!(
        status(format!("http://{ops}{BASE}/ping"), Some(TOKEN)).await,
        404
    );
    assert_eq!(status(format!("http://{ops}/metrics"), None).await, 200);
    assert_eq!(status(format!("http://{api}/metrics"), None).await, 404);

    let lines_before = log().lines().count();
    for _ in 0..50 {
        assert_eq!(
            status(format!("http://{api}{BASE}/getAll"), Some("wrong")).await,
            401
        );
    }
    let text = http
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        text.lines()
            .any(|l| l == "eures_sync_input_api_refused_total{status=\"401\"} 50"),
        "{text}"
    );
    agent.kill();
    let after: Vec<String> = log()
        .lines()
        .skip(lines_before)
        .map(str::to_string)
        .collect();
    assert!(
        after
            .iter()
            .all(|l| !l.contains("refused") && !l.contains("getAll")),
        "refused requests were logged: {after:?}"
    );
}
