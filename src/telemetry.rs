//! Logs and metrics set-up, and the names of every metric (SPEC 4.5).
//!
//! Logs carry ids, versions and reason codes only: never titles,
//! descriptions, names, emails, phone numbers or tokens. Metric labels never
//! carry a posting id.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::ledger::{Op, StateLabel};
use crate::store::Summary;

pub const POSTINGS: &str = "eures_sync_postings";
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

/// Installs the tracing subscriber: text on a terminal, JSON otherwise
/// (`format` = auto | json | text), always to stderr so `--json` stdout
/// stays one document.
pub fn init_logs(format: crate::config::LogFormat, level: &str) {
    use crate::config::LogFormat;
    use tracing_subscriber::EnvFilter;
    // sqlx logs every statement at debug: keep it at warn unless asked for.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},sqlx=warn")))
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
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
        // Another recorder may already be installed (tests embedding several
        // workers); the handle then renders only what this one saw.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(POSTINGS, "Postings the ledger knows, by exclusive state");
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
    describe_gauge!(
        LEADER,
        "1 while this worker leads (ingests, expires, reconciles)"
    );
}

pub fn record_delivery(op: Op, outcome: &'static str, elapsed: Duration) {
    counter!(DELIVERIES, "op" => op.as_str(), "outcome" => outcome).increment(1);
    histogram!(DELIVERY_DURATION).record(elapsed.as_secs_f64());
}

pub fn record_propagation(seconds: f64) {
    histogram!(PROPAGATION).record(seconds.max(0.0));
}

pub fn record_quarantined(n: usize) {
    counter!(QUARANTINED_CHANGES).increment(n as u64);
}

pub fn set_leader(leading: bool) {
    gauge!(LEADER).set(if leading { 1.0 } else { 0.0 });
}

pub fn set_auth_failing(failing: bool) {
    gauge!(AUTH_FAILING).set(if failing { 1.0 } else { 0.0 });
}

/// Refreshes the gauges that mirror the ledger.
pub fn publish_summary(s: &Summary) {
    for state in StateLabel::ALL {
        gauge!(POSTINGS, "state" => state.as_str()).set(s.count(state) as f64);
    }
    for op in [Op::Create, Op::Update, Op::Delete] {
        gauge!(BACKLOG, "op" => op.as_str()).set(s.backlog(op) as f64);
    }
    gauge!(OLDEST_PENDING).set(s.oldest_pending_ms.unwrap_or(0) as f64 / 1000.0);
    gauge!(DEAD_LETTERS).set(s.dead_letters as f64);
    if let Some(ms) = s.last_source_poll_ms {
        gauge!(LAST_POLL).set(ms as f64 / 1000.0);
    }
}
