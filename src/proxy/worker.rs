//! The worker pool: a fixed number of threads that wait on the shared epoll set
//! of parked connections (`park.rs`), drive the TLS handshake and read request
//! heads without blocking, and run each exchange with the backend.
//!
//! A connection whose handshake or head is not complete when its socket would
//! block is parked again, and so is an exchange whose client is not ready (a
//! request body not yet sent, a response not yet read) or whose backend has not
//! answered yet: slow or silent peers never pin a worker. A
//! panic while serving one connection is caught here; the connection is dropped
//! (its slot given back by `Slot`'s `Drop`) and the worker goes on.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::access_log::{AccessLog, Entry};
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::http1::{self, BodyFraming, Request};
use crate::proxy::backend::Pool;
use crate::proxy::client::{
    ClientConn, Fill, Handshake, MinRate, Phase, LINGER, LINGER_MAX_BYTES, READ_CHUNK_BYTES,
};
use crate::proxy::exchange::{Exchange, Failure, Progress, Waiting};
use crate::proxy::park::ParkSet;
use crate::proxy::readbuf::ReadBuf;
use crate::routes::{self, SharedRoutes};
use crate::sys::Interest;

/// Request bodies up to this size are read away when nexushub answers a request
/// itself, so the connection can go on; larger ones close it instead.
pub const DISCARD_BODY_MAX_BYTES: u64 = 64 * 1024;
/// Size of each read from a backend while streaming a response.
pub const BACKEND_READ_BYTES: usize = 64 * 1024;
/// Most requests one connection has served in a row before it goes back to
/// the park set (re-polled, so it is served again soon): a client pipelining
/// requests that nexushub answers itself never waits on anyone else, and
/// would otherwise hold its worker for as long as it keeps sending.
pub const REQUESTS_PER_TURN: u32 = 16;
/// Worker thread stack size.
const WORKER_STACK_BYTES: usize = 256 * 1024;
/// How long an idle worker waits on the park set before looking after the
/// backend pool and the shutdown flag.
const WAIT_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a worker closes the pool's expired idle backend connections.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

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
    /// Where connections wait, and where idle workers wait for them.
    pub parked: Arc<ParkSet>,
    /// The access log.
    pub access: Arc<AccessLog>,
    /// Requests being served right now (for a graceful shutdown).
    pub in_flight: Arc<AtomicUsize>,
    /// Set when shutting down: answer with `Connection: close`, park nothing.
    pub closing: Arc<AtomicBool>,
    /// Idle backend connections, shared by the workers.
    pub pool: Arc<Pool>,
}

/// One worker's own buffers (and a handle on the shared backend pool), reused
/// across requests.
#[derive(Debug)]
pub struct WorkerState {
    /// Idle backend connections (shared).
    pub pool: Arc<Pool>,
    /// Bytes read from the backend.
    pub rbuf: ReadBuf,
    /// Bytes on their way out (to the backend or the client).
    pub out: Vec<u8>,
}

impl WorkerState {
    fn new(pool: Arc<Pool>) -> WorkerState {
        WorkerState {
            pool,
            rbuf: ReadBuf::new(BACKEND_READ_BYTES),
            out: Vec::with_capacity(BACKEND_READ_BYTES * 2),
        }
    }
}

/// The most workers that help: one per core (at least the default's 2). A
/// worker never waits on a client, a backend or a file, so it is busy whenever
/// it runs; more of them than cores only take turns on the same cores, and all
/// wait on one epoll set, where each event wakes the one asleep longest
/// (cache-cold): measured on 2 cores, 64 workers served 0.56 to 0.84 times
/// the requests/s of 2, at 1.4 to 2.2 times the CPU per request.
pub fn useful_workers() -> usize {
    let cores = thread::available_parallelism().map_or(usize::MAX, |n| n.get());
    cores.max(crate::config::DEFAULT_WORKERS_RANGE.0)
}

/// Starts `n` workers serving the connections parked in `shared.parked`.
pub fn spawn(n: usize, shared: Arc<Shared>) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..n)
        .map(|i| {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || run(shared))
        })
        .collect()
}

/// A worker's loop. It ends once shutdown has begun and nothing is parked (the
/// last exchanges finished).
fn run(shared: Arc<Shared>) {
    let mut state = WorkerState::new(Arc::clone(&shared.pool));
    let mut last_sweep = Instant::now();
    loop {
        match shared.parked.wait(WAIT_TIMEOUT) {
            Some(conn) => {
                let peer = conn.peer;
                let res = catch_unwind(AssertUnwindSafe(|| serve(conn, &shared, &mut state)));
                if res.is_err() {
                    log::error!(
                        "{peer}: worker panicked while serving this connection; it was closed"
                    );
                    state = WorkerState::new(Arc::clone(&shared.pool));
                }
            }
            None => {
                if shared.parked.is_closing() && shared.parked.is_empty() {
                    return;
                }
            }
        }
        if last_sweep.elapsed() >= POOL_SWEEP_INTERVAL {
            state.pool.sweep();
            last_sweep = Instant::now();
        }
    }
}

