//! One request/response exchange with a backend: the request head and body go
//! to the app, the response head and body stream back.
//!
//! Neither peer makes a worker wait on it: when the client has not sent the next
//! part of its request body or has not read the response so far, or when the
//! backend has not answered yet (its response head, or the next body bytes),
//! [`Exchange::run`] returns [`Progress::Blocked`] with everything needed to go
//! on, and the worker parks the connection (with the exchange) on the socket
//! that is not ready, under that peer's deadline. So a slow client or a slow app
//! costs a parked connection and its buffers, never a worker; so do an app slow
//! to accept a new connection (the exchange parks until the connect ends) and
//! one slow to read a request body (it parks until the socket has room).
//!
//! Bodies are streamed through fixed per-worker buffers, never held whole, so a
//! 1 GiB upload or download costs the same memory as a 1 KiB one. Chunked bodies
//! are decoded by our own strict decoder and re-encoded by us in both directions;
//! nothing of the peer's raw framing is passed through. A backend that dies
//! mid-body makes us drop the client connection without the last chunk or short of
//! its `Content-Length`, so the client cannot take a cut response for a whole one.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::http1::{self, BodyFraming, ClientFraming, Request, ResponseBody, Version};
use crate::proxy::backend::{self, BackendConn, Pool};
use crate::proxy::client::{ClientConn, ConnError, Fill, MinRate, READ_CHUNK_BYTES};
use crate::proxy::park::Waiting;
use crate::proxy::readbuf::ReadBuf;
use crate::sys::{self, Interest};

/// Largest response head accepted from a backend.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// Largest chunked trailer section accepted (and discarded), either direction.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Plaintext gathered before one push into rustls and one flush.
const OUT_FLUSH_BYTES: usize = 32 * 1024;
/// The interim response sent for `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Size of each read from a backend while streaming a response.
pub const BACKEND_READ_BYTES: usize = 64 * 1024;

/// Every deadline and cap a worker applies, from `[proxy]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Whole request head, from its first byte.
    pub head_timeout: Duration,
    /// Keep-alive wait for the next request.
    pub idle_timeout: Duration,
    /// Connecting to a backend.
    pub backend_connect_timeout: Duration,
    /// Waiting for the backend's response head, and between its reads and writes.
    pub backend_timeout: Duration,
    /// Waiting for the client between reads of a request body and between writes of a response.
    pub client_timeout: Duration,
    /// Largest request head.
    pub max_head_bytes: usize,
    /// The slowest a client may be while we wait on it.
    pub min_rate: MinRate,
}

impl Limits {
    /// The limits of a `[proxy]` section.
    pub fn from_config(p: &ProxyConfig) -> Limits {
        Limits {
            head_timeout: p.head_timeout,
            idle_timeout: p.idle_timeout,
            backend_connect_timeout: p.backend_connect_timeout,
            backend_timeout: p.backend_timeout,
            client_timeout: p.client_timeout,
            max_head_bytes: p.max_head_bytes,
            min_rate: MinRate {
                bytes_per_sec: p.min_data_rate,
                grace: p.min_data_rate_grace,
            },
        }
    }
}

/// One worker's buffers (and a handle on the shared backend pool), reused
/// across the exchanges it runs; a parked exchange keeps none of them.
#[derive(Debug)]
pub struct Scratch {
    /// Idle backend connections (shared).
    pub pool: Arc<Pool>,
    /// Bytes read from the backend.
    pub rbuf: ReadBuf,
    /// Bytes on their way out (to the backend or the client).
    pub out: Vec<u8>,
}

impl Scratch {
    /// Fresh buffers around a handle on the shared pool.
    pub fn new(pool: Arc<Pool>) -> Scratch {
        Scratch {
            pool,
            rbuf: ReadBuf::new(BACKEND_READ_BYTES),
            out: Vec::with_capacity(BACKEND_READ_BYTES * 2),
        }
    }
}

