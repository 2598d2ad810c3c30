//! The SQL that states a guard of `domain/src/ledger/guards.rs` a second
//! time agrees with the guard, on both databases: the claim's WHERE clause
//! with `claimable`, the reap with `lease_expired`, the reconcile's unseen
//! pass with `may_judge_unseen`, the exchange's page queries with
//! `Cut::contains`. Each test lays out ledger records on every boundary of
//! its predicate, runs the store's own statement through its API and
//! checks that it takes exactly the records the guard accepts.
//!
//! The ledger's clock is the test's: on SQLite the time proposed to each
//! call (far ahead of the process clock, so it is the one stamped), on
//! PostgreSQL a `clock_timestamp()` of the test database's own that reads
//! a one-row table (its `search_path` puts `public` before `pg_catalog`).
//! So "now" can be hit to the millisecond.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use common::{Backend, PgDb, on_both_backends};
use eures_sync::domain::eligibility::{AbsentReason, Desired};
use eures_sync::domain::ledger::{
    AttemptResult, Cut, Delivered, Entry, Incoming, Lease, Mode, Outcome, RetryLimits, abandon,
    claimable, lease_expired, may_judge_unseen,
};
use eures_sync::store::exchange::{ChangeKind, ExchangeFilter, ExchangeRef, ExchangeStore};
use eures_sync::store::{
    Claimed, Completion, Ctx, IngestBatch, PgStore, Repair, SqliteStore, Store, Unseen,
};
use sqlx::AssertSqlSafe;

on_both_backends!(
    a_claim_takes_exactly_what_claimable_accepts,
    the_reap_takes_exactly_the_leases_lease_expired_accepts,
    the_unseen_pass_judges_exactly_what_may_judge_unseen_accepts,
    an_exchange_page_lists_exactly_what_the_cut_contains,
);

/// Far ahead of any process clock, so that it is what the ledger stamps.
const T: i64 = 3_000_000_000_000;
const FAR_MS: i64 = 4_102_444_800_000;

/// Direct access to the test's ledger database, for reading leases (the
/// store's API does not show them) and for the states its API cannot reach.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

type LeaseRow = (String, Option<String>, Option<i64>, Option<i64>);

const LEASES: &str = "SELECT id, lease_owner, lease_token, lease_until_ms FROM postings";
const SET_NEXT_ATTEMPT: &str = "UPDATE postings SET next_attempt_at_ms = $1 WHERE id = $2";

struct Ledger {
    store: Arc<dyn Store>,
    exchange: Arc<dyn ExchangeStore>,
    raw: Raw,
    backend: Backend,
    _pg: Option<PgDb>,
    _dir: tempfile::TempDir,
}

