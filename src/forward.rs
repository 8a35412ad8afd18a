//! One request/response exchange with a backend: the request head and body go
//! to the app, the response head and body stream back.
//!
//! The backend side is blocking I/O under deadlines. The client side never makes
//! a worker wait: when the client has not sent the next part of its request body,
//! or has not read the response so far, [`Exchange::run`] returns
//! [`Progress::Blocked`] with everything needed to go on, and the worker parks the
//! connection (with the exchange) until the client is ready. So a slow client
//! costs a parked connection and its buffers, never a worker.
//!
//! Bodies are streamed through fixed per-worker buffers, never held whole, so a
//! 1 GiB upload or download costs the same memory as a 1 KiB one. Chunked bodies
//! are decoded by our own strict decoder and re-encoded by us in both directions;
//! nothing of the peer's raw framing is passed through. A backend that dies
//! mid-body makes us drop the client connection without the last chunk or short of
//! its `Content-Length`, so the client cannot take a cut response for a whole one.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use crate::conn::{ClientConn, ConnError, Fill, READ_CHUNK_BYTES};
use crate::deadline::Wait;
use crate::error::ProxyError;
use crate::http1::{self, BodyFraming, ClientFraming, Request, ResponseBody, Version};
use crate::sys::{self, Interest};
use crate::upstream::{self, BackendConn, ConnectError};
use crate::worker::{InFlight, Limits, WorkerState};

/// Largest response head accepted from a backend.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// Largest chunked trailer section accepted (and discarded), either direction.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Plaintext gathered before one push into rustls and one flush.
const OUT_FLUSH_BYTES: usize = 32 * 1024;
/// The interim response sent for `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A finished exchange.
#[derive(Debug)]
pub struct Done {
    /// The status sent.
    pub status: u16,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// True when the client connection can carry another request.
    pub keep_alive: bool,
}

/// An exchange that did not finish.
#[derive(Debug)]
pub enum Failure {
    /// Nothing was sent to the client yet: answer with this error.
    Answer {
        /// What went wrong.
        error: ProxyError,
        /// True when the request body was read whole (the connection may go on).
        body_read: bool,
    },
    /// The client failed, or a response was under way: drop the connection.
    Abort {
        /// For the log.
        reason: String,
        /// The status already sent, if any.
        status: Option<u16>,
        /// Body bytes already sent.
        body_bytes: u64,
    },
}

fn abort(reason: impl Into<String>, status: Option<u16>, body_bytes: u64) -> Failure {
    Failure::Abort {
        reason: reason.into(),
        status,
        body_bytes,
    }
}

/// Where [`Exchange::run`] stopped.
#[derive(Debug)]
pub enum Progress {
    /// The response went out whole.
    Done(Done),
    /// It cannot finish.
    Failed(Failure),
    /// The client is not ready: park the connection, with the exchange, until it
    /// is ready for this.
    Blocked(Interest),
}

/// One request on its way through nexushub, from the complete head to the last
/// byte of the response; parked with its connection while the client is slow.
#[derive(Debug)]
pub struct Exchange {
    /// The request (its head already consumed from the connection's buffer).
    pub req: Request,
    /// The app it is routed to.
    pub app: Arc<str>,
    /// When its head was complete.
    pub started: Instant,
    addr: SocketAddr,
    live: Option<Live>,
    _total: InFlight,
    _instance: InFlight,
}

/// The part of an exchange that exists once a backend connection carries it.
#[derive(Debug)]
struct Live {
    backend: BackendConn,
    stage: Stage,
    /// Plaintext for the client that rustls had no room for when the socket blocked.
    pending: Vec<u8>,
    /// Backend bytes read but not framed for the client yet, while parked.
    backlog: Vec<u8>,
}

#[derive(Debug)]
enum Stage {
    /// The request body is on its way to the backend; `moved` bytes so far.
    Upload { body: Upload, moved: u64 },
    /// The response is on its way to the client.
    Download(Download),
}

#[derive(Debug)]
enum Upload {
    Length { left: u64 },
    Chunked(http1::ChunkedDecoder),
}

#[derive(Debug)]
struct Download {
    body: BodyLeft,
    framing: ClientFraming,
    status: u16,
    keep_alive: bool,
    backend_reusable: bool,
    /// False once the backend sent more than the body (not reusable then).
    clean: bool,
    /// Body bytes framed for the client so far.
    sent: u64,
    /// True once bytes went to the client: a backend failure is a cut from then on.
    pushed: bool,
}

