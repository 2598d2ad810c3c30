//! Logs and metrics set-up, and the names of every metric (SPEC 4.5).
//!
//! Logs carry ids, versions and reason codes only: never titles,
//! descriptions, names, emails, phone numbers or tokens. Metric labels never
//! carry a posting id.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::domain::ledger::{Op, StateLabel};
use crate::store::Summary;

pub const POSTINGS: &str = "eures_sync_postings";
pub const ABSENT_POSTINGS: &str = "eures_sync_absent_postings";
pub const DELIVERIES: &str = "eures_sync_deliveries_total";
pub const DELIVERY_DURATION: &str = "eures_sync_delivery_duration_seconds";
pub const PROPAGATION: &str = "eures_sync_propagation_seconds";
pub const BACKLOG: &str = "eures_sync_backlog";
pub const OLDEST_PENDING: &str = "eures_sync_oldest_pending_seconds";
pub const LAST_POLL: &str = "eures_sync_last_source_poll_timestamp_seconds";
pub const AUTH_FAILING: &str = "eures_sync_eures_auth_failing";
pub const DEAD_LETTERS: &str = "eures_sync_dead_letters";
pub const QUARANTINED_CHANGES: &str = "eures_sync_quarantined_changes_total";
pub const LEADER: &str = "eures_sync_leader";
pub const BUILD_INFO: &str = "eures_sync_build_info";
pub const FEED_POLL_FAILURES: &str = "eures_sync_feed_poll_failures_total";
pub const RECONCILE_RUNS: &str = "eures_sync_reconcile_runs_total";
pub const RECONCILE_LAST_RUN: &str = "eures_sync_reconcile_last_run_timestamp_seconds";
pub const RECONCILE_DURATION: &str = "eures_sync_reconcile_last_run_duration_seconds";
pub const RECONCILE_DIFFERENCES: &str = "eures_sync_reconcile_differences_total";
pub const INPUT_API_REFUSED: &str = "eures_sync_input_api_refused_total";
pub const HTTP_CONNECTIONS_CUT: &str = "eures_sync_http_connections_cut_total";
pub const READINESS_CHECKS: &str = "eures_sync_readiness_checks_total";
pub const VERIFICATIONS: &str = "eures_sync_verifications_total";

/// The package version, for `eures_sync_build_info{version}`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`build.rs`); "unknown" for a
/// build without git.
pub const COMMIT: &str = env!("EURES_SYNC_BUILD_COMMIT");

/// Installs the tracing subscriber: text on a terminal, JSON otherwise
/// (`format` = auto | json | text), always to stderr so `--json` stdout
/// stays one document.
pub fn init_logs(format: crate::config::LogFormat, level: &str) {
    use crate::config::LogFormat;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), level);
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Log targets that quote the text they parse at debug and trace level (the
/// HTML parser behind the description sanitizer prints every character it
/// reads): held at `error` whatever `RUST_LOG` or `log.level` say, so a
/// description never reaches a log line.
pub const QUOTING_TARGETS: [&str; 3] = ["html5ever", "markup5ever", "ammonia"];

/// The log filter: `rust_log` (the `RUST_LOG` variable) when it parses,
/// else `level` with sqlx at `warn` (it logs every statement at debug); the
/// [`QUOTING_TARGETS`] at `error` in every case.
pub fn log_filter(rust_log: Option<&str>, level: &str) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    let mut filter = rust_log
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .or_else(|| EnvFilter::try_new(format!("{level},sqlx=warn")).ok())
        .unwrap_or_else(|| EnvFilter::new("info,sqlx=warn"));
    for target in QUOTING_TARGETS {
        if let Ok(directive) = format!("{target}=error").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let latency = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DELIVERY_DURATION.into()), &latency)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(PROPAGATION.into()), &latency));
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        if let Err(e) = keep_up(handle.clone(), METRICS_UPKEEP_EVERY) {
            tracing::warn!(error = %e, "no metrics upkeep thread: histograms grow until scraped");
        }
        // Another recorder may already be installed (tests embedding several
        // workers); the handle then renders only what this one saw.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        gauge!(BUILD_INFO, "version" => VERSION, "commit" => COMMIT).set(1.0);
        // Counters an alert compares over time exist from the start, at 0.
        counter!(FEED_POLL_FAILURES).increment(0);
        handle
    })
}

