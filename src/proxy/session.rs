//! A session: one client connection through its whole life, from accept to
//! close. It is what the park set parks and the workers serve: the connection
//! and the phase it is in, each phase with the data only it has (an exchange
//! parked while a peer is not ready, a WebSocket tunnel, what is left of a
//! close).
//!
//! [`serve`] drives a session as far as it goes without waiting: the TLS
//! handshake, request heads read without blocking, each request routed and
//! answered here (400, 404, 421, 503) or run as an exchange with its app; it
//! parks the session again whenever the client or the backend is not ready,
//! and closes it when it is done. See `src/LIFECYCLE.md`.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::{AccessLog, Entry};
use crate::error::ProxyError;
use crate::http1::{self, BodyFraming, Request};
use crate::proxy::backend::Pool;
use crate::proxy::client::{
    ClientConn, Fill, Handshake, LINGER, LINGER_MAX_BYTES, READ_CHUNK_BYTES,
};
use crate::proxy::exchange::{Exchange, Failure, InFlight, Limits, Progress, Scratch, Switch};
use crate::proxy::park::{ParkSet, Parked, Socket, Waiting};
use crate::proxy::tunnel::{Pump, Tunnel};
use crate::routes::{self, SharedRoutes};
use crate::sys::Interest;

/// Request bodies up to this size are read away when nexushub answers a request
/// itself, so the connection can go on; larger ones close it instead.
pub(crate) const DISCARD_BODY_MAX_BYTES: u64 = 64 * 1024;
/// Most requests one connection has served in a row before it goes back to
/// the park set (re-polled, so it is served again soon): a client pipelining
/// requests that nexushub answers itself never waits on anyone else, and
/// would otherwise hold its worker for as long as it keeps sending.
pub(crate) const REQUESTS_PER_TURN: u32 = 16;

/// Where a session is, with what only that phase has.
#[derive(Debug)]
pub(crate) enum Phase {
    /// The TLS handshake is under way.
    Handshake,
    /// Between requests, no byte of the next one yet.
    Idle,
    /// Part of a request head has arrived.
    Head,
    /// An exchange waits on a peer: a request body that has not arrived or a
    /// response the client has not read, or its backend.
    Exchange {
        /// The exchange, boxed: it is parked and taken back by pointer.
        exchange: Box<Exchange>,
        /// When it was parked waiting on the client (for `ClientConn::waited`).
        parked_at: Option<Instant>,
    },
    /// A WebSocket tunnel: the app agreed to the upgrade, and bytes flow both
    /// ways until both sides closed; parked on both sockets while none move.
    Tunnel {
        /// The tunnel, boxed: it is parked and taken back by pointer.
        tunnel: Box<Tunnel>,
    },
    /// Closing after our last answer: its close_notify is not all out yet, or
    /// what the client still sends is read away.
    Closing {
        /// How many more client bytes may be read away (0: none).
        linger_left: usize,
        /// Our FIN is sent.
        fin_sent: bool,
    },
}

/// One client connection through its life: what the park set parks.
#[derive(Debug)]
pub(crate) struct Session {
    /// The connection.
    pub(crate) conn: ClientConn,
    /// Where it is.
    pub(crate) phase: Phase,
}

impl Session {
    /// A session for a connection just accepted: its handshake comes first.
    pub(crate) fn new(conn: ClientConn) -> Session {
        Session {
            conn,
            phase: Phase::Handshake,
        }
    }
}

impl Parked for Session {
    fn socket(&mut self, waiting: Waiting) -> Option<Socket<'_>> {
        match waiting {
            Waiting::Both { .. } => None,
            Waiting::Client(_) => Some((self.conn.sock.as_raw_fd(), &mut self.conn.registration)),
            Waiting::Backend(_) => match &mut self.phase {
                Phase::Exchange { exchange, .. } => {
                    let be = exchange.backend_mut()?;
                    Some((be.sock.as_raw_fd(), &mut be.registration))
                }
                _ => None,
            },
        }
    }

    fn both_sockets(&mut self) -> Option<[Socket<'_>; 2]> {
        match &mut self.phase {
            Phase::Tunnel { tunnel } => {
                let be = tunnel.backend_mut();
                Some([
                    (self.conn.sock.as_raw_fd(), &mut self.conn.registration),
                    (be.sock.as_raw_fd(), &mut be.registration),
                ])
            }
            _ => None,
        }
    }

    fn deadline(&self) -> Instant {
        self.conn.deadline
    }

    fn note_hangup(&mut self, token: u64) {
        if self
            .conn
            .registration
            .as_ref()
            .is_some_and(|r| r.token() == token)
        {
            self.conn.hangup = true;
        } else {
            match &mut self.phase {
                Phase::Exchange { exchange, .. } => {
                    if let Some(be) = exchange.backend_mut() {
                        be.hangup = true;
                    }
                }
                Phase::Tunnel { tunnel } => tunnel.backend_mut().hangup = true,
                _ => {}
            }
        }
    }

    fn busy(&self) -> bool {
        matches!(self.phase, Phase::Exchange { .. })
    }

    fn take_repoll(&mut self) -> bool {
        std::mem::take(&mut self.conn.repoll)
    }

    fn close(self: Box<Self>) {
        self.conn.close();
    }

    fn abort(self: Box<Self>) {
        self.conn.abort();
    }

    fn peer(&self) -> SocketAddr {
        self.conn.peer
    }
}

