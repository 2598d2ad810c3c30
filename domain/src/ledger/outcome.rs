//! What one attempt came to, classified once: the EURES client turns each
//! answer into an [`Outcome`] (`src/eures/classify.rs`, by status), the
//! engine adds the one fact no answer carries (did EURES answer anything
//! since the posting's previous attempt, [`super::counts_as_strike`]), and
//! the planner acts on the [`Verdict`] of the result without classifying
//! it again.

use std::time::Duration;

use super::Op;

/// What one answer of EURES (or its absence) means for the posting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The portal holds what was sent (or, for a delete, nothing; for a
    /// verification, no copy).
    Done,
    /// `202` to a PUT: the portal will apply it later, perhaps after a
    /// deletion sent meanwhile (SPEC 3.8).
    Accepted,
    /// The portal holds a newer `sourceVersion`: not an error, the agent
    /// re-reads the source.
    Superseded,
    /// The content is refused; permanent until the posting changes or an
    /// operator retries. `errors` is one line of at most 500 characters
    /// (`eures::classify::MAX_ERRORS_LEN`). It may echo posting content:
    /// store it, never log it.
    Rejected { errors: String },
    /// Credentials refused: pause all delivery, fail readiness, probe.
    Auth,
    /// Too many requests: hold all requests for `retry_after` (backoff
    /// when the header was absent or unreadable).
    Throttled { retry_after: Option<Duration> },
    /// Worth retrying with backoff: no clear answer (`408`, `5xx`,
    /// timeouts, connection errors, and the statuses the classifier
    /// lists). `why` is one short line without content (a status or an
    /// error kind).
    Transient { why: String },
}

/// What an answer asks of delivery as a whole, beyond its posting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The credentials are refused: only probes go out until one passes.
    Credentials,
    /// `429`: no request goes out for `retry_after` (a default pause when
    /// the portal did not say).
    Requests { retry_after: Option<Duration> },
}

impl Outcome {
    /// The metric label value (`eures_sync_deliveries_total{outcome}`).
    pub fn label(&self) -> &'static str {
        match self {
            // The label set is fixed (SPEC 4.5): EURES took the request.
            Outcome::Done | Outcome::Accepted => "ok",
            Outcome::Superseded => "superseded",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Auth => "auth",
            Outcome::Throttled { .. } => "throttled",
            Outcome::Transient { .. } => "transient",
        }
    }

    /// `true` for [`Outcome::Done`] and [`Outcome::Accepted`].
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done | Outcome::Accepted)
    }

    /// A transient outcome for an IO failure (connect, timeout, reset).
    pub fn transient(why: impl Into<String>) -> Self {
        Outcome::Transient { why: why.into() }
    }

    /// Whether EURES answered the request clearly, whatever it said: the
    /// portal works, so a failure elsewhere is that request's own.
    pub fn answered(&self) -> bool {
        matches!(
            self,
            Outcome::Done | Outcome::Accepted | Outcome::Superseded | Outcome::Rejected { .. }
        )
    }

    /// Whether the answer holds back every request, not only this one.
    pub fn holds_delivery(&self) -> Option<Hold> {
        match self {
            Outcome::Auth => Some(Hold::Credentials),
            Outcome::Throttled { retry_after } => Some(Hold::Requests {
                retry_after: *retry_after,
            }),
            _ => None,
        }
    }
}

/// How an attempt ended, as the planner takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The request went out and EURES's answer was classified as
    /// `outcome` (for a verification: [`Outcome::Done`] when it holds no
    /// copy). `portal_answered`: EURES clearly answered some request since
    /// the posting's previous attempt ([`super::counts_as_strike`]); only
    /// a transient outcome reads it: without that answer the portal is
    /// down, not this document, and the failure never counts toward the
    /// dead letters (SPEC 4.2).
    Eures {
        outcome: Outcome,
        portal_answered: bool,
    },
    /// A verification found a copy (version, content hash).
    Found { version: u64, hash: String },
    /// Nothing was sent: the document had to be re-read from JobAG first
    /// and that failed. EURES knows nothing of it, so it changes nothing
    /// delivered and never counts toward the dead letters.
    NotSent(String),
}

/// What an attempt's result comes to for the record it was sent for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// A verification found no copy: the doubt is over.
    NoCopy,
    /// A verification found a copy: the request in doubt landed after the
    /// deletion, which is due again.
    CopyHeld { version: u64, hash: &'a str },
    /// EURES took the request. `accepted`: with a `202`, to be applied
    /// later, so a create or update sent is in doubt.
    Delivered { accepted: bool },
    /// The attempt failed; what that does to the record, by name.
    Failed(Failure),
}

