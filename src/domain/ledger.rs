//! Per-posting ledger planner.