/// How often histogram samples are folded into their buckets when no
/// scrape does it.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Folds histogram samples into their buckets every `every`, on a thread of
/// its own for the life of the process. The exporter keeps each sample
/// until a scrape or an upkeep folds it (about 16 bytes with its share of
/// the bucket's blocks; two per delivery), so an agent nobody scrapes (no
/// Prometheus yet, a monitoring outage) would grow without end: about
/// 32 MiB per million deliveries.
fn keep_up(handle: PrometheusHandle, every: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        })
        .map(drop)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(POSTINGS, "Postings the ledger knows, by exclusive state");
    describe_gauge!(
        ABSENT_POSTINGS,
        "Postings that must have no EURES copy, by reason code (SPEC 2)"
    );
    describe_counter!(
        DELIVERIES,
        "EURES delivery attempts by operation and outcome"
    );
    describe_histogram!(
        DELIVERY_DURATION,
        metrics::Unit::Seconds,
        "Duration of one EURES request"
    );
    describe_histogram!(
        PROPAGATION,
        metrics::Unit::Seconds,
        "Source updated_at to EURES acknowledgement"
    );
    describe_gauge!(BACKLOG, "Operations due, by operation");
    describe_gauge!(OLDEST_PENDING, "Age of the oldest pending operation");
    describe_gauge!(LAST_POLL, "Time of the last successful JobAG feed poll");
    describe_gauge!(AUTH_FAILING, "1 while EURES refuses our credentials");
    describe_gauge!(
        DEAD_LETTERS,
        "Creates/updates parked after permanent rejection"
    );
    describe_counter!(QUARANTINED_CHANGES, "Feed items that could not be parsed");
    describe_counter!(
        VERIFICATIONS,
        "Looks at EURES after a deletion that followed a request whose answer was lost, by outcome (found: the copy was there again)"
    );
    describe_gauge!(
        LEADER,
        "1 while this worker leads (ingests the feed, reconciles)"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels name the version and git commit running"
    );
    describe_counter!(
        FEED_POLL_FAILURES,
        "JobAG feed polls that failed (unreachable, refused, unreadable page, ledger write)"
    );
    describe_counter!(
        RECONCILE_RUNS,
        "Reconcile runs by result: ok, partial (EURES listing unreadable), failed"
    );
    describe_gauge!(
        RECONCILE_LAST_RUN,
        metrics::Unit::Seconds,
        "When the last reconcile run finished (ok or partial)"
    );
    describe_gauge!(
        RECONCILE_DURATION,
        metrics::Unit::Seconds,
        "How long the last reconcile run took"
    );
    describe_counter!(
        RECONCILE_DIFFERENCES,
        "Differences reconcile found between source, ledger and EURES, by kind"
    );
    describe_counter!(
        INPUT_API_REFUSED,
        "Input API requests refused, by status (401 token, 413 body too large, 400 malformed)"
    );
    describe_counter!(
        HTTP_CONNECTIONS_CUT,
        "Connections the listener closed because a client overran a limit, by reason"
    );
    describe_counter!(
        READINESS_CHECKS,
        "Times /readyz asked the database (at most once a second, however many probes)"
    );
    process_collector().describe();
}

/// Resident memory, CPU time, open files, start time and threads of this
/// process (`process_*`, the names Prometheus' own client libraries use).
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Reads the process metrics afresh; called on every scrape.
pub fn collect_process() {
    process_collector().collect();
}

/// A verification of a deletion (SPEC 3.8): `absent`, `found`, or the
/// outcome label of a failed look.
pub fn record_verification(outcome: &'static str) {
    counter!(VERIFICATIONS, "outcome" => outcome).increment(1);
}

pub fn record_delivery(op: Op, outcome: &'static str, elapsed: Duration) {
    counter!(DELIVERIES, "op" => op.as_str(), "outcome" => outcome).increment(1);
    histogram!(DELIVERY_DURATION).record(elapsed.as_secs_f64());
    DELIVERY_TALLY.add(op, outcome);
}

/// The values of `outcome` on [`DELIVERIES`], in the totals line's order.
pub const OUTCOMES: [&str; 6] = [
    "ok",
    "superseded",
    "rejected",
    "auth",
    "throttled",
    "transient",
];
const OPS: [Op; 3] = [Op::Create, Op::Update, Op::Delete];

