//! `eures-sync backup PATH`: a consistent copy of the SQLite ledger while a
//! worker runs; for PostgreSQL, one line saying how to use `pg_dump`.

use std::path::Path;

use crate::config::Config;

pub async fn run(config: &Config, path: &Path) -> anyhow::Result<()> {
    let url = config.database.url.trim();
    if !crate::store::DatabaseUrl::is_sqlite(url) {
        anyhow::bail!("{}", pg_dump_advice(url));
    }
    let report = crate::store::backup::backup_sqlite(url, path)
        .await
        .map_err(|e| anyhow::anyhow!("backup: {e}"))?;
    println!(
        "backup written to {}: {} postings, {} migrations, {} bytes, integrity ok",
        path.display(),
        report.postings,
        report.migrations,
        report.bytes
    );
    Ok(())
}

/// The refusal for a PostgreSQL ledger: where it is and the `pg_dump` line
/// that copies it, without the password (libpq reads it from `PGPASSWORD`
/// or `~/.pgpass`; our own pool settings in the URL's query are no libpq
/// parameters, so the URL itself cannot be handed to `pg_dump`).
fn pg_dump_advice(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return "backup: the ledger is not SQLite: back a PostgreSQL ledger up with pg_dump \
                (docs/runbook.md, \"Backup and restore\")"
            .to_owned();
    };
    let host = parsed.host_str().unwrap_or("localhost");
    let port = parsed.port().unwrap_or(5432);
    let database = parsed.path().trim_start_matches('/');
    let mut command = format!("pg_dump --format=custom --file=PATH --host={host} --port={port}");
    if !parsed.username().is_empty() {
        command.push_str(&format!(" --username={}", parsed.username()));
    }
    command.push(' ');
    command.push_str(database);
    format!(
        "backup: the ledger is on PostgreSQL ({host}:{port}/{database}): \
         back it up with `{command}` (docs/runbook.md, \"Backup and restore\")"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pg_dump_advice_names_the_server_and_never_the_password() {
        let line = pg_dump_advice(
            "postgres://eures:Sekret-Pw-1@db.example:6432/ledger?max_connections=16",
        );
        assert_eq!(
            line,
            "backup: the ledger is on PostgreSQL (db.example:6432/ledger): back it up with \
             `pg_dump --format=custom --file=PATH --host=db.example --port=6432 \
             --username=eures ledger` (docs/runbook.md, \"Backup and restore\")"
        );
        assert!(!line.contains("Sekret"));
        assert!(!line.contains("max_connections"));
        let line = pg_dump_advice("postgresql://db/eures");
        assert!(line.contains("(db:5432/eures)"), "{line}");
        assert!(!line.contains("--username"), "{line}");
    }
}
