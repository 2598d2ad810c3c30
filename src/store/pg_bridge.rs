//! The verified link to PostgreSQL when `sslrootcert` names the CA: TLS
//! spoken here, with that CA as the only root, because the driver's own TLS
//! would trust its built-in public roots besides (SPEC 6).
//!
//! The driver connects in plain to a unix socket in a directory only this
//! user may enter; every connection accepted there is carried to the server
//! over TCP, after the SSLRequest and a handshake that verifies the
//! server's certificate against the operator's roots (and its name with
//! `verify-full`), presenting `sslcert` when given. Nothing else reaches
//! the socket: a process that could open it could read this user's
//! configuration and keys anyway.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::pg_link::BridgeSpec;
use super::types::StoreError;

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Where the bridge listens and how the server is reached; the listener
/// stops and the socket's directory goes when it is dropped.
#[derive(Debug)]
pub(super) struct Bridge {
    /// Held for its removal on drop.
    _dir: tempfile::TempDir,
    accept: JoinHandle<()>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// How one link to the server is opened.
struct Dialer {
    host: String,
    port: u16,
    name: ServerName<'static>,
    tls: TlsConnector,
    timeout: Duration,
}

impl Bridge {
    /// Opens one verified link at once, so a certificate the roots do not
    /// vouch for fails here with its reason rather than as a closed socket
    /// under the pool; that link serves the driver's first connection.
    /// Then listens for the driver. Returns the options that send the
    /// driver to the bridge.
    pub async fn start(
        spec: BridgeSpec,
        options: PgConnectOptions,
        timeout: Duration,
    ) -> std::result::Result<(Bridge, PgConnectOptions), BridgeError> {
        let dialer = Arc::new(Dialer::new(spec, timeout)?);
        let first = dialer.dial().await.map_err(BridgeError::Link)?;
        let dir = tempfile::Builder::new()
            .prefix("eures-sync-db-")
            .tempdir()
            .map_err(|e| setup(format!("a directory for the database bridge: {e}")))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| setup(format!("a directory for the database bridge: {e}")))?;
        let port = options.get_port();
        let listener = UnixListener::bind(dir.path().join(format!(".s.PGSQL.{port}")))
            .map_err(|e| setup(format!("the database bridge's socket: {e}")))?;
        let spare = Arc::new(Mutex::new(Some(first)));
        let accept = tokio::spawn(accept_loop(listener, dialer, spare));
        let options = options
            .socket(dir.path())
            .ssl_mode(sqlx::postgres::PgSslMode::Disable);
        Ok((Bridge { _dir: dir, accept }, options))
    }
}

/// Why the bridge did not start.
#[derive(Debug)]
pub(super) enum BridgeError {
    /// The configuration cannot work (a root that is no certificate).
    Setup(StoreError),
    /// The first link failed: refused, timed out, or its certificate.
    Link(sqlx::Error),
}

fn setup(why: String) -> BridgeError {
    BridgeError::Setup(StoreError::Url(why))
}

impl Dialer {
    fn new(spec: BridgeSpec, timeout: Duration) -> std::result::Result<Dialer, BridgeError> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in spec.roots {
            roots
                .add(cert)
                .map_err(|e| setup(format!("sslrootcert: not a CA certificate ({e})")))?;
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| setup(format!("sslrootcert: {e}")))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(format!("TLS: {e}")))?;
        let builder = if spec.check_name {
            builder.with_webpki_verifier(verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
        };
        let config = match spec.client {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| setup(format!("sslcert and sslkey: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from(spec.host.clone())
            .map_err(|_| setup(format!("{}: not a host name TLS can check", spec.host)))?;
        Ok(Dialer {
            host: spec.host,
            port: spec.port,
            name,
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// One verified link to the server, ready for the startup message.
    async fn dial(&self) -> std::result::Result<TlsStream<TcpStream>, sqlx::Error> {
        let open = async {
            let mut tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(sqlx::Error::Io)?;
            let _ = tcp.set_nodelay(true);
            tcp.write_all(&SSL_REQUEST).await.map_err(sqlx::Error::Io)?;
            let mut answer = [0u8];
            tcp.read_exact(&mut answer).await.map_err(sqlx::Error::Io)?;
            match answer[0] {
                b'S' => {}
                b'N' => return Err(sqlx::Error::Tls("server does not support TLS".into())),
                other => {
                    return Err(sqlx::Error::Protocol(format!(
                        "unexpected response to SSLRequest: 0x{other:02x}"
                    )));
                }
            }
            self.tls
                .connect(self.name.clone(), tcp)
                .await
                .map_err(|e| sqlx::Error::Tls(Box::new(e)))
        };
        tokio::time::timeout(self.timeout, open)
            .await
            .unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))
            })
    }
}

async fn accept_loop(
    listener: UnixListener,
    dialer: Arc<Dialer>,
    spare: Arc<Mutex<Option<TlsStream<TcpStream>>>>,
) {
    loop {
        let Ok((driver, _)) = listener.accept().await else {
            // Out of descriptors: the next accept may succeed.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let first = spare.lock().ok().and_then(|mut s| s.take());
        tokio::spawn(carry(driver, dialer.clone(), first));
    }
}

/// Carries one driver connection to the server; a link refused is logged
/// and the driver's socket closed, which the pool sees as a failed connect.
async fn carry(mut driver: UnixStream, dialer: Arc<Dialer>, first: Option<TlsStream<TcpStream>>) {
    let mut server = match first {
        Some(link) => link,
        None => match dialer.dial().await {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(error = %e, "database link refused");
                return;
            }
        },
    };
    let _ = tokio::io::copy_bidirectional(&mut driver, &mut server).await;
}

/// `verify-ca`: the chain to the roots checked, the name not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        use tokio_rustls::rustls::Error;
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