/// What is left of the response body to read from the backend.
#[derive(Debug)]
enum BodyLeft {
    Length(u64),
    Chunked(http1::ChunkedDecoder),
    UntilClose,
    /// Read whole; what remains is pushing it out.
    Finished,
}

/// Why the request body could not go out.
enum SendError {
    Backend(String),
    Client(String),
    BadBody(http1::ChunkError),
}

/// How far a step got.
enum Flow {
    Finished,
    Blocked,
}

impl Exchange {
    /// An exchange of `req` with the app `app` at `addr`, counted in flight (in
    /// total and on the route's instance) for as long as it lives.
    pub fn new(
        req: Request,
        app: Arc<str>,
        addr: SocketAddr,
        started: Instant,
        total: InFlight,
        instance: InFlight,
    ) -> Exchange {
        Exchange {
            req,
            app,
            started,
            addr,
            live: None,
            _total: total,
            _instance: instance,
        }
    }

    /// Body bytes the client has really moved in this exchange (sent to us, or
    /// received and acknowledged): what `min_data_rate` is measured on.
    pub fn moved(&self, conn: &ClientConn) -> u64 {
        match self.live.as_ref().map(|l| (&l.stage, l.pending.len())) {
            Some((Stage::Upload { moved, .. }, _)) => *moved,
            Some((Stage::Download(d), pending)) => {
                let unacked = sys::unsent_bytes(conn.sock.as_raw_fd()).unwrap_or(0);
                d.sent.saturating_sub((pending + unacked) as u64)
            }
            None => 0,
        }
    }

    /// The status and body bytes sent so far (0 before a response head went out).
    pub fn sent(&self) -> (u16, u64) {
        match self.live.as_ref().map(|l| &l.stage) {
            Some(Stage::Download(d)) if d.pushed => (d.status, d.sent),
            _ => (0, 0),
        }
    }

    /// Runs the exchange as far as it goes without waiting on the client.
    pub fn run(
        &mut self,
        conn: &mut ClientConn,
        limits: &Limits,
        st: &mut WorkerState,
        closing: bool,
    ) -> Progress {
        st.out.clear();
        let mut live = match self.live.take() {
            Some(mut live) => {
                st.rbuf.restore(&live.backlog);
                live.backlog.clear();
                live
            }
            None => match self.begin(conn, limits, st, closing) {
                Ok(live) => live,
                Err(f) => return Progress::Failed(f),
            },
        };
        // Bounded: an upload ends in a download, a download in an answer.
        for _ in 0..2 {
            match &mut live.stage {
                Stage::Upload { body, moved } => {
                    match upload(conn, &mut live.backend, body, moved, limits, st) {
                        Ok(Flow::Blocked) => {
                            self.live = Some(live);
                            return Progress::Blocked(Interest::Read);
                        }
                        Ok(Flow::Finished) => {}
                        Err(SendError::Client(reason)) => {
                            return Progress::Failed(abort(reason, None, 0))
                        }
                        Err(SendError::BadBody(e)) => {
                            return Progress::Failed(Failure::Answer {
                                error: ProxyError::RequestBody(e),
                                body_read: false,
                            })
                        }
                        Err(SendError::Backend(detail)) => {
                            return Progress::Failed(backend_io(&self.app, detail, false))
                        }
                    }
                    let resp =
                        match read_response_head(&mut live.backend, self.req.is_head(), limits, st)
                        {
                            Ok(resp) => resp,
                            Err(e) => return Progress::Failed(self.head_failure(e, limits)),
                        };
                    live.stage = Stage::Download(self.download(&resp, st, closing));
                }
                Stage::Download(dl) => {
                    return match download(
                        conn,
                        &mut live.backend,
                        dl,
                        &mut live.pending,
                        limits,
                        st,
                        &self.app,
                    ) {
                        Ok(Flow::Blocked) => {
                            live.backlog.extend_from_slice(st.rbuf.data());
                            st.rbuf.clear();
                            self.live = Some(live);
                            Progress::Blocked(Interest::Write)
                        }
                        Ok(Flow::Finished) => {
                            let done = Done {
                                status: dl.status,
                                body_bytes: dl.sent,
                                keep_alive: dl.keep_alive,
                            };
                            if dl.backend_reusable && dl.clean {
                                st.pool.put(live.backend);
                            }
                            Progress::Done(done)
                        }
                        Err(f) => Progress::Failed(f),
                    };
                }
            }
        }
        Progress::Failed(abort("exchange did not progress", None, 0))
    }

