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
use eures_sync_sims::jobag::{sample_id, sample_posting};
use serde_json::{Value, json};

common::on_both_backends!(
    migrate_creates_the_ledger_and_is_idempotent,
    run_in_pull_mode_serves_the_ledger_and_refuses_to_start_without_a_token,
    state_gauges_sum_to_the_ledger_and_counters_move_by_what_a_step_did,
);

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "cli-test-input-api-token-0123456789";

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
        &["purge", "--older-than", "0"][..],
        &["sim", "--postings", "-3"][..],
    ] {
        let out = eures_sync().args(args).output().expect("run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}: no usage message");
        // Ranges in an operator's words, never a Rust type or range.
        let stderr = text(&out.stderr);
        for rust in ["u32", "u64", "4294967295", "..="] {
            assert!(!stderr.contains(rust), "{args:?}: {stderr}");
        }
    }
    let out = eures_sync()
        .args(["purge", "--older-than", "0"])
        .output()
        .expect("run");
    assert!(
        text(&out.stderr).contains("must be a whole number of days, at least 1"),
        "{}",
        text(&out.stderr)
    );
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
    // Before: every migration pending, nothing created.
    let status = cli(&config, &["migrate", "--status"]);
    let known = eures_sync::store::connect(&env.db_url())
        .await
        .expect("store")
        .pending_migrations()
        .await
        .expect("pending");
    if backend == Backend::Sqlite {
        // No ledger yet: the status says so and creates none.
        assert_eq!(status.status.code(), Some(1), "{}", text(&status.stderr));
        assert!(text(&status.stderr).contains("eures-sync migrate"));
    } else {
        assert!(status.status.success(), "{}", text(&status.stderr));
        let stdout = text(&status.stdout);
        assert_eq!(
            stdout
                .lines()
                .filter(|l| l.starts_with("pending  "))
                .count(),
            known.len(),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("0 applied, {} pending", known.len())),
            "{stdout}"
        );
    }
    let first = cli(&config, &["migrate"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let stdout = text(&first.stdout);
    for (version, description) in &known {
        assert!(
            stdout.contains(&format!("applied  {version}  {description}")),
            "{stdout}"
        );
    }
    assert!(
        stdout.ends_with(&format!("{} migrations applied\n", known.len())),
        "{stdout}"
    );
    let again = cli(&config, &["migrate"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout),
        "nothing to apply: the ledger is up to date\n"
    );
    let status = cli(&config, &["migrate", "--status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let stdout = text(&status.stdout);
    let applied: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("applied  "))
        .collect();
    assert_eq!(applied.len(), known.len(), "{stdout}");
    for ((version, description), line) in known.iter().zip(&applied) {
        // applied  VERSION  YYYY-MM-DDTHH:MM:SSZ  DESCRIPTION
        let fields: Vec<&str> = line.splitn(4, "  ").collect();
        assert_eq!(fields[1], version.to_string(), "{line}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(fields[2]).is_ok(),
            "applied time: {line}"
        );
        assert_eq!(fields[3], description, "{line}");
    }
    assert!(
        stdout.contains(&format!("{} applied, 0 pending", known.len())),
        "{stdout}"
    );
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
    common::write_secret(&token_file, TOKEN);
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

/// Every subcommand (and `dead-letters`' own), from the same definitions
/// the binary parses: `["status"]`, `["dead-letters", "list"]`, ...
fn subcommands() -> Vec<Vec<String>> {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut p = path.to_vec();
            p.push(sub.get_name().to_string());
            out.push(p.clone());
            walk(sub, &p, out);
        }
    }
    let mut out = Vec::new();
    walk(&eures_sync::cli::Cli::command(), &[], &mut out);
    out
}

#[test]
fn every_flag_has_a_description_and_every_subcommand_an_example() {
    use clap::CommandFactory;
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }
    let mut missing = Vec::new();
    undocumented(&eures_sync::cli::Cli::command(), "eures-sync", &mut missing);
    assert!(
        missing.is_empty(),
        "arguments without a description: {missing:?}"
    );

    let subcommands = subcommands();
    assert!(subcommands.len() >= 16, "{subcommands:?}");
    for path in &subcommands {
        let out = eures_sync().args(path).arg("--help").output().expect("run");
        let help = text(&out.stdout);
        assert!(out.status.success(), "{path:?}: {}", text(&out.stderr));
        if path.last().is_some_and(|p| p == "help") {
            continue;
        }
        assert!(
            help.contains("Example") && help.contains(&format!("eures-sync {}", path.join(" "))),
            "{path:?} --help has no example of itself:\n{help}"
        );
    }
}

