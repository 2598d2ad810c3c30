//! What an operations team watches, read through the real interfaces of the
//! real binary: `/metrics` (build, process, feed and reconcile metrics), the
//! INFO log (totals, not a line per delivery), and the Grafana dashboard of
//! `deploy/grafana/` queried through a real Prometheus scraping the worker.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Env, editable, eventually_async};
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// The real binary running on an [`Env`], its HTTP listener on an
/// ephemeral port learnt from its start-up log line.
struct Agent {
    process: common::agent::Agent,
    base: String,
}

impl Agent {
    fn start(env: &Env, name: &str, extra_toml: &str) -> Agent {
        let mut process = env.agent(name, "info", extra_toml);
        let base = format!("http://{}", process.listen());
        Agent { process, base }
    }

    async fn metrics(&self) -> String {
        let response = reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }

    /// SIGTERM, then the log once it exited 0.
    async fn stop(self) -> String {
        self.process.stop().await
    }
}

/// The value of one series, named exactly as exposed (labels included).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// The commit `build.rs` records: the one given, else git's, else unknown.
fn expected_commit() -> String {
    if let Some(given) = std::env::var("EURES_SYNC_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
    {
        return given.trim().to_string();
    }
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Runs the HEALTHCHECK command of deploy/Dockerfile against `port`.
fn docker_health_check(port: &str) -> bool {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Dockerfile"))
            .expect("Dockerfile");
    let exec_form = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("CMD [\"bash\""))
        .expect("a HEALTHCHECK CMD [\"bash\", ...] line");
    let argv: Vec<String> =
        serde_json::from_str(&format!("[\"bash\"{exec_form}")).expect("exec form is JSON");
    assert!(argv[2].contains("/9464"), "{argv:?}");
    let status = Command::new(&argv[0])
        .args(
            argv[1..]
                .iter()
                .map(|a| a.replace("/9464", &format!("/{port}"))),
        )
        .status()
        .expect("run bash");
    status.success()
}

/// Waits until `series` reaches `at_least` on the agent's `/metrics`.
async fn wait_for(agent: &Agent, series: &str, at_least: f64) {
    let what = format!("{series} >= {at_least}");
    eventually_async(WAIT, &what, || async {
        value(&agent.metrics().await, series).is_some_and(|v| v >= at_least)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_process_feed_and_reconcile_metrics_and_totals_in_the_log() {
    let env = Env::start().await;
    for i in 0..20 {
        env.jobag.upsert(sample_posting(i));
    }
    let agent = Agent::start(&env, "observed", "[reconcile]\ninterval_s = 1\n");
    env.converged(WAIT).await;
    wait_for(
        &agent,
        "eures_sync_reconcile_runs_total{result=\"ok\"}",
        1.0,
    )
    .await;

    let m = agent.metrics().await;
    let build = format!(
        "eures_sync_build_info{{version=\"{}\",commit=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        expected_commit()
    );
    assert_eq!(value(&m, &build), Some(1.0), "{build} in:\n{m}");
    let rss = value(&m, "process_resident_memory_bytes").expect("resident memory");
    assert!(rss > 1e6 && rss < 4e9, "resident memory {rss}");
    let fds = value(&m, "process_open_fds").expect("open files");
    assert!(fds >= 3.0, "open files {fds}");
    let start = value(&m, "process_start_time_seconds").expect("start time");
    assert!(
        start <= now_s() + 1.0 && start > now_s() - 600.0,
        "start time {start}, now {}",
        now_s()
    );
    assert!(value(&m, "process_cpu_seconds_total").is_some_and(|cpu| cpu >= 0.0));
    assert_eq!(value(&m, "eures_sync_feed_poll_failures_total"), Some(0.0));
    let last = value(&m, "eures_sync_reconcile_last_run_timestamp_seconds").expect("last run");
    assert!((now_s() - last).abs() < 60.0, "last reconcile {last}");
    let took = value(&m, "eures_sync_reconcile_last_run_duration_seconds").expect("duration");
    assert!((0.0..60.0).contains(&took), "reconcile took {took}");

    // The container's health check (deploy/Dockerfile) passes against the
    // real /healthz, on this worker's port instead of 9464; and fails
    // where nothing answers.
    let port = agent.base.rsplit(':').next().expect("a port").to_string();
    assert!(
        docker_health_check(&port),
        "the health check failed against /healthz"
    );
    assert!(!docker_health_check(&free_port().to_string()));

    // Drift on EURES: a copy removed behind our back, an orphan.
    env.eures.remove(&sample_id(1));
    env.eures
        .insert_orphan("orphan-0001", 3, "<PositionOpening/>");
    wait_for(
        &agent,
        "eures_sync_reconcile_differences_total{kind=\"missing_on_eures\"}",
        1.0,
    )
    .await;
    wait_for(
        &agent,
        "eures_sync_reconcile_differences_total{kind=\"orphan_on_eures\"}",
        1.0,
    )
    .await;
    env.converged(WAIT).await;

    // The EURES listing fails: a partial run judges nothing on EURES.
    env.eures.set_faults(Faults {
        force_status: Some(503),
        ..Faults::none()
    });
    wait_for(
        &agent,
        "eures_sync_reconcile_runs_total{result=\"partial\"}",
        1.0,
    )
    .await;
    env.eures.set_faults(Faults::none());

    // The feed is down: polls fail, and so does reconcile's snapshot.
    env.jobag.set_outage(true);
    wait_for(&agent, "eures_sync_feed_poll_failures_total", 1.0).await;
    wait_for(
        &agent,
        "eures_sync_reconcile_runs_total{result=\"failed\"}",
        1.0,
    )
    .await;
    env.jobag.set_outage(false);
    let m = agent.metrics().await;
    assert_eq!(
        value(
            &m,
            "eures_sync_reconcile_differences_total{kind=\"missing_on_eures\"}"
        ),
        Some(1.0),
        "a difference is counted once: the repair is not found again"
    );
    env.settled(WAIT).await;

    // INFO: no line per successful delivery; the totals (written once a
    // minute, and at stop) count them all: 20 creates, the copy created
    // again, the orphan deleted.
    let log = agent.stop().await;
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let per_delivery: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "delivery attempt")
        .collect();
    assert!(per_delivery.is_empty(), "{per_delivery:?}");
    let totals: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "delivery totals")
        .collect();
    assert!(!totals.is_empty(), "no totals line in:\n{log}");
    let sum = |field: &str| -> u64 {
        totals
            .iter()
            .map(|l| l["fields"][field].as_u64().expect("a count"))
            .sum()
    };
    assert_eq!(
        (sum("create"), sum("update"), sum("delete"), sum("ok")),
        (21, 0, 1, 22),
        "{totals:?}"
    );
}

/// Prometheus from Debian's package (or where `PROMETHEUS` points).
fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    })
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Every query of the dashboard: (panel title, PromQL) with Grafana's
/// variables replaced as Grafana would for one job and all its workers.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/eures-sync.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let mut panels: Vec<&Value> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        panels.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            panels.extend(inner);
        }
    }
    let mut out = Vec::new();
    for panel in panels.into_iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().expect("a title").to_string();
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            let expr = expr
                .replace("$__rate_interval", "15s")
                .replace("$__range", "5m")
                .replace("$__interval", "1s")
                .replace("$job", "eures-sync")
                .replace("$instance", ".*");
            assert!(!expr.contains('$'), "{title}: a variable left in {expr}");
            out.push((title.clone(), expr));
        }
    }
    out
}

