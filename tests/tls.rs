//! The agent's links (SPEC 6): the HTTP clients speak TLS to anything but
//! loopback and trust a private CA only when `tls.extra_ca_file` names it;
//! the PostgreSQL link is encrypted and its certificate verified when the
//! URL asks, and a CA that did not sign the server's certificate is refused.
//!
//! Certificates are throwaway ones made here (rcgen); the TLS servers are a
//! front in this process before the loopback simulators, and the local
//! PostgreSQL server (SSL on, Debian's snakeoil certificate).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Env, PgDb, pg_admin_url};
use eures_sync::config::Config;
use eures_sync::eures::EuresClient;
use eures_sync::jobag::JobagClient;
use figment::Figment;
use figment::providers::{Format, Toml};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A CA nobody trusts, and a server certificate it signed.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn throwaway_pki(name: &str) -> Pki {
    throwaway_pki_for(name, &["localhost", "127.0.0.1"])
}

/// A CA nobody trusts, and a server certificate it signed for `names`.
fn throwaway_pki_for(name: &str, names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_pem = ca.self_signed(&ca_key).expect("CA certificate").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("server params");
    let cert_pem = server
        .signed_by(&key, &issuer)
        .expect("server certificate")
        .pem();
    Pki {
        ca_pem,
        cert_pem,
        key_pem: key.serialize_pem(),
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write file");
    path
}

/// A TLS server configuration presenting `pki`'s server certificate.
fn server_config(pki: &Pki) -> ServerConfig {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("key PEM");
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config")
}

/// A TLS front for a plain loopback server, presenting `pki`'s server
/// certificate: what a gateway behind a private CA looks like to the agent.
async fn tls_front(upstream: SocketAddr, pki: &Pki) -> SocketAddr {
    let mut config = server_config(pki);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// Both clients, set up as the worker sets them up, refuse a server whose
/// certificate chains to a CA they do not know, and accept it once
/// `tls.extra_ca_file` names that CA; a worker configured so delivers over
/// TLS end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_clients_refuse_an_unknown_ca_and_trust_the_extra_one() {
    let env = Env::start().await;
    let pki = throwaway_pki("eures-sync test CA");
    let ca = write(env.dir.path(), "ca.pem", &pki.ca_pem);
    let jobag = format!(
        "https://127.0.0.1:{}",
        tls_front(env.jobag.addr(), &pki).await.port()
    );
    let eures = format!(
        "https://localhost:{}",
        tls_front(env.eures.addr(), &pki).await.port()
    );

    let untrusting = JobagClient::new(&jobag, None, TIMEOUT, None).expect("jobag client");
    let e = untrusting
        .changes(None, 5)
        .await
        .expect_err("unknown CA refused");
    assert!(e.to_string().contains("certificate"), "{e}");
    let untrusting = EuresClient::new(&eures, None, TIMEOUT, 1, None).expect("eures client");
    let e = untrusting
        .list_page(None, 5)
        .await
        .expect_err("unknown CA refused");
    assert!(format!("{e:?}").contains("certificate"), "{e:?}");

    let trusting = JobagClient::new(&jobag, None, TIMEOUT, Some(&ca)).expect("jobag client");
    let page = trusting
        .changes(None, 5)
        .await
        .expect("trusted through the extra CA");
    drop(page);
    let trusting = EuresClient::new(&eures, None, TIMEOUT, 1, Some(&ca)).expect("eures client");
    trusting
        .list_page(None, 5)
        .await
        .expect("trusted through the extra CA");

    // The same through the configuration a worker starts from.
    let toml = format!(
        "{}\n[tls]\nextra_ca_file = \"{}\"\n",
        env.config_toml()
            .replace(&env.jobag.base_url(), &jobag)
            .replace(&env.eures.base_url(), &eures),
        ca.display()
    );
    let config = Config::load_from(Figment::new().merge(Toml::string(&toml))).expect("config");
    assert_eq!(config.jobag.base_url, jobag);
    for i in 1..=5 {
        env.jobag.upsert(eures_sync_sims::jobag::sample_posting(i));
    }
    let running = env.worker_with(config).await;
    env.settled(Duration::from_secs(60)).await;
    assert!(!env.held().is_empty(), "the sample postings reached EURES");
    running.stop().await;
}

/// `http://` to anything but loopback stops the start with one line naming
/// the key (the binary, as an operator starts it). `0.0.0.0` is not a
/// loopback address, yet were the agent to send anything there it would
/// stay on this machine.
#[test]
fn plain_http_to_another_host_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (var, key) in [
        ("EURES_SYNC__JOBAG__BASE_URL", "jobag.base_url"),
        ("EURES_SYNC__EURES__BASE_URL", "eures.base_url"),
    ] {
        let stderr_path = dir.path().join("stderr");
        let mut cmd = common::agent::eures_sync();
        cmd.arg("run")
            .current_dir(dir.path())
            .env(var, "http://0.0.0.0:9")
            .env(
                "EURES_SYNC__DATABASE__URL",
                format!("sqlite://{}/l.db?mode=rwc", dir.path().display()),
            )
            .env("EURES_SYNC__HTTP__LISTEN", "127.0.0.1:0");
        let status = common::agent::Agent::start(cmd, &stderr_path)
            .wait_exit_blocking(Duration::from_secs(30));
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("{key}: http:// only to a loopback host")),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// Whether every connection of the agent to `db` is encrypted (`Some`),
/// as the server sees them; `None` when it has none.
async fn agent_links_encrypted(db: &str) -> Option<bool> {
    let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
        .await
        .expect("admin connection");
    let ssl: Vec<bool> = sqlx::query_scalar(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = $1 AND a.application_name = 'eures-sync'",
    )
    .bind(db)
    .fetch_all(&mut admin)
    .await
    .expect("pg_stat_ssl");
    (!ssl.is_empty()).then(|| ssl.iter().all(|s| *s))
}

/// `sslmode=require` to the local server: the agent connects, and the
/// server sees its link encrypted. Without `sslmode`, a loopback server is
/// reached in plain (docs/configuration.md says why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_link_is_encrypted_when_the_url_asks() {
    let db = PgDb::create().await;
    let store = eures_sync::store::connect(&format!("{}?sslmode=require", db.url()))
        .await
        .expect("sslmode=require connects");
    store.ping().await.expect("ping");
    assert_eq!(agent_links_encrypted(&db.name).await, Some(true));
    drop(store);

    let db = PgDb::create().await;
    let store = eures_sync::store::connect(&db.url())
        .await
        .expect("plain connects");
    store.ping().await.expect("ping");
    assert_eq!(agent_links_encrypted(&db.name).await, Some(false));
}

