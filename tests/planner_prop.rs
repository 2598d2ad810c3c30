//! Property test of the pure planner against a model of JobAG, the feed,
//! the EURES portal, reconcile and the operator. Several postings compete
//! for delivery; the feed repeats, replays old versions and loses events;
//! EURES fails in every way it may, rejects some content, and drifts
//! (copies altered or removed behind our back, orphans); workers die with
//! requests in flight; operators resync and retry dead letters. A gateway
//! holds requests whose answer was lost and applies them at any later point
//! within the verification window (SPEC 3.8: `request_timeout_ms` + 5 s),
//! interleaved with withdrawals, deletions, edits, expiry and reconcile.
//!
//! Checked after every step: versions sent never go back, deletions go
//! first, a withdrawal waits for nobody, a feed event at or below the
//! highest version seen changes nothing, a resync makes the posting due,
//! only creates and updates become dead letters. Checked at the end, once
//! the faults stop and reconcile has run: EURES holds exactly what JobAG's
//! current postings call for, computed from JobAG alone (not from the
//! ledger), nothing else of ours, and the only dead letters left are the
//! documents EURES rejects.
//!
//! The scheduler below mirrors the ledger's claim query: due operations
//! ready now, by `Op::rank`, then `next_attempt_at_ms`.

#[path = "common/seed.rs"]
mod seed;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::DateTime;
use eures_sync::domain::eligibility::{AbsentReason, Desired};
use eures_sync::domain::ledger::{
    AttemptResult, Delivered, DesiredState, Entry, Incoming, Mode, Op, Outcome, RetryLimits, Sent,
    abandon, apply_change, apply_outcome, expire, is_gone, observe_remote, orphan, revive,
    source_gone,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

const PUSH: Mode = Mode::Push;

/// EURES's answer, classified; it answers other requests too, so a
/// failure without an answer is a strike.
fn eures(outcome: Outcome) -> AttemptResult {
    AttemptResult::Eures {
        outcome,
        portal_answered: true,
    }
}
/// Postings JobAG knows.
const POSTINGS: usize = 3;
/// References EURES may hold that JobAG never knew (orphans).
const ORPHANS: usize = 2;
/// The document EURES always rejects (422).
const REJECTED_DOC: u8 = 4;
/// Low, so that failures while EURES answers make dead letters.
const LIMITS: RetryLimits = RetryLimits {
    max_attempts: 3,
    verify_after: Duration::from_millis(7_000),
};

/// How long after sending a request a gateway may still apply it: the
/// window the agent's verification covers.
fn window_ms() -> i64 {
    i64::try_from(LIMITS.verify_after.as_millis()).expect("fits")
}

fn posting_id(i: usize) -> String {
    format!("p{i}")
}

fn orphan_id(i: usize) -> String {
    format!("o{i}")
}

/// Any reference: a posting or an orphan slot.
fn any_id(i: usize) -> String {
    if i < POSTINGS {
        posting_id(i)
    } else {
        orphan_id(i - POSTINGS)
    }
}

/// One version of a posting in JobAG.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Body {
    /// Eligible but for time: document `doc`, available until `ends_ms`.
    Live {
        doc: u8,
        ends_ms: i64,
    },
    /// Not to be on EURES (no consent).
    Ineligible,
    Deleted,
}

