//! A WebSocket connection (RFC 6455) over any `Read + Write` stream: a
//! [`TlsStream`](super::tls_client::TlsStream) to nexushub, or plain TCP to a backend;
//! and the client's opening handshake, [`Upgrade`].
//!
//! ```text
//!   Upgrade::new(host, path).connect(stream) -> (WebSocket<S>, the 101 head)
//!   WebSocket<S>: send(Message) / recv() -> Message, frames by ws_frame
//! ```
//!
//! Every buffer has a cap ([`MAX_MESSAGE_BYTES`], a 64 KiB head), every read the
//! socket's timeout; a read that times out mid-frame loses nothing.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::base64::base64;
use super::sha1::sha1;
use super::tls_client::{Head, Socket};
use super::wire::{classify, fields_named, Fields, WireError};
use super::ws_frame::{
    decode, Close, Frame, Message, Opcode, ProtocolError, Role, MAX_MESSAGE_BYTES,
};
use super::READ_TIMEOUT;

/// The GUID that RFC 6455 section 1.3 appends to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Longest handshake head either peer accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 64 * 1024;

/// How long a close handshake may take, from our Close to the peer's.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a frame `send_while_receiving` writes before it looks for messages.
const INTERLEAVE_PIECE_BYTES: usize = 64 * 1024;

/// How long `send_while_receiving` waits for a message between pieces.
const INTERLEAVE_WAIT: Duration = Duration::from_millis(1);

/// How many messages `send_while_receiving` takes in between two pieces at most.
const MAX_MESSAGES_PER_PIECE: usize = 64;

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub fn accept_value(key: &str) -> String {
    base64(&sha1(format!("{key}{ACCEPT_GUID}").as_bytes()))
}

/// How a WebSocket operation failed.
#[derive(Debug)]
pub enum WsError {
    /// The peer closed the TCP connection (`clean`: an EOF, not a reset).
    Closed {
        /// Whether the close was an orderly EOF.
        clean: bool,
    },
    /// The socket's read timeout ran out.
    TimedOut,
    /// Any other I/O error.
    Io(io::Error),
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// The opening handshake failed: why, and the response head if one came.
    Handshake {
        /// What was wrong.
        why: String,
        /// The response head (a 403, a 101 without the right accept value, ...).
        head: Option<Box<Head>>,
    },
}

impl WsError {
    /// Whether this is the peer closing the TCP connection.
    pub fn is_close(&self) -> bool {
        matches!(self, WsError::Closed { .. })
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Closed { clean: true } => f.write_str("peer closed (eof)"),
            WsError::Closed { clean: false } => f.write_str("peer closed (reset or unclean eof)"),
            WsError::TimedOut => f.write_str("read timed out"),
            WsError::Io(e) => write!(f, "i/o error: {e}"),
            WsError::Protocol(e) => write!(f, "protocol error: {e}"),
            WsError::Handshake { why, head } => match head {
                Some(h) => write!(f, "handshake: {why}; response {:?}", h.raw),
                None => write!(f, "handshake: {why}"),
            },
        }
    }
}

impl std::error::Error for WsError {}

impl From<io::Error> for WsError {
    fn from(e: io::Error) -> WsError {
        match classify(e) {
            WireError::Closed { clean } => WsError::Closed { clean },
            WireError::TimedOut => WsError::TimedOut,
            WireError::Io(e) => WsError::Io(e),
            WireError::Malformed(why) => WsError::Io(io::Error::other(why)),
        }
    }
}

impl From<ProtocolError> for WsError {
    fn from(e: ProtocolError) -> WsError {
        WsError::Protocol(e)
    }
}

/// A small random source for keys and masks: unpredictable across runs (seeded from
/// std's per-process hash keys), no dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        Rng(RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed)))
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.next() as u32).to_ne_bytes()
    }
}

/// A WebSocket connection over a stream, after the handshake (or before it, for the
/// server, which reads the request through the same buffer so that a frame pipelined
/// behind it is kept).
///
/// By default it answers a ping with a pong and a close with a close, as RFC 6455
/// asks, and still hands the ping or close to the caller. A reader half from
/// [`WebSocket::split`] answers nothing: only the writer half writes.
#[derive(Debug)]
pub struct WebSocket<S> {
    stream: S,
    role: Role,
    buf: Vec<u8>,
    pos: usize,
    /// The opcode and bytes so far of a fragmented message being received.
    partial: Option<(Opcode, Vec<u8>)>,
    rng: Rng,
    auto_reply: bool,
    close_sent: bool,
    close_received: bool,
}