#[test]
fn top_level_help_names_the_config_path_token_variables_and_exit_codes() {
    use eures_sync::config::{
        DEFAULT_CONFIG_PATH, ENV_EURES_TOKEN, ENV_INPUT_API_TOKEN, ENV_JOBAG_TOKEN,
    };
    let out = eures_sync().arg("--help").output().expect("run");
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        DEFAULT_CONFIG_PATH,
        ENV_JOBAG_TOKEN,
        ENV_EURES_TOKEN,
        ENV_INPUT_API_TOKEN,
        "EURES_SYNC__",
        "Exit codes: 0 ok, 1 failure, 2 usage error",
    ] {
        assert!(
            help.contains(needle),
            "top-level help lacks {needle}:\n{help}"
        );
    }
    let out = eures_sync().arg("--version").output().expect("run");
    let version = text(&out.stdout);
    assert!(out.status.success());
    assert_eq!(
        version.trim(),
        format!(
            "eures-sync {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            eures_sync::telemetry::COMMIT
        )
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    let out = eures_sync()
        .args(["completions", "bash"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(
        script.contains("complete -F"),
        "not a bash completion: {script}"
    );
    for path in subcommands() {
        let name = path.last().expect("a name");
        assert!(script.contains(name.as_str()), "completion lacks {name}");
    }
    for flag in ["--dry-run", "--yes", "--older-than", "--status"] {
        assert!(script.contains(flag), "completion lacks {flag}");
    }
    let out = eures_sync().arg("man").output().expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    // roff: after the apostrophe set-up (`.ie`/`.el`), the title line.
    let title = page
        .lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
        .unwrap_or_default();
    assert!(
        title.starts_with(".TH eures-sync 1"),
        "not a man page: {page}"
    );
    for needle in ["eures\\-sync", "resync", "purge", "migrate"] {
        assert!(page.contains(needle), "man page lacks {needle}");
    }
}

/// A configuration with a migrated SQLite ledger and nothing running.
fn sqlite_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("agent.toml");
    let url = format!("sqlite://{}?mode=rwc", dir.join("ledger.db").display());
    std::fs::write(&config, format!("[database]\nurl = \"{url}\"\n")).expect("config");
    let out = cli(&config, &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    config
}

#[test]
fn destructive_commands_without_a_terminal_need_yes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = sqlite_config(dir.path());
    for args in [
        &["purge"][..],
        &["purge", "--older-than", "30"][..],
        &["resync", "--all"][..],
    ] {
        let out = cli(&config, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("add --yes"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} did something");
    }
    let out = cli(&config, &["purge", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("would purge 0 audit rows"),
        "{}",
        text(&out.stdout)
    );
    let out = cli(&config, &["purge", "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("purged 0 audit rows"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_rust_log_that_does_not_parse_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = sqlite_config(dir.path());
    for bad in ["inof", "eures_sync=loud"] {
        let out = eures_sync()
            .args(["status", "--config"])
            .arg(&config)
            .env("RUST_LOG", bad)
            .output()
            .expect("run");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert!(
            stderr.contains("RUST_LOG: must be a level"),
            "{bad}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let out = eures_sync()
        .args(["status", "--config"])
        .arg(&config)
        .env("RUST_LOG", "eures_sync=debug,warn")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A PostgreSQL URL's connection failure: exit 1, one line naming where
/// (host:port, database, user), the cause once, and no password or
/// PostgreSQL source location. The URL, password and all, comes from the
/// environment, where a password may be.
fn db_error(url: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pg.toml");
    std::fs::write(&config, "").expect("config");
    let out = eures_sync()
        .args(["status", "--config"])
        .arg(&config)
        .env("EURES_SYNC__DATABASE__URL", url)
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        !stderr.contains("Sekret-Pw"),
        "the password leaked: {stderr}"
    );
    assert!(!stderr.contains(" line "), "a source line: {stderr}");
    stderr
}

#[test]
fn database_connection_errors_say_where_why_and_what_to_do() {
    let admin = url::Url::parse(&common::pg_admin_url()).expect("admin url");
    let host = admin.host_str().unwrap_or("127.0.0.1").to_string();
    let port = admin.port().unwrap_or(5432);
    let user = admin.username().to_string();

    // A closed port: bound, then released, so nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let e = db_error(&format!(
        "postgres://eures:Sekret-Pw@127.0.0.1:{closed}/ledger?acquire_timeout_ms=1500"
    ));
    assert!(
        e.contains(&format!(
            "database \"ledger\" at 127.0.0.1:{closed} as user \"eures\""
        )),
        "{e}"
    );
    assert_eq!(e.matches("refused").count(), 1, "{e}");
    assert!(e.contains("PostgreSQL runs there"), "{e}");

    // A port that takes the connection and never answers: timed out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port_silent = silent.local_addr().expect("addr").port();
    let e = db_error(&format!(
        "postgres://eures:Sekret-Pw@127.0.0.1:{port_silent}/ledger?acquire_timeout_ms=1000"
    ));
    assert!(e.contains(&format!("at 127.0.0.1:{port_silent} ")), "{e}");
    assert_eq!(e.matches("timed out").count(), 1, "{e}");
    assert!(e.contains("firewall"), "{e}");
    drop(silent);

    let e = db_error(&format!(
        "postgres://{user}:Sekret-Pw@{host}:{port}/no_such_ledger_db"
    ));
    assert!(
        e.contains(&format!(
            "database \"no_such_ledger_db\" at {host}:{port} as user \"{user}\""
        )),
        "{e}"
    );
    assert_eq!(e.matches("does not exist").count(), 1, "{e}");
    assert!(e.contains("createdb"), "{e}");

    let e = db_error(&format!(
        "postgres://no_such_role_xyz:Sekret-Pw@{host}:{port}/{}",
        admin.path().trim_start_matches('/')
    ));
    assert!(e.contains("as user \"no_such_role_xyz\""), "{e}");
    assert_eq!(e.matches("authentication failed").count(), 1, "{e}");
    assert!(e.contains("pg_hba.conf"), "{e}");
}

/// The binary on a terminal (util-linux's `script` gives it one), `answer`
/// typed at it; bounded by coreutils' `timeout`.
fn on_a_terminal(config: &std::path::Path, args: &str, answer: &str) -> Option<(i32, String)> {
    use std::io::Write;
    let line = format!(
        "{} {args} --config {}",
        env!("CARGO_BIN_EXE_eures-sync"),
        config.display()
    );
    let mut child = std::process::Command::new("timeout")
        .args(["60", "script", "-qec", &line, "/dev/null"])
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(answer.as_bytes())
        .expect("type the answer");
    let out = child.wait_with_output().expect("script");
    Some((out.status.code().unwrap_or(-1), text(&out.stdout)))
}

#[test]
fn on_a_terminal_destructive_commands_ask_and_only_yes_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = sqlite_config(dir.path());
    let Some((code, screen)) = on_a_terminal(&config, "purge", "n\n") else {
        common::skip_or_fail(
            "on_a_terminal_destructive_commands_ask_and_only_yes_goes_on",
            "util-linux's script is not installed",
        );
        return;
    };
    assert_eq!(code, 1, "{screen}");
    assert!(
        screen.contains("This will delete 0 audit rows") && screen.contains("[y/N]"),
        "{screen}"
    );
    assert!(
        screen.contains("not confirmed; nothing changed"),
        "{screen}"
    );
    assert!(!screen.contains("purged"), "{screen}");

    let (code, screen) = on_a_terminal(&config, "purge", "y\n").expect("script");
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("purged 0 audit rows"), "{screen}");

    // An empty answer is no; the question comes before JobAG is read.
    let (code, screen) = on_a_terminal(&config, "resync --all", "\n").expect("script");
    assert_eq!(code, 1, "{screen}");
    assert!(
        screen.contains("re-deliver every posting JobAG has. Go on? [y/N]"),
        "{screen}"
    );
    assert!(screen.contains("not confirmed"), "{screen}");
}

/// What `status`, `inspect` and `dead-letters list` show came partly from
/// outside (a reason, an error text EURES answered): control characters and
/// invisible ones in it are escaped, in text and in JSON (which stays the
/// same document).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_text_reaches_the_terminal_escaped() {
    use sqlx::Connection;
    let env = Env::start().await;
    env.jobag.upsert(sample_posting(1));
    let running = env.worker().await;
    env.converged(WAIT).await;
    running.stop().await;
    let id = sample_id(1);
    let hostile = "rejected \u{1b}[2J\u{1b}]0;owned\u{7} \u{9b}31m \u{202e}txt.exe";
    let mut db = sqlx::SqliteConnection::connect(&env.db_url())
        .await
        .unwrap();
    sqlx::query("UPDATE postings SET last_error = ?, dead = 1 WHERE id = ?")
        .bind(hostile)
        .bind(&id)
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO quarantine (posting_id, reason, feed_position, at_ms) VALUES (?, ?, 'x', 0)",
    )
    .bind(&id)
    .bind(hostile)
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();
    let config = env.dir.path().join("cli.toml");
    std::fs::write(&config, env.config_toml()).unwrap();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["inspect", &id],
        &["inspect", &id, "--json"],
        &["dead-letters", "list"],
        &["dead-letters", "list", "--json"],
    ] {
        let out = cli(&config, args);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout} {}",
            text(&out.stderr)
        );
        for c in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
            assert!(!stdout.contains(c), "{args:?} printed {c:?}: {stdout:?}");
        }
        if args.contains(&"--json") {
            let doc: Value = serde_json::from_str(&stdout).expect("one JSON document");
            assert!(doc.to_string().contains("rejected"), "{args:?}");
            let reasons = match args[0] {
                "status" => doc["quarantined"][0]["reason"].clone(),
                "inspect" => doc["last_error"].clone(),
                _ => doc["dead_letters"][0]["last_error"].clone(),
            };
            assert!(
                reasons.as_str().is_some_and(|r| r.starts_with(hostile)),
                "{args:?}: not the same document: {reasons}"
            );
        } else if args[0] != "inspect" {
            assert!(stdout.contains("\\u{1b}[2J"), "{args:?}: {stdout}");
        }
    }
}