#[derive(Debug, Clone)]
enum Event {
    /// JobAG stores a new version (`bump` above the last); the feed carries
    /// it unless `lost`.
    Edit {
        id: usize,
        bump: u64,
        body: Body,
        lost: bool,
    },
    /// The feed repeats an old version: `back` versions behind JobAG's
    /// current one (0: the current one again).
    Replay {
        id: usize,
        back: usize,
    },
    /// A worker claims up to `batch` ready operations; EURES answers each
    /// with `fault` (None: as the portal decides); `applied_anyway`: a lost
    /// answer hides an applied request; `held`: a lost answer hides a
    /// request a gateway holds and may apply later ([`Event::Late`]).
    Attempt {
        fault: Option<u8>,
        applied_anyway: bool,
        held: bool,
        batch: usize,
    },
    /// The gateway applies one request it held (the `nth`, modulo how many
    /// it holds), if the verification window since it was sent has not
    /// passed; otherwise it drops it.
    Late {
        nth: usize,
    },
    /// One attempt while JobAG moves the posting on.
    Racing {
        bump: u64,
        body: Body,
    },
    /// The worker dies with one attempt in flight, applied, held by a
    /// gateway, or lost; the posting may move meanwhile; the lease runs out.
    Crash {
        applied: bool,
        held: bool,
        edit: Option<Body>,
    },
    Tick {
        ms: i64,
    },
    /// `resync`: re-read the posting from JobAG and deliver it again.
    Resync {
        id: usize,
    },
    /// `dead-letters retry`.
    Revive {
        id: usize,
    },
    /// Reconcile reads the EURES listing (used by later `Observe`s, which
    /// may thus see a stale listing).
    List,
    /// Reconcile judges one reference against the listing: the one read
    /// last (`fresh` false) or one read now.
    Observe {
        id: usize,
        fresh: bool,
    },
    /// Someone alters (or removes) a copy on EURES behind our back.
    Drift {
        id: usize,
        remove: bool,
    },
    /// EURES holds a copy nobody knows.
    Orphan {
        slot: usize,
        version: u64,
    },
    /// Reconcile compares one posting with JobAG's snapshot, which may
    /// miss it (`missed`: a posting still in JobAG judged gone).
    Snapshot {
        id: usize,
        missed: bool,
    },
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        6 => (0u8..=REJECTED_DOC, any::<bool>(), 50i64..5_000).prop_map(|(doc, long, ends)| {
            // A long one outlives the test; a short one expires during it.
            Body::Live { doc, ends_ms: if long { 1_000_000_000 } else { ends } }
        }),
        2 => Just(Body::Ineligible),
        1 => Just(Body::Deleted),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        5 => (0..POSTINGS, 1u64..3, body(), proptest::bool::weighted(0.1))
            .prop_map(|(id, bump, body, lost)| Event::Edit { id, bump, body, lost }),
        2 => (0..POSTINGS, 0usize..4).prop_map(|(id, back)| Event::Replay { id, back }),
        6 => (proptest::option::of(0u8..6), any::<bool>(), any::<bool>(), 1usize..4)
            .prop_map(|(fault, applied_anyway, held, batch)| {
                Event::Attempt { fault, applied_anyway, held, batch }
            }),
        2 => (0usize..4).prop_map(|nth| Event::Late { nth }),
        1 => (1u64..3, body()).prop_map(|(bump, body)| Event::Racing { bump, body }),
        1 => (any::<bool>(), any::<bool>(), proptest::option::of(body()))
            .prop_map(|(applied, held, edit)| Event::Crash { applied, held, edit }),
        2 => (1i64..3_000).prop_map(|ms| Event::Tick { ms }),
        1 => (0..POSTINGS).prop_map(|id| Event::Resync { id }),
        1 => (0..POSTINGS).prop_map(|id| Event::Revive { id }),
        1 => Just(Event::List),
        1 => (0..POSTINGS + ORPHANS, any::<bool>()).prop_map(|(id, fresh)| Event::Observe { id, fresh }),
        1 => (0..POSTINGS + ORPHANS, any::<bool>()).prop_map(|(id, remove)| Event::Drift { id, remove }),
        1 => (0..ORPHANS, 1u64..9).prop_map(|(slot, version)| Event::Orphan { slot, version }),
        1 => (0..POSTINGS, proptest::bool::weighted(0.3))
            .prop_map(|(id, missed)| Event::Snapshot { id, missed }),
    ]
}

/// A request a gateway holds after the agent gave up on its answer.
#[derive(Debug, Clone)]
struct InTransit {
    id: String,
    sent: Sent,
    sent_at: i64,
}

/// A copy EURES holds.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    version: u64,
    hash: String,
}

/// The push endpoint as SPEC 4.2 describes it, without tombstones (the
/// agent must not rely on them): a write of an older version than held is
/// refused (409); `REJECTED_DOC` is refused as content (422).
#[derive(Debug, Default)]
struct Portal {
    held: BTreeMap<String, Held>,
}