    /// Takes a backend connection and sends the request head; without a body,
    /// also reads the response head. A failure before any response byte on a
    /// pooled connection is retried once on a fresh one while the request can be
    /// replayed whole (no body byte taken from the client yet).
    fn begin(
        &mut self,
        conn: &mut ClientConn,
        limits: &Limits,
        st: &mut WorkerState,
        closing: bool,
    ) -> Result<Live, Failure> {
        let req = &self.req;
        let (app, addr) = (&self.app, self.addr);
        let has_body = !matches!(req.body, BodyFraming::None | BodyFraming::Length(0));
        if req.body == BodyFraming::Chunked {
            // Whatever of the body came with the head (an attack usually does) is
            // checked before the backend sees a byte, so a framing error there is a
            // 400 that never reaches the app. Errors further into a streamed body are
            // still caught by the decoder; the app then sees a cut request.
            precheck_chunked(&conn.buf).map_err(|e| Failure::Answer {
                error: ProxyError::RequestBody(e),
                body_read: false,
            })?;
        }
        let mut fresh_only = false;
        for _ in 0..2 {
            let mut be = match (!fresh_only)
                .then(|| st.pool.take(addr, !has_body))
                .flatten()
            {
                Some(be) => be,
                None => {
                    upstream::connect(addr, limits.backend_connect_timeout, limits.backend_timeout)
                        .map_err(|e| {
                            let error = match e {
                                ConnectError::TimedOut => ProxyError::ConnectTimeout {
                                    app: app.clone(),
                                    addr,
                                },
                                ConnectError::Io(source) => ProxyError::Connect {
                                    app: app.clone(),
                                    addr,
                                    source,
                                },
                            };
                            Failure::Answer {
                                error,
                                body_read: !has_body,
                            }
                        })?
                }
            };
            let retryable = be.reused;
            st.out.clear();
            http1::write_backend_request(&mut st.out, req, conn.peer.ip());
            let deadline = Instant::now() + limits.backend_timeout;
            if let Err(e) = be.write_all(&st.out, deadline) {
                st.out.clear();
                if retryable {
                    log::debug!("{addr}: pooled connection failed on write ({e}); retrying fresh");
                    fresh_only = true;
                    continue;
                }
                return Err(backend_io(
                    app,
                    format!("failed while receiving the request: {e}"),
                    !has_body,
                ));
            }
            st.out.clear();
            if has_body {
                if req.expect_continue && req.version == Version::Http11 {
                    let deadline = Instant::now() + limits.client_timeout;
                    conn.write_all(CONTINUE, deadline)
                        .and_then(|_| conn.flush(deadline))
                        .map_err(|e| abort(format!("client: {e}"), None, 0))?;
                }
                let body = match req.body {
                    BodyFraming::Length(n) => Upload::Length { left: n },
                    _ => Upload::Chunked(http1::ChunkedDecoder::new(MAX_TRAILER_BYTES)),
                };
                return Ok(Live {
                    backend: be,
                    stage: Stage::Upload { body, moved: 0 },
                    pending: Vec::new(),
                    backlog: Vec::new(),
                });
            }
            match read_response_head(&mut be, req.is_head(), limits, st) {
                Ok(resp) => {
                    let dl = self.download(&resp, st, closing);
                    return Ok(Live {
                        backend: be,
                        stage: Stage::Download(dl),
                        pending: Vec::new(),
                        backlog: Vec::new(),
                    });
                }
                Err(HeadError::Closed(detail)) if retryable => {
                    log::debug!("{addr}: pooled connection failed ({detail}); retrying fresh");
                    fresh_only = true;
                }
                Err(e) => return Err(self.head_failure(e, limits)),
            }
        }
        Err(backend_io(
            app,
            "closed the connection without answering".to_string(),
            true,
        ))
    }

