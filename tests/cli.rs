//! The command line as an operator meets it: the real binary, its exit
//! codes and its output. `demo`, `migrate`, usage errors (exit code 2),
//! `--config` before or after the subcommand, `run` in pull mode (and its
//! refusal to start without a token), and the metric values of a running
//! worker against the ledger they describe.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::agent::{cli, eures_sync};
use common::{Backend, Env, editable, eventually_async};
use eures_sync::http::input_api::BASE;
use eures_sync::sim::jobag::{sample_id, sample_posting};
use serde_json::{Value, json};

common::on_both_backends!(
    migrate_creates_the_ledger_and_is_idempotent,
    run_in_pull_mode_serves_the_ledger_and_refuses_to_start_without_a_token,
    state_gauges_sum_to_the_ledger_and_counters_move_by_what_a_step_did,
);

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "cli-test-input-api-token";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn demo_runs_the_whole_story_and_says_eures_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.db");
    let out = eures_sync()
        .args(["demo", "--postings", "5", "--db"])
        .arg(&db)
        .output()
        .expect("run demo");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("every one matches its JobAG posting: yes"),
        "{stdout}"
    );
    assert!(db.exists(), "the demo's ledger is where --db says");
}

#[test]
fn usage_errors_exit_with_2_and_runtime_errors_with_1() {
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["status", "--bogus"][..],
        &["resync"][..],
        &["purge", "--older-than", "soon"][..],
    ] {
        let out = eures_sync().args(args).output().expect("run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}: no usage message");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let out = cli(&missing, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[eures]\nmax_attempts = 0\n").expect("write");
    let out = cli(&bad, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("eures.max_attempts"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_goes_before_or_after_the_subcommand() {
    let env = Env::start().await;
    let config = env.dir.path().join("cli.toml");
    std::fs::write(&config, env.config_toml()).expect("config");
    let migrated = cli(&config, &["migrate"]);
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let after = cli(&config, &["status", "--json"]);
    let before = eures_sync()
        .arg("--config")
        .arg(&config)
        .args(["status", "--json"])
        .output()
        .expect("run");
    for out in [&after, &before] {
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let parse = |o: &std::process::Output| -> Value {
        serde_json::from_slice(&o.stdout).expect("status --json is JSON")
    };
    let (after, before) = (parse(&after), parse(&before));
    assert_eq!(after["postings"]["present"], 0, "{after}");
    assert_eq!(
        after.as_object().map(|o| o.keys().collect::<Vec<_>>()),
        before.as_object().map(|o| o.keys().collect::<Vec<_>>())
    );
}

async fn migrate_creates_the_ledger_and_is_idempotent(backend: Backend) {
    let env = Env::start_with(backend).await;
    let config = env.dir.path().join("migrate.toml");
    std::fs::write(&config, env.config_toml()).expect("config");
    for _ in 0..2 {
        let out = cli(&config, &["migrate"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "migrations applied\n");
    }
    let store = eures_sync::store::connect(&env.db_url())
        .await
        .expect("store");
    let summary = store.summary(0).await.expect("the ledger's tables exist");
    assert_eq!(summary.present + summary.pending + summary.absent, 0);
    let out = cli(&config, &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// getAll through the running binary's Input API: the set of references.
async fn get_all(base: &str) -> Result<Vec<String>, String> {
    let resp = reqwest::Client::new()
        .get(format!("{base}{BASE}/getAll"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    let mut refs: Vec<String> = body["allReferences"]
        .as_array()
        .ok_or("no allReferences")?
        .iter()
        .filter_map(|r| r["reference"].as_str().map(str::to_string))
        .collect();
    refs.sort();
    Ok(refs)
}

async fn run_in_pull_mode_serves_the_ledger_and_refuses_to_start_without_a_token(backend: Backend) {
    let env = Env::start_with(backend).await;
    // No token: the start is refused with one line naming the key.
    let out = eures_sync()
        .args(["run", "--config"])
        .arg({
            let path = env.dir.path().join("no-token.toml");
            std::fs::write(
                &path,
                env.config_toml()
                    .replace("[eures]\n", "[eures]\nmode = \"pull\"\n"),
            )
            .expect("config");
            path
        })
        .env_remove("EURES_SYNC_INPUT_API_TOKEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.contains("input_api_token_file")),
        "{stderr}"
    );

    for i in 1..=5 {
        env.jobag.upsert(sample_posting(i));
    }
    let token_file = env.dir.path().join("input-api.token");
    std::fs::write(&token_file, TOKEN).expect("token");
    let mut agent = env.agent(
        "pull",
        "info",
        &format!(
            "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n",
            token_file.display()
        ),
    );
    let base = format!("http://{}", agent.listen());
    let all: Vec<String> = (1..=5).map(sample_id).collect();
    let wanted = {
        let mut w = all.clone();
        w.sort();
        w
    };
    eventually_async(WAIT, "getAll lists the five postings", || async {
        get_all(&base).await.is_ok_and(|refs| refs == wanted)
    })
    .await;
    env.jobag.delete(&sample_id(3));
    let mut p = editable(&env.jobag, &sample_id(4));
    p["eures_consent"] = json!(false);
    env.jobag.upsert(p);
    let wanted: Vec<String> = {
        let mut w: Vec<String> = [1, 2, 5].into_iter().map(sample_id).collect();
        w.sort();
        w
    };
    eventually_async(WAIT, "getAll without the deleted and withdrawn", || async {
        get_all(&base).await.is_ok_and(|refs| refs == wanted)
    })
    .await;
    assert!(env.eures.requests().is_empty(), "pull mode pushed to EURES");
    let log = agent.stop().await;
    assert!(!log.contains(TOKEN), "the token was logged");
}

/// One series' value, named exactly as exposed (labels included).
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// `eures_sync_postings{state}` by state.
fn states(metrics: &str) -> BTreeMap<String, f64> {
    ["present", "pending", "absent", "quarantined"]
        .into_iter()
        .map(|s| {
            (
                s.to_string(),
                value(metrics, &format!("eures_sync_postings{{state=\"{s}\"}}")),
            )
        })
        .collect()
}

async fn state_gauges_sum_to_the_ledger_and_counters_move_by_what_a_step_did(backend: Backend) {
    let env = Env::start_with(backend).await;
    for i in 1..=12 {
        env.jobag.upsert(sample_posting(i));
    }
    let mut agent = env.agent("metrics", "info", "[reconcile]\ninterval_s = 0\n");
    let base = format!("http://{}", agent.listen());
    env.settled(WAIT).await;
    let scrape = || async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body")
    };
    let ledger = |env: &Env| {
        let url = env.db_url();
        async move { common::ledger_states(&url).await }
    };
    // The summary behind the gauges is recomputed at most once a second.
    eventually_async(WAIT, "the state gauges equal the ledger", || async {
        states(&scrape().await) == ledger(&env).await
    })
    .await;
    let before = scrape().await;
    assert_eq!(states(&before)["present"], 12.0);

    // A step: 3 edits, 2 withdrawals, 1 deletion.
    for i in 1..=3 {
        let mut p = editable(&env.jobag, &sample_id(i));
        p["title"] = json!(format!("Redigeret {i}"));
        env.jobag.upsert(p);
    }
    for i in 4..=5 {
        let mut p = editable(&env.jobag, &sample_id(i));
        p["eures_consent"] = json!(false);
        env.jobag.upsert(p);
    }
    env.jobag.delete(&sample_id(6));
    env.settled(WAIT).await;
    let moved = |after: &str, series: &str| value(after, series) - value(&before, series);
    eventually_async(WAIT, "the counters and gauges after the step", || async {
        let after = scrape().await;
        moved(
            &after,
            "eures_sync_deliveries_total{op=\"update\",outcome=\"ok\"}",
        ) == 3.0
            && moved(
                &after,
                "eures_sync_deliveries_total{op=\"delete\",outcome=\"ok\"}",
            ) == 3.0
            && moved(
                &after,
                "eures_sync_deliveries_total{op=\"create\",outcome=\"ok\"}",
            ) == 0.0
            && states(&after) == ledger(&env).await
    })
    .await;
    let after = scrape().await;
    assert_eq!(states(&after)["present"], 9.0, "{after}");
    assert_eq!(states(&after)["absent"], 3.0, "{after}");
    agent.stop().await;
}
