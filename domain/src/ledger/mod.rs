//! The per-posting ledger planner: how one posting's record moves when a feed
//! change arrives, when a delivery attempt ends, when time passes, and when
//! reconcile observes what EURES really holds.
//!
//! A record keeps two facts, `desired` (what EURES should hold) and
//! `delivered` (what EURES acknowledged); the operation due is their
//! difference and is never stored as a command. Every function here is pure:
//! the store loads a record, calls one of them, and writes the result back in
//! the same transaction. The store must never decide anything itself.
//!
//! The record itself, its facts and what follows from them alone, is in
//! `record` (re-exported here); this file holds the transitions. The
//! decisions taken around them by the store and the engine (claims,
//! fencing, the source guard, strikes, the exchange cut) are in `guards`,
//! re-exported here too.

use std::time::Duration;

use super::eligibility::{Desired, EXPIRED};

pub mod guards;
mod outcome;
mod record;

pub use guards::{
    Cut, Lease, SEND_MARGIN_MS, SourceVerdict, apply_source, claimable, counts_as_strike,
    holds_lease, lease_expired, may_judge_unseen, may_send, removes_for_privacy,
};
pub use outcome::{AttemptResult, Failure, Hold, Outcome, Verdict, Wait};
pub use record::{
    Content, Delivered, DesiredState, Doubt, Entry, Exchange, Mode, Op, Retry, StateLabel,
};

/// Reason code of a posting deleted in JobAG.
pub const DELETED: &str = "deleted";

/// A feed change (or an operator's re-read) after eligibility.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: String,
    pub version: u64,
    pub updated_at_ms: Option<i64>,
    pub employer_cvr: Option<String>,
    pub desired: Desired,
}

/// Eligibility was judged when the change was read; `publication_end`
/// may have passed before it is written (a slow page, a wait for the
/// ledger): judged again against the time of the write.
fn still_available(desired: DesiredState, now_ms: i64) -> DesiredState {
    match desired {
        DesiredState::Present {
            publication_end_ms, ..
        } if publication_end_ms <= now_ms => DesiredState::Absent {
            reason: EXPIRED.into(),
        },
        other => other,
    }
}

/// How far above the ledger's version a feed version may be before it is
/// taken for a defect of the source instead of an edit: accepted, such a
/// version would make every later real edit look stale and freeze the
/// posting (SPEC 4.1).
pub const IMPLAUSIBLE_JUMP: u64 = 1_000_000;

/// The change's version jumps implausibly far above the ledger's.
pub fn implausible_jump(current: Option<&Entry>, incoming_version: u64) -> bool {
    current.is_some_and(|c| incoming_version > c.source_version.saturating_add(IMPLAUSIBLE_JUMP))
}

/// A source version whose jump [`implausible_jump`] refuses: the version
/// itself is quarantined, whoever read it (feed, reconcile, resync: SPEC
/// 3.9). When it says the copy must go (a deletion, a withdrawal, a
/// restriction, any reason to be absent), `removal` is the record with the
/// copy going and the ledger's version kept, so later real changes still
/// apply: privacy first, and nothing frozen.
pub fn implausible_change(
    current: &Entry,
    incoming: &Incoming,
    now_ms: i64,
    mode: Mode,
) -> Option<Entry> {
    let desired = DesiredState::from(incoming.desired.clone());
    if desired.is_present() || !current.desired.is_present() {
        return None;
    }
    let mut entry = current.clone();
    entry.last_change_ms = now_ms;
    entry.set_desired(desired, now_ms);
    entry.settle(mode, now_ms);
    Some(entry)
}

