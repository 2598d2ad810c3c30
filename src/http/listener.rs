//! The connection loop behind every address the agent listens on (SPEC 4.5):
//! the listener is exposed to EURES in pull mode, so nothing a client does
//! may hold a connection, a file descriptor or a task for long.
//!
//! - At most [`Limits::max_connections`] connections are open at once; the
//!   next one waits in the kernel's accept queue (it costs this process
//!   nothing) until one closes. Each listening address has its own count,
//!   so clients holding every slot of one leave the other's alone.
//! - A connection must deliver a complete request head within
//!   [`Limits::head_timeout`] of being accepted, or of the first byte of its
//!   next request; one that sends nothing or drips header lines is closed.
//! - A keep-alive connection with no request is closed after
//!   [`Limits::idle_timeout`], and so is one whose client stopped reading a
//!   response (no byte moved for that long).
//! - A handler that has not answered within [`Limits::request_timeout`] is
//!   answered `503`.
//!
//! hyper's own header timeout is not used: it also runs between keep-alive
//! requests, which would make the idle timeout the head timeout. This
//! module never reads a body itself (the routes bound theirs) and never
//! logs one line per connection or request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// How long clients may take, and how many may be connected at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From accept (or a keep-alive request's first byte) to a complete
    /// request head.
    pub head_timeout: Duration,
    /// A keep-alive connection between requests; also how long a response
    /// may stall because the client stopped reading.
    pub idle_timeout: Duration,
    /// From a complete request head to the response head.
    pub request_timeout: Duration,
    /// Connections open at once on one listening address.
    pub max_connections: usize,
}

/// Connections `/metrics`, `/healthz` and `/readyz` may hold on a listener
/// of their own: a scraper or two and the supervisor's probes each keep
/// one, an operator's curl another; the rest is headroom. A flood there
/// costs at most this many descriptors and tasks.
pub const OPS_CONNECTIONS: usize = 64;

/// Connections the Input API may hold on a listener of its own: EURES polls
/// with a handful, through a proxy that pools them; the rest is room for
/// the proxy's pool and the portal's retries.
pub const INPUT_API_CONNECTIONS: usize = 256;

impl Limits {
    /// `http.listen` when the Input API listens apart.
    pub fn ops() -> Limits {
        Limits {
            max_connections: OPS_CONNECTIONS,
            ..Limits::default()
        }
    }

