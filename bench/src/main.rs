//! `eures-sync-bench`: the SPEC 7 targets, measured against the project's
//! own simulators on loopback and printed as a table.
//!
//! `cargo run --release --bin eures-sync-bench -- all` runs everything at
//! full size; `--postings N` shrinks the backfill for a smoke run, `render
//! --rounds N` the rendering measure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use eures_sync::config::Config;
use eures_sync::domain::codes::NaceRevision;
use eures_sync::domain::eligibility::{Desired, evaluate};
use eures_sync::domain::posting::{ChangeBody, ParsedChange, PostingFields, parse_change};
use eures_sync::domain::render::{DocumentSettings, render};
use eures_sync::engine::Worker;
use eures_sync::eures::{EuresClient, VacancyPut};
use eures_sync_sims::eures::{EuresOptions, EuresSim};
use eures_sync_sims::jobag::{JobagOptions, JobagSim, sample_posting};
use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::json;
use tokio::sync::watch;

#[derive(Parser)]
#[command(about = "Measures eures-sync against the SPEC 7 targets")]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Clone)]
enum What {
    /// Initial backfill vs a bare HTTP client loop (the ceiling).
    Backfill {
        #[arg(long, default_value_t = 100_000)]
        postings: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Steady-state propagation latency and a withdrawal behind a backlog.
    Latency {
        #[arg(long, default_value_t = 100_000)]
        backlog: u64,
    },
    /// Peak RSS of the worker building a large ledger, and a reconcile of it
    /// (both as separate processes of the real binary).
    Scale {
        #[arg(long, default_value_t = 1_000_000)]
        postings: u64,
    },
    /// Throughput of 1, 2 and 3 worker processes sharing a PostgreSQL
    /// ledger (each run on a fresh database created through `--admin-url`).
    Workers {
        #[arg(long, default_value_t = 20_000)]
        postings: u64,
        #[arg(long, default_value_t = 3)]
        max_workers: usize,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        admin_url: String,
    },
    /// CPU time of rendering one document, and the share of it the HTML
    /// sanitizer takes, on the golden inputs and on the sample postings the
    /// backfill sends (no IO; one thread).
    Render {
        #[arg(long, default_value_t = 2_000)]
        rounds: usize,
    },
    /// Everything at full size.
    All,
    /// Both simulators in this process, for a measure that runs them apart
    /// from the agent (started by the bench itself).
    #[command(hide = true)]
    Sims {
        #[arg(long)]
        postings: u64,
        #[arg(long)]
        expect: usize,
    },
}

struct Rig {
    jobag: JobagSim,
    eures: EuresSim,
    dir: tempfile::TempDir,
    config: Config,
}

impl Rig {
    async fn new(concurrency: usize, poll_ms: u64) -> anyhow::Result<Rig> {
        let jobag = JobagSim::start(JobagOptions::default()).await?;
        let eures = EuresSim::start(EuresOptions {
            record_requests: false,
            check_content_rules: false,
            ..EuresOptions::default()
        })
        .await?;
        let dir = tempfile::tempdir()?;
        let config = agent_config(
            &dir,
            &jobag.base_url(),
            &eures.base_url(),
            concurrency,
            poll_ms,
        )?;
        Ok(Rig {
            jobag,
            eures,
            dir,
            config,
        })
    }

