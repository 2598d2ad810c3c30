//! The project's own JobAG and EURES simulators: real HTTP servers on
//! loopback (port 0 by default), driven in-process from Rust by tests, the
//! demo and the benchmarks, and served by `eures-sync sim`. A crate of its
//! own so that a production build of the agent carries none of it (the
//! agent links it only with its default `simulators` feature).
//!
//! - [`jobag`] owns the source side of SPEC 4.1: the change feed, the
//!   snapshot and single-posting reads, plus [`jobag::sample_posting`].
//! - [`eures`] owns the push gateway of SPEC 4.2: PUT / DELETE / listing of
//!   job vacancies, fault injection and a request log for assertions.
//! - This file owns what both share: the accept loop (`Server`), which can
//!   close a connection without answering, and small HTTP helpers.
//!
//! Both simulators keep their state in memory behind `std::sync` locks that
//! are held only for map and vector operations; JSON is serialised once when
//! a value enters the simulator and pages are assembled by copying bytes, so
//! they keep up with the benchmarks (100k postings, thousands of requests/s).
//!
//! Routing is a small match on method and path rather than an axum `Router`:
//! the handlers must be able to answer "close the connection, send nothing"
//! (see `DropConnection`), which hyper supports directly when the service
//! future fails.

pub mod conformance;
pub mod eures;
pub mod jobag;

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The loopback address with an ephemeral port: the default `listen` of both
/// simulators.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Largest request body a simulator reads (a PUT carries one document).
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;

/// Returned by a handler to close the connection without any response:
/// hyper drops the connection when the service future fails.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated dropped connection")
    }
}

impl std::error::Error for DropConnection {}

/// What a handler yields: a response, or a dropped connection.
pub(crate) type HandlerResult = Result<Response<Body>, DropConnection>;

/// A running HTTP/1.1 server: the accept loop and its connections, stopped by
/// [`Server::stop`] or on drop.
pub(crate) struct Server {
    /// The bound address (the real port when `listen` asked for port 0).
    addr: SocketAddr,
    /// Set to `true` to stop the accept loop and close every connection;
    /// dropping it has the same effect.
    stop: watch::Sender<bool>,
    /// The accept loop, aborted on stop in case it is blocked elsewhere.
    accept: JoinHandle<()>,
}

impl Server {
    /// Binds `listen` and serves every connection with `handler`.
    pub(crate) async fn start<H, F>(listen: SocketAddr, handler: H) -> io::Result<Server>
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = HandlerResult> + Send + 'static,
    {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, Arc::new(handler), stop_rx));
        Ok(Server { addr, stop, accept })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and closes open connections (in-flight requests are
    /// abandoned). Idempotent.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
        self.accept.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop<H, F>(
    listener: TcpListener,
    handler: Arc<H>,
    mut stop_rx: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = HandlerResult> + Send + 'static,
{
    loop {
        let stream = tokio::select! {
            biased;
            _ = stopped(&mut stop_rx) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if *stop_rx.borrow() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handler(req));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                biased;
                _ = stopped(&mut stop_rx) => {}
                // A connection error includes the simulated drop: nothing to report.
                _ = conn => {}
            }
        });
    }
}

/// Resolves once the stop flag is set or its sender is gone.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Reads a whole request body, at most [`MAX_BODY`] bytes.
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, axum::Error> {
    axum::body::to_bytes(Body::new(body), MAX_BODY).await
}

/// A JSON response from bytes that already hold the JSON.
pub(crate) fn json_bytes(status: StatusCode, json: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::from(json.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON response from a value.
pub(crate) fn json_value(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

/// A response without a body.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// `{"errors": [{"field": ..., "message": ...}]}`, the error body of SPEC 4.2.
pub(crate) fn error_body(status: StatusCode, field: &str, message: &str) -> Response<Body> {
    json_value(
        status,
        &serde_json::json!({"errors": [{"field": field, "message": message}]}),
    )
}

/// Whether `headers` carry `Authorization: Bearer <expected>`.
pub(crate) fn bearer_ok(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, token)) => scheme.eq_ignore_ascii_case("bearer") && token.trim() == expected,
        None => false,
    }
}

/// The value of query parameter `name` (percent-decoded), if present.
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Parses the `limit` query parameter: absent means `default`, values above
/// `max` are capped, 0 counts as 1; anything not a number is an error.
pub(crate) fn parse_limit(
    query: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, String> {
    match query_param(query, "limit") {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.clamp(1, max))
            .map_err(|_| format!("limit must be a non-negative integer, got {v:?}")),
    }
}

/// Percent-decodes one path segment; `None` when the result is not UTF-8 or
/// an escape is malformed.
pub(crate) fn decode_segment(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The current time as RFC 3339 UTC with millisecond precision.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_segments() {
        assert_eq!(decode_segment("abc").as_deref(), Some("abc"));
        assert_eq!(decode_segment("a%20b%C3%B8").as_deref(), Some("a bø"));
        assert_eq!(decode_segment("a%2"), None);
        assert_eq!(decode_segment("%ff"), None);
    }

    #[test]
    fn parses_limits() {
        assert_eq!(parse_limit(None, 500, 5000), Ok(500));
        assert_eq!(parse_limit(Some("limit=10"), 500, 5000), Ok(10));
        assert_eq!(parse_limit(Some("limit=99999"), 500, 5000), Ok(5000));
        assert_eq!(parse_limit(Some("limit=0"), 500, 5000), Ok(1));
        assert!(parse_limit(Some("limit=x"), 500, 5000).is_err());
    }

    #[test]
    fn checks_bearer() {
        let mut h = HeaderMap::new();
        assert!(!bearer_ok(&h, "t"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(bearer_ok(&h, "t"));
        assert!(!bearer_ok(&h, "u"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic t"));
        assert!(!bearer_ok(&h, "t"));
    }
}
