//! `eures-sync backup`: a copy of the SQLite ledger taken by the real binary
//! while a worker (the real binary) writes to it, what the copy holds, and a
//! restore followed by `reconcile`, as docs/runbook.md tells an operator.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::agent::cli;
use common::{Env, editable};
use eures_sync::domain::ledger::Entry;
use eures_sync::store::Store;
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `backup` prints `... N postings, M migrations, ...`: N.
fn backup(config: &Path, dest: &Path) -> u64 {
    let out = cli(config, &["backup", dest.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    let line = String::from_utf8(out.stdout).expect("utf-8");
    assert!(line.ends_with("integrity ok\n"), "{line}");
    line.split(", ")
        .find_map(|part| {
            part.split_once(": ")
                .map_or(part, |(_, p)| p)
                .strip_suffix(" postings")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no postings count in {line:?}"))
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rw", path.display())
}

async fn open(path: &Path) -> Arc<dyn Store> {
    eures_sync::store::connect(&sqlite_url(path))
        .await
        .expect("open a ledger")
}

/// Every record of a ledger, by id.
async fn records(store: &dyn Store) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let ids = store
            .ids_page(None, after.as_deref(), 500)
            .await
            .expect("ids");
        let Some(last) = ids.last().cloned() else {
            return out;
        };
        for id in &ids {
            out.push(store.get(id).await.expect("get").expect("listed record"));
        }
        after = Some(last);
    }
    panic!("more than 500,000 records");
}

/// Asserts two ledgers hold the same records, naming the first difference.
fn same_records(copy: &[Entry], live: &[Entry]) {
    assert_eq!(copy.len(), live.len(), "record counts");
    if let Some((c, l)) = copy.iter().zip(live).find(|(c, l)| c != l) {
        panic!("the copy differs from the ledger:\ncopy {c:?}\nlive {l:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_live_ledger_holds_its_records_and_restores_with_a_reconcile() {
    let env = Env::start().await;
    // Slow answers keep the backlog busy for a few seconds (400 postings,
    // 16 in flight, 100 ms each) so the first backup meets it mid-way.
    env.eures.set_faults(Faults {
        latency: Duration::from_millis(100),
        ..Faults::none()
    });
    for i in 0..400 {
        env.jobag.upsert(sample_posting(i));
    }
    let worker = env.agent("before", "warn", "");
    let config = env.dir.path().join("before.toml");
    let ledger = env.dir.path().join("ledger.db");

    // 1. While the worker ingests and delivers the backlog.
    common::eventually(WAIT, "a first delivery", || !env.eures.is_empty()).await;
    let busy = env.dir.path().join("busy.db");
    let counted = backup(&config, &busy);
    let copy = open(&busy).await;
    let copied = records(copy.as_ref()).await;
    assert_eq!(
        copied.len() as u64,
        counted,
        "the count printed is the copy's"
    );
    let s = copy.summary(0).await.expect("summary");
    assert!(
        s.present < 400,
        "the backup was meant to be taken mid-backlog: {s:?}"
    );
    drop(copy);
    env.eures.set_faults(Faults::none());

    // 2. Once EURES converged, with the worker still running (it writes the
    //    last poll time every 50 ms): the copy holds the same records. A
    //    reader (an operator's `status`, say) holds an old snapshot open
    //    meanwhile, so the newest commits stay in the WAL, not yet copied
    //    into the database file: the copy must hold them all the same.
    env.converged(WAIT).await;
    let mut reader = {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&sqlite_url(&ledger))
            .await
            .expect("reader")
    };
    sqlx::query("BEGIN")
        .execute(&mut reader)
        .await
        .expect("begin");
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM postings")
        .fetch_one(&mut reader)
        .await
        .expect("a snapshot");
    let mut p = editable(&env.jobag, &sample_id(3));
    p["title"] = json!("Edited while a reader held a snapshot");
    env.jobag.upsert(p);
    env.converged(WAIT).await;
    let quiet = env.dir.path().join("quiet.db");
    assert_eq!(backup(&config, &quiet), 400);
    sqlx::query("ROLLBACK")
        .execute(&mut reader)
        .await
        .expect("rollback");
    drop(reader);
    let live = open(&ledger).await;
    let live_records = records(live.as_ref()).await;
    assert_eq!(live_records.len(), 400);
    let copy = open(&quiet).await;
    same_records(&records(copy.as_ref()).await, &live_records);
    drop(copy);
    // The busy copy is a consistent earlier state: nothing in it is newer.
    for record in &copied {
        let now = live_records
            .iter()
            .find(|r| r.id == record.id)
            .expect("a record of the copy is in the ledger");
        assert!(record.source_version <= now.source_version, "{}", record.id);
    }

    // 3. Life goes on after the backup: an edit, a deletion, a new posting.
    let mut p = editable(&env.jobag, &sample_id(1));
    p["title"] = json!("Edited after the backup");
    env.jobag.upsert(p);
    env.jobag.delete(&sample_id(2));
    env.jobag.upsert(sample_posting(400));
    env.settled(WAIT).await;
    worker.stop().await;
    drop(live);
    // The restored ledger cannot know what EURES was sent after the copy
    // (a deletion with the version it knows is all it can send): its
    // requests are judged on their own.
    env.eures.clear_requests();

    // 4. The ledger is lost; the feed meanwhile compacted what the backup
    //    had not seen (the deletion among it). Restore the copy, start the
    //    worker, reconcile.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(PathBuf::from(format!("{}{suffix}", ledger.display())));
    }
    std::fs::copy(&quiet, &ledger).expect("restore the copy");
    env.jobag.forget_before(env.jobag.log_len());
    let worker = env.agent("after", "warn", "");
    let config = env.dir.path().join("after.toml");
    let out = cli(&config, &["reconcile"]);
    assert!(out.status.success(), "reconcile failed: {}", stderr(&out));
    env.converged(WAIT).await;
    assert!(env.eures.get(&sample_id(2)).is_none(), "the deletion holds");
    env.settled(WAIT).await;
    worker.stop().await;
}

#[tokio::test]
async fn backup_refuses_what_it_cannot_do_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, url: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("[database]\nurl = \"{url}\"\n")).expect("config");
        path
    };
    let one_line = |out: &Output| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        let err = stderr(out);
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    };

    // PostgreSQL: pg_dump, with the server named and the password (given
    // in the environment, where it may be) not.
    let pg = write("pg.toml", "postgres://eures@db.example:6432/ledger");
    let out = common::agent::eures_sync()
        .args(["backup", "x.dump", "--config"])
        .arg(&pg)
        .env(
            "EURES_SYNC__DATABASE__URL",
            "postgres://eures:Pw-Sekret-91@db.example:6432/ledger?max_connections=4",
        )
        .output()
        .expect("run");
    let err = one_line(&out);
    assert!(err.contains("pg_dump"), "{err}");
    assert!(err.contains("db.example:6432/ledger"), "{err}");
    assert!(!err.contains("Pw-Sekret-91"), "{err}");

    // No ledger: nothing is created.
    let missing = dir.path().join("missing.db");
    let none = write(
        "none.toml",
        &sqlite_url(&missing).replace("mode=rw", "mode=rwc"),
    );
    let err = one_line(&cli(&none, &["backup", "x.db"]));
    assert!(err.contains("no ledger at"), "{err}");
    assert!(!missing.exists(), "the backup created a ledger");

    // An existing destination is never overwritten.
    let ledger = dir.path().join("ledger.db");
    drop(open(&ledger).await);
    let config = write("ledger.toml", &sqlite_url(&ledger));
    let taken = dir.path().join("taken.db");
    std::fs::write(&taken, "precious").expect("file");
    let err = one_line(&cli(&config, &["backup", taken.to_str().expect("utf-8")]));
    assert!(err.contains("exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&taken).expect("file"), "precious");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