/// Applies a change. Returns `None` when it must be ignored: a feed event at
/// or below the highest version seen. `forced` (an operator's resync) also
/// accepts the current version again and makes it due even if unchanged.
pub fn apply_change(
    current: Option<&Entry>,
    incoming: Incoming,
    now_ms: i64,
    mode: Mode,
    forced: bool,
) -> Option<Entry> {
    let mut entry = match current {
        Some(cur) => {
            let stale = incoming.version < cur.source_version
                || (incoming.version == cur.source_version && !forced);
            if stale {
                return None;
            }
            cur.clone()
        }
        None => Entry {
            id: incoming.id.clone(),
            employer_cvr: None,
            source_version: incoming.version,
            source_updated_at_ms: None,
            desired: DesiredState::Absent {
                reason: "unknown".into(),
            },
            delivered: Delivered::Absent,
            retry: Retry {
                next_attempt_at_ms: now_ms,
                ..Retry::default()
            },
            exchange: Exchange::default(),
            last_change_ms: now_ms,
            doubt: Doubt::default(),
        },
    };
    entry.source_version = incoming.version;
    entry.last_change_ms = now_ms;
    entry.source_updated_at_ms = incoming.updated_at_ms.or(entry.source_updated_at_ms);
    if incoming.employer_cvr.is_some() {
        entry.employer_cvr = incoming.employer_cvr;
    }
    entry.set_desired(still_available(incoming.desired.into(), now_ms), now_ms);
    if forced {
        entry.retry.forced = true;
        entry.retry.dead = false;
        entry.retry.attempts = 0;
        entry.retry.strikes = 0;
        entry.retry.next_attempt_at_ms = now_ms;
    }
    entry.settle(mode, now_ms);
    Some(entry)
}

/// Time passed `publication_end`: the copy must go without any feed event.
/// Returns `None` when nothing expires.
pub fn expire(current: &Entry, now_ms: i64, mode: Mode) -> Option<Entry> {
    match current.desired {
        DesiredState::Present {
            publication_end_ms, ..
        } if publication_end_ms <= now_ms => {
            let mut entry = current.clone();
            entry.set_desired(
                DesiredState::Absent {
                    reason: EXPIRED.into(),
                },
                now_ms,
            );
            entry.settle(mode, now_ms);
            Some(entry)
        }
        _ => None,
    }
}

/// The posting is no longer in JobAG's snapshot: it was deleted there and
/// the feed did not tell us (a forgotten cursor, a lost event). Returns
/// `None` when the record already says so.
pub fn source_gone(current: &Entry, now_ms: i64, mode: Mode) -> Option<Entry> {
    let already = matches!(&current.desired, DesiredState::Absent { reason } if reason == DELETED)
        && current.gap().is_none();
    if already {
        return None;
    }
    let mut entry = current.clone();
    entry.set_desired(
        DesiredState::Absent {
            reason: DELETED.into(),
        },
        now_ms,
    );
    entry.last_change_ms = now_ms;
    entry.settle(mode, now_ms);
    Some(entry)
}

/// Whether the record holds the posting as deleted in JobAG: a verdict a
/// snapshot that shows it again overturns.
pub fn is_gone(entry: &Entry) -> bool {
    matches!(&entry.desired, DesiredState::Absent { reason } if reason == DELETED)
}

/// A copy EURES lists that neither the ledger nor JobAG knows: it must go,
/// deleted with the version EURES lists.
pub fn orphan(id: &str, listed_version: u64, listed_hash: &str, now_ms: i64, mode: Mode) -> Entry {
    let mut entry = Entry {
        id: id.to_string(),
        employer_cvr: None,
        source_version: listed_version,
        source_updated_at_ms: None,
        desired: DesiredState::Absent {
            reason: DELETED.into(),
        },
        delivered: Delivered::Present {
            version: listed_version,
            hash: listed_hash.to_string(),
        },
        retry: Retry {
            next_attempt_at_ms: now_ms,
            ..Retry::default()
        },
        exchange: Exchange::default(),
        last_change_ms: now_ms,
        doubt: Doubt::default(),
    };
    entry.settle(mode, now_ms);
    entry
}

/// What one delivery attempt carried.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sent {
    pub op: Op,
    /// `sourceVersion` / `X-Source-Version` sent.
    pub version: u64,
    /// Hash of the content sent (create/update).
    pub hash: Option<String>,
}

/// Limits applied to failed attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryLimits {
    /// Creates/updates give up (dead letter) after this many failures in a
    /// row that count (see [`Retry::strikes`]).
    pub max_attempts: u32,
    /// How long after a deletion that followed a request in doubt to
    /// verify it: `eures.request_timeout_ms` + 5 s (SPEC 3.8).
    pub verify_after: Duration,
}

