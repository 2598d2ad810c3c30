//! How the link to a PostgreSQL server is protected (SPEC 6), decided from
//! the URL and libpq's environment before any connection: plain, encrypted
//! unverified, verified against the public roots, or verified against the
//! operator's `sslrootcert` alone. Reads the certificate files it names;
//! connects nowhere.
//!
//! The driver's own TLS adds its built-in public roots to `sslrootcert`:
//! with it, any publicly trusted certificate would pass. So a link that
//! names `sslrootcert` is handed to [`super::pg_bridge`], which speaks TLS
//! with that CA as its only root, and the driver reaches it in plain over a
//! socket only this user can open.

use std::fmt;
use std::path::PathBuf;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::types::{Result, StoreError};

/// Which roots a server's certificate must chain to, as the start line
/// and `migrate --status` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// The CA bundle `sslrootcert` names, nothing besides.
    Operator { certificates: usize },
    /// The public roots built into the driver (`verify-*` to this machine
    /// without `sslrootcert`).
    Public,
    /// Encrypted, but any certificate is accepted (`require`, `prefer` to
    /// this machine).
    Unchecked,
    /// No TLS: to this machine, or an explicit `sslmode=disable`.
    Plain { loopback: bool },
    /// The embedded SQLite ledger: no link at all.
    Embedded,
}

impl fmt::Display for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustRoots::Operator { certificates } => write!(
                f,
                "the operator's sslrootcert only ({certificates} certificate{})",
                if *certificates == 1 { "" } else { "s" }
            ),
            TrustRoots::Public => f.write_str("the public roots"),
            TrustRoots::Unchecked => f.write_str("none (encrypted, certificate not checked)"),
            TrustRoots::Plain { loopback: true } => f.write_str("none (plain, loopback)"),
            TrustRoots::Plain { loopback: false } => f.write_str("none (plain, not encrypted)"),
            TrustRoots::Embedded => f.write_str("none (embedded SQLite, no link)"),
        }
    }
}

/// What the bridge needs to open a verified link itself.
#[derive(Debug)]
pub(super) struct BridgeSpec {
    pub host: String,
    pub port: u16,
    /// The only roots trusted.
    pub roots: Vec<CertificateDer<'static>>,
    /// `verify-full`: the certificate must name `host`.
    pub check_name: bool,
    /// `sslcert` and `sslkey`, when the server wants a client certificate.
    pub client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// The decision: the options the driver connects with, a warning every
/// start logs, the trust roots, and the bridge when `sslrootcert` is named.
#[derive(Debug)]
pub(super) struct Link {
    pub options: PgConnectOptions,
    pub warning: Option<String>,
    pub trust: TrustRoots,
    pub bridge: Option<BridgeSpec>,
}

/// A certificate or key input as libpq takes it: a path, or the PEM text
/// itself (sqlx takes environment values that look like PEM as such).
enum Input {
    File(PathBuf),
    Inline(String),
}

impl Input {
    fn from(value: String) -> Input {
        if value.trim_start().starts_with("-----BEGIN") {
            Input::Inline(value)
        } else {
            Input::File(PathBuf::from(value))
        }
    }

    /// The key an error names: `what` and, for a file, its path.
    fn label(&self, what: &str) -> String {
        match self {
            Input::File(path) => format!("{what} {}", path.display()),
            Input::Inline(_) => what.to_owned(),
        }
    }

    fn read(&self, what: &str) -> Result<Vec<u8>> {
        match self {
            Input::File(path) => std::fs::read(path)
                .map_err(|e| StoreError::Url(format!("{}: {}", self.label(what), e.kind()))),
            Input::Inline(pem) => Ok(pem.as_bytes().to_vec()),
        }
    }

    fn certificates(&self, what: &str) -> Result<Vec<CertificateDer<'static>>> {
        let pem = self.read(what)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                StoreError::Url(format!(
                    "{}: not a PEM certificate bundle",
                    self.label(what)
                ))
            })?;
        if certs.is_empty() {
            return Err(StoreError::Url(format!(
                "{}: no certificate in the file",
                self.label(what)
            )));
        }
        Ok(certs)
    }

    fn key(&self, what: &str) -> Result<PrivateKeyDer<'static>> {
        let pem = self.read(what)?;
        PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|_| StoreError::Url(format!("{}: not a PEM private key", self.label(what))))
    }
}