/// One refusal of the binary at start: exit 1, one line, naming `names`,
/// never `secret`.
fn refused(out: &std::process::Output, names: &str, secret: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(names), "{names} not named: {stderr}");
    assert!(
        !stderr.contains(secret) && !text(&out.stdout).contains(secret),
        "the secret was printed: {stderr}"
    );
    stderr
}

/// Credentials where they do not belong (SPEC 4.6), through the binary: a
/// base URL with a user or password, a password in the file's
/// `database.url`, a TOML syntax error on a line holding one, token files
/// others may read, an Input API token too short. Each start is refused in
/// one line naming the key, never the value.
#[test]
fn credentials_where_they_do_not_belong_are_refused() {
    const SECRET: &str = "Sekret-Pw-9f3c";
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = format!(
        "[database]\nurl = \"sqlite://{}?mode=rwc\"\n",
        dir.path().join("ledger.db").display()
    );
    let config = dir.path().join("agent.toml");
    let run = |toml: &str, args: &[&str]| {
        std::fs::write(&config, toml).expect("config");
        cli(&config, args)
    };
    for key in ["jobag", "eures"] {
        for userinfo in [format!("agent:{SECRET}@"), format!("{SECRET}@")] {
            let out = run(
                &format!("{sqlite}[{key}]\nbase_url = \"https://{userinfo}{key}.example\"\n"),
                &["status"],
            );
            refused(
                &out,
                &format!("{key}.base_url: must not hold a user or password"),
                SECRET,
            );
        }
    }
    let out = run(
        &format!("[database]\nurl = \"postgres://eures:{SECRET}@127.0.0.1:1/ledger\"\n"),
        &["status"],
    );
    refused(
        &out,
        "database.url: must not hold a password in the file",
        SECRET,
    );
    let out = run(
        &format!("[database]\nurl = \"postgres://eures@127.0.0.1:1/ledger?password={SECRET}\"\n"),
        &["status"],
    );
    refused(
        &out,
        "database.url: must not hold a password in the file",
        SECRET,
    );
    let out = run(
        &format!("[database]\nurl = \"postgres://eures:{SECRET}@127.0.0.1:1/ledger\n"),
        &["status"],
    );
    let e = refused(
        &out,
        &format!("config file {}: line 2, column ", config.display()),
        SECRET,
    );
    assert!(!e.contains("postgres://"), "{e}");

    // Pull mode: the Input API token's file and length.
    let token = dir.path().join("input-api.token");
    let pull = format!(
        "{sqlite}[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        token.display()
    );
    std::fs::write(&token, format!("{SECRET}-0123456789abcdefghijkl")).expect("token");
    let out = run(&pull, &["run"]);
    refused(&out, "eures.input_api_token_file: ", SECRET);
    assert!(text(&out.stderr).contains("may be read or changed by group or others (mode 0644)"));
    common::write_secret(&token, SECRET);
    let out = run(&pull, &["run"]);
    refused(&out, "eures.input_api_token_file: ", SECRET);
    assert!(text(&out.stderr).contains("shorter than 32 bytes"));
    // JobAG's token file, read when the worker starts.
    let jobag_token = dir.path().join("jobag.token");
    std::fs::write(&jobag_token, SECRET).expect("token");
    let out = run(
        &format!(
            "{sqlite}[jobag]\ntoken_file = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            jobag_token.display()
        ),
        &["run"],
    );
    refused(&out, "jobag.token_file: ", SECRET);
}

