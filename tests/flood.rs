//! A flooded listener (SPEC 4.5), through the real binary: keep-alive
//! clients holding every connection slot of `/metrics`' listener do not
//! keep EURES from the Input API in the shipped production example; a `401`
//! ends its connection; a flood of `/readyz` probes reaches the database
//! about once a second, not once a probe.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::{Backend, Env, publish};
use eures_sync::http::OPS_CONNECTIONS;
use eures_sync::http::input_api::BASE;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "flood-test-token-7c1e-0123456789abcdef";

/// One answer on a [`Conn`].
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The head, lower-cased.
    head: String,
    body: String,
}

/// One keep-alive HTTP/1.1 connection, for answers with a `Content-Length`.
struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Option<Conn> {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let _ = tcp.set_nodelay(true);
        Some(Conn {
            tcp,
            buf: Vec::new(),
        })
    }

    /// Sends `raw` and reads its answer; `None` when the connection ended
    /// or no answer came within `timeout`.
    async fn call(&mut self, raw: &str, timeout: Duration) -> Option<Answer> {
        tokio::time::timeout(timeout, async {
            self.tcp.write_all(raw.as_bytes()).await.ok()?;
            self.answer().await
        })
        .await
        .ok()
        .flatten()
    }

    async fn answer(&mut self) -> Option<Answer> {
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = self.tcp.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))?
            .trim()
            .parse()
            .ok()?;
        while self.buf.len() < head_end + length {
            let n = self.tcp.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + length]).into_owned();
        self.buf.drain(..head_end + length);
        Some(Answer {
            status: head.get(9..12)?.parse().ok()?,
            head,
            body,
        })
    }

    /// Whether the server ended the connection (EOF or reset) within
    /// `within`, sending nothing more.
    async fn ends_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 256];
        matches!(
            tokio::time::timeout(within, self.tcp.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn request(method: &str, path: &str, headers: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(path: &str, headers: &str) -> String {
    request("GET", path, headers, "")
}

/// The agent in pull mode over `env`, with `http` as its `[http]` table
/// (addresses on 127.0.0.1:0); its `/metrics` address and its Input API's.
fn pull_agent(env: &Env, name: &str, http: &toml::Table) -> (Agent, SocketAddr, SocketAddr) {
    let token = env.dir.path().join("input-api.token");
    common::write_secret(&token, TOKEN);
    let mut extra = toml::Table::new();
    extra.insert("http".into(), toml::Value::Table(http.clone()));
    let extra = format!(
        "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n{}",
        token.display(),
        toml::to_string(&extra).expect("TOML")
    );
    let mut agent = env.agent(name, "info", &extra);
    let ops: SocketAddr = agent.listen().parse().expect("listen address");
    let api = match http.get("input_api_listen") {
        None => ops,
        Some(_) => {
            let started = Instant::now();
            loop {
                let found = agent.log_text().lines().find_map(|l| {
                    let v: Value = serde_json::from_str(l).ok()?;
                    v["fields"]["input_api_listen"].as_str()?.parse().ok()
                });
                if let Some(addr) = found {
                    break addr;
                }
                agent.assert_alive();
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no input_api_listen address logged: {}",
                    agent.log_text()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    (agent, ops, api)
}

/// The `[http]` table of config/production.example.toml, each address it
/// sets moved to a free port on loopback.
fn production_http() -> toml::Table {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/production.example.toml"
    );
    let text = std::fs::read_to_string(path).expect("production example");
    let mut config: toml::Table = text.parse().expect("production example TOML");
    let Some(toml::Value::Table(mut http)) = config.remove("http") else {
        panic!("no [http] in the production example");
    };
    for key in ["listen", "input_api_listen"] {
        if http.contains_key(key) {
            http.insert(key.into(), toml::Value::String("127.0.0.1:0".into()));
        }
    }
    http
}

/// Server-side sockets open on `port` (ESTABLISHED or CLOSE_WAIT, with an
/// inode: accepted, not waiting in the kernel's queue).
fn accepted_on(port: u16) -> usize {
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
            let open = matches!(f.get(3).copied(), Some("01" | "08"));
            let inode = f.get(9).copied().unwrap_or("0");
            if local_port == Some(port) && open && inode != "0" {
                held.insert(inode.to_owned());
            }
        }
    }
    held.len()
}

/// A sample of the agent's `/metrics` (0 when absent).
async fn metric(ops: SocketAddr, sample: &str) -> f64 {
    let mut conn = Conn::open(ops).await.expect("connect to /metrics");
    let answer = conn
        .call(&get("/metrics", ""), Duration::from_secs(10))
        .await
        .expect("/metrics answers");
    answer
        .body
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// 512 keep-alive clients polling `/healthz` on the production example's
/// `/metrics` listener hold every slot it has; meanwhile the Input API
/// answers ping and getChanges on fresh connections within 1 s, and the
/// flooded listener never holds more connections than its own cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_examples_input_api_answers_while_metrics_is_flooded() {
    let env = Env::start().await;
    publish(&env.jobag, 5);
    let (mut agent, ops, api) = pull_agent(&env, "flooded", &production_http());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let started = Instant::now();
    loop {
        let answered = http
            .get(format!("http://{api}{BASE}/getChanges/0"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(answered, Ok(200)) {
            break;
        }
        agent.assert_alive();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the Input API never caught up: {answered:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    const FLOOD: usize = 512;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let (stop, answered, connected) = (stop.clone(), answered.clone(), connected.clone());
            tokio::spawn(async move {
                let Some(mut conn) = Conn::open(ops).await else {
                    return;
                };
                connected.fetch_add(1, Ordering::SeqCst);
                let mut first = true;
                while !stop.load(Ordering::SeqCst) {
                    let wait = if first {
                        Duration::from_secs(60)
                    } else {
                        Duration::from_secs(10)
                    };
                    match conn.call(&get("/healthz", ""), wait).await {
                        Some(a) if a.status == 200 => {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => return,
                    }
                    first = false;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        })
        .collect();
    // Beyond the listener's cap and the kernel's accept queue, the rest of
    // the flood keeps trying to connect; what matters is that every slot
    // is taken, by clients that poll.
    let started = Instant::now();
    while accepted_on(ops.port()) < OPS_CONNECTIONS
        || answered.load(Ordering::SeqCst) < OPS_CONNECTIONS
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the flood did not take the listener's slots: {} connected, {} accepted",
            connected.load(Ordering::SeqCst),
            accepted_on(ops.port())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut most_accepted = 0;
    for round in 0..5 {
        most_accepted = most_accepted.max(accepted_on(ops.port()));
        for path in ["ping", "getChanges/0"] {
            let started = Instant::now();
            let status = http
                .get(format!("http://{api}{BASE}/{path}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .map(|r| r.status().as_u16());
            let took = started.elapsed();
            assert!(
                matches!(status, Ok(200)) && took < Duration::from_secs(1),
                "round {round}: {path} while /metrics is flooded: {status:?} after {took:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let polled = answered.load(Ordering::SeqCst);
    let connected = connected.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for task in flood {
        task.abort();
    }
    assert!(polled >= 64, "the flood was polling: {polled} answers");
    assert!(
        (OPS_CONNECTIONS - 1..=OPS_CONNECTIONS).contains(&most_accepted),
        "the flooded listener held {most_accepted} connections; its cap is {OPS_CONNECTIONS}"
    );
    eprintln!(
        "flood: {connected} of {FLOOD} connected, at most {most_accepted} accepted, \
         {polled} /healthz answers"
    );
    agent.kill();
}

/// A `401` says `Connection: close` and the connection ends there, on the
/// Input API's own listener and on a shared one, whatever the call (a body
/// sent along included); an accepted call keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_closes_its_connection() {
    let env = Env::start().await;
    let mut apart = toml::Table::new();
    apart.insert("listen".into(), "127.0.0.1:0".into());
    apart.insert("input_api_listen".into(), "127.0.0.1:0".into());
    let mut shared = toml::Table::new();
    shared.insert("listen".into(), "127.0.0.1:0".into());
    for (name, http) in [("apart", apart), ("shared", shared)] {
        let (mut agent, _, api) = pull_agent(&env, name, &http);
        let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
        let ping = format!("{BASE}/ping");

        let mut conn = Conn::open(api).await.expect("connect");
        let ok = conn
            .call(&get(&ping, &bearer(TOKEN)), Duration::from_secs(5))
            .await
            .expect("ping answers");
        assert_eq!(ok.status, 200, "{name}: {ok:?}");
        assert!(
            !conn.ends_within(Duration::from_millis(300)).await,
            "{name}: an accepted call kept its connection"
        );

        let calls = [
            get(&ping, &bearer("wrong")),
            get(&format!("{BASE}/getChanges/0"), ""),
            get(
                &format!("{BASE}/getAll"),
                "Authorization: Basic Zm9vOmJhcg==\r\n",
            ),
            request(
                "POST",
                &format!("{BASE}/getDetails"),
                &format!("{}Content-Type: application/json\r\n", bearer("wrong")),
                "[\"a\",\"b\"]",
            ),
        ];
        for (i, raw) in calls.iter().enumerate() {
            let mut conn = Conn::open(api).await.expect("connect");
            let refused = conn
                .call(raw, Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{name} call {i}: no answer"));
            assert_eq!(refused.status, 401, "{name} call {i}: {refused:?}");
            assert!(
                refused.head.contains("\r\nconnection: close\r\n"),
                "{name} call {i}: {}",
                refused.head
            );
            assert!(!refused.body.contains(TOKEN));
            assert!(
                conn.ends_within(Duration::from_secs(2)).await,
                "{name} call {i}: the connection stayed open after the 401"
            );
        }
        agent.kill();
    }
}

/// Transactions PostgreSQL counted on `database` (committed and rolled
/// back), read afresh.
async fn transactions(database: &str) -> i64 {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&common::pg_admin_url())
        .await
        .expect("admin connection");
    let n: i64 = sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
    )
    .bind(database)
    .fetch_one(&mut admin)
    .await
    .expect("pg_stat_database");
    let _ = admin.close().await;
    n
}

/// How long a PostgreSQL backend may keep its counts before
/// pg_stat_database shows them (an idle one reports after 10 s).
const STATS_LAG: Duration = Duration::from_secs(11);

/// 2,000 `/readyz` probes over 200 keep-alive connections: every one is
/// answered `ready`, and PostgreSQL counts about as many transactions on
/// the ledger's database as in an equally long quiet spell (one readiness
/// query a second at most, not one a probe); the agent's own count of
/// readiness checks agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_readyz_reaches_the_database_about_once_a_second() {
    let env = Env::start_with(Backend::Postgres).await;
    let database = env.pg.as_ref().expect("a PostgreSQL ledger").name.clone();
    publish(&env.jobag, 5);
    // A slow feed poll keeps the worker's own transactions few.
    let mut agent = env.agent("readyz", "info", "[jobag]\npoll_interval_ms = 1000\n");
    let ops: SocketAddr = agent.listen().parse().expect("listen address");
    let mut probe = Conn::open(ops).await.expect("connect");
    let started = Instant::now();
    while probe
        .call(&get("/readyz", ""), Duration::from_secs(5))
        .await
        .is_none_or(|a| a.status != 200)
    {
        agent.assert_alive();
        assert!(started.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.converged(Duration::from_secs(30)).await;

    // The worker's own traffic over a quiet spell as long as the flood's.
    const CONNECTIONS: usize = 200;
    const PROBES_EACH: usize = 10;
    let flood_window = Duration::from_secs(3);
    let quiet_start = transactions(&database).await;
    tokio::time::sleep(flood_window + STATS_LAG).await;
    let quiet = transactions(&database).await - quiet_start;

    let checks_before = metric(ops, "eures_sync_readiness_checks_total").await;
    let flood_start = transactions(&database).await;
    let started = Instant::now();
    let flood: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            tokio::spawn(async move {
                let mut conn = Conn::open(ops).await?;
                let mut ready = 0;
                for _ in 0..PROBES_EACH {
                    let a = conn
                        .call(&get("/readyz", ""), Duration::from_secs(20))
                        .await?;
                    if (a.status, a.body.as_str()) == (200, "ready") {
                        ready += 1;
                    }
                }
                Some(ready)
            })
        })
        .collect();
    let mut ready = 0;
    for task in flood {
        ready += task.await.expect("probe task").unwrap_or(0);
    }
    let took = started.elapsed();
    assert_eq!(
        ready,
        CONNECTIONS * PROBES_EACH,
        "every probe answered ready"
    );
    tokio::time::sleep(flood_window.saturating_sub(took) + STATS_LAG).await;
    let flooded = transactions(&database).await - flood_start;
    let checks = metric(ops, "eures_sync_readiness_checks_total").await - checks_before;
    eprintln!(
        "readyz flood: {ready} probes in {took:?}; {flooded} transactions against {quiet} \
         in a quiet spell; {checks} readiness checks"
    );
    // About one readiness query a second over the flood, on top of the
    // worker's own loops, which vary a little from one spell to the next.
    let allowed = took.as_secs_f64().ceil() + 2.0;
    assert!(
        flooded as f64 <= quiet as f64 * 1.5 + allowed + 50.0,
        "{ready} probes ran {flooded} transactions on the ledger's database (a quiet spell: \
         {quiet})"
    );
    assert!(
        checks >= 1.0 && checks <= allowed,
        "{checks} readiness checks for {ready} probes in {took:?}"
    );
    agent.kill();
}