impl Portal {
    fn apply(&mut self, id: &str, sent: &Sent) -> AttemptResult {
        let newer_held = self.held.get(id).is_some_and(|h| h.version > sent.version);
        match sent.op {
            Op::Create | Op::Update => {
                let hash = sent.hash.clone().expect("a PUT carries a document");
                if hash == hash_of(REJECTED_DOC) {
                    return eures(Outcome::Rejected {
                        errors: "422 content".into(),
                    });
                }
                if newer_held {
                    return eures(Outcome::Superseded);
                }
                self.held.insert(
                    id.to_string(),
                    Held {
                        version: sent.version,
                        hash,
                    },
                );
                eures(Outcome::Done)
            }
            Op::Delete => {
                if newer_held {
                    return eures(Outcome::Superseded);
                }
                self.held.remove(id);
                eures(Outcome::Done)
            }
            Op::Verify => match self.held.get(id) {
                Some(h) => AttemptResult::Found {
                    version: h.version,
                    hash: h.hash.clone(),
                },
                None => eures(Outcome::Done),
            },
        }
    }
}

fn hash_of(doc: u8) -> String {
    format!("h{doc}")
}

/// What the model's JobAG says EURES should hold for `body` at `now`:
/// written from SPEC 2, not from the planner.
fn wanted(body: Body, now: i64) -> Option<String> {
    match body {
        Body::Live { doc, ends_ms } if now < ends_ms => Some(hash_of(doc)),
        _ => None,
    }
}

/// The eligibility verdict the engine hands the planner for `body` at `now`.
fn desired(body: Body, now: i64) -> Desired {
    match body {
        Body::Live { ends_ms, .. } if ends_ms <= now => Desired::Absent(AbsentReason::Expired),
        Body::Live { doc, ends_ms } => Desired::Present {
            content: format!("<doc>{doc}</doc>"),
            hash: hash_of(doc),
            publication_end: DateTime::from_timestamp_millis(ends_ms).unwrap(),
        },
        Body::Ineligible => Desired::Absent(AbsentReason::NoConsent),
        Body::Deleted => Desired::Absent(AbsentReason::Deleted),
    }
}

struct World {
    now: i64,
    /// JobAG: every version of each posting, oldest first.
    jobag: Vec<Vec<(u64, Body)>>,
    ledger: BTreeMap<String, Entry>,
    portal: Portal,
    /// The listing reconcile read last, and when.
    listing: Option<(i64, BTreeMap<String, Held>)>,
    /// Per reference, the highest version sent in a PUT or DELETE.
    sent_high: BTreeMap<String, u64>,
    /// The version each orphan slot first appeared with.
    orphan_versions: [Option<u64>; ORPHANS],
    /// Requests a gateway holds, oldest first.
    gateway: Vec<InTransit>,
    /// References a held PUT reached EURES for after the agent gave up on
    /// it.
    late_puts: std::collections::BTreeSet<String>,
    /// References reconcile judged against a listing read earlier, which
    /// may mislead the ledger until the next run (not what verification is
    /// for).
    misled: std::collections::BTreeSet<String>,
}

type Check = Result<(), TestCaseError>;

impl World {
    fn new() -> World {
        World {
            now: 1_000,
            jobag: vec![Vec::new(); POSTINGS],
            ledger: BTreeMap::new(),
            portal: Portal::default(),
            listing: None,
            sent_high: BTreeMap::new(),
            orphan_versions: [None; ORPHANS],
            gateway: Vec::new(),
            late_puts: Default::default(),
            misled: Default::default(),
        }
    }

    fn current(&self, id: usize) -> Option<(u64, Body)> {
        self.jobag[id].last().copied()
    }

