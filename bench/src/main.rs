//! `eures-sync-bench`: the SPEC 7 targets, measured against the project's
//! own simulators on loopback and printed as a table.
//!
//! `cargo run --release --bin eures-sync-bench -- all` runs everything at
//! full size; `--postings N` shrinks the backfill for a smoke run, `render
//! --rounds N` the rendering measure.

mod backfill;
mod latency;
mod render;
mod rig;
mod scale;
mod workers;

use clap::{Parser, Subcommand};

use backfill::backfill;
use latency::latency;
use render::render_costs;
use rig::serve_sims;
use scale::scale;
use workers::workers;

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
