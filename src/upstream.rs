//! Backend connections: connecting with a deadline, and each worker's pool of idle
//! keep-alive connections.
//!
//! The pool is per worker, so taking and returning a connection needs no lock
//! (the route map's read lock stays the only shared step of a request). An idle
//! connection is checked before reuse: one non-blocking `peek` tells whether the
//! backend closed it (EOF) or sent something unasked (discard), and one older than
//! `backend_idle_timeout` is closed rather than reused, since the app may be about
//! to close it from its side.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Idle connections kept per backend address per worker.
pub const MAX_IDLE_PER_BACKEND: usize = 16;

/// A connection to a backend, fresh or taken from the pool.
#[derive(Debug)]
pub struct BackendConn {
    /// The non-blocking socket.
    pub sock: TcpStream,
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

/// Opens a new connection with a timeout; the socket is returned non-blocking with
/// `TCP_NODELAY` set.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<BackendConn, ConnectError> {
    let sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock {
            ConnectError::TimedOut
        } else {
            ConnectError::Io(e)
        }
    })?;
    sock.set_nodelay(true).map_err(ConnectError::Io)?;
    sock.set_nonblocking(true).map_err(ConnectError::Io)?;
    Ok(BackendConn {
        sock,
        addr,
        reused: false,
    })
}

/// One worker's idle backend connections, newest last.
#[derive(Debug)]
pub struct Pool {
    idle: HashMap<SocketAddr, Vec<(TcpStream, Instant)>>,
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

    /// The newest live idle connection to `addr`, if any.
    pub fn take(&mut self, addr: SocketAddr) -> Option<BackendConn> {
        let list = self.idle.get_mut(&addr)?;
        let now = Instant::now();
        while let Some((sock, since)) = list.pop() {
            if now.duration_since(since) >= self.idle_timeout {
                continue;
            }
            let mut probe = [0u8; 1];
            match sock.peek(&mut probe) {
                // Nothing to read: still open and quiet. This is the good case.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Some(BackendConn {
                        sock,
                        addr,
                        reused: true,
                    });
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
        list.push((conn.sock, Instant::now()));
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