    fn head_failure(&self, e: HeadError, limits: &Limits) -> Failure {
        let app = self.app.clone();
        match e {
            HeadError::Closed(detail) => backend_io(&app, detail, true),
            HeadError::TimedOut => Failure::Answer {
                error: ProxyError::BackendTimeout {
                    app,
                    timeout: limits.backend_timeout,
                },
                body_read: true,
            },
            HeadError::Invalid(source) => Failure::Answer {
                error: ProxyError::BackendInvalid { app, source },
                body_read: true,
            },
        }
    }

    /// Prepares the response for the client: its head into `st.out`, the body
    /// bytes read with it left in `st.rbuf`.
    fn download(&self, resp: &http1::Response, st: &mut WorkerState, closing: bool) -> Download {
        let req = &self.req;
        let framing = http1::client_framing(resp, req.version);
        let keep_alive = req.keep_alive && framing != ClientFraming::Close && !closing;
        st.out.clear();
        http1::write_client_response_head(&mut st.out, resp, framing, req.version, keep_alive);
        st.rbuf.consume(resp.head_len);
        let body = match resp.body {
            ResponseBody::None => BodyLeft::Finished,
            ResponseBody::Length(n) => BodyLeft::Length(n),
            ResponseBody::Chunked => {
                BodyLeft::Chunked(http1::ChunkedDecoder::new(MAX_TRAILER_BYTES))
            }
            ResponseBody::UntilClose => BodyLeft::UntilClose,
        };
        Download {
            // A body-less response followed by bytes: not reusable.
            clean: !matches!(body, BodyLeft::Finished) || st.rbuf.is_empty(),
            body,
            framing,
            status: resp.status,
            keep_alive,
            backend_reusable: resp.keep_alive,
            sent: 0,
            pushed: false,
        }
    }
}

/// Streams the request body from the client to the backend as far as the client
/// has sent it: `Content-Length` bodies as they are, chunked bodies decoded and
/// re-encoded.
fn upload(
    conn: &mut ClientConn,
    be: &mut BackendConn,
    body: &mut Upload,
    moved: &mut u64,
    limits: &Limits,
    st: &mut WorkerState,
) -> Result<Flow, SendError> {
    let client_err =
        |e: ConnError| SendError::Client(format!("client: {e} while sending the request body"));
    let backend_err =
        |e: Wait| SendError::Backend(format!("failed while receiving the request body: {e}"));
    loop {
        let cap = match body {
            Upload::Length { left } => {
                let take = ((*left).min(conn.buf.len() as u64)) as usize;
                if take > 0 {
                    let deadline = Instant::now() + limits.backend_timeout;
                    be.write_all(&conn.buf[..take], deadline)
                        .map_err(backend_err)?;
                    conn.buf.drain(..take);
                    *left -= take as u64;
                    *moved += take as u64;
                }
                if *left == 0 {
                    return Ok(Flow::Finished);
                }
                READ_CHUNK_BYTES
            }
            Upload::Chunked(decoder) => {
                // Decode what is buffered, re-encoding into st.out.
                st.out.clear();
                let mut pos = 0;
                let mut done = false;
                while pos < conn.buf.len() {
                    let p = decoder.feed(&conn.buf[pos..]).map_err(SendError::BadBody)?;
                    if !p.data.is_empty() {
                        let data = &conn.buf[pos + p.data.start..pos + p.data.end];
                        http1::write_chunk_header(&mut st.out, data.len());
                        st.out.extend_from_slice(data);
                        st.out.extend_from_slice(http1::CHUNK_END);
                    }
                    pos += p.consumed;
                    if p.done {
                        done = true;
                        break;
                    }
                    if p.consumed == 0 {
                        break;
                    }
                }
                conn.buf.drain(..pos);
                *moved += pos as u64;
                if done {
                    st.out.extend_from_slice(http1::LAST_CHUNK);
                }
                if !st.out.is_empty() {
                    let deadline = Instant::now() + limits.backend_timeout;
                    be.write_all(&st.out, deadline).map_err(backend_err)?;
                    st.out.clear();
                }
                if done {
                    return Ok(Flow::Finished);
                }
                // Cap what a malicious chunk line can make us buffer.
                if conn.buf.len() > http1::MAX_CHUNK_LINE_BYTES + READ_CHUNK_BYTES {
                    return Err(SendError::BadBody(http1::ChunkError::LineTooLong));
                }
                conn.buf.len() + READ_CHUNK_BYTES
            }
        };
        match conn.fill_nonblocking(cap).map_err(client_err)? {
            Fill::Progress => {}
            Fill::WouldBlock => return Ok(Flow::Blocked),
            Fill::Eof => return Err(client_err(ConnError::Closed)),
        }
    }
}

