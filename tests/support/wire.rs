//! A buffered reader of HTTP/1.1 messages over any byte stream, shared by the TLS
//! client (reading responses) and the backend (reading requests).
//!
//! It is deliberately strict and small: heads end at CRLF CRLF, chunk-size lines end
//! at CRLF, and a body is handed to a sink piece by piece so that a 100 MiB body is
//! never held whole. How a read ended is kept apart: a close by the peer (EOF, a TLS
//! close_notify, a reset) is not a timeout, because the tests about truncated bodies
//! and `400, then close` depend on telling them apart.

use std::fmt;
use std::io::{self, Read};

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 64 * 1024;

/// Longest chunk-size line (size, extensions) we accept.
const MAX_CHUNK_LINE: usize = 4096;

/// How a read from the stream failed.
#[derive(Debug)]
pub enum WireError {
    /// The peer closed: `clean` is an EOF (or close_notify), otherwise a reset or a
    /// TLS EOF without close_notify.
    Closed {
        /// Whether the close was an orderly EOF.
        clean: bool,
    },
    /// The socket's read timeout ran out.
    TimedOut,
    /// The bytes do not frame as HTTP/1.1.
    Malformed(String),
    /// Any other I/O error (a TLS alert, ...).
    Io(io::Error),
}

impl WireError {
    /// Whether this is the peer closing the connection (in any way).
    pub fn is_close(&self) -> bool {
        matches!(self, WireError::Closed { .. })
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Closed { clean: true } => f.write_str("peer closed (eof)"),
            WireError::Closed { clean: false } => f.write_str("peer closed (reset or unclean eof)"),
            WireError::TimedOut => f.write_str("read timed out"),
            WireError::Malformed(why) => write!(f, "malformed: {why}"),
            WireError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// Sorts an I/O error into close, timeout or other.
pub fn classify(e: io::Error) -> WireError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => WireError::Closed { clean: false },
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => WireError::TimedOut,
        _ => WireError::Io(e),
    }
}

/// A body read that stopped early: how many body bytes came, and why it stopped.
#[derive(Debug)]
pub struct BodyError {
    /// Body bytes delivered to the sink before the error.
    pub got: u64,
    /// Why the body stopped.
    pub cause: WireError,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "body stopped after {} bytes: {}", self.got, self.cause)
    }
}

/// How a message body is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (HEAD, 1xx, 204, 304, or a request without one).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// A buffered HTTP/1.1 reader over a stream.
#[derive(Debug)]
pub struct Wire<S> {
    inner: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: Read> Wire<S> {
    /// Wraps a stream.
    pub fn new(inner: S) -> Wire<S> {
        Wire {
            inner,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
        }
    }

    /// The stream, to write to it or set its timeouts.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The stream and the bytes read from it but not consumed yet.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let rest = self.buf[self.pos..].to_vec();
        (self.inner, rest)
    }