/// What a failed attempt does to the record's retry state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One line for `retry.last_error`.
    pub why: String,
    /// Counts as an attempt: the next backoff is longer.
    pub backs_off: bool,
    /// A strike toward `eures.max_attempts`.
    pub strikes: bool,
    /// The same document will get the same answer: a create or update
    /// becomes a dead letter at once.
    pub gives_up: bool,
    /// EURES may hold something other than what the ledger recorded (the
    /// request may have been applied, or EURES holds a newer version).
    pub delivered_unknown: bool,
    /// The request may still be applied later: a create or update sent is
    /// in doubt (SPEC 3.8).
    pub in_doubt: bool,
    /// When the operation is due again.
    pub wait: Wait,
}

/// When a failed operation is due again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// After the jittered backoff its attempt count earns.
    Backoff,
    /// At once: delivery as a whole waits instead ([`Hold`]).
    Now,
    /// After what the portal asked for, the backoff when it did not say.
    RetryAfter(Option<Duration>),
}

impl Wait {
    /// The delay, given the backoff the attempt count earns.
    pub fn delay(self, backoff: Duration) -> Duration {
        match self {
            Wait::Backoff => backoff,
            Wait::Now => Duration::ZERO,
            Wait::RetryAfter(retry_after) => retry_after.unwrap_or(backoff),
        }
    }
}

impl Failure {
    /// A failure that counts as an attempt and waits for the backoff.
    fn backing_off(why: String, strikes: bool) -> Failure {
        Failure {
            why,
            backs_off: true,
            strikes,
            gives_up: false,
            delivered_unknown: false,
            in_doubt: false,
            wait: Wait::Backoff,
        }
    }

    /// A failure that is not the posting's: delivery as a whole waits.
    fn held(why: &str, wait: Wait) -> Failure {
        Failure {
            why: why.to_string(),
            backs_off: false,
            strikes: false,
            gives_up: false,
            delivered_unknown: false,
            in_doubt: false,
            wait,
        }
    }
}