/// An exchange whose client let its deadline pass while parked: logged, and the
/// connection dropped (its response, if one was under way, cut short).
pub fn expire(mut conn: Box<ClientConn>, access: &AccessLog) {
    if let Some(ex) = conn.exchange.take() {
        let (status, bytes) = ex.sent();
        let what = if status == 0 {
            "sending the request body"
        } else {
            "receiving the response"
        };
        log::warn!(
            "{} {} {}: client: timed out while {what}",
            conn.peer,
            ex.req.host,
            ex.req.target
        );
        if !access.is_off() {
            access.log(&Entry {
                client: conn.peer,
                host: &ex.req.host,
                method: &ex.req.method,
                path: &ex.req.target,
                status,
                bytes,
                duration: ex.started.elapsed(),
                app: &ex.app,
            });
        }
    }
    conn.abort();
}

/// What happens to the connection after a request.
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close politely; `linger` when unread client bytes may remain.
    Close { linger: bool },
    /// Drop without close_notify (a response was cut short, or the client failed).
    Abort,
    /// The exchange (in `conn.exchange`) waits for this.
    Park(Waiting),
}

/// Serves a connection until it would block (then parks it) or ends.
fn serve(mut conn: Box<ClientConn>, sh: &Shared, st: &mut WorkerState) {
    // Set after a response, when the socket is known to be drained.
    let mut drained = false;
    if let Some(ex) = conn.exchange.take() {
        if let Some(at) = conn.parked_at.take() {
            conn.waited += at.elapsed();
        }
        let next = drive(&mut conn, *ex, sh, st);
        let Some(c) = carry_on(conn, next, sh) else {
            return;
        };
        conn = c;
        drained = true;
    }
    if conn.phase == Phase::Closing {
        return closing(conn, sh);
    }
    if conn.phase == Phase::Handshake {
        match conn.drive_handshake() {
            Ok(Handshake::Done) => {
                conn.phase = Phase::Idle;
                conn.deadline = Instant::now() + sh.limits.idle_timeout;
            }
            Ok(Handshake::NeedRead) => return sh.parked.park(conn, Interest::Read),
            Ok(Handshake::NeedWrite) => return sh.parked.park(conn, Interest::Write),
            Err(e) => {
                log::info!("{}: TLS handshake failed: {e}", conn.peer);
                return conn.abort();
            }
        }
    }
    let max_head = sh.limits.max_head_bytes;
    let mut served = 0u32;
    loop {
        if conn.tls.wants_write() {
            // Answers a pipelining client has not read yet: wait for it to
            // before answering more, so what rustls holds stays bounded.
            match conn.flush_nonblocking() {
                Ok(true) => {}
                Ok(false) => {
                    conn.deadline = Instant::now() + sh.limits.client_timeout;
                    // As at the end of a turn below.
                    conn.unread = true;
                    return sh.parked.park(conn, Interest::Write);
                }
                Err(e) => {
                    log::info!("{}: connection failed: {e}", conn.peer);
                    return conn.abort();
                }
            }
        }
        match http1::parse_request(&conn.buf, max_head) {
            Ok(Some(_)) if served >= REQUESTS_PER_TURN => {
                // Its turn is over. Parked for a write, re-polled: a socket
                // with room to write is ready at once, so it comes back as
                // soon as a worker is free, whether the rest of its requests
                // wait in `buf` (no read event would come for them) or in the
                // socket. One whose client does not read its answers waits
                // for it to, as it would to be answered.
                //
                // The event that brings it back may be the one that said more
                // bytes came (it reports both): after this turn, read the
                // socket before parking idle rather than trust an old read.
                conn.unread = true;
                conn.repoll = true;
                return sh.parked.park(conn, Interest::Write);
            }
            Ok(Some(req)) => {
                served += 1;
                conn.buf.drain(..req.head_len);
                conn.requests += 1;
                let next = handle(&mut conn, req, sh, st);
                let Some(c) = carry_on(conn, next, sh) else {
                    return;
                };
                conn = c;
                drained = true;
            }
            Ok(None) => {
                // Right after a response, when the last read found the socket
                // empty, park at once instead of paying for a read that would
                // say EAGAIN. rustls holds nothing unread then (all plaintext is
                // in `buf`), and a request that came since has sent the
                // connection's socket an event that finds it busy, which makes
                // the parking re-poll it (`park.rs`): parking without a read
                // loses nothing. (Waiting here a moment for the next request was
                // measured too: it left a core idle while the worker slept on
                // one connection.)
                if drained {
                    drained = false;
                    if conn.buf.is_empty()
                        && !conn.unread
                        && !conn.hangup
                        && !sh.closing.load(Ordering::Relaxed)
                    {
                        conn.trim_idle();
                        return sh.parked.park(conn, Interest::Read);
                    }
                }
                match conn.fill_nonblocking(max_head + READ_CHUNK_BYTES) {
                    Ok(Fill::Progress) => {
                        if conn.phase != Phase::Head && !conn.buf.is_empty() {
                            conn.phase = Phase::Head;
                            conn.deadline = Instant::now() + sh.limits.head_timeout;
                        }
                    }
                    Ok(Fill::WouldBlock) => {
                        if conn.buf.is_empty() && sh.closing.load(Ordering::Relaxed) {
                            return conn.close();
                        }
                        if conn.phase != Phase::Head && !conn.buf.is_empty() {
                            conn.phase = Phase::Head;
                            conn.deadline = Instant::now() + sh.limits.head_timeout;
                        }
                        if conn.buf.is_empty() {
                            conn.trim_idle();
                        }
                        return sh.parked.park(conn, Interest::Read);
                    }
                    Ok(Fill::Eof) => {
                        if !conn.buf.is_empty() {
                            log::info!("{}: closed in the middle of a request head", conn.peer);
                        }
                        return conn.close();
                    }
                    Err(e) => {
                        log::info!("{}: connection failed: {e}", conn.peer);
                        return conn.abort();
                    }
                }
            }
            Err(e) => {
                log::info!("{}: bad request: {}", conn.peer, e.reason());
                let err = ProxyError::Request(e);
                let started = Instant::now();
                let (status, _) = answer(&mut conn, &err, None, false);
                log_access(sh, conn.peer, None, status, started, "-");
                return close(conn, true, sh);
            }
        }
    }
}

