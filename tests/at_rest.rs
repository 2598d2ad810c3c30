//! Personal data at rest (SPEC 6), through the real binary: once a posting
//! is deleted or its consent withdrawn and its copy is gone, none of its
//! personal data is left in the data directory (the SQLite ledger, its WAL
//! and shared-memory files), and the ledger is readable by its owner only.
//! Pull mode, because there the ledger holds each ACTIVE copy's document
//! for as long as it is active: the check first sees the data on disk.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{Env, editable};
use eures_sync_sims::jobag::sample_posting;

const WAIT: Duration = Duration::from_secs(60);

/// Every file of the ledger's directory that holds one of `needles`, with
/// the needle found (logs and the configuration are the test's own).
fn files_holding(dir: &std::path::Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("data dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".log") || name.ends_with(".toml") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{name}: {needle}"));
            }
        }
    }
    found
}

#[tokio::test]
async fn nothing_personal_is_left_on_disk_once_a_copy_is_gone() {
    let env = Env::start().await;
    let personal = |i: u64, marker: &str| {
        let mut p = sample_posting(i);
        p["title"] = format!("Unika stilling {marker}").into();
        p["contact"]["name"] = format!("Karoline Birkedal {marker}").into();
        p["contact"]["email"] = format!("karoline.{marker}@example.dk").into();
        // Applications by email: the copy carries the contact's address.
        p["application"]["url"] = serde_json::Value::Null;
        p["application"]["email"] = format!("karoline.{marker}@example.dk").into();
        p
    };
    // 1 and 2 are deleted / withdrawn below; the others stay.
    env.jobag.upsert(personal(1, "Zq7Unik1"));
    env.jobag.upsert(personal(2, "Zq7Unik2"));
    for i in 3..10 {
        env.jobag.upsert(sample_posting(i));
    }
    let token = env.dir.path().join("input-api.token");
    std::fs::write(&token, "input-api-Sekret-1").expect("token");
    let pull = format!(
        "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n",
        token.display()
    );
    let config = env.dir.path().join("agent.toml");
    std::fs::write(
        &config,
        env.config_toml().replace("[eures]\n", &pull) + "[reconcile]\ninterval_s = 0\n",
    )
    .expect("config");
    let log = std::fs::File::create(env.dir.path().join("agent.log")).expect("log");
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_eures-sync"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start eures-sync");

    let needles = [
        "Zq7Unik1",
        "karoline.Zq7Unik1@example.dk",
        "Zq7Unik2",
        "karoline.Zq7Unik2@example.dk",
    ];
    let started = Instant::now();
    while files_holding(env.dir.path(), &needles).len() < needles.len() {
        assert!(
            started.elapsed() < WAIT,
            "the active copies never reached the ledger: {}",
            std::fs::read_to_string(env.dir.path().join("agent.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    env.jobag.delete(sample_posting(1)["id"].as_str().unwrap());
    let mut withdrawn = editable(&env.jobag, sample_posting(2)["id"].as_str().unwrap());
    withdrawn["eures_consent"] = false.into();
    env.jobag.upsert(withdrawn);

    let started = Instant::now();
    let mut left = files_holding(env.dir.path(), &needles);
    while !left.is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = files_holding(env.dir.path(), &needles);
    }
    assert!(
        left.is_empty(),
        "personal data of closed postings still on disk after 10 s: {left:?}"
    );

    let mode = |name: &str| {
        std::fs::metadata(env.dir.path().join(name))
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
    };
    assert_eq!(mode("ledger.db"), Some(0o600));
    for sibling in ["ledger.db-wal", "ledger.db-shm"] {
        assert!(
            matches!(mode(sibling), None | Some(0o600)),
            "{sibling}: {:o}",
            mode(sibling).unwrap()
        );
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let status = worker.wait().expect("worker exit");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(env.dir.path().join("agent.log")).unwrap_or_default()
    );
}