impl<S: Read + Write> WebSocket<S> {
    /// Wraps a stream whose handshake is done; `early` are bytes already read past it.
    pub fn new(stream: S, role: Role, early: Vec<u8>) -> WebSocket<S> {
        WebSocket {
            stream,
            role,
            buf: early,
            pos: 0,
            partial: None,
            rng: Rng::new(),
            auto_reply: true,
            close_sent: false,
            close_received: false,
        }
    }

    /// Whether we have sent a close frame.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Whether we have received a close frame.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Writes raw bytes (a hand-made frame, say) and flushes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Sends one frame, masked with a fresh key if we are the client (a mask already
    /// set on `frame` is kept, a server's is removed).
    pub fn send_frame(&mut self, frame: Frame) -> Result<(), WsError> {
        let bytes = self.encode(frame);
        self.send_raw(&bytes)
    }

    /// A frame's bytes as we send them (masked if we are the client).
    fn encode(&mut self, mut frame: Frame) -> Vec<u8> {
        frame.mask = match self.role {
            Role::Client => Some(frame.mask.unwrap_or_else(|| self.rng.mask())),
            Role::Server => None,
        };
        if frame.opcode == Opcode::Close {
            self.close_sent = true;
        }
        frame.encode()
    }

    /// Sends a message (or a control frame) as one frame.
    pub fn send(&mut self, msg: Message) -> Result<(), WsError> {
        self.send_frame(msg.into_frame())
    }

    /// Sends a text message as one frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), WsError> {
        self.send(Message::text(text))
    }

    /// Sends a binary message as one frame.
    pub fn send_binary(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        self.send(Message::Binary(bytes.to_vec()))
    }

    /// Sends one text (`text`) or binary message as a frame per piece: the first with
    /// the message's opcode, the rest continuations, FIN on the last.
    pub fn send_fragmented(&mut self, text: bool, pieces: &[&[u8]]) -> Result<(), WsError> {
        let first = if text { Opcode::Text } else { Opcode::Binary };
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = if i == 0 { first } else { Opcode::Continuation };
            self.send_frame(Frame::new(i + 1 == pieces.len(), opcode, piece.to_vec()))?;
        }
        Ok(())
    }

    /// Reads more bytes into the buffer.
    fn fill(&mut self) -> Result<(), WsError> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        loop {
            match self.stream.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    return Err(WsError::Closed { clean: true });
                }
                Ok(n) => {
                    self.buf.truncate(old + n);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e.into());
                }
            }
        }
    }

    /// Reads one HTTP head through its blank line (the bytes after it stay buffered).
    pub fn read_head(&mut self) -> Result<Vec<u8>, WsError> {
        loop {
            if let Some(at) = super::find(&self.buf[self.pos..], b"\r\n\r\n") {
                let head = self.buf[self.pos..self.pos + at + 4].to_vec();
                self.pos += at + 4;
                return Ok(head);
            }
            if self.buf.len() - self.pos > MAX_HEAD_BYTES {
                return Err(WsError::Handshake {
                    why: format!("head longer than {MAX_HEAD_BYTES} bytes"),
                    head: None,
                });
            }
            self.fill()?;
        }
    }

    /// Reads the next frame, unanswered and not reassembled.
    pub fn recv_frame(&mut self) -> Result<Frame, WsError> {
        loop {
            if let Some((frame, n)) = decode(&self.buf[self.pos..], self.role.other())? {
                self.pos += n;
                return Ok(frame);
            }
            self.fill()?;
        }
    }

    /// Reads the next message: a whole text or binary message (reassembled from its
    /// fragments), or a control frame met on the way (answered if this half answers).
    /// A protocol error is answered with a close carrying its code.
    pub fn recv(&mut self) -> Result<Message, WsError> {
        match self.recv_message() {
            Err(WsError::Protocol(e)) => {
                if self.auto_reply && !self.close_sent {
                    let close = Close::new(e.close_code(), "");
                    let _ = self.send(Message::Close(Some(close)));
                }
                Err(WsError::Protocol(e))
            }
            r => r,
        }
    }

    fn recv_message(&mut self) -> Result<Message, WsError> {
        loop {
            let frame = self.recv_frame()?;
            let payload = frame.payload;
            let (opcode, data) = match frame.opcode {
                Opcode::Ping => {
                    if self.auto_reply && !self.close_sent {
                        self.send(Message::Pong(payload.clone()))?;
                    }
                    return Ok(Message::Ping(payload));
                }
                Opcode::Pong => return Ok(Message::Pong(payload)),
                Opcode::Close => {
                    self.close_received = true;
                    let close = Close::parse(&payload)?;
                    if self.auto_reply && !self.close_sent {
                        // Echo the code, as section 5.5.1 suggests.
                        let code = close.as_ref().map(|c| Close::new(c.code, ""));
                        self.send(Message::Close(code))?;
                    }
                    return Ok(Message::Close(close));
                }
                Opcode::Text | Opcode::Binary if self.partial.is_some() => {
                    return Err(ProtocolError::InterleavedMessage.into())
                }
                Opcode::Text | Opcode::Binary if frame.fin => (frame.opcode, payload),
                Opcode::Text | Opcode::Binary => {
                    self.partial = Some((frame.opcode, payload));
                    continue;
                }
                Opcode::Continuation => {
                    let Some((opcode, mut data)) = self.partial.take() else {
                        return Err(ProtocolError::UnexpectedContinuation.into());
                    };
                    let total = (data.len() + payload.len()) as u64;
                    if total > MAX_MESSAGE_BYTES {
                        return Err(ProtocolError::TooBig(total).into());
                    }
                    data.extend_from_slice(&payload);
                    if !frame.fin {
                        self.partial = Some((opcode, data));
                        continue;
                    }
                    (opcode, data)
                }
            };
            return match opcode {
                Opcode::Text => String::from_utf8(data)
                    .map(Message::Text)
                    .map_err(|_| ProtocolError::InvalidUtf8.into()),
                _ => Ok(Message::Binary(data)),
            };
        }
    }

    /// Starts the close handshake and waits (at most 10 s) for the peer's close,
    /// skipping the messages that come first; the peer's close code and reason.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<Option<Close>, WsError> {
        self.send(Message::Close(Some(Close::new(code, reason))))?;
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while Instant::now() < deadline {
            if let Message::Close(c) = self.recv()? {
                return Ok(c);
            }
        }
        Err(WsError::TimedOut)
    }

    /// After the close handshake: waits for the TCP close (within the socket's read
    /// timeout); any byte before it is an error.
    pub fn expect_eof(&mut self) -> Result<(), WsError> {
        if self.pos < self.buf.len() {
            return Err(WsError::Handshake {
                why: format!("{} bytes after the close", self.buf.len() - self.pos),
                head: None,
            });
        }
        match self.fill() {
            Err(WsError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Err(WsError::Handshake {
                why: format!("{} bytes after the close", self.buf.len() - self.pos),
                head: None,
            }),
        }
    }

    /// The stream, and the bytes read from it but not decoded yet.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let rest = self.buf[self.pos..].to_vec();
        (self.stream, rest)
    }
}