/// Delivery attempts since the last totals line, by operation and outcome.
/// A successful attempt logs at DEBUG only: at INFO a backfill would write
/// a line per posting, so INFO gets these totals once a minute instead.
#[derive(Debug, Default)]
pub struct DeliveryTally {
    counts: [[AtomicU64; OUTCOMES.len()]; OPS.len()],
}

static DELIVERY_TALLY: DeliveryTally = DeliveryTally {
    counts: [const { [const { AtomicU64::new(0) }; OUTCOMES.len()] }; OPS.len()],
};

impl DeliveryTally {
    pub fn add(&self, op: Op, outcome: &str) {
        let row = OPS.iter().position(|o| *o == op);
        let column = OUTCOMES.iter().position(|o| *o == outcome);
        if let (Some(row), Some(column)) = (row, column) {
            self.counts[row][column].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts so far, by operation then outcome; starts again from zero.
    fn take(&self) -> [[u64; OUTCOMES.len()]; OPS.len()] {
        self.counts
            .each_ref()
            .map(|row| row.each_ref().map(|c| c.swap(0, Ordering::Relaxed)))
    }

    /// Logs one INFO line of totals every `every` when something was
    /// attempted, and what is left when `stop` turns true.
    pub async fn log_totals(&self, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut since = tokio::time::Instant::now();
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep_until(since + every) => false,
                changed = stop.changed() => changed.is_err() || *stop.borrow(),
            };
            let now = tokio::time::Instant::now();
            self.log_line(now - since);
            since = now;
            if stopping {
                return;
            }
        }
    }

    fn log_line(&self, period: Duration) {
        let counts = self.take();
        let by_outcome: [u64; OUTCOMES.len()] =
            std::array::from_fn(|i| counts.iter().map(|row| row[i]).sum());
        let [create, update, delete] = counts.map(|row| row.iter().sum::<u64>());
        if create + update + delete == 0 {
            return;
        }
        let [ok, superseded, rejected, auth, throttled, transient] = by_outcome;
        tracing::info!(
            period_s = period.as_secs(),
            create,
            update,
            delete,
            ok,
            superseded,
            rejected,
            auth,
            throttled,
            transient,
            "delivery totals"
        );
    }
}

/// The worker's totals line (see [`DeliveryTally`]), until `stop`.
pub async fn log_delivery_totals(stop: watch::Receiver<bool>) {
    DELIVERY_TALLY
        .log_totals(Duration::from_secs(60), stop)
        .await;
}

pub fn record_propagation(seconds: f64) {
    histogram!(PROPAGATION).record(seconds.max(0.0));
}

pub fn record_feed_poll_failure() {
    counter!(FEED_POLL_FAILURES).increment(1);
}

/// One reconcile run's end: `Some((result, report))` when it ran to the end,
/// `result` being "ok", or "partial" when the EURES listing could not be
/// read to the end (nothing was judged on the EURES side); `None` when it
/// failed.
/// A finished reconcile run: its result, the differences it found by kind
/// and how long it took; `None` for a run that failed.
pub fn record_reconcile(
    run: Option<(
        &'static str,
        &std::collections::BTreeMap<&'static str, u64>,
        u64,
    )>,
) {
    let Some((result, differences, elapsed_ms)) = run else {
        counter!(RECONCILE_RUNS, "result" => "failed").increment(1);
        return;
    };
    counter!(RECONCILE_RUNS, "result" => result).increment(1);
    for (kind, n) in differences {
        counter!(RECONCILE_DIFFERENCES, "kind" => *kind).increment(*n);
    }
    gauge!(RECONCILE_LAST_RUN).set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    gauge!(RECONCILE_DURATION).set(elapsed_ms as f64 / 1000.0);
}

pub fn record_quarantined(n: usize) {
    counter!(QUARANTINED_CHANGES).increment(n as u64);
}

pub fn set_leader(leading: bool) {
    gauge!(LEADER).set(if leading { 1.0 } else { 0.0 });
}

/// One Input API request refused with `status` (400, 401 or 413): counted,
/// not logged, so a client hammering the API cannot flood the log.
pub fn input_api_refused(status: u16) {
    let label = match status {
        400 => "400",
        401 => "401",
        413 => "413",
        _ => "other",
    };
    counter!(INPUT_API_REFUSED, "status" => label).increment(1);
}

/// A connection the listener cut off (`head_timeout`, `idle_timeout`).
pub fn http_connection_cut(reason: &'static str) {
    counter!(HTTP_CONNECTIONS_CUT, "reason" => reason).increment(1);
}