/// Streams the response to the client as far as the client takes it: first what
/// is pending from before, then `st.out` (the head, on the first call) and the
/// body, re-framed for the client, reading the backend as needed.
fn download(
    conn: &mut ClientConn,
    be: &mut BackendConn,
    dl: &mut Download,
    pending: &mut Vec<u8>,
    limits: &Limits,
    st: &mut WorkerState,
    app: &Arc<str>,
) -> Result<Flow, Failure> {
    let status = dl.status;
    let client_err = |e: ConnError, sent: u64| {
        abort(
            format!("client: {e} while receiving the response"),
            Some(status),
            sent,
        )
    };
    // The backend failed: a 502 if nothing was sent yet, else a cut.
    let backend_failed = |dl: &Download, st: &mut WorkerState, detail: String| {
        if dl.pushed {
            abort(format!("backend {detail}"), Some(status), dl.sent)
        } else {
            st.out.clear();
            Failure::Answer {
                error: ProxyError::BackendIo {
                    app: app.clone(),
                    detail,
                },
                body_read: true,
            }
        }
    };
    // What the client did not take last time goes first.
    if !pending.is_empty() || conn.tls.wants_write() {
        let (taken, flushed) = conn
            .send_nonblocking(pending)
            .map_err(|e| client_err(e, dl.sent))?;
        pending.drain(..taken);
        if !flushed || !pending.is_empty() {
            return Ok(Flow::Blocked);
        }
    }
    loop {
        // Frame what the backend sent into st.out.
        match &mut dl.body {
            BodyLeft::Finished => {}
            BodyLeft::Length(left) => {
                let avail = st.rbuf.len();
                let take = ((*left).min(avail as u64)) as usize;
                st.out.extend_from_slice(&st.rbuf.data()[..take]);
                st.rbuf.consume(take);
                dl.sent += take as u64;
                *left -= take as u64;
                if avail > take {
                    // More bytes than declared: the rest is not ours to forward.
                    dl.clean = false;
                }
                if *left == 0 {
                    dl.body = BodyLeft::Finished;
                }
            }
            BodyLeft::Chunked(decoder) => {
                while !st.rbuf.is_empty() {
                    let p = match decoder.feed(st.rbuf.data()) {
                        Ok(p) => p,
                        Err(e) => {
                            let detail = format!("sent a bad chunked body: {e}");
                            return Err(backend_failed(dl, st, detail));
                        }
                    };
                    // Split borrow: rbuf is read, out is written.
                    let (rbuf, out) = (&st.rbuf, &mut st.out);
                    emit(out, &rbuf.data()[p.data.clone()], dl.framing);
                    dl.sent += p.data.len() as u64;
                    st.rbuf.consume(p.consumed);
                    if p.done {
                        if dl.framing == ClientFraming::Chunked {
                            st.out.extend_from_slice(http1::LAST_CHUNK);
                        }
                        dl.clean = st.rbuf.is_empty();
                        dl.body = BodyLeft::Finished;
                        break;
                    }
                    if p.consumed == 0 {
                        break;
                    }
                }
                if !matches!(dl.body, BodyLeft::Finished)
                    && (st.rbuf.len() > http1::MAX_CHUNK_LINE_BYTES + MAX_TRAILER_BYTES
                        || st.rbuf.is_full())
                {
                    let detail = "sent an overlong chunk line".to_string();
                    return Err(backend_failed(dl, st, detail));
                }
            }
            BodyLeft::UntilClose => {
                let (rbuf, out) = (&st.rbuf, &mut st.out);
                emit(out, rbuf.data(), dl.framing);
                dl.sent += st.rbuf.len() as u64;
                st.rbuf.clear();
            }
        }
        let finished = matches!(dl.body, BodyLeft::Finished);
        // Push st.out to the client when it is large enough, or at the end.
        if finished || st.out.len() >= OUT_FLUSH_BYTES {
            dl.pushed = true;
            let (taken, flushed) = conn
                .send_nonblocking(&st.out)
                .map_err(|e| client_err(e, dl.sent))?;
            if taken < st.out.len() {
                pending.extend_from_slice(&st.out[taken..]);
            }
            st.out.clear();
            if !flushed {
                return Ok(Flow::Blocked);
            }
        }
        if finished {
            return Ok(Flow::Finished);
        }
        match read_more(be, st, limits) {
            Ok(()) => {}
            Err(w) if w == "closed" && matches!(dl.body, BodyLeft::UntilClose) => {
                if dl.framing == ClientFraming::Chunked {
                    st.out.extend_from_slice(http1::LAST_CHUNK);
                }
                dl.clean = false;
                dl.body = BodyLeft::Finished;
            }
            Err(w) => {
                let detail = format!("{w} in the middle of the response body");
                return Err(backend_failed(dl, st, detail));
            }
        }
    }
}

