//! The deployment kit (`deploy/`, `config/production.example.toml`,
//! `docs/runbook.md`) kept in step with its docs (`docs/operations.md`,
//! the metrics table of `docs/interfaces.md`) and the code. The real
//! tools check each piece in `.ci/run` (promtool, systemd-analyze); the
//! dashboard is queried through a real Prometheus in tests/observability.rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eures_sync::config::Config;
use eures_sync::domain::ledger::Mode;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The production example, loaded as `eures-sync --config` loads a file.
fn production() -> Config {
    let path = repo("config/production.example.toml");
    Config::load_from(
        Figment::from(Serialized::defaults(Config::default())).merge(Toml::file_exact(&path)),
    )
    .unwrap_or_else(|e| panic!("config/production.example.toml: {e}"))
}

/// How long `run` may take to stop after SIGTERM: the delivery loop waits
/// for in-flight requests up to the lease, as the worker computes it, and
/// the process at most until the shutdown deadline.
async fn drain_of(config: &Config) -> Duration {
    let store = eures_sync::store::connect("sqlite::memory:")
        .await
        .expect("in-memory ledger");
    let worker = eures_sync::engine::Worker::from_config(config, store).expect("worker");
    worker
        .settings
        .lease
        .min(eures_sync::cli::SHUTDOWN_DEADLINE)
}

/// GitHub's anchor for a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Sections of a Markdown file: (heading slug, text up to the next heading
/// of the same or a higher level).
fn sections(markdown: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            out.push((slug(line.trim_start_matches('#')), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// One alerting rule, read line by line from alerts.yml (our own file, in
/// the layout it is written in).
#[derive(Debug, Default)]
struct Alert {
    name: String,
    expr: String,
    for_: Option<String>,
    severity: Option<String>,
    runbook_url: Option<String>,
}

fn alerts() -> Vec<Alert> {
    let text = read("deploy/prometheus/alerts.yml");
    let mut out: Vec<Alert> = Vec::new();
    let mut in_expr = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert: ") {
            out.push(Alert {
                name: name.to_string(),
                ..Alert::default()
            });
            in_expr = false;
            continue;
        }
        let Some(alert) = out.last_mut() else {
            continue;
        };
        let value = |key: &str| {
            t.strip_prefix(key)
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        if let Some(expr) = value("expr:") {
            alert.expr = expr;
            in_expr = true;
        } else if let Some(v) = value("for:") {
            alert.for_ = Some(v);
            in_expr = false;
        } else if let Some(v) = value("severity:") {
            alert.severity = Some(v);
        } else if let Some(v) = value("runbook_url:") {
            alert.runbook_url = Some(v);
        } else if in_expr && !t.starts_with('#') && !t.ends_with(':') {
            alert.expr.push(' ');
            alert.expr.push_str(t);
        } else if t == "labels:" {
            in_expr = false;
        }
    }
    out
}

/// Whether a PromQL expression reads `metric` (a histogram through its
/// `_bucket`, `_sum` or `_count` series).
fn watches(expr: &str, metric: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    expr.match_indices(metric).any(|(at, _)| {
        let before = expr[..at].chars().next_back();
        let after = &expr[at + metric.len()..];
        let rest = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| after.strip_prefix(s))
            .unwrap_or(after);
        !before.is_some_and(ident) && !rest.chars().next().is_some_and(ident)
    })
}

/// The metric names of the metrics table in docs/interfaces.md (first
/// column).
fn metrics_table() -> Vec<String> {
    let interfaces = read("docs/interfaces.md");
    let (_, section) = sections(&interfaces)
        .into_iter()
        .find(|(s, _)| s.starts_with("metrics-and-health"))
        .expect("a 'Metrics and health' section in docs/interfaces.md");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cell = l.trim_start_matches("| `");
            let end = cell.find(['`', '{']).expect("a metric name");
            cell[..end].to_string()
        })
        .collect()
}

