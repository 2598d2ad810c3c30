//! The operator's interfaces against a running worker (the real binary):
//! every CLI command's effect, /metrics, /healthz, /readyz, and logs that
//! carry nothing personal; on SQLite (`sqlite::*`) and PostgreSQL
//! (`postgres::*`).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{Backend, Env, editable, eventually};
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use hyper::Method;
use serde_json::{Value, json};

common::on_both_backends!(
    resync_and_reconcile_repair_through_the_running_worker,
    dead_letters_export_purge_status_inspect,
    metrics_health_readiness_and_logs_without_personal_data,
    resync_all_dry_run_reports_exactly_what_resync_all_does,
);

const WAIT: Duration = Duration::from_secs(60);
const EURES_TOKEN: &str = "eures-tok-Sekret-4711";

/// The real binary with an EURES token, its listener on an ephemeral port.
struct Agent {
    process: common::agent::Agent,
    metrics: String,
}

impl Agent {
    /// Starts the binary with its HTTP listener on an ephemeral port and
    /// learns the port from its start-up log line.
    fn start(env: &Env) -> Agent {
        let token_file = env.dir.path().join("eures.token");
        common::write_secret(&token_file, &format!("{EURES_TOKEN}\n"));
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut process = env.agent(
            &format!("agent-{n}"),
            "debug",
            &format!(
                "[eures]\ntoken_file = \"{}\"\n[reconcile]\ninterval_s = 0\n",
                token_file.display()
            ),
        );
        let metrics = format!("http://{}", process.listen());
        Agent { process, metrics }
    }

    fn cli(&self, args: &[&str]) -> Output {
        common::agent::cli(&self.process.config, args)
    }

    /// The CLI with the clock `offset` ahead (Debian's `faketime`, e.g.
    /// `+2d`).
    fn cli_at(&self, offset: &str, args: &[&str]) -> Output {
        Command::new("faketime")
            .args(["-f", offset])
            .arg(env!("CARGO_BIN_EXE_eures-sync"))
            .args(args)
            .arg("--config")
            .arg(&self.process.config)
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("run eures-sync under faketime")
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli_ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}): {out}"))
    }

    async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("{}{path}", self.metrics)).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    async fn stop(self) -> String {
        self.process.stop().await
    }
}

async fn env_with_token(backend: Backend) -> Env {
    let env = Env::start_with(backend).await;
    env.eures.set_token(Some(EURES_TOKEN.into()));
    env
}

