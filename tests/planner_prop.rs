//! Property test of the pure planner: random sequences of source events,
//! delivery attempts with random EURES faults, and the passing of time must
//! always converge to the model (EURES holds exactly the desired copy) once
//! the faults stop, and EURES must never see a version go backwards. Workers
//! may die with an attempt in flight, applied or not.

use std::time::Duration;

use chrono::DateTime;
use eures_sync::domain::eligibility::{AbsentReason, Desired};
use eures_sync::domain::ledger::{
    AttemptResult, Entry, Incoming, Mode, Op, RetryLimits, Sent, abandon, apply_change,
    apply_outcome, expire,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Event {
    /// A feed change: version delta (0 = repeat of the current one), which
    /// document (None = a reason to be absent), publication end.
    Source {
        bump: u8,
        doc: Option<u8>,
        ends_at: i64,
    },
    /// The delivery side attempts what is due; EURES answers with this fault
    /// (None = success); `applied_anyway` models a dropped connection after
    /// EURES applied the request.
    Attempt {
        fault: Option<u8>,
        applied_anyway: bool,
    },
    /// An attempt whose desired state moves while it is in flight.
    RacingAttempt {
        bump: u8,
        doc: Option<u8>,
    },
    Tick {
        ms: i64,
    },
    /// The worker dies with an attempt in flight (EURES may have applied
    /// it); the source may move meanwhile (`bump` 0: it does not). The lease
    /// runs out and the attempt is abandoned.
    Crash {
        applied: bool,
        bump: u8,
        doc: Option<u8>,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (0u8..3, proptest::option::of(0u8..3), 50i64..5_000)
            .prop_map(|(bump, doc, ends_at)| Event::Source { bump, doc, ends_at }),
        4 => (proptest::option::of(0u8..5), any::<bool>())
            .prop_map(|(fault, applied_anyway)| Event::Attempt { fault, applied_anyway }),
        1 => (1u8..3, proptest::option::of(0u8..3))
            .prop_map(|(bump, doc)| Event::RacingAttempt { bump, doc }),
        1 => (1i64..2_000).prop_map(|ms| Event::Tick { ms }),
        1 => (any::<bool>(), 0u8..3, proptest::option::of(0u8..3))
            .prop_map(|(applied, bump, doc)| Event::Crash { applied, bump, doc }),
    ]
}

/// The EURES portal as SPEC 4.2 describes it: versions never go backwards.
#[derive(Debug, Default)]
struct Portal {
    held: Option<(u64, String)>,
    /// Every version ever written, to check monotonicity.
    versions: Vec<u64>,
}

impl Portal {
    fn apply(&mut self, sent: &Sent) -> AttemptResult {
        match sent.op {
            Op::Create | Op::Update => {
                if let Some((v, _)) = &self.held
                    && *v > sent.version
                {
                    return AttemptResult::Superseded;
                }
                self.held = Some((sent.version, sent.hash.clone().unwrap_or_default()));
                self.versions.push(sent.version);
                AttemptResult::Done
            }
            Op::Delete => {
                if let Some((v, _)) = &self.held
                    && *v > sent.version
                {
                    return AttemptResult::Superseded;
                }
                self.held = None;
                AttemptResult::Done
            }
            Op::Verify => match &self.held {
                Some((version, hash)) => AttemptResult::Found {
                    version: *version,
                    hash: hash.clone(),
                },
                None => AttemptResult::Done,
            },
        }
    }
}

struct World {
    entry: Option<Entry>,
    portal: Portal,
    now: i64,
    version: u64,
}

const LIMITS: RetryLimits = RetryLimits {
    max_attempts: 1_000,
    verify_after: Duration::from_millis(7_000),
};

fn desired(doc: Option<u8>, ends_at: i64) -> Desired {
    match doc {
        Some(d) => Desired::Present {
            content: format!("<doc>{d}</doc>"),
            hash: format!("h{d}"),
            publication_end: DateTime::from_timestamp_millis(ends_at).unwrap(),
        },
        None => Desired::Absent(AbsentReason::NoConsent),
    }
}

impl World {
    fn source(&mut self, bump: u8, doc: Option<u8>, ends_at: i64) {
        self.version += u64::from(bump);
        let incoming = Incoming {
            id: "p".into(),
            version: self.version,
            updated_at_ms: Some(self.now),
            employer_cvr: None,
            desired: desired(doc, self.now + ends_at),
        };
        if let Some(next) = apply_change(self.entry.as_ref(), incoming, self.now, Mode::Push, false)
        {
            self.entry = Some(next);
        }
    }

    fn sent(&self) -> Option<Sent> {
        let e = self.entry.as_ref()?;
        let op = e.due()?;
        if e.retry.next_attempt_at_ms > self.now {
            return None;
        }
        let hash = match (&e.desired, op) {
            (
                eures_sync::domain::ledger::DesiredState::Present { hash, .. },
                Op::Create | Op::Update,
            ) => Some(hash.clone()),
            _ => None,
        };
        Some(Sent {
            op,
            version: e.source_version,
            hash,
        })
    }

    fn finish(&mut self, sent: &Sent, result: AttemptResult) {
        let e = self.entry.as_ref().expect("entry");
        self.entry = Some(apply_outcome(
            e,
            sent,
            &result,
            self.now,
            LIMITS,
            Duration::from_millis(10),
            Mode::Push,
        ));
    }

    fn attempt(&mut self, fault: Option<u8>, applied_anyway: bool) {
        let Some(sent) = self.sent() else { return };
        let result = match fault {
            None => self.portal.apply(&sent),
            Some(kind) => {
                // Only an answer-less failure may hide an applied request;
                // 429 and 401 are definite refusals.
                let uncertain = !matches!(kind, 1 | 2);
                if applied_anyway && uncertain {
                    let _ = self.portal.apply(&sent);
                }
                match kind {
                    0 => AttemptResult::Transient("503".into()),
                    1 => AttemptResult::Throttled {
                        retry_after: Some(Duration::from_millis(5)),
                    },
                    2 => AttemptResult::Auth,
                    3 => AttemptResult::Transient("connection reset".into()),
                    _ => AttemptResult::Transient("timeout".into()),
                }
            }
        };
        self.finish(&sent, result);
    }

    fn racing(&mut self, bump: u8, doc: Option<u8>) {
        let Some(sent) = self.sent() else { return };
        let result = self.portal.apply(&sent);
        self.source(bump, doc, 10_000);
        self.finish(&sent, result);
    }

    fn crash(&mut self, applied: bool, bump: u8, doc: Option<u8>) {
        let Some(sent) = self.sent() else { return };
        if applied {
            let _ = self.portal.apply(&sent);
        }
        if bump > 0 {
            self.source(bump, doc, 10_000);
        }
        let e = self.entry.as_ref().expect("entry");
        self.entry = Some(abandon(e, self.now, Mode::Push));
    }

    fn expire(&mut self) {
        if let Some(e) = &self.entry
            && let Some(next) = expire(e, self.now, Mode::Push)
        {
            self.entry = Some(next);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn converges_and_never_regresses(events in proptest::collection::vec(event(), 1..60)) {
        let mut w = World { entry: None, portal: Portal::default(), now: 1_000, version: 0 };
        for ev in events {
            match ev {
                Event::Source { bump, doc, ends_at } => w.source(bump.max(1), doc, ends_at),
                Event::Attempt { fault, applied_anyway } => w.attempt(fault, applied_anyway),
                Event::RacingAttempt { bump, doc } => w.racing(bump, doc),
                Event::Tick { ms } => { w.now += ms; w.expire(); }
                Event::Crash { applied, bump, doc } => w.crash(applied, bump, doc),
            }
        }
        // Faults stop; time moves on; deliver until nothing is due.
        for _ in 0..50 {
            w.now += 60_000;
            w.expire();
            w.attempt(None, false);
        }
        prop_assert!(w.portal.versions.windows(2).all(|p| p[0] <= p[1]),
            "EURES saw a version go backwards: {:?}", w.portal.versions);
        if let Some(e) = &w.entry {
            prop_assert_eq!(e.due(), None, "still due after quiet: {:?}", e);
            match &e.desired {
                eures_sync::domain::ledger::DesiredState::Present { hash, .. } => {
                    let held = w.portal.held.as_ref().map(|(_, h)| h.as_str());
                    prop_assert_eq!(held, Some(hash.as_str()));
                }
                eures_sync::domain::ledger::DesiredState::Absent { .. } => {
                    prop_assert!(w.portal.held.is_none(), "an absent posting is still on EURES");
                }
            }
        } else {
            prop_assert!(w.portal.held.is_none());
        }
    }
}