    /// Stores `next` for its reference after checking the invariants every
    /// change of a record must keep.
    fn store(&mut self, next: Entry) -> Check {
        let before = self.ledger.get(&next.id);
        // A withdrawal waits for nobody: a copy that may be on EURES and
        // is no longer wanted is deleted now, whatever backoff the update
        // before it had (SPEC 3.4).
        let withdrawn =
            before.is_some_and(|b| b.desired.is_present()) && !next.desired.is_present();
        if withdrawn && next.delivered != Delivered::Absent {
            prop_assert_eq!(
                next.due(),
                Some(Op::Delete),
                "withdrawn, not deleted: {:?}",
                next
            );
            prop_assert!(
                next.retry.next_attempt_at_ms <= self.now,
                "a withdrawal waits until {} (now {}): {:?}",
                next.retry.next_attempt_at_ms,
                self.now,
                next
            );
        }
        // Only creates and updates become dead letters; a deletion is
        // retried until it succeeds.
        if next.retry.dead {
            prop_assert!(next.desired.is_present(), "a dead deletion: {:?}", next);
        }
        prop_assert!(
            before.is_none_or(|b| b.source_version <= next.source_version),
            "the ledger's version went back: {:?} -> {:?}",
            before,
            next
        );
        self.ledger.insert(next.id.clone(), next);
        Ok(())
    }

    /// A feed event, or an operator's re-read (`forced`).
    fn feed(&mut self, id: usize, version: u64, body: Body, forced: bool) -> Check {
        let key = posting_id(id);
        let incoming = Incoming {
            id: key.clone(),
            version,
            updated_at_ms: Some(self.now),
            employer_cvr: None,
            desired: desired(body, self.now),
        };
        let current = self.ledger.get(&key).cloned();
        let next = apply_change(current.as_ref(), incoming, self.now, PUSH, forced);
        match (&current, next) {
            // SPEC 3.2: an event at or below the highest version seen is
            // ignored.
            (Some(cur), next) if !forced && version <= cur.source_version => {
                prop_assert!(
                    next.is_none(),
                    "feed v{} accepted over v{}: {:?}",
                    version,
                    cur.source_version,
                    next
                );
            }
            (_, None) => {
                return Err(TestCaseError::fail(format!(
                    "v{version} (forced {forced}) ignored over {current:?}"
                )));
            }
            (_, Some(next)) => {
                prop_assert_eq!(next.source_version, version);
                self.store(next)?;
            }
        }
        Ok(())
    }

    fn edit(&mut self, id: usize, bump: u64, body: Body, lost: bool) -> Check {
        let version = self.current(id).map_or(0, |(v, _)| v) + bump;
        self.jobag[id].push((version, body));
        if lost {
            Ok(())
        } else {
            self.feed(id, version, body, false)
        }
    }

    fn replay(&mut self, id: usize, back: usize) -> Check {
        let versions = &self.jobag[id];
        let Some(&(version, body)) = versions.len().checked_sub(1 + back).map(|i| &versions[i])
        else {
            return Ok(());
        };
        self.feed(id, version, body, false)
    }

    /// `resync` (engine `reread`, forced): JobAG's current version again,
    /// or the posting's deletion at the ledger's version.
    fn resync(&mut self, id: usize) -> Check {
        let key = posting_id(id);
        match self.current(id) {
            Some((_, Body::Deleted)) | None => {
                let Some(cur) = self.ledger.get(&key) else {
                    return Ok(());
                };
                let v = cur.source_version;
                self.feed(id, v, Body::Deleted, true)
            }
            Some((version, body)) => {
                self.feed(id, version, body, true)?;
                let e = &self.ledger[&key];
                if wanted(body, self.now).is_some() {
                    // Delivered again even if EURES seems to hold it.
                    prop_assert!(
                        matches!(e.due(), Some(Op::Create | Op::Update)),
                        "a resync of a wanted posting is not due: {:?}",
                        e
                    );
                }
                Ok(())
            }
        }
    }

    /// The request a claim of `e` sends, as the store builds it: a
    /// deletion carries the highest version known.
    fn request(e: &Entry) -> Option<Sent> {
        let op = e.due()?;
        let version = match (op, &e.delivered) {
            (Op::Delete, Delivered::Present { version, .. }) => (*version).max(e.source_version),
            _ => e.source_version,
        };
        let hash = match op {
            Op::Create | Op::Update => e.desired.hash().map(str::to_string),
            Op::Delete | Op::Verify => None,
        };
        Some(Sent { op, version, hash })
    }