/// The password may come from the environment, and wherever it sits in the
/// URL it is never printed: `migrate --status` names the ledger with
/// `***` in its place.
#[tokio::test]
async fn a_database_password_from_the_environment_is_never_printed() {
    const SECRET: &str = "Sekret-Pw-77ab";
    let env = Env::start_with(Backend::Postgres).await;
    let mut url = url::Url::parse(&env.db_url()).expect("url");
    url.query_pairs_mut()
        .append_pair("password", SECRET)
        .append_pair("sslmode", "disable");
    let config = env.dir.path().join("pg.toml");
    std::fs::write(&config, "").expect("config");
    for args in [
        &["migrate"][..],
        &["migrate", "--status"][..],
        &["status"][..],
    ] {
        let out = eures_sync()
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("EURES_SYNC__DATABASE__URL", url.as_str())
            .output()
            .expect("run");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(
            !stdout.contains(SECRET) && !stderr.contains(SECRET),
            "{args:?} printed the password: {stdout}{stderr}"
        );
        if args == ["migrate", "--status"] {
            assert!(stdout.contains("password=***"), "{stdout}");
        }
    }
}

/// `eures.input_api_token_file` with two tokens, one a line: EURES may
/// present either while it moves from the old to the new one; any other
/// is refused.
#[tokio::test]
async fn the_input_api_accepts_both_tokens_of_a_rotation() {
    let env = Env::start().await;
    let token_file = env.dir.path().join("input-api.token");
    let (old, new) = (
        "rotation-old-token-0123456789abcdef",
        "rotation-new-token-fedcba9876543210",
    );
    common::write_secret(&token_file, &format!("{old}\n{new}\n"));
    let mut agent = env.agent(
        "rotation",
        "info",
        &format!(
            "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n",
            token_file.display()
        ),
    );
    let base = format!("http://{}{BASE}/ping", agent.listen());
    let status = |token: &'static str| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .get(&base)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(status(old).await, 200, "the old token");
    assert_eq!(status(new).await, 200, "the new token");
    assert_eq!(status("rotation-other-token-0123456789abc").await, 401);
    let log = agent.stop().await;
    assert!(
        !log.contains(old) && !log.contains(new),
        "a token was logged"
    );
}