/// Does what the end of a request decided: the connection back when it carries
/// on (idle, waiting for the next request), else closed, dropped or parked.
fn carry_on(mut conn: Box<ClientConn>, next: Next, sh: &Shared) -> Option<Box<ClientConn>> {
    match next {
        Next::KeepAlive => {
            conn.phase = Phase::Idle;
            conn.deadline = Instant::now() + sh.limits.idle_timeout;
            return Some(conn);
        }
        Next::Close { linger } => close(conn, linger, sh),
        Next::Abort => conn.abort(),
        Next::Park(waiting) => sh.parked.park_exchange(conn, waiting),
    }
    None
}

/// Routes and serves one request whose head is complete.
fn handle(conn: &mut ClientConn, req: Request, sh: &Shared, st: &mut WorkerState) -> Next {
    let started = Instant::now();
    let in_flight = InFlight::enter(&sh.in_flight);
    conn.waited = Duration::ZERO;
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
    let ex = Exchange::new(
        req,
        route.app.clone(),
        addr,
        started,
        in_flight,
        InFlight::enter(&route.in_flight),
    );
    drive(conn, ex, sh, st)
}

/// Runs an exchange as far as it goes and decides what the connection does next.
fn drive(conn: &mut ClientConn, mut ex: Exchange, sh: &Shared, st: &mut WorkerState) -> Next {
    let closing = sh.closing.load(Ordering::Relaxed);
    match ex.run(conn, &sh.limits, st, closing) {
        Progress::Blocked(waiting) => {
            match waiting {
                Waiting::Client(_) => {
                    let moved = ex.moved(conn);
                    conn.deadline =
                        conn.client_deadline(sh.limits.client_timeout, sh.limits.min_rate, moved);
                    conn.parked_at = Some(Instant::now());
                }
                Waiting::Backend(_) => {
                    conn.deadline = ex
                        .backend_deadline()
                        .unwrap_or_else(|| Instant::now() + sh.limits.backend_timeout);
                }
            }
            conn.phase = Phase::Exchange;
            conn.exchange = Some(Box::new(ex));
            Next::Park(waiting)
        }
        Progress::Done(done) => {
            log_access(
                sh,
                conn.peer,
                Some(&ex.req),
                (done.status, done.body_bytes),
                ex.started,
                &ex.app,
            );
            if done.keep_alive {
                Next::KeepAlive
            } else {
                Next::Close { linger: false }
            }
        }
        Progress::Failed(Failure::Answer { error, body_read }) => {
            let req = &ex.req;
            log::warn!("{} {} {}: {error}", conn.peer, req.host, req.target);
            let (status, flushed) = answer(
                conn,
                &error,
                Some(req),
                !body_read || closing || !req.keep_alive,
            );
            log_access(sh, conn.peer, Some(req), status, ex.started, &ex.app);
            if status.0 == 0 {
                Next::Abort
            } else if flushed && body_read && !error.answer().close && req.keep_alive && !closing {
                Next::KeepAlive
            } else {
                Next::Close { linger: !body_read }
            }
        }
        Progress::Failed(Failure::Abort {
            reason,
            status,
            body_bytes,
        }) => {
            let req = &ex.req;
            log::warn!("{} {} {}: {reason}", conn.peer, req.host, req.target);
            log_access(
                sh,
                conn.peer,
                Some(req),
                (status.unwrap_or(0), body_bytes),
                ex.started,
                &ex.app,
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
    let body_done = discard_body(conn, req);
    let closing = sh.closing.load(Ordering::Relaxed);
    let keep = body_done && req.keep_alive && !closing;
    let (status, _) = answer(conn, err, Some(req), !keep);
    log_access(sh, conn.peer, Some(req), status, started, app);
    if status.0 == 0 {
        Next::Abort
    } else if keep {
        // What the socket did not take waits in rustls: the next round of
        // `serve` sends it (parked until the client reads) before the next
        // request of a pipelining client is answered.
        Next::KeepAlive
    } else {
        Next::Close { linger: !body_done }
    }
}

/// Reads away a request body of at most [`DISCARD_BODY_MAX_BYTES`] that has
/// already arrived, without waiting for more. Returns true when no body bytes
/// remain unread (else the connection closes after the answer, reading the rest
/// away while it lingers, parked).
fn discard_body(conn: &mut ClientConn, req: &Request) -> bool {
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
    // Bounded: each round consumes body bytes, or returns.
    for _ in 0..1024 {
        let take = left.min(conn.buf.len());
        conn.buf.drain(..take);
        left -= take;
        if left == 0 {
            return true;
        }
        match conn.fill_nonblocking(READ_CHUNK_BYTES) {
            Ok(Fill::Progress) => {}
            _ => return false,
        }
    }
    false
}

/// Writes nexushub's own answer for `err` without waiting on the client.
/// Returns (status, body bytes), with status 0 when the client could not be
/// written to, and whether the answer is all out: when it is not, the rest
/// waits in rustls, sent by whatever the connection does next (the next round
/// of `serve`, or its close), parked until the client reads.
fn answer(
    conn: &mut ClientConn,
    err: &ProxyError,
    req: Option<&Request>,
    close: bool,
) -> ((u16, u64), bool) {
    let a = err.answer();
    let keep_alive = !(close || a.close);
    let head_only = req.is_some_and(|r| r.is_head());
    let retry = a.retry_after_secs.map(|s| s.to_string());
    let extra: Vec<(&str, &str)> = retry.iter().map(|s| ("Retry-After", s.as_str())).collect();
    let mut out = Vec::with_capacity(256);
    http1::write_local_response(&mut out, a.status, &a.text, &extra, keep_alive, head_only);
    match conn.queue(&out) {
        Ok(flushed) => {
            let bytes = if head_only {
                0
            } else {
                a.text.len() as u64 + 1
            };
            ((a.status, bytes), flushed)
        }
        Err(e) => {
            log::debug!("{}: could not send {}: {e}", conn.peer, a.status);
            ((0, 0), false)
        }
    }
}

/// Ends a connection after its last answer without waiting on the client:
/// close_notify and our FIN go out as far as the socket takes them now. One
/// whose close_notify did not fit, or that may still have client bytes coming
/// (`linger`: unread bytes at close make the kernel send a reset, which can
/// destroy the answer before the client reads it), is parked in
/// `Phase::Closing` to finish, for at most [`LINGER`] once our FIN is out.
fn close(mut conn: Box<ClientConn>, linger: bool, sh: &Shared) {
    conn.tls.send_close_notify();
    conn.phase = Phase::Closing;
    conn.exchange = None;
    conn.linger_left = if linger { LINGER_MAX_BYTES } else { 0 };
    conn.deadline = Instant::now() + sh.limits.client_timeout;
    closing(conn, sh);
}

/// Goes on closing a connection in `Phase::Closing` as far as it goes without
/// waiting; parks it when the client is not ready, drops it when done.
fn closing(mut conn: Box<ClientConn>, sh: &Shared) {
    match conn.flush_nonblocking() {
        Ok(true) => {}
        Ok(false) => return sh.parked.park(conn, Interest::Write),
        Err(e) => {
            log::debug!("{}: connection failed while closing: {e}", conn.peer);
            return conn.abort();
        }
    }
    if !conn.fin_sent {
        let _ = conn.sock.shutdown(std::net::Shutdown::Write);
        conn.fin_sent = true;
        conn.deadline = conn.deadline.min(Instant::now() + LINGER);
    }
    if conn.linger_left > 0 && conn.read_away() {
        sh.parked.park(conn, Interest::Read);
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

/// Counts a request in flight for as long as it lives (it moves with a parked
/// exchange).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more in `count` until dropped.
    pub fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
