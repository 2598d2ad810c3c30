#!/usr/bin/env python3
"""Builds a SQLite ledger as an agent before migration 0006 left it: the
schema of migrations 0001-0005 (recorded in `_sqlx_migrations` as sqlx
would), N delivered records whose documents were kept inline and then
erased by setting the column to NULL (the bytes stay in the pages' free
space). Used to time the upgrade's rewrite of the file:

    bench/old-sqlite-ledger.py /tmp/old.db 1000000 [DOCUMENT_BYTES]
    time eures-sync migrate --config <a config whose database.url names it>
"""

import hashlib
import os
import random
import sqlite3
import sys

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "migrations", "sqlite")
UP_TO = 5
# What each erased document took; the rewrite copies only live rows, so
# smaller documents time it alike with a smaller file (3,500 bytes: about
# 4.5 GB for a million records).
DOCUMENT_BYTES = 3_500
BATCH = 10_000


def main() -> None:
    path, count = sys.argv[1], int(sys.argv[2])
    document_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else DOCUMENT_BYTES
    if os.path.exists(path):
        sys.exit(f"{path} exists")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    # What older agents ran with (some distributions build SQLite with it on).
    db.execute("PRAGMA secure_delete = OFF")
    db.execute(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, "
        "installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, "
        "checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)"
    )
    for name in sorted(os.listdir(MIGRATIONS)):
        version = int(name.split("_", 1)[0])
        if version > UP_TO:
            continue
        with open(os.path.join(MIGRATIONS, name), encoding="utf-8") as f:
            sql = f.read()
        db.executescript(sql)
        description = name.split("_", 1)[1].removesuffix(".sql").replace("_", " ")
        db.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) "
            "VALUES (?, ?, TRUE, ?, 0)",
            (version, description, hashlib.sha384(sql.encode()).digest()),
        )
    rng = random.Random(1)
    words = [f"ord{i}" for i in range(5_000)]

    # A thousand bodies reused: SQLite does not compress, only sizes matter.
    bodies = [" ".join(rng.choice(words) for _ in range(document_bytes // 7)) for _ in range(1_000)]

    def document(i: int) -> str:
        return f"<PositionOpening><Id>{i}</Id><Body>{bodies[i % len(bodies)]}</Body></PositionOpening>"

    insert = (
        "INSERT INTO postings (id, source_version, desired_present, desired_hash, desired_content, "
        "publication_end_ms, delivered_state, delivered_version, delivered_hash, "
        "next_attempt_at_ms, state, last_change_ms) "
        "VALUES (?, 1, 1, ?, ?, 4102444800000, 'present', 1, ?, 0, 'delivered', 1)"
    )
    for start in range(0, count, BATCH):
        db.execute("BEGIN")
        rows = []
        for i in range(start, min(start + BATCH, count)):
            h = hashlib.sha256(str(i).encode()).hexdigest()
            rows.append((f"00000000-0000-4000-8000-{i:012d}", h, document(i), h))
        db.executemany(insert, rows)
        db.execute("COMMIT")
    # Erased once EURES acknowledged each (what the older agent did).
    db.execute("UPDATE postings SET desired_content = NULL")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()


if __name__ == "__main__":
    main()