    /// The claim: ready operations by rank, then by when they fell due.
    fn claim(&self, batch: usize) -> Result<Vec<(String, Sent)>, TestCaseError> {
        let mut ready: Vec<(&Entry, Sent)> = self
            .ledger
            .values()
            .filter(|e| e.retry.next_attempt_at_ms <= self.now)
            .filter_map(|e| Some((e, Self::request(e)?)))
            .collect();
        ready.sort_by_key(|(e, s)| (s.op.rank(), e.retry.next_attempt_at_ms));
        let claimed: Vec<(String, Sent)> = ready
            .iter()
            .take(batch)
            .map(|(e, s)| (e.id.clone(), s.clone()))
            .collect();
        // Deletions first (SPEC 3.4): no create or update is claimed while
        // a ready deletion waits.
        let upserts = claimed
            .iter()
            .any(|(_, s)| matches!(s.op, Op::Create | Op::Update));
        let left_deletion = ready
            .iter()
            .skip(batch)
            .find(|(_, s)| matches!(s.op, Op::Delete | Op::Verify));
        prop_assert!(
            !(upserts && left_deletion.is_some()),
            "claimed {:?} while the deletion {:?} waits",
            claimed,
            left_deletion
        );
        Ok(claimed)
    }

    /// Checks a request as it goes out: versions sent for a reference
    /// never go back.
    fn sending(&mut self, id: &str, sent: &Sent) -> Check {
        if sent.op != Op::Verify {
            let high = self.sent_high.entry(id.to_string()).or_insert(0);
            prop_assert!(
                sent.version >= *high,
                "{} sent {:?} v{} after v{}",
                id,
                sent.op,
                sent.version,
                *high
            );
            *high = sent.version;
        }
        Ok(())
    }

    /// What EURES does with a request, checked as it goes out.
    fn send(&mut self, id: &str, sent: &Sent) -> Result<AttemptResult, TestCaseError> {
        self.sending(id, sent)?;
        Ok(self.portal.apply(id, sent))
    }

    fn finish(&mut self, id: &str, sent: &Sent, result: AttemptResult) -> Check {
        let e = self.ledger.get(id).expect("claimed record");
        let next = apply_outcome(
            e,
            sent,
            &result,
            self.now,
            LIMITS,
            Duration::from_millis(10),
            PUSH,
        );
        // Rejected content is parked at once (SPEC 4.2), unless the
        // posting moved on while the request was out.
        let unchanged = e.due() == Some(sent.op)
            && e.source_version == sent.version
            && e.desired.hash() == sent.hash.as_deref();
        let rejected = matches!(
            result,
            AttemptResult::Eures {
                outcome: Outcome::Rejected { .. },
                ..
            }
        );
        if rejected && unchanged {
            prop_assert!(next.retry.dead, "rejected, not parked: {:?}", next);
        }
        self.store(next)
    }

    /// A request whose answer is lost is held by a gateway, to be applied
    /// later (or never). It was sent now: the order of sending is checked.
    fn hold(&mut self, id: &str, sent: &Sent) -> Check {
        if sent.op == Op::Verify {
            return Ok(());
        }
        self.sending(id, sent)?;
        self.gateway.push(InTransit {
            id: id.to_string(),
            sent: sent.clone(),
            sent_at: self.now,
        });
        Ok(())
    }

    /// The gateway lets one held request through, unknown to the agent:
    /// applied as the portal decides if it is still within the window the
    /// agent verifies (SPEC 3.8), dropped otherwise.
    fn late(&mut self, nth: usize) {
        if self.gateway.is_empty() {
            return;
        }
        let held = self.gateway.remove(nth % self.gateway.len());
        if self.now < held.sent_at + window_ms() {
            let result = self.portal.apply(&held.id, &held.sent);
            if result == eures(Outcome::Done) && matches!(held.sent.op, Op::Create | Op::Update) {
                self.late_puts.insert(held.id);
            }
        }
    }