/// Counts a request in flight for as long as it lives (it moves with a parked
/// exchange).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more in `count` until dropped.
    pub fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

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
    /// A peer is not ready: park the connection, with the exchange, until it is.
    Blocked(Waiting),
}

/// One request on its way through nexushub, from the complete head to the last
/// byte of the response; parked with its connection while a peer is not ready.
#[derive(Debug)]
pub struct Exchange {
    /// The request (its head already consumed from the connection's buffer).
    pub req: Request,
    /// The app it is routed to.
    pub app: Arc<str>,
    /// When its head was complete.
    pub started: Instant,
    /// Set by the deadline sweep when a parked wait on the backend ran out; the
    /// worker that resumes the exchange answers 504 (or cuts the response).
    pub expired: bool,
    addr: SocketAddr,
    live: Option<Live>,
    waiting: Option<Waiting>,
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
    /// Bytes for the backend its socket had no room for yet: the rest of the
    /// request head, or framed request body bytes.
    to_backend: Vec<u8>,
    /// Backend bytes read but not used yet, while parked.
    backlog: Vec<u8>,
    /// When the backend must have answered (the response head, or its next
    /// body bytes).
    backend_deadline: Instant,
}

#[derive(Debug)]
enum Stage {
    /// A new backend connection is being set up; the request head follows.
    Connect,
    /// The request body is on its way to the backend (after the rest of the
    /// head, if its socket had no room for all of it; a request without a body
    /// passes here only then, as an upload of no bytes); `moved` bytes so far.
    Upload { body: Upload, moved: u64 },
    /// The request is sent; the response head is awaited. `retryable`: the
    /// connection came from the pool, the request is bodiless and idempotent,
    /// and not a byte of the response has arrived; if the connection turns out
    /// closed, the app may never have seen the request (it closed an idle
    /// connection as the request went out), so a fresh connection is tried
    /// once. Cleared by the first response byte.
    AwaitHead { retryable: bool },
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
    /// The client is not ready.
    Blocked,
    /// The backend's socket is full (it is not reading the request body).
    BackendFull,
    /// The backend has sent nothing more yet.
    BackendBlocked,
    /// While the request body comes: the client has no room for what we send
    /// it (a `100 Continue`).
    ClientFull,
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
            expired: false,
            addr,
            live: None,
            waiting: None,
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
            _ => 0,
        }
    }

    /// The status and body bytes sent so far (0 before a response head went out).
    pub fn sent(&self) -> (u16, u64) {
        match self.live.as_ref().map(|l| &l.stage) {
            Some(Stage::Download(d)) if d.pushed => (d.status, d.sent),
            _ => (0, 0),
        }
    }

    /// What the exchange waits for while parked.
    pub fn waiting(&self) -> Option<Waiting> {
        self.waiting
    }

    /// The deadline sweep found the exchange parked past its deadline: true
    /// when it was waiting on its backend (not noted before), which is then
    /// noted as timed out for the worker that resumes it to answer (504, or a
    /// cut response); false when the client is the one late.
    pub fn expire_backend_wait(&mut self) -> bool {
        let on_backend = matches!(self.waiting, Some(Waiting::Backend(_))) && !self.expired;
        if on_backend {
            self.expired = true;
        }
        on_backend
    }

    /// When the backend must have answered, while the exchange waits on it.
    pub fn backend_deadline(&self) -> Option<Instant> {
        self.live.as_ref().map(|l| l.backend_deadline)
    }

    /// The backend connection, while the exchange has one (to park on it).
    pub fn backend_mut(&mut self) -> Option<&mut BackendConn> {
        Some(&mut self.live.as_mut()?.backend)
    }

    /// Runs the exchange as far as it goes without waiting on the client or on
    /// a backend that has not answered yet.
    pub fn run(
        &mut self,
        conn: &mut ClientConn,
        limits: &Limits,
        st: &mut Scratch,
        closing: bool,
    ) -> Progress {
        self.waiting = None;
        st.out.clear();
        // Set when the request has just gone out whole: its answer cannot be
        // there yet, so the exchange parks on the backend without a read that
        // would only say EAGAIN.
        let mut just_sent = false;
        let mut live = match self.live.take() {
            Some(mut live) => {
                st.rbuf.restore(&live.backlog);
                live.backlog.clear();
                live
            }
            None => match self.begin(conn, limits, st) {
                Ok(live) => {
                    just_sent = true;
                    live
                }
                Err(f) => return Progress::Failed(f),
            },
        };
        if self.expired {
            return Progress::Failed(self.timeout_failure(&live, limits, st));
        }
        // Bounded: connect, upload, head (with at most one retry and its
        // connect), download.
        for _ in 0..6 {
            let waiting = match &mut live.stage {
                Stage::Connect if just_sent => Waiting::Backend(Interest::Write),
                Stage::Connect => match self.connected(conn, &mut live, st) {
                    Ok(Some(stage)) => {
                        live.stage = stage;
                        live.backend_deadline = Instant::now() + limits.backend_timeout;
                        just_sent = true;
                        continue;
                    }
                    Ok(None) => Waiting::Backend(Interest::Write),
                    Err(f) => return Progress::Failed(f),
                },
                Stage::Upload { body, moved } => {
                    match upload(
                        conn,
                        &mut live.backend,
                        body,
                        moved,
                        &mut live.to_backend,
                        st,
                    ) {
                        Ok(Flow::Finished) => {
                            live.stage = Stage::AwaitHead { retryable: false };
                            live.backend_deadline = Instant::now() + limits.backend_timeout;
                            just_sent = true;
                            continue;
                        }
                        Ok(Flow::BackendFull) => {
                            live.backend_deadline = Instant::now() + limits.backend_timeout;
                            Waiting::Backend(Interest::Write)
                        }
                        Ok(Flow::Blocked) => Waiting::Client(Interest::Read),
                        Ok(_) => Waiting::Client(Interest::Write),
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
                }
                Stage::AwaitHead { .. } if just_sent => Waiting::Backend(Interest::Read),
                Stage::AwaitHead { retryable } => {
                    match poll_response_head(&mut live.backend, self.req.is_head(), retryable, st) {
                        Ok(Some(resp)) => {
                            live.stage = Stage::Download(self.download(&resp, st, closing));
                            continue;
                        }
                        Ok(None) => Waiting::Backend(Interest::Read),
                        Err(HeadError::Closed(detail)) if *retryable => {
                            log::debug!(
                                "{}: pooled connection failed ({detail}); retrying fresh",
                                self.addr
                            );
                            st.rbuf.clear();
                            match self.start_request(conn, st, false) {
                                Ok((be, _)) => {
                                    live.backend = be;
                                    live.stage = Stage::Connect;
                                    live.backend_deadline =
                                        Instant::now() + limits.backend_connect_timeout;
                                    just_sent = true;
                                    continue;
                                }
                                Err(f) => return Progress::Failed(f),
                            }
                        }
                        Err(e) => {
                            return Progress::Failed(self.head_failure(e, live.backend.reused))
                        }
                    }
                }
                Stage::Download(dl) => {
                    match download(
                        conn,
                        &mut live.backend,
                        dl,
                        &mut live.pending,
                        st,
                        &self.app,
                    ) {
                        Ok(Flow::Blocked | Flow::ClientFull) => Waiting::Client(Interest::Write),
                        Ok(Flow::BackendFull) => Waiting::Backend(Interest::Write),
                        Ok(Flow::BackendBlocked) => {
                            // The body goes on: its bytes should be acknowledged
                            // as they come (see `ack_promptly`).
                            live.backend.ack_promptly();
                            live.backend_deadline = Instant::now() + limits.backend_timeout;
                            Waiting::Backend(Interest::Read)
                        }
                        Ok(Flow::Finished) => {
                            let done = Done {
                                status: dl.status,
                                body_bytes: dl.sent,
                                keep_alive: dl.keep_alive,
                            };
                            // Backend bytes past the response, read with its
                            // last ones, belong to no request: such a
                            // connection is never pooled (the pool's peek
                            // catches only what is still in the socket).
                            if dl.backend_reusable && dl.clean && st.rbuf.is_empty() {
                                st.pool.put(live.backend);
                            }
                            return Progress::Done(done);
                        }
                        Err(f) => return Progress::Failed(f),
                    }
                }
            };
            live.backlog.extend_from_slice(st.rbuf.data());
            st.rbuf.clear();
            self.live = Some(live);
            self.waiting = Some(waiting);
            return Progress::Blocked(waiting);
        }
        Progress::Failed(abort("exchange did not progress", None, 0))
    }

    /// The backend did not answer before its deadline while parked.
    fn timeout_failure(&self, live: &Live, limits: &Limits, st: &mut Scratch) -> Failure {
        match &live.stage {
            Stage::Download(dl) if dl.pushed => abort(
                "backend timed out in the middle of the response body",
                Some(dl.status),
                dl.sent,
            ),
            Stage::Download(_) => {
                st.out.clear();
                backend_io(
                    &self.app,
                    "timed out in the middle of the response body".to_string(),
                    true,
                )
            }
            Stage::Upload { .. } => backend_io(
                &self.app,
                "failed while receiving the request body: timed out".to_string(),
                false,
            ),
            Stage::Connect => Failure::Answer {
                error: ProxyError::ConnectTimeout {
                    app: self.app.clone(),
                    addr: self.addr,
                },
                body_read: !self.req.has_body(),
            },
            _ => Failure::Answer {
                error: ProxyError::BackendTimeout {
                    app: self.app.clone(),
                    timeout: limits.backend_timeout,
                },
                body_read: true,
            },
        }
    }

    /// Sends the request head on a pooled connection (when `pooled` and the pool
    /// has a live one), else starts a new connection, which the head follows
    /// once it is up (see [`Stage::Connect`]).
    fn start_request(
        &self,
        conn: &ClientConn,
        st: &mut Scratch,
        pooled: bool,
    ) -> Result<(BackendConn, Option<Vec<u8>>), Failure> {
        let has_body = self.req.has_body();
        if let Some(mut be) = pooled.then(|| st.pool.take(self.addr)).flatten() {
            // A failed send queued nothing: the app never saw this request, so
            // a fresh connection is safe whatever the method.
            match self.write_head(conn, &mut be, st) {
                Ok(rest) => return Ok((be, Some(rest))),
                Err(e) => log::debug!(
                    "{}: pooled connection failed on write ({e}); connecting afresh",
                    self.addr
                ),
            }
        }
        let be = backend::connect_start(self.addr).map_err(|source| Failure::Answer {
            error: ProxyError::Connect {
                app: self.app.clone(),
                addr: self.addr,
                source,
            },
            body_read: !has_body,
        })?;
        Ok((be, None))
    }

    /// Sends the request head to a connected backend as far as its socket
    /// takes it now; returns what it had no room for (which goes before any
    /// body byte, the exchange parked on the socket until it does).
    fn write_head(
        &self,
        conn: &ClientConn,
        be: &mut BackendConn,
        st: &mut Scratch,
    ) -> std::io::Result<Vec<u8>> {
        st.out.clear();
        http1::write_backend_request(&mut st.out, &self.req, conn.peer.ip());
        let rest = be.write_nonblocking(&st.out).map(|n| st.out[n..].to_vec());
        st.out.clear();
        rest
    }

    /// Finishes a connect that the exchange was parked on: `Ok(None)` while it
    /// is still under way, else the head is sent and the next stage returned.
    fn connected(
        &self,
        conn: &mut ClientConn,
        live: &mut Live,
        st: &mut Scratch,
    ) -> Result<Option<Stage>, Failure> {
        let has_body = self.req.has_body();
        match live.backend.finish_connect() {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(source) => {
                return Err(Failure::Answer {
                    error: ProxyError::Connect {
                        app: self.app.clone(),
                        addr: self.addr,
                        source,
                    },
                    body_read: !has_body,
                })
            }
        }
        let rest = self.write_head(conn, &mut live.backend, st).map_err(|e| {
            backend_io(
                &self.app,
                format!("failed while receiving the request: {e}"),
                !has_body,
            )
        })?;
        let stage = self.after_head(conn, false, !rest.is_empty())?;
        live.to_backend = rest;
        Ok(Some(stage))
    }

    /// What follows a request head that went out (`head_left`: part of it is
    /// still to go): the body (after a `100 Continue` to the client if it
    /// asked), or the wait for the answer.
    fn after_head(
        &self,
        conn: &mut ClientConn,
        reused: bool,
        head_left: bool,
    ) -> Result<Stage, Failure> {
        if !self.req.has_body() {
            if head_left {
                // An upload of no body bytes: it sends what is left of the head.
                return Ok(Stage::Upload {
                    body: Upload::Length { left: 0 },
                    moved: 0,
                });
            }
            return Ok(Stage::AwaitHead {
                retryable: reused && self.req.is_idempotent(),
            });
        }
        let req = &self.req;
        if req.expect_continue && req.version == Version::Http11 {
            // Queued in rustls and sent as far as the socket takes it; the
            // upload sends the rest first (parked until the client has room).
            conn.queue(CONTINUE)
                .map_err(|e| abort(format!("client: {e}"), None, 0))?;
        }
        let body = match req.body {
            BodyFraming::Length(n) => Upload::Length { left: n },
            _ => Upload::Chunked(http1::ChunkedDecoder::new(MAX_TRAILER_BYTES)),
        };
        Ok(Stage::Upload { body, moved: 0 })
    }

    /// Sends the request head on a pooled or fresh backend connection and sets
    /// up what comes next: the body, or the wait for the response head.
    fn begin(
        &mut self,
        conn: &mut ClientConn,
        limits: &Limits,
        st: &mut Scratch,
    ) -> Result<Live, Failure> {
        if self.req.body == BodyFraming::Chunked {
            // Whatever of the body came with the head (an attack usually does) is
            // checked before the backend sees a byte, so a framing error there is a
            // 400 that never reaches the app. Errors further into a streamed body are
            // still caught by the decoder; the app then sees a cut request.
            precheck_chunked(&conn.buf).map_err(|e| Failure::Answer {
                error: ProxyError::RequestBody(e),
                body_read: false,
            })?;
        }
        st.rbuf.clear();
        let (be, head_rest) = self.start_request(conn, st, true)?;
        let (stage, deadline, to_backend) = match head_rest {
            Some(rest) => {
                let stage = self.after_head(conn, be.reused, !rest.is_empty())?;
                (stage, limits.backend_timeout, rest)
            }
            None => (Stage::Connect, limits.backend_connect_timeout, Vec::new()),
        };
        Ok(Live {
            backend: be,
            stage,
            pending: Vec::new(),
            to_backend,
            backlog: Vec::new(),
            backend_deadline: Instant::now() + deadline,
        })
    }

    /// The answer for a response head that did not come; `reused`: on a
    /// pooled connection, where the log says why it was not retried.
    fn head_failure(&self, e: HeadError, reused: bool) -> Failure {
        let app = self.app.clone();
        match e {
            HeadError::Closed(detail) if reused => backend_io(
                &app,
                format!("{detail} (reused connection, not retried: the app may have acted)"),
                true,
            ),
            HeadError::Closed(detail) => backend_io(&app, detail, true),
            HeadError::Invalid(source) => Failure::Answer {
                error: ProxyError::BackendInvalid { app, source },
                body_read: true,
            },
        }
    }

    /// Prepares the response for the client: its head into `st.out`, the body
    /// bytes read with it left in `st.rbuf`.
    fn download(&self, resp: &http1::Response, st: &mut Scratch, closing: bool) -> Download {
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
    to_backend: &mut Vec<u8>,
    st: &mut Scratch,
) -> Result<Flow, SendError> {
    let client_err =
        |e: ConnError| SendError::Client(format!("client: {e} while sending the request body"));
    let backend_err = |e: std::io::Error| {
        SendError::Backend(format!("failed while receiving the request body: {e}"))
    };
    // A `100 Continue` the client had no room for goes out first.
    if conn.tls.wants_write() && !conn.flush_nonblocking().map_err(client_err)? {
        return Ok(Flow::ClientFull);
    }
    // Bounded: every round moves client bytes toward the backend, or returns.
    loop {
        // What the backend had no room for goes first; while it still has none,
        // the exchange waits on its socket (no client byte is read meanwhile, so
        // this buffer stays under one read's worth).
        if !to_backend.is_empty() {
            let n = be.write_nonblocking(to_backend).map_err(backend_err)?;
            to_backend.drain(..n);
            if !to_backend.is_empty() {
                return Ok(Flow::BackendFull);
            }
        }
        let cap = match body {
            Upload::Length { left } => {
                let take = ((*left).min(conn.buf.len() as u64)) as usize;
                if take > 0 {
                    let data = &conn.buf[..take];
                    let n = be.write_nonblocking(data).map_err(backend_err)?;
                    to_backend.extend_from_slice(&data[n..]);
                    conn.buf.drain(..take);
                    *left -= take as u64;
                    *moved += take as u64;
                    if !to_backend.is_empty() {
                        return Ok(Flow::BackendFull);
                    }
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
                if done {
                    // Nothing more to decode: what is left is to deliver what
                    // is framed, which a Length body with nothing left does.
                    *body = Upload::Length { left: 0 };
                }
                if !st.out.is_empty() {
                    let n = be.write_nonblocking(&st.out).map_err(backend_err)?;
                    to_backend.extend_from_slice(&st.out[n..]);
                    st.out.clear();
                    if !to_backend.is_empty() {
                        return Ok(Flow::BackendFull);
                    }
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
    st: &mut Scratch,
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
    let backend_failed = |dl: &Download, st: &mut Scratch, detail: String| {
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
    // What the client did not take last time goes first, and so does any TLS
    // record rustls still holds for it. When they do not all go out, what is
    // framed in `st.out` (on the first call, the response head) waits behind
    // them in `pending`: `st.out` does not outlive this call.
    if !pending.is_empty() || conn.tls.wants_write() {
        let (taken, flushed) = conn
            .send_nonblocking(pending)
            .map_err(|e| client_err(e, dl.sent))?;
        pending.drain(..taken);
        if !flushed || !pending.is_empty() {
            if !st.out.is_empty() {
                dl.pushed = true;
                pending.append(&mut st.out);
            }
            return Ok(Flow::Blocked);
        }
    }
    loop {
        // Set when a run sent straight from the read buffer filled the socket.
        let mut blocked = false;
        // Frame what the backend sent into st.out.
        match &mut dl.body {
            BodyLeft::Finished => {}
            BodyLeft::Length(left) => {
                let avail = st.rbuf.len();
                let take = ((*left).min(avail as u64)) as usize;
                if st.out.is_empty() && take >= OUT_FLUSH_BYTES {
                    // A large run of body bytes with nothing framed before it
                    // goes to rustls straight from the read buffer: one copy
                    // fewer per byte than through st.out.
                    dl.pushed = true;
                    let run = &st.rbuf.data()[..take];
                    blocked = !push(conn, run, pending).map_err(|e| client_err(e, dl.sent))?;
                } else {
                    st.out.extend_from_slice(&st.rbuf.data()[..take]);
                }
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
        if blocked {
            return Ok(Flow::Blocked);
        }
        let finished = matches!(dl.body, BodyLeft::Finished);
        // Push st.out to the client when it is large enough, or at the end.
        if finished || st.out.len() >= OUT_FLUSH_BYTES {
            dl.pushed = true;
            let flushed = push(conn, &st.out, pending).map_err(|e| client_err(e, dl.sent))?;
            st.out.clear();
            if !flushed {
                return Ok(Flow::Blocked);
            }
        }
        if finished {
            return Ok(Flow::Finished);
        }
        match read_more(be, st) {
            Ok(More::Bytes) => {}
            Ok(More::NotYet) => {
                // What is framed goes out before we wait (a streamed response
                // must not sit here), then the exchange parks on the backend.
                if !st.out.is_empty() {
                    dl.pushed = true;
                    let flushed =
                        push(conn, &st.out, pending).map_err(|e| client_err(e, dl.sent))?;
                    st.out.clear();
                    if !flushed {
                        return Ok(Flow::Blocked);
                    }
                }
                return Ok(Flow::BackendBlocked);
            }
            Ok(More::Closed) if matches!(dl.body, BodyLeft::UntilClose) => {
                if dl.framing == ClientFraming::Chunked {
                    st.out.extend_from_slice(http1::LAST_CHUNK);
                }
                dl.clean = false;
                dl.body = BodyLeft::Finished;
            }
            Ok(More::Closed) => {
                let detail = "closed in the middle of the response body".to_string();
                return Err(backend_failed(dl, st, detail));
            }
            Err(e) => {
                let detail = format!("{e} in the middle of the response body");
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
    Invalid(http1::ResponseError),
}

/// Reads what the backend has sent of the final response head into `st.rbuf`
/// (after what is there from before), without blocking, skipping 1xx interim
/// responses. `Ok(None)`: not all of it yet. On success the head is
/// `st.rbuf.data()[..head_len]`. `retryable` is cleared by any byte read: the
/// app has seen the request then.
fn poll_response_head(
    be: &mut BackendConn,
    request_was_head: bool,
    retryable: &mut bool,
    st: &mut Scratch,
) -> Result<Option<http1::Response>, HeadError> {
    // Bounded: each round consumes an interim head or reads bytes, or returns.
    for _ in 0..1024 {
        match http1::parse_response(st.rbuf.data(), MAX_RESPONSE_HEAD_BYTES, request_was_head) {
            Ok(Some(resp)) if (100..200).contains(&resp.status) => {
                if resp.status == 101 {
                    // We never forward Upgrade, so a switch is a protocol error.
                    return Err(HeadError::Invalid(http1::ResponseError::UnexpectedUpgrade));
                }
                st.rbuf.consume(resp.head_len);
                continue;
            }
            Ok(Some(resp)) => return Ok(Some(resp)),
            Ok(None) => {}
            Err(e) => return Err(HeadError::Invalid(e)),
        }
        if st.rbuf.is_full() {
            return Err(HeadError::Invalid(http1::ResponseError::HeadTooLarge));
        }
        let had = st.rbuf.len();
        match be.read_nonblocking(&mut st.rbuf) {
            Ok(0) => {
                return Err(HeadError::Closed(if had == 0 {
                    "closed the connection without answering".to_string()
                } else {
                    "closed the connection in the middle of the response head".to_string()
                }));
            }
            Ok(_) => *retryable = false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HeadError::Closed(format!("failed before answering: {e}"))),
        }
    }
    Err(HeadError::Invalid(http1::ResponseError::HeadTooLarge))
}

/// Hands `data` to the client without blocking; what rustls does not take is
/// kept in `pending` (sent first next time). True when all of it went out.
fn push(conn: &mut ClientConn, data: &[u8], pending: &mut Vec<u8>) -> Result<bool, ConnError> {
    let (taken, flushed) = conn.send_nonblocking(data)?;
    if taken < data.len() {
        pending.extend_from_slice(&data[taken..]);
    }
    Ok(flushed)
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

/// What a read of more response body bytes found.
enum More {
    Bytes,
    /// Nothing yet: the backend has not sent more.
    NotYet,
    Closed,
}

/// Reads more bytes from the backend into `st.rbuf`, after the unconsumed ones,
/// without blocking.
fn read_more(be: &mut BackendConn, st: &mut Scratch) -> std::io::Result<More> {
    loop {
        match be.read_nonblocking(&mut st.rbuf) {
            Ok(0) => return Ok(More::Closed),
            Ok(_) => return Ok(More::Bytes),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(More::NotYet),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
