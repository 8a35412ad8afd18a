//! Backend connections: connecting without waiting, and the pool of idle
//! keep-alive connections.
//!
//! No backend makes a worker wait (see `exchange/`): the socket is
//! non-blocking for its whole life; when the backend has not answered yet, the
//! exchange is parked on the socket in the park set; the request head and body
//! bytes are sent as far as the socket takes them and the rest waits with the
//! exchange, parked until the socket is writable; a new connection is started
//! non-blocking and the exchange parks on it until it is up (under
//! `backend_connect_timeout`).
//!
//! The pool is shared by the workers (see [`Pool`] for why), behind a lock held
//! only to pop or push. Every idle connection is checked before reuse, however
//! briefly it sat idle: one non-blocking `peek` tells whether the backend closed
//! it (EOF) or sent something unasked (bytes meant for nobody, which the next
//! request would take for its response); either way it is closed, never reused.
//! One older than `backend_idle_timeout` is closed rather than reused too, since
//! the app may be about to close it from its side.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::proxy::park::Registration;
use crate::proxy::readbuf::ReadBuf;
use crate::sys;

/// Idle connections kept per backend address (nginx's `keepalive` is 256 per
/// worker process).
pub(crate) const MAX_IDLE_PER_BACKEND: usize = 1024;

/// A connection to a backend, fresh or taken from the pool.
#[derive(Debug)]
pub(crate) struct BackendConn {
    /// The socket, non-blocking for its whole life.
    pub(crate) sock: TcpStream,
    /// The backend's address.
    pub(crate) addr: SocketAddr,
    /// The socket's place in the park set, once an exchange parked on it; kept
    /// while the connection is pooled, so it is registered once.
    pub(crate) registration: Option<Registration>,
    /// Set when an event said the backend closed its side (or the socket
    /// failed): the connection is not pooled. (Its end may have come with the
    /// last response bytes, in the same event, so nothing else would tell.)
    pub(crate) hangup: bool,
    /// True when it came from the pool (so a failure before any response byte
    /// may be the backend having closed it, and a retry may be in order).
    pub(crate) reused: bool,
}

/// Starts a new connection without waiting for it: the exchange parks on the
/// socket until it is writable, then calls [`BackendConn::finish_connect`].
pub(crate) fn connect_start(addr: SocketAddr) -> io::Result<BackendConn> {
    let sock = sys::connect_nonblocking(&addr)?;
    Ok(BackendConn {
        sock,
        addr,
        registration: None,
        hangup: false,
        reused: false,
    })
}

impl BackendConn {
    /// After a writable event on a connecting socket: `Ok(true)` once connected
    /// (the socket is then `TCP_NODELAY`),
    /// `Ok(false)` if it is still connecting, the connect's error otherwise.
    pub(crate) fn finish_connect(&mut self) -> io::Result<bool> {
        let fd = self.sock.as_raw_fd();
        if let Some(e) = sys::socket_error(fd)? {
            return Err(e);
        }
        if !sys::poll_one(fd, sys::Interest::Write, Duration::ZERO)? {
            return Ok(false);
        }
        // Writable and no error: connected (a refusal that raced the poll shows
        // up on the first write as the same error).
        if let Some(e) = sys::socket_error(fd)? {
            return Err(e);
        }
        self.sock.set_nodelay(true)?;
        Ok(true)
    }

    /// Writes what the socket takes of `data` now (0 when it is full).
    pub(crate) fn write_nonblocking(&mut self, data: &[u8]) -> io::Result<usize> {
        // Bounded: EINTR is retried, and there are only so many signals.
        loop {
            match sys::send_nonblocking(self.sock.as_raw_fd(), data) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks the kernel to acknowledge the backend's bytes as they arrive, for a
    /// large response still coming. The connection carries requests and
    /// responses in turn, so Linux takes it for interactive and delays its
    /// acknowledgements; a sender waiting on them then sends in bursts with
    /// gaps of milliseconds, and one with BBR misjudges the path as slow and
    /// paces the rest of the response out slowly (the long tail of 1 MiB
    /// responses in `benches/compare`). A failure only costs that speed.
    pub(crate) fn ack_promptly(&self) {
        if let Err(e) = sys::quickack(self.sock.as_raw_fd()) {
            log::debug!("{}: TCP_QUICKACK: {e}", self.addr);
        }
    }

    /// One read into `buf` (after its unconsumed bytes) that never blocks:
    /// `WouldBlock` when the backend has sent nothing more yet.
    pub(crate) fn read_nonblocking(&mut self, buf: &mut ReadBuf) -> io::Result<usize> {
        buf.read_once(&mut DontWait(&self.sock))
    }
}

/// Reads from a blocking socket without blocking (`MSG_DONTWAIT`).
struct DontWait<'a>(&'a TcpStream);

impl std::io::Read for DontWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv_nonblocking(self.0.as_raw_fd(), buf)
    }
}