    async fn worker(&self) -> anyhow::Result<RunningWorker> {
        start_worker(&self.config).await
    }
}

type RunningWorker = (
    Arc<Worker>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// The agent's configuration for a bench run: a SQLite ledger in `dir`, the
/// two simulators, no reconcile.
fn agent_config(
    dir: &tempfile::TempDir,
    jobag_url: &str,
    eures_url: &str,
    concurrency: usize,
    poll_ms: u64,
) -> anyhow::Result<Config> {
    let toml = format!(
        "[database]\nurl = \"sqlite://{}?mode=rwc\"\n[jobag]\nbase_url = \"{jobag_url}\"\npoll_interval_ms = {poll_ms}\npage_size = 1000\n\
         [eures]\nbase_url = \"{eures_url}\"\nconcurrency = {concurrency}\n[reconcile]\ninterval_s = 0\n[http]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().join("bench.db").display(),
    );
    Ok(Config::load_from(
        Figment::new().merge(Toml::string(&toml)),
    )?)
}

async fn start_worker(config: &Config) -> anyhow::Result<RunningWorker> {
    let store = eures_sync::store::connect(&config.database.url).await?;
    store.migrate().await?;
    let worker = Arc::new(Worker::from_config(config, store)?);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(worker.clone().run(rx));
    Ok((worker, tx, task))
}

/// Both simulators in a child process (`eures-sync-bench sims`), so that
/// the CPU this process spends is the agent's (or the bare loop's) alone.
struct SimProcess {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    jobag_url: String,
    eures_url: String,
}

impl SimProcess {
    /// Starts the simulators with `postings` sample postings in the feed; the
    /// child reports when EURES holds `expect` copies.
    async fn start(postings: u64, expect: usize) -> anyhow::Result<SimProcess> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["sims", "--postings", &postings.to_string()])
            .args(["--expect", &expect.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the simulators' process")?;
        let stdout = child.stdout.take().context("simulators' stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut url = async |name: &str| -> anyhow::Result<String> {
            let line = lines
                .next_line()
                .await?
                .context("simulators' process ended")?;
            line.strip_prefix(name)
                .map(str::to_owned)
                .with_context(|| format!("expected the {name}URL, got {line:?}"))
        };
        let jobag_url = url("jobag ").await?;
        let eures_url = url("eures ").await?;
        Ok(SimProcess {
            child,
            lines,
            jobag_url,
            eures_url,
        })
    }

    /// Waits until the child reports that EURES holds the expected copies.
    async fn held(&mut self, limit: Duration) -> anyhow::Result<()> {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .context("EURES did not hold every copy in time")??
            .context("simulators' process ended")?;
        anyhow::ensure!(line.starts_with("held "), "unexpected line {line:?}");
        Ok(())
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        self.child.wait().await?;
        Ok(())
    }
}

/// The child's side of [`SimProcess`]: serves both simulators, prints their
/// URLs, prints `held N` once EURES holds `expect` copies, and ends when its
/// stdin closes.
async fn serve_sims(postings: u64, expect: usize) -> anyhow::Result<()> {
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    let jobag = JobagSim::start(JobagOptions::default()).await?;
    for i in 1..=postings {
        jobag.upsert(sample_posting(i));
    }
    let eures = EuresSim::start(EuresOptions {
        record_requests: false,
        check_content_rules: false,
        ..EuresOptions::default()
    })
    .await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "jobag {}", jobag.base_url())?;
    writeln!(out, "eures {}", eures.base_url())?;
    out.flush()?;
    drop(out);
    while eures.len() < expect {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!("held {}", eures.len());
    let mut rest = Vec::new();
    tokio::io::stdin().read_to_end(&mut rest).await?;
    Ok(())
}

async fn wait_until(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !f() {
        if started.elapsed() > limit {
            anyhow::bail!("{what}: not done within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(started.elapsed())
}

/// CPU time this process has used (user + system), from `/proc/self/stat`
/// (Linux clock ticks of 1/100 s); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The cores the machine offers this process.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// A measured phase: wall time and the CPU the whole process used in it.
struct Spent {
    wall: f64,
    cpu: Option<f64>,
}

impl Spent {
    /// `"µs of CPU per item, share of the cores busy"`.
    fn describe(&self, items: u64) -> String {
        match self.cpu {
            Some(cpu) => format!(
                "{:.0} µs CPU each, cores {:.0} % busy",
                cpu * 1e6 / items as f64,
                100.0 * cpu / (self.wall * cores())
            ),
            None => "CPU not measured".into(),
        }
    }
}

/// The documents the backfill sends, rendered as the agent renders them.
fn backfill_documents(postings: u64) -> Vec<(String, String)> {
    let now = chrono::Utc::now();
    (1..=postings)
        .filter_map(|i| {
            let mut p = sample_posting(i);
            p["version"] = json!(1);
            p["updated_at"] = json!("2026-11-20T10:00:00Z");
            match parse_change(&p) {
                ParsedChange::Change(c) => match evaluate(&c, now, &DocumentSettings::default()) {
                    Desired::Present { content, .. } => Some((c.id, content)),
                    Desired::Absent(_) => None,
                },
                ParsedChange::Quarantined { .. } => None,
            }
        })
        .collect()
}

/// The ceiling: the same documents PUT by a bare client loop with the same
/// concurrency against fresh simulators in their own process.
async fn ceiling(postings: u64, concurrency: usize) -> anyhow::Result<(f64, Spent)> {
    let docs = Arc::new(backfill_documents(postings));
    let mut sims = SimProcess::start(0, docs.len()).await?;
    let client = Arc::new(EuresClient::new(
        &sims.eures_url,
        None,
        Duration::from_secs(10),
        concurrency,
        None,
    )?);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, docs, next) = (client.clone(), docs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((id, content)) = docs.get(i) else {
                    break;
                };
                let _ = client
                    .put(&VacancyPut {
                        reference: id,
                        source_version: 1,
                        content,
                        creation_timestamp_ms: 0,
                        last_modification_timestamp_ms: 0,
                    })
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    sims.held(Duration::from_secs(10))
        .await
        .context("ceiling loop lost requests")?;
    sims.stop().await?;
    Ok((docs.len() as f64 / secs, Spent { wall: secs, cpu }))
}

async fn backfill(postings: u64, concurrency: usize) -> anyhow::Result<()> {
    let mut sims = SimProcess::start(postings, postings as usize).await?;
    let dir = tempfile::tempdir()?;
    let config = agent_config(&dir, &sims.jobag_url, &sims.eures_url, concurrency, 100)?;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let (_worker, stop, task) = start_worker(&config).await?;
    sims.held(Duration::from_secs(1800)).await?;
    let took = started.elapsed();
    let agent = Spent {
        wall: took.as_secs_f64(),
        cpu: cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before),
    };
    let _ = stop.send(true);
    task.await??;
    sims.stop().await?;
    let agent_rate = postings as f64 / took.as_secs_f64();
    let (ceiling_rate, bare) = ceiling(postings, concurrency).await?;
    println!(
        "| backfill of {postings} postings (SQLite, concurrency {concurrency}; simulators in their own process) | {agent_rate:.0} postings/s ({}, the agent's process) | ≥ 5,000/s |",
        agent.describe(postings)
    );
    println!(
        "| bare HTTP client loop, same documents and concurrency | {ceiling_rate:.0} PUT/s ({}, the loop's process) | |",
        bare.describe(postings)
    );
    if let (Some(agent_cpu), Some(bare_cpu)) = (agent.cpu, bare.cpu) {
        println!(
            "| agent CPU per posting / bare loop CPU per PUT | {:.1}× | ≤ 4× |",
            agent_cpu / bare_cpu
        );
    }
    println!(
        "| agent throughput / bare loop throughput | {:.0} % | |",
        100.0 * agent_rate / ceiling_rate
    );
    Ok(())
}

async fn latency(backlog: u64) -> anyhow::Result<()> {
    let rig = Rig::new(32, 100).await?;
    for i in 1..=200 {
        rig.jobag.upsert(sample_posting(i));
    }
    let (worker, stop, task) = rig.worker().await?;
    wait_until("warm-up", Duration::from_secs(60), || {
        rig.eures.len() == 200
    })
    .await?;
    // Steady state: one edit every 20 ms, measured from the moment the
    // change is visible in the feed to the moment EURES holds it.
    let mut samples = Vec::new();
    for round in 0..300u64 {
        let i = 1 + round % 200;
        let id = sample_posting(i)["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut p = rig.jobag.current(&id).context("posting")?;
        if let Some(o) = p.as_object_mut() {
            o.remove("version");
            o.remove("updated_at");
        }
        p["title"] = json!(format!("Udvikler runde {round}"));
        let v = rig.jobag.upsert(p);
        let t = wait_until("propagation", Duration::from_secs(10), || {
            rig.eures.get(&id).is_some_and(|x| x.source_version == v)
        })
        .await?;
        samples.push(t.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    samples.sort_by(f64::total_cmp);
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    println!(
        "| propagation at steady state, 100 ms poll (p50 / p99 of 300 edits) | {p50:.0} / {p99:.0} ms | p99 ≤ 250 ms |"
    );

    // A withdrawal behind a backlog of updates: every posting edited at
    // once, the withdrawal sent while most of the updates still wait.
    for i in 201..=backlog {
        rig.jobag.upsert(sample_posting(i));
    }
    wait_until(
        "backlog postings delivered",
        Duration::from_secs(1800),
        || rig.eures.len() as u64 == backlog,
    )
    .await?;
    // A gateway that answers in 20 ms keeps the backlog from draining while
    // we look: the backlog is real, not already delivered.
    rig.eures.set_faults(eures_sync_sims::eures::Faults {
        latency: Duration::from_millis(20),
        ..eures_sync_sims::eures::Faults::none()
    });
    let mut last = (String::new(), 0);
    for i in 2..=backlog {
        let id = sample_posting(i)["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut p = rig.jobag.current(&id).context("posting")?;
        if let Some(o) = p.as_object_mut() {
            o.remove("version");
            o.remove("updated_at");
        }
        p["title"] = json!(format!("Opdateret {i}"));
        last = (id, rig.jobag.upsert(p));
    }
    let store = worker.store.clone();
    let started = Instant::now();
    // Wait until the feed is read to the end: the updates are the ledger's backlog.
    while started.elapsed() < Duration::from_secs(600) {
        if store
            .get(&last.0)
            .await?
            .is_some_and(|e| e.source_version == last.1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued = store
        .summary(eures_sync::engine::now_ms())
        .await?
        .backlog_update;
    let target = sample_posting(1)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut p = rig.jobag.current(&target).context("posting")?;
    if let Some(o) = p.as_object_mut() {
        o.remove("version");
        o.remove("updated_at");
    }
    p["eures_consent"] = json!(false);
    rig.jobag.upsert(p);
    let t = wait_until("withdrawal", Duration::from_secs(60), || {
        rig.eures.get(&target).is_none()
    })
    .await?;
    let left = store
        .summary(eures_sync::engine::now_ms())
        .await?
        .backlog_update;
    println!(
        "| withdrawal behind a backlog of {queued} due updates (feed change → EURES delete; EURES answering in 20 ms) | {:.0} ms ({left} updates still queued after) | ≤ 1 s |",
        t.as_secs_f64() * 1000.0
    );
    let _ = stop.send(true);
    task.await??;
    Ok(())
}

/// Peak resident set (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Runs the agent binary and follows its peak RSS until `done` or exit.
async fn run_agent(
    args: &[&str],
    config: &std::path::Path,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<(Duration, u64)> {
    let mut child = tokio::process::Command::new(agent_exe()?)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting eures-sync (build it with --release first)")?;
    let pid = child.id().context("pid")?;
    let started = Instant::now();
    let mut peak = 0;
    loop {
        peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        if done() {
            break;
        }
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "eures-sync {args:?} failed: {status}");
            break;
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "eures-sync {args:?} did not finish within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    if child.try_wait()?.is_none() {
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()?;
        child.wait().await?;
    }
    Ok((took, peak))
}

async fn scale(postings: u64) -> anyhow::Result<()> {
    let rig = Rig::new(32, 100).await?;
    for i in 1..=postings {
        rig.jobag.upsert(sample_posting(i));
    }
    let config = rig.dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[jobag]\nbase_url = \"{}\"\npage_size = 500\npoll_interval_ms = 100\n\
             [eures]\nbase_url = \"{}\"\n[reconcile]\ninterval_s = 0\n[http]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\nlevel = \"error\"\n",
            rig.config.database.url,
            rig.jobag.base_url(),
            rig.eures.base_url()
        ),
    )?;
    let (took, worker_peak) = run_agent(&["run"], &config, Duration::from_secs(3600), || {
        rig.eures.len() as u64 == postings
    })
    .await?;
    println!(
        "| worker building a {postings}-posting ledger: backfill / peak RSS | {:.0} postings/s / {:.1} MiB | ≤ 64 MiB |",
        postings as f64 / took.as_secs_f64(),
        worker_peak as f64 / 1024.0
    );
    let (took, reconcile_peak) = run_agent(
        &["reconcile", "--dry-run"],
        &config,
        Duration::from_secs(3600),
        || false,
    )
    .await?;
    println!(
        "| reconcile of {postings} postings (JobAG snapshot + EURES listing + ledger) / peak RSS | {:.1} s / {:.1} MiB | ≤ 60 s |",
        took.as_secs_f64(),
        reconcile_peak as f64 / 1024.0
    );
    Ok(())
}

/// A database of the bench's own, dropped at the end of a run.
struct PgDb {
    admin_url: String,
    name: String,
}

impl PgDb {
    async fn create(admin_url: &str, name: &str) -> anyhow::Result<PgDb> {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to {admin_url} (is PostgreSQL running?)"))?;
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut admin)
            .await?;
        let create = format!("CREATE DATABASE {name}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut admin)
            .await?;
        Ok(PgDb {
            admin_url: admin_url.to_string(),
            name: name.to_string(),
        })
    }

    fn url(&self) -> anyhow::Result<String> {
        let mut url = url::Url::parse(&self.admin_url)?;
        url.set_path(&self.name);
        Ok(url.into())
    }

    async fn drop(self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut admin)
            .await?;
        Ok(())
    }
}

/// `n` real worker processes on one PostgreSQL ledger converge a backlog;
/// EURES answers in 2 ms and counts requests for one posting that overlap.
async fn workers(postings: u64, max_workers: usize, admin_url: &str) -> anyhow::Result<()> {
    for n in 1..=max_workers {
        let db = PgDb::create(admin_url, &format!("eures_bench_{}", std::process::id())).await?;
        let jobag = JobagSim::start(JobagOptions::default()).await?;
        let eures = EuresSim::start(EuresOptions {
            check_content_rules: false,
            ..EuresOptions::default()
        })
        .await?;
        eures.set_faults(eures_sync_sims::eures::Faults {
            latency: Duration::from_millis(2),
            ..eures_sync_sims::eures::Faults::none()
        });
        for i in 1..=postings {
            jobag.upsert(sample_posting(i));
        }
        let url = db.url()?;
        let store = eures_sync::store::connect(&url).await?;
        store.migrate().await?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("worker.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{url}\"\n[jobag]\nbase_url = \"{}\"\npage_size = 500\npoll_interval_ms = 100\n\
                 [eures]\nbase_url = \"{}\"\nconcurrency = 16\n[reconcile]\ninterval_s = 0\n[http]\nlisten = \"127.0.0.1:0\"\n\
                 [log]\nformat = \"json\"\nlevel = \"error\"\n",
                jobag.base_url(),
                eures.base_url()
            ),
        )?;
        let mut children = Vec::new();
        for _ in 0..n {
            children.push(
                tokio::process::Command::new(agent_exe()?)
                    .args(["run", "--config"])
                    .arg(&config)
                    .stdout(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .context("starting eures-sync (build it with --release first)")?,
            );
        }
        let took = wait_until("workers", Duration::from_secs(1800), || {
            eures.len() as u64 == postings
        })
        .await;
        for child in &mut children {
            if let Some(pid) = child.id() {
                std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()?;
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        }
        drop(store);
        db.drop().await?;
        let took = took?;
        println!(
            "| {n} worker process(es) on PostgreSQL, {postings} postings | {:.0} postings/s, {} overlapping requests | overlaps 0 |",
            postings as f64 / took.as_secs_f64(),
            eures.overlaps()
        );
    }
    Ok(())
}

/// A document to render: the posting as JobAG sends it, and the same
/// posting with every character that sends HTML through the sanitizer
/// (`<`, `>`, `&`, no-break space, `\r`, NUL, BOM) replaced by a letter in
/// its description and application instructions. The second skips the
/// sanitizer and is otherwise the same work, so the difference of the two
/// is what the sanitizer costs inside the renderer. The plain variant also
/// pays for the renderer's plain-text check scanning the whole text (the
/// HTML one stops at its first `<`): well under a microsecond in a release
/// build, but in a debug build, where this crate is not optimised and the
/// sanitizer's dependencies are, it outweighs the sanitizer and the
/// difference comes out negative. Measure with `--release`.
struct RenderCase {
    name: String,
    id: String,
    fields: PostingFields,
    plain: PostingFields,
    settings: DocumentSettings,
}

fn live_fields(item: &serde_json::Value) -> Option<(String, PostingFields)> {
    match parse_change(item) {
        ParsedChange::Change(change) => match change.body {
            ChangeBody::Live(fields) => Some((change.id, *fields)),
            _ => None,
        },
        ParsedChange::Quarantined { .. } => None,
    }
}

fn without_markup(mut item: serde_json::Value) -> serde_json::Value {
    let plain = |s: &str| {
        s.chars()
            .map(|c| match c {
                '<' | '>' | '&' | '\u{a0}' | '\r' | '\0' | '\u{feff}' => 'x',
                c => c,
            })
            .collect::<String>()
    };
    if let Some(text) = item["description"].as_str() {
        item["description"] = json!(plain(text));
    }
    if let Some(text) = item["application"]["instructions"].as_str() {
        item["application"]["instructions"] = json!(plain(text));
    }
    item
}

fn render_case(name: String, mut item: serde_json::Value) -> anyhow::Result<Option<RenderCase>> {
    let mut settings = DocumentSettings::default();
    // A golden input may name the configuration it is rendered with.
    if let Some(wanted) = item.as_object_mut().and_then(|o| o.remove("_settings")) {
        if let Some(revision) = wanted["nace_revision"].as_str() {
            settings.nace_revision =
                NaceRevision::parse(revision).context("_settings.nace_revision")?;
        }
        if let Some(template) = wanted["posting_url_template"].as_str() {
            settings.posting_url_template = Some(template.to_string());
        }
    }
    let (Some((id, fields)), Some((_, plain))) =
        (live_fields(&item), live_fields(&without_markup(item)))
    else {
        return Ok(None);
    };
    let renders = render(&id, &fields, &settings).is_ok() && render(&id, &plain, &settings).is_ok();
    Ok(renders.then_some(RenderCase {
        name,
        id,
        fields,
        plain,
        settings,
    }))
}

/// The golden inputs (`fixtures/golden/NN-*.json` of the source tree this
/// binary was built from); none when that directory is not there.
fn golden_render_cases() -> anyhow::Result<Vec<RenderCase>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".json") && name.as_bytes().first().is_some_and(u8::is_ascii_digit)
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let item = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| path.display().to_string())?;
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        out.extend(render_case(name, item)?);
    }
    Ok(out)
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Per case: the median µs of a whole render, and of the same render
/// without markup; `rounds` of each, interleaved.
fn time_renders(cases: &[RenderCase], rounds: usize) -> Vec<(f64, f64)> {
    let mut whole = vec![Vec::with_capacity(rounds); cases.len()];
    let mut plain = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (i, case) in cases.iter().enumerate() {
            let started = Instant::now();
            let doc = render(&case.id, &case.fields, &case.settings);
            whole[i].push(started.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(doc.ok());
            let started = Instant::now();
            let doc = render(&case.id, &case.plain, &case.settings);
            plain[i].push(started.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(doc.ok());
        }
    }
    whole
        .iter_mut()
        .zip(plain.iter_mut())
        .map(|(w, p)| (median(w), median(p)))
        .collect()
}

fn render_rows(what: &str, cases: &[RenderCase], rounds: usize) {
    if cases.is_empty() {
        println!("| render, {what} | no documents | |");
        return;
    }
    let timed = time_renders(cases, rounds);
    let mut whole: Vec<f64> = timed.iter().map(|(w, _)| *w).collect();
    let mut sanitizer: Vec<f64> = timed.iter().map(|(w, p)| w - p).collect();
    let (worst, worst_at) = timed
        .iter()
        .zip(cases)
        .map(|((w, p), c)| (w - p, c.name.as_str()))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((f64::NAN, ""));
    let n = cases.len();
    println!(
        "| render, {what} ({n} documents, {rounds} rounds) | median {:.1} µs per document | |",
        median(&mut whole)
    );
    println!(
        "| HTML sanitizer inside it (render minus render of the same text without markup) | median {:.1} µs per document, at most {worst:.1} µs ({worst_at}) | |",
        median(&mut sanitizer)
    );
}

fn render_costs(rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(rounds > 0, "--rounds must be at least 1");
    render_rows("golden inputs", &golden_render_cases()?, rounds);
    let mut samples = Vec::new();
    for i in 1..=100 {
        let mut item = sample_posting(i);
        item["version"] = json!(1);
        item["updated_at"] = json!("2026-11-20T10:00:00Z");
        samples.extend(render_case(format!("sample {i}"), item)?);
    }
    render_rows("sample postings of the backfill", &samples, rounds);
    Ok(())
}

fn agent_exe() -> anyhow::Result<std::path::PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("bench binary directory")?
        .join("eures-sync"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let What::Sims { postings, expect } = args.what {
        return serve_sims(postings, expect).await;
    }
    println!("| measure | result | target |");
    println!("|---|---|---|");
    match args.what {
        What::Backfill {
            postings,
            concurrency,
        } => backfill(postings, concurrency).await?,
        What::Latency { backlog } => latency(backlog).await?,
        What::Scale { postings } => scale(postings).await?,
        What::Workers {
            postings,
            max_workers,
            admin_url,
        } => workers(postings, max_workers, &admin_url).await?,
        What::Render { rounds } => render_costs(rounds)?,
        What::Sims { .. } => unreachable!("served above"),
        What::All => {
            render_costs(2_000)?;
            backfill(100_000, 32).await?;
            latency(100_000).await?;
            scale(1_000_000).await?;
            workers(20_000, 3, "postgres://postgres@127.0.0.1:5432/test").await?;
        }
    }
    Ok(())
}
