//! A fixed-size read buffer for backend bytes, zeroed once per worker.
//!
//! `Vec::resize` before every read would zero the space each time (64 KiB per
//! read, a visible share of a small request's cost); this buffer keeps its
//! bytes and tracks the unconsumed window `start..end` instead.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Instant;

use crate::deadline::{self, Wait};
use crate::sys::Interest;

/// A read buffer with a fixed capacity.
#[derive(Debug)]
pub struct ReadBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// A buffer of `capacity` bytes.
    pub fn new(capacity: usize) -> ReadBuf {
        ReadBuf {
            data: vec![0; capacity.max(1)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The bytes read and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// How many bytes are unconsumed.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when no byte is unconsumed.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// True when no more bytes fit, even after moving the unconsumed ones down.
    pub fn is_full(&self) -> bool {
        self.len() == self.data.len()
    }

    /// Marks the first `n` unconsumed bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Replaces the contents with `bytes` (at most the capacity): how a parked
    /// exchange gives back the backend bytes it had not framed yet.
    pub fn restore(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.data.len());
        self.data[..n].copy_from_slice(&bytes[..n]);
        self.start = 0;
        self.end = n;
    }

    /// Forgets every byte.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// One `read` call into the free space after the unconsumed bytes (moved
    /// down first when the end is reached); `Ok(0)` is EOF or a full buffer.
    pub fn read_once(&mut self, sock: &mut impl Read) -> io::Result<usize> {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.data.len() {
            return Ok(0);
        }
        let n = sock.read(&mut self.data[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads at least one byte from `sock` before the deadline, after the
    /// unconsumed ones; `Ok(0)` is EOF (or a full buffer, which callers rule out
    /// with [`ReadBuf::is_full`] first).
    pub fn read_from(&mut self, sock: &mut TcpStream, deadline: Instant) -> Result<usize, Wait> {
        loop {
            match self.read_once(sock) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    deadline::wait_ready(sock, Interest::Read, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Wait::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Duration;

    #[test]
    fn consume_and_compact_keep_the_unconsumed_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let mut buf = ReadBuf::new(8);
        let deadline = Instant::now() + Duration::from_secs(5);
        client.write_all(b"abcdefgh").expect("write");
        let mut got = 0;
        while got < 8 {
            got += buf.read_from(&mut server, deadline).expect("read");
        }
        assert!(buf.is_full());
        buf.consume(6);
        assert_eq!(buf.data(), b"gh");
        client.write_all(b"ij").expect("write");
        assert_eq!(buf.read_from(&mut server, deadline).expect("read"), 2);
        assert_eq!(buf.data(), b"ghij");
        buf.consume(4);
        assert!(buf.is_empty());
    }
}
