//! The decisions the IO layer takes around the planner: which record a
//! worker may claim, whose outcome counts, whether a claimed request may
//! still go out, how a source version is let in by any writer, which
//! records a reconcile run may judge gone, whether a failure is a strike,
//! and what a `getChanges` answer may list. Lifted out of the store's SQL
//! and the engine so that the store, the engine and the protocol model
//! (`model/`, package `eures-sync-model`) take them from one place.
//!
//! Every time here is epoch milliseconds on the ledger's clock (on
//! PostgreSQL the database server's, SPEC 3.7). None of these functions
//! may be fed a process clock reading: a worker whose clock is a minute
//! off would then claim, judge or count differently from the others.

use super::{Entry, Incoming, Mode, apply_change, implausible_change, implausible_jump};
use crate::ledger::DesiredState;

/// Margin a claimed request needs on its lease beyond the request timeout
/// before it may be sent (SPEC 3.9).
pub const SEND_MARGIN_MS: i64 = 5_000;

/// A record's lease as the ledger stores it (`lease_owner`,
/// `lease_token`, `lease_until_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub owner: String,
    /// The claim's own token: unique per claim, never reused by a later
    /// claim of the same owner.
    pub token: i64,
    /// Ledger time the lease runs out.
    pub until_ms: i64,
}

/// Whether a lease ran out at ledger time `db_now_ms`: its holder is taken
/// to have died with the request in flight, so the record must first go
/// through [`super::abandon`] (the reap) and lose its lease in the same
/// transaction; only then may it be claimed again.
///
/// Store: `Stmt::SelectAbandoned` (`lease_until_ms < $1`), `writes::reap`;
/// `tests/guards_agree.rs`
/// (`the_reap_takes_exactly_the_leases_lease_expired_accepts`) checks on
/// both databases that the reap takes exactly the leases this accepts.
pub fn lease_expired(lease: &Lease, db_now_ms: i64) -> bool {
    lease.until_ms < db_now_ms
}

/// Whether `entry` may be claimed at ledger time `db_now_ms`: an
/// operation is due (not a dead letter), its backoff is over
/// (`next_attempt_at_ms <= db_now_ms`), and nobody holds its lease. A
/// lease that ran out still blocks the claim until the reap
/// ([`lease_expired`]) has ended it: a claim never skips the
/// abandonment that makes the record stop believing what it delivered.
///
/// Store: the WHERE clause of `Stmt::Claim` in `dialect.rs` (both
/// databases) must state exactly this; `due_op IS NOT NULL` is
/// `entry.due().is_some()`. `tests/guards_agree.rs`
/// (`a_claim_takes_exactly_what_claimable_accepts`) checks on both
/// databases that a claim takes exactly the records this accepts.
pub fn claimable(entry: &Entry, lease: Option<&Lease>, db_now_ms: i64) -> bool {
    lease.is_none() && entry.due().is_some() && entry.retry.next_attempt_at_ms <= db_now_ms
}

/// Whether the claim `(owner, token)` may record an outcome for a record
/// whose lease is now `current` (SPEC 3.7, fencing): only the claim that
/// holds the record's current lease, by owner and token. A lease that ran
/// out but was not reaped yet still belongs to its claim: nobody else
/// can have claimed the record meanwhile. An outcome refused here goes
/// to the audit trail only; the lease is left as it is.
///
/// Store: `writes::complete`, and the release of a lease given back
/// unsent (`sql::RELEASE_ONE`, whose WHERE clause states the same).
pub fn holds_lease(
    current_owner: Option<&str>,
    current_token: Option<i64>,
    owner: &str,
    token: i64,
) -> bool {
    current_owner == Some(owner) && current_token == Some(token)
}

impl Lease {
    /// Whether the claim `(owner, token)` holds this lease ([`holds_lease`]).
    pub fn held_by(lease: Option<&Lease>, owner: &str, token: i64) -> bool {
        holds_lease(
            lease.map(|l| l.owner.as_str()),
            lease.map(|l| l.token),
            owner,
            token,
        )
    }
}

/// Whether a claimed operation may be sent now (SPEC 3.9): its lease,
/// which ends at `lease_until_ms`, has at least `request_timeout_ms` +
/// [`SEND_MARGIN_MS`] left at ledger time `db_now_ms`. Then the request
/// ends (answer or timeout) while the lease still holds, so no other
/// claim can send a request for the posting meanwhile. Otherwise the
/// operation is given back unsent: its lease released under its own token
/// ([`holds_lease`]), nothing recorded, so it is claimed again (by anyone)
/// with a fresh lease.
///
/// `db_now_ms` must be read (or extrapolated from the claim's ledger time
/// by a monotonic clock) after the worker obtained its request slot and
/// immediately before it sends; the lease a claim takes must be longer
/// than `request_timeout_ms + SEND_MARGIN_MS`, or nothing is ever sent.
///
/// Engine: `delivery.rs`, `Worker::send`, after `slots.acquire_owned()`
/// and before `attempt`; the give-back is `Store::release`.
pub fn may_send(lease_until_ms: i64, db_now_ms: i64, request_timeout_ms: i64) -> bool {
    lease_until_ms.saturating_sub(db_now_ms) >= request_timeout_ms.saturating_add(SEND_MARGIN_MS)
}