/// Decides the link. A server on this machine (a unix socket, `localhost`,
/// a loopback address) needs no TLS: without an `sslmode` of its own the
/// link is plain, since whoever can read loopback traffic can read the
/// ledger too. Any other server needs its certificate verified
/// (`sslmode=verify-full` or `verify-ca`) against the CA in `sslrootcert`,
/// or the URL says `sslmode=disable` and every start logs the warning.
/// `libpq`'s environment (`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`,
/// `PGSSLKEY`, read by sqlx too) counts as the URL saying it.
pub(super) fn decide(
    options: PgConnectOptions,
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Link> {
    let parsed = url::Url::parse(url).map_err(|e| StoreError::Url(format!("not a URL: {e}")))?;
    let query = |keys: &[&str], var: &str| {
        parsed
            .query_pairs()
            .filter(|(k, _)| keys.contains(&k.as_ref()))
            .map(|(_, v)| v.into_owned())
            .last()
            .or_else(|| env(var))
    };
    let mode_given = query(&["sslmode", "ssl-mode"], "PGSSLMODE").is_some();
    let root = query(&["sslrootcert", "ssl-root-cert", "ssl-ca"], "PGSSLROOTCERT").map(Input::from);
    let client_cert = query(&["sslcert", "ssl-cert"], "PGSSLCERT").map(Input::from);
    let client_key = query(&["sslkey", "ssl-key"], "PGSSLKEY").map(Input::from);
    let mode = options.get_ssl_mode();
    let host = options.get_host().to_owned();
    let local = options.get_socket().is_some() || crate::loopback::is_loopback_host(&host);
    let plain = |options, loopback, warning| {
        Ok(Link {
            options,
            warning,
            trust: TrustRoots::Plain { loopback },
            bridge: None,
        })
    };
    match mode {
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => {}
        _ if local && !mode_given => {
            return plain(options.ssl_mode(PgSslMode::Disable), true, None);
        }
        PgSslMode::Disable | PgSslMode::Allow if local => return plain(options, true, None),
        PgSslMode::Disable => {
            let warning = format!(
                "database.url: sslmode=disable: the link to {host} is not encrypted, postings \
                 and the database login cross the network in clear"
            );
            return plain(options, false, Some(warning));
        }
        _ if local => {
            return Ok(Link {
                options,
                warning: None,
                trust: TrustRoots::Unchecked,
                bridge: None,
            });
        }
        _ => {
            return Err(StoreError::Url(format!(
                "{host} is not this machine: the link needs sslmode=verify-full (or verify-ca) \
                 with sslrootcert, or sslmode=disable to accept it unencrypted"
            )));
        }
    }
    let Some(root) = root else {
        if local {
            return Ok(Link {
                options,
                warning: None,
                trust: TrustRoots::Public,
                bridge: None,
            });
        }
        return Err(StoreError::Url(if matches!(mode, PgSslMode::VerifyCa) {
            format!(
                "sslmode=verify-ca checks no host name: to {host} it needs sslrootcert (the CA \
                 that signed the server's certificate), or any certificate a public CA signed \
                 would pass"
            )
        } else {
            format!(
                "sslmode=verify-full to {host} needs sslrootcert (the CA that signed the \
                 server's certificate)"
            )
        }));
    };
    let roots = root.certificates("sslrootcert")?;
    let client = match (client_cert, client_key) {
        (Some(cert), Some(key)) => Some((cert.certificates("sslcert")?, key.key("sslkey")?)),
        (None, None) => None,
        _ => {
            return Err(StoreError::Url(
                "sslcert and sslkey go together: one is given without the other".to_owned(),
            ));
        }
    };
    if options.get_socket().is_some() {
        return Err(StoreError::Url(
            "sslrootcert with a unix socket: a socket carries no TLS; name a host".to_owned(),
        ));
    }
    Ok(Link {
        trust: TrustRoots::Operator {
            certificates: roots.len(),
        },
        bridge: Some(BridgeSpec {
            port: options.get_port(),
            host,
            roots,
            check_name: matches!(mode, PgSslMode::VerifyFull),
            client,
        }),
        options,
        warning: None,
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// A CA certificate of no consequence: only its PEM framing and DER
    /// parse matter here.
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBAjCBqaADAgECAgEBMAoGCCqGSM49BAMCMAAwHhcNMjQwMTAxMDAwMDAwWhcN\n\
                          -----END CERTIFICATE-----\n";

    fn link(url: &str, env: &[(&str, &str)]) -> Result<Link> {
        let options = PgConnectOptions::from_str(url).unwrap();
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        decide(options, url, &lookup)
    }

    fn refusal(url: &str) -> String {
        match link(url, &[]) {
            Ok(l) => panic!("{url}: expected a refusal, got {:?}", l.trust),
            Err(e) => e.to_string(),
        }
    }

    fn ca_file(dir: &tempfile::TempDir, pem: &str) -> String {
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    }

    #[test]
    fn a_remote_server_needs_a_verified_certificate_or_an_explicit_plain_link() {
        let remote = "postgres://eures:pw-secret@db.example:5432/eures";
        for query in ["", "?sslmode=prefer", "?sslmode=allow", "?sslmode=require"] {
            let e = refusal(&format!("{remote}{query}"));
            assert_eq!(
                e,
                "database.url: db.example is not this machine: the link needs \
                 sslmode=verify-full (or verify-ca) with sslrootcert, or sslmode=disable to \
                 accept it unencrypted",
                "{query}"
            );
        }
        let e = refusal(&format!("{remote}?sslmode=verify-full"));
        assert_eq!(
            e,
            "database.url: sslmode=verify-full to db.example needs sslrootcert (the CA that \
             signed the server's certificate)"
        );
        for mode in ["verify-full", "verify-ca"] {
            let e = refusal(&format!(
                "{remote}?sslmode={mode}&sslrootcert=/nonexistent/ca.pem"
            ));
            assert_eq!(
                e,
                "database.url: sslrootcert /nonexistent/ca.pem: entity not found"
            );
        }

        let dir = tempfile::tempdir().unwrap();
        let ca = ca_file(&dir, "no certificate here\n");
        let e = refusal(&format!("{remote}?sslmode=verify-full&sslrootcert={ca}"));
        assert_eq!(
            e,
            format!("database.url: sslrootcert {ca}: no certificate in the file")
        );

        let ca = ca_file(&dir, &format!("{CA_PEM}{CA_PEM}"));
        let l = link(
            &format!("{remote}?sslmode=verify-full&sslrootcert={ca}"),
            &[],
        )
        .unwrap();
        assert_eq!(l.trust, TrustRoots::Operator { certificates: 2 });
        assert_eq!(
            l.trust.to_string(),
            "the operator's sslrootcert only (2 certificates)"
        );
        let bridge = l.bridge.expect("sslrootcert goes through the bridge");
        assert_eq!((bridge.host.as_str(), bridge.port), ("db.example", 5432));
        assert_eq!(bridge.roots.len(), 2, "the bundle and nothing besides");
        assert!(bridge.check_name);
        assert!(bridge.client.is_none());
        assert_eq!(l.warning, None);
        // libpq's variable names the CA as well as the URL does.
        let l = link(
            &format!("{remote}?sslmode=verify-ca"),
            &[("PGSSLROOTCERT", ca.as_str())],
        )
        .unwrap();
        assert!(!l.bridge.expect("bridged").check_name);

        let l = link(&format!("{remote}?sslmode=disable"), &[]).unwrap();
        assert!(matches!(l.options.get_ssl_mode(), PgSslMode::Disable));
        assert_eq!(l.trust.to_string(), "none (plain, not encrypted)");
        let warning = l
            .warning
            .expect("a plain link to another host is warned about");
        assert!(warning.contains("db.example") && warning.contains("not encrypted"));
        assert!(!warning.contains("pw-secret"), "{warning}");
        assert!(!warning.contains('\n'));
    }

    /// `verify-ca` checks no host name: with the public roots any
    /// certificate a public CA signed, for any name, would pass.
    #[test]
    fn verify_ca_to_a_remote_host_needs_sslrootcert() {
        let e = refusal("postgres://eures:pw-secret@db.example/eures?sslmode=verify-ca");
        assert_eq!(
            e,
            "database.url: sslmode=verify-ca checks no host name: to db.example it needs \
             sslrootcert (the CA that signed the server's certificate), or any certificate a \
             public CA signed would pass"
        );
        let e = refusal("postgres://eures@db.example/eures?sslmode=verify-ca&sslrootcert=");
        assert!(e.starts_with("database.url: sslrootcert"), "{e}");
    }

    #[test]
    fn a_local_server_is_reached_without_tls_unless_the_url_asks() {
        for url in [
            "postgres://u@127.0.0.1:5432/x",
            "postgres://u@127.1.2.3/x",
            "postgres://u@localhost/x",
            "postgres://u@[::1]:5432/x",
            "postgres:///x?host=/var/run/postgresql",
        ] {
            let l = link(url, &[]).unwrap();
            assert!(
                matches!(l.options.get_ssl_mode(), PgSslMode::Disable),
                "{url}"
            );
            assert_eq!(l.warning, None, "{url}");
            assert_eq!(l.trust.to_string(), "none (plain, loopback)");
        }
        let l = link("postgres://u@127.0.0.1/x?sslmode=require", &[]).unwrap();
        assert!(matches!(l.options.get_ssl_mode(), PgSslMode::Require));
        assert_eq!(l.trust, TrustRoots::Unchecked);
        let l = link("postgres://u@localhost/x?sslmode=verify-full", &[]).unwrap();
        assert!(matches!(l.options.get_ssl_mode(), PgSslMode::VerifyFull));
        assert_eq!(l.trust.to_string(), "the public roots");
        assert!(l.bridge.is_none());
        // PGSSLMODE in the environment is the operator asking too.
        let l = link("postgres://u@127.0.0.1/x", &[("PGSSLMODE", "prefer")]).unwrap();
        assert!(!matches!(l.options.get_ssl_mode(), PgSslMode::Disable));
    }

    #[test]
    fn a_client_certificate_comes_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_file(&dir, CA_PEM);
        let e = refusal(&format!(
            "postgres://u@db.example/x?sslmode=verify-full&sslrootcert={ca}&sslcert={ca}"
        ));
        assert_eq!(
            e,
            "database.url: sslcert and sslkey go together: one is given without the other"
        );
        let e = refusal(&format!(
            "postgres://u@db.example/x?sslmode=verify-full&sslrootcert={ca}&sslcert={ca}&sslkey={ca}"
        ));
        assert_eq!(
            e,
            format!("database.url: sslkey {ca}: not a PEM private key")
        );
    }
}
