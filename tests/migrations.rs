//! A ledger written by an older agent survives the migrations that give
//! every record a key of its own (SQLite 0005, PostgreSQL 0006) and move
//! documents out of the records (SQLite 0006, PostgreSQL 0007): the
//! records are intact, each has a distinct key, a record written after the
//! migration gets a key no other record has, and a document waiting to be
//! delivered is still delivered.

mod common;

use common::PgDb;
use std::time::Duration;

use eures_sync::domain::ledger::{Content, DesiredState};
use eures_sync::store::{self, Store};

/// The columns a record needs, for a record that wants nothing on EURES.
const INSERT_OLD: &str = "INSERT INTO postings (id, source_version, desired_present, \
     absent_reason, delivered_state, next_attempt_at_ms, state, last_change_ms, source_seen_run) \
     VALUES ($1, $2, $3, 'deleted', 'absent', 0, 'absent', 1, 7)";
/// A record whose creation is due, its document inline as older agents kept it.
const INSERT_OLD_DUE: &str = "INSERT INTO postings (id, source_version, desired_present, \
     desired_hash, desired_content, publication_end_ms, delivered_state, next_attempt_at_ms, \
     state, last_change_ms, due_op, due_rank, source_seen_run) \
     VALUES ($1, $2, $3, 'h', '<doc>c</doc>', 4102444800000, 'absent', 0, 'pending', 1, \
     'create', 1, 7)";
const INSERT_NEW: &str = "INSERT INTO postings (id, source_version, desired_present, \
     absent_reason, delivered_state, next_attempt_at_ms, state, last_change_ms) \
     VALUES ('d', 9, $1, 'deleted', 'absent', 0, 'absent', 1)";

/// Checks the migrated ledger through the store; returns the keys of
/// `a`, `c` and the record inserted after the migration.
async fn keys_after_migration(store: &dyn Store, insert_new: impl AsyncFnOnce()) -> [i64; 3] {
    let a = store.get("a").await.expect("read a").expect("a kept");
    assert_eq!(a.source_version, 2);
    assert!(store.get("b").await.expect("read b").is_none());
    let known = store
        .known_versions(&["a", "b", "c"])
        .await
        .expect("known versions");
    assert_eq!(known.len(), 2, "{known:?}");
    assert_eq!(known["c"].version, 5);
    let c = store.get("c").await.expect("read c").expect("c kept");
    assert!(
        matches!(
            c.desired,
            DesiredState::Present {
                content: Some(Content::Stored),
                ..
            }
        ),
        "{c:?}"
    );
    let claimed = store
        .claim("w", 10, i64::MAX / 2, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].content.as_deref(), Some("<doc>c</doc>"));
    insert_new().await;
    let d = store.known_versions(&["d"]).await.expect("known d")["d"];
    let keys = [known["a"].key, known["c"].key, d.key];
    assert!(
        keys[0] != keys[1] && keys[2] != keys[0] && keys[2] != keys[1],
        "{keys:?}"
    );
    keys
}

#[tokio::test]
async fn an_older_sqlite_ledger_keeps_its_records_and_rowids_become_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let old = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate!("migrations/sqlite")
        .run_to(4, &old)
        .await
        .unwrap();
    for (id, version) in [("a", 2), ("b", 3), ("c", 5)] {
        sqlx::query(if id == "c" {
            INSERT_OLD_DUE
        } else {
            INSERT_OLD
        })
        .bind(id)
        .bind(version)
        .bind(id == "c")
        .execute(&old)
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM postings WHERE id = 'b'")
        .execute(&old)
        .await
        .unwrap();
    old.close().await;

    let store = store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let keys = keys_after_migration(store.as_ref(), async || {
        sqlx::query(INSERT_NEW)
            .bind(false)
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
    // The old rowids, gap and all; the next record after the highest.
    assert_eq!(keys, [1, 3, 4]);
    let stamps: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_table_info('postings') WHERE name LIKE '%seen_run'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stamps, 0, "the stamp columns are gone");
    let inline: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_table_info('postings') WHERE name = 'desired_content'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(inline, 0, "documents are no longer kept in the records");
}

#[tokio::test]
async fn an_older_postgres_ledger_keeps_its_records_and_each_gets_a_key() {
    let db = PgDb::create().await;
    let old = db.pool().await;
    sqlx::migrate!("migrations/postgres")
        .run_to(5, &old)
        .await
        .unwrap();
    for (id, version) in [("a", 2), ("b", 3), ("c", 5)] {
        sqlx::query(if id == "c" {
            INSERT_OLD_DUE
        } else {
            INSERT_OLD
        })
        .bind(id)
        .bind(version as i64)
        .bind(id == "c")
        .execute(&old)
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM postings WHERE id = 'b'")
        .execute(&old)
        .await
        .unwrap();

    let store = store::connect(&db.url()).await.unwrap();
    store.migrate().await.unwrap();
    keys_after_migration(store.as_ref(), async || {
        sqlx::query(INSERT_NEW)
            .bind(false)
            .execute(&old)
            .await
            .unwrap();
    })
    .await;
    let stamps: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.columns \
         WHERE table_name = 'postings' AND column_name LIKE '%seen_run'",
    )
    .fetch_one(&old)
    .await
    .unwrap();
    assert_eq!(stamps, 0, "the stamp columns are gone");
    let inline: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.columns \
         WHERE table_name = 'postings' AND column_name = 'desired_content'",
    )
    .fetch_one(&old)
    .await
    .unwrap();
    assert_eq!(inline, 0, "documents are no longer kept in the records");
    old.close().await;
}