/// What every worker shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Deadlines and caps.
    pub(crate) limits: Limits,
    /// The route map.
    pub(crate) routes: SharedRoutes,
    /// Where sessions wait, and where idle workers wait for them.
    pub(crate) parked: Arc<ParkSet<Session>>,
    /// The access log.
    pub(crate) access: Arc<AccessLog>,
    /// Requests being served right now (for a graceful shutdown).
    pub(crate) in_flight: Arc<AtomicUsize>,
    /// Set when shutting down: answer with `Connection: close`, park nothing.
    pub(crate) closing: Arc<AtomicBool>,
    /// Idle backend connections, shared by the workers.
    pub(crate) pool: Arc<Pool>,
}

/// An exchange whose client let its deadline pass while parked: logged, and the
/// connection dropped (its response, if one was under way, cut short).
pub(crate) fn expire(s: Box<Session>, access: &AccessLog) {
    let Session { conn, phase } = *s;
    if let Phase::Exchange { exchange: ex, .. } = phase {
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
                bytes_in: None,
            });
        }
    }
    conn.abort();
}

/// What happens to the session after a request.
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close politely; `linger` when unread client bytes may remain.
    Close { linger: bool },
    /// Drop without close_notify (a response was cut short, or the client failed).
    Abort,
    /// The session became a tunnel (in `Phase::Tunnel`): pump it.
    Tunnel,
    /// The exchange (in `Phase::Exchange`) waits for this.
    Park(Waiting),
}