/// The local server's certificate (the path the server itself reports).
async fn server_certificate() -> String {
    let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
        .await
        .expect("admin connection");
    let path: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&mut admin)
        .await
        .expect("ssl_cert_file");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the server's certificate {path} must be readable: {e}"))
}

/// `verify-full` with a CA that did not sign the server's certificate is
/// refused with one line naming the problem; `verify-ca` with the CA that
/// did (the self-signed certificate itself) connects, and the server sees
/// the link encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_not_signed_by_sslrootcert_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stranger = write(
        dir.path(),
        "stranger.pem",
        &throwaway_pki("a CA that signed nothing of the server's").ca_pem,
    );
    let admin = pg_admin_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    for host_url in [base.to_owned(), base.replace("127.0.0.1", "localhost")] {
        let url = format!(
            "{host_url}/test?sslmode=verify-full&sslrootcert={}&acquire_timeout_ms=5000",
            stranger.display()
        );
        let e = eures_sync::store::connect(&url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url}: connected with a CA that signed nothing"))
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.contains("certificate") && e.contains("UnknownIssuer"),
            "the line names the problem: {e}"
        );
    }

    let own = write(dir.path(), "server.pem", &server_certificate().await);
    let db = PgDb::create().await;
    let url = format!(
        "{base}/{}?sslmode=verify-ca&sslrootcert={}",
        db.name,
        own.display()
    );
    let store = eures_sync::store::connect(&url)
        .await
        .expect("verify-ca with the server's own CA connects");
    store.ping().await.expect("ping");
    assert_eq!(agent_links_encrypted(&db.name).await, Some(true));
}

