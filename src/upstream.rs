//! Backend connections: connecting with a deadline, and each worker's pool of idle
//! keep-alive connections.
//!
//! Backend sockets are blocking with `SO_RCVTIMEO`/`SO_SNDTIMEO` set to
//! `backend_timeout`: waiting for a response is then one `read` call, not a read
//! that says EAGAIN, a `poll` and a read again. The socket timeout is lowered
//! to what is left of a phase's deadline only when less than that is left.
//!
//! The pool is per worker, so taking and returning a connection needs no lock
//! (the route map's read lock stays the only shared step of a request). An idle
//! connection is checked before reuse: one non-blocking `peek` tells whether the
//! backend closed it (EOF) or sent something unasked (discard), and one older than
//! `backend_idle_timeout` is closed rather than reused, since the app may be about
//! to close it from its side.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

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

/// Idle connections kept per backend address per worker.
pub const MAX_IDLE_PER_BACKEND: usize = 16;

/// A connection to a backend, fresh or taken from the pool.
#[derive(Debug)]
pub struct BackendConn {
    /// The blocking socket (with socket timeouts).
    pub sock: TcpStream,
    /// The socket timeouts in force (reads and writes).
    armed: Duration,
    /// The backend's address.
    pub addr: SocketAddr,
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
/// blocking, with `TCP_NODELAY` and `io_timeout` as its read and write timeouts.
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
    sock.set_read_timeout(Some(armed))
        .and_then(|_| sock.set_write_timeout(Some(armed)))
        .map_err(ConnectError::Io)?;
    Ok(BackendConn {
        sock,
        armed,
        addr,
        reused: false,
    })
}

impl BackendConn {
    /// Makes the socket timeouts no longer than what is left before `deadline`.
    fn arm(&mut self, deadline: Instant) -> Result<(), Wait> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Wait::TimedOut);
        }
        if left + TIMEOUT_SLACK < self.armed {
            self.sock
                .set_read_timeout(Some(left))
                .and_then(|_| self.sock.set_write_timeout(Some(left)))
                .map_err(Wait::Io)?;
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

    /// Reads at least one byte into `buf` (after its unconsumed bytes) before
    /// the deadline; `Ok(0)` is EOF (or a full buffer, which callers rule out).
    pub fn read_into(&mut self, buf: &mut ReadBuf, deadline: Instant) -> Result<usize, Wait> {
        loop {
            self.arm(deadline)?;
            match buf.read_once(&mut self.sock) {
                Ok(n) => return Ok(n),
                Err(e) if is_timeout(&e) => return Err(Wait::TimedOut),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Wait::Io(e)),
            }
        }
    }
}

/// A socket timeout shows up as EAGAIN (`WouldBlock`) or `TimedOut`.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One worker's idle backend connections, newest last.
#[derive(Debug)]
pub struct Pool {
    idle: HashMap<SocketAddr, Vec<(BackendConn, Instant)>>,
    idle_timeout: Duration,
}

impl Pool {
    /// An empty pool whose connections expire after `idle_timeout`.
    pub fn new(idle_timeout: Duration) -> Pool {
        Pool {
            idle: HashMap::new(),
            idle_timeout,
        }
    }

    /// The newest live idle connection to `addr`, if any. `replayable`: the
    /// request can be sent again on a fresh connection if this one fails before
    /// any response byte, so a connection idle for less than [`FRESH_IDLE`] is
    /// not probed first.
    pub fn take(&mut self, addr: SocketAddr, replayable: bool) -> Option<BackendConn> {
        let list = self.idle.get_mut(&addr)?;
        let now = Instant::now();
        while let Some((mut conn, since)) = list.pop() {
            let idle = now.duration_since(since);
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
        None
    }

    /// Keeps a connection whose last exchange ended cleanly.
    pub fn put(&mut self, conn: BackendConn) {
        let list = self.idle.entry(conn.addr).or_default();
        if list.len() >= MAX_IDLE_PER_BACKEND {
            list.remove(0);
        }
        list.push((conn, Instant::now()));
    }

    /// Closes every connection idle for longer than the timeout.
    pub fn sweep(&mut self) {
        let now = Instant::now();
        let timeout = self.idle_timeout;
        for list in self.idle.values_mut() {
            list.retain(|(_, since)| now.duration_since(*since) < timeout);
        }
        self.idle.retain(|_, list| !list.is_empty());
    }

    /// Drops every idle connection (after a panic, or at shutdown).
    pub fn clear(&mut self) {
        self.idle.clear();
    }
}
