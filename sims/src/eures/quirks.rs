//! Per-reference behaviours of real gateways: a document the portal keeps
//! failing on while every other request passes, tombstones of deleted
//! references, and PUTs held before they are applied.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use hyper::{Response, StatusCode};

use super::{EuresSim, Shared, lock};
use crate::error_body;

/// A PUT a gateway applies later.
#[derive(Clone, Copy)]
pub(super) struct Hold {
    /// How long after its arrival the PUT is applied.
    pub(super) after: Duration,
    /// `202 Accepted` at once, instead of the answer once applied.
    pub(super) accepted_at_once: bool,
}

/// What a gateway does to some references only, and what it remembers
/// of deleted ones.
#[derive(Default)]
pub(super) struct Quirks {
    /// References whose PUT and DELETE are answered with this status,
    /// nothing applied (a document that breaks the portal).
    failing: HashMap<String, u16>,
    /// A gateway that keeps no tombstones: a late PUT after a DELETE
    /// creates the copy again.
    no_tombstones: bool,
    /// The highest `X-Source-Version` each reference was deleted with: a
    /// PUT at or below it is answered `409` (SPEC 4.2).
    tombstones: HashMap<String, u64>,
    /// The next PUT of each reference is held this long before it is
    /// applied, answered or not.
    holds: HashMap<String, Hold>,
    /// The next DELETE of each reference is held this long before it is
    /// applied, answered or not.
    delete_holds: HashMap<String, Duration>,
    /// References whose held PUT is waiting now.
    holding: HashMap<String, u32>,
    /// When the last held PUT of each reference was applied.
    held_applied: HashMap<String, Instant>,
}

impl EuresSim {
    /// Answers every PUT and DELETE of `reference` with `status` (nothing
    /// applied) while every other request is served; `None` ends it.
    pub fn fail_reference(&self, reference: &str, status: Option<u16>) {
        let mut quirks = lock(&self.shared.quirks);
        match status {
            Some(s) => quirks.failing.insert(reference.to_owned(), s),
            None => quirks.failing.remove(reference),
        };
    }
}

impl EuresSim {
    /// Turns tombstones off (a gateway that keeps none, so a late PUT of
    /// an older version after a DELETE recreates the copy) or on again.
    pub fn set_tombstones(&self, keep: bool) {
        lock(&self.shared.quirks).no_tombstones = !keep;
    }

    /// Holds the next PUT of `reference` for `hold` before applying it,
    /// whether or not the client is still waiting for the answer.
    pub fn hold_next_put(&self, reference: &str, hold: Duration) {
        self.hold(reference, hold, false);
    }

    /// Answers the next PUT of `reference` with `202 Accepted` at once and
    /// applies it `after` later, as a gateway that queues its work does.
    pub fn accept_next_put_later(&self, reference: &str, after: Duration) {
        self.hold(reference, after, true);
    }

    fn hold(&self, reference: &str, after: Duration, accepted_at_once: bool) {
        lock(&self.shared.quirks).holds.insert(
            reference.to_owned(),
            Hold {
                after,
                accepted_at_once,
            },
        );
    }

    /// Holds the next DELETE of `reference` for `hold` before applying it,
    /// whether or not the client is still waiting for the answer.
    pub fn hold_next_delete(&self, reference: &str, hold: Duration) {
        lock(&self.shared.quirks)
            .delete_holds
            .insert(reference.to_owned(), hold);
    }

    /// Whether a held PUT or DELETE of `reference` is waiting now.
    pub fn is_holding(&self, reference: &str) -> bool {
        lock(&self.shared.quirks).holding.contains_key(reference)
    }

    /// When the last held PUT of `reference` was applied.
    pub fn held_put_applied(&self, reference: &str) -> Option<Instant> {
        lock(&self.shared.quirks)
            .held_applied
            .get(reference)
            .copied()
    }
}

pub(super) fn tombstone(shared: &Shared, reference: &str) -> Option<u64> {
    let quirks = lock(&shared.quirks);
    if quirks.no_tombstones {
        return None;
    }
    quirks.tombstones.get(reference).copied()
}

pub(super) fn keep_tombstone(shared: &Shared, reference: &str, version: u64) {
    let mut quirks = lock(&shared.quirks);
    let v = quirks.tombstones.entry(reference.to_owned()).or_insert(0);
    *v = (*v).max(version);
}

/// The hold set for the next PUT of `reference`, taken (one PUT only).
pub(super) fn take_hold(shared: &Shared, reference: &str) -> Option<Hold> {
    let mut quirks = lock(&shared.quirks);
    let hold = quirks.holds.remove(reference)?;
    *quirks.holding.entry(reference.to_owned()).or_insert(0) += 1;
    Some(hold)
}

pub(super) fn take_delete_hold(shared: &Shared, reference: &str) -> Option<Duration> {
    let mut quirks = lock(&shared.quirks);
    let hold = quirks.delete_holds.remove(reference)?;
    *quirks.holding.entry(reference.to_owned()).or_insert(0) += 1;
    Some(hold)
}

/// A held PUT has been applied (or refused): it no longer counts as held.
pub(super) fn release_hold(shared: &Shared, reference: String, applied: bool) {
    let mut quirks = lock(&shared.quirks);
    if let Some(n) = quirks.holding.get_mut(&reference) {
        *n -= 1;
        if *n == 0 {
            quirks.holding.remove(&reference);
        }
    }
    if applied {
        quirks.held_applied.insert(reference, Instant::now());
    }
}

/// The answer a quirk gives instead of a PUT or DELETE of `reference`, if
/// any.
pub(super) fn quirk_answer(shared: &Shared, reference: &str) -> Option<Response<Body>> {
    let code = *lock(&shared.quirks).failing.get(reference)?;
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(error_body(
        status,
        "",
        "simulated failure of this reference",
    ))
}