    fn attempt(
        &mut self,
        fault: Option<u8>,
        applied_anyway: bool,
        held: bool,
        batch: usize,
    ) -> Check {
        for (id, sent) in self.claim(batch)? {
            let result = match fault {
                None => self.send(&id, &sent)?,
                Some(kind) => {
                    // Only an answer-less failure may hide an applied
                    // request; 429, 401 and 413 are definite refusals.
                    let uncertain = matches!(kind, 0 | 3 | 4);
                    if applied_anyway && uncertain {
                        let _ = self.send(&id, &sent)?;
                    } else if held && uncertain {
                        self.hold(&id, &sent)?;
                    }
                    match kind {
                        0 => eures(Outcome::transient("503")),
                        1 => eures(Outcome::Throttled {
                            retry_after: Some(Duration::from_millis(5)),
                        }),
                        2 => eures(Outcome::Auth),
                        3 => eures(Outcome::transient("connection reset")),
                        4 => eures(Outcome::transient("timeout")),
                        _ => eures(Outcome::Rejected {
                            errors: "413".into(),
                        }),
                    }
                }
            };
            // A rejection only means something for a PUT.
            let result = match result {
                AttemptResult::Eures {
                    outcome: Outcome::Rejected { .. },
                    ..
                } if !matches!(sent.op, Op::Create | Op::Update) => {
                    eures(Outcome::transient("400"))
                }
                other => other,
            };
            self.finish(&id, &sent, result)?;
        }
        Ok(())
    }

    fn racing(&mut self, bump: u64, body: Body) -> Check {
        let Some((id, sent)) = self.claim(1)?.into_iter().next() else {
            return Ok(());
        };
        let result = self.send(&id, &sent)?;
        if let Some(i) = (0..POSTINGS).find(|i| posting_id(*i) == id) {
            self.edit(i, bump, body, false)?;
        }
        self.finish(&id, &sent, result)
    }

    fn crash(&mut self, applied: bool, held: bool, edit: Option<Body>) -> Check {
        let Some((id, sent)) = self.claim(1)?.into_iter().next() else {
            return Ok(());
        };
        if applied {
            let _ = self.send(&id, &sent)?;
        } else if held {
            self.hold(&id, &sent)?;
        }
        if let Some(body) = edit
            && let Some(i) = (0..POSTINGS).find(|i| posting_id(*i) == id)
        {
            self.edit(i, 1, body, false)?;
        }
        let next = abandon(&self.ledger[&id], self.now, PUSH);
        self.store(next)
    }

    fn tick(&mut self, ms: i64) -> Check {
        self.now += ms;
        let expiring: Vec<Entry> = self
            .ledger
            .values()
            .filter_map(|e| expire(e, self.now, PUSH))
            .collect();
        for next in expiring {
            self.store(next)?;
        }
        Ok(())
    }

    fn revive(&mut self, id: &str) -> Check {
        if let Some(e) = self.ledger.get(id)
            && e.retry.dead
        {
            let next = revive(e, self.now, PUSH);
            prop_assert!(!next.retry.dead, "revived, still dead: {:?}", next);
            self.store(next)?;
        }
        Ok(())
    }

    fn list(&mut self) {
        self.listing = Some((self.now, self.portal.held.clone()));
    }

    /// Reconcile's judgement of one reference against a listing read at
    /// `run` (store `reconcile_remote` / `reconcile_unseen`).
    fn observe(&mut self, id: &str, fresh: bool) -> Check {
        if fresh {
            self.list();
        } else {
            self.misled.insert(id.to_string());
        }
        let Some((run, listing)) = &self.listing else {
            return Ok(());
        };
        let (run, listed) = (*run, listing.get(id).cloned());
        let next = match (self.ledger.get(id), listed.clone()) {
            (None, Some(h)) => orphan(id, h.version, &h.hash, self.now, PUSH),
            (None, None) => return Ok(()),
            (Some(e), Some(h)) => observe_remote(e, Some((h.version, &h.hash)), self.now, PUSH),
            // Not listed: judged only if the record did not change since
            // the listing was read and is believed on EURES.
            (Some(e), None) if e.last_change_ms < run && e.delivered != Delivered::Absent => {
                observe_remote(e, None, self.now, PUSH)
            }
            (Some(_), None) => return Ok(()),
        };
        // SPEC 3.6: what the listing shows wrong is repaired: an unwanted
        // copy (an orphan too) deleted, an altered one updated, a missing
        // one created.
        let want = next.desired.hash().map(str::to_string);
        let repair = match (&listed, &want) {
            (Some(_), None) => Some(Op::Delete),
            (Some(h), Some(w)) if h.hash != *w => Some(Op::Update),
            (None, Some(_)) => Some(Op::Create),
            _ => None,
        };
        if let Some(op) = repair
            && !next.retry.dead
        {
            prop_assert_eq!(
                next.due(),
                Some(op),
                "{} listed as {:?}: {:?}",
                id,
                listed,
                next
            );
        }
        self.store(next)
    }

