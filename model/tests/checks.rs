//! The bounded checks (`cargo test -p eures-sync-model`) and the deeper
//! ones (`cargo test -p eures-sync-model --release -- --ignored`). Each
//! prints its states, transitions and time, and for a defect the length
//! of the counterexample; `-- --nocapture` shows them, and
//! `MODEL_TRACE=1` the traces too.

use eures_sync_domain::ledger::IMPLAUSIBLE_JUMP;
use eures_sync_model::Defect;
use eures_sync_model::bfs::{Model, Report, check};
use eures_sync_model::{delivery, exchange, reconcile};

const LIMIT: usize = 3_000_000;
/// Each state costs a few hundred bytes twice (the index and the graph):
/// about 4 GB at this bound.
const DEEP_LIMIT: usize = 6_000_000;

fn run<M: Model>(name: &str, model: &M, limit: usize) -> Report {
    let r = check(model, limit);
    print!(
        "{name}: {} states, {} transitions, {:.1?}",
        r.states, r.transitions, r.elapsed
    );
    match &r.violation {
        Some(v) => {
            println!(", counterexample of {} steps: {}", v.len(), v.property);
            if std::env::var_os("MODEL_TRACE").is_some() {
                println!("{v}");
            }
        }
        None => println!(", no violation"),
    }
    r
}

fn holds<M: Model>(name: &str, model: &M, limit: usize) {
    let r = run(name, model, limit);
    if let Some(v) = r.violation {
        panic!("{name}: {v}");
    }
}

fn found<M: Model>(name: &str, model: &M, property: &str) {
    let r = run(name, model, LIMIT);
    let v = r
        .violation
        .unwrap_or_else(|| panic!("{name}: the defect went unnoticed"));
    assert!(
        v.property.contains(property),
        "{name}: expected a violation of {property:?}, found {v}"
    );
}

// ---- push-mode delivery ----

use delivery::{Budget, Version as V};

const NONE: Budget = Budget {
    crashes: 0,
    lost_answers: 0,
    dropped: 0,
    accepted: 0,
    outages: 0,
    broken: 0,
    other_answers: 0,
    stalls: 0,
};

fn push(
    script: Vec<V>,
    tombstones: bool,
    budget: Budget,
    defect: Option<Defect>,
) -> delivery::Delivery {
    delivery::Delivery {
        config: delivery::Config {
            script,
            tombstones,
            budget,
            // The second worker's clock runs a minute ahead.
            skew_ms: [0, 60_000],
            defect,
        },
    }
}

fn withdrawn() -> Vec<V> {
    vec![V::Live("h1", None), V::Withdrawn]
}

fn edited() -> Vec<V> {
    vec![V::Live("h1", None), V::Live("h2", None)]
}

/// Slow workers and a crash: leases, fencing, reaping.
const LEASES: Budget = Budget {
    crashes: 1,
    stalls: 3,
    ..NONE
};
/// Requests in doubt: `202`, a lost answer.
const DOUBT: Budget = Budget {
    accepted: 1,
    stalls: 1,
    ..NONE
};
const LOST: Budget = Budget {
    lost_answers: 1,
    dropped: 1,
    ..NONE
};
/// A portal-wide outage, another posting's answer.
const OUTAGE: Budget = Budget {
    outages: 1,
    other_answers: 1,
    ..NONE
};

#[test]
fn delivery_holds_with_slow_and_crashing_workers() {
    holds(
        "delivery/leases",
        &push(withdrawn(), false, LEASES, None),
        LIMIT,
    );
}

#[test]
fn delivery_holds_with_requests_in_doubt() {
    holds(
        "delivery/202",
        &push(withdrawn(), false, DOUBT, None),
        LIMIT,
    );
    holds("delivery/lost", &push(withdrawn(), true, LOST, None), LIMIT);
}

#[test]
fn delivery_holds_through_an_outage() {
    holds(
        "delivery/outage",
        &push(edited(), false, OUTAGE, None),
        LIMIT,
    );
}

#[test]
fn defect_4_send_without_lease_check_is_found() {
    // Long enough a wait for a request sent at the last moment to outlive
    // its lease.
    let budget = Budget { stalls: 4, ..NONE };
    found(
        "defect 4 (send without lease check)",
        &push(
            withdrawn(),
            false,
            budget,
            Some(Defect::SendWithoutLeaseCheck),
        ),
        "at most one request per posting in flight",
    );
}

#[test]
fn defect_5_strikes_on_two_clocks_are_found() {
    let budget = Budget { outages: 1, ..NONE };
    found(
        "defect 5 (strikes compare two clocks)",
        &push(edited(), false, budget, Some(Defect::StrikesTwoClocks)),
        "never during an outage",
    );
}

#[test]
fn defect_6_accepted_taken_as_done_is_found() {
    found(
        "defect 6 (202 taken as done)",
        &push(withdrawn(), false, DOUBT, Some(Defect::AcceptedAsDone)),
        "EURES holds exactly the wanted copy",
    );
}

