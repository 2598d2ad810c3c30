//! Push-mode delivery of one posting: JobAG's versions, a lossy and
//! duplicating feed, the ledger record and its lease, two workers (each
//! claiming, waiting for a request slot, sending, answered, recording,
//! and crashing at any of these), a network that applies requests late,
//! and a portal with or without tombstones that may answer `202`, fail
//! one document or be down as a whole.
//!
//! Time is the ledger's clock, in steps of [`TICK_MS`]; a worker's
//! process clock is that plus its skew.

use std::time::Duration;

use chrono::DateTime;
use eures_sync_domain::eligibility::{AbsentReason, Desired};
use eures_sync_domain::ledger::{
    self, AttemptResult, Entry, Incoming, Lease, Mode, Op, Outcome, RetryLimits, Sent,
    SourceVerdict,
};

use crate::Defect;
use crate::bfs::{Kind, Model};

/// One step of the clock.
pub const TICK_MS: i64 = 5_000;
/// `eures.request_timeout_ms`.
pub const TIMEOUT_MS: i64 = 10_000;
/// The lease a claim takes, as the worker sets it: twice the request
/// timeout plus 5 s.
pub const LEASE_MS: i64 = 2 * TIMEOUT_MS + 5_000;
const LIMITS: RetryLimits = RetryLimits {
    max_attempts: 2,
    verify_after: Duration::from_millis(TIMEOUT_MS as u64 + 5_000),
};
const BACKOFF: Duration = Duration::from_millis(TICK_MS as u64);
/// Requests an outage refuses at most: enough to dead-letter a create
/// were outage failures counted.
const OUTAGE_REFUSALS: u8 = 3;
const FAR_MS: i64 = 4_102_444_800_000;
const ID: &str = "p";
const OWNERS: [&str; 2] = ["w0", "w1"];

/// What one JobAG version says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// Eligible, with this document; its publication ends at that
    /// ledger time (ms), if ever.
    Live(&'static str, Option<i64>),
    /// Not eligible (not published).
    Ineligible,
    Deleted,
    Withdrawn,
}

/// Faults the checker may inject, each at most this often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Budget {
    pub crashes: u8,
    /// Requests applied whose answer is lost (the worker times out).
    pub lost_answers: u8,
    /// Requests lost before they reach the portal.
    pub dropped: u8,
    /// `202 Accepted` to a PUT: applied later, or never.
    pub accepted: u8,
    /// The portal goes down as a whole (every request `503`) and back up.
    pub outages: u8,
    /// `5xx` for this one document while the portal works.
    pub broken: u8,
    /// Another posting's request answered by the portal, seen by a worker.
    pub other_answers: u8,
    /// Clock steps while a worker is slow to act: holding a claim it has
    /// not sent (waiting for a request slot) or an answer it has not
    /// recorded. Without a bound, a worker could wait, lose its lease,
    /// claim and wait again for ever.
    pub stalls: u8,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub script: Vec<Version>,
    /// A conforming portal keeps tombstones (SPEC 4.2); the agent must
    /// not rely on it.
    pub tombstones: bool,
    pub budget: Budget,
    /// Each worker's process clock minus the ledger's.
    pub skew_ms: [i64; 2],
    pub defect: Option<Defect>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    token: i64,
    until: i64,
    sent: Sent,
    /// The record's previous attempt, as the claim read it.
    last_attempt: Option<i64>,
    claimed_at: i64,
}