/// What a writer must do with a source version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceVerdict {
    /// Write this record.
    Apply(Entry),
    /// Stale (at or below the version held, unless forced): nothing to
    /// write.
    Ignore,
    /// The version jumps implausibly far (SPEC 4.1): it is quarantined,
    /// never accepted. `removal` is the record to write when the change
    /// removes a copy still wanted (for any reason to be absent: privacy
    /// first, see [`implausible_change`]): desired becomes absent at the
    /// version held, which stays, so a later plausible version is still
    /// accepted. `None` when nothing is to be written beside the
    /// quarantine item.
    Quarantine { removal: Option<Entry> },
}

/// Whether an absent desired state is one of the privacy removals that
/// must take effect whatever the version says (SPEC 3.9): deleted in
/// JobAG, consent withdrawn, processing restricted.
pub fn removes_for_privacy(desired: &DesiredState) -> bool {
    matches!(desired, DesiredState::Absent { reason }
        if reason == super::DELETED || reason == "no_consent" || reason == "restricted")
}

/// The one guard every writer applies a source version through: the feed
/// (`forced == false`), reconcile's snapshot pass (`forced` as it decides
/// per kind of difference) and an operator's `resync` (`forced == true`)
/// alike (SPEC 3.9). In order:
///
/// 1. An implausible jump ([`implausible_jump`]) is quarantined unless
///    `accept_version` (the operator's `--accept-version` after checking
///    JobAG); one that makes the copy unwanted still removes it.
/// 2. Otherwise [`apply_change`] decides: a version at or below the one
///    held is ignored unless forced at the same version.
///
/// The caller writes a [`SourceVerdict::Quarantine`]'s item to the
/// quarantine list and its `removal`, if any, to the ledger, in the same
/// transaction.
///
/// Store: `writes::ingest` (feed and resync batches) and
/// `writes::reconcile_source`.
pub fn apply_source(
    current: Option<&Entry>,
    incoming: Incoming,
    now_ms: i64,
    mode: Mode,
    forced: bool,
    accept_version: bool,
) -> SourceVerdict {
    if !accept_version && implausible_jump(current, incoming.version) {
        let removal = current.and_then(|cur| implausible_change(cur, &incoming, now_ms, mode));
        return SourceVerdict::Quarantine { removal };
    }
    match apply_change(current, incoming, now_ms, mode, forced) {
        Some(entry) => SourceVerdict::Apply(entry),
        None => SourceVerdict::Ignore,
    }
}

/// Whether a reconcile run (or `resync --all`) that started at ledger
/// time `run_start_db_ms` may judge `entry`, which its snapshot (or
/// listing) did not show: only if the ledger last accepted a source fact
/// for it before the run began. A record written since may stem from a
/// change later than the snapshot page that would have shown it.
///
/// `run_start_db_ms` must be read from the ledger's clock
/// (`Store::now_ms`) before the run requests its first page: a run start
/// from a process clock a minute ahead would judge as gone every posting
/// the feed inserted during the run's first minute.
///
/// Engine: `reconcile.rs`, `Worker::reconcile` and
/// `Worker::reconcile_source_only` (from `Store::now_ms`); store:
/// `writes::reconcile_unseen` and the `Stmt::UnseenIn*` condition
/// `last_change_ms < $2`; `tests/guards_agree.rs`
/// (`the_unseen_pass_judges_exactly_what_may_judge_unseen_accepts`) checks
/// both on both databases against this.
pub fn may_judge_unseen(entry: &Entry, run_start_db_ms: i64) -> bool {
    entry.last_change_ms < run_start_db_ms
}

/// Whether a create's or update's failure without a clear answer
/// (timeout, dropped connection, 5xx) counts toward
/// `eures.max_attempts` (SPEC 4.2): only if EURES clearly answered some
/// request (2xx, 409, 4xx, a verification) after this posting's previous
/// attempt, so the portal works and this document may be what breaks it.
/// A failure during a portal-wide outage never counts.
///
/// All three times are the ledger's: `last_answer_db_ms` when EURES last
/// answered any request, `previous_attempt_db_ms` the record's
/// `retry.last_attempt_ms`, `claimed_db_ms` when this attempt was claimed
/// (standing in for a previous attempt the record does not have). A
/// worker that needs the ledger time of an answer extrapolates it from
/// its claim's ledger time with a monotonic clock, never its wall clock.
///
/// The answer is the `portal_answered` of [`super::AttemptResult::Eures`],
/// the one fact the engine adds to EURES's classified answer.
///
/// Engine: `delivery.rs`, `answered_since_previous`, which moves
/// `Health::eures_answered_ms` and the attempt's start (process clock)
/// onto the ledger's clock by the claim's offset before calling this.
pub fn counts_as_strike(
    last_answer_db_ms: Option<i64>,
    previous_attempt_db_ms: Option<i64>,
    claimed_db_ms: i64,
) -> bool {
    let since = previous_attempt_db_ms.unwrap_or(claimed_db_ms);
    last_answer_db_ms.is_some_and(|at| at > since)
}

