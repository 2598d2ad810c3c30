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

/// A CA nobody trusts, and a server certificate it signed for
/// `localhost` and `127.0.0.1`.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn throwaway_pki(name: &str) -> Pki {
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
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
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

/// A TLS front for a plain loopback server, presenting `pki`'s server
/// certificate: what a gateway behind a private CA looks like to the agent.
async fn tls_front(upstream: SocketAddr, pki: &Pki) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("key PEM");
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
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
/// reached in plain (the README says why).
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
/// did (the self-signed certificate itself) connects.
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
    let url = format!(
        "{base}/test?sslmode=verify-ca&sslrootcert={}",
        own.display()
    );
    let store = eures_sync::store::connect(&url)
        .await
        .expect("verify-ca with the server's own CA connects");
    store.ping().await.expect("ping");
}