    /// `http.input_api_listen`.
    pub fn input_api() -> Limits {
        Limits {
            max_connections: INPUT_API_CONNECTIONS,
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    /// SPEC 4.5's 10 s and 60 s. 30 s lets a getDetails of 1,000 documents
    /// on a slow database finish. One listener serving everything gets what
    /// two would have together, so both layouts stay within the same
    /// descriptor budget: well inside the usual 1,024 a service gets, next
    /// to the database pool and the clients of JobAG and EURES, even with
    /// every slot taken.
    fn default() -> Self {
        Limits {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: OPS_CONNECTIONS + INPUT_API_CONNECTIONS,
        }
    }
}

/// Binds `listen` (`key` names the setting in errors) and serves `app` on
/// it under `limits` until `stop` turns true. Returns the bound address and
/// the task, which ends once every connection has closed.
pub async fn serve_router(
    key: &'static str,
    listen: SocketAddr,
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("{key} {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, app, limits, stop));
    Ok((addr, task))
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let mut last_accept_error: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = stop.changed() => continue,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => continue,
        };
        match accepted {
            Ok((tcp, _)) => {
                let app = app.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    connection(tcp, app, limits, stop).await;
                    drop(slot);
                });
            }
            Err(e) => {
                // Out of descriptors, typically: give closing connections a
                // moment instead of spinning, and say so once in a while.
                if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "http: accepting a connection failed");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    // Every connection holds a slot until it is closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Serves one connection until the client closes it, a limit cuts it off,
/// or the listener stops (in-flight requests are finished first).
async fn connection(tcp: TcpStream, app: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let clock = Arc::new(Clock::new(Instant::now()));
    let io = TokioIo::new(Watched {
        io: tcp,
        clock: clock.clone(),
    });
    let service_clock = clock.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = Busy::begin(service_clock.clone());
        let app = app.clone();
        async move {
            let response =
                match tokio::time::timeout(limits.request_timeout, app.oneshot(req.map(Body::new)))
                    .await
                {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => too_slow(),
                };
            Ok::<_, Infallible>(response.map(|body| Body::new(Guarded { body, _busy: guard })))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            reason = clock.expired(&limits) => {
                crate::telemetry::http_connection_cut(reason.as_str());
                return;
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

fn too_slow() -> Response<Body> {
    let mut response = Response::new(Body::from("the request took too long; try again\n"));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Why a connection was cut off (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// No complete request head in time.
    Head,
    /// Nothing moved for the idle timeout (between requests, or a response
    /// the client stopped reading).
    Idle,
}

impl Cut {
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::Head => "head_timeout",
            Cut::Idle => "idle_timeout",
        }
    }
}

/// Where a connection stands, for its deadline.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head since then.
    Head(Instant),
    /// A request is being answered.
    Busy,
    /// Between requests since then.
    Idle(Instant),
}

#[derive(Debug)]
struct ClockState {
    phase: Phase,
    /// Requests being answered (HTTP/1.1 pipelining can make it two).
    in_flight: usize,
    /// Last time a byte moved either way.
    last_io: Instant,
}

/// One connection's timing, moved by its socket and its requests.
#[derive(Debug)]
struct Clock(Mutex<ClockState>);

impl Clock {
    fn new(now: Instant) -> Clock {
        Clock(Mutex::new(ClockState {
            phase: Phase::Head(now),
            in_flight: 0,
            last_io: now,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // The state stays consistent whatever panicked while holding it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes arrived: after an idle spell, the next request's head began.
    fn read(&self, now: Instant) {
        let mut s = self.state();
        s.last_io = now;
        if let Phase::Idle(_) = s.phase {
            s.phase = Phase::Head(now);
        }
    }

    fn wrote(&self, now: Instant) {
        self.state().last_io = now;
    }

    /// A request head is complete: its answer is under way.
    fn begin(&self) {
        let mut s = self.state();
        s.in_flight += 1;
        s.phase = Phase::Busy;
    }

    /// An answer is written out (or abandoned).
    fn end(&self, now: Instant) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.phase = Phase::Idle(now);
        }
    }

    /// When the connection is due to be cut, and why.
    fn deadline(&self, limits: &Limits) -> (Instant, Cut) {
        let s = self.state();
        match s.phase {
            Phase::Head(since) => (since + limits.head_timeout, Cut::Head),
            Phase::Idle(since) => (since + limits.idle_timeout, Cut::Idle),
            // A handler may be silent up to its own timeout.
            Phase::Busy => (
                s.last_io + limits.idle_timeout.max(limits.request_timeout),
                Cut::Idle,
            ),
        }
    }

    /// Resolves once the connection has overrun its current deadline.
    async fn expired(&self, limits: &Limits) -> Cut {
        loop {
            let (at, _) = self.deadline(limits);
            tokio::time::sleep_until(at).await;
            // The phase may have moved meanwhile: then wait for the new one.
            let (at, why) = self.deadline(limits);
            if at <= Instant::now() {
                return why;
            }
        }
    }
}

/// Held from a request's head until its response body is dropped (written
/// out or abandoned).
struct Busy(Arc<Clock>);

impl Busy {
    fn begin(clock: Arc<Clock>) -> Busy {
        clock.begin();
        Busy(clock)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end(Instant::now());
    }
}

/// A response body that keeps its request [`Busy`] until it is dropped.
struct Guarded {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling the connection's [`Clock`] when bytes move.
struct Watched {
    io: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read(Instant::now());
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote(Instant::now());
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote(Instant::now());
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 4,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_connection_moves_between_head_busy_and_idle_deadlines() {
        let t0 = Instant::now();
        let clock = Clock::new(t0);
        assert_eq!(clock.deadline(&limits()), (t0 + secs(10), Cut::Head));
        // Bytes of a head do not extend the head's deadline.
        clock.read(t0 + secs(3));
        assert_eq!(clock.deadline(&limits()), (t0 + secs(10), Cut::Head));

        clock.begin();
        assert_eq!(clock.deadline(&limits()), (t0 + secs(63), Cut::Idle));
        clock.wrote(t0 + secs(8));
        assert_eq!(clock.deadline(&limits()), (t0 + secs(68), Cut::Idle));
        // A pipelined second request keeps the connection busy until both
        // answers are out.
        clock.begin();
        clock.end(t0 + secs(9));
        assert_eq!(clock.deadline(&limits()), (t0 + secs(68), Cut::Idle));
        clock.end(t0 + secs(10));
        assert_eq!(clock.deadline(&limits()), (t0 + secs(70), Cut::Idle));

        // Idle bytes written (none read) do not start a head.
        clock.wrote(t0 + secs(11));
        assert_eq!(clock.deadline(&limits()), (t0 + secs(70), Cut::Idle));
        // The next request's first byte starts a new head deadline.
        clock.read(t0 + secs(30));
        assert_eq!(clock.deadline(&limits()), (t0 + secs(40), Cut::Head));
    }

    #[test]
    fn a_silent_handler_may_take_its_whole_request_timeout() {
        let t0 = Instant::now();
        let clock = Clock::new(t0);
        let patient = Limits {
            request_timeout: secs(90),
            ..limits()
        };
        clock.begin();
        assert_eq!(clock.deadline(&patient), (t0 + secs(90), Cut::Idle));
    }
}
