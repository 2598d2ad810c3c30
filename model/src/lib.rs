//! A model of eures-sync's per-posting protocol, checked exhaustively
//! within small bounds (issue 26).
//!
//! Every transition of the model is a call into the production code: the
//! ledger planner (`apply_change`, `apply_outcome`, `abandon`, `expire`,
//! `source_gone`, `observe_remote`, `Entry::due`...) and the guards the
//! store and the engine take their decisions with
//! (`eures_sync_domain::ledger::guards`). What the model adds is only the
//! world around them: JobAG, the feed, the clocks, the workers, the
//! network, the portal, the poller. So it cannot drift from the code: a
//! change to a guard or a transition changes what is checked.
//!
//! Three models, because one would multiply state spaces that share
//! nothing: push-mode delivery (leases, sends, answers, strikes,
//! verification), reconcile and resync against the feed (the source
//! guard, the unseen judgement) and the pull-mode exchange (stamps,
//! commit order, the consistent cut).
//!
//! # Why a checker of our own rather than `stateright`
//!
//! Breadth-first search over a hash set of states, with parent links for
//! traces, is about 250 lines ([`bfs`]). What the checks need beyond
//! that, stateright does not give directly: convergence "once faults
//! stop" is a property of the whole graph (every state where only faults
//! are enabled must be converged) and "no spin loops" is acyclicity of the
//! graph, both exact here because each fault has a budget and the clock
//! only moves forward, so the reachable graph is finite and every cycle is
//! a genuine loop of the protocol. stateright's `eventually` properties
//! are checked on paths to terminal states only and would not see a
//! cycle. A dependency-free checker also compiles in seconds on a machine
//! shared by several builds, and its traces print the planner's own
//! records.
//!
//! # Defects
//!
//! [`Defect`] swaps one guard for the behaviour of today's main; the tests
//! in `tests/checks.rs` assert that each one is found, with its trace, and
//! that the model with every guard in place has no violation.

pub mod bfs;
pub mod delivery;
pub mod exchange;
pub mod reconcile;

/// A known defect of today's main, put back into the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Defect {
    /// (1) `getChanges` lists every change at or after `ts`, with no upper
    /// bound fixed when the call starts.
    ExchangeWithoutCut,
    /// (2) Reconcile and `resync --all` apply a source version without
    /// the implausible-jump check, and the feed's quarantine of an
    /// implausible deletion or withdrawal leaves the copy.
    SourceGuardBypassed,
    /// (3) A reconcile run's start is read from the process clock and
    /// compared with the ledger's stamps.
    RunStartFromProcessClock,
    /// (4) A claimed operation is sent however little of its lease is left.
    SendWithoutLeaseCheck,
    /// (5) Strikes compare the worker's process-clock time of the last
    /// answer with the ledger's stamp of the previous attempt.
    StrikesTwoClocks,
    /// (6) A `202 Accepted` to a PUT is taken as done and not in doubt
    /// (found by this model; `src/eures/classify.rs`).
    AcceptedAsDone,
}