/// Whether a query answers at least one sample with a finite value.
async fn has_data(client: &reqwest::Client, prometheus: &str, expr: &str) -> Result<(), String> {
    let url = url::Url::parse_with_params(&format!("{prometheus}/api/v1/query"), [("query", expr)])
        .map_err(|e| e.to_string())?;
    let body: Value = client
        .get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{body}"));
    }
    let result = body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let finite = result.iter().any(|sample| {
        sample["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    });
    if finite {
        Ok(())
    } else {
        Err(format!("no finite sample: {result:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_returns_data_from_a_real_prometheus() {
    let Some(prometheus_bin) = prometheus_binary() else {
        if std::env::var_os("EURES_SYNC_SKIP_PROMETHEUS").is_some() {
            eprintln!(
                "SKIPPED every_dashboard_panel_returns_data_from_a_real_prometheus: \
                 prometheus is not installed and EURES_SYNC_SKIP_PROMETHEUS is set"
            );
            return;
        }
        panic!(
            "prometheus is not installed: `apt-get install prometheus` (what .ci/run does), \
             or set EURES_SYNC_SKIP_PROMETHEUS=1 to skip this test"
        );
    };
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");

    let env = Env::start().await;
    for i in 0..60 {
        env.jobag.upsert(sample_posting(i));
    }
    env.jobag.push_raw(json!({"title": "no id, no version"}));
    let agent = Agent::start(&env, "dashboard", "[reconcile]\ninterval_s = 2\n");
    env.converged(WAIT).await;
    // Drift for reconcile to find.
    env.eures.remove(&sample_id(1));

    let dir = env.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let target = agent.base.trim_start_matches("http://").to_string();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: eures-sync\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        ),
    )
    .expect("prometheus.yml");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _prometheus = Killed(
        Command::new(&prometheus_bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
            .spawn()
            .expect("start prometheus"),
    );

    // A small steady load while Prometheus scrapes: a few edits every
    // half second, now and then a deletion and a new posting.
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut round = 0u64;
    let failing = loop {
        for _ in 0..4 {
            round += 1;
            let id = sample_id(10 + round % 10);
            let mut p = editable(&env.jobag, &id);
            p["title"] = json!(format!("Edit {round}"));
            env.jobag.upsert(p);
        }
        if round.is_multiple_of(20) && round / 20 < 40 {
            env.jobag.delete(&sample_id(20 + round / 20));
            env.jobag.upsert(sample_posting(100 + round / 20));
        }
        let mut failing = Vec::new();
        for (title, expr) in &queries {
            if let Err(why) = has_data(&client, &base, expr).await {
                failing.push((title.clone(), expr.clone(), why));
            }
        }
        if failing.is_empty() || started.elapsed() > WAIT {
            break failing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        failing.is_empty(),
        "panels without data after {:?}:\n{}\nprometheus log:\n{}",
        started.elapsed(),
        failing
            .iter()
            .map(|(t, e, w)| format!("- {t}: {e}\n  {w}"))
            .collect::<Vec<_>>()
            .join("\n"),
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );

    // The dashboard's variables find the worker, and the alert rules load
    // and evaluate on real data.
    for (label, want) in [
        ("job", "eures-sync".to_string()),
        ("instance", target.clone()),
    ] {
        let url = url::Url::parse_with_params(
            &format!("{base}/api/v1/label/{label}/values"),
            [("match[]", "eures_sync_build_info")],
        )
        .expect("url");
        let values: Value = client
            .get(url)
            .send()
            .await
            .expect("labels")
            .json()
            .await
            .expect("json");
        assert!(
            values["data"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| *x == *want)),
            "{label}: {values}"
        );
    }
    let rules: Value = client
        .get(format!("{base}/api/v1/rules"))
        .send()
        .await
        .expect("rules")
        .json()
        .await
        .expect("json");
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert!(loaded.len() >= 10, "{rules}");
    for rule in loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    agent.stop().await;
}
