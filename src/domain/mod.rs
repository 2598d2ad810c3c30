//! Pure domain logic: the posting model, eligibility (desired state), the
//! HR-XML renderer and the per-posting ledger planner.
//!
//! Nothing here does IO, awaits, or reads the clock: time is a parameter. That
//! is what lets the property tests drive it with random event sequences.

pub mod codes;
pub mod eligibility;
pub mod ledger;
pub mod posting;
pub mod render;