impl<S: Read + Write + Socket> WebSocket<S> {
    /// Sets the read timeout of the socket under the stream.
    pub fn set_read_timeout(&self, d: Duration) {
        self.stream
            .socket()
            .set_read_timeout(Some(d))
            .unwrap_or_else(|e| panic!("set_read_timeout: {e}"));
    }

    /// Like [`recv`](Self::recv), but `Ok(None)` if nothing whole comes within `d`
    /// (what did come stays buffered, even half a frame); the read timeout is then
    /// back to the tests' default.
    pub fn recv_within(&mut self, d: Duration) -> Result<Option<Message>, WsError> {
        self.set_read_timeout(d);
        let r = self.recv();
        self.set_read_timeout(READ_TIMEOUT);
        match r {
            Err(WsError::TimedOut) => Ok(None),
            r => r.map(Some),
        }
    }

    /// Sends `msg` a piece at a time and, between pieces, takes in the messages that
    /// have arrived: one thread sending and receiving at once, for a stream that
    /// cannot be split (a rustls one). Meanwhile it answers nothing (a pong would land
    /// inside our frame): pings and closes are among the messages returned. Messages
    /// still on the way when the last piece is sent are left for `recv`.
    pub fn send_while_receiving(&mut self, msg: Message) -> Result<Vec<Message>, WsError> {
        let bytes = self.encode(msg.into_frame());
        let auto_reply = std::mem::replace(&mut self.auto_reply, false);
        let mut got = Vec::new();
        let mut result = Ok(());
        'send: for piece in bytes.chunks(INTERLEAVE_PIECE_BYTES) {
            if let Err(e) = self.send_raw(piece) {
                result = Err(e);
                break;
            }
            // Whatever is ready, a bounded number of messages per piece.
            for _ in 0..MAX_MESSAGES_PER_PIECE {
                match self.recv_within(INTERLEAVE_WAIT) {
                    Ok(Some(m)) => got.push(m),
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(e);
                        break 'send;
                    }
                }
            }
        }
        self.auto_reply = auto_reply;
        result.map(|()| got)
    }

    /// Ends the sending side of the TCP connection (a FIN): half-closed, still reading.
    pub fn shutdown_write(&self) {
        let _ = self.stream.socket().shutdown(Shutdown::Write);
    }

    /// Shuts the TCP connection down both ways without a close frame (an abrupt drop,
    /// as far as the peer's WebSocket can tell).
    pub fn drop_tcp(self) {
        let _ = self.stream.socket().shutdown(Shutdown::Both);
    }
}

