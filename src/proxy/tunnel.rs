//! A tunnel: what a client connection becomes once its app agreed to a
//! WebSocket upgrade (a `101 Switching Protocols`). From then on bytes flow
//! both ways unchanged, the client's through TLS, until both sides closed.
//!
//! Like an exchange, a tunnel never makes a worker wait: [`Tunnel::pump`]
//! moves what is ready in both directions, as far as the other side takes
//! it, and says what to wait for next; the session parks on both sockets at
//! once (`Waiting::Both`), so an idle tunnel costs its buffers and no thread.
//!
//! ```text
//! client --TLS--> conn.buf (<= TUNNEL_BUF_BYTES) --> backend socket
//! client <--TLS-- rustls send buffer <-- pending <-- backend socket
//! ```
//!
//! Memory stays bounded: the client is not read while `conn.buf` holds
//! [`TUNNEL_BUF_BYTES`] the backend has not taken; the backend is not read
//! while `pending` (at most one read) waits for rustls, whose send buffer
//! has its own cap. So a slow reader on one side slows the writer on the
//! other. Half-close is passed on: the client's end (close_notify or FIN)
//! becomes a `shutdown(Write)` of the backend socket once `conn.buf` is
//! flushed; the backend's FIN becomes close_notify and FIN to the client
//! once `pending` is. An error on either side ends both at once.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::{AccessLog, Entry};
use crate::http1::Request;
use crate::proxy::backend::BackendConn;
use crate::proxy::client::{ClientConn, ConnError, Fill};
use crate::proxy::exchange::{InFlight, Limits, Scratch, Switch};
use crate::proxy::park::Waiting;
use crate::sys::Interest;

/// Most client bytes held for a backend that is not taking them: the client
/// is not read past this (each direction's buffer cap).
pub(crate) const TUNNEL_BUF_BYTES: usize = 64 * 1024;

/// Rounds of one pump before the worker turns to other connections (the
/// tunnel is parked re-polled, behind what else is ready). Few: a chatty
/// tunnel whose peers answer within a round would otherwise keep the worker
/// for dozens of round trips while the others wait (the small-echo tail in
/// docs/performance.md, "WebSocket").
const PUMP_ROUNDS: usize = 4;

/// Where one pump stopped.
#[derive(Debug)]
pub(crate) enum Pump {
    /// Neither side can go on now: park on both sockets. `moved`: bytes went
    /// through in this pump (the idle deadline starts again).
    Wait {
        /// What to wait for on each socket.
        waiting: Waiting,
        /// True when any byte moved.
        moved: bool,
    },
    /// Both directions are closed: the tunnel is over.
    Closed,
    /// A side failed: abort both.
    Failed(TunnelError),
}

/// Why a tunnel was cut.
#[derive(Debug)]
pub(crate) enum TunnelError {
    /// The client's connection failed.
    Client(ConnError),
    /// The backend's socket failed.
    Backend(io::Error),
}

impl std::fmt::Display for TunnelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TunnelError::Client(e) => write!(f, "client: {e}"),
            TunnelError::Backend(e) => write!(f, "backend: {e}"),
        }
    }
}

/// An open tunnel between a client connection (held by its session) and a
/// backend connection (held here). Logged when it ends (dropped), however
/// it ends.
#[derive(Debug)]
pub(crate) struct Tunnel {
    backend: BackendConn,
    /// Backend bytes rustls had no room for yet.
    pending: Vec<u8>,
    /// The client's end came (close_notify or FIN).
    client_eof: bool,
    /// The backend's end came (FIN).
    backend_eof: bool,
    /// The client's end is passed on: the backend socket's write half is shut.
    backend_shut: bool,
    /// The backend's end is passed on: close_notify and FIN went to the client.
    client_shut: bool,
    /// Bytes read from the client, and from the backend, since the 101.
    from_client: u64,
    from_backend: u64,
    /// When the upgrade request's head was complete.
    started: Instant,
    /// What the access-log line says of it (of the request, only what the
    /// line shows: an idle tunnel keeps no header).
    host: String,
    method: String,
    target: String,
    app: Arc<str>,
    status: u16,
    peer: SocketAddr,
    access: Arc<AccessLog>,
    _count: Option<InFlight>,
}

