//! The acceptor thread: owns the listening socket, gives each new connection its
//! slot and its rustls state, parks it in the shared [`ParkSet`] for its
//! handshake, and enforces the deadlines of everything parked there.
//!
//! It does not hand ready connections to the workers: idle workers wait on the
//! park set's epoll set themselves (see `park.rs`), so readiness reaches work in
//! one wake-up. A connection over `max_connections` or `max_connections_per_ip`
//! is closed here at accept, before any TLS work, and counted in the log.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::access_log::AccessLog;
use crate::proxy::census::{Census, Refusal, Slot};
use crate::proxy::client::ClientConn;
use crate::proxy::park::{ParkSet, Parked};
use crate::proxy::session::{self, Phase, Session};
use crate::sys::{self, Interest};

/// Most connections accepted per wake-up, so the sweep is not starved.
const ACCEPT_BATCH: usize = 256;
/// How often deadlines are checked; a deadline may be overrun by this much.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// How often the "connection cap reached" warning may repeat.
const CAP_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Settings the acceptor applies to every connection.
#[derive(Debug, Clone)]
pub(crate) struct AcceptorConfig {
    /// Whole-handshake deadline, from accept.
    pub(crate) handshake_timeout: Duration,
    /// Most client connections held at once (`max_connections`, or fewer
    /// when the open-file limit does not fit it).
    pub(crate) max_connections: usize,
    /// A connection accepted on a descriptor this high is closed at once:
    /// the descriptors below it are all open, and what is left above belongs
    /// to health checks and app starts. A second line behind
    /// `max_connections`, for descriptors the count of connections misses.
    pub(crate) fd_ceiling: u64,
    /// Most client connections held at once from one IP address.
    pub(crate) max_connections_per_ip: usize,
    /// How long a client has to take the answer to an exchange whose backend
    /// timed out while parked.
    pub(crate) client_timeout: Duration,
}

/// The acceptor's state; [`Acceptor::run`] is the thread's body.
pub(crate) struct Acceptor {
    listener: TcpListener,
    tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    config: AcceptorConfig,
    census: Arc<Census>,
    parked: Arc<ParkSet<Session>>,
    access: Arc<AccessLog>,
    shutdown: Arc<AtomicBool>,
    refused: u64,
    last_cap_warn: Option<Instant>,
}

impl Acceptor {
    /// Sets up the acceptor around a bound listener; it parks new connections in
    /// `parked`, and stops once `shutdown` is set.
    pub(crate) fn new(
        listener: TcpListener,
        tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
        config: AcceptorConfig,
        census: Arc<Census>,
        parked: Arc<ParkSet<Session>>,
        access: Arc<AccessLog>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Acceptor> {
        listener.set_nonblocking(true)?;
        Ok(Acceptor {
            listener,
            tls,
            config,
            census,
            parked,
            access,
            shutdown,
            refused: 0,
            last_cap_warn: None,
        })
    }

    /// The acceptor loop. Returns when shutdown is requested, after closing the
    /// listening socket and every parked connection with no exchange in progress
    /// (they have no request in flight, so closing them is the graceful thing).
    /// Parked exchanges are left to the workers to finish.
    pub(crate) fn run(mut self) {
        let mut last_sweep = Instant::now();
        while !self.shutdown.load(Ordering::SeqCst) {
            let wait = SWEEP_INTERVAL.saturating_sub(last_sweep.elapsed());
            match sys::poll_one(self.listener.as_raw_fd(), Interest::Read, wait) {
                Ok(true) => self.accept_batch(),
                Ok(false) => {}
                Err(e) => {
                    log::error!("acceptor: poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if last_sweep.elapsed() >= SWEEP_INTERVAL {
                self.sweep_deadlines();
                last_sweep = Instant::now();
            }
        }
        let idle = self.parked.close_idle();
        log::debug!(
            "acceptor: stopping; closing {} parked connection(s), {} exchange(s) left to finish",
            idle.len(),
            self.parked.len()
        );
        for conn in idle {
            conn.close();
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
                    crate::warn_limited!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(5));
                    return;
                }
            };
            if sock.as_raw_fd() as u64 >= self.config.fd_ceiling {
                drop(sock);
                self.note_refusal(Refusal::Descriptors, peer);
                continue;
            }
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
            self.parked
                .park(Box::new(Session::new(conn)), Interest::Read);
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
            Refusal::Descriptors => log::warn!(
                "open file limit nearly reached ({} descriptors): closing new connections, the rest is kept for the apps ({} refused so far)",
                self.config.fd_ceiling,
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

    fn sweep_deadlines(&mut self) {
        for mut s in self.parked.take_expired(Instant::now()) {
            let peer = s.conn.peer;
            let on_backend = match &mut s.phase {
                Phase::Exchange { exchange, .. } => exchange.expire_backend_wait(),
                _ => false,
            };
            if on_backend {
                // The answer (504, or a cut) is a worker's to give: the
                // client's socket is writable, so parking the exchange on it
                // wakes one at once. A client that does not take it within
                // client_timeout is cut off as below.
                s.conn.deadline = Instant::now() + self.config.client_timeout;
                // Parked without a write that said EAGAIN: re-poll.
                s.conn.repoll = true;
                self.parked.park(s, Interest::Write);
                continue;
            }
            match s.phase {
                Phase::Handshake => {
                    log::info!("{peer}: TLS handshake timed out");
                    s.abort();
                }
                Phase::Head => {
                    log::info!("{peer}: request head timed out");
                    // A 408 would need a worker; closing is what the deadline is for.
                    s.close();
                }
                Phase::Idle => {
                    log::debug!("{peer}: idle keep-alive connection closed");
                    s.close();
                }
                Phase::Closing { .. } => {
                    log::debug!("{peer}: closed after its linger");
                    drop(s);
                }
                Phase::Tunnel { .. } => {
                    // tunnel_idle_timeout, or idle_timeout once half-closed.
                    log::info!("{peer}: idle tunnel closed");
                    s.close();
                }
                Phase::Exchange { .. } => session::expire(s, &self.access),
            }
        }
    }
}