/// An answer as the worker holds it until it records it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Raw {
    Done,
    Accepted,
    Superseded,
    Found(u64, String),
    /// No clear answer; whether it counts as a strike.
    NoAnswer {
        strike: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Phase {
    Idle,
    /// Claimed, waiting for a request slot.
    Claimed(Claim),
    InFlight(Claim, i64),
    Answered(Claim, Raw),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReqKind {
    Put(u64, String),
    Delete(u64),
    Get,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Req {
    worker: usize,
    token: i64,
    kind: ReqKind,
    /// The latest ledger time it may still be applied.
    deadline: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Portal {
    copy: Option<(u64, String)>,
    tombstone: Option<u64>,
    up: bool,
    /// While down: how many more requests it refuses before it is back.
    refusals: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    now: i64,
    /// JobAG versions published so far.
    jobag: usize,
    entry: Option<Entry>,
    lease: Option<Lease>,
    workers: [Phase; 2],
    net: Vec<Req>,
    portal: Portal,
    budget: Budget,
    /// Ledger time of the portal's last clear answer to any request.
    last_answer_db: Option<i64>,
    /// Each worker's health as it kept it before the fix: the process
    /// clock of its last answer (read only with that defect put back).
    answered_proc: [Option<i64>; 2],
    max_delete_sent: Option<u64>,
    /// A property a transition broke.
    bad: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Publish,
    Feed(usize),
    Expire,
    Tick,
    Reap,
    Claim(usize),
    Send(usize),
    Apply(usize),
    ApplyAnswerLost(usize),
    Accept202(usize),
    Drop(usize),
    Reject503(usize),
    Fail500(usize),
    Timeout(usize),
    Record(usize),
    Crash(usize),
    Down,
    Up,
    OtherAnswered(usize),
}

pub struct Delivery {
    pub config: Config,
}

fn incoming(version: u64, v: Version) -> Incoming {
    let desired = match v {
        Version::Live(hash, end) => Desired::Present {
            content: format!("<doc>{hash}</doc>"),
            hash: hash.to_string(),
            publication_end: DateTime::from_timestamp_millis(end.unwrap_or(FAR_MS))
                .expect("a valid instant"),
        },
        Version::Ineligible => Desired::Absent(AbsentReason::NotPublished),
        Version::Deleted => Desired::Absent(AbsentReason::Deleted),
        Version::Withdrawn => Desired::Absent(AbsentReason::NoConsent),
    };
    Incoming {
        id: ID.into(),
        version,
        updated_at_ms: None,
        employer_cvr: None,
        desired,
    }
}

impl Delivery {
    fn has(&self, d: Defect) -> bool {
        self.config.defect == Some(d)
    }

    fn stalling(s: &State) -> bool {
        s.workers
            .iter()
            .any(|p| matches!(p, Phase::Claimed(_) | Phase::Answered(..)))
    }

    fn awaiting(s: &State, r: &Req) -> bool {
        matches!(&s.workers[r.worker], Phase::InFlight(c, _) if c.token == r.token)
    }

    /// The lowest token no lease, claim or request refers to: tokens are
    /// only ever compared, so this keeps the state space finite without
    /// letting a stale claim match a new one.
    fn fresh_token(s: &State) -> i64 {
        let used = |t: i64| {
            s.lease.as_ref().is_some_and(|l| l.token == t)
                || s.net.iter().any(|r| r.token == t)
                || s.workers.iter().any(|p| match p {
                    Phase::Idle => false,
                    Phase::Claimed(c) | Phase::InFlight(c, _) | Phase::Answered(c, _) => {
                        c.token == t
                    }
                })
        };
        (0..).find(|t| !used(*t)).expect("a free token")
    }

    /// The portal applies a request and says what it answers.
    fn portal_apply(&self, s: &mut State, kind: &ReqKind) -> Raw {
        let held = s.portal.copy.as_ref().map(|(v, _)| *v);
        match kind {
            ReqKind::Put(v, h) => {
                if held.is_some_and(|held| held > *v)
                    || (self.config.tombstones && s.portal.tombstone.is_some_and(|t| t >= *v))
                {
                    Raw::Superseded
                } else {
                    s.portal.copy = Some((*v, h.clone()));
                    Raw::Done
                }
            }
            ReqKind::Delete(v) => {
                if held.is_some_and(|held| held > *v) {
                    Raw::Superseded
                } else {
                    s.portal.copy = None;
                    s.portal.tombstone = Some(s.portal.tombstone.unwrap_or(0).max(*v));
                    Raw::Done
                }
            }
            ReqKind::Get => match &s.portal.copy {
                Some((v, h)) => Raw::Found(*v, h.clone()),
                None => Raw::Done,
            },
        }
    }

    /// A worker received a clear answer.
    fn note_answer(&self, s: &mut State, w: usize) {
        s.last_answer_db = Some(s.now);
        let proc = s.now + self.config.skew_ms[w];
        s.answered_proc[w] = Some(s.answered_proc[w].map_or(proc, |p| p.max(proc)));
    }

    /// Whether a failure without a clear answer is a strike, decided when
    /// it happens.
    fn strike(&self, s: &State, w: usize, c: &Claim, sent_proc: i64) -> bool {
        if self.has(Defect::StrikesTwoClocks) {
            // Before the fix: the process clock against the ledger's stamp.
            let since = c.last_attempt.unwrap_or(sent_proc);
            s.answered_proc[w].is_some_and(|at| at > since)
        } else {
            ledger::counts_as_strike(s.last_answer_db, c.last_attempt, c.claimed_at)
        }
    }

    fn wanted(&self, s: &State) -> Option<&'static str> {
        match s.jobag.checked_sub(1).map(|i| self.config.script[i]) {
            Some(Version::Live(h, end)) if end.is_none_or(|e| e > s.now) => Some(h),
            _ => None,
        }
    }

    fn tick_enabled(&self, s: &State) -> bool {
        let now = s.now;
        // A request never outlives its timeout.
        if s.workers
            .iter()
            .any(|p| matches!(p, Phase::InFlight(_, d) if *d <= now))
        {
            return false;
        }
        let backing_off = s
            .entry
            .as_ref()
            .is_some_and(|e| e.due().is_some() && e.retry.next_attempt_at_ms > now);
        let expiring = s.entry.as_ref().is_some_and(|e| {
            matches!(e.desired, ledger::DesiredState::Present { publication_end_ms, .. }
                if publication_end_ms > now && publication_end_ms < FAR_MS)
        });
        backing_off
            || expiring
            || s.lease.as_ref().is_some_and(|l| l.until_ms >= now)
            || s.net.iter().any(|r| r.deadline >= now)
            || s.workers.iter().any(|p| matches!(p, Phase::InFlight(..)))
            || (s.jobag < self.config.script.len()
                && matches!(self.config.script[s.jobag], Version::Live(_, Some(e)) if e > now))
    }
}

impl Model for Delivery {
    type State = State;
    type Action = Action;

    fn init(&self) -> Vec<State> {
        vec![State {
            now: 0,
            jobag: 0,
            entry: None,
            lease: None,
            workers: [Phase::Idle, Phase::Idle],
            net: Vec::new(),
            portal: Portal {
                copy: None,
                tombstone: None,
                up: true,
                refusals: 0,
            },
            budget: self.config.budget,
            last_answer_db: None,
            answered_proc: [None, None],
            max_delete_sent: None,
            bad: None,
        }]
    }

    fn actions(&self, s: &State, out: &mut Vec<(Action, Kind)>) {
        use Action as A;
        use Kind::{Fault, Step};
        if s.bad.is_some() {
            return;
        }
        if s.jobag < self.config.script.len() {
            out.push((A::Publish, Step));
        }
        for i in 1..=s.jobag {
            out.push((A::Feed(i), Step));
        }
        if s.entry
            .as_ref()
            .is_some_and(|e| ledger::expire(e, s.now, Mode::Push).is_some())
        {
            out.push((A::Expire, Step));
        }
        if self.tick_enabled(s) {
            let stalling = Self::stalling(s);
            if !stalling {
                out.push((A::Tick, Step));
            } else if s.budget.stalls > 0 {
                out.push((A::Tick, Fault));
            }
        }
        if s.lease
            .as_ref()
            .is_some_and(|l| ledger::lease_expired(l, s.now))
        {
            out.push((A::Reap, Step));
        }
        for w in 0..2 {
            match &s.workers[w] {
                Phase::Idle => {
                    if s.entry
                        .as_ref()
                        .is_some_and(|e| ledger::claimable(e, s.lease.as_ref(), s.now))
                    {
                        out.push((A::Claim(w), Step));
                    }
                }
                Phase::Claimed(_) => out.push((A::Send(w), Step)),
                Phase::InFlight(c, deadline) => {
                    // A request the network still holds times out only as
                    // a fault (its answer comes too late): it may land after.
                    let held = s.net.iter().any(|r| r.worker == w && r.token == c.token);
                    if s.now >= *deadline {
                        if !held {
                            out.push((A::Timeout(w), Step));
                        } else if s.budget.lost_answers > 0 {
                            out.push((A::Timeout(w), Fault));
                        }
                    }
                }
                Phase::Answered(..) => out.push((A::Record(w), Step)),
            }
            if s.budget.crashes > 0 && s.workers[w] != Phase::Idle {
                out.push((A::Crash(w), Fault));
            }
            if s.budget.other_answers > 0 && s.portal.up {
                out.push((A::OtherAnswered(w), Fault));
            }
        }
        for (r, req) in s.net.iter().enumerate() {
            if s.portal.up {
                out.push((A::Apply(r), Step));
                if s.budget.lost_answers > 0 && Self::awaiting(s, req) {
                    out.push((A::ApplyAnswerLost(r), Fault));
                }
                if s.budget.accepted > 0
                    && Self::awaiting(s, req)
                    && matches!(req.kind, ReqKind::Put(..))
                {
                    out.push((A::Accept202(r), Fault));
                }
                if s.budget.broken > 0 && Self::awaiting(s, req) {
                    out.push((A::Fail500(r), Fault));
                }
            } else if s.portal.refusals > 0 {
                out.push((A::Reject503(r), Step));
            }
            if s.budget.dropped > 0 {
                out.push((A::Drop(r), Fault));
            }
        }
        if s.portal.up && s.budget.outages > 0 {
            out.push((A::Down, Fault));
        }
        if !s.portal.up {
            out.push((A::Up, Step));
        }
    }

    fn next(&self, s: &State, a: &Action) -> State {
        let mut n = s.clone();
        let now = s.now;
        match *a {
            Action::Publish => n.jobag += 1,
            Action::Feed(i) => {
                let inc = incoming(i as u64, self.config.script[i - 1]);
                match ledger::apply_source(s.entry.as_ref(), inc, now, Mode::Push, false, false) {
                    SourceVerdict::Apply(e) => n.entry = Some(e),
                    SourceVerdict::Ignore => {}
                    SourceVerdict::Quarantine { .. } => unreachable!("no jumps in this model"),
                }
            }
            Action::Expire => {
                n.entry = s
                    .entry
                    .as_ref()
                    .and_then(|e| ledger::expire(e, now, Mode::Push));
            }
            Action::Tick => {
                if Self::stalling(s) {
                    n.budget.stalls -= 1;
                }
                n.now += TICK_MS;
                let at = n.now;
                n.net.retain(|r| r.deadline >= at);
            }
            Action::Reap => {
                n.entry = s
                    .entry
                    .as_ref()
                    .map(|e| ledger::abandon(e, now, Mode::Push));
                n.lease = None;
            }
            Action::Claim(w) => {
                let e = s.entry.as_ref().expect("claimable");
                let op = e.due().expect("due");
                let token = Self::fresh_token(s);
                let until = now + LEASE_MS;
                n.lease = Some(Lease {
                    owner: OWNERS[w].into(),
                    token,
                    until_ms: until,
                });
                let hash = match op {
                    Op::Create | Op::Update => e.desired.hash().map(str::to_string),
                    Op::Delete | Op::Verify => None,
                };
                n.workers[w] = Phase::Claimed(Claim {
                    token,
                    until,
                    sent: Sent {
                        op,
                        version: e.source_version,
                        hash,
                    },
                    last_attempt: e.retry.last_attempt_ms,
                    claimed_at: now,
                });
            }
            Action::Send(w) => {
                let Phase::Claimed(c) = &s.workers[w] else {
                    unreachable!()
                };
                let send = self.has(Defect::SendWithoutLeaseCheck)
                    || ledger::may_send(c.until, now, TIMEOUT_MS);
                if !send {
                    if ledger::Lease::held_by(s.lease.as_ref(), OWNERS[w], c.token) {
                        n.lease = None;
                    }
                    n.workers[w] = Phase::Idle;
                    return n;
                }
                let kind = match c.sent.op {
                    Op::Create | Op::Update => {
                        ReqKind::Put(c.sent.version, c.sent.hash.clone().expect("a document"))
                    }
                    Op::Delete => ReqKind::Delete(c.sent.version),
                    Op::Verify => ReqKind::Get,
                };
                match &kind {
                    ReqKind::Put(v, _) if s.max_delete_sent.is_some_and(|d| d >= *v) => {
                        n.bad = Some("no PUT after a DELETE of an equal or higher version");
                    }
                    ReqKind::Delete(v) => {
                        n.max_delete_sent = Some(s.max_delete_sent.unwrap_or(0).max(*v));
                    }
                    ReqKind::Get if s.net.iter().any(|r| matches!(r.kind, ReqKind::Put(..))) => {
                        n.bad = Some(
                            "a deletion is verified only once no request in doubt can still land",
                        );
                    }
                    _ => {}
                }
                let deadline = now + TIMEOUT_MS;
                n.net.push(Req {
                    worker: w,
                    token: c.token,
                    kind,
                    deadline,
                });
                n.net.sort();
                n.workers[w] = Phase::InFlight(c.clone(), deadline);
            }
            Action::Apply(r) | Action::ApplyAnswerLost(r) => {
                let req = n.net.remove(r);
                let raw = self.portal_apply(&mut n, &req.kind);
                if matches!(a, Action::ApplyAnswerLost(_)) {
                    n.budget.lost_answers -= 1;
                } else if Self::awaiting(s, &req) {
                    self.note_answer(&mut n, req.worker);
                    let Phase::InFlight(c, _) = &s.workers[req.worker] else {
                        unreachable!()
                    };
                    n.workers[req.worker] = Phase::Answered(c.clone(), raw);
                }
            }
            Action::Accept202(r) => {
                n.budget.accepted -= 1;
                let req = &s.net[r];
                self.note_answer(&mut n, req.worker);
                let Phase::InFlight(c, _) = &s.workers[req.worker] else {
                    unreachable!()
                };
                let raw = if self.has(Defect::AcceptedAsDone) {
                    Raw::Done
                } else {
                    Raw::Accepted
                };
                n.workers[req.worker] = Phase::Answered(c.clone(), raw);
            }
            Action::Drop(r) => {
                n.budget.dropped -= 1;
                n.net.remove(r);
            }
            Action::Reject503(r) | Action::Fail500(r) => {
                if matches!(a, Action::Fail500(_)) {
                    n.budget.broken -= 1;
                } else {
                    n.portal.refusals -= 1;
                }
                let req = n.net.remove(r);
                if Self::awaiting(s, &req) {
                    let Phase::InFlight(c, deadline) = &s.workers[req.worker] else {
                        unreachable!()
                    };
                    let sent_proc = deadline - TIMEOUT_MS + self.config.skew_ms[req.worker];
                    let strike = self.strike(s, req.worker, c, sent_proc);
                    n.workers[req.worker] = Phase::Answered(c.clone(), Raw::NoAnswer { strike });
                }
            }
            Action::Timeout(w) => {
                let Phase::InFlight(c, deadline) = &s.workers[w] else {
                    unreachable!()
                };
                if s.net.iter().any(|r| r.worker == w && r.token == c.token) {
                    n.budget.lost_answers -= 1;
                }
                let sent_proc = deadline - TIMEOUT_MS + self.config.skew_ms[w];
                let strike = self.strike(s, w, c, sent_proc);
                n.workers[w] = Phase::Answered(c.clone(), Raw::NoAnswer { strike });
            }
            Action::Record(w) => {
                let Phase::Answered(c, raw) = &s.workers[w] else {
                    unreachable!()
                };
                n.workers[w] = Phase::Idle;
                if !ledger::Lease::held_by(s.lease.as_ref(), OWNERS[w], c.token) {
                    return n;
                }
                // The portal's answers as the EURES client classifies them;
                // whether one counts as a strike is the worker's fact.
                let eures = |outcome| AttemptResult::Eures {
                    outcome,
                    portal_answered: true,
                };
                let result = match raw {
                    Raw::Done => eures(Outcome::Done),
                    Raw::Accepted => eures(Outcome::Accepted),
                    Raw::Superseded => eures(Outcome::Superseded),
                    Raw::Found(v, h) => AttemptResult::Found {
                        version: *v,
                        hash: h.clone(),
                    },
                    Raw::NoAnswer { strike } => AttemptResult::Eures {
                        outcome: Outcome::transient("5xx"),
                        portal_answered: *strike,
                    },
                };
                let prev = s.entry.as_ref().expect("a claimed record");
                let next =
                    ledger::apply_outcome(prev, &c.sent, &result, now, LIMITS, BACKOFF, Mode::Push);
                if !prev.retry.dead && next.retry.dead {
                    let since = c.last_attempt.unwrap_or(c.claimed_at);
                    if !matches!(c.sent.op, Op::Create | Op::Update) {
                        n.bad = Some("only creates and updates become dead letters");
                    } else if !matches!(
                        result,
                        AttemptResult::Eures {
                            outcome: Outcome::Rejected { .. },
                            ..
                        }
                    ) && s.last_answer_db.is_none_or(|at| at <= since)
                    {
                        n.bad = Some(
                            "a dead letter only while EURES answered other requests, never during an outage",
                        );
                    }
                }
                n.entry = Some(next);
                n.lease = None;
            }
            Action::Crash(w) => {
                n.budget.crashes -= 1;
                n.workers[w] = Phase::Idle;
            }
            Action::Down => {
                n.budget.outages -= 1;
                n.portal.up = false;
                n.portal.refusals = OUTAGE_REFUSALS;
            }
            Action::Up => {
                n.portal.up = true;
                n.portal.refusals = 0;
            }
            Action::OtherAnswered(w) => {
                n.budget.other_answers -= 1;
                self.note_answer(&mut n, w);
            }
        }
        n
    }

    fn violation(&self, s: &State) -> Option<String> {
        if let Some(bad) = s.bad {
            return Some(bad.into());
        }
        let in_flight = s
            .workers
            .iter()
            .filter(|p| matches!(p, Phase::InFlight(..)))
            .count();
        (in_flight > 1).then(|| "at most one request per posting in flight".into())
    }

    fn convergence(&self) -> &'static str {
        "once faults stop, EURES holds exactly the wanted copy (or the create is a dead letter) and nothing is in flight"
    }

    fn converged(&self, s: &State) -> bool {
        if s.workers.iter().any(|p| *p != Phase::Idle) || !s.net.is_empty() || s.lease.is_some() {
            return false;
        }
        let Some(e) = &s.entry else {
            return s.jobag == 0 && s.portal.copy.is_none();
        };
        if e.retry.dead {
            // An operator's matter, and only what the properties allow.
            return true;
        }
        if e.due().is_some() {
            return false;
        }
        match (self.wanted(s), &s.portal.copy) {
            (Some(h), Some((_, held))) => held == h,
            (None, None) => true,
            _ => false,
        }
    }
}