impl Ledger {
    async fn open(backend: Backend) -> Ledger {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = match backend {
            Backend::Sqlite => {
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("ledger.db").display()
                );
                let store = Arc::new(SqliteStore::connect(&url).await.expect("store"));
                store.migrate().await.expect("migrate");
                let raw = sqlx::SqlitePool::connect(&url).await.expect("raw pool");
                Ledger {
                    store: store.clone(),
                    exchange: store,
                    raw: Raw::Sqlite(raw),
                    backend,
                    _pg: None,
                    _dir: dir,
                }
            }
            Backend::Postgres => {
                let db = PgDb::create().await;
                let setup = db.pool().await;
                for stmt in [
                    format!(
                        "ALTER DATABASE {} SET search_path = public, pg_catalog",
                        db.name
                    ),
                    "CREATE TABLE test_clock (ms BIGINT NOT NULL)".to_string(),
                    format!("INSERT INTO test_clock (ms) VALUES ({T})"),
                    "CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz \
                     LANGUAGE sql VOLATILE AS \
                     $$ SELECT timestamptz 'epoch' + ms * interval '1 millisecond' FROM test_clock $$"
                        .to_string(),
                ] {
                    sqlx::query(AssertSqlSafe(stmt))
                        .execute(&setup)
                        .await
                        .expect("set up the test clock");
                }
                setup.close().await;
                // New sessions only: they take the database's search_path.
                let store = Arc::new(PgStore::connect(&db.url()).await.expect("store"));
                store.migrate().await.expect("migrate");
                let raw = db.pool().await;
                Ledger {
                    store: store.clone(),
                    exchange: store,
                    raw: Raw::Postgres(raw),
                    backend,
                    _pg: Some(db),
                    _dir: dir,
                }
            }
        };
        // SQLite's clock takes the time proposed once a write stamps it;
        // every claim checks it stamped the time proposed.
        if backend == Backend::Postgres {
            assert_eq!(
                ledger.store.now_ms().await.expect("now"),
                T,
                "the ledger's clock is not the test's"
            );
        }
        ledger
    }

    /// Sets the ledger's clock to `ms` and returns it, to be proposed too.
    async fn at(&self, ms: i64) -> i64 {
        if let Raw::Postgres(pool) = &self.raw {
            sqlx::query("UPDATE test_clock SET ms = $1")
                .bind(ms)
                .execute(pool)
                .await
                .expect("set the clock");
        }
        ms
    }

    async fn ctx(&self, ms: i64, mode: Mode) -> Ctx {
        Ctx {
            now_ms: self.at(ms).await,
            mode,
        }
    }

    async fn ingest(&self, changes: Vec<Incoming>, at_ms: i64, mode: Mode) {
        let ctx = self.ctx(at_ms, mode).await;
        self.store
            .ingest(
                &IngestBatch {
                    changes,
                    ..IngestBatch::default()
                },
                ctx,
            )
            .await
            .expect("ingest");
    }

    async fn claim(&self, owner: &str, limit: usize, at_ms: i64, until_ms: i64) -> Vec<Claimed> {
        let now = self.at(at_ms).await;
        let lease = Duration::from_millis(u64::try_from(until_ms - now).expect("lease ahead"));
        let claimed = self
            .store
            .claim(owner, limit, now, lease)
            .await
            .expect("claim");
        for c in &claimed {
            assert_eq!(c.claimed_at_ms, now, "{}: claimed on another clock", c.id);
        }
        claimed
    }

    /// Records `result` for `claimed` at `at_ms`; a failure backs off until
    /// `next_attempt_ms`.
    async fn complete(
        &self,
        owner: &str,
        claimed: &Claimed,
        result: AttemptResult,
        at_ms: i64,
        next_attempt_ms: i64,
    ) {
        let ctx = self.ctx(at_ms, Mode::Push).await;
        let backoff = Duration::from_millis(u64::try_from(next_attempt_ms - at_ms).expect("ahead"));
        self.store
            .complete(
                owner,
                Completion {
                    claimed,
                    result: &result,
                    outcome_label: "test",
                    limits: RetryLimits {
                        max_attempts: 1000,
                        verify_after: Duration::from_secs(15),
                    },
                    backoff,
                },
                ctx,
            )
            .await
            .expect("complete");
    }

    async fn entry(&self, id: &str) -> Entry {
        self.store
            .get(id)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{id}: no record"))
    }

    async fn entries(&self, ids: &[String]) -> BTreeMap<String, Entry> {
        let mut out = BTreeMap::new();
        for id in ids {
            out.insert(id.clone(), self.entry(id).await);
        }
        out
    }

    /// Every record's lease, as the guards take it.
    async fn leases(&self) -> BTreeMap<String, Option<Lease>> {
        let rows: Vec<LeaseRow> = match &self.raw {
            Raw::Sqlite(pool) => sqlx::query_as(LEASES).fetch_all(pool).await,
            Raw::Postgres(pool) => sqlx::query_as(LEASES).fetch_all(pool).await,
        }
        .expect("read leases");
        rows.into_iter()
            .map(|(id, owner, token, until)| {
                let lease = owner.map(|owner| Lease {
                    owner,
                    token: token.expect("a lease has a token"),
                    until_ms: until.expect("a lease has an end"),
                });
                (id, lease)
            })
            .collect()
    }

    /// A record state the API cannot reach (see the callers).
    async fn set_next_attempt(&self, id: &str, at_ms: i64) {
        let done = match &self.raw {
            Raw::Sqlite(pool) => sqlx::query(SET_NEXT_ATTEMPT)
                .bind(at_ms)
                .bind(id)
                .execute(pool)
                .await
                .map(|d| d.rows_affected()),
            Raw::Postgres(pool) => sqlx::query(SET_NEXT_ATTEMPT)
                .bind(at_ms)
                .bind(id)
                .execute(pool)
                .await
                .map(|d| d.rows_affected()),
        }
        .expect("set next_attempt_at_ms");
        assert_eq!(done, 1, "{id}: no such record");
    }
}