/// A PostgreSQL server presenting `pki`'s certificate: it answers the
/// SSLRequest with `S`, does the handshake, then relays the plain protocol
/// to the local server. What an on-path attacker holding that certificate
/// looks like to the agent; a connection it lets through really works, so a
/// refused one is refused by the certificate check alone.
async fn pg_tls_front(pki: &Pki) -> SocketAddr {
    let admin = url::Url::parse(&pg_admin_url()).expect("admin URL");
    let upstream = format!(
        "{}:{}",
        admin.host_str().expect("admin host"),
        admin.port().unwrap_or(5432)
    );
    let acceptor = TlsAcceptor::from(Arc::new(server_config(pki)));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = [0u8; 8];
                let asked = tokio::time::timeout(TIMEOUT, tcp.read_exact(&mut request)).await;
                if !matches!(asked, Ok(Ok(_))) || request != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                    return;
                }
                if tcp.write_all(b"S").await.is_err() {
                    return;
                }
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// The real binary with `database.url` set to `url` and
/// `SSL_CERT_FILE` to `process_root`, in `dir`: its exit status, stdout
/// and stderr.
async fn agent_with_database(
    dir: &Path,
    url: &str,
    process_root: &Path,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = common::agent::eures_sync();
    cmd.args(args)
        .current_dir(dir)
        .env("EURES_SYNC__DATABASE__URL", url)
        .env("EURES_SYNC__HTTP__LISTEN", "127.0.0.1:0")
        .env("SSL_CERT_FILE", process_root)
        .env_remove("SSL_CERT_DIR")
        .env_remove("PGSSLROOTCERT")
        .env_remove("PGSSLMODE");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || cmd.output().expect("run eures-sync")),
    )
    .await
    .expect("eures-sync ended in time")
    .expect("join");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// With `sslrootcert` the operator's CA is the only root the database link