/// `/readyz` asked the database.
pub fn readiness_checked() {
    counter!(READINESS_CHECKS).increment(1);
}

pub fn set_auth_failing(failing: bool) {
    gauge!(AUTH_FAILING).set(if failing { 1.0 } else { 0.0 });
}

/// Refreshes the gauges that mirror the ledger.
/// The reason codes of SPEC 2, `invalid` standing for every `invalid: ...`.
pub const ABSENT_REASON_CODES: [&str; 9] = [
    "deleted",
    "not_published",
    "expired",
    "no_consent",
    "restricted",
    "internal",
    "from_eures",
    "outside_eures_area",
    "invalid",
];

pub fn publish_summary(s: &Summary) {
    for state in StateLabel::ALL {
        gauge!(POSTINGS, "state" => state.as_str()).set(s.count(state) as f64);
    }
    for op in [Op::Create, Op::Update, Op::Delete] {
        gauge!(BACKLOG, "op" => op.as_str()).set(s.backlog(op) as f64);
    }
    gauge!(OLDEST_PENDING).set(s.oldest_pending_ms.unwrap_or(0) as f64 / 1000.0);
    gauge!(DEAD_LETTERS).set(s.dead_letters as f64);
    // Every code is set, so a reason that no posting has any more reads 0
    // rather than its last count.
    for reason in ABSENT_REASON_CODES {
        let count = s
            .absent_reasons
            .iter()
            .find(|(r, _)| r == reason)
            .map_or(0, |(_, n)| *n);
        gauge!(ABSENT_POSTINGS, "reason" => reason).set(count as f64);
    }
    if let Some(ms) = s.last_source_poll_ms {
        gauge!(LAST_POLL).set(ms as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_samples_do_not_pile_up_unscraped() {
        use super::*;
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.1, 1.0])
            .unwrap()
            .build_recorder();
        keep_up(recorder.handle(), Duration::from_millis(5)).unwrap();
        // Bytes the allocator has handed out and not taken back, all arenas.
        let in_use = || unsafe { libc::mallinfo2() }.uordblks;
        let before = in_use();
        metrics::with_local_recorder(&recorder, || {
            let latency = histogram!("latency");
            for _ in 0..40 {
                for i in 0..50_000 {
                    latency.record(f64::from(i) / 1e5);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Two million samples kept unfolded hold about 32 MiB.
        let grown = in_use().saturating_sub(before);
        assert!(
            grown < 6 << 20,
            "{} KiB still held after 2,000,000 samples",
            grown >> 10
        );
    }

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log lines written while the returned guard lives, as JSON values.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn totals_are_logged_once_a_period_and_at_stop() {
        const EVERY: Duration = Duration::from_secs(2);
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        static TALLY: DeliveryTally = DeliveryTally {
            counts: [const { [const { AtomicU64::new(0) }; OUTCOMES.len()] }; OPS.len()],
        };
        let (stop, stopped) = watch::channel(false);
        let totals = tokio::spawn(TALLY.log_totals(EVERY, stopped));
        for _ in 0..3 {
            TALLY.add(Op::Create, "ok");
        }
        TALLY.add(Op::Delete, "transient");
        TALLY.add(Op::Delete, "ok");
        tokio::time::sleep(EVERY / 4).await;
        assert!(
            captured.lines().is_empty(),
            "a line before the period ended"
        );
        tokio::time::sleep(EVERY).await;
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "INFO");
        let f = &lines[0]["fields"];
        assert_eq!(f["message"], "delivery totals");
        assert_eq!(
            (&f["create"], &f["update"], &f["delete"]),
            (&3.into(), &0.into(), &2.into())
        );
        assert_eq!(
            (&f["ok"], &f["transient"], &f["rejected"]),
            (&4.into(), &1.into(), &0.into())
        );
        assert_eq!(f["period_s"], 2);

        // A quiet period writes nothing.
        tokio::time::sleep(EVERY).await;
        assert_eq!(captured.lines().len(), 1);

        // What the last part of a period saw is written at stop.
        TALLY.add(Op::Update, "rejected");
        TALLY.add(Op::Update, "not-an-outcome");
        stop.send(true).unwrap();
        totals.await.unwrap();
        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let f = &lines[1]["fields"];
        assert_eq!((&f["update"], &f["rejected"]), (&1.into(), &1.into()));
        assert_eq!((&f["create"], &f["ok"]), (&0.into(), &0.into()));
    }
}
