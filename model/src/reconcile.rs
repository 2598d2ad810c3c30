//! Reconcile and `resync --all` against a lossy feed, for one posting:
//! JobAG's versions (implausible jumps among them), the feed delivering
//! any of them late, twice or never, and runs taken step by step (start,
//! snapshot page, judgement of what the snapshot did not show). Delivery
//! is one atomic step here (the delivery model checks it); what matters is
//! what the ledger wants and which versions it lets in.

use std::time::Duration;

use chrono::DateTime;
use eures_sync_domain::eligibility::{AbsentReason, Desired};
use eures_sync_domain::ledger::{
    self, AttemptResult, DesiredState, Entry, IMPLAUSIBLE_JUMP, Incoming, Mode, Outcome,
    RetryLimits, Sent, SourceVerdict,
};

use crate::Defect;
use crate::bfs::{Kind, Model};

const TICK_MS: i64 = 1_000;
/// How far ahead of the ledger's clock today's run start may be.
const SKEW_MS: i64 = 60_000;
const FAR_MS: i64 = 4_102_444_800_000;
const LIMITS: RetryLimits = RetryLimits {
    max_attempts: 2,
    verify_after: Duration::from_secs(15),
};

/// One JobAG version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    pub version: u64,
    pub what: What,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum What {
    Live(&'static str),
    Withdrawn,
    Restricted,
    /// Deleted in JobAG: gone from its snapshot.
    Deleted,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub script: Vec<Version>,
    /// Reconcile runs (`resync`: forced) the checker may start.
    pub runs: u8,
    pub resyncs: u8,
    /// Steps of the ledger's clock.
    pub ticks: u8,
    pub defect: Option<Defect>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Run {
    Idle,
    /// Started at `run` (as the run reads it); forced for a resync.
    Started {
        run: i64,
        forced: bool,
    },
    /// The snapshot page was taken: whether it showed the posting.
    Snapshot {
        run: i64,
        forced: bool,
        seen: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    now: i64,
    jobag: usize,
    entry: Option<Entry>,
    run: Run,
    runs: u8,
    resyncs: u8,
    ticks: u8,
    /// A run started after JobAG's last change completed.
    clean_run: bool,
    /// JobAG changed, or the feed wrote the record, since the current
    /// run started.
    run_dirty: bool,
    bad: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Publish,
    Feed(usize),
    Deliver,
    Tick,
    Start { forced: bool },
    Snapshot,
    Judge,
}

pub struct Reconcile {
    pub config: Config,
}

fn incoming(v: Version) -> Incoming {
    let desired = match v.what {
        What::Live(hash) => Desired::Present {
            content: format!("<doc>{hash}</doc>"),
            hash: hash.to_string(),
            publication_end: DateTime::from_timestamp_millis(FAR_MS).expect("a valid instant"),
        },
        What::Withdrawn => Desired::Absent(AbsentReason::NoConsent),
        What::Restricted => Desired::Absent(AbsentReason::Restricted),
        What::Deleted => Desired::Absent(AbsentReason::Deleted),
    };
    Incoming {
        id: "p".into(),
        version: v.version,
        updated_at_ms: None,
        employer_cvr: None,
        desired,
    }
}

impl Reconcile {
    fn has(&self, d: Defect) -> bool {
        self.config.defect == Some(d)
    }

    fn latest(&self, s: &State) -> Option<Version> {
        s.jobag.checked_sub(1).map(|i| self.config.script[i])
    }

    /// Applies a source version the way a writer does, and checks the
    /// two properties of the source guard on the way.
    fn write(&self, s: &State, n: &mut State, v: Version, forced: bool, feed: bool) {
        let current = s.entry.as_ref();
        let inc = incoming(v);
        let privacy = ledger::removes_for_privacy(&DesiredState::from(inc.desired.clone()));
        let next = if self.has(Defect::SourceGuardBypassed) {
            // Before the fix: the feed quarantined a jump and wrote nothing;
            // reconcile and resync applied it unchecked.
            if feed && ledger::implausible_jump(current, v.version) {
                None
            } else {
                ledger::apply_change(current, inc, s.now, Mode::Push, forced)
            }
        } else {
            match ledger::apply_source(current, inc, s.now, Mode::Push, forced, false) {
                SourceVerdict::Apply(e) => Some(e),
                SourceVerdict::Ignore => None,
                SourceVerdict::Quarantine { removal } => removal,
            }
        };
        if let Some(e) = &next
            && let Some(c) = current
            && e.source_version > c.source_version.saturating_add(IMPLAUSIBLE_JUMP)
        {
            n.bad = Some("no writer accepts an implausible version (feed, reconcile, resync)");
        }
        let stale = current.is_some_and(|c| v.version <= c.source_version);
        let result = next.as_ref().or(current);
        if privacy && !stale && result.is_some_and(|e| e.desired.is_present()) {
            n.bad = Some(
                "a deletion, withdrawal or restriction removes the copy, whatever its version",
            );
        }
        if let Some(e) = next {
            n.entry = Some(e);
        }
    }
}

impl Model for Reconcile {
    type State = State;
    type Action = Action;

    fn init(&self) -> Vec<State> {
        vec![State {
            now: 0,
            jobag: 0,
            entry: None,
            run: Run::Idle,
            runs: self.config.runs,
            resyncs: self.config.resyncs,
            ticks: self.config.ticks,
            clean_run: false,
            run_dirty: false,
            bad: None,
        }]
    }

    fn actions(&self, s: &State, out: &mut Vec<(Action, Kind)>) {
        if s.bad.is_some() {
            return;
        }
        if s.jobag < self.config.script.len() {
            out.push((Action::Publish, Kind::Step));
        }
        // The feed may lose any event: delivering one is never owed.
        for i in 1..=s.jobag {
            out.push((Action::Feed(i), Kind::Fault));
        }
        if s.entry.as_ref().is_some_and(|e| e.due().is_some()) {
            out.push((Action::Deliver, Kind::Step));
        }
        if s.ticks > 0 {
            out.push((Action::Tick, Kind::Fault));
        }
        match s.run {
            Run::Idle => {
                if s.runs > 0 {
                    out.push((Action::Start { forced: false }, Kind::Step));
                }
                if s.resyncs > 0 {
                    out.push((Action::Start { forced: true }, Kind::Fault));
                }
            }
            Run::Started { .. } => out.push((Action::Snapshot, Kind::Step)),
            Run::Snapshot { .. } => out.push((Action::Judge, Kind::Step)),
        }
    }

    fn next(&self, s: &State, a: &Action) -> State {
        let mut n = s.clone();
        match *a {
            Action::Publish => {
                n.jobag += 1;
                n.clean_run = false;
                n.run_dirty = true;
            }
            Action::Feed(i) => {
                self.write(s, &mut n, self.config.script[i - 1], false, true);
                // A late event undoes what a run repaired; a record the
                // feed wrote during a run is left to the next.
                if n.entry != s.entry {
                    n.clean_run = false;
                    n.run_dirty = s.run != Run::Idle;
                }
            }
            Action::Deliver => {
                let e = s.entry.as_ref().expect("due");
                let op = e.due().expect("due");
                let sent = Sent {
                    op,
                    version: e.source_version,
                    hash: e.desired.hash().map(str::to_string),
                };
                n.entry = Some(ledger::apply_outcome(
                    e,
                    &sent,
                    &AttemptResult::Eures {
                        outcome: Outcome::Done,
                        portal_answered: true,
                    },
                    s.now,
                    LIMITS,
                    Duration::ZERO,
                    Mode::Push,
                ));
            }
            Action::Tick => {
                n.ticks -= 1;
                n.now += TICK_MS;
            }
            Action::Start { forced } => {
                if forced {
                    n.resyncs -= 1;
                } else {
                    n.runs -= 1;
                }
                // Whatever came before the run was stamped before it.
                n.now += TICK_MS;
                let run = if self.has(Defect::RunStartFromProcessClock) {
                    n.now + SKEW_MS
                } else {
                    n.now
                };
                n.run = Run::Started { run, forced };
                n.run_dirty = false;
            }
            Action::Snapshot => {
                let Run::Started { run, forced } = s.run else {
                    unreachable!()
                };
                let shown = self
                    .latest(s)
                    .filter(|v| v.what != What::Deleted)
                    .filter(|v| {
                        // Reconcile takes what differs; a resync all.
                        forced
                            || s.entry.as_ref().is_none_or(|e| {
                                v.version > e.source_version
                                    || (ledger::is_gone(e) && v.version == e.source_version)
                            })
                    });
                if let Some(v) = shown {
                    let forced = forced || s.entry.as_ref().is_some_and(ledger::is_gone);
                    self.write(s, &mut n, v, forced, false);
                }
                let seen = self.latest(s).is_some_and(|v| v.what != What::Deleted);
                n.run = Run::Snapshot { run, forced, seen };
            }
            Action::Judge => {
                let Run::Snapshot { run, seen, .. } = s.run else {
                    unreachable!()
                };
                n.run = Run::Idle;
                if let Some(e) = &s.entry
                    && !seen
                    && (e.delivered != ledger::Delivered::Absent || e.desired.is_present())
                    && ledger::may_judge_unseen(e, run)
                    && let Some(gone) = ledger::source_gone(e, s.now, Mode::Push)
                {
                    if self.latest(s).is_some_and(|v| v.what != What::Deleted) {
                        n.bad = Some("a posting JobAG holds is never judged gone from it");
                    }
                    n.entry = Some(gone);
                }
                n.clean_run = s.clean_run || !s.run_dirty;
                n.run_dirty = false;
            }
        }
        n
    }

    fn violation(&self, s: &State) -> Option<String> {
        s.bad.map(str::to_string)
    }

    fn convergence(&self) -> &'static str {
        "after a reconcile run undisturbed by JobAG and the feed, the ledger wants what JobAG says (quarantined versions aside)"
    }

    fn converged(&self, s: &State) -> bool {
        if !s.clean_run {
            return true;
        }
        let (v, e) = match (self.latest(s), &s.entry) {
            (Some(v), Some(e)) => (v, e),
            (None, e) => return e.is_none(),
            (Some(v), None) => return v.what == What::Deleted,
        };
        if e.due().is_some() {
            return false;
        }
        match v.what {
            What::Live(h) if !ledger::implausible_jump(Some(e), v.version) => {
                e.source_version == v.version && e.desired.hash() == Some(h)
            }
            What::Live(_) => true,
            _ => !e.desired.is_present(),
        }
    }
}