impl WebSocket<TcpStream> {
    /// Splits a TCP connection into a reader half (which answers nothing) and a writer
    /// half (which never reads), to send and receive at once from two threads.
    pub fn split(self) -> io::Result<(WebSocket<TcpStream>, WebSocket<TcpStream>)> {
        let writer = WebSocket {
            stream: self.stream.try_clone()?,
            role: self.role,
            buf: Vec::new(),
            pos: 0,
            partial: None,
            rng: Rng::new(),
            auto_reply: false,
            close_sent: self.close_sent,
            close_received: self.close_received,
        };
        let reader = WebSocket {
            auto_reply: false,
            ..self
        };
        Ok((reader, writer))
    }
}

/// A client's opening handshake: the request it sends, and what it checks of the 101.
#[derive(Debug, Clone)]
pub struct Upgrade {
    host: String,
    path: String,
    key: String,
    headers: Vec<(String, String)>,
    pipelined: Vec<Frame>,
}

impl Upgrade {
    /// `GET path` for `host`, with a fresh random key.
    pub fn new(host: &str, path: &str) -> Upgrade {
        let mut rng = Rng::new();
        let mut nonce = rng.next().to_ne_bytes().to_vec();
        nonce.extend_from_slice(&rng.next().to_ne_bytes());
        Upgrade {
            host: host.to_string(),
            path: path.to_string(),
            key: base64(&nonce),
            headers: Vec::new(),
            pipelined: Vec::new(),
        }
    }

    /// Adds a header field (a `Sec-WebSocket-Protocol`, a cookie, a hop-by-hop field
    /// the proxy should remove, ...).
    pub fn header(mut self, name: &str, value: &str) -> Upgrade {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends `msg` (masked) in the same write as the request, before any answer.
    pub fn pipelined(mut self, msg: Message) -> Upgrade {
        let mut rng = Rng::new();
        self.pipelined.push(msg.into_frame().masked(rng.mask()));
        self
    }

    /// The `Sec-WebSocket-Key` it sends.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request head.
    pub fn request(&self) -> Vec<u8> {
        let mut out = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host, self.key
        );
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Sends the request (and the pipelined frames) on `stream` and checks the answer:
    /// a 101 with `Upgrade: websocket`, `Connection: upgrade` and the right accept
    /// value. Bytes that came right behind the 101 are kept for the first `recv`.
    pub fn connect<S: Read + Write>(&self, stream: S) -> Result<(WebSocket<S>, Head), WsError> {
        let mut ws = WebSocket::new(stream, Role::Client, Vec::new());
        let mut bytes = self.request();
        for f in &self.pipelined {
            bytes.extend_from_slice(&f.encode());
        }
        ws.send_raw(&bytes)?;
        let raw = ws.read_head()?;
        let head = Head::parse(&raw).map_err(|e| WsError::Handshake {
            why: e.to_string(),
            head: None,
        })?;
        let refuse = |why: &str| WsError::Handshake {
            why: why.to_string(),
            head: Some(Box::new(head.clone())),
        };
        if head.status != 101 {
            return Err(refuse("not a 101"));
        }
        if !has_token(&head.headers, "upgrade", "websocket") {
            return Err(refuse("no Upgrade: websocket"));
        }
        if !has_token(&head.headers, "connection", "upgrade") {
            return Err(refuse("no Connection: upgrade"));
        }
        if head.header("sec-websocket-accept") != Some(accept_value(&self.key).as_str()) {
            return Err(refuse("wrong Sec-WebSocket-Accept"));
        }
        Ok((ws, head))
    }
}

/// Whether a comma-separated header field lists `token` (case-insensitive).
pub fn has_token(fields: &Fields, name: &str, token: &str) -> bool {
    fields_named(fields, name)
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::accept_value;

    /// The RFC 6455 section 1.3 example.
    #[test]
    fn websocket_accept_value_of_the_rfc_example_key() {
        assert_eq!(
            accept_value("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
