//! `nexushub whoami`: a tiny plain-HTTP/1.1 backend for demos, tests and benchmarks.
//!
//! Part of the `nexushub` binary, not the library: `main.rs` declares it (and
//! `lib.rs` does not), so it reaches the HTTP core only through the library's
//! public API, as any app of ours would.
//!
//! It answers every request with what it received, so you can see what an app behind
//! nexushub gets (the `Host`, the `X-Forwarded-*` fields, the body as it arrived):
//!
//! ```text
//! GET /some/path?x=1 HTTP/1.1          the request line, as received
//! Host: blog.example.com               each header line, as received
//! X-Forwarded-For: 192.0.2.7
//! peer: 127.0.0.1:53422                the TCP peer
//! body: 11 bytes fnv1a64=779a65e7023cd2e7   length and FNV-1a 64 of the body
//! ```
//!
//! Special paths (the query string is ignored when matching):
//!
//! | path | answer |
//! | --- | --- |
//! | `/hello` | `Hello, world!` (13 bytes), for benchmarks |
//! | `/bytes/N` | N bytes (N <= 1 GiB) where byte i is `i % 251`, with `Content-Length` |
//! | `/chunked/N` | the same bytes, chunked (close-delimited for an HTTP/1.0 client) |
//! | `/status/CODE` | that status (200..=999) with its reason phrase as the body |
//! | `/sleep/MS` | the usual echo, after waiting MS milliseconds (at most 60000) |
//!
//! A HEAD request gets the same head without the body. Request bodies (by
//! `Content-Length` or chunked, `Expect: 100-continue` honoured) are read, hashed and
//! dropped as they stream through a fixed 64 KiB buffer; nothing is kept whole.
//!
//! The shape is deliberately simple and fast: a detached thread per connection,
//! `TCP_NODELAY`, keep-alive and pipelining, one reused read buffer per connection,
//! and each small response written with a single `write` call. Requests are parsed by
//! [`nexushub::http1::parse_request_lenient`] (a missing `Host` is fine here); anything
//! else malformed gets a 400 (or 431) and the connection is closed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use nexushub::http1::{self, BodyFraming, ChunkedDecoder, Request, Version};

/// The per-connection read buffer; also the request head limit.
const READ_BUF_BYTES: usize = 64 * 1024;

/// Trailer bytes accepted at the end of a chunked upload.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Largest `/bytes/N` or `/chunked/N`.
const MAX_PATTERN_BYTES: u64 = 1 << 30;

/// Longest `/sleep/MS`.
const MAX_SLEEP_MS: u64 = 60_000;

/// A connection silent for this long is closed (so vanished peers free their thread).
const IDLE_TIMEOUT_SECS: u64 = 300;

/// Input discarded, at most, after an error answer before the connection is closed.
const DRAIN_MAX_BYTES: usize = 1024 * 1024;

/// Time spent, at most, draining input after an error answer.
const DRAIN_SECS: u64 = 1;

/// Length of the pattern buffer: a multiple of 251 so that any run of the pattern
/// can be sent as one slice of it, whatever offset it starts at.
const PATTERN_LEN: usize = 251 * 261;

/// Byte i is `i % 251`: the body of `/bytes/N` and `/chunked/N`.
static PATTERN: [u8; PATTERN_LEN] = make_pattern();

const fn make_pattern() -> [u8; PATTERN_LEN] {
    let mut p = [0u8; PATTERN_LEN];
    let mut i = 0;
    while i < PATTERN_LEN {
        p[i] = (i % 251) as u8;
        i += 1;
    }
    p
}

/// Streaming FNV-1a 64, the body checksum whoami reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv1a64(u64);