fn present(id: &str, version: u64) -> Incoming {
    Incoming {
        id: id.into(),
        version,
        updated_at_ms: Some(1),
        employer_cvr: Some("12345678".into()),
        desired: Desired::Present {
            content: format!("<doc>{id} v{version}</doc>"),
            hash: format!("hash-{id}-{version}"),
            publication_end: DateTime::from_timestamp_millis(FAR_MS).expect("instant"),
        },
    }
}

fn withdrawn(id: &str, version: u64) -> Incoming {
    Incoming {
        id: id.into(),
        version,
        updated_at_ms: Some(1),
        employer_cvr: None,
        desired: Desired::Absent(AbsentReason::NoConsent),
    }
}

fn by_id(claimed: Vec<Claimed>) -> HashMap<String, Claimed> {
    claimed.into_iter().map(|c| (c.id.clone(), c)).collect()
}

fn ids<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    names.into_iter().cloned().collect()
}

/// The three sides of a boundary at `at`.
const SIDES: [i64; 3] = [-1, 0, 1];

fn side(d: i64) -> &'static str {
    match d {
        -1 => "before",
        0 => "at",
        _ => "after",
    }
}

/// `Stmt::Claim` against `claimable`: operation due or none or parked as a
/// dead letter, backoff over a millisecond before, at or a millisecond
/// after now, lease none, live, ending exactly now, or run out but not
/// reaped yet.
async fn a_claim_takes_exactly_what_claimable_accepts(backend: Backend) {
    let l = Ledger::open(backend).await;
    let n = T + 10_000;
    let cell = |what: &str, d: i64| format!("{what}-{}", side(d));
    let mut grid: Vec<String> = Vec::new();
    let mut changes = Vec::new();
    for what in ["due", "dead", "done", "live", "ends-now", "ran-out"] {
        for d in SIDES {
            grid.push(cell(what, d));
            changes.push(present(&cell(what, d), 1));
        }
    }
    changes.push(withdrawn("never-wanted", 1));
    grid.push("never-wanted".into());
    l.ingest(changes, T, Mode::Push).await;

    // Every create is claimed once, then its outcome sets what is due when.
    let first = by_id(l.claim("w1", 1000, T + 1, T + 1001).await);
    for d in SIDES {
        let at = T + 2;
        let c = |what: &str| &first[&cell(what, d)];
        // A failure of an unclear outcome backs off, to exactly n + d.
        l.complete(
            "w1",
            c("due"),
            eures(Outcome::Transient { why: "x".into() }, false),
            at,
            n + d,
        )
        .await;
        // A rejected create is parked as a dead letter, backing off alike.
        l.complete(
            "w1",
            c("dead"),
            eures(Outcome::Rejected { errors: "x".into() }, true),
            at,
            n + d,
        )
        .await;
        l.complete("w1", c("done"), eures(Outcome::Done, true), at, at)
            .await;
    }
    // Due again at once, each group at its own instant and leased a
    // millisecond later, to end at its own instant.
    for (k, (what, until)) in [("live", n + 500), ("ran-out", n - 50), ("ends-now", n)]
        .into_iter()
        .enumerate()
    {
        let at = T + 3 + 2 * k as i64;
        for d in SIDES {
            let unavailable = eures(Outcome::Transient { why: "x".into() }, false);
            l.complete("w1", &first[&cell(what, d)], unavailable, at, at)
                .await;
        }
        l.claim("w2", 1000, at + 1, until).await;
        // A lease is only ever taken once the backoff is over: the
        // backoffs of leased records around `n` are written directly
        // (which also keeps the next group's claim off them).
        for d in SIDES {
            l.set_next_attempt(&cell(what, d), n + d).await;
        }
    }
    l.ingest(vec![present("fresh", 1)], T + 9, Mode::Push).await;
    grid.push("fresh".into());
    // A settled record's backoff is its last outcome's time: written too.
    for d in SIDES {
        l.set_next_attempt(&cell("done", d), n + d).await;
    }
    // A claim that looks for run-out leases (none has run out yet) and
    // takes nothing: the claim at `n` does not look again.
    assert!(l.claim("w3", 0, n - 100, n).await.is_empty());

    let entries = l.entries(&grid).await;
    let leases = l.leases().await;
    for d in SIDES {
        let next = |what: &str| entries[&cell(what, d)].retry.next_attempt_at_ms;
        let until = |what: &str| leases[&cell(what, d)].as_ref().map(|l| l.until_ms);
        for what in ["due", "dead", "done", "live", "ran-out", "ends-now"] {
            assert_eq!(next(what), n + d, "{}: backoff not reached", cell(what, d));
        }
        assert!(entries[&cell("due", d)].due().is_some());
        assert!(entries[&cell("dead", d)].retry.dead);
        assert!(entries[&cell("done", d)].due().is_none());
        assert_eq!(until("due"), None);
        assert_eq!(until("live"), Some(n + 500));
        assert_eq!(until("ran-out"), Some(n - 50));
        assert_eq!(until("ends-now"), Some(n));
    }

    let expected: BTreeSet<String> = grid
        .iter()
        .filter(|id| claimable(&entries[*id], leases[*id].as_ref(), n))
        .cloned()
        .collect();
    let claimed = by_id(l.claim("w4", 1000, n, n + 60_000).await);
    let got = ids(claimed.keys());
    assert_eq!(
        got,
        expected,
        "{backend:?}: Stmt::Claim at {n} took {:?}, which claimable refuses, and left {:?}, \
         which it accepts",
        got.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&got).collect::<Vec<_>>(),
    );
}

