//! The operator's command line (SPEC 4.4): argument parsing and dispatch.
//! Each command acts through the database, so it works while a worker runs.

mod backup;
mod demo;
mod inspect;
mod ops;
mod run;

pub use run::SHUTDOWN_DEADLINE;
mod sim;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "eures-sync",
    version,
    about = "Keeps EURES copies of JobAG job postings consistent with their source"
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
    Run,
    /// Run the whole story on the embedded default: a SQLite ledger and
    /// in-process JobAG and EURES simulators; prints what happened.
    Demo {
        /// How many sample postings to publish.
        #[arg(long, default_value_t = 25)]
        postings: u64,
        /// Ledger file for the demo (recreated on every run).
        #[arg(long, default_value = "data/demo.db")]
        db: PathBuf,
    },
    /// Apply database migrations.
    Migrate,
    /// Copy the SQLite ledger to PATH, consistently, while a worker runs
    /// (a new file; checked before it gets its name). A PostgreSQL ledger
    /// is backed up with pg_dump.
    Backup {
        /// Where the copy goes; must not exist.
        path: PathBuf,
    },
    /// Counts by state, backlog, oldest pending age, last poll, quarantined items.
    Status {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One posting: desired vs delivered state, versions, attempts, last
    /// error, audit trail.
    Inspect {
        /// The JobAG posting id.
        id: String,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Force postings to be re-read from JobAG and re-delivered. Works while
    /// a worker runs: it is written to the database and the worker delivers.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["posting", "employer", "all"])))]
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
        /// Only show what would be re-delivered.
        #[arg(long)]
        dry_run: bool,
        /// Accept JobAG's version even if it jumps more than 1,000,000 above
        /// the ledger's (such a change is quarantined as implausible until
        /// an operator has checked it in JobAG).
        #[arg(long, conflicts_with_all = ["employer", "all"])]
        accept_version: bool,
    },
    /// Three-way diff of the JobAG snapshot, the ledger and the EURES
    /// listing; prints the differences and queues repairs unless --dry-run.
    Reconcile {
        #[arg(long)]
        dry_run: bool,
    },
    /// Creates and updates EURES rejected permanently (or that ran out of attempts).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// What was transferred to EURES and when (an insight request), as JSON.
    #[command(group(clap::ArgGroup::new("whom").required(true).args(["posting", "employer"])))]
    Export {
        #[arg(long)]
        posting: Option<String>,
        #[arg(long)]
        employer: Option<String>,
    },
    /// Apply retention: delete audit rows, tombstones and quarantine records
    /// older than retention.audit_days (or --older-than, at least 1);
    /// tombstones are kept at least 90 days whatever the retention.
    Purge {
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..))]
        older_than: Option<u32>,
    },
    /// Run the JobAG and EURES simulators for local development (the
    /// default config points at them) until Ctrl-C.
    Sim {
        #[arg(long, default_value = "127.0.0.1:8081")]
        jobag_listen: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8082")]
        eures_listen: std::net::SocketAddr,
        /// Sample postings to publish at start.
        #[arg(long, default_value_t = 100)]
        postings: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// List them.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Try them again (named ids, or --all).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "all"])))]
    Retry {
        ids: Vec<String>,
        #[arg(long)]
        all: bool,
    },
}

/// Runs the parsed command. Errors carry one line for the operator.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo { postings, db } => demo::run(postings, &db).await,
        Command::Sim {
            jobag_listen,
            eures_listen,
            postings,
        } => sim::run(jobag_listen, eures_listen, postings).await,
        command => {
            let config = Config::load(cli.config.as_deref())?;
            // Only the worker logs at the configured level; a one-shot
            // command keeps stderr for its one-line error.
            let level = match command {
                Command::Run => config.log.level.as_str(),
                _ => "warn",
            };
            crate::telemetry::init_logs(config.log.format, level);
            match command {
                Command::Run => run::run(config, cli.config.as_deref()).await,
                Command::Migrate => {
                    let store = crate::store::connect(&config.database.url).await?;
                    store.migrate().await?;
                    println!("migrations applied");
                    Ok(())
                }
                Command::Backup { path } => backup::run(&config, &path).await,
                Command::Status { json } => inspect::status(&config, json).await,
                Command::Inspect { id, json } => inspect::inspect(&config, &id, json).await,
                Command::Resync {
                    posting,
                    employer,
                    all,
                    dry_run,
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
                Command::Purge { older_than } => ops::purge(&config, older_than).await,
                Command::Demo { .. } | Command::Sim { .. } => unreachable!("handled above"),
            }
        }
    }
}
