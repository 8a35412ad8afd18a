//! The acceptor thread: owns the listening socket and the epoll set in which
//! connections that are not ready for work wait, at no thread's cost.
//!
//! A connection is parked while its TLS handshake is under way, while part of a
//! request head is in, and while it is idle between requests, each under the
//! deadline of that phase. When it becomes readable it is handed, with its rustls
//! state, to the worker pool over a bounded channel. If every worker is busy and
//! the channel is full, the connection waits in a ready queue here: it is never
//! dropped for that. Workers give connections back over an unbounded channel (its
//! length is bounded by the connection cap) and wake us through an eventfd.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;

use crate::conn::{Census, ClientConn, Phase, Refusal, Slot};
use crate::sys::{Epoll, Event, EventFd, Interest};

/// Token of the listening socket in the epoll set.
const LISTENER_TOKEN: u64 = 0;
/// Token of the wake-up eventfd.
const WAKE_TOKEN: u64 = 1;
/// First token handed to a parked connection.
const FIRST_CONN_TOKEN: u64 = 2;
/// Most connections accepted per wake-up, so parked ones are not starved.
const ACCEPT_BATCH: usize = 256;
/// How often deadlines are checked; a deadline may be overrun by this much.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// How often the "connection cap reached" warning may repeat.
const CAP_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// A connection a worker hands back: where to wait and until when.
#[derive(Debug)]
pub struct Park {
    /// The connection, with its phase and deadline set.
    pub conn: ClientConn,
    /// What to wait for.
    pub interest: Interest,
}

/// The acceptor's handles that other threads hold.
#[derive(Debug, Clone)]
pub struct AcceptorHandle {
    /// Workers send parked connections back here.
    pub park: Sender<Park>,
    /// Wakes the acceptor after a `park` send or a shutdown request.
    pub wake: Arc<EventFd>,
    /// Set to stop accepting and close parked connections.
    pub shutdown: Arc<AtomicBool>,
}

impl AcceptorHandle {
    /// Hands a connection back to the acceptor to wait for `interest`.
    pub fn park(&self, conn: ClientConn, interest: Interest) {
        // The receiver only goes away at shutdown; then dropping closes the socket.
        if self.park.send(Park { conn, interest }).is_ok() {
            self.wake.notify();
        }
    }

    /// Asks the acceptor to stop.
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.wake.notify();
    }
}

/// Settings the acceptor applies to every connection.
#[derive(Debug, Clone)]
pub struct AcceptorConfig {
    /// Whole-handshake deadline, from accept.
    pub handshake_timeout: Duration,
    /// Most client connections held at once.
    pub max_connections: usize,
    /// Most client connections held at once from one IP address.
    pub max_connections_per_ip: usize,
}

struct Parked {
    conn: ClientConn,
}

/// The acceptor's state; [`Acceptor::run`] is the thread's body.
pub struct Acceptor {
    listener: TcpListener,
    epoll: Epoll,
    tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    config: AcceptorConfig,
    census: Arc<Census>,
    parked: HashMap<u64, Parked>,
    ready: VecDeque<ClientConn>,
    next_token: u64,
    dispatch: Sender<ClientConn>,
    returns: Receiver<Park>,
    handle: AcceptorHandle,
    refused: u64,
    last_cap_warn: Option<Instant>,
}

impl Acceptor {
    /// Sets up the epoll set around a bound listener. `dispatch` is the bounded
    /// channel to the workers; the returned handle is what workers use to park.
    pub fn new(
        listener: TcpListener,
        tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
        config: AcceptorConfig,
        census: Arc<Census>,
        dispatch: Sender<ClientConn>,
    ) -> io::Result<(Acceptor, AcceptorHandle)> {
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new()?;
        let wake = Arc::new(EventFd::new()?);
        epoll.add_persistent(listener.as_raw_fd(), LISTENER_TOKEN, Interest::Read)?;
        epoll.add_persistent(wake.as_raw_fd(), WAKE_TOKEN, Interest::Read)?;
        let (park_tx, park_rx) = crossbeam_channel::unbounded();
        let handle = AcceptorHandle {
            park: park_tx,
            wake,
            shutdown: Arc::new(AtomicBool::new(false)),
        };
        Ok((
            Acceptor {
                listener,
                epoll,
                tls,
                config,
                census,
                parked: HashMap::new(),
                ready: VecDeque::new(),
                next_token: FIRST_CONN_TOKEN,
                dispatch,
                returns: park_rx,
                handle: handle.clone(),
                refused: 0,
                last_cap_warn: None,
            },
            handle,
        ))
    }