/// `Stmt::SelectAbandoned` (the reap a claim runs first) against
/// `lease_expired`: leases ending a millisecond before, at and after now,
/// one given back by `release_all`, a live one, and no lease.
async fn the_reap_takes_exactly_the_leases_lease_expired_accepts(backend: Backend) {
    let l = Ledger::open(backend).await;
    let n = T + 10_000;
    let grid: Vec<String> = ["ends-before", "ends-at", "ends-after", "released", "live"]
        .into_iter()
        .map(String::from)
        .collect();
    // One record a millisecond, so each claim of one takes the next.
    for (i, id) in grid.iter().enumerate() {
        l.ingest(vec![present(id, 1)], T + i as i64, Mode::Push)
            .await;
    }
    let ends = [n - 1, n, n + 1];
    for (i, until) in ends.into_iter().enumerate() {
        let got = l.claim("w1", 1, T + 10 + i as i64, until).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, grid[i]);
    }
    let got = l.claim("w-old", 1, T + 20, n + 1000).await;
    assert_eq!(got[0].id, "released");
    assert_eq!(l.store.release_all("w-old").await.expect("release"), 1);
    let got = l.claim("w1", 1, T + 21, n + 5000).await;
    assert_eq!(got[0].id, "live");
    l.ingest(vec![present("unleased", 1)], T + 22, Mode::Push)
        .await;
    let mut grid = grid;
    grid.push("unleased".into());

    let before = l.leases().await;
    let entries = l.entries(&grid).await;
    for (id, until) in grid.iter().zip(ends) {
        assert_eq!(before[id].as_ref().map(|l| l.until_ms), Some(until), "{id}");
    }
    let expected: BTreeSet<String> = grid
        .iter()
        .filter(|id| before[*id].as_ref().is_some_and(|l| lease_expired(l, n)))
        .cloned()
        .collect();
    // The first claim since `T + 10` looks for leases that ran out; it
    // takes nothing itself, so a lease that changed was reaped.
    assert!(l.claim("w2", 0, n, n + 60_000).await.is_empty());
    let after = l.leases().await;
    let reaped: BTreeSet<String> = grid
        .iter()
        .filter(|id| before[*id] != after[*id])
        .cloned()
        .collect();
    assert_eq!(
        reaped,
        expected,
        "{backend:?}: the reap at {n} took {:?}, which lease_expired refuses, and left {:?}, \
         which it accepts",
        reaped.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&reaped).collect::<Vec<_>>(),
    );
    for id in &grid {
        let now = l.entry(id).await;
        if reaped.contains(id) {
            assert_eq!(after[id], None, "{id}: reaped but still leased");
            assert_eq!(
                now,
                abandon(&entries[id], n, Mode::Push),
                "{id}: not abandoned"
            );
        } else {
            assert_eq!(now, entries[id], "{id}: changed without being reaped");
        }
    }
}

