//! Backend connections: connecting with a deadline, and the pool of idle
//! keep-alive connections.
//!
//! Backend sockets are blocking for writes, with `SO_SNDTIMEO` set to
//! `backend_timeout` (lowered to what is left of a phase's deadline only when
//! less than that is left): a request and its body go out in `write` calls that
//! rarely wait. Reads never block (`MSG_DONTWAIT`): when the backend has not
//! answered yet, the exchange is parked on the socket in the park set and the
//! worker takes other work (see `forward.rs`).
//!
//! The pool is shared by the workers (see [`Pool`] for why), behind a lock held
//! only to pop or push. An idle connection is checked before reuse: one
//! non-blocking `peek` tells whether the backend closed it (EOF) or sent
//! something unasked (discard), and one older than `backend_idle_timeout` is
//! closed rather than reused, since the app may be about to close it from its
//! side.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::deadline::Wait;
use crate::readbuf::ReadBuf;
use crate::sys;

/// A connection idle for less than this is reused for a request without a body
/// without the `peek`: a backend that closed it that soon would be one with an
/// idle timeout under a second, and such a request is retried on a fresh
/// connection anyway if the pooled one turns out closed (see `forward.rs`).
pub const FRESH_IDLE: Duration = Duration::from_secs(1);

/// A socket timeout this close to the time left is close enough to keep.
const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

/// Idle connections kept per backend address (nginx's `keepalive` is 256 per
/// worker process).
pub const MAX_IDLE_PER_BACKEND: usize = 1024;

/// A connection to a backend, fresh or taken from the pool.
#[derive(Debug)]
pub struct BackendConn {
    /// The socket: blocking writes with a timeout, reads with `MSG_DONTWAIT`.
    pub sock: TcpStream,
    /// The write timeout in force.
    armed: Duration,
    /// The backend's address.
    pub addr: SocketAddr,
    /// True once the socket is in the park set's epoll set (a parked exchange
    /// waited on it).
    pub registered: bool,
    /// True when it came from the pool (so a failure before any response byte
    /// may be the backend having closed it, and a retry may be in order).
    pub reused: bool,
}

/// Why connecting failed.
#[derive(Debug)]
pub enum ConnectError {
    /// Refused, unreachable, or another socket error.
    Io(io::Error),
    /// `backend_connect_timeout` passed.
    TimedOut,
}

/// Opens a new connection within `connect_timeout`; the socket is returned
/// blocking, with `TCP_NODELAY` and `io_timeout` as its write timeout.
pub fn connect(
    addr: SocketAddr,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> Result<BackendConn, ConnectError> {
    let sock = TcpStream::connect_timeout(&addr, connect_timeout).map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock {
            ConnectError::TimedOut
        } else {
            ConnectError::Io(e)
        }
    })?;
    sock.set_nodelay(true).map_err(ConnectError::Io)?;
    sock.set_nonblocking(false).map_err(ConnectError::Io)?;
    let armed = io_timeout.max(Duration::from_millis(1));
    sock.set_write_timeout(Some(armed))
        .map_err(ConnectError::Io)?;
    Ok(BackendConn {
        sock,
        armed,
        addr,
        registered: false,
        reused: false,
    })
}

impl BackendConn {
    /// Makes the write timeout no longer than what is left before `deadline`.
    fn arm(&mut self, deadline: Instant) -> Result<(), Wait> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Wait::TimedOut);
        }
        if left + TIMEOUT_SLACK < self.armed {
            self.sock.set_write_timeout(Some(left)).map_err(Wait::Io)?;
            self.armed = left;
        }
        Ok(())
    }

    /// Writes all of `data` before the deadline.
    pub fn write_all(&mut self, mut data: &[u8], deadline: Instant) -> Result<(), Wait> {
        while !data.is_empty() {
            self.arm(deadline)?;
            match self.sock.write(data) {
                Ok(0) => return Err(Wait::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => data = &data[n..],
                Err(e) if is_timeout(&e) => return Err(Wait::TimedOut),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Wait::Io(e)),
            }
        }
        Ok(())
    }

    /// One read into `buf` (after its unconsumed bytes) that never blocks:
    /// `WouldBlock` when the backend has sent nothing more yet.
    pub fn read_nonblocking(&mut self, buf: &mut ReadBuf) -> io::Result<usize> {
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

/// A socket timeout shows up as EAGAIN (`WouldBlock`) or `TimedOut`.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The idle backend connections, newest last per address, shared by every
/// worker: an exchange parked while its backend works may end on another worker
/// than the one it began on, and its connection must go back where the next
/// request finds it (per-worker pools would drain on one side and overflow on
/// the other, and open new connections all the time). The lock is held only
/// to pop or push; the checks of a popped connection run outside it.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, VecDeque<(BackendConn, Instant)>>>,
    idle_timeout: Duration,
}

impl Pool {
    /// An empty pool whose connections expire after `idle_timeout`.
    pub fn new(idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            idle_timeout,
        }
    }

    /// The newest live idle connection to `addr`, if any. `replayable`: the
    /// request can be sent again on a fresh connection if this one fails before
    /// any response byte, so a connection idle for less than [`FRESH_IDLE`] is
    /// not probed first.
    pub fn take(&self, addr: SocketAddr, replayable: bool) -> Option<BackendConn> {
        // Bounded: every round pops a connection (at most the cap of them).
        loop {
            let (mut conn, since) = self.idle.lock().get_mut(&addr)?.pop_back()?;
            let idle = since.elapsed();
            if idle >= self.idle_timeout {
                continue;
            }
            if replayable && idle < FRESH_IDLE {
                conn.reused = true;
                return Some(conn);
            }
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

    /// Keeps a connection whose last exchange ended cleanly (the oldest one
    /// goes when the address has [`MAX_IDLE_PER_BACKEND`] already).
    pub fn put(&self, conn: BackendConn) {
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
    pub fn sweep(&self) {
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
