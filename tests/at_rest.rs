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
    common::write_secret(&token, "input-api-Sekret-1-0123456789abcdef");
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

/// A ledger written before documents moved out of the records (SQLite
/// migration 0006) kept each document inline, and erasing one only set
/// the column to NULL: without `secure_delete` the old bytes stayed in the
/// file's free space, and dropping the column does not overwrite them.
/// `eures-sync migrate` rewrites the file once (`VACUUM`), so nothing of
/// them is left; a document still wanted survives the rewrite.
#[tokio::test]
async fn content_erased_by_an_older_agent_leaves_the_file_at_the_upgrade() {
    let env = Env::start().await;
    let url = env.db_url();
    let old = sqlx::SqlitePool::connect(&url).await.expect("old ledger");
    sqlx::migrate!("migrations/sqlite")
        .run_to(5, &old)
        .await
        .expect("migrations up to 0005");
    // What an older agent did: the document inline, erased once EURES
    // acknowledged it (the update leaves the bytes where they were), and a
    // deleted record's row unlinked.
    // Longer than a page, like real documents (3-4 KB and up): the part
    // that does not fit goes to overflow pages, which the erasure put on
    // the free list as they were.
    let document = |marker: &str| {
        format!(
            "<PositionOpening><Title>Unika stilling {marker}</Title><Description>{}</Description>\
             <Contact>Karoline Birkedal {marker} karoline.{marker}@example.dk</Contact>\
             </PositionOpening>",
            "Arbejdsopgaver og kvalifikationer. ".repeat(150)
        )
    };
    for (id, marker) in [
        ("erased", "Vq3Slet1"),
        ("deleted", "Vq3Slet2"),
        ("kept", "Vq3Bliv3"),
    ] {
        sqlx::query(
            "INSERT INTO postings (id, source_version, desired_present, desired_hash, \
             desired_content, publication_end_ms, delivered_state, next_attempt_at_ms, \
             state, last_change_ms, due_op, due_rank) \
             VALUES (?, 1, 1, 'h', ?, 4102444800000, 'absent', 0, 'pending', 1, 'create', 1)",
        )
        .bind(id)
        .bind(document(marker))
        .execute(&old)
        .await
        .expect("insert");
    }
    sqlx::query("UPDATE postings SET desired_content = NULL WHERE id = 'erased'")
        .execute(&old)
        .await
        .expect("erase");
    sqlx::query("DELETE FROM postings WHERE id = 'deleted'")
        .execute(&old)
        .await
        .expect("delete");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&old)
        .await
        .expect("checkpoint");
    old.close().await;
    let gone = [
        "Vq3Slet1",
        "karoline.Vq3Slet1@",
        "Vq3Slet2",
        "karoline.Vq3Slet2@",
    ];
    let before = files_holding(env.dir.path(), &gone);
    assert!(
        ["Vq3Slet1", "Vq3Slet2"]
            .iter()
            .all(|m| before.iter().any(|f| f.ends_with(m))),
        "the old ledger holds the erased content (else this test proves nothing): {before:?}"
    );

    let config = env.dir.path().join("migrate.toml");
    std::fs::write(&config, env.config_toml()).expect("config");
    let out = common::agent::cli(&config, &["migrate"]);
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The pages the migrations wrote are in the WAL until a checkpoint
    // copies them over the old ones (a worker's checkpointer does it
    // within seconds of its start).
    let ledger = sqlx::SqlitePool::connect(&url).await.expect("ledger");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&ledger)
        .await
        .expect("checkpoint");
    let left = files_holding(env.dir.path(), &gone);
    let files: Vec<_> = std::fs::read_dir(env.dir.path())
        .expect("data dir")
        .map(|e| {
            let e = e.expect("entry");
            (e.file_name(), e.metadata().expect("metadata").len())
        })
        .collect();
    assert!(
        left.is_empty(),
        "erased content still in the ledger: {left:?} (files {files:?})"
    );
    let kept: String = sqlx::query_scalar(
        "SELECT d.content FROM documents d JOIN postings p ON p.seq = d.seq WHERE p.id = 'kept'",
    )
    .fetch_one(&ledger)
    .await
    .expect("the kept document");
    assert_eq!(kept, document("Vq3Bliv3"));
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&ledger)
        .await
        .expect("integrity check");
    assert_eq!(integrity, "ok");
}

/// The files of the ledger's WAL (`*.db-wal`) that hold one of `needles`.
fn wal_holding(dir: &std::path::Path, needles: &[&str]) -> Vec<String> {
    files_holding(dir, needles)
        .into_iter()
        .filter(|hit| {
            hit.split(':')
                .next()
                .is_some_and(|f| f.ends_with(".db-wal"))
        })
        .collect()
}

/// Read transactions on the ledger, two at a time and overlapping, as
/// operators' commands and EURES's calls to the Input API make them: at
/// every moment one holds a snapshot older than the newest commit.
fn overlapping_readers(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2u64)
        .map(|r| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                use sqlx::Connection;
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("reader");
                tokio::time::sleep(Duration::from_millis(10 * r)).await;
                for _ in 0..20_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let mut tx = conn.begin().await.expect("begin");
                    let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM postings")
                        .fetch_one(&mut *tx)
                        .await
                        .expect("read");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    tx.commit().await.expect("end");
                }
            })
        })
        .collect()
}

