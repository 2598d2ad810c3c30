//! The database URL, read once: which database it names, and whether a
//! SQLite URL names a file at all. Every choice between the two databases
//! (opening a store, the Input API's view, the worker's lease owner, the
//! backup, the one-worker file lock) asks [`DatabaseUrl`] rather than
//! looking at the text itself.

use super::types::{Result, StoreError};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:`: the embedded ledger, one worker. `in_memory` when it names
    /// no file (`:memory:`, `mode=memory`).
    Sqlite { in_memory: bool },
    /// `postgres:` or `postgresql:`: the shared ledger.
    Postgres,
}

impl DatabaseUrl {
    /// The schemes a ledger URL may start with, as messages name them.
    pub const SCHEMES: &str = "sqlite: or postgres:";

    /// Reads the scheme of `url`; anything but SQLite or PostgreSQL is an
    /// error saying what `database.url` must be.
    pub fn parse(url: &str) -> Result<DatabaseUrl> {
        if url.starts_with("sqlite:") {
            Ok(DatabaseUrl::Sqlite {
                in_memory: url.contains(":memory:") || url.contains("mode=memory"),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(DatabaseUrl::Postgres)
        } else {
            Err(StoreError::Url(format!(
                "must start with {}",
                DatabaseUrl::SCHEMES
            )))
        }
    }

    /// Whether `url` names a SQLite ledger (a file or in memory).
    pub fn is_sqlite(url: &str) -> bool {
        matches!(DatabaseUrl::parse(url), Ok(DatabaseUrl::Sqlite { .. }))
    }
}

/// A database URL fit for messages: any password, in the user part or in
/// the query (`?password=`, or any parameter naming one), replaced by `***`.
pub fn display_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(an unreadable database URL)".to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(key, _)| names_a_password(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if names_a_password(&key) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Whether a URL carries a password: in its user part or as a query
/// parameter (PostgreSQL's `?password=`).
pub fn holds_password(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|parsed| {
        parsed.password().is_some() || parsed.query_pairs().any(|(key, _)| names_a_password(&key))
    })
}

fn names_a_password(key: &str) -> bool {
    key.to_ascii_lowercase().contains("password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_for_messages_never_carries_the_password() {
        assert_eq!(
            display_url("postgres://eures:Sekret-Pw-1@db.example:6432/ledger?sslmode=verify-full"),
            "postgres://eures:***@db.example:6432/ledger?sslmode=verify-full"
        );
        assert_eq!(
            display_url("postgres://eures@db.example/ledger"),
            "postgres://eures@db.example/ledger"
        );
        assert_eq!(
            display_url("sqlite://data/eures-sync.db?mode=rwc"),
            "sqlite://data/eures-sync.db?mode=rwc"
        );
        assert!(!display_url("postgres://a:b c@/x").contains("b c"));
        assert_eq!(
            display_url("postgres://eures@db/ledger?password=Sekret-Pw-2&sslmode=verify-full"),
            "postgres://eures@db/ledger?password=***&sslmode=verify-full"
        );
        assert!(
            !display_url("postgres://u:Sekret-Pw-3@db/l?PassWord=Sekret-Pw-4").contains("Sekret")
        );
        assert!(holds_password("postgres://u:p@db/l"));
        assert!(holds_password("postgres://u@db/l?password=p"));
        assert!(!holds_password("postgres://u@db/l?sslmode=require"));
        assert!(!holds_password("sqlite://data/l.db?mode=rwc"));
    }

    #[test]
    fn the_scheme_names_the_database() {
        let parse = |url| DatabaseUrl::parse(url).ok();
        let sqlite = |in_memory| Some(DatabaseUrl::Sqlite { in_memory });
        assert_eq!(parse("sqlite://data/l.db?mode=rwc"), sqlite(false));
        assert_eq!(parse("sqlite::memory:"), sqlite(true));
        assert_eq!(parse("sqlite://l.db?mode=memory"), sqlite(true));
        assert_eq!(
            parse("postgres://u@127.0.0.1/x"),
            Some(DatabaseUrl::Postgres)
        );
        assert_eq!(
            parse("postgresql://u@127.0.0.1/x"),
            Some(DatabaseUrl::Postgres)
        );
        let e = DatabaseUrl::parse("mysql://u@h/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "database.url: must start with sqlite: or postgres:"
        );
        assert!(DatabaseUrl::is_sqlite("sqlite:l.db"));
        assert!(!DatabaseUrl::is_sqlite("postgres://h/x"));
        assert!(!DatabaseUrl::is_sqlite(" sqlite:l.db"));
    }
}