/// `Stmt::UnseenInSnapshot` / `Stmt::UnseenInListing` and
/// `writes::reconcile_unseen` against `may_judge_unseen`: a run starting a
/// millisecond before, at and after each record's last accepted change.
async fn the_unseen_pass_judges_exactly_what_may_judge_unseen_accepts(backend: Backend) {
    let l = Ledger::open(backend).await;
    // Delivered: in both passes' scope; one of them withdrawn since.
    l.ingest(vec![present("held1", 1)], T + 10, Mode::Push)
        .await;
    l.ingest(vec![present("held2", 1)], T + 20, Mode::Push)
        .await;
    for c in l.claim("w1", 10, T + 25, T + 5_000).await {
        l.complete("w1", &c, eures(Outcome::Done, true), T + 26, T + 26)
            .await;
    }
    // Wanted, never delivered: in the snapshot pass's scope only.
    for (k, id) in ["p1", "p2", "p3"].into_iter().enumerate() {
        l.ingest(vec![present(id, 1)], T + 30 + 10 * k as i64, Mode::Push)
            .await;
    }
    // Never wanted, never delivered: in no pass's scope.
    l.ingest(vec![withdrawn("never", 1)], T + 55, Mode::Push)
        .await;
    l.ingest(vec![withdrawn("held2", 2)], T + 60, Mode::Push)
        .await;
    let grid: Vec<String> = ["p1", "p2", "p3", "never", "held1", "held2"]
        .into_iter()
        .map(String::from)
        .collect();
    let entries = l.entries(&grid).await;
    assert_ne!(entries["held1"].delivered, Delivered::Absent);
    assert_ne!(entries["held2"].delivered, Delivered::Absent);

    let in_scope = |unseen: Unseen, e: &Entry| {
        let held = e.delivered != Delivered::Absent;
        match unseen {
            Unseen::InSnapshot => held || e.desired.is_present(),
            Unseen::InListing => held,
        }
    };
    let mut runs = BTreeSet::from([T, T + 1_000]);
    for e in entries.values() {
        runs.extend(SIDES.map(|d| e.last_change_ms + d));
    }
    let mut now = T + 2_000;
    for unseen in [Unseen::InSnapshot, Unseen::InListing] {
        for &run in &runs {
            let expected: BTreeSet<String> = entries
                .values()
                .filter(|e| in_scope(unseen, e) && may_judge_unseen(e, run))
                .map(|e| e.id.clone())
                .collect();
            let candidates = l
                .store
                .unseen_candidates(unseen, run, 0, 1000)
                .await
                .expect("candidates");
            let got = ids(candidates.iter().map(|(_, id)| id));
            assert_eq!(
                got, expected,
                "{backend:?}: {unseen:?} candidates of a run started at {run} (left: the store's, \
                 right: what may_judge_unseen accepts in its scope)"
            );
            // The pass itself judges all of them, candidates or not: what
            // it finds gone is among what the guard lets it judge, and
            // every wanted copy among those is found gone.
            let all: Vec<&str> = grid.iter().map(String::as_str).collect();
            now += 1;
            let ctx = l.ctx(now, Mode::Push).await;
            let diffs = l
                .store
                .reconcile_unseen(unseen, &all, run, ctx, Repair::DryRun)
                .await
                .expect("reconcile_unseen");
            let judged = ids(diffs.iter().map(|d| &d.id));
            let wanted: BTreeSet<String> = expected
                .iter()
                .filter(|id| entries[*id].desired.is_present())
                .cloned()
                .collect();
            assert!(
                judged.is_subset(&expected) && wanted.is_subset(&judged),
                "{backend:?}: {unseen:?} pass of a run started at {run} judged {judged:?}, \
                 may_judge_unseen accepts {expected:?}"
            );
        }
    }
}

/// Which `getChanges` section a reference belongs in: the condition of
/// `change_condition` in `dialect.rs` (not a guard).
fn kind_of(e: &Entry) -> Option<ChangeKind> {
    let x = &e.exchange;
    let created = x.created_ms?;
    Some(if x.closed_ms.is_some() {
        ChangeKind::Closed
    } else if Some(created) == x.modified_ms {
        ChangeKind::Created
    } else {
        ChangeKind::Modified
    })
}

async fn all_pages(
    l: &Ledger,
    filter: ExchangeFilter,
    limit: i64,
) -> (Vec<String>, Vec<ExchangeRef>) {
    let mut refs: Vec<ExchangeRef> = Vec::new();
    for _ in 0..100 {
        let page = l
            .exchange
            .exchange_page(filter, refs.last(), limit)
            .await
            .expect("page");
        let last = (page.len() as i64) < limit;
        refs.extend(page);
        if last {
            return (refs.iter().map(|r| r.reference.clone()).collect(), refs);
        }
    }
    panic!("{filter:?}: more than 100 pages");
}