/// Erased content leaves the WAL within 60 s while the worker keeps
/// writing (SPEC 6). Old frames stay in a WAL file after a checkpoint has
/// copied them, until the file is emptied or they are overwritten, and
/// emptying it needs a moment without a writer or an older reader. Here a
/// steady stream of edits keeps the worker writing and readers keep
/// reading, from before the deletion to the end of the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_content_leaves_the_wal_within_60_s_under_sustained_writes() {
    const BOUND: Duration = Duration::from_secs(60);
    const POSTINGS: u64 = 200;
    let env = Env::start().await;
    let marker = "Xw9Slettet";
    let id = |i: u64| sample_posting(i)["id"].as_str().unwrap().to_owned();
    let mut erased = sample_posting(1);
    erased["title"] = format!("Unika stilling {marker}").into();
    env.jobag.upsert(erased);
    for i in 2..=POSTINGS {
        env.jobag.upsert(sample_posting(i));
    }
    let token = env.dir.path().join("input-api.token");
    common::write_secret(&token, "input-api-Sekret-under-skrivning-0123456789");
    let mut agent = env.agent(
        "busy",
        "info",
        &format!(
            "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n\
             [reconcile]\ninterval_s = 0\n",
            token.display()
        ),
    );
    let started = Instant::now();
    while files_holding(env.dir.path(), &[marker]).is_empty() {
        agent.assert_alive();
        assert!(
            started.elapsed() < WAIT,
            "the copy never reached the ledger"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers = overlapping_readers(env.db_url().replace("?mode=rwc", ""), stop.clone());

    // A round of edits between looks at the WAL, for as long as the test
    // runs; the posting to be deleted is edited too until it is.
    let mut round = 0u64;
    let mut edit_round = |jobag: &eures_sync_sims::jobag::JobagSim, first: u64| {
        round += 1;
        for i in first..=POSTINGS {
            let mut p = editable(jobag, &id(i));
            p["title"] = if i == 1 {
                format!("Unika stilling {marker} runde {round}")
            } else {
                format!("Redigeret stilling {i} runde {round}")
            }
            .into();
            jobag.upsert(p);
        }
    };
    let warm_up = Instant::now();
    while wal_holding(env.dir.path(), &[marker]).is_empty()
        || warm_up.elapsed() < Duration::from_secs(1)
    {
        agent.assert_alive();
        assert!(warm_up.elapsed() < WAIT, "the edits never reached the WAL");
        edit_round(&env.jobag, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    env.jobag.delete(&id(1));
    let deleted = Instant::now();
    let mut left = wal_holding(env.dir.path(), &[marker]);
    while !left.is_empty() && deleted.elapsed() < BOUND {
        agent.assert_alive();
        edit_round(&env.jobag, 2);
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = wal_holding(env.dir.path(), &[marker]);
    }
    let took = deleted.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader");
    }
    eprintln!(
        "erased content left the WAL {took:?} after the deletion ({round} rounds of edits to {} \
         postings)",
        POSTINGS - 1
    );
    assert!(
        left.is_empty(),
        "erased content still in the WAL {took:?} after the deletion: {left:?}"
    );
    let ledger = sqlx::SqlitePool::connect(&env.db_url())
        .await
        .expect("ledger");
    let version: i64 = sqlx::query_scalar("SELECT source_version FROM postings WHERE id = $1")
        .bind(id(2))
        .fetch_one(&ledger)
        .await
        .expect("posting 2");
    assert!(
        version > 2,
        "the edits did not reach the ledger meanwhile (version {version})"
    );
    agent.stop().await;
}

/// A ledger folder that group or others may look into (made by hand, or
/// by an older agent, with the usual umask) is narrowed to 0700 at the
/// first command, and a ledger file or WAL others could read to 0600; a
/// folder shared with other users (sticky, or writable by them) is refused
/// in one line that says why, and nothing is created in it.
#[test]
fn the_ledger_folder_and_files_become_the_owners_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("data");
    std::fs::create_dir(&folder).expect("folder");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}?mode=rwc\"\n",
            folder.join("ledger.db").display()
        ),
    )
    .expect("config");
    let out = common::agent::cli(&config, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o7777)
            .ok()
    };
    assert_eq!(mode(&folder), Some(0o700), "the folder");
    assert_eq!(mode(&folder.join("ledger.db")), Some(0o600));

    // Files others could read, as a copy made with the usual umask leaves
    // them, and a folder opened up again.
    for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let path = folder.join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let out = common::agent::cli(&config, &["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&folder), Some(0o700), "the folder, again");
    for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let m = mode(&folder.join(name));
        assert!(matches!(m, None | Some(0o600)), "{name}: {m:?}");
    }

    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("folder");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}?mode=rwc\"\n",
            shared.join("ledger.db").display()
        ),
    )
    .expect("config");
    let out = common::agent::cli(&config, &["migrate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("shared with other users (mode 1777)"),
        "{stderr}"
    );
    assert_eq!(
        mode(&shared),
        Some(0o1777),
        "a shared folder is left as it is"
    );
    assert!(
        !shared.join("ledger.db").exists(),
        "a ledger was created there"
    );
}
