//! The operator's command line (SPEC 4.4): argument parsing and dispatch.
//! Each command acts through the database, so it works while a worker runs.

mod backup;
#[cfg(feature = "simulators")]
mod demo;
mod inspect;
mod ops;
mod run;

#[cfg(feature = "simulators")]
mod sim;

pub use run::SHUTDOWN_DEADLINE;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// `--version`: the crate's version and the git commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("EURES_SYNC_BUILD_COMMIT"),
    ")"
);

/// The top-level help's closing notes: where the configuration comes
/// from, the token variables, the exit codes.
fn top_help() -> String {
    use crate::config::{
        DEFAULT_CONFIG_PATH, ENV_EURES_TOKEN, ENV_INPUT_API_TOKEN, ENV_JOBAG_TOKEN,
    };
    format!(
        "Configuration: --config PATH, else {DEFAULT_CONFIG_PATH} in the working directory \
         (built-in defaults when that file is missing). Any key can be set with \
         EURES_SYNC__SECTION__KEY, e.g. EURES_SYNC__DATABASE__URL.\n\
         Tokens: {ENV_JOBAG_TOKEN}, {ENV_EURES_TOKEN}, {ENV_INPUT_API_TOKEN} \
         (or the jobag.token_file, eures.token_file, eures.input_api_token_file keys).\n\
         Logs: log.level, or RUST_LOG when set.\n\
         Exit codes: 0 ok, 1 failure, 2 usage error (including a destructive command \
         without --yes when stdin is not a terminal).\n\n\
         Example:\n  eures-sync --config /etc/eures-sync/config.toml status"
    )
}

/// A refusal that is the caller's to fix on the command line: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `--older-than`: whole days, at least retention's minimum (as the
/// configuration's `retention.audit_days`).
fn retention_days(s: &str) -> Result<u32, String> {
    use crate::config::MIN_AUDIT_DAYS;
    let what = format!(
        "must be a whole number of days, at least {MIN_AUDIT_DAYS} (retention.audit_days' \
         minimum)"
    );
    match s.trim().parse::<u32>() {
        Ok(days) if days >= MIN_AUDIT_DAYS => Ok(days),
        _ => Err(what),
    }
}

/// A count of sample postings: a whole number, 0 or more.
#[cfg(feature = "simulators")]
fn count(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| "must be a whole number, 0 or more".to_owned())
}

