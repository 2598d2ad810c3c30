//! The HTML parser behind the description sanitizer logs every character it
//! reads at trace level. With the agent's log filter, even `RUST_LOG=trace`
//! never lets a description reach a log line (SPEC 6). Its own test binary:
//! the filter is installed process-wide, with the bridge from the `log`
//! crate that the parser logs through, exactly as `init_logs` does.

use std::io::Write;
use std::sync::{Arc, Mutex};

use eures_sync::domain::posting::{ChangeBody, ParsedChange, parse_change};
use eures_sync::domain::render::{DocumentSettings, render};
use eures_sync_sims::jobag::sample_posting;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_description_never_reaches_the_log_even_at_trace() {
    const SECRET: &str = "Fortrolig beskrivelse 7c1d";
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(eures_sync::telemetry::log_filter(Some("trace"), "info"))
        .with_writer(move || writer.clone())
        .finish()
        .try_init()
        .expect("the only subscriber of this test binary");

    let mut posting = sample_posting(1);
    posting["version"] = 1.into();
    posting["updated_at"] = "2026-11-20T10:00:00Z".into();
    posting["description"] = format!("<p>{SECRET} &amp; <b>mere</b></p>").into();
    let ParsedChange::Change(change) = parse_change(&posting) else {
        panic!("sample posting parses");
    };
    let ChangeBody::Live(fields) = change.body else {
        panic!("live posting");
    };
    let xml = render(&change.id, &fields, &DocumentSettings::default()).expect("renders");
    assert!(xml.contains(SECRET), "the parser did read it");
    tracing::trace!(target: "eures_sync::probe", "trace lines are written");

    let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("UTF-8");
    assert!(
        log.contains("trace lines are written"),
        "the capture works: {log}"
    );
    assert!(!log.contains(SECRET), "a description in the log:\n{log}");
}