    fn drift(&mut self, id: &str, remove: bool) {
        if remove {
            self.portal.held.remove(id);
        } else if let Some(h) = self.portal.held.get_mut(id) {
            h.hash = "altered".into();
        }
    }

    /// A foreign copy that comes back comes back with the version it first
    /// had. Above the version the ledger holds, a deletion whose
    /// outcome is lost (`Delivered::Unknown`) would be sent again with the
    /// ledger's own lower version, which the portal answers 409 until
    /// reconcile lists the copy again: the ledger keeps no listed version
    /// apart from `delivered`.
    fn orphan(&mut self, slot: usize, version: u64) {
        let first = *self.orphan_versions[slot].get_or_insert(version);
        self.portal.held.insert(
            orphan_id(slot),
            Held {
                version: first,
                hash: "foreign".into(),
            },
        );
    }

    /// Reconcile's judgement of one posting against JobAG's snapshot
    /// (store `reconcile_source` / `reconcile_unseen`).
    fn snapshot(&mut self, id: usize, missed: bool) -> Check {
        let key = posting_id(id);
        let current = self.ledger.get(&key).cloned();
        let shown = match self.current(id) {
            Some((_, Body::Deleted)) | None => None,
            Some(_) if missed => None,
            shown => shown,
        };
        match (shown, current) {
            (None, Some(e)) => {
                let judged = e.delivered != Delivered::Absent || e.desired.is_present();
                if e.last_change_ms < self.now
                    && judged
                    && let Some(next) = source_gone(&e, self.now, PUSH)
                {
                    self.store(next)?;
                }
                Ok(())
            }
            (None, None) => Ok(()),
            (Some((version, body)), None) => self.feed(id, version, body, false),
            (Some((version, body)), Some(e)) => {
                if version > e.source_version {
                    return self.feed(id, version, body, false);
                }
                if version < e.source_version {
                    return Ok(());
                }
                let want = DesiredState::from(desired(body, self.now));
                let differs =
                    want.is_present() != e.desired.is_present() || want.hash() != e.desired.hash();
                if (want.is_present() && is_gone(&e)) || differs {
                    self.feed(id, version, body, true)?;
                }
                Ok(())
            }
        }
    }

    fn step(&mut self, ev: Event) -> Check {
        match ev {
            Event::Edit {
                id,
                bump,
                body,
                lost,
            } => self.edit(id, bump, body, lost),
            Event::Replay { id, back } => self.replay(id, back),
            Event::Attempt {
                fault,
                applied_anyway,
                held,
                batch,
            } => self.attempt(fault, applied_anyway, held, batch),
            Event::Late { nth } => {
                self.late(nth);
                Ok(())
            }
            Event::Racing { bump, body } => self.racing(bump, body),
            Event::Crash {
                applied,
                held,
                edit,
            } => self.crash(applied, held, edit),
            Event::Tick { ms } => self.tick(ms),
            Event::Resync { id } => self.resync(id),
            Event::Revive { id } => self.revive(&posting_id(id)),
            Event::List => {
                self.list();
                Ok(())
            }
            Event::Observe { id, fresh } => self.observe(&any_id(id), fresh),
            Event::Drift { id, remove } => {
                self.drift(&any_id(id), remove);
                Ok(())
            }
            Event::Orphan { slot, version } => {
                self.orphan(slot, version);
                Ok(())
            }
            Event::Snapshot { id, missed } => self.snapshot(id, missed),
        }
    }