    /// The acceptor loop. Returns when shutdown is requested; every parked
    /// connection is closed then (idle and handshaking ones have no request in
    /// flight, so closing them is the graceful thing).
    pub fn run(mut self) {
        let mut events: Vec<Event> = Vec::with_capacity(256);
        let mut last_sweep = Instant::now();
        while !self.handle.shutdown.load(Ordering::SeqCst) {
            let timeout = if self.ready.is_empty() {
                SWEEP_INTERVAL
            } else {
                Duration::from_millis(1)
            };
            if let Err(e) = self.epoll.wait(&mut events, 256, timeout) {
                log::error!("acceptor: epoll_wait failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            for ev in events.iter() {
                match ev.token {
                    LISTENER_TOKEN => self.accept_batch(),
                    WAKE_TOKEN => self.handle.wake.drain(),
                    token => self.on_ready(token),
                }
            }
            self.take_returns();
            self.dispatch_ready();
            if last_sweep.elapsed() >= SWEEP_INTERVAL {
                self.sweep_deadlines();
                last_sweep = Instant::now();
            }
        }
        log::debug!(
            "acceptor: stopping; closing {} parked connection(s)",
            self.parked.len() + self.ready.len()
        );
        // Drain returns so connections finishing now are closed too.
        self.take_returns();
        for (_, p) in self.parked.drain() {
            p.conn.close(false);
        }
        for conn in self.ready.drain(..) {
            conn.close(false);
        }
    }

    fn accept_batch(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let (sock, peer) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    log::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(5));
                    return;
                }
            };
            let slot = match Slot::acquire(
                &self.census,
                peer.ip(),
                self.config.max_connections,
                self.config.max_connections_per_ip,
            ) {
                Ok(slot) => slot,
                Err(refusal) => {
                    // Closed at once, before any TLS work: the cheapest answer.
                    drop(sock);
                    self.note_refusal(refusal, peer);
                    continue;
                }
            };
            if let Err(e) = sock
                .set_nonblocking(true)
                .and_then(|_| sock.set_nodelay(true))
            {
                log::debug!("{peer}: socket setup failed: {e}");
                continue;
            }
            let config = self.tls.read().clone();
            let tls = match rustls::ServerConnection::new(config) {
                Ok(tls) => tls,
                Err(e) => {
                    log::error!("{peer}: cannot start TLS: {e}");
                    continue;
                }
            };
            let deadline = Instant::now() + self.config.handshake_timeout;
            let conn = ClientConn::new(sock, tls, peer, deadline, slot);
            self.park(conn, Interest::Read);
        }
    }

    fn note_refusal(&mut self, refusal: Refusal, peer: std::net::SocketAddr) {
        self.refused += 1;
        let now = Instant::now();
        if self
            .last_cap_warn
            .is_some_and(|t| now.duration_since(t) < CAP_WARN_INTERVAL)
        {
            return;
        }
        self.last_cap_warn = Some(now);
        match refusal {
            Refusal::Total => log::warn!(
                "connection cap of {} reached: closing new connections ({} refused so far)",
                self.config.max_connections,
                self.refused
            ),
            Refusal::PerIp => log::warn!(
                "{}: per-address cap of {} connections reached: closing its new connections ({} refused so far)",
                peer.ip(),
                self.config.max_connections_per_ip,
                self.refused
            ),
        }
    }

    fn park(&mut self, mut conn: ClientConn, interest: Interest) {
        let token = self.next_token;
        self.next_token += 1;
        let fd = conn.sock.as_raw_fd();
        let res = if conn.registered {
            self.epoll.rearm(fd, token, interest)
        } else {
            self.epoll.add_oneshot(fd, token, interest)
        };
        match res {
            Ok(()) => {
                conn.registered = true;
                self.parked.insert(token, Parked { conn });
            }
            Err(e) => {
                log::warn!("{}: cannot park connection: {e}", conn.peer);
            }
        }
    }

    fn on_ready(&mut self, token: u64) {
        if let Some(p) = self.parked.remove(&token) {
            self.ready.push_back(p.conn);
        }
    }

    fn take_returns(&mut self) {
        while let Ok(Park { conn, interest }) = self.returns.try_recv() {
            if self.handle.shutdown.load(Ordering::SeqCst) {
                conn.close(false);
            } else {
                self.park(conn, interest);
            }
        }
    }

    fn dispatch_ready(&mut self) {
        while let Some(conn) = self.ready.pop_front() {
            match self.dispatch.try_send(conn) {
                Ok(()) => {}
                Err(TrySendError::Full(conn)) => {
                    self.ready.push_front(conn);
                    return;
                }
                Err(TrySendError::Disconnected(conn)) => {
                    conn.close(false);
                }
            }
        }
    }

    fn sweep_deadlines(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| p.conn.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            if let Some(p) = self.parked.remove(&token) {
                let conn = p.conn;
                match conn.phase {
                    Phase::Handshake => {
                        log::info!("{}: TLS handshake timed out", conn.peer);
                        conn.abort();
                    }
                    Phase::Head => {
                        log::info!("{}: request head timed out", conn.peer);
                        // A 408 would need a worker; closing is what the deadline is for.
                        conn.close(false);
                    }
                    Phase::Idle => {
                        log::debug!("{}: idle keep-alive connection closed", conn.peer);
                        conn.close(false);
                    }
                }
            }
        }
        // A connection waiting for a free worker also keeps its deadline.
        let mut i = 0;
        while i < self.ready.len() {
            if self.ready[i].deadline <= now {
                if let Some(conn) = self.ready.remove(i) {
                    log::info!("{}: no worker became free before the deadline", conn.peer);
                    conn.abort();
                }
            } else {
                i += 1;
            }
        }
    }
}