#[derive(Debug, Parser)]
#[command(
    name = "eures-sync",
    version = VERSION,
    about = "Keeps EURES copies of JobAG job postings consistent with their source",
    after_help = top_help()
)]
pub struct Cli {
    /// Configuration file (TOML); every key can be overridden by
    /// EURES_SYNC__SECTION__KEY environment variables.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker: ingest the JobAG feed, deliver to EURES, expire
    /// postings, serve /metrics, until SIGTERM or SIGINT; then drain and exit 0.
    #[command(after_help = "Example:\n  eures-sync run --config /etc/eures-sync/config.toml")]
    Run,
    /// Run the whole story on the embedded default: a SQLite ledger and
    /// in-process JobAG and EURES simulators; prints what happened.
    #[cfg(feature = "simulators")]
    #[command(after_help = "Example:\n  eures-sync demo --postings 10")]
    Demo {
        /// How many sample postings to publish.
        #[arg(long, default_value_t = 25, value_parser = count)]
        postings: u64,
        /// Ledger file for the demo (recreated on every run).
        #[arg(long, default_value = "data/demo.db")]
        db: PathBuf,
    },
    /// Apply database migrations (stop the workers first), or list them.
    #[command(after_help = "Examples:\n  eures-sync migrate --status\n  eures-sync migrate")]
    Migrate {
        /// List applied migrations (with when) and pending ones; apply nothing.
        #[arg(long)]
        status: bool,
    },
    /// Copy the SQLite ledger to PATH, consistently, while a worker runs
    /// (a new file; checked before it gets its name). A PostgreSQL ledger
    /// is backed up with pg_dump.
    #[command(after_help = "Example:\n  eures-sync backup /var/backups/eures-sync/ledger.db")]
    Backup {
        /// Where the copy goes; must not exist.
        path: PathBuf,
    },
    /// Counts by state, backlog, oldest pending age, last poll, quarantined items.
    #[command(after_help = "Examples:\n  eures-sync status\n  eures-sync status --json")]
    Status {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One posting: desired vs delivered state, versions, attempts, last
    /// error, audit trail.
    #[command(after_help = "Example:\n  eures-sync inspect 4f1c2a9e --json")]
    Inspect {
        /// The JobAG posting id.
        id: String,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Force postings to be re-read from JobAG and re-delivered. Works while
    /// a worker runs: it is written to the database and the worker delivers.
    #[command(
        group(clap::ArgGroup::new("target").required(true).args(["posting", "employer", "all"])),
        after_help = "Examples:\n  eures-sync resync --posting 4f1c2a9e\n  \
                      eures-sync resync --all --dry-run\n  eures-sync resync --all --yes"
    )]
    Resync {
        /// Posting id (repeatable).
        #[arg(long, num_args = 1..)]
        posting: Vec<String>,
        /// Every posting of this employer (CVR number).
        #[arg(long)]
        employer: Option<String>,
        /// Every posting.
        #[arg(long)]
        all: bool,
        /// Only show what would be re-delivered (for --all: exactly what
        /// --all would queue, by kind).
        #[arg(long)]
        dry_run: bool,
        /// Do not ask before --all (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Accept JobAG's version even if it jumps more than 1,000,000 above
        /// the ledger's (such a change is quarantined as implausible until
        /// an operator has checked it in JobAG).
        #[arg(long, conflicts_with_all = ["employer", "all"])]
        accept_version: bool,
    },
    /// Three-way diff of the JobAG snapshot, the ledger and the EURES
    /// listing; prints the differences and queues repairs unless --dry-run.
    #[command(after_help = "Examples:\n  eures-sync reconcile --dry-run\n  eures-sync reconcile")]
    Reconcile {
        /// Only print the differences; repair nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Creates and updates EURES rejected permanently (or that ran out of attempts).
    #[command(
        after_help = "Examples:\n  eures-sync dead-letters list\n  eures-sync dead-letters retry --all"
    )]
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// What was transferred to EURES and when (an insight request), as JSON.
    #[command(
        group(clap::ArgGroup::new("whom").required(true).args(["posting", "employer"])),
        after_help = "Examples:\n  eures-sync export --posting 4f1c2a9e\n  \
                      eures-sync export --employer 12345678"
    )]
    Export {
        /// The JobAG posting id.
        #[arg(long)]
        posting: Option<String>,
        /// Every posting of this employer (CVR number).
        #[arg(long)]
        employer: Option<String>,
    },
    /// Apply retention: delete audit rows, tombstones and quarantine records
    /// older than retention.audit_days (or --older-than, at least 1);
    /// tombstones are kept at least 90 days whatever the retention.
    #[command(
        after_help = "Examples:\n  eures-sync purge --dry-run\n  eures-sync purge --older-than 365 --yes"
    )]
    Purge {
        /// Age in days beyond which records go (default: retention.audit_days).
        #[arg(long, value_name = "DAYS", value_parser = retention_days)]
        older_than: Option<u32>,
        /// Only count what would be deleted, by kind; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Run the JobAG and EURES simulators for local development (the
    /// default config points at them) until Ctrl-C.
    #[cfg(feature = "simulators")]
    #[command(after_help = "Example:\n  eures-sync sim --postings 500")]
    Sim {
        /// Where the JobAG simulator listens (IP:PORT).
        #[arg(long, default_value = "127.0.0.1:8081", value_name = "IP:PORT")]
        jobag_listen: std::net::SocketAddr,
        /// Where the EURES simulator listens (IP:PORT).
        #[arg(long, default_value = "127.0.0.1:8082", value_name = "IP:PORT")]
        eures_listen: std::net::SocketAddr,
        /// Sample postings to publish at start.
        #[arg(long, default_value_t = 100, value_parser = count)]
        postings: u64,
    },
    /// Print a shell completion script to stdout.
    #[command(
        after_help = "Example:\n  eures-sync completions bash > /etc/bash_completion.d/eures-sync"
    )]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout.
    #[command(after_help = "Example:\n  eures-sync man > eures-sync.1 && man ./eures-sync.1")]
    Man,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// List them.
    #[command(after_help = "Example:\n  eures-sync dead-letters list --json")]
    List {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Try them again (named ids, or --all).
    #[command(
        group(clap::ArgGroup::new("which").required(true).args(["ids", "all"])),
        after_help = "Examples:\n  eures-sync dead-letters retry 4f1c2a9e\n  \
                      eures-sync dead-letters retry --all"
    )]
    Retry {
        /// Posting ids of dead letters.
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// Runs the parsed command. Errors carry one line for the operator.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        #[cfg(feature = "simulators")]
        Command::Demo { postings, db } => demo::run(postings, &db).await,
        #[cfg(feature = "simulators")]
        Command::Sim {
            jobag_listen,
            eures_listen,
            postings,
        } => sim::run(jobag_listen, eures_listen, postings).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "eures-sync", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(())
        }
        command => {
            let config = Config::load(cli.config.as_deref())?;
            // Only the worker logs as configured; a one-shot command keeps
            // stderr for plain lines a person reads (warnings and its
            // one-line error), never JSON.
            match command {
                Command::Run => crate::telemetry::init_logs(config.log.format, &config.log.level),
                _ => plain_logs(),
            }
            match command {
                Command::Run => run::run(config, cli.config.as_deref()).await,
                Command::Migrate { status } => ops::migrate(&config, status).await,
                Command::Backup { path } => backup::run(&config, &path).await,
                Command::Status { json } => inspect::status(&config, json).await,
                Command::Inspect { id, json } => inspect::inspect(&config, &id, json).await,
                Command::Resync {
                    posting,
                    employer,
                    all,
                    dry_run,
                    yes,
                    accept_version,
                } => {
                    let target = if all {
                        ops::ResyncTarget::All
                    } else if let Some(cvr) = employer {
                        ops::ResyncTarget::Employer(cvr)
                    } else {
                        ops::ResyncTarget::Postings {
                            ids: posting,
                            accept_version,
                        }
                    };
                    if all && !dry_run {
                        confirm("re-deliver every posting JobAG has", "resync --all", yes)?;
                    }
                    ops::resync(&config, target, dry_run).await
                }
                Command::Reconcile { dry_run } => ops::reconcile(&config, dry_run).await,
                Command::DeadLetters { action } => match action {
                    DeadLetterAction::List { json } => ops::dead_letters_list(&config, json).await,
                    DeadLetterAction::Retry { ids, all } => {
                        ops::dead_letters_retry(&config, (!all).then_some(ids)).await
                    }
                },
                Command::Export { posting, employer } => {
                    ops::export(&config, posting, employer).await
                }
                Command::Purge {
                    older_than,
                    dry_run,
                    yes,
                } => ops::purge(&config, older_than, dry_run, yes).await,
                #[cfg(feature = "simulators")]
                Command::Demo { .. } | Command::Sim { .. } => unreachable!("handled above"),
                Command::Completions { .. } | Command::Man => unreachable!("handled above"),
            }
        }
    }
}

/// Asks before a destructive command: `yes` skips the question; without
/// it, a stdin that is not a terminal is a usage error (a script must say
/// `--yes`), and on a terminal only `y` or `yes` goes on.
pub(crate) fn confirm(what: &str, command: &str, yes: bool) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError(format!(
            "`{command}` would {what}; add --yes to do it without a terminal to ask on"
        ))
        .into());
    }
    eprint!("This will {what}. Go on? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        anyhow::bail!("not confirmed; nothing changed")
    }
}

/// A one-shot command's log: warnings and errors as plain lines on stderr
/// (level and message, no time, no target, no JSON); `RUST_LOG` still
/// decides what is shown.
fn plain_logs() {
    use std::io::IsTerminal;
    let filter = crate::telemetry::log_filter(std::env::var("RUST_LOG").ok().as_deref(), "warn");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .try_init();
}