/// Serves a session until it would block (then parks it) or ends.
pub(crate) fn serve(mut s: Box<Session>, sh: &Shared, st: &mut Scratch) {
    // Set after a response, when the socket is known to be drained.
    let mut drained = false;
    match std::mem::replace(&mut s.phase, Phase::Idle) {
        Phase::Exchange {
            exchange,
            parked_at,
        } => {
            if let Some(at) = parked_at {
                s.conn.waited += at.elapsed();
            }
            let next = drive(&mut s, *exchange, sh, st);
            let Some(back) = carry_on(s, next, sh, st) else {
                return;
            };
            s = back;
            drained = true;
        }
        Phase::Closing {
            linger_left,
            fin_sent,
        } => return closing(s, linger_left, fin_sent, sh),
        phase @ Phase::Tunnel { .. } => {
            s.phase = phase;
            return tunnel(s, sh, st);
        }
        Phase::Handshake => match s.conn.drive_handshake() {
            Ok(Handshake::Done) => {
                s.conn.deadline = Instant::now() + sh.limits.idle_timeout;
            }
            Ok(Handshake::NeedRead) => {
                s.phase = Phase::Handshake;
                return sh.parked.park(s, Interest::Read);
            }
            Ok(Handshake::NeedWrite) => {
                s.phase = Phase::Handshake;
                return sh.parked.park(s, Interest::Write);
            }
            Err(e) => {
                log::info!("{}: TLS handshake failed: {e}", s.conn.peer);
                return s.abort();
            }
        },
        other => s.phase = other,
    }
    let max_head = sh.limits.max_head_bytes;
    let mut served = 0u32;
    loop {
        if s.conn.tls.wants_write() {
            // Answers a pipelining client has not read yet: wait for it to
            // before answering more, so what rustls holds stays bounded.
            match s.conn.flush_nonblocking() {
                Ok(true) => {}
                Ok(false) => {
                    s.conn.deadline = Instant::now() + sh.limits.client_timeout;
                    // As at the end of a turn below.
                    s.conn.unread = true;
                    return sh.parked.park(s, Interest::Write);
                }
                Err(e) => {
                    log::info!("{}: connection failed: {e}", s.conn.peer);
                    return s.abort();
                }
            }
        }
        match http1::parse_request(&s.conn.buf, max_head) {
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
                s.conn.unread = true;
                s.conn.repoll = true;
                return sh.parked.park(s, Interest::Write);
            }
            Ok(Some(req)) => {
                served += 1;
                s.conn.buf.drain(..req.head_len);
                s.conn.requests += 1;
                let next = handle(&mut s, req, sh, st);
                let Some(back) = carry_on(s, next, sh, st) else {
                    return;
                };
                s = back;
                drained = true;
            }
            Ok(None) => {
                // Right after a response, when the last read found the socket
                // empty, park at once instead of paying for a read that would
                // say EAGAIN. rustls holds nothing unread then (all plaintext is
                // in `buf`), and a request that came since has sent the
                // connection's socket an event that finds it busy, which makes
                // the parking re-poll it (`park.rs`): parking without a read
                // loses nothing. (Waiting here a moment for the next request
                // would leave a core idle while the worker slept on one
                // connection.)
                if drained {
                    drained = false;
                    if s.conn.buf.is_empty()
                        && !s.conn.unread
                        && !s.conn.hangup
                        && !sh.closing.load(Ordering::Relaxed)
                    {
                        s.conn.trim_idle();
                        return sh.parked.park(s, Interest::Read);
                    }
                }
                match s.conn.fill_nonblocking(max_head + READ_CHUNK_BYTES) {
                    Ok(Fill::Progress) => {
                        if !matches!(s.phase, Phase::Head) && !s.conn.buf.is_empty() {
                            s.phase = Phase::Head;
                            s.conn.deadline = Instant::now() + sh.limits.head_timeout;
                        }
                    }
                    Ok(Fill::WouldBlock) => {
                        if s.conn.buf.is_empty() && sh.closing.load(Ordering::Relaxed) {
                            return s.close();
                        }
                        if !matches!(s.phase, Phase::Head) && !s.conn.buf.is_empty() {
                            s.phase = Phase::Head;
                            s.conn.deadline = Instant::now() + sh.limits.head_timeout;
                        }
                        if s.conn.buf.is_empty() {
                            s.conn.trim_idle();
                        }
                        return sh.parked.park(s, Interest::Read);
                    }
                    Ok(Fill::Eof) => {
                        if !s.conn.buf.is_empty() {
                            log::info!("{}: closed in the middle of a request head", s.conn.peer);
                        }
                        return s.close();
                    }
                    Err(e) => {
                        log::info!("{}: connection failed: {e}", s.conn.peer);
                        return s.abort();
                    }
                }
            }
            Err(e) => {
                log::info!("{}: bad request: {}", s.conn.peer, e.reason());
                let err = ProxyError::Request(e);
                let started = Instant::now();
                let (status, _) = answer(&mut s.conn, &err, None, false);
                log_access(sh, s.conn.peer, None, status, started, "-");
                return close(s, true, sh);
            }
        }
    }
}

/// Does what the end of a request decided: the session back when it carries
/// on (idle, waiting for the next request), else closed, dropped or parked.
fn carry_on(
    mut s: Box<Session>,
    next: Next,
    sh: &Shared,
    st: &mut Scratch,
) -> Option<Box<Session>> {
    match next {
        Next::KeepAlive => {
            s.phase = Phase::Idle;
            s.conn.deadline = Instant::now() + sh.limits.idle_timeout;
            return Some(s);
        }
        Next::Close { linger } => close(s, linger, sh),
        Next::Abort => s.abort(),
        Next::Park(waiting) => sh.parked.park_on(s, waiting),
        Next::Tunnel => tunnel(s, sh, st),
    }
    None
}

/// Moves what is ready through a session's tunnel, then parks it on both
/// sockets, or ends it. At shutdown a tunnel ends here (and a parked one when
/// the acceptor closes what is parked): WebSocket peers reconnect, and a
/// tunnel has no natural end to wait for within `shutdown_grace`.
fn tunnel(mut s: Box<Session>, sh: &Shared, st: &mut Scratch) {
    let Phase::Tunnel { tunnel } = &mut s.phase else {
        return s.abort();
    };
    if sh.closing.load(Ordering::Relaxed) {
        return s.close();
    }
    match tunnel.pump(&mut s.conn, st) {
        Pump::Wait { waiting, moved } => {
            if moved {
                s.conn.deadline = tunnel.idle_deadline(Instant::now(), &sh.limits);
            }
            sh.parked.park_on(s, waiting);
        }
        Pump::Closed => drop(s),
        Pump::Failed(e) => {
            log::info!("{}: tunnel cut: {e}", s.conn.peer);
            s.abort();
        }
    }
}

