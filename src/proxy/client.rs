//! A client connection: the TCP socket, its rustls state and the plaintext read
//! from it but not yet used, plus the non-blocking I/O that the acceptor and the
//! workers drive it with (no call here waits on the client: whoever would wait
//! parks the connection).
//!
//! Its life cycle is its session's (`session.rs`, and `src/LIFECYCLE.md`):
//! accepted -> parked while the TLS handshake is under way -> handed to a
//! worker when readable -> head read without blocking (parked again if
//! incomplete) -> exchange (parked whenever the client or the backend is not
//! ready) -> parked idle (or served again at once if a pipelined request is
//! buffered) -> closed (parked while the close lingers).
//! The socket is non-blocking throughout; one thread at a time owns the whole
//! value (a rustls connection cannot be split), and moving it between the
//! acceptor and the workers moves ownership.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustls::ServerConnection;

use crate::proxy::census::Slot;
use crate::proxy::park::Registration;

/// Plaintext read from a client at most per fill, beyond what is buffered.
pub(crate) const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Longest we linger after a close that may leave unread client bytes behind, so
/// the kernel does not answer them with a reset that destroys our response.
pub(crate) const LINGER: Duration = Duration::from_millis(500);

/// Most bytes we read away while lingering.
pub(crate) const LINGER_MAX_BYTES: usize = 256 * 1024;

/// Largest plaintext buffer a connection keeps while parked idle: one large
/// request head must not pin its buffer for `idle_timeout`.
pub(crate) const IDLE_BUF_BYTES: usize = 1024;

/// The `min_data_rate` policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MinRate {
    /// Bytes per second; 0 is off.
    pub(crate) bytes_per_sec: u64,
    /// Waiting allowed before the rate applies.
    pub(crate) grace: Duration,
}

/// Why a client connection cannot go on.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// The TLS layer refused the peer's bytes.
    Tls(rustls::Error),
    /// A socket error.
    Io(io::Error),
    /// The peer closed the connection.
    Closed,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Tls(e) => write!(f, "tls: {e}"),
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Closed => f.write_str("closed by client"),
        }
    }
}

/// What a non-blocking read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// New plaintext is in `buf` (or the buffer reached its cap).
    Progress,
    /// Nothing now; the socket would block.
    WouldBlock,
    /// The peer closed (cleanly or not) and nothing new arrived.
    Eof,
}

/// What driving the handshake without blocking led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// Done: the connection can carry requests.
    Done,
    /// Waiting for the client's next flight.
    NeedRead,
    /// Our flight did not fit in the socket buffer.
    NeedWrite,
}

/// One client connection and everything known about it.
#[derive(Debug)]
pub(crate) struct ClientConn {
    /// The non-blocking socket.
    pub(crate) sock: TcpStream,
    /// Its rustls state.
    pub(crate) tls: ServerConnection,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The deadline of the current phase (handshake, head, or idle).
    pub(crate) deadline: Instant,
    /// Plaintext read but not yet consumed: a partial head or pipelined requests.
    pub(crate) buf: Vec<u8>,
    /// The normalised SNI name the client sent, once the handshake is done.
    pub(crate) sni: Option<String>,
    /// The socket's place in the park set, once it was first parked.
    pub(crate) registration: Option<Registration>,
    /// Set when the connection is parked without the socket having said EAGAIN
    /// for what it waits on: the parking re-polls it (see `park.rs`).
    pub(crate) repoll: bool,
    /// True when the last read from the socket filled what it was given: more
    /// bytes may wait in the socket, so it is not drained.
    pub(crate) unread: bool,
    /// Set when an event said the client closed its side (or the socket
    /// failed): the socket is read again before the connection is parked.
    pub(crate) hangup: bool,
    /// Requests served so far.
    pub(crate) requests: u64,
    /// Time spent waiting on this client (to read or to write) during the
    /// current exchange; what `min_data_rate` is measured against.
    pub(crate) waited: Duration,
    _slot: Slot,
}

impl ClientConn {
    /// Wraps an accepted (already non-blocking) socket.
    pub(crate) fn new(
        sock: TcpStream,
        tls: ServerConnection,
        peer: SocketAddr,
        handshake_deadline: Instant,
        slot: Slot,
    ) -> ClientConn {
        ClientConn {
            sock,
            tls,
            peer,
            deadline: handshake_deadline,
            buf: Vec::new(),
            sni: None,
            registration: None,
            repoll: false,
            unread: false,
            hangup: false,
            requests: 0,
            waited: Duration::ZERO,
            _slot: slot,
        }
    }