fn backend_io(app: &Arc<str>, detail: String, body_read: bool) -> Failure {
    Failure::Answer {
        error: ProxyError::BackendIo {
            app: app.clone(),
            detail,
        },
        body_read,
    }
}

/// Runs a throwaway decoder over the buffered start of a chunked body.
fn precheck_chunked(buf: &[u8]) -> Result<(), http1::ChunkError> {
    let mut decoder = http1::ChunkedDecoder::new(MAX_TRAILER_BYTES);
    let mut pos = 0;
    while pos < buf.len() {
        let p = decoder.feed(&buf[pos..])?;
        pos += p.consumed;
        if p.done || p.consumed == 0 {
            break;
        }
    }
    Ok(())
}

enum HeadError {
    /// Closed or reset before a whole head (nothing usable arrived).
    Closed(String),
    TimedOut,
    Invalid(http1::ResponseError),
}

/// Reads the final response head into `st.rbuf`, skipping 1xx interim
/// responses. On success the head is `st.rbuf.data()[..head_len]`.
fn read_response_head(
    be: &mut BackendConn,
    request_was_head: bool,
    limits: &Limits,
    st: &mut WorkerState,
) -> Result<http1::Response, HeadError> {
    let deadline = Instant::now() + limits.backend_timeout;
    st.rbuf.clear();
    loop {
        match http1::parse_response(st.rbuf.data(), MAX_RESPONSE_HEAD_BYTES, request_was_head) {
            Ok(Some(resp)) if (100..200).contains(&resp.status) => {
                if resp.status == 101 {
                    // We never forward Upgrade, so a switch is a protocol error.
                    return Err(HeadError::Invalid(http1::ResponseError::UnexpectedUpgrade));
                }
                st.rbuf.consume(resp.head_len);
                continue;
            }
            Ok(Some(resp)) => return Ok(resp),
            Ok(None) => {}
            Err(e) => return Err(HeadError::Invalid(e)),
        }
        if st.rbuf.is_full() {
            return Err(HeadError::Invalid(http1::ResponseError::HeadTooLarge));
        }
        let had = st.rbuf.len();
        match be.read_into(&mut st.rbuf, deadline) {
            Ok(0) => {
                return Err(HeadError::Closed(if had == 0 {
                    "closed the connection without answering".to_string()
                } else {
                    "closed the connection in the middle of the response head".to_string()
                }));
            }
            Ok(_) => {}
            Err(Wait::TimedOut) => return Err(HeadError::TimedOut),
            Err(Wait::Io(e)) => {
                return Err(HeadError::Closed(format!("failed before answering: {e}")));
            }
        }
    }
}

/// Appends body bytes to `st.out` in the client's framing.
fn emit(out: &mut Vec<u8>, data: &[u8], framing: ClientFraming) {
    if data.is_empty() {
        return;
    }
    if framing == ClientFraming::Chunked {
        http1::write_chunk_header(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(http1::CHUNK_END);
    } else {
        out.extend_from_slice(data);
    }
}

/// Reads more bytes from the backend into `st.rbuf` (at least one), after the
/// unconsumed ones. Errors are "closed", "timed out", or the socket error text.
fn read_more(be: &mut BackendConn, st: &mut WorkerState, limits: &Limits) -> Result<(), String> {
    let deadline = Instant::now() + limits.backend_timeout;
    match be.read_into(&mut st.rbuf, deadline) {
        Ok(0) => Err("closed".to_string()),
        Ok(_) => Ok(()),
        Err(Wait::TimedOut) => Err("timed out".to_string()),
        Err(Wait::Io(e)) => Err(e.to_string()),
    }
}
