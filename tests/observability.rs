//! What an operations team watches, read through the real interfaces of the
//! real binary: `/metrics` (build, process, feed and reconcile metrics), the
//! INFO log (totals, not a line per delivery), and the Grafana dashboard of
//! `deploy/grafana/` queried through a real Prometheus scraping the worker.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Env, eventually_async};
use eures_sync::sim::eures::Faults;
use eures_sync::sim::jobag::{sample_id, sample_posting};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// The real binary running on an [`Env`], its HTTP listener on an
/// ephemeral port learnt from its start-up log line.
struct Agent {
    child: Child,
    name: String,
    base: String,
}

impl Agent {
    fn start(env: &Env, name: &str, extra_toml: &str) -> Agent {
        let child = env.spawn_worker(name, "info", extra_toml);
        let started = Instant::now();
        let listen = loop {
            let log = env.worker_log(name);
            if let Some(addr) = log
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|v| v["fields"]["listen"].as_str().map(str::to_string))
            {
                break addr;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the worker did not start: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Agent {
            child,
            name: name.to_string(),
            base: format!("http://{listen}"),
        }
    }

    async fn metrics(&self) -> String {
        let response = reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }

    /// SIGTERM, then the log once it exited 0.
    fn stop(mut self, env: &Env) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "the worker exited with {status}");
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("the worker did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        env.worker_log(&self.name)
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

    // INFO: no line per successful delivery; the totals (written once a
    // minute, and at stop) count them all: 20 creates, the copy created
    // again, the orphan deleted.
    let log = agent.stop(&env);
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
