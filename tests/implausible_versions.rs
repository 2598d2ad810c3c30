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

common::on_both_backends!(
    an_implausible_version_is_quarantined_and_accepted_on_request,
    reconcile_and_resync_keep_the_guard_and_an_implausible_withdrawal_still_removes_the_copy,
);

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

fn source_version(config: &std::path::Path, id: &str) -> Value {
    let inspect = cli(config, &["inspect", id, "--json"]);
    let inspect: Value = serde_json::from_slice(&inspect.stdout).expect("inspect --json");
    inspect["source_version"].clone()
}

/// SPEC 3.9: reconcile and `resync --all` apply a snapshot version through
/// the feed's guard, and a withdrawal that arrives with an implausible
/// version removes the copy while its version stays quarantined.
async fn reconcile_and_resync_keep_the_guard_and_an_implausible_withdrawal_still_removes_the_copy(
    backend: Backend,
) {
    let env = Env::start_with(backend).await;
    let config = env.dir.path().join("cli.toml");
    std::fs::write(&config, env.config_toml()).expect("config");
    let (spiked, withdrawn) = (sample_id(1), sample_id(2));
    env.jobag.upsert(edition(1, "Tømrer"));
    let mut other = sample_posting(2);
    other["version"] = json!(1);
    env.jobag.upsert(other.clone());
    let worker = env.worker().await;
    eventually(WAIT, "both on EURES", || {
        env.eures.get(&spiked).is_some() && env.eures.get(&withdrawn).is_some()
    })
    .await;

    // A spike the feed quarantines; the snapshot shows it too.
    let jump = 1 + IMPLAUSIBLE_JUMP + 1;
    env.jobag.upsert(edition(jump, "Springet"));
    eventually(WAIT, "the jump quarantined", || {
        status_json(&config)["quarantined"]
            .to_string()
            .contains("implausible jump")
    })
    .await;
    for command in [&["reconcile"][..], &["resync", "--all", "--yes"][..]] {
        let out = cli(&config, command);
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            source_version(&config, &spiked),
            json!(1),
            "{command:?} adopted the quarantined version"
        );
    }
    // So the real withdrawal that follows is not ignored as stale.
    let mut w = edition(2, "Tømrer");
    w["eures_consent"] = json!(false);
    env.jobag.upsert(w);
    eventually(WAIT, "the withdrawn copy gone", || {
        env.eures.get(&spiked).is_none()
    })
    .await;

    // A withdrawal with an implausible version: the copy goes all the same.
    other["version"] = json!(jump);
    other["eures_consent"] = json!(false);
    env.jobag.upsert(other);
    eventually(
        WAIT,
        "the implausibly versioned withdrawal removes the copy",
        || env.eures.get(&withdrawn).is_none(),
    )
    .await;
    assert_eq!(source_version(&config, &withdrawn), json!(1));
    worker.stop().await;
}
