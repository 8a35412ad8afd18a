//! A fixed-size read buffer for backend bytes, zeroed once per worker.
//!
//! `Vec::resize` before every read would zero the space each time (64 KiB per
//! read, a visible share of a small request's cost); this buffer keeps its
//! bytes and tracks the unconsumed window `start..end` instead.

use std::io::{self, Read};

/// A read buffer with a fixed capacity.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// A buffer of `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> ReadBuf {
        ReadBuf {
            data: vec![0; capacity.max(1)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The bytes read and not yet consumed.
    pub(crate) fn data(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// How many bytes are unconsumed.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when no byte is unconsumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// True when no more bytes fit, even after moving the unconsumed ones down.
    pub(crate) fn is_full(&self) -> bool {
        self.len() == self.data.len()
    }

    /// Marks the first `n` unconsumed bytes as used.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Replaces the contents with `bytes` (at most the capacity): how a parked
    /// exchange gives back the backend bytes it had not framed yet.
    pub(crate) fn restore(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.data.len());
        self.data[..n].copy_from_slice(&bytes[..n]);
        self.start = 0;
        self.end = n;
    }

    /// Forgets every byte.
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// One `read` call into the free space after the unconsumed bytes (moved
    /// down first when the end is reached); `Ok(0)` is EOF or a full buffer.
    pub(crate) fn read_once(&mut self, sock: &mut impl Read) -> io::Result<usize> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn consume_and_compact_keep_the_unconsumed_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = ReadBuf::new(8);
        client.write_all(b"abcdefgh").expect("write");
        let mut got = 0;
        // Bounded: each read brings at least one byte or fails the test.
        for _ in 0..8 {
            if got == 8 {
                break;
            }
            got += buf.read_once(&mut server).expect("read");
        }
        assert!(buf.is_full());
        buf.consume(6);
        assert_eq!(buf.data(), b"gh");
        client.write_all(b"ij").expect("write");
        assert_eq!(buf.read_once(&mut server).expect("read"), 2);
        assert_eq!(buf.data(), b"ghij");
        buf.consume(4);
        assert!(buf.is_empty());
    }
}
