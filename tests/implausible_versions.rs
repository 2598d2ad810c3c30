//! A feed version far above the ledger's (SPEC 4.1): quarantined instead of
//! accepted, so the posting's later real edits still flow; an operator who
//! has checked JobAG accepts it with `resync --posting ID --accept-version`.

mod common;

use std::time::Duration;

use common::agent::cli;
use common::{Backend, Env, eventually};
use eures_sync::domain::ledger::IMPLAUSIBLE_JUMP;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use serde_json::{Value, json};

common::on_both_backends!(an_implausible_version_is_quarantined_and_accepted_on_request);

const WAIT: Duration = Duration::from_secs(60);

fn edition(version: u64, title: &str) -> Value {
    let mut posting = sample_posting(1);
    posting["version"] = json!(version);
    posting["title"] = json!(title);
    posting
}

/// The title of the copy EURES holds, from its document.
fn held_title(env: &Env, id: &str) -> Option<String> {
    let doc = env.eures.get(id)?.content;
    let start = doc.find("<PositionTitle>")? + "<PositionTitle>".len();
    let end = doc[start..].find("</PositionTitle>")? + start;
    Some(doc[start..end].to_string())
}

fn status_json(config: &std::path::Path) -> Value {
    let out = cli(config, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json")
}

async fn an_implausible_version_is_quarantined_and_accepted_on_request(backend: Backend) {
    let env = Env::start_with(backend).await;
    let config = env.dir.path().join("cli.toml");
    std::fs::write(&config, env.config_toml()).expect("config");
    let id = sample_id(1);
    env.jobag.upsert(edition(1, "Tømrer"));
    let worker = env.worker().await;
    eventually(WAIT, "v1 on EURES", || {
        held_title(&env, &id).as_deref() == Some("Tømrer")
    })
    .await;

    // A version from a defect of the source: not accepted, not delivered.
    let jump = 1 + IMPLAUSIBLE_JUMP + 1;
    env.jobag.upsert(edition(jump, "Springet"));
    let mut quarantined = Value::Null;
    eventually(WAIT, "the jump quarantined", || {
        quarantined = status_json(&config)["quarantined"].clone();
        quarantined.to_string().contains("implausible jump")
    })
    .await;
    assert!(quarantined.to_string().contains(&id), "{quarantined}");
    // Versions up to the limit are ordinary edits.
    let inspect = cli(&config, &["inspect", &id, "--json"]);
    let inspect: Value = serde_json::from_slice(&inspect.stdout).expect("inspect --json");
    assert_eq!(inspect["source_version"], json!(1), "{inspect}");

    // The posting is not frozen: the next real edit is delivered.
    env.jobag.upsert(edition(2, "Tømrer og snedker"));
    eventually(WAIT, "v2 on EURES", || {
        held_title(&env, &id).as_deref() == Some("Tømrer og snedker")
    })
    .await;

    // JobAG really has a version that far up: a plain resync refuses it
    // and says what to do; --accept-version takes it.
    env.jobag
        .upsert(edition(3 + IMPLAUSIBLE_JUMP * 3, "Bekræftet"));
    let out = cli(&config, &["resync", "--posting", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--accept-version"), "{stderr}");
    let out = cli(&config, &["resync", "--posting", &id, "--accept-version"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(WAIT, "the accepted version on EURES", || {
        held_title(&env, &id).as_deref() == Some("Bekræftet")
    })
    .await;
    let holding = env.eures.get(&id).expect("held");
    assert_eq!(holding.source_version, 3 + IMPLAUSIBLE_JUMP * 3);
    // The flag is for one posting an operator has checked, nothing wider.
    let out = cli(&config, &["resync", "--all", "--accept-version"]);
    assert_eq!(out.status.code(), Some(2));
    worker.stop().await;
}