/// Records the end of an attempt. `backoff` is the jittered delay to use if
/// this attempt failed (computed by the caller for `attempts + 1`).
pub fn apply_outcome(
    current: &Entry,
    sent: &Sent,
    result: &AttemptResult,
    now_ms: i64,
    limits: RetryLimits,
    backoff: Duration,
    mode: Mode,
) -> Entry {
    let mut entry = current.clone();
    // Did desired move while the request was in flight? Then a failure must
    // not delay the new operation (a withdrawal waits for nobody).
    let still_current = entry.due() == Some(sent.op)
        && match sent.op {
            // A delete carries the highest version known, which may be the
            // one EURES listed rather than the source's.
            Op::Delete => sent.version >= entry.source_version,
            Op::Create | Op::Update => {
                entry.source_version == sent.version && entry.desired.hash() == sent.hash.as_deref()
            }
            Op::Verify => true,
        };
    let delay_ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
    let upsert = matches!(sent.op, Op::Create | Op::Update);
    entry.retry.last_attempt_ms = Some(now_ms);
    match result.verdict(sent.op) {
        Verdict::NoCopy => {
            if still_current {
                entry.doubt = Doubt::default();
                entry.retry.attempts = 0;
                entry.retry.last_error = None;
                entry.retry.next_attempt_at_ms = now_ms;
            }
        }
        Verdict::CopyHeld { version, hash } => {
            // The request in doubt landed after the deletion: the copy is
            // there again, so the deletion is due again, now, and verified
            // again after it.
            entry.delivered = Delivered::Present {
                version,
                hash: hash.to_string(),
            };
            entry.doubt.verify_at_ms = None;
            entry.retry.attempts = 0;
            entry.retry.next_attempt_at_ms = now_ms;
        }
        Verdict::Delivered { accepted } => {
            if accepted && upsert {
                entry.doubt.in_doubt = true;
            }
            if sent.op == Op::Delete && entry.doubt.in_doubt {
                entry.doubt.verify_at_ms =
                    Some(now_ms.saturating_add(delay_ms(limits.verify_after)));
            }
            entry.delivered = match (sent.op, &sent.hash) {
                (Op::Delete, _) | (_, None) => Delivered::Absent,
                (_, Some(hash)) => Delivered::Present {
                    version: sent.version,
                    hash: hash.clone(),
                },
            };
            if sent.version >= entry.source_version {
                entry.retry.forced = false;
            }
            if still_current {
                entry.retry.attempts = 0;
                entry.retry.strikes = 0;
                entry.retry.last_error = None;
                entry.retry.next_attempt_at_ms = now_ms;
            }
        }
        Verdict::Failed(failure) => {
            entry.retry.last_error = Some(failure.why);
            // A verification only looks: what it failed to see changes
            // nothing delivered.
            if failure.delivered_unknown && sent.op != Op::Verify {
                entry.delivered = Delivered::Unknown;
            }
            if failure.in_doubt && upsert {
                entry.doubt.in_doubt = true;
            }
            if still_current {
                if failure.backs_off {
                    entry.retry.attempts = entry.retry.attempts.saturating_add(1);
                }
                if failure.strikes {
                    entry.retry.strikes = entry.retry.strikes.saturating_add(1);
                }
                // Only creates and updates give up: deletions and
                // verifications never do (SPEC 4.2).
                if upsert && (failure.gives_up || entry.retry.strikes >= limits.max_attempts) {
                    entry.retry.dead = true;
                    entry.retry.forced = false;
                }
                entry.retry.next_attempt_at_ms =
                    now_ms.saturating_add(delay_ms(failure.wait.delay(backoff)));
            }
        }
    }
    entry.settle(mode, now_ms);
    entry
}

/// An operator's `dead-letters retry`: try again from a clean slate.
pub fn revive(current: &Entry, now_ms: i64, mode: Mode) -> Entry {
    let mut entry = current.clone();
    entry.retry.dead = false;
    entry.retry.attempts = 0;
    entry.retry.strikes = 0;
    entry.retry.next_attempt_at_ms = now_ms;
    entry.settle(mode, now_ms);
    entry
}

/// The worker that held this record's lease went away with its request
/// in flight (the lease ran out, or its owner restarted): EURES may or may
/// not have applied it. The record stops believing what it delivered, so
/// whatever is desired is sent again: a PUT, or a DELETE (404 is fine). A
/// create in flight when a withdrawal arrived is thus never left behind.
pub fn abandon(current: &Entry, now_ms: i64, mode: Mode) -> Entry {
    let mut entry = current.clone();
    if mode == Mode::Push {
        entry.delivered = Delivered::Unknown;
        entry.doubt.in_doubt = true;
    }
    entry.settle(mode, now_ms);
    entry
}