    /// Drives the handshake as far as the socket allows without blocking.
    pub(crate) fn drive_handshake(&mut self) -> Result<Handshake, ConnError> {
        for _ in 0..64 {
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Handshake::NeedWrite)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ConnError::Io(e)),
                }
            }
            if !self.tls.is_handshaking() {
                self.sni = self
                    .tls
                    .server_name()
                    .and_then(|name| crate::host::normalize(name).ok());
                return Ok(Handshake::Done);
            }
            match self.read_tls() {
                Ok(0) => return Err(ConnError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Handshake::NeedRead),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
            self.process()?;
        }
        // A handshake needs a handful of rounds; this many means a misbehaving peer.
        Err(ConnError::Tls(rustls::Error::General(
            "handshake did not progress".into(),
        )))
    }

    /// One read from the socket into rustls, noting in `unread` whether the
    /// socket may hold more.
    fn read_tls(&mut self) -> io::Result<usize> {
        let mut reader = Tracked {
            sock: &self.sock,
            full: &mut self.unread,
        };
        self.tls.read_tls(&mut reader)
    }

    /// Processes received TLS records and moves any plaintext into `buf`. On a
    /// TLS error, queues the alert rustls prepared and tries once to send it.
    fn process(&mut self) -> Result<(), ConnError> {
        match self.tls.process_new_packets() {
            Ok(state) => {
                let n = state.plaintext_bytes_to_read();
                if n > 0 {
                    let start = self.buf.len();
                    self.buf.resize(start + n, 0);
                    let got = match self.tls.reader().read(&mut self.buf[start..]) {
                        Ok(got) => got,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(e) => {
                            self.buf.truncate(start);
                            return Err(ConnError::Io(e));
                        }
                    };
                    self.buf.truncate(start + got);
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.tls.write_tls(&mut self.sock);
                Err(ConnError::Tls(e))
            }
        }
    }

    /// Reads whatever the socket has now into `buf`, without blocking, stopping
    /// once `buf` holds `cap` bytes.
    pub(crate) fn fill_nonblocking(&mut self, cap: usize) -> Result<Fill, ConnError> {
        let before = self.buf.len();
        // Bounded: each round either reads bytes or returns.
        for _ in 0..256 {
            if self.buf.len() >= cap {
                return Ok(Fill::Progress);
            }
            match self.read_tls() {
                Ok(0) => {
                    self.process()?;
                    return Ok(if self.buf.len() > before {
                        Fill::Progress
                    } else {
                        Fill::Eof
                    });
                }
                Ok(_) => {
                    self.process()?;
                    if self.tls.wants_write() {
                        // Post-handshake messages (tickets, key updates): best effort now,
                        // the next flush sends the rest.
                        let _ = self.tls.write_tls(&mut self.sock);
                    }
                    // One read usually brings all the socket had: let the caller look
                    // at it before paying for a read that would only say EAGAIN.
                    if self.buf.len() > before {
                        return Ok(Fill::Progress);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(if self.buf.len() > before {
                        Fill::Progress
                    } else {
                        Fill::WouldBlock
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        Ok(Fill::Progress)
    }

    /// The deadline for the client's next read or write in an exchange that has
    /// moved `moved` body bytes: `client_timeout` from now, or sooner when the
    /// client is behind `min_data_rate` (after its grace) for the time we waited on it.
    pub(crate) fn client_deadline(&self, timeout: Duration, rate: MinRate, moved: u64) -> Instant {
        let now = Instant::now();
        let gap = now + timeout;
        if rate.bytes_per_sec == 0 {
            return gap;
        }
        let allowed =
            rate.grace + Duration::from_secs_f64(moved as f64 / rate.bytes_per_sec as f64);
        gap.min(now + allowed.saturating_sub(self.waited))
    }

    /// Hands `data` to rustls and sends what the socket takes now, without
    /// blocking. Returns how many bytes of `data` rustls took and whether
    /// everything queued reached the socket; when it did not, the rest waits in
    /// rustls (and the untaken tail of `data` with the caller) until the socket
    /// is writable.
    pub(crate) fn send_nonblocking(&mut self, data: &[u8]) -> Result<(usize, bool), ConnError> {
        let mut taken = 0;
        // Bounded: each round takes bytes into rustls or empties its buffer.
        for _ in 0..(data.len() / 1024 + 64) {
            if taken < data.len() {
                taken += self
                    .tls
                    .writer()
                    .write(&data[taken..])
                    .map_err(ConnError::Io)?;
            }
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((taken, false)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ConnError::Io(e)),
                }
            }
            if taken == data.len() {
                return Ok((taken, true));
            }
        }
        // Out of rounds without the socket saying EAGAIN: whoever parks the
        // connection for this must re-poll it.
        self.repoll = true;
        Ok((taken, false))
    }

    /// Ends the connection politely without waiting: close_notify and our FIN,
    /// as far as the socket takes them now. (After an answer, the session closes
    /// through its closing phase instead, which waits for both, parked.)
    pub(crate) fn close(mut self) {
        self.tls.send_close_notify();
        let _ = self.flush_nonblocking();
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    /// Queues all of `data` (a small message of our own) in rustls and sends
    /// what the socket takes now: true once all of it is out; the rest waits
    /// in rustls for [`ClientConn::flush_nonblocking`].
    pub(crate) fn queue(&mut self, data: &[u8]) -> Result<bool, ConnError> {
        self.tls.writer().write_all(data).map_err(ConnError::Io)?;
        self.flush_nonblocking()
    }

    /// Sends what rustls has queued as far as the socket takes it now: true
    /// once all of it is out, false when the socket would block.
    pub(crate) fn flush_nonblocking(&mut self) -> Result<bool, ConnError> {
        // Bounded: each round sends bytes or returns.
        for _ in 0..1024 {
            if !self.tls.wants_write() {
                return Ok(true);
            }
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        self.repoll = true;
        Ok(false)
    }

    /// While closing: reads and drops what the client still sends, without
    /// blocking and within `left` (counted down). True when the socket would
    /// block with bytes still allowed (wait for more); false at the client's
    /// end, on an error, or once the allowance is spent.
    pub(crate) fn read_away(&mut self, left: &mut usize) -> bool {
        let mut sink = [0u8; 8192];
        // Bounded: each round reads bytes off the allowance, or returns.
        for _ in 0..(LINGER_MAX_BYTES / 8192 + 2) {
            match (&self.sock).read(&mut sink) {
                Ok(0) => return false,
                Ok(n) => {
                    *left = left.saturating_sub(n);
                    if *left == 0 {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Gives back what a large request left behind before the connection is
    /// parked idle: a plaintext buffer larger than [`IDLE_BUF_BYTES`], and
    /// rustls' receive buffer (which grows to a whole record, 16 KiB, while
    /// records arrive, and shrinks back to 4 KiB only when it prepares a read
    /// with nothing pending; a read that says "would block" makes it do so
    /// without touching the socket). Nothing else rustls keeps grows with
    /// what the client sent: received plaintext is all in `buf`, and sent
    /// records are freed once written.
    pub(crate) fn trim_idle(&mut self) {
        if self.buf.capacity() > IDLE_BUF_BYTES {
            // Freed whole rather than shrunk in place: a shrunk block leaves a
            // hole just too small for the next large head's buffer, and 200
            // such holes cost as much memory as 200 buffers (measured).
            self.buf = self.buf.as_slice().to_vec();
        }
        let _ = self.tls.read_tls(&mut WouldBlock);
    }

    /// Drops the connection at once without a close_notify, so the client can tell
    /// a response was cut short (used when a backend dies mid-body).
    pub(crate) fn abort(self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// A reader that has nothing yet: lets rustls prepare a read (and shrink its
/// buffer) without taking a byte or seeing an end of stream.
struct WouldBlock;

impl Read for WouldBlock {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// The client's socket as rustls reads it, noting whether a read filled the
/// buffer it was given (so the socket may hold more) or found it empty.
struct Tracked<'a> {
    sock: &'a TcpStream,
    full: &'a mut bool,
}

impl Read for Tracked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let res = (&mut &*self.sock).read(buf);
        match &res {
            Ok(n) => *self.full = *n > 0 && *n == buf.len(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *self.full = false,
            Err(_) => {}
        }
        res
    }
}