/// The consistent cut of one Input API answer (SPEC 4.3): `getChanges(ts)`
/// lists exactly the changes stamped in `[since_ms, high_water_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cut {
    pub since_ms: i64,
    pub high_water_ms: i64,
}

impl Cut {
    /// Fixes the cut when a call starts. `db_now_after_barrier_ms` is the
    /// ledger's clock read after the barrier (`ExchangeStore::barrier`)
    /// returned: every write transaction stamps its changes while it
    /// holds the lock the barrier waits for, so each one stamped below
    /// this instant has committed, and any that commits later stamps at
    /// or after it. A change stamped at `high_water_ms` itself is in the
    /// next call's answer.
    ///
    /// Input API: `input_api.rs`, `get_changes` (and `get_all`) after
    /// `barrier()`; store: the `modified_ms` bound of every page query of
    /// `ExchangeSql` (`AND modified_ms < $H`), the same `H` for every
    /// section and page of one answer. `tests/guards_agree.rs`
    /// (`an_exchange_page_lists_exactly_what_the_cut_contains`) checks on
    /// both databases that every page query lists exactly what
    /// [`Cut::contains`] accepts.
    pub fn new(since_ms: i64, db_now_after_barrier_ms: i64) -> Cut {
        Cut {
            since_ms,
            high_water_ms: db_now_after_barrier_ms,
        }
    }

    /// Whether a reference last modified at `modified_ms` belongs in the
    /// answer.
    pub fn contains(&self, modified_ms: i64) -> bool {
        self.since_ms <= modified_ms && modified_ms < self.high_water_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eligibility::{AbsentReason, Desired};
    use crate::ledger::{IMPLAUSIBLE_JUMP, Op};
    use chrono::DateTime;

    fn incoming(version: u64, desired: Desired) -> Incoming {
        Incoming {
            id: "p1".into(),
            version,
            updated_at_ms: None,
            employer_cvr: None,
            desired,
        }
    }

    fn present(hash: &str) -> Desired {
        Desired::Present {
            content: format!("<doc>{hash}</doc>"),
            hash: hash.into(),
            publication_end: DateTime::from_timestamp_millis(4_102_444_800_000).unwrap(),
        }
    }

    #[test]
    fn an_implausible_withdrawal_removes_the_copy_and_keeps_the_version() {
        let e = apply_change(None, incoming(3, present("h")), 0, Mode::Push, false).unwrap();
        let jump = 3 + IMPLAUSIBLE_JUMP + 1;
        let v = apply_source(
            Some(&e),
            incoming(jump, Desired::Absent(AbsentReason::NoConsent)),
            5,
            Mode::Push,
            false,
            false,
        );
        let SourceVerdict::Quarantine { removal: Some(r) } = v else {
            panic!("{v:?}");
        };
        assert_eq!(r.source_version, 3);
        assert!(!r.desired.is_present());
        // An implausible edit is only quarantined.
        let v = apply_source(
            Some(&e),
            incoming(jump, present("x")),
            5,
            Mode::Push,
            true,
            false,
        );
        assert_eq!(v, SourceVerdict::Quarantine { removal: None });
        // Accepted by the operator, it is applied.
        let v = apply_source(
            Some(&e),
            incoming(jump, present("x")),
            5,
            Mode::Push,
            true,
            true,
        );
        assert!(matches!(v, SourceVerdict::Apply(a) if a.source_version == jump));
    }

    #[test]
    fn claims_fencing_and_sending() {
        let e = apply_change(None, incoming(1, present("h")), 10, Mode::Push, false).unwrap();
        assert_eq!(e.due(), Some(Op::Create));
        assert!(!claimable(&e, None, 9));
        assert!(claimable(&e, None, 10));
        let lease = Lease {
            owner: "w".into(),
            token: 7,
            until_ms: 20,
        };
        assert!(!claimable(&e, Some(&lease), 30), "reaped first");
        assert!(!lease_expired(&lease, 20));
        assert!(lease_expired(&lease, 21));
        assert!(Lease::held_by(Some(&lease), "w", 7));
        assert!(!Lease::held_by(Some(&lease), "w", 8));
        assert!(!Lease::held_by(None, "w", 7));
        assert!(
            !holds_lease(Some("w"), None, "w", 7),
            "a lease without a token"
        );
        assert!(may_send(25_000, 10_000, 10_000));
        assert!(!may_send(25_000, 10_001, 10_000));
    }

    #[test]
    fn strikes_need_an_answer_after_the_previous_attempt() {
        assert!(!counts_as_strike(None, Some(5), 9));
        assert!(!counts_as_strike(Some(5), Some(5), 9));
        assert!(counts_as_strike(Some(6), Some(5), 9));
        assert!(!counts_as_strike(Some(8), None, 9));
        assert!(counts_as_strike(Some(10), None, 9));
    }

    #[test]
    fn a_cut_is_half_open() {
        let c = Cut::new(5, 9);
        assert!(!c.contains(4));
        assert!(c.contains(5));
        assert!(c.contains(8));
        assert!(!c.contains(9));
    }
}