/// The idle backend connections, newest last per address, shared by every
/// worker: an exchange parked while its backend works may end on another worker
/// than the one it began on, and its connection must go back where the next
/// request finds it (per-worker pools would drain on one side and overflow on
/// the other, and open new connections all the time). The lock is held only
/// to pop or push; the checks of a popped connection run outside it.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, VecDeque<(BackendConn, Instant)>>>,
    idle_timeout: Duration,
}

impl Pool {
    /// An empty pool whose connections expire after `idle_timeout`.
    pub(crate) fn new(idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            idle_timeout,
        }
    }

    /// The newest live idle connection to `addr`, if any: one the backend has
    /// neither closed nor sent anything on since its last response. No
    /// shortcut for a connection idle only a moment: stray bytes (a body after
    /// a `HEAD` answer, more than a `Content-Length`) come just as soon, and
    /// would be read as the next client's response.
    pub(crate) fn take(&self, addr: SocketAddr) -> Option<BackendConn> {
        // Bounded: every round pops a connection (at most the cap of them).
        loop {
            let (mut conn, since) = self.idle.lock().get_mut(&addr)?.pop_back()?;
            if since.elapsed() >= self.idle_timeout {
                continue;
            }
            // One system call, whatever the edge-triggered park set said while
            // the connection sat here: the socket itself is the truth.
            match sys::peek_nonblocking(conn.sock.as_raw_fd()) {
                // Nothing to read: still open and quiet. This is the good case.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.reused = true;
                    return Some(conn);
                }
                // EOF, stray bytes, or an error: not safe to reuse.
                _ => continue,
            }
        }
    }

    /// Keeps a connection whose last exchange ended cleanly, with nothing of
    /// the backend's left unread in the exchange's buffer (the caller's
    /// promise; the oldest one goes when the address has
    /// [`MAX_IDLE_PER_BACKEND`] already; one whose backend hung up is closed
    /// instead).
    pub(crate) fn put(&self, conn: BackendConn) {
        if conn.hangup {
            return;
        }
        let oldest = {
            let mut map = self.idle.lock();
            let list = map.entry(conn.addr).or_default();
            let oldest = if list.len() >= MAX_IDLE_PER_BACKEND {
                list.pop_front()
            } else {
                None
            };
            list.push_back((conn, Instant::now()));
            oldest
        };
        // Closed outside the lock.
        drop(oldest);
    }

    /// Closes every connection idle for longer than the timeout.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let timeout = self.idle_timeout;
        let expired: Vec<BackendConn> = {
            let mut map = self.idle.lock();
            let mut expired = Vec::new();
            for list in map.values_mut() {
                // Oldest first: the expired ones are at the front.
                while list
                    .front()
                    .is_some_and(|(_, since)| now.duration_since(*since) >= timeout)
                {
                    if let Some((conn, _)) = list.pop_front() {
                        expired.push(conn);
                    }
                }
            }
            map.retain(|_, list| !list.is_empty());
            expired
        };
        drop(expired);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

    /// Connects without blocking, waits for the writable socket, finishes.
    fn connect_and_finish(addr: SocketAddr) -> io::Result<BackendConn> {
        let mut be = connect_start(addr)?;
        // Bounded: a loopback connect ends within a few polls.
        for _ in 0..100 {
            sys::poll_one(
                be.sock.as_raw_fd(),
                sys::Interest::Write,
                Duration::from_secs(1),
            )?;
            if be.finish_connect()? {
                return Ok(be);
            }
        }
        Err(io::ErrorKind::TimedOut.into())
    }

    fn round_trip(listener: TcpListener) {
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut be = connect_and_finish(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        let (mut peer, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        // An empty new socket takes four bytes at once.
        let n = be
            .write_nonblocking(b"ping")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 4);
        let mut got = [0u8; 4];
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("{e}"));
        peer.read_exact(&mut got).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got, b"ping");
    }

    #[test]
    fn a_nonblocking_connect_reaches_an_ipv4_listener() {
        round_trip(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}")));
    }

    #[test]
    fn a_nonblocking_connect_reaches_an_ipv6_listener() {
        // Hosts without IPv6 loopback have nothing to test here.
        if let Ok(listener) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
            round_trip(listener);
        }
    }

    #[test]
    fn a_refused_nonblocking_connect_says_refused() {
        let addr = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().unwrap_or_else(|e| panic!("{e}"))
        };
        let err = connect_and_finish(addr).err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionRefused)
        );
    }
}