/// The `modified_ms` bounds of the getChanges / getAll page queries
/// (`ExchangeSql`, first and following pages) against `Cut::contains`,
/// with cuts a millisecond before, at and after each change, and the
/// high-water mark the barrier gives.
async fn an_exchange_page_lists_exactly_what_the_cut_contains(backend: Backend) {
    let l = Ledger::open(backend).await;
    let pull = Mode::Pull;
    l.ingest(vec![present("c1", 1)], T + 10, pull).await;
    l.ingest(vec![present("c2", 1)], T + 20, pull).await;
    l.ingest(vec![present("m1", 1)], T + 30, pull).await;
    l.ingest(vec![present("m1", 2)], T + 40, pull).await;
    l.ingest(vec![present("x1", 1)], T + 50, pull).await;
    l.ingest(vec![withdrawn("x1", 2)], T + 60, pull).await;
    // Two changes stamped alike: a following page starts between them.
    l.ingest(vec![present("c3", 1), present("c4", 1)], T + 70, pull)
        .await;
    l.ingest(vec![present("m2", 1)], T + 80, pull).await;
    l.ingest(vec![present("m2", 2)], T + 90, pull).await;
    l.ingest(vec![withdrawn("never", 1)], T + 95, pull).await;
    let grid: Vec<String> = ["c1", "c2", "m1", "x1", "c3", "c4", "m2", "never"]
        .into_iter()
        .map(String::from)
        .collect();
    let entries = l.entries(&grid).await;
    assert_eq!(entries["never"].exchange.created_ms, None);
    assert_eq!(kind_of(&entries["m1"]), Some(ChangeKind::Modified));
    assert_eq!(kind_of(&entries["x1"]), Some(ChangeKind::Closed));

    // The barrier's mark is the ledger's clock (on SQLite the last stamp,
    // the process clock being far behind).
    l.at(T + 100).await;
    let high_water = l.exchange.barrier().await.expect("barrier");
    let expected_mark = match l.backend {
        Backend::Sqlite => T + 95,
        Backend::Postgres => T + 100,
    };
    assert_eq!(high_water, expected_mark, "the barrier's mark");

    let mut bounds = BTreeSet::from([0, T, high_water]);
    for e in entries.values() {
        if let Some(m) = e.exchange.modified_ms {
            bounds.extend(SIDES.map(|d| m + d));
        }
    }
    let bounds: Vec<i64> = bounds.into_iter().collect();
    for &before_ms in &bounds {
        let everything = Cut::new(i64::MIN, before_ms);
        let mut expected: Vec<String> = entries
            .values()
            .filter(|e| {
                e.exchange.created_ms.is_some()
                    && e.exchange.closed_ms.is_none()
                    && e.exchange.active
                    && e.exchange
                        .modified_ms
                        .is_some_and(|m| everything.contains(m))
            })
            .map(|e| e.id.clone())
            .collect();
        expected.sort();
        for limit in [1, 100] {
            let filter = ExchangeFilter::Active { before_ms };
            let (got, _) = all_pages(&l, filter, limit).await;
            assert_eq!(
                got, expected,
                "{backend:?}: getAll below {before_ms}, pages of {limit} (left: the store's, \
                 right: what the cut contains)"
            );
        }
        for &since_ms in &bounds {
            let cut = Cut::new(since_ms, before_ms);
            for kind in ChangeKind::ALL {
                let mut expected: Vec<(i64, String)> = entries
                    .values()
                    .filter(|e| kind_of(e) == Some(kind))
                    .filter_map(|e| Some((e.exchange.modified_ms?, e.id.clone())))
                    .filter(|(m, _)| cut.contains(*m))
                    .collect();
                expected.sort();
                let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
                for limit in [1, 2, 100] {
                    let filter = ExchangeFilter::Changed {
                        kind,
                        since_ms,
                        before_ms,
                    };
                    let (got, refs) = all_pages(&l, filter, limit).await;
                    assert_eq!(
                        got, expected,
                        "{backend:?}: {kind:?} in {cut:?}, pages of {limit} (left: the store's, \
                         right: what the cut contains)"
                    );
                    for r in refs {
                        assert_eq!(
                            Some(r.modified_ms),
                            entries[&r.reference].exchange.modified_ms
                        );
                    }
                }
            }
        }
    }
}

/// What EURES answered, as the delivery loop hands it to the store.
fn eures(outcome: Outcome, portal_answered: bool) -> AttemptResult {
    AttemptResult::Eures {
        outcome,
        portal_answered,
    }
}
