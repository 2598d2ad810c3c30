//! Pull mode: the EURES Input API's `getChanges` against writers whose
//! commits come in another order than their stamps (PostgreSQL: each
//! transaction reads its clock when it starts, then commits), read by a
//! poller that goes on from the highest `lastModificationTimestamp` it saw
//! and that reads each section of an answer at a different time.
//!
//! Two postings, because one posting's writers take turns on its row and
//! so commit in stamp order.

use chrono::DateTime;
use eures_sync_domain::eligibility::{AbsentReason, Desired};
use eures_sync_domain::ledger::{self, Cut, Entry, Incoming, Mode};

use crate::Defect;
use crate::bfs::{Kind, Model};

const TICK_MS: i64 = 1;
const FAR_MS: i64 = 4_102_444_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    Live(&'static str),
    Withdrawn,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Each posting's changes, in order.
    pub scripts: Vec<Vec<Change>>,
    /// Calls of the poller before the last one.
    pub calls: u8,
    /// Clock steps.
    pub ticks: u8,
    pub defect: Option<Defect>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Posting {
    entry: Option<Entry>,
    /// Changes committed.
    done: usize,
    /// A write transaction under way, with the stamp it read.
    writing: Option<i64>,
}

/// An answer being read: sections created, modified, closed in turn.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Call {
    since: i64,
    /// `None` today: no upper bound.
    high_water: Option<i64>,
    section: u8,
    max_seen: Option<i64>,
    last: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    now: i64,
    postings: Vec<Posting>,
    /// Where the poller goes on from.
    ts: i64,
    /// What the poller believes per posting: (last modification, ACTIVE).
    view: Vec<Option<(i64, bool)>>,
    call: Option<Call>,
    calls: u8,
    ticks: u8,
    final_done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Begin(usize),
    Commit(usize),
    Tick,
    /// The barrier, then `H` from the ledger's clock.
    Call {
        last: bool,
    },
    Section,
}

pub struct Exchange {
    pub config: Config,
}

/// Which section a reference is listed in (SPEC 4.3).
fn section_of(x: &ledger::Exchange) -> Option<u8> {
    let created = x.created_ms?;
    Some(if x.closed_ms.is_some() {
        2
    } else if Some(created) == x.modified_ms {
        0
    } else {
        1
    })
}

impl Exchange {
    fn all_committed(&self, s: &State) -> bool {
        s.postings
            .iter()
            .zip(&self.config.scripts)
            .all(|(p, script)| p.done == script.len() && p.writing.is_none())
    }

    fn max_stamp(s: &State) -> i64 {
        s.postings
            .iter()
            .filter_map(|p| p.entry.as_ref().and_then(|e| e.exchange.modified_ms))
            .max()
            .unwrap_or(i64::MIN)
    }
}

impl Model for Exchange {
    type State = State;
    type Action = Action;

    fn init(&self) -> Vec<State> {
        let n = self.config.scripts.len();
        vec![State {
            now: 0,
            postings: vec![
                Posting {
                    entry: None,
                    done: 0,
                    writing: None,
                };
                n
            ],
            ts: 0,
            view: vec![None; n],
            call: None,
            calls: self.config.calls,
            ticks: self.config.ticks,
            final_done: false,
        }]
    }

    fn actions(&self, s: &State, out: &mut Vec<(Action, Kind)>) {
        for (i, p) in s.postings.iter().enumerate() {
            match p.writing {
                None if p.done < self.config.scripts[i].len() => {
                    out.push((Action::Begin(i), Kind::Step));
                }
                Some(_) => out.push((Action::Commit(i), Kind::Step)),
                None => {}
            }
        }
        let settled = self.all_committed(s);
        if s.ticks > 0 || (settled && s.now <= Self::max_stamp(s)) {
            out.push((Action::Tick, Kind::Step));
        }
        match &s.call {
            Some(_) => out.push((Action::Section, Kind::Step)),
            // The barrier waits for every write under way.
            None if s.postings.iter().all(|p| p.writing.is_none()) => {
                if s.calls > 0 {
                    out.push((Action::Call { last: false }, Kind::Step));
                }
                if !s.final_done && settled && s.now > Self::max_stamp(s) {
                    out.push((Action::Call { last: true }, Kind::Step));
                }
            }
            None => {}
        }
    }

    fn next(&self, s: &State, a: &Action) -> State {
        let mut n = s.clone();
        match *a {
            Action::Begin(i) => n.postings[i].writing = Some(s.now),
            Action::Commit(i) => {
                let p = &s.postings[i];
                let stamp = p.writing.expect("a write under way");
                let desired = match self.config.scripts[i][p.done] {
                    Change::Live(hash) => Desired::Present {
                        content: format!("<doc>{hash}</doc>"),
                        hash: hash.to_string(),
                        publication_end: DateTime::from_timestamp_millis(FAR_MS)
                            .expect("a valid instant"),
                    },
                    Change::Withdrawn => Desired::Absent(AbsentReason::NoConsent),
                };
                let inc = Incoming {
                    id: format!("p{i}"),
                    version: p.done as u64 + 1,
                    updated_at_ms: None,
                    employer_cvr: None,
                    desired,
                };
                let next = ledger::apply_change(p.entry.as_ref(), inc, stamp, Mode::Pull, false);
                let q = &mut n.postings[i];
                if let Some(e) = next {
                    q.entry = Some(e);
                }
                q.done += 1;
                q.writing = None;
            }
            Action::Tick => {
                if !(self.all_committed(s) && s.now <= Self::max_stamp(s)) {
                    n.ticks -= 1;
                }
                n.now += TICK_MS;
            }
            Action::Call { last } => {
                if !last {
                    n.calls -= 1;
                }
                let high_water = if self.config.defect == Some(Defect::ExchangeWithoutCut) {
                    None
                } else {
                    Some(Cut::new(s.ts, s.now).high_water_ms)
                };
                n.call = Some(Call {
                    since: s.ts,
                    high_water,
                    section: 0,
                    max_seen: None,
                    last,
                });
            }
            Action::Section => {
                let mut call = s.call.clone().expect("a call");
                let within = |m: i64| match call.high_water {
                    Some(h) => Cut {
                        since_ms: call.since,
                        high_water_ms: h,
                    }
                    .contains(m),
                    None => m >= call.since,
                };
                for (i, p) in s.postings.iter().enumerate() {
                    let Some(e) = &p.entry else { continue };
                    let Some(m) = e.exchange.modified_ms else {
                        continue;
                    };
                    if section_of(&e.exchange) != Some(call.section) || !within(m) {
                        continue;
                    }
                    call.max_seen = Some(call.max_seen.map_or(m, |x| x.max(m)));
                    let active = call.section != 2;
                    if n.view[i].is_none_or(|(seen, _)| m >= seen) {
                        n.view[i] = Some((m, active));
                    }
                }
                call.section += 1;
                if call.section == 3 {
                    n.ts = call.max_seen.map_or(s.ts, |m| m.max(s.ts));
                    n.final_done |= call.last;
                    n.call = None;
                } else {
                    n.call = Some(call);
                }
            }
        }
        n
    }

    fn violation(&self, _s: &State) -> Option<String> {
        None
    }

    fn convergence(&self) -> &'static str {
        "the poller's ACTIVE set equals the ledger's after a call that follows the last commit"
    }

    fn converged(&self, s: &State) -> bool {
        s.final_done
            && s.postings.iter().zip(&s.view).all(|(p, seen)| {
                let active = p.entry.as_ref().is_some_and(|e| e.exchange.active);
                active == seen.is_some_and(|(_, a)| a)
            })
    }
}