impl Fnv1a64 {
    /// The FNV-1a 64 offset basis.
    pub(crate) fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    /// Hashes more bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

/// Accepts connections forever, one detached thread each.
///
/// Transient accept errors (out of file descriptors, aborted connections) are logged
/// and retried after a short pause; only an error that means the listener itself is
/// unusable is returned.
pub(crate) fn serve(listener: TcpListener) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let spawned = std::thread::Builder::new()
                    .name("whoami-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle_connection(stream, peer) {
                            log::debug!("whoami: {peer}: {e}");
                        }
                    });
                if let Err(e) = spawned {
                    log::warn!("whoami: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP)
                ) {
                    return Err(e);
                }
                log::warn!("whoami: accept: {e}");
                // EMFILE and friends: back off instead of spinning on the error.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The connection's read buffer: `buf[start..end]` is read but not yet used.
struct ReadBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    fn new() -> Self {
        ReadBuf {
            buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Reads more bytes after what is buffered; `Ok(false)` at end of stream (or when
    /// the buffer is full, which the head size limit rules out before it happens).
    fn fill(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.buf.len() {
            return Ok(false);
        }
        loop {
            match stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Serves one connection until it closes, errs or asks to close.
fn handle_connection(mut stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(IDLE_TIMEOUT_SECS)))?;
    let mut rb = ReadBuf::new();
    let mut out = Vec::with_capacity(4096);
    loop {
        let req = loop {
            match http1::parse_request_lenient(rb.filled(), READ_BUF_BYTES) {
                Ok(Some(req)) => break req,
                Ok(None) => {
                    if !rb.fill(&mut stream)? {
                        return Ok(());
                    }
                }
                Err(e) => {
                    out.clear();
                    http1::write_local_response(
                        &mut out,
                        e.status(),
                        e.reason(),
                        &[],
                        false,
                        false,
                    );
                    return linger_close(stream, &out);
                }
            }
        };
        let head = &rb.filled()[..req.head_len];
        let path = req.target.split('?').next().unwrap_or("");
        let route = Route::parse(path);
        // The echo needs the head as received: copy it out before the body reuses the buffer.
        let echo = matches!(route, Route::Echo | Route::Sleep(_)).then(|| echo_head(head));
        rb.consume(req.head_len);

        if req.expect_continue {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = match read_body(&mut stream, &mut rb, &req)? {
            BodyOutcome::Read(body) => body,
            BodyOutcome::Eof => return Ok(()),
            BodyOutcome::Invalid(reason) => {
                out.clear();
                http1::write_local_response(&mut out, 400, reason, &[], false, false);
                return linger_close(stream, &out);
            }
        };

        out.clear();
        let keep_alive = respond(&mut stream, &mut out, &req, route, echo, body, peer)?;
        if !keep_alive {
            return linger_close(stream, &[]);
        }
    }
}

/// Sends a last answer (possibly empty: already sent) and closes without losing it:
/// closing a socket with unread input (say, pipelined requests after a
/// `Connection: close` or a refused head) makes the kernel send RST, which can destroy
/// the answer before the client reads it. So shut down our side and drain (bounded in
/// bytes and time) first.
fn linger_close(mut stream: TcpStream, answer: &[u8]) -> io::Result<()> {
    stream.write_all(answer)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let deadline = Instant::now() + Duration::from_secs(DRAIN_SECS);
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    while drained < DRAIN_MAX_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

/// What a request body turned out to be.
enum BodyOutcome {
    /// Fully read: (length, FNV-1a 64).
    Read((u64, u64)),
    /// The peer closed before the body was complete.
    Eof,
    /// Bad chunked framing.
    Invalid(&'static str),
}

/// Reads (and hashes) the request body, streaming it through the read buffer.
fn read_body(stream: &mut TcpStream, rb: &mut ReadBuf, req: &Request) -> io::Result<BodyOutcome> {
    let mut hash = Fnv1a64::new();
    let mut len = 0u64;
    match req.body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            let mut remaining = n;
            while remaining > 0 {
                if rb.filled().is_empty() && !rb.fill(stream)? {
                    return Ok(BodyOutcome::Eof);
                }
                let avail = rb.filled();
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(avail.len());
                hash.update(&avail[..take]);
                rb.consume(take);
                remaining -= take as u64;
                len += take as u64;
            }
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new(MAX_TRAILER_BYTES);
            loop {
                let progress = match decoder.feed(rb.filled()) {
                    Ok(p) => p,
                    Err(e) => return Ok(BodyOutcome::Invalid(e.reason())),
                };
                let data = &rb.filled()[progress.data.clone()];
                hash.update(data);
                len += data.len() as u64;
                rb.consume(progress.consumed);
                if progress.done {
                    break;
                }
                if progress.consumed == 0 && !rb.fill(stream)? {
                    return Ok(BodyOutcome::Eof);
                }
            }
        }
    }
    Ok(BodyOutcome::Read((len, hash.finish())))
}

/// The special paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Echo,
    Hello,
    Bytes(u64),
    Chunked(u64),
    Status(u16),
    Sleep(u64),
    /// A special path with a bad argument: 400 with this text.
    Bad(&'static str),
}

impl Route {
    fn parse(path: &str) -> Route {
        if path == "/hello" {
            return Route::Hello;
        }
        let number = |arg: &str| -> Option<u64> {
            if arg.is_empty() || arg.len() > 19 || !arg.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            arg.parse().ok()
        };
        if let Some(arg) = path.strip_prefix("/bytes/") {
            match number(arg) {
                Some(n) if n <= MAX_PATTERN_BYTES => Route::Bytes(n),
                _ => Route::Bad("byte count must be 0..=1073741824"),
            }
        } else if let Some(arg) = path.strip_prefix("/chunked/") {
            match number(arg) {
                Some(n) if n <= MAX_PATTERN_BYTES => Route::Chunked(n),
                _ => Route::Bad("byte count must be 0..=1073741824"),
            }
        } else if let Some(arg) = path.strip_prefix("/status/") {
            match number(arg) {
                // 1xx are interim answers, not something to end a request with.
                Some(n @ 200..=999) => Route::Status(n as u16),
                _ => Route::Bad("status must be 200..=999"),
            }
        } else if let Some(arg) = path.strip_prefix("/sleep/") {
            match number(arg) {
                Some(ms) => Route::Sleep(ms.min(MAX_SLEEP_MS)),
                None => Route::Bad("sleep must be a number of milliseconds"),
            }
        } else {
            Route::Echo
        }
    }
}

/// The request line and header lines as received, one per line.
fn echo_head(head: &[u8]) -> Vec<u8> {
    let mut fields = [httparse::EMPTY_HEADER; http1::MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let mut out = Vec::with_capacity(head.len() + 128);
    // parse_request_lenient accepted this head, so httparse does too.
    if let Ok(httparse::Status::Complete(_)) = parsed.parse(head) {
        out.extend_from_slice(parsed.method.unwrap_or("").as_bytes());
        out.push(b' ');
        out.extend_from_slice(parsed.path.unwrap_or("").as_bytes());
        out.extend_from_slice(if parsed.version == Some(0) {
            b" HTTP/1.0\n"
        } else {
            b" HTTP/1.1\n"
        });
        for field in parsed.headers.iter() {
            out.extend_from_slice(field.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(field.value);
            out.push(b'\n');
        }
    }
    out
}

/// How a whoami response body is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither; the connection is closed after the body.
    Close,
    /// No body and no length (204, 304).
    Empty,
}

/// Appends a response head.
fn write_head(
    out: &mut Vec<u8>,
    req: &Request,
    status: u16,
    content_type: &str,
    framing: Framing,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(http1::reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    match framing {
        Framing::Length(n) => {
            http1::write_header(out, "Content-Type", content_type);
            http1::write_header(out, "Content-Length", &n.to_string());
        }
        Framing::Chunked => {
            http1::write_header(out, "Content-Type", content_type);
            http1::write_header(out, "Transfer-Encoding", "chunked");
        }
        Framing::Close => http1::write_header(out, "Content-Type", content_type),
        Framing::Empty => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if req.version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

const TEXT: &str = "text/plain; charset=utf-8";
const BINARY: &str = "application/octet-stream";

/// Writes the answer for `req`; returns whether the connection stays open.
fn respond(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    req: &Request,
    route: Route,
    echo: Option<Vec<u8>>,
    (body_len, body_hash): (u64, u64),
    peer: SocketAddr,
) -> io::Result<bool> {
    let head_only = req.is_head();
    let mut keep_alive = req.keep_alive;
    match route {
        Route::Hello => {
            let body = b"Hello, world!";
            write_head(
                out,
                req,
                200,
                TEXT,
                Framing::Length(body.len() as u64),
                keep_alive,
            );
            if !head_only {
                out.extend_from_slice(body);
            }
            stream.write_all(out)?;
        }
        Route::Echo | Route::Sleep(_) => {
            if let Route::Sleep(ms) = route {
                std::thread::sleep(Duration::from_millis(ms));
            }
            let mut body = echo.unwrap_or_default();
            body.extend_from_slice(format!("peer: {peer}\n").as_bytes());
            body.extend_from_slice(
                format!("body: {body_len} bytes fnv1a64={body_hash:016x}\n").as_bytes(),
            );
            write_head(
                out,
                req,
                200,
                TEXT,
                Framing::Length(body.len() as u64),
                keep_alive,
            );
            if !head_only {
                out.extend_from_slice(&body);
            }
            stream.write_all(out)?;
        }
        Route::Status(code) => {
            if code == 204 || code == 304 {
                write_head(out, req, code, TEXT, Framing::Empty, keep_alive);
            } else {
                let text = format!("{code} {}\n", http1::reason_phrase(code));
                write_head(
                    out,
                    req,
                    code,
                    TEXT,
                    Framing::Length(text.len() as u64),
                    keep_alive,
                );
                if !head_only {
                    out.extend_from_slice(text.as_bytes());
                }
            }
            stream.write_all(out)?;
        }
        Route::Bad(text) => {
            let text = format!("{text}\n");
            write_head(
                out,
                req,
                400,
                TEXT,
                Framing::Length(text.len() as u64),
                keep_alive,
            );
            if !head_only {
                out.extend_from_slice(text.as_bytes());
            }
            stream.write_all(out)?;
        }
        Route::Bytes(n) => {
            write_head(out, req, 200, BINARY, Framing::Length(n), keep_alive);
            if head_only {
                stream.write_all(out)?;
            } else {
                // Head and the first piece of the body in one write.
                let first = usize::try_from(n).unwrap_or(usize::MAX).min(PATTERN_LEN);
                out.extend_from_slice(&PATTERN[..first]);
                stream.write_all(out)?;
                write_pattern(stream, first as u64, n)?;
            }
        }
        Route::Chunked(n) => {
            let framing = if req.version == Version::Http10 {
                keep_alive = false;
                Framing::Close
            } else {
                Framing::Chunked
            };
            write_head(out, req, 200, BINARY, framing, keep_alive);
            if head_only {
                stream.write_all(out)?;
            } else if framing == Framing::Close {
                stream.write_all(out)?;
                write_pattern(stream, 0, n)?;
            } else {
                write_chunked_pattern(stream, out, n)?;
            }
        }
    }
    Ok(keep_alive)
}

/// Writes pattern bytes `from..to` straight from the static buffer.
fn write_pattern(stream: &mut TcpStream, from: u64, to: u64) -> io::Result<()> {
    let mut i = from;
    while i < to {
        let offset = (i % 251) as usize;
        let n = usize::try_from(to - i)
            .unwrap_or(usize::MAX)
            .min(PATTERN_LEN - offset);
        stream.write_all(&PATTERN[offset..offset + n])?;
        i += n as u64;
    }
    Ok(())
}

/// Writes `n` pattern bytes chunked, after the head already in `out`; each write is
/// one chunk (the first one with the head, the last one with the last chunk).
fn write_chunked_pattern(stream: &mut TcpStream, out: &mut Vec<u8>, n: u64) -> io::Result<()> {
    let mut i = 0u64;
    while i < n {
        let offset = (i % 251) as usize;
        let len = usize::try_from(n - i)
            .unwrap_or(usize::MAX)
            .min(PATTERN_LEN - offset);
        http1::write_chunk_header(out, len);
        out.extend_from_slice(&PATTERN[offset..offset + len]);
        out.extend_from_slice(http1::CHUNK_END);
        i += len as u64;
        if i < n {
            stream.write_all(out)?;
            out.clear();
        }
    }
    out.extend_from_slice(http1::LAST_CHUNK);
    stream.write_all(out)
}

#[cfg(test)]
mod tests;
