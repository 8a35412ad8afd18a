//! The worker pool: a fixed number of threads that take ready connections from
//! the acceptor, drive the TLS handshake and read request heads without
//! blocking, and run each exchange with the backend on deadline-bounded I/O.
//!
//! A connection whose handshake or head is not complete when its socket would
//! block goes back to the acceptor, so slow or silent clients never pin a
//! worker: only a connection with a whole request head takes one. A panic while
//! serving one connection is caught here; the connection is dropped (its slot
//! given back by `Slot`'s `Drop`) and the worker goes on.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::acceptor::AcceptorHandle;
use crate::access_log::{AccessLog, Entry};
use crate::config::ProxyConfig;
use crate::conn::{ClientConn, Fill, Handshake, MinRate, Phase, READ_CHUNK_BYTES};
use crate::error::ProxyError;
use crate::forward::{self, Failure};
use crate::http1::{self, BodyFraming, Request};
use crate::readbuf::ReadBuf;
use crate::routes::{self, SharedRoutes};
use crate::sys::{self, Interest};
use crate::upstream::Pool;

/// Request bodies up to this size are read away when nexushub answers a request
/// itself, so the connection can go on; larger ones close it instead.
pub const DISCARD_BODY_MAX_BYTES: u64 = 64 * 1024;
/// Size of each read from a backend while streaming a response.
pub const BACKEND_READ_BYTES: usize = 64 * 1024;
/// How long a worker waits for the next request on a keep-alive connection
/// before parking it (see `serve`). Chosen by measurement (benches/compare).
pub const KEEPALIVE_LINGER: Duration = Duration::from_millis(2);
/// Worker thread stack size.
const WORKER_STACK_BYTES: usize = 256 * 1024;

/// Every deadline and cap a worker applies, from `[proxy]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Whole request head, from its first byte.
    pub head_timeout: Duration,
    /// Keep-alive wait for the next request.
    pub idle_timeout: Duration,
    /// Connecting to a backend.
    pub backend_connect_timeout: Duration,
    /// Waiting for the backend's response head, and between its reads and writes.
    pub backend_timeout: Duration,
    /// Waiting for the client between reads of a request body and between writes of a response.
    pub client_timeout: Duration,
    /// Largest request head.
    pub max_head_bytes: usize,
    /// The slowest a client may be while we wait on it.
    pub min_rate: MinRate,
    /// How long a worker waits for a keep-alive client's next request before
    /// parking the connection.
    pub keepalive_linger: Duration,
}

impl Limits {
    /// The limits of a `[proxy]` section.
    pub fn from_config(p: &ProxyConfig) -> Limits {
        Limits {
            head_timeout: p.head_timeout,
            idle_timeout: p.idle_timeout,
            backend_connect_timeout: p.backend_connect_timeout,
            backend_timeout: p.backend_timeout,
            client_timeout: p.client_timeout,
            max_head_bytes: p.max_head_bytes,
            min_rate: MinRate {
                bytes_per_sec: p.min_data_rate,
                grace: p.min_data_rate_grace,
            },
            keepalive_linger: KEEPALIVE_LINGER,
        }
    }
}

/// What every worker shares.
#[derive(Debug)]
pub struct Shared {
    /// Deadlines and caps.
    pub limits: Limits,
    /// The route map.
    pub routes: SharedRoutes,
    /// Where connections go back to wait.
    pub acceptor: AcceptorHandle,
    /// The access log.
    pub access: Arc<AccessLog>,
    /// Requests being served right now (for a graceful shutdown).
    pub in_flight: Arc<AtomicUsize>,
    /// Set when shutting down: answer with `Connection: close`, park nothing.
    pub closing: Arc<AtomicBool>,
    /// Idle backend connections expire after this.
    pub backend_idle_timeout: Duration,
}

/// One worker's own buffers and backend pool, reused across requests.
#[derive(Debug)]
pub struct WorkerState {
    /// Idle backend connections.
    pub pool: Pool,
    /// Bytes read from the backend.
    pub rbuf: ReadBuf,
    /// Bytes on their way out (to the backend or the client).
    pub out: Vec<u8>,
}

impl WorkerState {
    fn new(backend_idle_timeout: Duration) -> WorkerState {
        WorkerState {
            pool: Pool::new(backend_idle_timeout),
            rbuf: ReadBuf::new(BACKEND_READ_BYTES),
            out: Vec::with_capacity(BACKEND_READ_BYTES * 2),
        }
    }
}

/// Starts `n` workers taking connections from `rx`.
pub fn spawn(
    n: usize,
    rx: Receiver<ClientConn>,
    shared: Arc<Shared>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..n)
        .map(|i| {
            let rx = rx.clone();
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || run(rx, shared))
        })
        .collect()
}

