//! `eures-sync` keeps EURES copies of JobAG job postings consistent with their
//! source: it converges, per posting, what EURES should hold (desired) and what
//! EURES acknowledged (delivered).
//!
//! Layout:
//! - [`domain`]: pure logic (posting model, eligibility, HR-XML rendering,
//!   the per-posting ledger planner). No IO, no clock reads.
//! - [`source`]: the JobAG feed client.
//! - [`deliver`]: the EURES push client, response classification, retry schedule.
//! - [`store`]: the ledger (SQLite, PostgreSQL); the only place that writes SQL.
//! - [`engine`]: the worker loops (ingest, deliver, expire, reconcile).
//! - [`http`]: metrics, health and the Input API (pull mode).
//! - [`sim`]: JobAG and EURES simulators for tests, the demo and benchmarks.
//! - [`config`], [`telemetry`], [`cli`]: process wiring.

pub mod cli;
pub mod config;
pub mod deliver;
pub mod domain;
pub mod engine;
pub mod http;
pub mod sim;
pub mod source;
pub mod store;
pub mod telemetry;
