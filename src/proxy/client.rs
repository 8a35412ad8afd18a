//! A client connection: the TCP socket, its rustls state and the plaintext read
//! from it but not yet used, plus the non-blocking I/O that the acceptor and the
//! workers drive it with (no call here waits on the client: whoever would wait
//! parks the connection).
//!
//! Life cycle (see also `src/LIFECYCLE.md`): accepted -> parked while the TLS
//! handshake is under way -> handed to a worker when readable -> head read without
//! blocking (parked again if incomplete) -> exchange (parked whenever the client
//! or the backend is not ready) -> parked idle (or served again at once if a
//! pipelined request is buffered) -> closed (parked while the close lingers).
//! The socket is non-blocking throughout; one thread at a time owns the whole
//! value (a rustls connection cannot be split), and moving it between the
//! acceptor and the workers moves ownership.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::ServerConnection;

use crate::proxy::park::Registration;

/// Plaintext read from a client at most per fill, beyond what is buffered.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Longest we linger after a close that may leave unread client bytes behind, so
/// the kernel does not answer them with a reset that destroys our response.
pub const LINGER: Duration = Duration::from_millis(500);

/// Most bytes we read away while lingering.
pub const LINGER_MAX_BYTES: usize = 256 * 1024;

/// Largest plaintext buffer a connection keeps while parked idle: one large
/// request head must not pin its buffer for `idle_timeout`.
pub const IDLE_BUF_BYTES: usize = 1024;

/// The `min_data_rate` policy.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    /// Bytes per second; 0 is off.
    pub bytes_per_sec: u64,
    /// Waiting allowed before the rate applies.
    pub grace: Duration,
}

/// Where the connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The TLS handshake is under way.
    Handshake,
    /// Between requests, no byte of the next one yet.
    Idle,
    /// Part of a request head has arrived.
    Head,
    /// An exchange waits on the client: a request body that has not arrived, or
    /// a response the client has not read (`ClientConn::exchange` holds it).
    Exchange,
    /// Closing after our last answer: its close_notify is not all out yet, or
    /// what the client still sends is read away (`ClientConn::linger_left`).
    Closing,
}

/// The live client connections, in total and per client address (see
/// [`client_key`]).
#[derive(Debug, Default)]
pub struct Census {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// What `max_connections_per_ip` counts a client under: its IPv4 address (an
/// IPv4-mapped IPv6 address is that IPv4 client), or its IPv6 /64. One IPv6
/// host is usually given a whole /64 and can pick any address in it, so
/// counting per address would be no cap at all.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// Why a new connection was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_connections_per_ip` reached for this address.
    PerIp,
    /// The open-file limit is near: the rest is kept for the apps.
    Descriptors,
}

