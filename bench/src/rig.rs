//! What every measure runs on: the simulators (in this process or in a
//! child of their own), the agent's configuration and worker, and the
//! clocks (wall, CPU) the measures read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use eures_sync::config::Config;
use eures_sync::engine::Worker;
use eures_sync_sims::eures::{EuresOptions, EuresSim};
use eures_sync_sims::jobag::{JobagOptions, JobagSim, sample_posting};
use figment::Figment;
use figment::providers::{Format, Toml};
use tokio::sync::watch;

pub(crate) struct Rig {
    pub(crate) jobag: JobagSim,
    pub(crate) eures: EuresSim,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: Config,
}

impl Rig {
    pub(crate) async fn new(concurrency: usize, poll_ms: u64) -> anyhow::Result<Rig> {
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

    pub(crate) async fn worker(&self) -> anyhow::Result<RunningWorker> {
        start_worker(&self.config).await
    }
}

pub(crate) type RunningWorker = (
    Arc<Worker>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// The agent's configuration for a bench run: a SQLite ledger in `dir`, the
/// two simulators, no reconcile.
pub(crate) fn agent_config(
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

pub(crate) async fn start_worker(config: &Config) -> anyhow::Result<RunningWorker> {
    let store = eures_sync::store::connect(&config.database.url).await?;
    store.migrate().await?;
    let worker = Arc::new(Worker::from_config(config, store)?);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(worker.clone().run(rx));
    Ok((worker, tx, task))
}

/// Both simulators in a child process (`eures-sync-bench sims`), so that
/// the CPU this process spends is the agent's (or the bare loop's) alone.
pub(crate) struct SimProcess {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    pub(crate) jobag_url: String,
    pub(crate) eures_url: String,
}

impl SimProcess {
    /// Starts the simulators with `postings` sample postings in the feed; the
    /// child reports when EURES holds `expect` copies.
    pub(crate) async fn start(postings: u64, expect: usize) -> anyhow::Result<SimProcess> {
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
    pub(crate) async fn held(&mut self, limit: Duration) -> anyhow::Result<()> {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .context("EURES did not hold every copy in time")??
            .context("simulators' process ended")?;
        anyhow::ensure!(line.starts_with("held "), "unexpected line {line:?}");
        Ok(())
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        self.child.wait().await?;
        Ok(())
    }
}

/// The child's side of [`SimProcess`]: serves both simulators, prints their
/// URLs, prints `held N` once EURES holds `expect` copies, and ends when its
/// stdin closes.
pub(crate) async fn serve_sims(postings: u64, expect: usize) -> anyhow::Result<()> {
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

pub(crate) async fn wait_until(
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
pub(crate) fn cpu_seconds() -> Option<f64> {
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
pub(crate) struct Spent {
    pub(crate) wall: f64,
    pub(crate) cpu: Option<f64>,
}

impl Spent {
    /// `"µs of CPU per item, share of the cores busy"`.
    pub(crate) fn describe(&self, items: u64) -> String {
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

pub(crate) fn agent_exe() -> anyhow::Result<std::path::PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("bench binary directory")?
        .join("eures-sync"))
}