fn run(rx: Receiver<ClientConn>, shared: Arc<Shared>) {
    let mut state = WorkerState::new(shared.backend_idle_timeout);
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(conn) => {
                let peer = conn.peer;
                let res = catch_unwind(AssertUnwindSafe(|| serve(conn, &shared, &mut state, &rx)));
                if res.is_err() {
                    log::error!(
                        "{peer}: worker panicked while serving this connection; it was closed"
                    );
                    state = WorkerState::new(shared.backend_idle_timeout);
                }
            }
            Err(RecvTimeoutError::Timeout) => state.pool.sweep(),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// What happens to the connection after a request.
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close politely; `linger` when unread client bytes may remain.
    Close { linger: bool },
    /// Drop without close_notify (a response was cut short, or the client failed).
    Abort,
}

/// Serves a connection until it would block (then parks it) or ends.
fn serve(mut conn: ClientConn, sh: &Shared, st: &mut WorkerState, queue: &Receiver<ClientConn>) {
    if conn.phase == Phase::Handshake {
        match conn.drive_handshake() {
            Ok(Handshake::Done) => {
                conn.phase = Phase::Idle;
                conn.deadline = Instant::now() + sh.limits.idle_timeout;
            }
            Ok(Handshake::NeedRead) => return sh.acceptor.park(conn, Interest::Read),
            Ok(Handshake::NeedWrite) => return sh.acceptor.park(conn, Interest::Write),
            Err(e) => {
                log::info!("{}: TLS handshake failed: {e}", conn.peer);
                return conn.abort();
            }
        }
    }
    let max_head = sh.limits.max_head_bytes;
    // Set after a response: the next request of a busy keep-alive client usually
    // arrives within a round trip, and waiting that long here is cheaper than a
    // trip through the acceptor (two thread wake-ups).
    let mut may_linger = false;
    loop {
        match http1::parse_request(&conn.buf, max_head) {
            Ok(Some(req)) => {
                conn.buf.drain(..req.head_len);
                conn.requests += 1;
                match handle(&mut conn, req, sh, st) {
                    Next::KeepAlive => {
                        conn.phase = Phase::Idle;
                        conn.deadline = Instant::now() + sh.limits.idle_timeout;
                        may_linger = true;
                    }
                    Next::Close { linger } => return conn.close(linger),
                    Next::Abort => return conn.abort(),
                }
            }
            Ok(None) => match conn.fill_nonblocking(max_head + READ_CHUNK_BYTES) {
                Ok(Fill::Progress) => {
                    if conn.phase != Phase::Head && !conn.buf.is_empty() {
                        conn.phase = Phase::Head;
                        conn.deadline = Instant::now() + sh.limits.head_timeout;
                    }
                }
                Ok(Fill::WouldBlock) => {
                    if conn.buf.is_empty() && sh.closing.load(Ordering::Relaxed) {
                        return conn.close(false);
                    }
                    // Only when no other connection is waiting for a worker.
                    if may_linger
                        && conn.buf.is_empty()
                        && !sh.limits.keepalive_linger.is_zero()
                        && queue.is_empty()
                    {
                        may_linger = false;
                        let fd = conn.sock.as_raw_fd();
                        if let Ok(true) =
                            sys::poll_one(fd, Interest::Read, sh.limits.keepalive_linger)
                        {
                            continue;
                        }
                    }
                    if conn.phase != Phase::Head && !conn.buf.is_empty() {
                        conn.phase = Phase::Head;
                        conn.deadline = Instant::now() + sh.limits.head_timeout;
                    }
                    return sh.acceptor.park(conn, Interest::Read);
                }
                Ok(Fill::Eof) => {
                    if !conn.buf.is_empty() {
                        log::info!("{}: closed in the middle of a request head", conn.peer);
                    }
                    return conn.close(false);
                }
                Err(e) => {
                    log::info!("{}: connection failed: {e}", conn.peer);
                    return conn.abort();
                }
            },
            Err(e) => {
                log::info!("{}: bad request: {}", conn.peer, e.reason());
                let err = ProxyError::Request(e);
                let started = Instant::now();
                let status = answer(&mut conn, &err, None, false, sh);
                log_access(sh, conn.peer, None, status, started, "-");
                return conn.close(true);
            }
        }
    }
}

