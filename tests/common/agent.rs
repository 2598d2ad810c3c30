//! The real binary as a child process: one way to start it, stop it and read
//! its log. A child is killed when its [`Agent`] is dropped, so a test that
//! fails half-way leaves no worker running into the next test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a started binary may take to log its listen address.
const START_UP: Duration = Duration::from_secs(30);

/// `eures-sync` with a clean environment for its log settings.
pub fn eures_sync() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eures-sync"));
    cmd.env_remove("RUST_LOG").env_remove("RUST_BACKTRACE");
    cmd
}

/// Runs a command of the binary to its end: `args`, then `--config <config>`.
pub fn cli(config: &Path, args: &[&str]) -> Output {
    eures_sync()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run eures-sync")
}

/// `eures-sync run` in a child process, its stderr (the log) in a file.
pub struct Agent {
    child: Child,
    /// The configuration file it was started with (for CLI commands);
    /// empty when started from a command line of the test's own.
    pub config: PathBuf,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Agent {
    /// Starts `eures-sync run --config <config>`, logging to `log`.
    pub fn spawn(config: &Path, log: &Path) -> Agent {
        let mut cmd = eures_sync();
        cmd.args(["run", "--config"]).arg(config);
        let mut agent = Agent::start(cmd, log);
        agent.config = config.to_owned();
        agent
    }

    /// Starts `cmd` (made by [`eures_sync`], with its arguments and
    /// environment), logging to `log`.
    pub fn start(mut cmd: Command, log: &Path) -> Agent {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start eures-sync");
        Agent {
            child,
            config: PathBuf::new(),
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTP listener's address, from the start-up log line (JSON logs).
    pub fn listen(&mut self) -> String {
        let started = Instant::now();
        loop {
            let log = self.log_text();
            if let Some(addr) = log
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|v| v["fields"]["listen"].as_str().map(str::to_string))
            {
                return addr;
            }
            if let Some(status) = self.exited() {
                panic!("eures-sync exited ({status}) before listening: {log}");
            }
            assert!(
                started.elapsed() < START_UP,
                "eures-sync did not start in {START_UP:?}: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its exit status, when it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for eures-sync")
    }

    /// Panics with its log when it has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.exited() {
            panic!("eures-sync exited ({status}): {}", self.log_text());
        }
    }

    /// kill -9, and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits at most `timeout` for it to exit; kills it and panics if it
    /// does not.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if started.elapsed() > timeout {
                self.kill();
                panic!("eures-sync did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Agent::wait_exit`] for a test without a runtime.
    pub fn wait_exit_blocking(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if started.elapsed() > timeout {
                self.kill();
                panic!("eures-sync did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then its exit status.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal_term();
        self.wait_exit(timeout).await
    }

    /// SIGTERM, asserts exit 0 within 60 s, and returns the log.
    pub async fn stop(mut self) -> String {
        let status = self.terminate(Duration::from_secs(60)).await;
        assert!(
            status.success(),
            "eures-sync exited with {status}: {}",
            self.log_text()
        );
        self.log_text()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}