#[test]
fn every_row_of_the_metrics_table_has_an_alert_with_a_runbook_section_and_tests() {
    let alerts = alerts();
    assert!(alerts.len() >= 10, "{alerts:?}");
    let table = metrics_table();
    assert!(table.len() >= 10, "{table:?}");
    for metric in &table {
        assert!(
            alerts.iter().any(|a| watches(&a.expr, metric)),
            "no alert in deploy/prometheus/alerts.yml watches {metric} (a row of the metrics table in docs/interfaces.md)"
        );
    }
    for alert in &alerts {
        assert!(
            table.iter().any(|m| watches(&alert.expr, m)),
            "{}: watches no metric of the table in docs/interfaces.md: {}",
            alert.name,
            alert.expr
        );
    }

    let runbook = read("docs/runbook.md");
    let sections = sections(&runbook);
    for alert in &alerts {
        let name = &alert.name;
        assert!(alert.for_.is_some(), "{name}: no `for:`");
        assert!(
            matches!(alert.severity.as_deref(), Some("critical" | "warning")),
            "{name}: severity {:?}",
            alert.severity
        );
        let url = alert.runbook_url.as_deref().unwrap_or_default();
        let anchor = url
            .strip_prefix("docs/runbook.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} is not docs/runbook.md#..."));
        let (_, body) = sections
            .iter()
            .find(|(s, _)| s == anchor)
            .unwrap_or_else(|| panic!("{name}: docs/runbook.md has no section #{anchor}"));
        for part in [
            "**What it means.**",
            "**What to look at.**",
            "**What to do.**",
        ] {
            assert!(
                body.contains(part),
                "{name}: its runbook section lacks {part}"
            );
        }
        // `es` is the runbook's alias for `eures-sync --config ...`.
        assert!(
            ["`es ", "`curl ", "`journalctl ", "`systemctl "]
                .iter()
                .any(|command| body.contains(command)),
            "{name}: its runbook section names no command to run"
        );
    }

    // Each alert has a unit test where it fires and one where it does not.
    let tests = read("deploy/prometheus/alerts_test.yml");
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let mut fired = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("alertname: ") {
            match lines.get(i + 1) {
                Some(&"exp_alerts: []") => silent.insert(name),
                Some(&"exp_alerts:") => fired.insert(name),
                other => panic!("alertname {name} followed by {other:?}"),
            };
        }
    }
    for alert in &alerts {
        assert!(
            fired.contains(alert.name.as_str()),
            "{}: never fires in alerts_test.yml",
            alert.name
        );
        assert!(
            silent.contains(alert.name.as_str()),
            "{}: never tested silent",
            alert.name
        );
    }
}

#[tokio::test]
async fn the_production_example_loads_and_every_key_in_it_is_known() {
    let config = production();
    assert!(config.database.url.starts_with("postgres://"));
    let url = url::Url::parse(&config.database.url).expect("a URL");
    assert_eq!(url.password(), None, "a password in the committed example");
    assert_eq!(config.eures.mode, Mode::Pull);
    assert_eq!(
        config.http.listen.port(),
        Config::default().http.listen.port()
    );
    // EURES reaches the Input API on a listener of its own, with its own
    // connection cap, not the one /metrics and the probes share.
    let api = config
        .http
        .input_api_listen
        .expect("the production example sets http.input_api_listen");
    assert_ne!(api.port(), config.http.listen.port());
    // A worker can be built from it (pull mode: no push client).
    let drain = drain_of(&config).await;
    assert!(drain > Duration::ZERO);

    // Every key of the example is one the agent knows (the loader refuses
    // the others too; this check names the example file when it fails).
    let known = serde_json::to_value(Config::default()).expect("defaults");
    let text = read("config/production.example.toml");
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            assert!(known.get(&section).is_some(), "unknown section [{section}]");
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            assert!(
                known[&section].get(key).is_some(),
                "unknown key {section}.{key} in config/production.example.toml"
            );
        }
    }
}

/// `Key=value` lines of a systemd unit.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
        .collect()
}

fn seconds(value: &str) -> u64 {
    let v = value.trim();
    if let Some(m) = v.strip_suffix("min") {
        m.parse::<u64>().expect("minutes") * 60
    } else {
        v.trim_end_matches('s').parse().expect("seconds")
    }
}

