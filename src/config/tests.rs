//! The configuration's own tests: defaults, layering, and every refusal's
//! one-line text.

use super::*;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Environment-like overrides built from pairs, parsed the way figment's
/// `Env::prefixed(ENV_PREFIX).split("__")` parses the process environment
/// (prefix stripped, lowercased, `__` nests, values parsed by
/// `Value::from_str`), so tests never mutate the process environment.
struct FakeEnv(Vec<(&'static str, &'static str)>);

impl Provider for FakeEnv {
    fn metadata(&self) -> Metadata {
        // What the real provider says, so errors word it the same way.
        Env::prefixed(ENV_PREFIX).split("__").metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (k, v) in &self.0 {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            let value = Value::from_str(v).map_err(|e| figment::Error::from(e.to_string()))?;
            let nested = figment::util::nest(&key, value)
                .into_dict()
                .ok_or_else(|| figment::Error::from("bad key".to_owned()))?;
            dict = merge_dicts(dict, nested);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn merge_dicts(mut a: Dict, b: Dict) -> Dict {
    for (k, v) in b {
        match (a.remove(&k), v) {
            (Some(Value::Dict(_, da)), Value::Dict(tag, db)) => {
                a.insert(k, Value::Dict(tag, merge_dicts(da, db)));
            }
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
    a
}

fn from_toml(toml: &str) -> Result<Config, ConfigError> {
    from_toml_env(toml, vec![])
}

fn from_toml_env(
    toml: &str,
    env: Vec<(&'static str, &'static str)>,
) -> Result<Config, ConfigError> {
    Config::load_from(
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .merge(FakeEnv(env)),
    )
}

fn err_of(toml: &str) -> String {
    match from_toml(toml) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_gives_the_spec_defaults() {
    let c = from_toml("").unwrap();
    assert_eq!(c.database.url, "sqlite://data/eures-sync.db?mode=rwc");
    assert_eq!(c.jobag.base_url, "http://127.0.0.1:8081");
    assert_eq!(c.jobag.token_file, None);
    assert_eq!(c.jobag.poll_interval, Duration::from_millis(1000));
    assert_eq!(c.jobag.page_size, 500);
    assert_eq!(c.eures.mode, Mode::Push);
    assert_eq!(c.eures.base_url, "http://127.0.0.1:8082");
    assert_eq!(c.eures.token_file, None);
    assert_eq!(c.eures.party_id, "STAR-DK");
    assert_eq!(c.eures.concurrency, 32);
    assert_eq!(c.eures.request_timeout, Duration::from_millis(10_000));
    assert_eq!(c.eures.max_attempts, 20);
    assert_eq!(c.eures.input_api_token_file, None);
    assert_eq!(c.reconcile.interval, Some(Duration::from_secs(3600)));
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(c.http.input_api_listen, None);
    assert_eq!(c.retention.audit_days, 400);
    assert_eq!(c.log.format, LogFormat::Auto);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.tls.extra_ca_file, None);
    assert_eq!(c.jobag.nace_revision, NaceRevision::Rev2);
    assert_eq!(c.jobag.posting_url_template, None);
    assert_eq!(c, Config::default());
}

#[test]
fn committed_default_file_matches_the_built_in_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
    let c = Config::load_from(Config::figment(Some(&path), FakeEnv(vec![])).unwrap()).unwrap();
    assert_eq!(c, Config::default());
    // Through the real environment provider too (the test process sets no
    // EURES_SYNC__ variable).
    if !std::env::vars().any(|(k, _)| k.starts_with(ENV_PREFIX)) {
        assert_eq!(Config::load(Some(&path)).unwrap(), Config::default());
    }
    // Every key is written out in the file, not only defaulted.
    let text = std::fs::read_to_string(&path).unwrap();
    let table: toml_like::Table = toml_like::parse(&text);
    let defaults = serde_json::to_value(Config::default()).unwrap();
    for (section, keys) in defaults.as_object().unwrap() {
        for key in keys.as_object().unwrap().keys() {
            assert!(
                table.contains(&(section.clone(), key.clone())),
                "{section}.{key} missing from {DEFAULT_CONFIG_PATH}"
            );
        }
    }
}

/// Just enough of a TOML reader to list `[section]` / `key =` pairs.
mod toml_like {
    pub type Table = std::collections::HashSet<(String, String)>;
    pub fn parse(text: &str) -> Table {
        let mut section = String::new();
        let mut out = Table::new();
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim().to_owned();
            } else if let Some((k, _)) = line.split_once('=')
                && !line.starts_with('#')
            {
                out.insert((section.clone(), k.trim().to_owned()));
            }
        }
        out
    }
}

#[test]
fn toml_overrides_defaults_key_by_key() {
    let c = from_toml(
        r#"
        [eures]
        mode = "pull"
        concurrency = 8
        input_api_token_file = "/run/secrets/input"
        [http]
        listen = "0.0.0.0:9000"
        [log]
        format = "json"
        "#,
    )
    .unwrap();
    assert_eq!(c.eures.mode, Mode::Pull);
    assert_eq!(c.eures.concurrency, 8);
    assert_eq!(c.eures.party_id, "STAR-DK", "untouched keys keep defaults");
    assert_eq!(c.http.listen.port(), 9000);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "info");
}

#[test]
fn environment_overrides_the_file() {
    let c = from_toml_env(
        "[jobag]\nbase_url = \"http://file:1\"\npage_size = 10\n",
        vec![
            (
                "EURES_SYNC__JOBAG__BASE_URL",
                "https://jobag.example:8443/root",
            ),
            ("EURES_SYNC__EURES__CONCURRENCY", "64"),
            ("EURES_SYNC__EURES__MODE", "pull"),
            ("EURES_SYNC__EURES__INPUT_API_TOKEN_FILE", "/tmp/t"),
            ("EURES_SYNC__HTTP__LISTEN", "127.0.0.1:0"),
            ("EURES_SYNC__RECONCILE__INTERVAL_S", "0"),
            ("EURES_SYNC__DATABASE__URL", "postgres://u@db/eures"),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.jobag.base_url, "https://jobag.example:8443/root");
    assert_eq!(c.jobag.page_size, 10, "file value kept");
    assert_eq!(c.eures.concurrency, 64);
    assert_eq!(c.eures.mode, Mode::Pull);
    assert_eq!(c.http.listen.port(), 0);
    assert_eq!(c.reconcile.interval, None);
    assert_eq!(c.database.url, "postgres://u@db/eures");
}

#[test]
fn numeric_looking_env_value_for_a_string_key_is_accepted() {
    let c = from_toml_env("", vec![("EURES_SYNC__EURES__PARTY_ID", "12345")]).unwrap();
    assert_eq!(c.eures.party_id, "12345");
}

#[test]
fn wrong_type_names_the_key() {
    let e = from_toml_env("", vec![("EURES_SYNC__EURES__CONCURRENCY", "many")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("eures.concurrency: "), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let e = err_of("[eures]\nmode = \"sideways\"\n");
    assert!(e.starts_with("eures.mode: "), "{e}");
    let e = err_of("[http]\nlisten = \"nowhere\"\n");
    assert!(e.starts_with("http.listen: "), "{e}");
}

#[test]
fn toml_syntax_error_is_one_line() {
    let e = err_of("[eures\nconcurrency = = 3\n");
    assert!(!e.contains('\n'), "{e}");
    assert!(!e.contains("[eures"), "{e}");
}

#[test]
fn every_refusal_names_the_key_and_where_it_was_written() {
    let cases = [
        (
            "[database]\nurl = \"mysql://x\"",
            "database.url: must start with sqlite: or postgres:",
        ),
        // The store reads the URL as written; one it would refuse later is
        // refused here, at the key.
        (
            "[database]\nurl = \" sqlite://l.db\"",
            "database.url: must start with sqlite: or postgres:",
        ),
        (
            "[jobag]\nbase_url = \"not a url\"",
            "jobag.base_url: not a URL",
        ),
        (
            "[jobag]\nbase_url = \"ftp://x\"",
            "jobag.base_url: must be an http or https URL",
        ),
        (
            "[jobag]\npoll_interval_ms = 0",
            "jobag.poll_interval_ms: must be at least 1",
        ),
        ("[jobag]\npage_size = 0", "jobag.page_size: must be 1–5000"),
        (
            "[jobag]\npage_size = 5001",
            "jobag.page_size: must be 1–5000",
        ),
        (
            "[jobag]\nnace_revision = \"3\"",
            "jobag.nace_revision: must be \"2\" or \"2.1\"",
        ),
        (
            "[jobag]\nnace_revision = \"\"",
            "jobag.nace_revision: must be \"2\" or \"2.1\"",
        ),
        (
            "[jobag]\nposting_url_template = \"https://jobnet.example/job\"",
            "jobag.posting_url_template: must contain {id}",
        ),
        (
            "[jobag]\nposting_url_template = \"ftp://jobnet.example/{id}\"",
            "jobag.posting_url_template: must be an http or https URL",
        ),
        (
            "[jobag]\nposting_url_template = \"jobnet/{id}\"",
            "jobag.posting_url_template: not a URL",
        ),
        ("[eures]\nbase_url = \"\"", "eures.base_url: not a URL"),
        (
            "[eures]\nparty_id = \" \"",
            "eures.party_id: must not be empty",
        ),
        (
            "[eures]\nconcurrency = 0",
            "eures.concurrency: must be 1–1024",
        ),
        (
            "[eures]\nconcurrency = 1025",
            "eures.concurrency: must be 1–1024",
        ),
        (
            "[eures]\nrequest_timeout_ms = 0",
            "eures.request_timeout_ms: must be at least 1",
        ),
        (
            "[eures]\nmax_attempts = 0",
            "eures.max_attempts: must be at least 1",
        ),
        (
            "[retention]\naudit_days = 0",
            "retention.audit_days: must be at least 1",
        ),
        (
            "[log]\nlevel = \"\"",
            "log.level: must be a level (trace, debug, info, warn, error, off) or \
             comma-separated target=level directives",
        ),
    ];
    for (toml, want) in cases {
        // Refused as the value is read, so the line also says where it was
        // written.
        assert_eq!(
            err_of(toml),
            format!("{want} (in TOML source string)"),
            "for {toml:?}"
        );
    }
    let e = from_toml_env("", vec![("EURES_SYNC__JOBAG__POLL_INTERVAL_MS", "0")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "jobag.poll_interval_ms: must be at least 1 \
         (environment variable EURES_SYNC__JOBAG__POLL_INTERVAL_MS)"
    );
}

#[test]
fn values_are_read_into_their_types() {
    let c = from_toml_env(
        "[jobag]\ntoken_file = \" /run/secrets/jobag \"\n\
         posting_url_template = \" https://jobnet.example/job/{id} \"\n\
         [eures]\ninput_api_token_file = \"  \"\n\
         [tls]\nextra_ca_file = \"/etc/ca.pem\"\n",
        vec![
            ("EURES_SYNC__JOBAG__POLL_INTERVAL_MS", "250"),
            ("EURES_SYNC__JOBAG__NACE_REVISION", "2.1"),
            ("EURES_SYNC__EURES__REQUEST_TIMEOUT_MS", "1500"),
            ("EURES_SYNC__RECONCILE__INTERVAL_S", "90"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.jobag.token_file,
        Some(PathBuf::from("/run/secrets/jobag"))
    );
    assert_eq!(c.eures.input_api_token_file, None, "blank is none");
    assert_eq!(c.tls.extra_ca_file, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(c.jobag.poll_interval, Duration::from_millis(250));
    assert_eq!(c.eures.request_timeout, Duration::from_millis(1500));
    assert_eq!(c.reconcile.interval, Some(Duration::from_secs(90)));
    assert_eq!(c.jobag.nace_revision, NaceRevision::Rev2_1);
    let settings = c.document_settings();
    assert_eq!(settings.nace_revision, NaceRevision::Rev2_1);
    assert_eq!(
        settings.posting_url_template.as_deref(),
        Some("https://jobnet.example/job/{id}")
    );
    // Written back the way the file spells them, so the defaults layer and
    // a loaded configuration read the same.
    let written = serde_json::to_value(&c).unwrap();
    assert_eq!(written["jobag"]["poll_interval_ms"], 250);
    assert_eq!(written["jobag"]["nace_revision"], "2.1");
    assert_eq!(written["eures"]["request_timeout_ms"], 1500);
    assert_eq!(written["eures"]["input_api_token_file"], "");
    assert_eq!(written["reconcile"]["interval_s"], 90);
    let again = Config::load_from(Figment::from(Serialized::defaults(&c))).unwrap();
    assert_eq!(again, c);
}

#[test]
fn input_api_listen_is_empty_or_an_address_of_its_own() {
    let c = from_toml("[http]\ninput_api_listen = \"0.0.0.0:9465\"").unwrap();
    assert_eq!(
        c.http.input_api_listen,
        Some("0.0.0.0:9465".parse().unwrap())
    );
    let c = from_toml_env(
        "[http]\ninput_api_listen = \"0.0.0.0:9465\"",
        vec![("EURES_SYNC__HTTP__INPUT_API_LISTEN", "\"\"")],
    )
    .unwrap();
    assert_eq!(c.http.input_api_listen, None, "the environment empties it");
    let c = from_toml_env(
        "",
        vec![("EURES_SYNC__HTTP__INPUT_API_LISTEN", "[::1]:9465")],
    )
    .unwrap();
    assert_eq!(c.http.input_api_listen, Some("[::1]:9465".parse().unwrap()));
    let e = err_of("[http]\ninput_api_listen = \"everywhere\"");
    assert!(
        e.starts_with("http.input_api_listen: not a socket address"),
        "{e}"
    );
    assert_eq!(
        err_of("[http]\nlisten = \"127.0.0.1:9464\"\ninput_api_listen = \"127.0.0.1:9464\""),
        "http.input_api_listen: must differ from http.listen (leave it empty to share that address)"
    );
    // Port 0 asks for any free port, twice: two different addresses.
    from_toml("[http]\nlisten = \"127.0.0.1:0\"\ninput_api_listen = \"127.0.0.1:0\"").unwrap();
}

#[test]
fn plain_http_only_to_a_loopback_host() {
    for key in ["jobag", "eures"] {
        for remote in [
            "http://jobag.example",
            "http://10.0.0.1:8080",
            "http://[2001:db8::1]/",
            "http://localhost.example",
            "http://127.0.0.1.example",
        ] {
            assert_eq!(
                err_of(&format!("[{key}]\nbase_url = \"{remote}\"")),
                format!("{key}.base_url: {PLAIN_HTTP_REFUSED} (in TOML source string)"),
                "{remote}"
            );
        }
        for fine in [
            "http://localhost:8081",
            "http://LOCALHOST",
            "http://127.0.0.1:1",
            "http://127.8.9.10:1/root",
            "http://[::1]:8082",
            "http://[::ffff:127.0.0.1]:8082",
            "https://jobag.example",
            "https://10.0.0.1:8443/root",
        ] {
            from_toml(&format!("[{key}]\nbase_url = \"{fine}\""))
                .unwrap_or_else(|e| panic!("{fine}: {e}"));
        }
    }
}

#[test]
fn limits_are_inclusive() {
    let c = from_toml("[jobag]\npage_size = 5000\n[eures]\nconcurrency = 1024\nmax_attempts = 1")
        .unwrap();
    assert_eq!(c.jobag.page_size, 5000);
    assert_eq!(c.eures.concurrency, 1024);
    let c = from_toml("[jobag]\npage_size = 1\n[eures]\nconcurrency = 1").unwrap();
    assert_eq!(c.jobag.page_size, 1);
    from_toml("[database]\nurl = \"postgresql://h/db\"").unwrap();
    from_toml("[database]\nurl = \"sqlite::memory:\"").unwrap();
}

#[test]
fn unknown_keys_and_sections_are_errors_naming_them() {
    let e = err_of("[eures]\nconcurency = 4\n");
    assert!(
        e.starts_with("eures.concurency: unknown key (did you mean `concurrency`?)"),
        "{e}"
    );
    let e = err_of("[databse]\nurl = \"sqlite://x.db\"\n");
    assert!(
        e.starts_with("databse: unknown section (did you mean `database`?)"),
        "{e}"
    );
    let e = err_of("[future]\nx = 2\n");
    assert!(e.starts_with("future: unknown section"), "{e}");
    assert!(!e.contains("did you mean"), "{e}");
    let e = from_toml_env("", vec![("EURES_SYNC__EURES__CONCURENCY", "4")])
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("(environment variable EURES_SYNC__EURES__CONCURENCY)"),
        "{e}"
    );
    let e = from_toml_env("", vec![("EURES_SYNC__DATABSE__URL", "sqlite://x.db")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("databse: unknown section"), "{e}");
    assert!(
        e.ends_with("(environment variable EURES_SYNC__DATABSE__*)"),
        "{e}"
    );
}

#[test]
fn wrong_values_are_described_not_quoted() {
    let e = err_of("[eures]\nconcurrency = \"forty\"\n");
    assert!(
        e.starts_with("eures.concurrency: must be 1–1024 (found text)"),
        "{e}"
    );
    assert!(!e.contains("forty") && !e.contains("usize"), "{e}");
    // A number that does not fit the key's type is out of its range,
    // said as the range, never as the type.
    for (toml, want) in [
        (
            "[eures]\nconcurrency = -1\n",
            "eures.concurrency: must be 1–1024",
        ),
        (
            "[jobag]\npage_size = 99999999999\n",
            "jobag.page_size: must be 1–5000",
        ),
        (
            "[retention]\naudit_days = 1.5\n",
            "retention.audit_days: must be a whole number, at least 1",
        ),
        (
            "[eures]\nmax_attempts = -3\n",
            "eures.max_attempts: must be a whole number, at least 1",
        ),
    ] {
        let e = err_of(toml);
        assert!(e.starts_with(want), "{toml}: {e}");
        for rust in ["u32", "u64", "usize", "i64"] {
            assert!(!e.contains(rust), "{toml}: {e}");
        }
    }
    let e = err_of("[eures]\nmode = \"pul\"\n");
    assert!(
        e.starts_with("eures.mode: unknown choice (did you mean `pull`? one of push, pull)"),
        "{e}"
    );
    let e = err_of("[database]\nurl = [\"postgres://u:hunter2@db/x\"]\n");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn log_level_must_parse_as_levels() {
    for good in ["info", "WARN", "eures_sync=debug,info", "info,sqlx=off"] {
        from_toml(&format!("[log]\nlevel = \"{good}\"\n")).unwrap();
    }
    let e = err_of("[log]\nlevel = \"inof\"\n");
    assert!(e.starts_with("log.level: must be a level"), "{e}");
    assert!(
        e.ends_with("(did you mean `info`?) (in TOML source string)"),
        "{e}"
    );
    for bad in ["", "eures_sync", "eures_sync=loud", "info,,="] {
        let e = err_of(&format!("[log]\nlevel = \"{bad}\"\n"));
        assert!(e.starts_with("log.level: "), "{bad}: {e}");
    }
}

#[test]
fn a_rust_log_is_held_to_the_rules_of_log_level() {
    for good in [
        None,
        Some(""),
        Some("  "),
        Some("debug"),
        Some("eures_sync=debug,warn"),
    ] {
        check_rust_log(good).unwrap();
    }
    for bad in ["inof", "eures_sync", "eures_sync=loud"] {
        let e = check_rust_log(Some(bad)).unwrap_err().to_string();
        assert!(e.starts_with("RUST_LOG: must be a level"), "{bad}: {e}");
    }
}

#[test]
fn explicit_missing_file_is_an_error_default_missing_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = Config::figment(Some(&missing), FakeEnv(vec![])).unwrap_err();
    assert!(matches!(e, ConfigError::FileNotFound { .. }));
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

#[test]
fn explicit_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[eures]\nparty_id = \"X-1\"\n").unwrap();
    let c = Config::load_from(
        Config::figment(
            Some(&path),
            FakeEnv(vec![("EURES_SYNC__EURES__CONCURRENCY", "3")]),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(c.eures.party_id, "X-1");
    assert_eq!(c.eures.concurrency, 3);
}

#[test]
fn error_from_a_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[eures]\nconcurrency = \"x\"\n").unwrap();
    let e = Config::load_from(Config::figment(Some(&path), FakeEnv(vec![])).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("eures.concurrency: "), "{e}");
    assert!(e.contains("bad.toml"), "{e}");
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// A token file as it should be: its owner's only.
fn write_file(dir: &Path, name: &str, content: &str) -> Option<PathBuf> {
    write_file_mode(dir, name, content, 0o600)
}

fn write_file_mode(dir: &Path, name: &str, content: &str, mode: u32) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(content.as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    Some(path)
}

/// An Input API token of the shortest length accepted.
const INPUT_TOKEN: &str = "input-secret-0123456789abcdefghi";

#[test]
fn tokens_are_read_from_files_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.jobag.token_file = write_file(dir.path(), "j", "  jobag-secret\n");
    c.eures.token_file = write_file(dir.path(), "e", "eures-secret\r\n");
    c.eures.input_api_token_file = write_file(dir.path(), "i", &format!("\t{INPUT_TOKEN} "));
    let j = c.token_from(Token::Jobag, &no_env).unwrap().unwrap();
    let e = c.token_from(Token::Eures, &no_env).unwrap().unwrap();
    let i = c.token_from(Token::InputApi, &no_env).unwrap().unwrap();
    assert_eq!(j.expose_secret(), "jobag-secret");
    assert_eq!(e.expose_secret(), "eures-secret");
    assert_eq!(i.expose_secret(), INPUT_TOKEN);
}

#[test]
fn no_file_no_env_means_no_token() {
    let c = Config::default();
    assert!(c.token_from(Token::Jobag, &no_env).unwrap().is_none());
    assert!(c.token_from(Token::Eures, &no_env).unwrap().is_none());
    assert!(c.token_from(Token::InputApi, &no_env).unwrap().is_none());
}

#[test]
fn env_token_wins_over_the_file_and_blank_env_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.eures.token_file = write_file(dir.path(), "e", "from-file");
    let vars: HashMap<&str, &str> = [
        (ENV_EURES_TOKEN, " from-env \n"),
        (ENV_JOBAG_TOKEN, "   "),
        (ENV_INPUT_API_TOKEN, "input-env-0123456789abcdefghijkl"),
    ]
    .into();
    let env = |name: &str| vars.get(name).map(|v| v.to_string());
    let e = c.token_from(Token::Eures, &env).unwrap().unwrap();
    assert_eq!(e.expose_secret(), "from-env");
    assert!(c.token_from(Token::Jobag, &env).unwrap().is_none());
    let i = c.token_from(Token::InputApi, &env).unwrap().unwrap();
    assert_eq!(i.expose_secret(), "input-env-0123456789abcdefghijkl");
}

#[test]
fn token_errors_name_key_and_file_never_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.eures.token_file = Some(dir.path().join("missing"));
    let e = c.token_from(Token::Eures, &no_env).unwrap_err().to_string();
    assert!(e.starts_with("eures.token_file: cannot read "), "{e}");
    assert!(e.contains("missing"), "{e}");

    c.jobag.token_file = write_file(dir.path(), "empty", " \n");
    let e = c.token_from(Token::Jobag, &no_env).unwrap_err().to_string();
    assert!(e.starts_with("jobag.token_file: "), "{e}");
    assert!(e.contains("empty"), "{e}");

    // A directory is unreadable as a file.
    c.eures.input_api_token_file = Some(dir.path().to_owned());
    let e = c
        .token_from(Token::InputApi, &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("eures.input_api_token_file: "), "{e}");
}

#[test]
fn debug_shows_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.eures.token_file = write_file(dir.path(), "e", "super-secret-token");
    let token = c.token_from(Token::Eures, &no_env).unwrap().unwrap();
    let dbg = format!("{c:?} {token:?}");
    assert!(!dbg.contains("super-secret-token"), "{dbg}");
}

#[test]
fn debug_shows_no_database_password() {
    let c = from_toml_env(
        "",
        vec![(
            "EURES_SYNC__DATABASE__URL",
            "postgres://agent:hunter2@db/eures",
        )],
    )
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("postgres://agent:***@db/eures"), "{dbg}");
    assert_eq!(c.database.url, "postgres://agent:hunter2@db/eures");
}

#[test]
fn a_base_url_with_a_user_or_password_is_refused() {
    for key in ["jobag", "eures"] {
        for url in [
            "http://agent:Sekret-Pw@127.0.0.1:8081",
            "https://agent:Sekret-Pw@jobag.example/root",
            "https://Sekret-Pw@jobag.example",
            "https://:Sekret-Pw@jobag.example",
            // Plain http to another machine with a password: the password
            // is what is named.
            "http://agent:Sekret-Pw@jobag.example",
        ] {
            let e = err_of(&format!("[{key}]\nbase_url = \"{url}\""));
            assert_eq!(
                e,
                format!("{key}.base_url: {USERINFO_REFUSED} (in TOML source string)"),
                "{url}"
            );
            assert!(!e.contains("Sekret"), "{e}");
        }
    }
    let e = from_toml_env(
        "",
        vec![(
            "EURES_SYNC__EURES__BASE_URL",
            "https://u:Sekret-Pw@eures.example",
        )],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!(
            "eures.base_url: {USERINFO_REFUSED} (environment variable EURES_SYNC__EURES__BASE_URL)"
        )
    );
    let e = err_of("[jobag]\nposting_url_template = \"https://u:Sekret-Pw@jobnet.example/{id}\"");
    assert_eq!(
        e,
        "jobag.posting_url_template: must not hold a user or password (`user:password@`) \
         (in TOML source string)"
    );
    // An `@` in the path is no user.
    from_toml("[jobag]\nbase_url = \"https://jobag.example/a@b\"").unwrap();
}

#[test]
fn a_database_password_comes_from_the_environment_never_the_file() {
    for url in [
        "postgres://eures:Sekret-Pw@db.example/ledger",
        "postgres://eures@db.example/ledger?password=Sekret-Pw",
        "postgresql://eures@db.example/ledger?sslmode=verify-full&password=Sekret-Pw",
    ] {
        let e = err_of(&format!("[database]\nurl = \"{url}\""));
        assert_eq!(
            e,
            "database.url: must not hold a password in the file; give the URL with it in \
             EURES_SYNC__DATABASE__URL, or the password in PGPASSWORD (in TOML source string)",
            "{url}"
        );
    }
    // The environment may carry it, and a printed configuration hides it
    // wherever it was in the URL.
    let c = from_toml_env(
        "[database]\nurl = \"postgres://eures@db.example/ledger\"",
        vec![(
            "EURES_SYNC__DATABASE__URL",
            "postgres://eures@db.example/ledger?password=Sekret-Pw&sslmode=verify-full",
        )],
    )
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("Sekret-Pw"), "{dbg}");
    assert!(dbg.contains("password=***"), "{dbg}");
    from_toml("[database]\nurl = \"postgres://eures@db.example/ledger?sslmode=require\"").unwrap();
}

#[test]
fn a_toml_syntax_error_says_where_and_what_never_the_text() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line, column) in [
        (
            "[database]\nurl = \"postgres://eures:Sekret-Pw@db/ledger\n",
            2,
            44,
        ),
        ("[jobag]\ntoken = Sekret-Pw\n", 2, 9),
        ("[eures\nparty_id = \"Sekret-Pw\"\n", 1, 7),
        ("[jobag]\nbase_url = \"https://x\" Sekret-Pw\n", 2, 24),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let e = Config::figment(Some(&path), FakeEnv(vec![]))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        let want = format!(
            "config file {}: line {line}, column {column}: ",
            path.display()
        );
        assert!(e.starts_with(&want), "{text:?}: {e}");
        assert!(e.len() > want.len(), "no reason given: {e}");
        assert!(!e.contains("Sekret"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    // Through figment's own reading too (a source that is not a file).
    let e = err_of("[database]\nurl = \"postgres://eures:Sekret-Pw@db/ledger\n");
    assert!(!e.contains("Sekret"), "{e}");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn a_token_file_others_may_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (which, mode) in [
        (Token::Jobag, 0o644),
        (Token::Eures, 0o640),
        (Token::InputApi, 0o604),
        (Token::Jobag, 0o620),
    ] {
        let mut c = Config::default();
        let file = write_file_mode(dir.path(), "t", &format!("{INPUT_TOKEN}-Sekret"), mode);
        match which {
            Token::Jobag => c.jobag.token_file = file,
            Token::Eures => c.eures.token_file = file,
            Token::InputApi => c.eures.input_api_token_file = file,
        }
        let e = c.tokens_from(which, &no_env).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: {} may be read or changed by group or others (mode {mode:04o}): make it \
                 0600 or 0400 (chmod 600)",
                which.file_key(),
                dir.path().join("t").display()
            )
        );
        assert!(!e.contains("Sekret"), "{e}");
    }
    let mut c = Config::default();
    c.jobag.token_file = write_file_mode(dir.path(), "r", "jobag-token", 0o400);
    assert!(c.token_from(Token::Jobag, &no_env).unwrap().is_some());
}

#[test]
fn the_input_api_token_is_long_and_may_be_two_for_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    let short = &INPUT_TOKEN[..31];
    for (content, want) in [
        (
            short.to_owned(),
            "the token is shorter than 32 bytes: make one with `openssl rand -hex 32`",
        ),
        (
            format!("{INPUT_TOKEN}\n{short}\n"),
            "the token on line 2 is shorter than 32 bytes: make one with `openssl rand -hex 32`",
        ),
        (
            format!("{INPUT_TOKEN}\n{INPUT_TOKEN}x\n{INPUT_TOKEN}y\n"),
            "holds more than two tokens: one a line, the current one and the one being \
             rotated in or out",
        ),
    ] {
        c.eures.input_api_token_file = write_file(dir.path(), "i", &content);
        let e = c
            .tokens_from(Token::InputApi, &no_env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "eures.input_api_token_file: {}: {want}",
                dir.path().join("i").display()
            )
        );
        assert!(!e.contains(short), "{e}");
    }
    c.eures.input_api_token_file = write_file(
        dir.path(),
        "i",
        &format!("{INPUT_TOKEN}\n\n  {INPUT_TOKEN}-next \n"),
    );
    let tokens = c.tokens_from(Token::InputApi, &no_env).unwrap();
    let tokens: Vec<&str> = tokens.iter().map(|t| t.expose_secret()).collect();
    assert_eq!(
        tokens,
        [INPUT_TOKEN.to_owned(), format!("{INPUT_TOKEN}-next")]
    );

    // The variable is held to the same length.
    let env = |name: &str| (name == ENV_INPUT_API_TOKEN).then(|| "short-Sekret".to_owned());
    let e = c
        .tokens_from(Token::InputApi, &env)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "EURES_SYNC_INPUT_API_TOKEN: the token is shorter than 32 bytes: make one with \
         `openssl rand -hex 32`"
    );
    // JobAG's and EURES's tokens are one line.
    c.jobag.token_file = write_file(dir.path(), "j", "jobag-Sekret\nmore\n");
    let e = c.token_from(Token::Jobag, &no_env).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "jobag.token_file: {}: holds more than one line: one token only",
            dir.path().join("j").display()
        )
    );
}
