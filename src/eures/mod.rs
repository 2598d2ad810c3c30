//! Delivery to a EURES push endpoint (SPEC 4.2).
//!
//! Owns the only HTTP client to EURES ([`client`]), the pure classification
//! of its answers into the domain's [`Outcome`] ([`classify`]) and the pure retry
//! schedule ([`schedule`]). It never decides *what* to send (that is the
//! ledger's diff), never persists anything, never retries on its own and
//! never logs a token or a document: one call in, one classified outcome out.

pub mod classify;
pub mod client;
pub mod schedule;

pub use crate::http_client::SetupError;
pub use classify::{
    MAX_RETRY_AFTER, Outcome, classify_delete, classify_get, classify_put, parse_retry_after,
};
pub use client::{Attempt, EuresClient, ListPage, ListedVacancy, VacancyPut};
pub use schedule::{RetryPolicy, backoff_ceiling, backoff_delay};