/// Routes and serves one request whose head is complete.
fn handle(conn: &mut ClientConn, req: Request, sh: &Shared, st: &mut WorkerState) -> Next {
    let started = Instant::now();
    let _in_flight = InFlight::enter(&sh.in_flight);
    conn.waited = Duration::ZERO;
    let closing = sh.closing.load(Ordering::Relaxed);
    if let Some(sni) = &conn.sni {
        if *sni != req.host {
            let err = ProxyError::Misdirected {
                sni: sni.clone(),
                host: req.host.clone(),
            };
            return answer_request(conn, &req, &err, started, "-", sh);
        }
    }
    let Some(route) = routes::lookup(&sh.routes, &req.host) else {
        let err = ProxyError::NoRoute {
            host: req.host.clone(),
        };
        return answer_request(conn, &req, &err, started, "-", sh);
    };
    let Some(addr) = route.backend else {
        let err = ProxyError::Unavailable {
            app: route.app.clone(),
            state: route.unavailable.clone(),
            retry_after_secs: route.retry_after_secs,
        };
        return answer_request(conn, &req, &err, started, &route.app, sh);
    };
    // Counted per instance, so that a replaced one is stopped only once idle.
    let _busy = InFlight::enter(&route.in_flight);
    match forward::exchange(conn, &req, &route.app, addr, &sh.limits, st, closing) {
        Ok(done) => {
            log_access(
                sh,
                conn.peer,
                Some(&req),
                (done.status, done.body_bytes),
                started,
                &route.app,
            );
            if done.keep_alive {
                Next::KeepAlive
            } else {
                Next::Close { linger: false }
            }
        }
        Err(Failure::Answer { error, body_read }) => {
            log::warn!("{} {} {}: {error}", conn.peer, req.host, req.target);
            let status = answer(
                conn,
                &error,
                Some(&req),
                !body_read || closing || !req.keep_alive,
                sh,
            );
            log_access(sh, conn.peer, Some(&req), status, started, &route.app);
            if status.0 == 0 {
                Next::Abort
            } else if body_read && !error.answer().close && req.keep_alive && !closing {
                Next::KeepAlive
            } else {
                Next::Close { linger: !body_read }
            }
        }
        Err(Failure::Abort {
            reason,
            status,
            body_bytes,
        }) => {
            log::warn!("{} {} {}: {reason}", conn.peer, req.host, req.target);
            log_access(
                sh,
                conn.peer,
                Some(&req),
                (status.unwrap_or(0), body_bytes),
                started,
                &route.app,
            );
            Next::Abort
        }
    }
}

/// Answers a request nexushub serves itself (404, 421, 503), first reading a
/// small body away so the connection can go on, or closing it otherwise.
fn answer_request(
    conn: &mut ClientConn,
    req: &Request,
    err: &ProxyError,
    started: Instant,
    app: &str,
    sh: &Shared,
) -> Next {
    let body_done = discard_body(conn, req, &sh.limits);
    let closing = sh.closing.load(Ordering::Relaxed);
    let keep = body_done && req.keep_alive && !closing;
    let status = answer(conn, err, Some(req), !keep, sh);
    log_access(sh, conn.peer, Some(req), status, started, app);
    if status.0 == 0 {
        Next::Abort
    } else if keep {
        Next::KeepAlive
    } else {
        Next::Close { linger: !body_done }
    }
}

/// Reads away a request body of at most [`DISCARD_BODY_MAX_BYTES`] that the
/// client is already sending. Returns true when no body bytes remain unread.
fn discard_body(conn: &mut ClientConn, req: &Request, limits: &Limits) -> bool {
    let len = match req.body {
        BodyFraming::None | BodyFraming::Length(0) => return true,
        // A client waiting for 100-continue has not sent it; a chunked body has no
        // known size: close instead of reading.
        BodyFraming::Chunked => return false,
        BodyFraming::Length(_) if req.expect_continue => return false,
        BodyFraming::Length(n) => n,
    };
    if len > DISCARD_BODY_MAX_BYTES {
        return false;
    }
    let mut left = len as usize;
    let deadline = Instant::now() + limits.head_timeout;
    loop {
        let take = left.min(conn.buf.len());
        conn.buf.drain(..take);
        left -= take;
        if left == 0 {
            return true;
        }
        match conn.fill_until(READ_CHUNK_BYTES, deadline) {
            Ok(true) => {}
            _ => return false,
        }
    }
}

/// Writes nexushub's own answer for `err`. Returns (status, body bytes), with
/// status 0 when the client could not be written to.
fn answer(
    conn: &mut ClientConn,
    err: &ProxyError,
    req: Option<&Request>,
    close: bool,
    sh: &Shared,
) -> (u16, u64) {
    let a = err.answer();
    let keep_alive = !(close || a.close);
    let head_only = req.is_some_and(|r| r.is_head());
    let retry = a.retry_after_secs.map(|s| s.to_string());
    let extra: Vec<(&str, &str)> = retry.iter().map(|s| ("Retry-After", s.as_str())).collect();
    let mut out = Vec::with_capacity(256);
    http1::write_local_response(&mut out, a.status, &a.text, &extra, keep_alive, head_only);
    let deadline = Instant::now() + sh.limits.client_timeout;
    match conn
        .write_all(&out, deadline)
        .and_then(|_| conn.flush(deadline))
    {
        Ok(()) => (
            a.status,
            if head_only {
                0
            } else {
                a.text.len() as u64 + 1
            },
        ),
        Err(e) => {
            log::debug!("{}: could not send {}: {e}", conn.peer, a.status);
            (0, 0)
        }
    }
}

fn log_access(
    sh: &Shared,
    client: SocketAddr,
    req: Option<&Request>,
    status: (u16, u64),
    started: Instant,
    app: &str,
) {
    if sh.access.is_off() {
        return;
    }
    sh.access.log(&Entry {
        client,
        host: req.map_or("-", |r| r.host.as_str()),
        method: req.map_or("-", |r| r.method.as_str()),
        path: req.map_or("-", |r| r.target.as_str()),
        status: status.0,
        bytes: status.1,
        duration: started.elapsed(),
        app,
    });
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