impl Tunnel {
    /// The tunnel an exchange of `req` with `app` switched to, counted in
    /// `tunnels` (the instance's) while it lives; `early` client bytes came
    /// behind the upgrade request (they wait in `conn.buf`). The 101 head is
    /// the caller's to send.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        sw: Switch,
        req: Request,
        app: Arc<str>,
        started: Instant,
        peer: SocketAddr,
        early: usize,
        access: Arc<AccessLog>,
        tunnels: Option<&Arc<AtomicUsize>>,
    ) -> Tunnel {
        let from_backend = sw.from_backend.len() as u64;
        Tunnel {
            backend: sw.backend,
            pending: sw.from_backend,
            client_eof: false,
            backend_eof: false,
            backend_shut: false,
            client_shut: false,
            from_client: early as u64,
            from_backend,
            started,
            host: req.host,
            method: req.method,
            target: req.target,
            app,
            status: sw.status,
            peer,
            access,
            _count: tunnels.map(InFlight::enter),
        }
    }

    /// The backend connection (to park on it).
    pub(crate) fn backend_mut(&mut self) -> &mut BackendConn {
        &mut self.backend
    }

    /// Moves what is ready both ways without blocking, as far as the other
    /// side takes it, and passes on each side's end once what came before it
    /// is through.
    pub(crate) fn pump(&mut self, conn: &mut ClientConn, st: &mut Scratch) -> Pump {
        let mut moved = false;
        let mut client_blocked = false;
        let mut backend_blocked = false;
        // Whether the rounds ran out while bytes were still moving: the
        // sockets then have not said EAGAIN for what the tunnel waits on.
        let mut cut_short = true;
        // Bounded: the rounds; each direction stops at a full buffer or EAGAIN.
        for _ in 0..PUMP_ROUNDS {
            let mut progress = false;
            // Client to backend.
            if !conn.buf.is_empty() {
                match self.backend.write_nonblocking(&conn.buf) {
                    Ok(0) => backend_blocked = true,
                    Ok(n) => {
                        conn.buf.drain(..n);
                        progress = true;
                        backend_blocked = false;
                    }
                    Err(e) => return Pump::Failed(TunnelError::Backend(e)),
                }
            }
            if !self.client_eof && conn.buf.len() < TUNNEL_BUF_BYTES {
                let before = conn.buf.len();
                match conn.fill_nonblocking(TUNNEL_BUF_BYTES) {
                    Ok(Fill::Progress) => {
                        self.from_client += (conn.buf.len() - before) as u64;
                        progress = true;
                    }
                    Ok(Fill::WouldBlock) => {}
                    Ok(Fill::Eof) => {
                        self.client_eof = true;
                        progress = true;
                    }
                    Err(e) => return Pump::Failed(TunnelError::Client(e)),
                }
            }
            if self.client_eof && conn.buf.is_empty() && !self.backend_shut {
                // A backend already gone says so here; nothing is lost then.
                let _ = self.backend.sock.shutdown(Shutdown::Write);
                self.backend_shut = true;
            }
            // Backend to client.
            match conn.flush_nonblocking() {
                Ok(true) => client_blocked = false,
                Ok(false) => client_blocked = true,
                Err(e) => return Pump::Failed(TunnelError::Client(e)),
            }
            if !self.pending.is_empty() && !client_blocked {
                match conn.send_nonblocking(&self.pending) {
                    Ok((taken, flushed)) => {
                        self.pending.drain(..taken);
                        progress |= taken > 0;
                        client_blocked = !flushed;
                    }
                    Err(e) => return Pump::Failed(TunnelError::Client(e)),
                }
            }
            if self.pending.is_empty() && !self.backend_eof && !client_blocked {
                st.rbuf.clear();
                match self.backend.read_nonblocking(&mut st.rbuf) {
                    Ok(0) => {
                        self.backend_eof = true;
                        progress = true;
                    }
                    Ok(n) => {
                        self.from_backend += n as u64;
                        progress = true;
                        match conn.send_nonblocking(st.rbuf.data()) {
                            Ok((taken, flushed)) => {
                                self.pending.extend_from_slice(&st.rbuf.data()[taken..]);
                                client_blocked = !flushed;
                            }
                            Err(e) => return Pump::Failed(TunnelError::Client(e)),
                        }
                        st.rbuf.clear();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => return Pump::Failed(TunnelError::Backend(e)),
                }
            }
            if self.backend_eof && self.pending.is_empty() && !self.client_shut && !client_blocked {
                conn.tls.send_close_notify();
                match conn.flush_nonblocking() {
                    Ok(true) => {
                        let _ = conn.sock.shutdown(Shutdown::Write);
                        self.client_shut = true;
                    }
                    Ok(false) => client_blocked = true,
                    Err(e) => return Pump::Failed(TunnelError::Client(e)),
                }
            }
            moved |= progress;
            if self.client_shut && self.backend_shut {
                return Pump::Closed;
            }
            if !progress {
                cut_short = false;
                break;
            }
        }
        // What a burst grew is given back while the tunnel waits.
        if conn.buf.is_empty() {
            conn.trim_idle();
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = Vec::new();
        }
        // Bytes in hand for a side: wait for room on it. And the registrations
        // are edge-triggered: after rounds cut short, what the sockets already
        // hold sends no new event, so the parking re-polls them; else a client
        // that sent its whole message and waits for the echo would wait forever.
        let client = if client_blocked || !self.pending.is_empty() {
            Interest::Write
        } else {
            Interest::Read
        };
        let backend = if backend_blocked || !conn.buf.is_empty() {
            Interest::Write
        } else {
            Interest::Read
        };
        if cut_short {
            conn.repoll = true;
        }
        Pump::Wait {
            waiting: Waiting::Both { client, backend },
            moved,
        }
    }

    /// When the tunnel is closed if no byte moves either way from `now` on:
    /// after `tunnel_idle_timeout` (never when it is none), or after
    /// `idle_timeout` once one side's end was passed on: the other side has
    /// nothing left to wait for but its own end, and one that never sends it
    /// (or never reads it) must not hold the connection's slot for as long as
    /// a live tunnel may.
    pub(crate) fn idle_deadline(&self, now: Instant, limits: &Limits) -> Instant {
        // Ten years stands for never (an `Instant` has no "never").
        let never = Duration::from_secs(10 * 365 * 24 * 3600);
        let mut wait = limits.tunnel_idle_timeout.unwrap_or(never);
        if self.backend_shut || self.client_shut {
            wait = wait.min(limits.idle_timeout);
        }
        now.checked_add(wait)
            .or_else(|| now.checked_add(never))
            .unwrap_or(now)
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if self.access.is_off() {
            return;
        }
        self.access.log(&Entry {
            client: self.peer,
            host: &self.host,
            method: &self.method,
            path: &self.target,
            status: self.status,
            bytes: self.from_backend,
            duration: self.started.elapsed(),
            app: &self.app,
            bytes_in: Some(self.from_client),
        });
    }
}