#[tokio::test]
async fn the_systemd_unit_outlasts_the_drain_and_hands_over_the_tokens_it_names() {
    let unit = read("deploy/systemd/eures-sync.service");
    let one = |key: &str| {
        let v = unit_values(&unit, key);
        assert_eq!(v.len(), 1, "{key}: {v:?}");
        v[0].clone()
    };
    let stop = Duration::from_secs(seconds(&one("TimeoutStopSec")));
    let drain = drain_of(&production()).await;
    // The drain, then recording the last outcomes and giving leases back.
    assert!(
        stop >= drain + Duration::from_secs(10),
        "TimeoutStopSec {stop:?} does not outlast the drain ({drain:?}) with a margin"
    );
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("StateDirectory"), "eures-sync");
    assert!(one("ExecStart").ends_with(" run --config /etc/eures-sync/config.toml"));

    // Every token file named through %d is a credential the unit loads.
    let loaded: BTreeSet<String> = unit_values(&unit, "LoadCredential")
        .iter()
        .map(|v| v.split(':').next().expect("a name").to_string())
        .collect();
    let named: BTreeSet<String> = unit_values(&unit, "Environment")
        .iter()
        .filter_map(|v| v.split_once("=%d/").map(|(_, name)| name.to_string()))
        .collect();
    assert!(!named.is_empty());
    assert_eq!(loaded, named, "LoadCredential= and the %d/ paths differ");
    // Pull mode (the production example) needs the Input API token.
    assert!(named.contains("input-api.token"));
    for env in unit_values(&unit, "Environment") {
        let (var, _) = env.split_once('=').expect("VAR=value");
        assert!(
            var.starts_with("EURES_SYNC__"),
            "{var}: not a configuration override"
        );
    }
}

#[tokio::test]
async fn the_dockerfile_uses_the_paths_and_port_the_operations_page_names() {
    let dockerfile = read("deploy/Dockerfile");
    let instructions: Vec<String> = {
        // Join continuation lines; drop comments.
        let mut out = Vec::new();
        let mut current = String::new();
        for line in dockerfile.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            let (text, continued) = match line.strip_suffix('\\') {
                Some(t) => (t, true),
                None => (line, false),
            };
            current.push_str(text.trim());
            current.push(' ');
            if !continued {
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
            }
        }
        out
    };
    let all = |word: &str| -> Vec<String> {
        instructions
            .iter()
            .filter_map(|i| i.strip_prefix(word).map(|r| r.trim().to_string()))
            .collect()
    };
    let last = |word: &str| all(word).pop().unwrap_or_else(|| panic!("no {word}"));

    // Multi-stage, a slim runtime, not root.
    let stages = all("FROM ");
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[1].contains("slim"), "{stages:?}");
    let user = last("USER ");
    assert!(user != "root" && user != "0", "USER {user}");

    let port = Config::default().http.listen.port();
    let exposed: BTreeSet<u16> = all("EXPOSE ")
        .iter()
        .flat_map(|e| e.split_whitespace().map(|p| p.parse().expect("a port")))
        .collect();
    let api = production()
        .http
        .input_api_listen
        .expect("http.input_api_listen")
        .port();
    assert_eq!(
        exposed,
        BTreeSet::from([port, api]),
        "EXPOSE: /metrics' port and the production example's Input API port"
    );
    assert!(
        all("ENV ")
            .iter()
            .any(|e| e.contains(&format!("EURES_SYNC__HTTP__LISTEN=0.0.0.0:{port}"))),
        "the listener must answer outside the container on {port}"
    );
    let health = last("HEALTHCHECK ");
    assert!(
        health.contains(&format!("/dev/tcp/127.0.0.1/{port}")),
        "{health}"
    );
    assert!(health.contains("GET /healthz "), "{health}");
    let cmd = last("CMD ");
    let config = "/etc/eures-sync/config.toml";
    assert!(
        cmd.contains(&format!("\"--config\", \"{config}\"")),
        "{cmd}"
    );
    let state = "/var/lib/eures-sync";
    assert_eq!(last("VOLUME "), state);
    assert_eq!(last("WORKDIR "), state);

    // What it copies exists, and the context does not leave it out.
    let ignored = read(".dockerignore");
    for copy in all("COPY ").iter().filter(|c| !c.starts_with("--from")) {
        let parts: Vec<&str> = copy.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(repo(source).exists(), "COPY {source}: no such path");
            assert!(
                !ignored.lines().any(|l| l.trim() == *source),
                "COPY {source}: excluded by .dockerignore"
            );
        }
    }

    // The operations page tells an operator the same paths and port.
    let page = read("docs/operations.md");
    for needle in [
        config.to_string(),
        state.to_string(),
        "/run/secrets/".to_string(),
        format!("0.0.0.0:{port}"),
        "deploy/Dockerfile".to_string(),
    ] {
        assert!(
            page.contains(&needle),
            "docs/operations.md does not mention {needle}"
        );
    }
}
