//! Pure domain logic: the posting model, eligibility (desired state), the
//! HR-XML renderer and the per-posting ledger planner.
//!
//! Nothing here does IO, awaits, or reads the clock: time is a parameter. That
//! is what lets the property tests drive it with random event sequences.
//!
//! A crate of its own because the simulators check documents against the
//! same code lists and render sample documents, and must not depend on the
//! agent (which links them for `demo`); the agent re-exports it as
//! `eures_sync::domain`.

pub mod codes;
pub mod eligibility;
pub mod ledger;
pub mod posting;
pub mod render;