/// Reconcile saw what EURES really holds for this posting (`None`: nothing).
/// The delivered fact is replaced by the observation, so any drift becomes
/// an ordinary gap.
pub fn observe_remote(
    current: &Entry,
    remote: Option<(u64, &str)>,
    now_ms: i64,
    mode: Mode,
) -> Entry {
    let mut entry = current.clone();
    if mode == Mode::Pull {
        return entry;
    }
    entry.delivered = match remote {
        // Not listed is no proof of absence: a create EURES applied after
        // its listing page was read would stay. Where no copy is wanted, a
        // DELETE makes sure (404 is fine). Nor while a request is in doubt:
        // a gateway may still apply it, so the deletion that follows one
        // must go out and be verified.
        None if entry.doubt.in_doubt
            || (!entry.desired.is_present() && entry.delivered != Delivered::Absent) =>
        {
            Delivered::Unknown
        }
        None => Delivered::Absent,
        Some((version, hash)) => Delivered::Present {
            version,
            hash: hash.to_string(),
        },
    };
    entry.settle(mode, now_ms);
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eligibility::AbsentReason;
    use chrono::DateTime;

    const PUSH: Mode = Mode::Push;
    const LIMITS: RetryLimits = RetryLimits {
        max_attempts: 3,
        verify_after: Duration::from_millis(7_000),
    };

    /// EURES's answer while it answers other requests too.
    fn eures(outcome: Outcome) -> AttemptResult {
        AttemptResult::Eures {
            outcome,
            portal_answered: true,
        }
    }

    /// No answer, and none to any other request since the previous attempt.
    fn outage(why: &str) -> AttemptResult {
        AttemptResult::Eures {
            outcome: Outcome::transient(why),
            portal_answered: false,
        }
    }

    fn present(hash: &str) -> Desired {
        Desired::Present {
            content: format!("<doc>{hash}</doc>"),
            hash: hash.into(),
            publication_end: DateTime::from_timestamp_millis(10_000).unwrap(),
        }
    }

    fn incoming(version: u64, desired: Desired) -> Incoming {
        Incoming {
            id: "p1".into(),
            version,
            updated_at_ms: Some(1),
            employer_cvr: Some("12345678".into()),
            desired,
        }
    }

    fn deliver(e: &Entry, now: i64) -> Entry {
        let op = e.due().expect("something due");
        let sent = Sent {
            op,
            version: e.source_version,
            hash: e.desired.hash().map(str::to_string),
        };
        apply_outcome(
            e,
            &sent,
            &eures(Outcome::Done),
            now,
            LIMITS,
            Duration::ZERO,
            PUSH,
        )
    }

    #[test]
    fn create_then_noop_edit_then_update_then_withdraw() {
        let e = apply_change(None, incoming(1, present("h1")), 100, PUSH, false).unwrap();
        assert_eq!(e.due(), Some(Op::Create));
        assert_eq!(e.state(), StateLabel::Pending);
        let e = deliver(&e, 110);
        assert_eq!(e.due(), None);
        assert_eq!(e.state(), StateLabel::Present);
        assert!(
            matches!(e.desired, DesiredState::Present { content: None, .. }),
            "content erased after delivery in push mode"
        );
        // An edit that renders the same document is not an update.
        let e2 = apply_change(Some(&e), incoming(2, present("h1")), 120, PUSH, false).unwrap();
        assert_eq!(e2.due(), None);
        assert_eq!(e2.exchange.modified_ms, Some(100));
        let e3 = apply_change(Some(&e2), incoming(3, present("h2")), 130, PUSH, false).unwrap();
        assert_eq!(e3.due(), Some(Op::Update));
        assert_eq!(e3.exchange.modified_ms, Some(130));
        let e4 = apply_change(
            Some(&e3),
            incoming(4, Desired::Absent(AbsentReason::NoConsent)),
            140,
            PUSH,
            false,
        )
        .unwrap();
        assert_eq!(e4.due(), Some(Op::Delete));
        assert_eq!(e4.exchange.closed_ms, Some(140));
        assert!(!e4.exchange.active);
        let e5 = deliver(&e4, 150);
        assert_eq!(e5.state(), StateLabel::Absent);
        assert_eq!(e5.absent_reason(), Some("no_consent"));
    }

    #[test]
    fn stale_and_repeated_versions_are_ignored() {
        let e = apply_change(None, incoming(5, present("h1")), 0, PUSH, false).unwrap();
        assert!(apply_change(Some(&e), incoming(5, present("h2")), 1, PUSH, false).is_none());
        assert!(apply_change(Some(&e), incoming(4, present("h2")), 1, PUSH, false).is_none());
        // A resync re-reads the current version and makes it due again.
        let d = deliver(&e, 2);
        let r = apply_change(Some(&d), incoming(5, present("h1")), 3, PUSH, true).unwrap();
        assert_eq!(r.due(), Some(Op::Update));
        assert_eq!(deliver(&r, 4).due(), None);
    }

    #[test]
    fn failure_of_a_superseded_attempt_does_not_delay_the_delete() {
        let e = apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap();
        let sent = Sent {
            op: Op::Create,
            version: 1,
            hash: Some("h1".into()),
        };
        let w = apply_change(
            Some(&e),
            incoming(2, Desired::Absent(AbsentReason::Deleted)),
            5,
            PUSH,
            false,
        )
        .unwrap();
        // Never delivered, withdrawn: nothing to do.
        assert_eq!(w.due(), None);
        // But the create had landed: now a delete is due, immediately.
        let after = apply_outcome(
            &w,
            &sent,
            &eures(Outcome::Done),
            10,
            LIMITS,
            Duration::ZERO,
            PUSH,
        );
        assert_eq!(after.due(), Some(Op::Delete));
        assert!(after.retry.next_attempt_at_ms <= 10);
        let failed = apply_outcome(
            &w,
            &sent,
            &eures(Outcome::transient("boom")),
            10,
            LIMITS,
            Duration::from_secs(60),
            PUSH,
        );
        // It may have landed all the same: the delete is due, at once.
        assert_eq!(failed.due(), Some(Op::Delete));
        assert_eq!(failed.retry.attempts, 0);
        assert!(failed.retry.next_attempt_at_ms <= 10);
    }

    #[test]
    fn upserts_go_dead_deletes_never_do() {
        let mut e = apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap();
        for i in 0..3 {
            let sent = Sent {
                op: Op::Create,
                version: 1,
                hash: Some("h1".into()),
            };
            e = apply_outcome(
                &e,
                &sent,
                &eures(Outcome::transient("503")),
                i,
                LIMITS,
                Duration::from_millis(5),
                PUSH,
            );
        }
        assert!(e.retry.dead);
        assert_eq!(e.due(), None);
        assert_eq!(e.state(), StateLabel::Pending);
        let revived = revive(&e, 10, PUSH);
        assert_eq!(revived.due(), Some(Op::Create));

        let d = deliver(&revived, 11);
        let mut w = apply_change(
            Some(&d),
            incoming(2, Desired::Absent(AbsentReason::Deleted)),
            12,
            PUSH,
            false,
        )
        .unwrap();
        for i in 0..10 {
            let sent = Sent {
                op: Op::Delete,
                version: 2,
                hash: None,
            };
            w = apply_outcome(
                &w,
                &sent,
                &eures(Outcome::transient("503")),
                20 + i,
                LIMITS,
                Duration::from_millis(5),
                PUSH,
            );
        }
        assert!(!w.retry.dead);
        assert_eq!(w.due(), Some(Op::Delete));
        assert_eq!(w.retry.attempts, 10);
    }

    #[test]
    fn an_outage_never_dead_letters_a_document_failing_alone_does() {
        let create = Sent {
            op: Op::Create,
            version: 1,
            hash: Some("h1".into()),
        };
        let fail = |e: &Entry, result: AttemptResult, at: i64| {
            apply_outcome(
                e,
                &create,
                &result,
                at,
                LIMITS,
                Duration::from_millis(5),
                PUSH,
            )
        };
        let mut e = apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap();
        for i in 0..50 {
            e = fail(&e, outage("HTTP 503"), 10 + i);
        }
        assert!(!e.retry.dead, "an outage sends nothing to dead letters");
        assert_eq!(e.due(), Some(Op::Create));
        assert_eq!(e.retry.attempts, 50, "the backoff still grows");
        assert_eq!(e.retry.strikes, 0);
        assert_eq!(e.retry.last_attempt_ms, Some(59));
        // Failures while EURES answers others count, from where they are.
        for i in 0..2 {
            e = fail(&e, eures(Outcome::transient("HTTP 500")), 100 + i);
        }
        assert!(!e.retry.dead);
        e = fail(&e, outage("HTTP 503"), 200);
        assert!(!e.retry.dead, "an outage in between adds no strike");
        e = fail(&e, eures(Outcome::transient("HTTP 500")), 300);
        assert!(e.retry.dead, "the third strike dead-letters");
        // A delivery resets the count.
        let revived = deliver(&revive(&e, 400, PUSH), 401);
        assert_eq!((revived.retry.attempts, revived.retry.strikes), (0, 0));
    }

    fn outcome(e: &Entry, op: Op, result: AttemptResult, now: i64) -> Entry {
        let sent = Sent {
            op,
            version: e.source_version,
            hash: e.desired.hash().map(str::to_string),
        };
        apply_outcome(
            e,
            &sent,
            &result,
            now,
            LIMITS,
            Duration::from_millis(5),
            PUSH,
        )
    }

    fn withdrawn(e: &Entry, version: u64, now: i64) -> Entry {
        apply_change(
            Some(e),
            incoming(version, Desired::Absent(AbsentReason::NoConsent)),
            now,
            PUSH,
            false,
        )
        .unwrap()
    }

    #[test]
    fn a_listing_without_the_copy_does_not_clear_a_doubt() {
        let e = apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap();
        let lost = outcome(&e, Op::Create, eures(Outcome::transient("timeout")), 10);
        // Reconcile does not list it: the create may still be on its way.
        let unlisted = observe_remote(&lost, None, 20, PUSH);
        assert_eq!(unlisted.delivered, Delivered::Unknown);
        assert_eq!(unlisted.due(), Some(Op::Create));
        // Withdrawn then: the DELETE goes out and is verified.
        let w = withdrawn(&unlisted, 2, 30);
        assert_eq!(w.due(), Some(Op::Delete));
        let deleted = outcome(&w, Op::Delete, eures(Outcome::Done), 40);
        assert_eq!(deleted.due(), Some(Op::Verify));
    }

    #[test]
    fn a_deletion_after_a_create_in_doubt_is_verified_and_repeated() {
        let e = apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap();
        let lost = outcome(&e, Op::Create, eures(Outcome::transient("timeout")), 10);
        assert!(lost.doubt.in_doubt);
        let w = withdrawn(&lost, 2, 20);
        assert_eq!(w.due(), Some(Op::Delete));
        let deleted = outcome(&w, Op::Delete, eures(Outcome::Done), 30);
        assert_eq!(deleted.due(), Some(Op::Verify));
        assert_eq!(deleted.state(), StateLabel::Pending);
        let at = 30 + LIMITS.verify_after.as_millis() as i64;
        assert_eq!(deleted.doubt.verify_at_ms, Some(at));
        assert_eq!(deleted.retry.next_attempt_at_ms, at, "not before its time");
        // The create landed after all: delete again, at once.
        let found = outcome(
            &deleted,
            Op::Verify,
            AttemptResult::Found {
                version: 1,
                hash: "h1".into(),
            },
            at,
        );
        assert_eq!(found.due(), Some(Op::Delete));
        assert!(found.retry.next_attempt_at_ms <= at);
        let again = outcome(&found, Op::Delete, eures(Outcome::Done), at + 1);
        assert_eq!(again.due(), Some(Op::Verify), "and verified again");
        let later = again.doubt.verify_at_ms.unwrap();
        let clear = outcome(&again, Op::Verify, eures(Outcome::Done), later);
        assert_eq!(clear.due(), None);
        assert_eq!(clear.doubt, Doubt::default());
        assert_eq!(clear.state(), StateLabel::Absent);
        // A failed look is retried, never dead-lettered.
        let mut failing = again.clone();
        for i in 0..10 {
            failing = outcome(&failing, Op::Verify, outage("HTTP 503"), later + i);
        }
        assert!(!failing.retry.dead);
        assert_eq!(failing.due(), Some(Op::Verify));
        // Without a request in doubt, a deletion needs no look.
        let sure = deliver(&e, 5);
        let gone = deliver(&withdrawn(&sure, 2, 6), 7);
        assert_eq!(gone.due(), None);
        assert_eq!(gone.doubt, Doubt::default());
    }

    #[test]
    fn the_verification_time_survives_changes_of_mind() {
        let e = apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap();
        let lost = outcome(&e, Op::Create, eures(Outcome::transient("timeout")), 10);
        let deleted = outcome(
            &withdrawn(&lost, 2, 20),
            Op::Delete,
            eures(Outcome::Done),
            30,
        );
        let at = deleted.doubt.verify_at_ms.expect("verification scheduled");
        // Consent again: a create is due; withdrawn again before it is sent.
        let back =
            apply_change(Some(&deleted), incoming(3, present("h1")), 40, PUSH, false).unwrap();
        assert_eq!(back.due(), Some(Op::Create));
        let again = withdrawn(&back, 4, 50);
        assert_eq!(again.due(), Some(Op::Verify), "still verified");
        assert_eq!(again.retry.next_attempt_at_ms, at, "at the time first set");
        // A worker dying with the create in flight leaves it in doubt too.
        let abandoned = abandon(
            &apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap(),
            5,
            PUSH,
        );
        assert!(abandoned.doubt.in_doubt);
        let gone = outcome(
            &withdrawn(&abandoned, 2, 6),
            Op::Delete,
            eures(Outcome::Done),
            7,
        );
        assert_eq!(gone.due(), Some(Op::Verify));
        // Pull mode has no requests to doubt.
        let pulled = abandon(
            &apply_change(None, incoming(1, present("h1")), 0, Mode::Pull, false).unwrap(),
            5,
            Mode::Pull,
        );
        assert_eq!(pulled.doubt, Doubt::default());
    }

    #[test]
    fn a_create_abandoned_by_a_killed_worker_is_deleted_after_withdrawal() {
        let e = apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap();
        // The worker died with the create in flight: EURES may hold it.
        let abandoned = abandon(&e, 5, PUSH);
        assert_eq!(abandoned.delivered, Delivered::Unknown);
        let withdrawn = apply_change(
            Some(&abandoned),
            incoming(2, Desired::Absent(AbsentReason::NoConsent)),
            6,
            PUSH,
            false,
        )
        .unwrap();
        assert_eq!(withdrawn.due(), Some(Op::Delete));
    }

    #[test]
    fn rejected_create_is_dead_until_the_posting_changes() {
        let e = apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap();
        let sent = Sent {
            op: Op::Create,
            version: 1,
            hash: Some("h1".into()),
        };
        let r = apply_outcome(
            &e,
            &sent,
            &eures(Outcome::Rejected {
                errors: "content: bad".into(),
            }),
            1,
            LIMITS,
            Duration::ZERO,
            PUSH,
        );
        assert!(r.retry.dead);
        assert!(
            r.retry
                .last_error
                .as_deref()
                .unwrap()
                .contains("content: bad")
        );
        let same = apply_change(Some(&r), incoming(2, present("h1")), 2, PUSH, false).unwrap();
        assert!(
            same.retry.dead,
            "an edit that does not change the document does not revive it"
        );
        let changed = apply_change(Some(&r), incoming(3, present("h2")), 3, PUSH, false).unwrap();
        assert_eq!(changed.due(), Some(Op::Create));
    }

    #[test]
    fn a_change_whose_publication_end_passed_before_it_was_written_is_expired() {
        // Read as available (ends at 10,000), written at 10,000.
        let late = apply_change(None, incoming(1, present("h1")), 10_000, PUSH, false).unwrap();
        assert_eq!(late.absent_reason(), Some("expired"));
        assert_eq!(late.due(), None, "never sent");
        let e = deliver(
            &apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap(),
            1,
        );
        let edited =
            apply_change(Some(&e), incoming(2, present("h2")), 10_001, PUSH, false).unwrap();
        assert_eq!(edited.due(), Some(Op::Delete), "the copy goes, not updated");
        assert!(
            matches!(edited.desired, DesiredState::Absent { .. }),
            "no document kept"
        );
    }

    #[test]
    fn expiry_closes_and_reconsent_recreates() {
        let e = apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap();
        let e = deliver(&e, 1);
        assert!(
            expire(&e, 9_999, PUSH).is_none(),
            "not before publication_end"
        );
        let x = expire(&e, 10_000, PUSH).unwrap();
        assert_eq!(x.due(), Some(Op::Delete));
        assert_eq!(x.absent_reason(), Some("expired"));
        let x = deliver(&x, 10_001);
        let mut again = present("h1");
        if let Desired::Present {
            publication_end, ..
        } = &mut again
        {
            *publication_end = DateTime::from_timestamp_millis(30_000).unwrap();
        }
        let back = apply_change(Some(&x), incoming(2, again), 20_000, Mode::Pull, false).unwrap();
        assert_eq!(back.exchange.created_ms, Some(20_000));
        assert_eq!(back.exchange.closed_ms, None);
        assert!(back.exchange.active);
    }

    #[test]
    fn pull_mode_mirrors_and_keeps_content_while_active() {
        let e = apply_change(None, incoming(1, present("h1")), 0, Mode::Pull, false).unwrap();
        assert_eq!(e.due(), None);
        assert_eq!(e.state(), StateLabel::Present);
        assert!(matches!(
            e.desired,
            DesiredState::Present {
                content: Some(_),
                ..
            }
        ));
        let closed = apply_change(
            Some(&e),
            incoming(2, Desired::Absent(AbsentReason::Deleted)),
            5,
            Mode::Pull,
            false,
        )
        .unwrap();
        assert_eq!(closed.exchange.closed_ms, Some(5));
        assert_eq!(closed.exchange.created_ms, Some(0));
    }

    #[test]
    fn an_abandoned_create_whose_posting_was_withdrawn_is_deleted() {
        let e = apply_change(None, incoming(1, present("h1")), 100, PUSH, false).unwrap();
        assert_eq!(e.due(), Some(Op::Create));
        // The create is in flight when the withdrawal arrives; the worker dies.
        let withdrawn = apply_change(
            Some(&e),
            incoming(2, Desired::Absent(AbsentReason::NoConsent)),
            110,
            PUSH,
            false,
        )
        .unwrap();
        assert_eq!(
            withdrawn.due(),
            None,
            "the ledger believes nothing is on EURES"
        );
        let abandoned = abandon(&withdrawn, 120, PUSH);
        assert_eq!(abandoned.delivered, Delivered::Unknown);
        assert_eq!(abandoned.due(), Some(Op::Delete));
        // Still wanted: sent again as a PUT, content kept for it.
        let again = abandon(&e, 120, PUSH);
        assert_eq!(again.due(), Some(Op::Create));
        assert!(matches!(
            again.desired,
            DesiredState::Present {
                content: Some(_),
                ..
            }
        ));
        assert_eq!(deliver(&again, 130).due(), None);
        // Pull mode has no attempts to abandon: the ledger is the copy.
        let pulled =
            apply_change(None, incoming(1, present("h1")), 100, Mode::Pull, false).unwrap();
        let after = abandon(&pulled, 120, Mode::Pull);
        assert_eq!(after.delivered, pulled.delivered);
        assert_eq!(after.due(), None);
    }

    #[test]
    fn a_copy_the_listing_misses_is_still_deleted_when_none_is_wanted() {
        let e = deliver(
            &apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap(),
            1,
        );
        let w = withdrawn(&e, 2, 2);
        assert_eq!(w.due(), Some(Op::Delete));
        let unlisted = observe_remote(&w, None, 3, PUSH);
        assert_eq!(unlisted.due(), Some(Op::Delete), "{unlisted:?}");
        // Once the DELETE is done, a listing without it changes nothing.
        let gone = deliver(&unlisted, 4);
        assert_eq!(observe_remote(&gone, None, 5, PUSH), gone);
    }

    #[test]
    fn reconcile_observation_turns_drift_into_a_gap() {
        let e = deliver(
            &apply_change(None, incoming(1, present("h1")), 0, PUSH, false).unwrap(),
            1,
        );
        let tampered = observe_remote(&e, Some((1, "other")), 2, PUSH);
        assert_eq!(tampered.due(), Some(Op::Update));
        let gone = observe_remote(&e, None, 2, PUSH);
        assert_eq!(gone.due(), Some(Op::Create));
    }
}