impl AttemptResult {
    /// What the result means for a record whose attempt sent `op`: the
    /// whole of the retry decision. Only a verification tells a copy from
    /// none.
    pub fn verdict(&self, op: Op) -> Verdict<'_> {
        let (outcome, portal_answered) = match self {
            AttemptResult::Found { version, hash } => {
                return Verdict::CopyHeld {
                    version: *version,
                    hash,
                };
            }
            AttemptResult::NotSent(why) => {
                return Verdict::Failed(Failure::backing_off(format!("not sent: {why}"), false));
            }
            AttemptResult::Eures {
                outcome,
                portal_answered,
            } => (outcome, *portal_answered),
        };
        match outcome {
            Outcome::Done if op == Op::Verify => Verdict::NoCopy,
            Outcome::Done => Verdict::Delivered { accepted: false },
            Outcome::Accepted => Verdict::Delivered { accepted: true },
            Outcome::Superseded => Verdict::Failed(Failure {
                delivered_unknown: true,
                ..Failure::backing_off("superseded: EURES holds a newer version".into(), true)
            }),
            Outcome::Rejected { errors } => Verdict::Failed(Failure {
                gives_up: true,
                ..Failure::backing_off(format!("rejected: {errors}"), true)
            }),
            Outcome::Auth => Verdict::Failed(Failure::held(
                "auth: EURES refused the credentials",
                Wait::Now,
            )),
            Outcome::Throttled { retry_after } => Verdict::Failed(Failure::held(
                "throttled: EURES answered 429",
                Wait::RetryAfter(*retry_after),
            )),
            Outcome::Transient { why } => {
                let why = if portal_answered {
                    format!("transient: {why}")
                } else {
                    format!("transient: {why} (EURES answers nothing)")
                };
                Verdict::Failed(Failure {
                    delivered_unknown: true,
                    in_doubt: true,
                    ..Failure::backing_off(why, portal_answered)
                })
            }
        }
    }

    /// The text the audit trail keeps besides the label: a rejection's
    /// summary, a failure's reason.
    pub fn detail(&self) -> Option<&str> {
        match self {
            AttemptResult::Eures {
                outcome: Outcome::Rejected { errors: why } | Outcome::Transient { why },
                ..
            }
            | AttemptResult::NotSent(why) => Some(why),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eures(outcome: Outcome, portal_answered: bool) -> AttemptResult {
        AttemptResult::Eures {
            outcome,
            portal_answered,
        }
    }

    fn failure(result: &AttemptResult, op: Op) -> Failure {
        match result.verdict(op) {
            Verdict::Failed(f) => f,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// The retry decision of every failure, by name: (backs off, strikes,
    /// gives up, delivered unknown, in doubt, wait).
    #[test]
    fn each_failure_states_its_retry_decision() {
        let ra = Some(Duration::from_secs(7));
        let table = [
            (
                eures(Outcome::Superseded, true),
                "superseded: EURES holds a newer version",
                (true, true, false, true, false, Wait::Backoff),
            ),
            (
                eures(
                    Outcome::Rejected {
                        errors: "HTTP 422".into(),
                    },
                    true,
                ),
                "rejected: HTTP 422",
                (true, true, true, false, false, Wait::Backoff),
            ),
            (
                eures(Outcome::Auth, true),
                "auth: EURES refused the credentials",
                (false, false, false, false, false, Wait::Now),
            ),
            (
                eures(Outcome::Throttled { retry_after: ra }, true),
                "throttled: EURES answered 429",
                (false, false, false, false, false, Wait::RetryAfter(ra)),
            ),
            (
                eures(Outcome::transient("HTTP 500"), true),
                "transient: HTTP 500",
                (true, true, false, true, true, Wait::Backoff),
            ),
            (
                eures(Outcome::transient("HTTP 503"), false),
                "transient: HTTP 503 (EURES answers nothing)",
                (true, false, false, true, true, Wait::Backoff),
            ),
            (
                AttemptResult::NotSent("re-read failed".into()),
                "not sent: re-read failed",
                (true, false, false, false, false, Wait::Backoff),
            ),
        ];
        for (result, why, decision) in table {
            let f = failure(&result, Op::Create);
            assert_eq!(f.why, why);
            assert_eq!(
                (
                    f.backs_off,
                    f.strikes,
                    f.gives_up,
                    f.delivered_unknown,
                    f.in_doubt,
                    f.wait
                ),
                decision,
                "{result:?}"
            );
        }
    }

    #[test]
    fn only_a_verification_tells_a_copy_from_none() {
        let done = eures(Outcome::Done, true);
        assert_eq!(done.verdict(Op::Verify), Verdict::NoCopy);
        for op in [Op::Create, Op::Update, Op::Delete] {
            assert_eq!(done.verdict(op), Verdict::Delivered { accepted: false });
        }
        assert_eq!(
            eures(Outcome::Accepted, false).verdict(Op::Create),
            Verdict::Delivered { accepted: true }
        );
        let found = AttemptResult::Found {
            version: 3,
            hash: "h".into(),
        };
        assert_eq!(
            found.verdict(Op::Verify),
            Verdict::CopyHeld {
                version: 3,
                hash: "h"
            }
        );
    }

    #[test]
    fn waits_resolve_against_the_backoff() {
        let backoff = Duration::from_millis(250);
        assert_eq!(Wait::Backoff.delay(backoff), backoff);
        assert_eq!(Wait::Now.delay(backoff), Duration::ZERO);
        assert_eq!(Wait::RetryAfter(None).delay(backoff), backoff);
        let ra = Duration::from_secs(2);
        assert_eq!(Wait::RetryAfter(Some(ra)).delay(backoff), ra);
    }

    #[test]
    fn what_an_answer_tells_delivery_as_a_whole() {
        assert!(Outcome::Rejected { errors: "x".into() }.answered());
        assert!(Outcome::Superseded.answered());
        assert!(!Outcome::transient("timeout").answered());
        assert!(!Outcome::Throttled { retry_after: None }.answered());
        assert!(!Outcome::Auth.answered());
        assert_eq!(Outcome::Auth.holds_delivery(), Some(Hold::Credentials));
        assert_eq!(
            Outcome::Throttled { retry_after: None }.holds_delivery(),
            Some(Hold::Requests { retry_after: None })
        );
        assert_eq!(Outcome::transient("HTTP 503").holds_delivery(), None);
    }

    #[test]
    fn the_audit_keeps_reasons_not_labels() {
        assert_eq!(
            eures(Outcome::transient("HTTP 503"), false).detail(),
            Some("HTTP 503")
        );
        assert_eq!(
            eures(Outcome::Rejected { errors: "x".into() }, true).detail(),
            Some("x")
        );
        assert_eq!(AttemptResult::NotSent("r".into()).detail(), Some("r"));
        assert_eq!(eures(Outcome::Superseded, true).detail(), None);
        assert_eq!(eures(Outcome::Auth, true).detail(), None);
    }
}