impl Census {
    /// Connections held now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// One connection's place in the [`Census`]; given back when dropped, whatever
/// path (panic included) drops it.
#[derive(Debug)]
pub struct Slot {
    census: Arc<Census>,
    ip: IpAddr,
}

impl Slot {
    /// Takes a slot for a connection from `ip` unless a cap is reached. Called at
    /// accept only, so the per-IP lock is never on the request path.
    pub fn acquire(
        census: &Arc<Census>,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<Slot, Refusal> {
        let ip = client_key(ip);
        let mut per_ip = census.per_ip.lock();
        if census.total.load(Ordering::Relaxed) >= max {
            return Err(Refusal::Total);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        census.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            census: census.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.census.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.census.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a client connection cannot go on.
#[derive(Debug)]
pub enum ConnError {
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
pub enum Fill {
    /// New plaintext is in `buf` (or the buffer reached its cap).
    Progress,
    /// Nothing now; the socket would block.
    WouldBlock,
    /// The peer closed (cleanly or not) and nothing new arrived.
    Eof,
}

/// What driving the handshake without blocking led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Done: the connection can carry requests.
    Done,
    /// Waiting for the client's next flight.
    NeedRead,
    /// Our flight did not fit in the socket buffer.
    NeedWrite,
}

/// One client connection and everything known about it.
#[derive(Debug)]
pub struct ClientConn {
    /// The non-blocking socket.
    pub sock: TcpStream,
    /// Its rustls state.
    pub tls: ServerConnection,
    /// The client's address.
    pub peer: SocketAddr,
    /// Where it is between requests.
    pub phase: Phase,
    /// The deadline of the current phase (handshake, head, or idle).
    pub deadline: Instant,
    /// Plaintext read but not yet consumed: a partial head or pipelined requests.
    pub buf: Vec<u8>,
    /// The normalised SNI name the client sent, once the handshake is done.
    pub sni: Option<String>,
    /// The socket's place in the park set, once it was first parked.
    pub registration: Option<Registration>,
    /// Set when the connection is parked without the socket having said EAGAIN
    /// for what it waits on: the parking re-polls it (see `park.rs`).
    pub repoll: bool,
    /// True when the last read from the socket filled what it was given: more
    /// bytes may wait in the socket, so it is not drained.
    pub unread: bool,
    /// Set when an event said the client closed its side (or the socket
    /// failed): the socket is read again before the connection is parked.
    pub hangup: bool,
    /// Requests served so far.
    pub requests: u64,
    /// Time spent waiting on this client (to read or to write) during the
    /// current exchange; what `min_data_rate` is measured against.
    pub waited: Duration,
    /// The exchange in progress while the connection is parked in it.
    pub exchange: Option<Box<crate::proxy::exchange::Exchange>>,
    /// When the connection was parked in its exchange (for `waited`).
    pub parked_at: Option<Instant>,
    /// While closing: how many more client bytes may be read away (0: none).
    pub linger_left: usize,
    /// While closing: our FIN is sent.
    pub fin_sent: bool,
    _slot: Slot,
}

impl ClientConn {
    /// Wraps an accepted (already non-blocking) socket.
    pub fn new(
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
            phase: Phase::Handshake,
            deadline: handshake_deadline,
            buf: Vec::new(),
            sni: None,
            registration: None,
            repoll: false,
            unread: false,
            hangup: false,
            requests: 0,
            waited: Duration::ZERO,
            exchange: None,
            parked_at: None,
            linger_left: 0,
            fin_sent: false,
            _slot: slot,
        }
    }

    /// Drives the handshake as far as the socket allows without blocking.
    pub fn drive_handshake(&mut self) -> Result<Handshake, ConnError> {
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
    pub fn fill_nonblocking(&mut self, cap: usize) -> Result<Fill, ConnError> {
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
    pub fn client_deadline(&self, timeout: Duration, rate: MinRate, moved: u64) -> Instant {
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
    pub fn send_nonblocking(&mut self, data: &[u8]) -> Result<(usize, bool), ConnError> {
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
    /// as far as the socket takes them now. (After an answer, the worker closes
    /// through `Phase::Closing` instead, which waits for both, parked.)
    pub fn close(mut self) {
        self.tls.send_close_notify();
        let _ = self.flush_nonblocking();
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    /// Queues all of `data` (a small message of our own) in rustls and sends
    /// what the socket takes now: true once all of it is out; the rest waits
    /// in rustls for [`ClientConn::flush_nonblocking`].
    pub fn queue(&mut self, data: &[u8]) -> Result<bool, ConnError> {
        self.tls.writer().write_all(data).map_err(ConnError::Io)?;
        self.flush_nonblocking()
    }

    /// Sends what rustls has queued as far as the socket takes it now: true
    /// once all of it is out, false when the socket would block.
    pub fn flush_nonblocking(&mut self) -> Result<bool, ConnError> {
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
    /// blocking and within `linger_left`. True when the socket would block with
    /// bytes still allowed (wait for more); false at the client's end, on an
    /// error, or once the allowance is spent.
    pub fn read_away(&mut self) -> bool {
        let mut sink = [0u8; 8192];
        // Bounded: each round reads bytes off the allowance, or returns.
        for _ in 0..(LINGER_MAX_BYTES / 8192 + 2) {
            match (&self.sock).read(&mut sink) {
                Ok(0) => return false,
                Ok(n) => {
                    self.linger_left = self.linger_left.saturating_sub(n);
                    if self.linger_left == 0 {
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
    pub fn trim_idle(&mut self) {
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
    pub fn abort(self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_ip_cap_leaves_room_for_other_addresses() {
        let census = Arc::new(Census::default());
        let a1 = Slot::acquire(&census, ip(1), 3, 2).expect("first");
        let _a2 = Slot::acquire(&census, ip(1), 3, 2).expect("second");
        assert_eq!(
            Slot::acquire(&census, ip(1), 3, 2).err(),
            Some(Refusal::PerIp)
        );
        let _b1 = Slot::acquire(&census, ip(2), 3, 2).expect("other address");
        assert_eq!(
            Slot::acquire(&census, ip(3), 3, 2).err(),
            Some(Refusal::Total)
        );
        drop(a1);
        assert_eq!(census.total(), 2);
        assert!(Slot::acquire(&census, ip(1), 3, 2).is_ok());
    }

    #[test]
    fn client_key_counts_ipv6_per_64_and_mapped_ipv4_as_ipv4() {
        let v6 = |s: &str| -> IpAddr { s.parse().expect("test address") };
        let table = [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::1", "::"),
            ("fe80::1", "fe80::"),
        ];
        for (ip, key) in table {
            assert_eq!(client_key(v6(ip)), v6(key), "{ip}");
        }
    }

    #[test]
    fn per_ip_cap_counts_one_ipv6_64_as_one_client() {
        let census = Arc::new(Census::default());
        let a: IpAddr = "2001:db8::1".parse().expect("addr");
        let b: IpAddr = "2001:db8::2:3".parse().expect("addr");
        let other: IpAddr = "2001:db8:0:1::1".parse().expect("addr");
        let _a = Slot::acquire(&census, a, 10, 2).expect("first");
        let _b = Slot::acquire(&census, b, 10, 2).expect("second, same /64");
        let third: IpAddr = "2001:db8::ffff".parse().expect("addr");
        assert_eq!(
            Slot::acquire(&census, third, 10, 2).err(),
            Some(Refusal::PerIp)
        );
        assert!(Slot::acquire(&census, other, 10, 2).is_ok(), "another /64");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("addr");
        let _m = Slot::acquire(&census, mapped, 10, 1).expect("mapped");
        assert_eq!(
            Slot::acquire(&census, ip(1), 10, 1).err(),
            Some(Refusal::PerIp),
            "a mapped address and its IPv4 are one client"
        );
    }

    #[test]
    fn dropping_every_slot_empties_the_census() {
        let census = Arc::new(Census::default());
        let slots: Vec<Slot> = (0..5)
            .filter_map(|i| Slot::acquire(&census, ip(i), 10, 10).ok())
            .collect();
        assert_eq!(census.total(), 5);
        drop(slots);
        assert_eq!(census.total(), 0);
        assert!(census.per_ip.lock().is_empty());
    }
}
