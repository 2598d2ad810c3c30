//! The reqwest set-up the JobAG and EURES clients share: base URLs
//! (`http://` only to loopback), TLS roots (the platform's plus
//! `tls.extra_ca_file`), the bearer header, bounded body reads, and error
//! texts that never quote a value or a token.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::config::PLAIN_HTTP_REFUSED;
use crate::loopback::is_loopback_url_host;

/// The client could not be built. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{client}.base_url: {why}")]
    BaseUrl { client: &'static str, why: String },
    #[error("tls.extra_ca_file: {}: {why}", path.display())]
    ExtraCa {
        path: std::path::PathBuf,
        why: String,
    },
    #[error("{client} token: contains characters not allowed in an HTTP header")]
    Token { client: &'static str },
    #[error("{client} HTTP client: {why}")]
    Http { client: &'static str, why: String },
}

/// What both HTTP clients set up alike: the base URL, a client (from
/// `builder`, with the timeouts, keep-alive, no redirects, the extra CA)
/// and the bearer header, marked sensitive so it never reaches a log.
pub(crate) fn http_setup(
    client: &'static str,
    base_url: &str,
    token: Option<SecretString>,
    timeout: Duration,
    extra_ca: Option<&Path>,
    builder: reqwest::ClientBuilder,
) -> Result<(Url, reqwest::Client, Option<HeaderValue>), SetupError> {
    let base = parse_base(base_url).map_err(|why| SetupError::BaseUrl { client, why })?;
    let auth = match token {
        Some(token) => {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| SetupError::Token { client })?;
            value.set_sensitive(true);
            Some(value)
        }
        None => None,
    };
    let mut builder = builder
        .user_agent(concat!("eures-sync/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(60))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = extra_ca {
        let certs = read_ca_bundle(path).map_err(|why| SetupError::ExtraCa {
            path: path.to_owned(),
            why,
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    let http = builder.build().map_err(|e| SetupError::Http {
        client,
        why: error_chain(&e),
    })?;
    Ok((base, http, auth))
}

/// Parses and checks a base URL: http(s), with a host and no user or
/// password, able to take path segments.
pub(crate) fn parse_base(base_url: &str) -> Result<Url, String> {
    let mut url = Url::parse(base_url.trim()).map_err(|e| format!("not a URL: {e}"))?;
    crate::config::check_no_userinfo(&url)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("not a URL (no host)".to_owned());
    }
    if url.scheme() == "http" && !url.host().is_some_and(|h| is_loopback_url_host(&h)) {
        return Err(PLAIN_HTTP_REFUSED.to_owned());
    }
    if url.path_segments_mut().is_err() {
        return Err("cannot carry a path".to_owned());
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Reads a PEM bundle of root certificates; an empty one is an error.
pub(crate) fn read_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| e.kind().to_string())?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|_| "not a PEM certificate bundle".to_owned())?;
    if certs.is_empty() {
        return Err("no certificate in the file".to_owned());
    }
    Ok(certs)
}

/// Why a body was not read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Longer than the bound; the rest was not read.
    TooLarge(usize),
    /// The transfer failed (timeout, reset).
    Failed(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge(limit) => write!(f, "body larger than {limit} bytes"),
            BodyError::Failed(why) => f.write_str(why),
        }
    }
}

/// Reads at most `limit` bytes of the body. Returns what was read and, when
/// the body was cut or failed, why (the connection is then dropped rather
/// than drained, so an endless body costs at most `limit` bytes).
pub(crate) async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> (Vec<u8>, Option<BodyError>) {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return (Vec::new(), Some(BodyError::TooLarge(limit)));
    }
    // Sized once when the length is declared: growing by doubling would
    // hold up to twice the body at its end.
    let declared = response.content_length().map_or(0, |n| n as usize);
    let mut body = Vec::with_capacity(declared.min(limit));
    loop {
        match response.chunk().await {
            Ok(None) => return (body, None),
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    let room = limit - body.len();
                    body.extend_from_slice(&chunk[..room]);
                    return (body, Some(BodyError::TooLarge(limit)));
                }
                body.extend_from_slice(&chunk);
            }
            Err(e) => return (body, Some(BodyError::Failed(describe_error(&e)))),
        }
    }
}

/// A JSON parse error without the text it quotes (serde_json's message can
/// echo a value, which may be personal data): category and position only.
pub(crate) fn json_error_summary(e: &serde_json::Error) -> String {
    let category = match e.classify() {
        serde_json::error::Category::Io => "io error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => {
            // "missing field `x`" helps and quotes nothing; a message that
            // quotes a value (`invalid type: string "..."`) is left out.
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or_default();
            if !msg.is_empty() && !msg.contains('"') {
                return format!("{msg} at line {} column {}", e.line(), e.column());
            }
            "unexpected shape"
        }
        serde_json::error::Category::Eof => "truncated",
    };
    format!("{category} at line {} column {}", e.line(), e.column())
}

/// One short line for a transport error: its kind and innermost cause,
/// without the URL.
pub(crate) fn describe_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".to_owned();
    }
    let kind = if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else if e.is_request() {
        "request error"
    } else {
        "http error"
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    let mut why = match innermost {
        Some(c) => format!("{kind}: {c}"),
        None => kind.to_owned(),
    };
    if why.len() > 200 {
        let mut cut = 200;
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        why.truncate(cut);
    }
    why.replace(['\n', '\r'], " ")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A tiny HTTP/1.1 server for client tests: one canned reply per accepted
/// connection, every request captured.
#[cfg(test)]
pub(crate) mod test_server {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    /// A request as the server saw it.
    #[derive(Debug, Clone)]
    pub struct Captured {
        pub method: String,
        /// Path and query, as sent.
        pub target: String,
        /// Header names lower-cased.
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Captured {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// What the server does with one connection after reading its request.
    pub enum Reply {
        /// Writes these bytes and closes.
        Raw(Vec<u8>),
        /// Closes without answering.
        Close,
        /// Answers nothing for this long, then closes.
        Hang(Duration),
        /// Sends a `200` head, then body bytes until the client goes away.
        Endless,
    }

    /// A complete response with `Content-Length` and `Connection: close`.
    pub fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut s = format!("HTTP/1.1 {status} Whatever\r\n");
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        Reply::Raw(s.into_bytes())
    }

    /// Starts the server; returns its base URL and the captured requests.
    pub async fn serve(replies: Vec<Reply>) -> (String, mpsc::UnboundedReceiver<Captured>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for reply in replies {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(handle(stream, reply, tx));
            }
        });
        (format!("http://{addr}"), rx)
    }

    async fn handle(mut stream: TcpStream, reply: Reply, tx: mpsc::UnboundedSender<Captured>) {
        let Some(captured) = read_request(&mut stream).await else {
            return;
        };
        let _ = tx.send(captured);
        match reply {
            Reply::Raw(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
            }
            Reply::Close => drop(stream),
            Reply::Hang(d) => {
                tokio::time::sleep(d).await;
            }
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"changes\": [";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = "{\"id\": \"x\", \"version\": 1},".repeat(4096);
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
            }
        }
    }

    async fn read_request(stream: &mut TcpStream) -> Option<Captured> {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let method = first.next()?.to_owned();
        let target = first.next()?.to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < len {
            let n = stream.read(&mut tmp).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
        Some(Captured {
            method,
            target,
            headers,
            body,
        })
    }
}
