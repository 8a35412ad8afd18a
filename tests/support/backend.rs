//! A scriptable plain-HTTP backend on 127.0.0.1:0: a std `TcpListener`, a thread per
//! connection, keep-alive, requests parsed with httparse (bodies by Content-Length or
//! chunked, decoded), every request recorded, and answered by a closure.
//!
//! The closure's [`Reply`] says what goes on the wire and what happens after: keep the
//! connection, close it, or hang on it. Misbehaviours that happen before a request is
//! read (accept then close, reset) are raw connection handlers. nexushub's TCP health
//! checks connect and close without a byte; those connections are ignored.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::lock;
use super::wire::{
    field, fields_named, is_chunked, owned_fields, Fields, Framing, Wire, WireError,
};

/// How long a backend connection waits for its next bytes before giving up (longer
/// than any test, shorter than forever).
const CONN_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest request head the backend accepts.
const MAX_REQUEST_HEAD: usize = 256 * 1024;

/// Largest request body the backend records (bigger uploads go to whoami).
const MAX_RECORDED_BODY: u64 = 32 * 1024 * 1024;

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which accepted connection it came on (0, 1, 2, ... in accept order).
    pub conn: usize,
    /// The head exactly as received, through its blank line.
    pub raw_head: Vec<u8>,
    /// The method.
    pub method: String,
    /// The request target.
    pub path: String,
    /// The minor version of `HTTP/1.x`.
    pub minor_version: u8,
    /// The header fields, in order, names as sent.
    pub headers: Fields,
    /// The decoded body.
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl Seen {
    /// The first value of a header field (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        field(&self.headers, name)
    }

    /// Every value of a header field, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        fields_named(&self.headers, name)
    }

    /// Whether the request had a field of this name.
    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The head as text, for assertion messages.
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.raw_head).into_owned()
    }
}

/// What happens after a reply's bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Read the next request on the same connection.
    KeepAlive,
    /// Shut the connection down.
    Close,
    /// Keep the connection open, reading and discarding, until the peer closes.
    Hang,
}

/// The backend's answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Bytes written first (a response head, maybe a body).
    pub bytes: Vec<u8>,
    /// Then this many bytes of the test pattern.
    pub pattern_len: u64,
    /// Then this.
    pub after: After,
}

impl Reply {
    /// Write `bytes`, keep the connection.
    pub fn keep(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            pattern_len: 0,
            after: After::KeepAlive,
        }
    }

    /// Write `bytes`, then close.
    pub fn close(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            pattern_len: 0,
            after: After::Close,
        }
    }

    /// Write `bytes`, then hold the connection open without another byte.
    pub fn hang(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            pattern_len: 0,
            after: After::Hang,
        }
    }

    /// Also write `len` pattern bytes after `bytes`.
    pub fn with_pattern(mut self, len: u64) -> Reply {
        self.pattern_len = len;
        self
    }
}