    /// The faults stop: two complete reconcile passes (a record the
    /// source pass changed is judged against the listing only by the
    /// next pass), the operator retries the dead letters, and delivery
    /// runs until nothing is due.
    fn quiet(&mut self) -> Check {
        // The worst moment for what the gateway still holds: applied just
        // as the faults stop, after whatever the agent did meanwhile.
        while !self.gateway.is_empty() {
            self.late(0);
        }
        // The verifications due are done before reconcile could mend what
        // they are for.
        for _ in 0..3 {
            self.tick(window_ms())?;
            self.attempt(None, false, false, POSTINGS + ORPHANS)?;
        }
        self.verified()?;
        for _ in 0..2 {
            self.tick(1)?;
            for id in 0..POSTINGS {
                self.snapshot(id, false)?;
            }
            self.list();
            for id in 0..POSTINGS + ORPHANS {
                self.observe(&any_id(id), false)?;
            }
        }
        let dead: Vec<String> = self
            .ledger
            .values()
            .filter(|e| e.retry.dead)
            .map(|e| e.id.clone())
            .collect();
        for id in dead {
            self.revive(&id)?;
        }
        for _ in 0..60 {
            self.tick(10_000)?;
            self.attempt(None, false, false, POSTINGS + ORPHANS)?;
        }
        Ok(())
    }

    /// SPEC 3.8, before any reconcile: a copy a gateway put back after the
    /// agent gave up on its request does not outlive the verification
    /// window where the posting is not wanted (judged from JobAG alone;
    /// what a stale listing misled the ledger into is reconcile's part).
    fn verified(&self) -> Check {
        for id in 0..POSTINGS {
            let key = posting_id(id);
            if !self.late_puts.contains(&key) || self.misled.contains(&key) {
                continue;
            }
            let unwanted = self
                .current(id)
                .is_none_or(|(_, body)| wanted(body, self.now).is_none());
            let fed = self
                .ledger
                .get(&key)
                .is_some_and(|e| self.current(id).is_some_and(|(v, _)| v == e.source_version));
            if unwanted && fed {
                prop_assert!(
                    !self.portal.held.contains_key(&key),
                    "{} is on EURES after the verification window; ledger {:?}",
                    key,
                    self.ledger.get(&key)
                );
            }
        }
        Ok(())
    }

    /// SPEC 3.1, judged from JobAG and the portal alone.
    fn converged(&self) -> Check {
        for id in 0..POSTINGS {
            let key = posting_id(id);
            let want = self
                .current(id)
                .and_then(|(_, body)| wanted(body, self.now));
            let held = self.portal.held.get(&key).map(|h| h.hash.clone());
            let entry = self.ledger.get(&key);
            match want {
                Some(hash) if hash == hash_of(REJECTED_DOC) => {
                    prop_assert_ne!(held, Some(hash), "{} holds rejected content", key);
                    prop_assert!(
                        entry.is_some_and(|e| e.retry.dead),
                        "{}: rejected content is no dead letter: {:?}",
                        key,
                        entry
                    );
                }
                want => {
                    prop_assert_eq!(&held, &want, "{} on EURES; ledger {:?}", key, entry);
                    prop_assert!(
                        entry.is_none_or(|e| !e.retry.dead && e.due().is_none()),
                        "{} converged but {:?}",
                        key,
                        entry
                    );
                }
            }
        }
        for slot in 0..ORPHANS {
            let key = orphan_id(slot);
            prop_assert!(
                !self.portal.held.contains_key(&key),
                "orphan {} still on EURES",
                key
            );
        }
        Ok(())
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        rng_seed: RngSeed::Fixed(seed::seed("planner_prop cases")),
        // The seed printed repeats a failure; no file of past cases.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn converges_and_keeps_every_invariant(events in proptest::collection::vec(event(), 1..80)) {
        let mut w = World::new();
        for ev in events {
            w.step(ev)?;
        }
        w.quiet()?;
        w.converged()?;
    }
}
