//! The worker and its loops, one per file: the feed (`feed`), delivery of
//! due operations (`delivery`), expiry on time (`expiry`), leadership
//! (`leader`) and reconcile (`reconcile`); `worker` starts them and stops
//! them together. The loops talk to one another only through the store,
//! the worker's shared [`Health`] and its wake-up signals; none holds
//! postings in memory beyond one page or the operations delivery has
//! claimed. Nothing here writes SQL (that is `store/`) or speaks HTTP
//! itself (that is `jobag/` and `eures/`).
//!
//! Several workers may share one PostgreSQL ledger. All of them deliver
//! (the store's leases keep one posting with one worker at a time) and
//! expire what is due; only the leader ingests the feed and runs
//! reconcile. Other processes' commits that make work due wake the
//! delivery loop through [`Store::watch_wakeups`](crate::store::Store::watch_wakeups).

mod delivery;
mod expiry;
pub mod feed;
mod leader;
pub mod reconcile;
mod worker;

pub use feed::{REREAD_RETRY, UnusablePosting};
pub use worker::{Health, LEADER_TTL, Settings, VERIFY_MARGIN, Worker, now_ms};