/// Turns a session whose exchange ended in a 101 into a tunnel: the 101 goes
/// to the client (as far as the socket takes it now; the pump sends the
/// rest), the app's bytes behind it wait for the client, and what the client
/// sent behind its request (in `conn.buf`) goes to the app first.
fn open_tunnel(s: &mut Session, ex: Exchange, sw: Switch, sh: &Shared) -> Next {
    let conn = &mut s.conn;
    if let Err(e) = conn.queue(&sw.head) {
        log::info!(
            "{} {} {}: client: {e} while receiving the 101",
            conn.peer,
            ex.req.host,
            ex.req.target
        );
        return Next::Abort;
    }
    let Exchange {
        req,
        app,
        started,
        tunnels,
        ..
    } = ex;
    let tunnel = Tunnel::open(
        sw,
        req,
        app,
        started,
        conn.peer,
        conn.buf.len(),
        sh.access.clone(),
        tunnels.as_ref(),
    );
    conn.deadline = tunnel.idle_deadline(Instant::now(), &sh.limits);
    s.phase = Phase::Tunnel {
        tunnel: Box::new(tunnel),
    };
    Next::Tunnel
}

/// Routes and serves one request whose head is complete.
fn handle(s: &mut Session, req: Request, sh: &Shared, st: &mut Scratch) -> Next {
    let started = Instant::now();
    let in_flight = InFlight::enter(&sh.in_flight);
    let conn = &mut s.conn;
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
    let upgrade = req.upgrade.is_some();
    // Counted per instance, so that a replaced one is stopped only once idle.
    let mut ex = Exchange::new(
        req,
        route.app.clone(),
        addr,
        started,
        in_flight,
        InFlight::enter(&route.in_flight),
    );
    if upgrade {
        ex.tunnels = Some(route.tunnels.clone());
    }
    drive(s, ex, sh, st)
}

/// Runs an exchange as far as it goes and decides what the session does next.
fn drive(s: &mut Session, mut ex: Exchange, sh: &Shared, st: &mut Scratch) -> Next {
    let closing = sh.closing.load(Ordering::Relaxed);
    let conn = &mut s.conn;
    match ex.run(conn, &sh.limits, st, closing) {
        Progress::Switched(sw) => open_tunnel(s, ex, sw, sh),
        Progress::Blocked(waiting) => {
            let parked_at = match waiting {
                Waiting::Client(_) => {
                    let moved = ex.moved(conn);
                    conn.deadline =
                        conn.client_deadline(sh.limits.client_timeout, sh.limits.min_rate, moved);
                    Some(Instant::now())
                }
                // An exchange waits on one socket at a time.
                Waiting::Backend(_) | Waiting::Both { .. } => {
                    conn.deadline = ex
                        .backend_deadline()
                        .unwrap_or_else(|| Instant::now() + sh.limits.backend_timeout);
                    None
                }
            };
            s.phase = Phase::Exchange {
                exchange: Box::new(ex),
                parked_at,
            };
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
            cause,
            status,
            body_bytes,
        }) => {
            let req = &ex.req;
            log::warn!("{} {} {}: {cause}", conn.peer, req.host, req.target);
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
fn close(mut s: Box<Session>, linger: bool, sh: &Shared) {
    s.conn.tls.send_close_notify();
    s.conn.deadline = Instant::now() + sh.limits.client_timeout;
    let linger_left = if linger { LINGER_MAX_BYTES } else { 0 };
    closing(s, linger_left, false, sh);
}

/// Goes on closing a session (what `Phase::Closing` holds, passed in) as far
/// as it goes without waiting; parks it when the client is not ready, drops it
/// when done.
fn closing(mut s: Box<Session>, mut linger_left: usize, mut fin_sent: bool, sh: &Shared) {
    match s.conn.flush_nonblocking() {
        Ok(true) => {}
        Ok(false) => {
            s.phase = Phase::Closing {
                linger_left,
                fin_sent,
            };
            return sh.parked.park(s, Interest::Write);
        }
        Err(e) => {
            log::debug!("{}: connection failed while closing: {e}", s.conn.peer);
            return s.abort();
        }
    }
    if !fin_sent {
        let _ = s.conn.sock.shutdown(std::net::Shutdown::Write);
        fin_sent = true;
        s.conn.deadline = s.conn.deadline.min(Instant::now() + LINGER);
    }
    if linger_left > 0 && s.conn.read_away(&mut linger_left) {
        s.phase = Phase::Closing {
            linger_left,
            fin_sent,
        };
        sh.parked.park(s, Interest::Read);
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
        bytes_in: None,
    });
}