async fn resync_and_reconcile_repair_through_the_running_worker(backend: Backend) {
    let env = env_with_token(backend).await;
    for i in 1..=20 {
        env.jobag.upsert(sample_posting(i));
    }
    let agent = Agent::start(&env);
    env.converged(WAIT).await;

    // resync --posting: one more PUT of the same version.
    let before = env.eures.history(&sample_id(1)).len();
    let out = agent.cli_ok(&["resync", "--posting", &sample_id(1)]);
    assert!(out.contains(&sample_id(1)), "{out}");
    eventually(WAIT, "re-delivery after resync", || {
        env.eures.history(&sample_id(1)).len() == before + 1
    })
    .await;

    // resync --employer and --all re-deliver everything of theirs.
    let cvr = sample_posting(2)["employer"]["cvr"]
        .as_str()
        .unwrap()
        .to_string();
    agent.cli_ok(&["resync", "--employer", &cvr]);
    eventually(WAIT, "employer resync", || {
        env.eures.history(&sample_id(2)).len() == 2
    })
    .await;
    let dry = agent.cli_ok(&["resync", "--all", "--dry-run"]);
    assert!(dry.contains("would be re-delivered"), "{dry}");
    // Whatever the dry run made due would be delivered before the ledger
    // is quiet.
    env.judged(WAIT).await;
    assert_eq!(
        env.eures.history(&sample_id(5)).len(),
        1,
        "dry run delivered something"
    );
    agent.cli_ok(&["resync", "--all", "--yes"]);
    eventually(WAIT, "resync --all", || {
        (1..=20).all(|i| env.eures.history(&sample_id(i)).len() >= 2)
    })
    .await;

    // Unknown ids: exit 1 with one line.
    let out = agent.cli(&["resync", "--posting", "no-such-posting"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown posting id"), "{err}");

    // Tamper with EURES: altered content, an orphan, a missing copy.
    assert!(
        env.eures
            .tamper_content(&sample_id(3), "<PositionOpening/>")
    );
    env.eures.insert_orphan("orphan-0001", 4, "<x/>");
    env.eures.remove(&sample_id(4));
    let dry = agent.cli_ok(&["reconcile", "--dry-run"]);
    for kind in ["altered_on_eures", "orphan_on_eures", "missing_on_eures"] {
        assert!(dry.contains(kind), "dry run misses {kind}: {dry}");
    }
    env.judged(WAIT).await;
    assert!(env.eures.get("orphan-0001").is_some(), "dry run repaired");
    let out = agent.cli_ok(&["reconcile"]);
    assert!(out.contains("orphan-0001"), "{out}");
    env.converged(WAIT).await;
    let orphan_delete = env.eures.history("orphan-0001");
    assert_eq!(
        orphan_delete.last(),
        Some(&(Method::DELETE, 4)),
        "orphan deleted with its listed version"
    );
    let clean = agent.cli_ok(&["reconcile", "--dry-run"]);
    assert!(clean.starts_with("0 differences"), "{clean}");

    // A posting deleted in JobAG without the feed telling: the snapshot does.
    agent.stop().await;
    let gone = sample_id(6);
    env.jobag.forget_before(env.jobag.log_len());
    env.jobag.delete(&gone);
    env.jobag.forget_before(env.jobag.log_len());
    let agent = Agent::start(&env);
    eventually(WAIT, "deletion learnt from the snapshot after 410", || {
        env.eures.get(&gone).is_none()
    })
    .await;
    env.settled(WAIT).await;
    agent.stop().await;
}

async fn dead_letters_export_purge_status_inspect(backend: Backend) {
    let env = env_with_token(backend).await;
    let agent = Agent::start(&env);
    env.eures.set_faults(Faults {
        force_status: Some(422),
        ..Faults::none()
    });
    env.jobag.upsert(sample_posting(1));
    eventually(WAIT, "dead letter", || {
        agent.cli_json(&["dead-letters", "list", "--json"])["dead_letters"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    let status = agent.cli_json(&["status", "--json"]);
    for key in [
        "postings",
        "backlog",
        "oldest_pending_seconds",
        "last_source_poll",
        "dead_letters",
        "quarantined",
    ] {
        assert!(
            status.get(key).is_some(),
            "status --json lacks {key}: {status}"
        );
    }
    assert_eq!(status["dead_letters"], json!(1));
    env.eures.set_faults(Faults::none());
    agent.cli_ok(&["dead-letters", "retry", "--all"]);
    eventually(WAIT, "delivered after retry", || {
        env.eures.get(&sample_id(1)).is_some()
    })
    .await;
    let out = agent.cli(&["dead-letters", "retry", "no-such"]);
    assert_eq!(out.status.code(), Some(1));

    // Withdraw: the copy goes and its content leaves the ledger.
    let mut p = editable(&env.jobag, &sample_id(1));
    p["eures_consent"] = json!(false);
    env.jobag.upsert(p);
    eventually(WAIT, "withdrawal", || {
        env.eures.get(&sample_id(1)).is_none()
    })
    .await;
    // EURES answers the delete before the worker records it.
    eventually(WAIT, "the deletion recorded", || {
        agent.cli_json(&["inspect", &sample_id(1), "--json"])["due"].is_null()
    })
    .await;

    let inspect = agent.cli_json(&["inspect", &sample_id(1), "--json"]);
    assert_eq!(inspect["id"], json!(sample_id(1)));
    assert_eq!(inspect["desired"]["reason"], json!("no_consent"));
    assert!(
        inspect["audit"].as_array().is_some_and(|a| a.len() >= 3),
        "{inspect}"
    );
    let out = agent.cli(&["inspect", "no-such", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());

    let export = agent.cli_json(&["export", "--posting", &sample_id(1)]);
    assert_eq!(export["posting_id"], json!(sample_id(1)));
    let ops: Vec<(String, String)> = export["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["operation"].as_str().unwrap().into(),
                t["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        ops.first(),
        Some(&("create".to_string(), "rejected".to_string())),
        "{ops:?}"
    );
    assert!(ops.contains(&("create".into(), "ok".into())), "{ops:?}");
    assert_eq!(
        ops.last(),
        Some(&("delete".to_string(), "ok".to_string())),
        "{ops:?}"
    );
    let cvr = sample_posting(1)["employer"]["cvr"]
        .as_str()
        .unwrap()
        .to_string();
    let by_employer = agent.cli_json(&["export", "--employer", &cvr]);
    assert_eq!(
        by_employer["transfers"].as_array().unwrap().len(),
        ops.len()
    );

    let refused = agent.cli(&["purge", "--older-than", "0"]);
    assert_eq!(refused.status.code(), Some(2), "--older-than 0 is refused");
    // Two days on, a retention of one day purges the audit rows but keeps
    // the tombstone: it holds the highest version the feed may replay.
    // The dry run counts what the purge then deletes, and deletes nothing.
    let dry = agent.cli_at("+2d", &["purge", "--older-than", "1", "--dry-run"]);
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(dry.starts_with("would purge "), "{dry}");
    assert_eq!(
        agent.cli_json(&["export", "--employer", &cvr])["transfers"]
            .as_array()
            .map(Vec::len),
        Some(ops.len()),
        "the dry run deleted audit rows"
    );
    let out = agent.cli_at("+2d", &["purge", "--older-than", "1", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let purged = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(counts(&dry), counts(&purged), "{dry}{purged}");
    assert_eq!(counts(&purged)[0], ops.len() as u64, "{purged}");
    let export = agent.cli_json(&["export", "--employer", &cvr]);
    assert_eq!(
        export["transfers"].as_array().unwrap().len(),
        0,
        "audit rows purged"
    );
    let kept = agent.cli_json(&["inspect", &sample_id(1), "--json"]);
    assert_eq!(kept["id"], json!(sample_id(1)), "the tombstone is kept");
    // Past the tombstones' minimum retention it goes too.
    let out = agent.cli_at("+91d", &["purge", "--older-than", "1", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = agent.cli(&["inspect", &sample_id(1)]);
    assert_eq!(out.status.code(), Some(1), "the tombstone is purged");
    agent.stop().await;
}

/// The whole numbers in a line of CLI output, in order.
fn counts(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .filter_map(|w| w.trim_end_matches([',', ';', ':']).parse().ok())
        .collect()
}

/// `resync --all --dry-run` reports exactly what `resync --all` then does
/// on the same ledger: every kind of difference, counted the same.
async fn resync_all_dry_run_reports_exactly_what_resync_all_does(backend: Backend) {
    let env = env_with_token(backend).await;
    for i in 1..=12 {
        env.jobag.upsert(sample_posting(i));
    }
    let agent = Agent::start(&env);
    env.converged(WAIT).await;
    let config = agent.process.config.clone();
    agent.stop().await;
    // With no worker to follow the feed, the snapshot now differs from
    // the ledger in each way a resync judges.
    let mut p = editable(&env.jobag, &sample_id(2));
    p["title"] = json!("Ny titel");
    env.jobag.upsert(p);
    env.jobag.upsert(sample_posting(13));
    env.jobag.delete(&sample_id(3));
    let cli = |args: &[&str]| {
        let out = common::agent::cli(&config, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let dry = cli(&["resync", "--all", "--dry-run"]);
    let real = cli(&["resync", "--all", "--yes"]);
    assert!(dry.contains("would be re-delivered"), "{dry}");
    assert_eq!(
        dry.replace("would be re-delivered", "queued for re-delivery"),
        real,
        "the dry run and the resync disagree"
    );
    for kind in [
        "resync: 10",
        "newer_in_source: 1",
        "missing_in_ledger: 1",
        "gone_from_source: 1",
    ] {
        assert!(real.contains(kind), "{kind}: {real}");
    }
    assert!(
        real.starts_with("12 postings read from JobAG; 13 queued"),
        "{real}"
    );

    // A failing EURES listing: plain lines on stderr, no JSON log line.
    env.eures.set_faults(Faults {
        force_status: Some(403),
        ..Faults::none()
    });
    let out = common::agent::cli(&config, &["reconcile", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("EURES listing"), "{stderr}");
    assert!(
        stderr.lines().all(|l| !l.trim_start().starts_with('{')),
        "a JSON log line: {stderr}"
    );
}

async fn metrics_health_readiness_and_logs_without_personal_data(backend: Backend) {
    let env = env_with_token(backend).await;
    let mut p = sample_posting(1);
    p["title"] = json!("Stillingstitel-Qwertz-9931");
    p["description"] = json!("<p>Beskrivelse-Uiop-5521</p>");
    p["contact"] = json!({"name": "Zelda Privatperson", "email": "zelda.privat@example.dk", "phone": "+4511223344"});
    p["application"] = json!({"url": null, "email": "job-zelda@example.dk", "instructions": null});
    env.jobag.upsert(p);
    env.jobag
        .push_raw(json!({"title": "Broken-Title-7788", "contact": {"name": "Zelda Privatperson"}}));
    let agent = Agent::start(&env);
    eventually(WAIT, "create", || env.eures.get(&sample_id(1)).is_some()).await;

    let mut ready = (0, String::new());
    for _ in 0..100 {
        ready = agent.get("/readyz").await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready.0, 200, "{ready:?}");
    assert_eq!(agent.get("/healthz").await.0, 200);
    let (code, metrics) = agent.get("/metrics").await;
    assert_eq!(code, 200);
    for name in [
        "eures_sync_postings{state=\"present\"}",
        "eures_sync_postings{state=\"absent\"}",
        "eures_sync_postings{state=\"pending\"}",
        "eures_sync_postings{state=\"quarantined\"}",
        "eures_sync_deliveries_total{op=\"create\",outcome=\"ok\"}",
        "eures_sync_delivery_duration_seconds_bucket",
        "eures_sync_propagation_seconds_bucket",
        "eures_sync_backlog{op=\"delete\"}",
        "eures_sync_oldest_pending_seconds",
        "eures_sync_last_source_poll_timestamp_seconds",
        "eures_sync_eures_auth_failing",
        "eures_sync_dead_letters",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    assert!(
        !metrics.contains(&sample_id(1)),
        "a posting id in a metric label"
    );

    // EURES refuses our token: delivery pauses and readiness fails.
    env.eures.set_token(Some("another-token".into()));
    let mut p = editable(&env.jobag, &sample_id(1));
    p["title"] = json!("Stillingstitel-Qwertz-9932");
    env.jobag.upsert(p);
    let mut saw_503 = false;
    for _ in 0..200 {
        if agent.get("/readyz").await.0 == 503 {
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_503, "/readyz stayed 200 while EURES answered 401");
    assert!(
        agent
            .get("/metrics")
            .await
            .1
            .contains("eures_sync_eures_auth_failing 1")
    );
    env.eures.set_token(Some(EURES_TOKEN.into()));
    eventually(WAIT, "update after auth recovers", || {
        env.eures
            .get(&sample_id(1))
            .is_some_and(|v| v.content.contains("9932"))
    })
    .await;
    let mut back = false;
    for _ in 0..100 {
        if agent.get("/readyz").await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "/readyz did not recover");
    let probes = env
        .eures
        .requests()
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert!(probes >= 1);
    env.settled(WAIT).await;

    let log = agent.stop().await;
    assert!(log.lines().count() > 5, "the worker logged: {log}");
    for line in log.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    for secret in [
        "Stillingstitel-Qwertz",
        "Beskrivelse-Uiop",
        "Zelda",
        "Privatperson",
        "zelda.privat@example.dk",
        "job-zelda",
        "+4511223344",
        "11223344",
        "Broken-Title",
        EURES_TOKEN,
        "another-token",
    ] {
        assert!(!log.contains(secret), "log carries {secret:?}");
    }
    assert!(log.contains(&sample_id(1)), "logs name posting ids");
}

/// Read-only commands (SPEC 4.6) never create a ledger or migrate one: a
/// missing ledger, or one behind this binary's migrations, is an error that
/// names the URL and what to run, and the file system is left as it was.
#[tokio::test]
async fn read_only_commands_never_create_or_migrate_a_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("nested").join("ledger.db");
    let url = format!("sqlite://{}?mode=rwc", ledger.display());
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{url}\"\n")).expect("config");
    let cli = |args: &[&str]| {
        common::agent::eures_sync()
            .args(args)
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .expect("run eures-sync")
    };
    let read_only: [&[&str]; 7] = [
        &["status"],
        &["status", "--json"],
        &["inspect", "p-1"],
        &["export", "--posting", "p-1"],
        &["dead-letters", "list"],
        &["reconcile", "--dry-run"],
        &["resync", "--all", "--dry-run"],
    ];
    for args in read_only {
        let out = cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&url) && stderr.contains("eures-sync migrate"),
            "{args:?}: {stderr}"
        );
        assert!(
            !ledger.exists() && !ledger.parent().unwrap().exists(),
            "{args:?} created it"
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "a default ledger appeared"
    );

    let out = cli(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A ledger behind this binary's migrations is not migrated by a reader.
    let pool = sqlx::SqlitePool::connect(&url).await.expect("ledger");
    let newest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("versions");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .execute(&pool)
        .await
        .expect("forget the newest migration");
    pool.close().await;
    let out = cli(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("behind this binary") && stderr.contains("eures-sync migrate"),
        "{stderr}"
    );
    let pool = sqlx::SqlitePool::connect(&url).await.expect("ledger");
    let still: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .fetch_one(&pool)
        .await
        .expect("versions");
    assert_eq!(still, 0, "status applied a migration");
}

/// One worker a SQLite ledger: a second `run` on the same file is refused
/// at once with one line naming the process that holds it, and the first
/// runs on undisturbed.
#[tokio::test]
async fn a_second_worker_on_one_sqlite_ledger_is_refused() {
    let env = env_with_token(Backend::Sqlite).await;
    let agent = Agent::start(&env);
    let out = common::agent::eures_sync()
        .args(["run", "--config"])
        .arg(&agent.process.config)
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("run eures-sync");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "in use by another worker (process {})",
            agent.process.pid()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(agent.get("/healthz").await.0, 200);
    let log = agent.stop().await;
    let start = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "starting")
        .unwrap_or_else(|| panic!("no start line: {log}"));
    assert_eq!(start["fields"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        start["fields"]["commit"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(start["fields"]["mode"], "push");
    assert!(
        start["fields"]["database"]
            .as_str()
            .is_some_and(|d| d.starts_with("sqlite://")),
        "{start}"
    );
}
