//! The operator's command line (SPEC 4.4): argument parsing and dispatch.
//! Each command acts through the database, so it works while a worker runs.

mod demo;
mod inspect;
mod run;

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
    /// Counts by state, backlog, oldest pending age, last poll, quarantined items.
    Status {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One posting: desired vs delivered state, versions, attempts, last error.
    Inspect {
        /// The JobAG posting id.
        id: String,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command. Errors carry one line for the operator.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo { postings, db } => demo::run(postings, &db).await,
        command => {
            let config = Config::load(cli.config.as_deref())?;
            crate::telemetry::init_logs(config.log.format, &config.log.level);
            match command {
                Command::Run => run::run(config).await,
                Command::Migrate => {
                    let store = crate::store::connect(&config.database.url).await?;
                    store.migrate().await?;
                    println!("migrations applied");
                    Ok(())
                }
                Command::Status { json } => inspect::status(&config, json).await,
                Command::Inspect { id, json } => inspect::inspect(&config, &id, json).await,
                Command::Demo { .. } => unreachable!("handled above"),
            }
        }
    }
}