    /// Bytes read from the stream but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes into the buffer; `Ok(n)` with `n > 0`, or why not.
    pub fn fill(&mut self) -> Result<usize, WireError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        loop {
            match self.inner.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    return Err(WireError::Closed { clean: true });
                }
                Ok(n) => {
                    self.buf.truncate(old + n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(classify(e));
                }
            }
        }
    }

    /// Reads one head (start line and header fields) through its blank line, at most
    /// `cap` bytes. A close before the first byte is `Closed`; a close within the
    /// head is `Malformed`.
    pub fn read_head(&mut self, cap: usize) -> Result<Vec<u8>, WireError> {
        let mut searched: usize = 0;
        loop {
            let avail = &self.buf[self.pos..];
            let from = searched.saturating_sub(3);
            if let Some(at) = super::find(&avail[from..], b"\r\n\r\n") {
                let end = from + at + 4;
                if end > cap {
                    return Err(WireError::Malformed(format!(
                        "head longer than {cap} bytes"
                    )));
                }
                let head = avail[..end].to_vec();
                self.consume(end);
                return Ok(head);
            }
            if avail.len() > cap {
                return Err(WireError::Malformed(format!(
                    "head longer than {cap} bytes"
                )));
            }
            searched = avail.len();
            match self.fill() {
                Ok(_) => {}
                Err(WireError::Closed { clean }) if self.buffered().is_empty() => {
                    return Err(WireError::Closed { clean })
                }
                Err(WireError::Closed { .. }) => {
                    return Err(WireError::Malformed(format!(
                        "closed within a head: {:?}",
                        String::from_utf8_lossy(self.buffered())
                    )))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one CRLF-terminated line (without its CRLF), for chunk framing.
    fn read_line(&mut self, cap: usize) -> Result<Vec<u8>, WireError> {
        let mut searched: usize = 0;
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(at) = super::find(&avail[searched.saturating_sub(1)..], b"\r\n") {
                let end = searched.saturating_sub(1) + at;
                let line = avail[..end].to_vec();
                self.consume(end + 2);
                return Ok(line);
            }
            if avail.len() > cap {
                return Err(WireError::Malformed("chunk line too long".into()));
            }
            searched = avail.len();
            self.fill()?;
        }
    }

    /// Hands up to `n` buffered-or-read bytes to the sink; returns how many.
    fn pass(&mut self, n: u64, sink: &mut dyn FnMut(&[u8])) -> Result<usize, WireError> {
        if self.buffered().is_empty() {
            self.fill()?;
        }
        let take = (self.buffered().len() as u64).min(n) as usize;
        sink(&self.buf[self.pos..self.pos + take]);
        self.consume(take);
        Ok(take)
    }

    /// Reads a body delimited as `framing`, giving its (decoded) bytes to `sink`.
    /// Returns the body length; an `UntilClose` body ends without error on a close.
    pub fn read_body(
        &mut self,
        framing: Framing,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, BodyError> {
        let mut got = 0u64;
        let r = match framing {
            Framing::Empty => Ok(()),
            Framing::Length(n) => self.read_exact_body(n, &mut got, sink),
            Framing::Chunked => self.read_chunked_body(&mut got, sink),
            Framing::UntilClose => loop {
                match self.pass(u64::MAX, sink) {
                    Ok(n) => got += n as u64,
                    Err(WireError::Closed { .. }) => break Ok(()),
                    Err(e) => break Err(e),
                }
            },
        };
        match r {
            Ok(()) => Ok(got),
            Err(cause) => Err(BodyError { got, cause }),
        }
    }

    fn read_exact_body(
        &mut self,
        n: u64,
        got: &mut u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), WireError> {
        let mut left = n;
        while left > 0 {
            let k = self.pass(left, sink)? as u64;
            left -= k;
            *got += k;
        }
        Ok(())
    }

    fn read_chunked_body(
        &mut self,
        got: &mut u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), WireError> {
        loop {
            let line = self.read_line(MAX_CHUNK_LINE)?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                // Trailer fields, then the empty line.
                loop {
                    if self.read_line(MAX_CHUNK_LINE)?.is_empty() {
                        return Ok(());
                    }
                }
            }
            self.read_exact_body(size, got, sink)?;
            let crlf = self.read_line(2)?;
            if !crlf.is_empty() {
                return Err(WireError::Malformed(
                    "chunk data longer than its size".into(),
                ));
            }
        }
    }

    /// Waits for the peer to close; returns the bytes that came first (if any) and
    /// how the wait ended: `Ok` for a close, `Err` for a timeout or another error.
    pub fn read_until_close(&mut self) -> (Vec<u8>, Result<bool, WireError>) {
        let mut extra = self.buffered().to_vec();
        self.consume(self.buffered().len());
        loop {
            match self.fill() {
                Ok(_) => {
                    extra.extend_from_slice(self.buffered());
                    self.consume(self.buffered().len());
                    if extra.len() > 1 << 20 {
                        return (
                            extra,
                            Err(WireError::Malformed("no close after 1 MiB".into())),
                        );
                    }
                }
                Err(WireError::Closed { clean }) => return (extra, Ok(clean)),
                Err(e) => return (extra, Err(e)),
            }
        }
    }
}

/// Parses a chunk-size line: hex digits, then optional `;extensions`.
fn parse_chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
    let digits = trim_ows(digits);
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(WireError::Malformed(format!(
            "bad chunk size line {:?}",
            String::from_utf8_lossy(line)
        )));
    }
    let text =
        std::str::from_utf8(digits).map_err(|_| WireError::Malformed("chunk size".into()))?;
    u64::from_str_radix(text, 16).map_err(|_| WireError::Malformed("chunk size".into()))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Header fields parsed from a head, names as sent.
pub type Fields = Vec<(String, String)>;

/// The first value of a header field, by case-insensitive name.
pub fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of a header field, by case-insensitive name, in order.
pub fn fields_named<'a>(fields: &'a Fields, name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Converts httparse's headers to owned pairs (values lossily as text).
pub fn owned_fields(headers: &[httparse::Header<'_>]) -> Fields {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// Whether the last transfer coding in the `Transfer-Encoding` fields is chunked.
pub fn is_chunked(fields: &Fields) -> bool {
    let all = fields_named(fields, "transfer-encoding").join(",");
    all.rsplit(',')
        .map(str::trim)
        .find(|c| !c.is_empty())
        .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
}
