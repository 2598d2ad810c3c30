//! `eures-sync demo`: the whole promise on the embedded default. A SQLite
//! ledger, the JobAG and EURES simulators in-process, a real worker between
//! them; it publishes, edits, withdraws, deletes, lets a posting expire, sends
//! a malformed change, and prints what EURES ends up holding after each step.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::Config;
use crate::engine::Worker;
use eures_sync_sims::eures::{EuresOptions, EuresSim};
use eures_sync_sims::jobag::{JobagOptions, JobagSim, sample_posting};

/// How long one demo step may take before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > STEP_TIMEOUT {
            anyhow::bail!("demo step did not finish within {STEP_TIMEOUT:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

fn line(step: &str, outcome: String, took: Duration) {
    println!("{step:<58} {outcome:<44} {:>6} ms", took.as_millis());
}

pub async fn run(postings: u64, db: &Path) -> anyhow::Result<()> {
    crate::telemetry::init_logs(crate::config::LogFormat::Text, "error");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    let jobag = JobagSim::start(JobagOptions::default())
        .await
        .context("starting the JobAG simulator")?;
    let eures = EuresSim::start(EuresOptions::default())
        .await
        .context("starting the EURES simulator")?;
    let toml = format!(
        "[database]\nurl = \"sqlite://{}?mode=rwc\"\n\
         [jobag]\nbase_url = \"{}\"\npoll_interval_ms = 50\n\
         [eures]\nbase_url = \"{}\"\nconcurrency = 8\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
        db.display(),
        jobag.base_url(),
        eures.base_url()
    );
    let config = Config::load_from(Figment::new().merge(Toml::string(&toml)))?;
    let store = crate::store::connect(&config.database.url).await?;
    store.migrate().await?;
    let worker = Arc::new(Worker::from_config(&config, store.clone())?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.clone().run(stop_rx));

    println!("eures-sync demo");
    println!("  ledger  {} (SQLite)", db.display());
    println!("  JobAG   {} (simulator)", jobag.base_url());
    println!("  EURES   {} (simulator, push mode)", eures.base_url());
    println!();

    // 1. Publish: most with consent, a few that must never reach EURES.
    let mut expected = 0usize;
    let mut ids = Vec::new();
    for i in 1..=postings {
        let mut p = sample_posting(i);
        match i % 10 {
            3 => p["eures_consent"] = json!(false),
            6 => p["internal"] = json!(true),
            9 => p["locations"] = json!([{"city": "Boston", "country": "US"}]),
            _ => expected += 1,
        }
        ids.push(p["id"].as_str().unwrap_or_default().to_string());
        jobag.upsert(p);
    }
    let took = wait_for("initial sync", || eures.len() == expected).await?;
    line(
        &format!("1. JobAG publishes {postings} postings"),
        format!("EURES holds {expected} (no consent/internal/US kept out)"),
        took,
    );

    // 2. A real edit reaches EURES as an update.
    let edited = ids[0].clone();
    let mut p = jobag.current(&edited).context("sample posting")?;
    p["title"] = json!("Senior softwareudvikler (Rust)");
    strip_version(&mut p);
    let v = jobag.upsert(p);
    let took = wait_for("edit", || {
        eures.get(&edited).is_some_and(|x| x.source_version == v)
    })
    .await?;
    line(
        "2. Employer edits a title",
        format!("EURES copy updated to version {v}"),
        took,
    );

    // 3. An edit EURES never sees (contact data is not in the document).
    let quiet = ids[1].clone();
    let before = eures.get(&quiet).map(|x| x.source_version);
    let mut p = jobag.current(&quiet).context("sample posting")?;
    p["contact"] = json!({"name": "Ny Kontakt", "email": "ny@example.dk", "phone": "+4587654321"});
    strip_version(&mut p);
    let v = jobag.upsert(p);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = eures.get(&quiet).map(|x| x.source_version);
    line(
        "3. Employer changes only the contact person",
        format!("no update (v{v} seen, EURES keeps v{})", after.unwrap_or(0)),
        Duration::from_millis(500),
    );
    anyhow::ensure!(
        before == after,
        "an edit invisible on EURES caused an update"
    );

    // 4. Withdrawn consent removes the copy; the JobAG posting stays.
    let withdrawn = ids[3].clone();
    let mut p = jobag.current(&withdrawn).context("sample posting")?;
    p["eures_consent"] = json!(false);
    strip_version(&mut p);
    jobag.upsert(p);
    let took = wait_for("withdrawal", || eures.get(&withdrawn).is_none()).await?;
    line(
        "4. Employer withdraws EURES consent",
        "EURES copy deleted".into(),
        took,
    );

    // 5. Consent given again: the copy comes back.
    let mut p = jobag.current(&withdrawn).context("sample posting")?;
    p["eures_consent"] = json!(true);
    strip_version(&mut p);
    jobag.upsert(p);
    let took = wait_for("re-consent", || eures.get(&withdrawn).is_some()).await?;
    line(
        "5. Employer consents again",
        "EURES copy created again".into(),
        took,
    );

    // 6. Deleting in JobAG deletes on EURES.
    let deleted = ids[4].clone();
    jobag.delete(&deleted);
    let took = wait_for("deletion", || eures.get(&deleted).is_none()).await?;
    line(
        "6. Employer deletes the posting in JobAG",
        "EURES copy deleted".into(),
        took,
    );

    // 7. A malformed change is quarantined; the feed goes on.
    jobag.push_raw(json!({"title": "no id, no version"}));
    let mut late = sample_posting(postings + 1);
    late["title"] = json!("Published after a malformed change");
    let late_id = late["id"].as_str().unwrap_or_default().to_string();
    jobag.upsert(late);
    let took = wait_for("feed after malformed item", || {
        eures.get(&late_id).is_some()
    })
    .await?;
    let quarantined = store.quarantined(10).await?;
    line(
        "7. A malformed change arrives, then a new posting",
        format!("{} quarantined; new posting on EURES", quarantined.len()),
        took,
    );

    // 8. Expiry acts without any event.
    let mut short = sample_posting(postings + 2);
    let ends = chrono::Utc::now() + chrono::Duration::seconds(2);
    short["publication_end"] = json!(ends.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let short_id = short["id"].as_str().unwrap_or_default().to_string();
    jobag.upsert(short);
    wait_for("short-lived create", || eures.get(&short_id).is_some()).await?;
    let took = wait_for("expiry", || eures.get(&short_id).is_none()).await?;
    line(
        "8. A posting reaches its publication end",
        "EURES copy deleted on time".into(),
        took,
    );

    let _ = stop_tx.send(true);
    running.await.context("worker task")??;

    let summary = store.summary(crate::engine::now_ms()).await?;
    println!();
    println!(
        "ledger: present {}  pending {}  absent {}  quarantined {}  dead letters {}",
        summary.present, summary.pending, summary.absent, summary.quarantined, summary.dead_letters
    );
    for (id, reason) in &quarantined {
        println!(
            "  quarantined {}: {reason}",
            id.as_deref().unwrap_or("(no id)")
        );
    }
    let consistent = consistent(&jobag, &eures);
    println!(
        "EURES holds {} copies; every one matches its JobAG posting: {}",
        eures.len(),
        if consistent { "yes" } else { "NO" }
    );
    anyhow::ensure!(consistent, "EURES does not match the source");
    Ok(())
}

/// Lets the simulator assign the next version and time.
fn strip_version(p: &mut Value) {
    if let Some(o) = p.as_object_mut() {
        o.remove("version");
        o.remove("updated_at");
    }
}

/// EURES holds exactly the postings the source says should be there.
fn consistent(jobag: &JobagSim, eures: &EuresSim) -> bool {
    let now = chrono::Utc::now();
    let mut wanted = 0;
    for id in jobag.ids() {
        let Some(p) = jobag.current(&id) else {
            continue;
        };
        let present = match crate::domain::posting::parse_change(&p) {
            crate::domain::posting::ParsedChange::Change(c) => matches!(
                crate::domain::eligibility::evaluate(
                    &c,
                    now,
                    &crate::domain::render::DocumentSettings::default()
                ),
                crate::domain::eligibility::Desired::Present { .. }
            ),
            _ => false,
        };
        if present {
            wanted += 1;
        }
        if present != eures.get(&id).is_some() {
            return false;
        }
    }
    wanted == eures.len()
}