/// A `200 OK` (or other status) response with a Content-Length body.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A chunked response with these chunks and the last chunk.
pub fn chunked_response(status: u16, headers: &[(&str, &str)], chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("Transfer-Encoding: chunked\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&chunked_body(chunks));
    out
}

/// A chunked body: each chunk, then `0\r\n\r\n`.
pub fn chunked_body(chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

type ConnHandler = dyn Fn(TcpStream, usize) + Send + Sync;

/// The requests a backend received, with a condition variable to wait on them.
#[derive(Debug, Default)]
struct Record {
    seen: Mutex<Vec<Seen>>,
    changed: Condvar,
}
type ReplyFn = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A running backend; stops accepting on drop.
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    record: Arc<Record>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Backend {
    /// A backend whose every connection is given to `handler` (with its number).
    pub fn raw(handler: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> Backend {
        Backend::start(Arc::default(), Arc::new(handler))
    }

    fn start(record: Arc<Record>, handler: Arc<ConnHandler>) -> Backend {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("backend bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("backend local_addr: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut accepted = 0;
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let n = accepted;
                    accepted += 1;
                    let _ = conn.set_read_timeout(Some(CONN_READ_TIMEOUT));
                    let _ = conn.set_write_timeout(Some(CONN_READ_TIMEOUT));
                    let _ = conn.set_nodelay(true);
                    let handler = Arc::clone(&handler);
                    thread::spawn(move || handler(conn, n));
                }
            })
        };
        Backend {
            addr,
            record,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// An HTTP backend answering each request with `reply(&request)`.
    pub fn http(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Backend {
        let record: Arc<Record> = Arc::default();
        let reply: Arc<ReplyFn> = Arc::new(reply);
        let rec = Arc::clone(&record);
        let handler = move |conn: TcpStream, n: usize| {
            serve_http(conn, n, &rec, &*reply);
        };
        Backend::start(record, Arc::new(handler))
    }

    /// Answers every request `200 OK`, text/plain, with `body`.
    pub fn ok(body: &str) -> Backend {
        let body = body.as_bytes().to_vec();
        Backend::http(move |_| Reply::keep(response(200, &[("Content-Type", "text/plain")], &body)))
    }

    /// Answers every request `200 OK` with the request's method and target as body.
    pub fn echo_target() -> Backend {
        Backend::http(|req| {
            let body = format!("{} {}", req.method, req.path);
            Reply::keep(response(
                200,
                &[("Content-Type", "text/plain")],
                body.as_bytes(),
            ))
        })
    }

    /// Reads each request, then closes without a byte of response.
    pub fn closing() -> Backend {
        Backend::http(|_| Reply::close(Vec::new()))
    }

    /// Waits for the first bytes of a request, then closes without reading them, which
    /// makes the kernel answer with a reset.
    pub fn resetting() -> Backend {
        Backend::raw(|conn, _| {
            let mut one = [0u8; 1];
            if matches!(conn.peek(&mut one), Ok(1)) {
                drop(conn);
            }
        })
    }

    /// Reads each request and never answers (holds the connection until the peer
    /// closes it).
    pub fn hanging() -> Backend {
        Backend::http(|_| Reply::hang(Vec::new()))
    }

    /// Answers each request with bytes that are not an HTTP response, then holds the
    /// connection open (so only the bytes themselves can cause the 502).
    pub fn garbage() -> Backend {
        Backend::http(|_| Reply::hang(b"HELLO THERE, THIS IS NOT HTTP\r\n\r\n".to_vec()))
    }

    /// Answers `200` with `Content-Length: declared`, sends `sent` pattern bytes, closes.
    pub fn truncated_length(declared: u64, sent: u64) -> Backend {
        Backend::http(move |_| {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n");
            Reply::close(head).with_pattern(sent)
        })
    }

    /// Answers `200` chunked with `chunks` chunks of `size` bytes and no last chunk,
    /// then closes.
    pub fn truncated_chunked(chunks: usize, size: usize) -> Backend {
        Backend::http(move |_| {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            let data = super::pattern(size);
            for _ in 0..chunks {
                out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            }
            Reply::close(out)
        })
    }

    /// Answers every request `200` with `len` pattern bytes (Content-Length), keep-alive.
    pub fn pattern(len: u64) -> Backend {
        Backend::http(move |_| {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
            );
            Reply::keep(head).with_pattern(len)
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.record.seen).clone()
    }

    /// Waits until at least `n` requests have been received; after `within`, the
    /// count that did arrive.
    pub fn wait_seen(&self, n: usize, within: Duration) -> Result<Vec<Seen>, usize> {
        let deadline = Instant::now() + within;
        let mut seen = lock(&self.record.seen);
        while seen.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return Err(seen.len());
            }
            seen = self
                .record
                .changed
                .wait_timeout(seen, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(seen.clone())
    }

    /// The only request received so far (panics unless exactly one came).
    pub fn only(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(
            seen.len(),
            1,
            "expected one request at the backend, got {:?}",
            seen.iter().map(Seen::head_text).collect::<Vec<_>>()
        );
        seen.into_iter().next().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Serves HTTP/1.1 requests on one connection until it closes or a reply ends it.
fn serve_http(conn: TcpStream, n: usize, record: &Record, reply: &ReplyFn) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut wire = Wire::new(conn);
    loop {
        let raw_head = match wire.read_head(MAX_REQUEST_HEAD) {
            Ok(h) => h,
            Err(_) => return,
        };
        let Some(mut req) = parse_request(&raw_head, n) else {
            let _ = writer.write_all(&response(
                400,
                &[("Connection", "close")],
                b"backend: bad request\n",
            ));
            return;
        };
        let framing = if is_chunked(&req.headers) {
            req.chunked = true;
            Framing::Chunked
        } else {
            match req
                .header("content-length")
                .map(|v| v.trim().parse::<u64>())
            {
                Some(Ok(len)) => Framing::Length(len),
                Some(Err(_)) => return,
                None => Framing::Empty,
            }
        };
        if let Framing::Length(len) = framing {
            if len > MAX_RECORDED_BODY {
                return;
            }
        }
        let mut body = Vec::new();
        let mut too_big = false;
        let read = wire.read_body(framing, &mut |b| {
            if body.len() as u64 + b.len() as u64 > MAX_RECORDED_BODY {
                too_big = true;
            } else {
                body.extend_from_slice(b);
            }
        });
        if read.is_err() || too_big {
            return;
        }
        req.body = body;
        lock(&record.seen).push(req.clone());
        record.changed.notify_all();
        let r = reply(&req);
        if writer.write_all(&r.bytes).is_err() {
            return;
        }
        if r.pattern_len > 0 && super::write_pattern(&mut writer, r.pattern_len).is_err() {
            return;
        }
        let _ = writer.flush();
        match r.after {
            After::KeepAlive => continue,
            After::Close => {
                let _ = writer.shutdown(Shutdown::Write);
                // Read what is left so the close is an orderly FIN, not a reset.
                let _ = drain(&mut wire, Duration::from_secs(2));
                return;
            }
            After::Hang => {
                let _ = drain(&mut wire, CONN_READ_TIMEOUT);
                return;
            }
        }
    }
}

/// Reads and discards until the peer closes or `within` runs out.
fn drain(wire: &mut Wire<TcpStream>, within: Duration) -> Result<(), WireError> {
    let deadline = Instant::now() + within;
    let mut sink = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WireError::TimedOut);
        }
        let sock = wire.get_mut();
        sock.set_read_timeout(Some(left)).map_err(WireError::Io)?;
        match sock.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(super::wire::classify(e)),
        }
    }
}

fn parse_request(raw: &[u8], conn: usize) -> Option<Seen> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    Some(Seen {
        conn,
        raw_head: raw.to_vec(),
        method: req.method?.to_string(),
        path: req.path?.to_string(),
        minor_version: req.version?,
        headers: owned_fields(req.headers),
        body: Vec::new(),
        chunked: false,
    })
}