// ---- reconcile and resync ----

use reconcile::{Version as R, What};

fn source(
    script: Vec<R>,
    runs: u8,
    resyncs: u8,
    ticks: u8,
    defect: Option<Defect>,
) -> reconcile::Reconcile {
    reconcile::Reconcile {
        config: reconcile::Config {
            script,
            runs,
            resyncs,
            ticks,
            defect,
        },
    }
}

/// Live, edited, then withdrawn and deleted with implausible versions.
fn jumping() -> Vec<R> {
    let j = IMPLAUSIBLE_JUMP;
    vec![
        R {
            version: 1,
            what: What::Live("h1"),
        },
        R {
            version: 2,
            what: What::Live("h2"),
        },
        R {
            version: 3 + j,
            what: What::Withdrawn,
        },
        R {
            version: 4 + j,
            what: What::Deleted,
        },
    ]
}

/// An implausible edit.
fn jumping_edit() -> Vec<R> {
    vec![
        R {
            version: 1,
            what: What::Live("h1"),
        },
        R {
            version: 2 + IMPLAUSIBLE_JUMP,
            what: What::Live("h2"),
        },
    ]
}

#[test]
fn reconcile_holds() {
    holds("reconcile/jumps", &source(jumping(), 2, 1, 1, None), LIMIT);
    holds(
        "reconcile/jumping edit",
        &source(jumping_edit(), 2, 1, 1, None),
        LIMIT,
    );
}

#[test]
fn defect_2_source_guard_bypass_is_found() {
    found(
        "defect 2 (implausible withdrawal kept)",
        &source(jumping(), 1, 0, 0, Some(Defect::SourceGuardBypassed)),
        "removes the copy",
    );
    found(
        "defect 2 (reconcile and resync bypass the jump check)",
        &source(jumping_edit(), 1, 1, 0, Some(Defect::SourceGuardBypassed)),
        "no writer accepts an implausible version",
    );
}

#[test]
fn defect_3_run_start_from_process_clock_is_found() {
    found(
        "defect 3 (run start from the process clock)",
        &source(jumping(), 1, 1, 1, Some(Defect::RunStartFromProcessClock)),
        "never judged gone",
    );
}

// ---- pull-mode exchange ----

use exchange::Change as C;

fn pull(scripts: Vec<Vec<C>>, calls: u8, ticks: u8, defect: Option<Defect>) -> exchange::Exchange {
    exchange::Exchange {
        config: exchange::Config {
            scripts,
            calls,
            ticks,
            defect,
        },
    }
}

fn two_postings() -> Vec<Vec<C>> {
    vec![vec![C::Live("a"), C::Withdrawn], vec![C::Live("b")]]
}

#[test]
fn exchange_holds() {
    holds("exchange", &pull(two_postings(), 2, 3, None), LIMIT);
}

#[test]
fn defect_1_exchange_without_cut_is_found() {
    found(
        "defect 1 (getChanges without a cut)",
        &pull(two_postings(), 2, 3, Some(Defect::ExchangeWithoutCut)),
        "ACTIVE set equals the ledger's",
    );
}

// ---- deeper bounds ----

#[test]
#[ignore = "minutes in release: cargo test -p eures-sync-model --release -- --ignored"]
fn deep_delivery() {
    let script = vec![V::Live("h1", None), V::Live("h2", None), V::Withdrawn];
    let all = Budget {
        crashes: 1,
        accepted: 1,
        stalls: 3,
        ..NONE
    };
    holds(
        "deep delivery/leases+doubt",
        &push(withdrawn(), false, all, None),
        DEEP_LIMIT,
    );
    holds(
        "deep delivery/edit+withdraw",
        &push(script, true, LEASES, None),
        DEEP_LIMIT,
    );
    let expiring = vec![V::Live("h1", Some(15_000)), V::Live("h2", Some(30_000))];
    holds(
        "deep delivery/expiry",
        &push(expiring, false, Budget { stalls: 1, ..NONE }, None),
        DEEP_LIMIT,
    );
    let outage = Budget {
        outages: 1,
        other_answers: 1,
        broken: 1,
        stalls: 1,
        ..NONE
    };
    holds(
        "deep delivery/outage",
        &push(edited(), false, outage, None),
        DEEP_LIMIT,
    );
}

#[test]
#[ignore = "minutes in release: cargo test -p eures-sync-model --release -- --ignored"]
fn deep_reconcile_and_exchange() {
    holds(
        "deep reconcile",
        &source(jumping(), 3, 1, 2, None),
        DEEP_LIMIT,
    );
    let three = vec![
        vec![C::Live("a"), C::Withdrawn, C::Live("c")],
        vec![C::Live("b")],
        vec![C::Live("d"), C::Live("e")],
    ];
    holds("deep exchange", &pull(three, 3, 4, None), DEEP_LIMIT);
}