/// trusts. CA B signed a certificate valid for the server's name, and B is
/// a root this process trusts otherwise: `SSL_CERT_FILE` names it, which is
/// where the platform's trust store (the one the HTTP clients use, and that
/// a native-roots TLS stack reads) takes its roots from. B thus plays a
/// public CA: one the machine trusts but the operator did not name for the
/// ledger (the public roots compiled into the driver cannot be made to sign
/// a test certificate, so B stands in for them). Sent B's certificate, the
/// agent refuses the link under `verify-full` and `verify-ca`; sent CA A's,
/// it connects, and says its database link trusts the operator's
/// `sslrootcert` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslrootcert_is_the_only_root_the_database_link_trusts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = throwaway_pki("the operator's CA A");
    let public = throwaway_pki("CA B, a root this machine trusts");
    let ca_a = write(dir.path(), "ca-a.pem", &operator.ca_pem);
    let ca_b = write(dir.path(), "ca-b.pem", &public.ca_pem);
    let db = PgDb::create().await;
    let attacker = pg_tls_front(&public).await;
    let genuine = pg_tls_front(&operator).await;
    let url = |front: SocketAddr, mode: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode={mode}&sslrootcert={}\
             &acquire_timeout_ms=3000",
            front.port(),
            db.name,
            ca_a.display()
        )
    };
    for mode in ["verify-full", "verify-ca"] {
        let (code, stdout, stderr) = agent_with_database(
            dir.path(),
            &url(attacker, mode),
            &ca_b,
            &["migrate", "--status"],
        )
        .await;
        assert_eq!(
            code,
            Some(1),
            "{mode}: a CA-B certificate was accepted: {stdout}{stderr}"
        );
        assert!(
            stderr.contains("TLS failed") && stderr.contains("UnknownIssuer"),
            "{mode}: the line names the problem: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

        let (code, stdout, stderr) = agent_with_database(
            dir.path(),
            &url(genuine, mode),
            &ca_b,
            &["migrate", "--status"],
        )
        .await;
        assert_eq!(code, Some(0), "{mode}: the operator's CA refused: {stderr}");
        assert!(stdout.contains("0 applied"), "{stdout}");
        assert!(
            stdout.contains("trust roots: the operator's sslrootcert only (1 certificate)"),
            "{mode}: the database's trust roots are reported: {stdout}"
        );
    }

    // The worker's start line says it too, before it connects.
    let (code, _, stderr) =
        agent_with_database(dir.path(), &url(attacker, "verify-full"), &ca_b, &["run"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    let starting = stderr
        .lines()
        .find(|l| l.contains("\"starting\""))
        .unwrap_or_else(|| panic!("no start line: {stderr}"));
    assert!(
        starting.contains(
            "\"database_trust_roots\":\"the operator's sslrootcert only (1 certificate)\""
        ),
        "{starting}"
    );
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}

/// `verify-ca` checks the chain to `sslrootcert` and no host name: a
/// certificate CA A signed for another name is accepted, one CA B signed is
/// not; `verify-full` refuses the other name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_checks_the_chain_to_sslrootcert_but_not_the_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = throwaway_pki_for("the operator's CA A", &["db.elsewhere.example"]);
    let ca_a = write(dir.path(), "ca-a.pem", &elsewhere.ca_pem);
    let db = PgDb::create().await;
    let front = pg_tls_front(&elsewhere).await;
    let url = |mode: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode={mode}&sslrootcert={}\
             &acquire_timeout_ms=3000",
            front.port(),
            db.name,
            ca_a.display()
        )
    };
    let store = eures_sync::store::connect(&url("verify-ca"))
        .await
        .expect("verify-ca accepts the operator's CA for any name");
    store.ping().await.expect("ping");
    drop(store);
    let e = eures_sync::store::connect(&url("verify-full"))
        .await
        .err()
        .expect("verify-full checks the name")
        .to_string();
    assert!(e.contains("certificate not valid for name"), "{e}");
    assert!(!e.contains('\n'), "{e}");

    let stranger = throwaway_pki_for("CA B", &["db.elsewhere.example"]);
    let front = pg_tls_front(&stranger).await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/{}?sslmode=verify-ca&sslrootcert={}\
         &acquire_timeout_ms=3000",
        front.port(),
        db.name,
        ca_a.display()
    );
    let e = eures_sync::store::connect(&url)
        .await
        .err()
        .expect("verify-ca refuses another CA")
        .to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

/// `verify-ca` checks no host name: with the public roots in the trust
/// store any publicly trusted certificate, for any name, would pass. To a
/// remote host without `sslrootcert` it stops the start with one line
/// naming the key and why, never the password, before any connection.
#[test]
fn verify_ca_to_a_remote_host_without_sslrootcert_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = "postgres://eures:Sekret-Pw-9@db.example:5432/ledger?sslmode=verify-ca";
    for args in [&["status"][..], &["run"][..]] {
        let stderr_path = dir.path().join("stderr");
        let mut cmd = common::agent::eures_sync();
        cmd.args(args)
            .current_dir(dir.path())
            .env("EURES_SYNC__DATABASE__URL", url)
            .env("EURES_SYNC__HTTP__LISTEN", "127.0.0.1:0")
            .env_remove("PGSSLROOTCERT")
            .env_remove("PGSSLMODE");
        let status = common::agent::Agent::start(cmd, &stderr_path)
            .wait_exit_blocking(Duration::from_secs(30));
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("{args:?}: no error line: {stderr}"));
        assert!(
            line.contains("database.url: sslmode=verify-ca checks no host name")
                && line.contains("sslrootcert"),
            "{args:?}: {line}"
        );
        assert!(!stderr.contains("Sekret-Pw-9"), "{stderr}");
        assert_eq!(
            stderr
                .lines()
                .filter(|l| !l.contains("\"starting\""))
                .count(),
            1,
            "{args:?}: {stderr}"
        );
    }
}
