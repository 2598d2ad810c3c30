//! `eures-sync` keeps EURES copies of JobAG job postings consistent with their
//! source: it converges, per posting, what EURES should hold (desired) and what
//! EURES acknowledged (delivered).
//!
//! Layout:
//! - [`domain`] (the `eures-sync-domain` crate, `domain/`): pure logic
//!   (posting model, eligibility, HR-XML rendering, the per-posting ledger
//!   planner). No IO, no clock reads.
//! - [`jobag`]: the JobAG feed client.
//! - [`eures`]: the EURES push client, response classification, retry schedule.
//! - [`http_client`]: the reqwest set-up both clients share (base URLs, TLS
//!   roots, token header) and their error texts.
//! - [`store`]: the ledger (SQLite, PostgreSQL); the only place that writes SQL.
//! - [`engine`]: the worker loops (feed, delivery, expiry, leader, reconcile).
//! - [`http`]: metrics, health and the Input API (pull mode).
//! - [`loopback`]: what counts as this machine (plain links only to it).
//! - [`printable`]: remote text made safe to show (control characters escaped).
//! - [`config`], [`telemetry`], [`cli`]: process wiring.
//!
//! The JobAG and EURES simulators are the `eures-sync-sims` crate (`sims/`),
//! linked into the binary only with the default `simulators` feature (for
//! `demo` and `sim`); a production build leaves it out.

pub mod cli;
pub mod config;
pub mod engine;
pub mod eures;
pub mod http;
pub mod http_client;
pub mod jobag;
pub mod loopback;
pub mod printable;
pub mod store;
pub mod telemetry;

/// The pure domain logic lives in its own crate, which the simulators share.
pub use eures_sync_domain as domain;
