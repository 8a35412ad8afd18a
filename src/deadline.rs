//! Deadline-bounded I/O on non-blocking sockets.
//!
//! Every socket nexushub holds is non-blocking for its whole life. A "blocking"
//! read or write is the plain call first (usually it succeeds at once, one
//! syscall) and, only when it would block, a `poll` for the time that remains
//! before the phase's deadline. Deadlines are absolute `Instant`s, so a peer that
//! trickles one byte per second cannot stretch a phase (STYLE habit 4).

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Instant;

use crate::sys::{self, Interest};

/// Why a deadline-bounded operation failed.
#[derive(Debug)]
pub enum Wait {
    /// The deadline passed first.
    TimedOut,
    /// The socket reported an error.
    Io(io::Error),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::TimedOut => f.write_str("timed out"),
            Wait::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Waits until `fd` is ready for `interest` or the deadline passes.
pub fn wait_ready(fd: &impl AsRawFd, interest: Interest, deadline: Instant) -> Result<(), Wait> {
    let now = Instant::now();
    if now >= deadline {
        return Err(Wait::TimedOut);
    }
    match sys::poll_one(fd.as_raw_fd(), interest, deadline - now) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Wait::TimedOut),
        Err(e) => Err(Wait::Io(e)),
    }
}

/// Reads at least one byte (or EOF, `Ok(0)`) before the deadline.
pub fn read_some(sock: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<usize, Wait> {
    loop {
        match sock.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_ready(sock, Interest::Read, deadline)?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Wait::Io(e)),
        }
    }
}
