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
//! Bodies are streamed through fixed per-worker buffers ([`Scratch`]), never
//! held whole, so a 1 GiB upload or download costs the same memory as a 1 KiB
//! one. Chunked bodies are decoded by our own strict decoder and re-encoded by
//! us in both directions; nothing of the peer's raw framing is passed through.
//!
//! This file holds the exchange and its stages' order (connect, request head,
//! body, response head, response), with the retry rule; each stage's I/O has
//! a file: `upload.rs` (the request body), `head.rs` (the response head),
//! `download.rs` (the response); `outcome.rs` says how a run or a step ends,
//! `limits.rs` and `scratch.rs` what every exchange shares.

mod download;
mod head;
mod limits;
mod outcome;
mod scratch;
mod upload;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{BackendFault, ProxyError};
use crate::http1::{self, BodyFraming, Request, Version};
use crate::proxy::backend::{self, BackendConn};
use crate::proxy::client::ClientConn;
use crate::proxy::park::Waiting;
use crate::sys::{self, Interest};

use download::Download;
use head::HeadError;
use outcome::{client_failed, Flow};
use upload::{Upload, UploadError};

use limits::MAX_TRAILER_BYTES;

pub(crate) use limits::Limits;
pub(crate) use outcome::{Cause, ClientPart, Failure, Progress, Switch};
pub(crate) use scratch::Scratch;

/// The interim response sent for `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Counts a request in flight for as long as it lives (it moves with a parked
/// exchange).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more in `count` until dropped.
    pub(crate) fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One request on its way through nexushub, from the complete head to the last
/// byte of the response; parked with its connection while a peer is not ready.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The request (its head already consumed from the connection's buffer).
    pub(crate) req: Request,
    /// The app it is routed to.
    pub(crate) app: Arc<str>,
    /// For an upgrade request, the route instance's count of tunnels (which
    /// the tunnel joins if the app agrees).
    pub(crate) tunnels: Option<Arc<AtomicUsize>>,
    /// When its head was complete.
    pub(crate) started: Instant,
    /// Set by the deadline sweep when a parked wait on the backend ran out; the
    /// worker that resumes the exchange answers 504 (or cuts the response).
    expired: bool,
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

impl Stage {
    /// What a stage just entered waits for before anything else: a connect
    /// just started is not up yet, and a request just sent cannot be answered
    /// yet, so the exchange parks on the socket rather than pay for a call
    /// that would only say EAGAIN. The body stages have bytes to move at once.
    fn first_wait(&self) -> Option<Waiting> {
        match self {
            Stage::Connect => Some(Waiting::Backend(Interest::Write)),
            Stage::AwaitHead { .. } => Some(Waiting::Backend(Interest::Read)),
            Stage::Upload { .. } | Stage::Download(_) => None,
        }
    }
}

impl Exchange {
    /// An exchange of `req` with the app `app` at `addr`, counted in flight (in
    /// total and on the route's instance) for as long as it lives.
    pub(crate) fn new(
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
            tunnels: None,
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
    pub(crate) fn moved(&self, conn: &ClientConn) -> u64 {
        match self.live.as_ref().map(|l| (&l.stage, l.pending.len())) {
            Some((Stage::Upload { moved, .. }, _)) => *moved,
            Some((Stage::Download(d), pending)) => {
                let unacked = sys::unsent_bytes(conn.sock.as_raw_fd()).unwrap_or(0);
                d.sent().saturating_sub((pending + unacked) as u64)
            }
            _ => 0,
        }
    }

    /// The status and body bytes sent so far (0 before a response head went out).
    pub(crate) fn sent(&self) -> (u16, u64) {
        match self.live.as_ref().map(|l| &l.stage) {
            Some(Stage::Download(d)) => d.delivered().unwrap_or((0, 0)),
            _ => (0, 0),
        }
    }

    /// The deadline sweep found the exchange parked past its deadline: true
    /// when it was waiting on its backend (not noted before), which is then
    /// noted as timed out for the worker that resumes it to answer (504, or a
    /// cut response); false when the client is the one late.
    pub(crate) fn expire_backend_wait(&mut self) -> bool {
        let on_backend = matches!(self.waiting, Some(Waiting::Backend(_))) && !self.expired;
        if on_backend {
            self.expired = true;
        }
        on_backend
    }

    /// When the backend must have answered, while the exchange waits on it.
    pub(crate) fn backend_deadline(&self) -> Option<Instant> {
        self.live.as_ref().map(|l| l.backend_deadline)
    }

    /// The backend connection, while the exchange has one (to park on it).
    pub(crate) fn backend_mut(&mut self) -> Option<&mut BackendConn> {
        Some(&mut self.live.as_mut()?.backend)
    }

    /// Runs the exchange as far as it goes without waiting on the client or on
    /// a backend that has not answered yet.
    pub(crate) fn run(
        &mut self,
        conn: &mut ClientConn,
        limits: &Limits,
        st: &mut Scratch,
        closing: bool,
    ) -> Progress {
        self.waiting = None;
        st.out.clear();
        let mut live = match self.live.take() {
            Some(mut live) => {
                st.rbuf.restore(&live.backlog);
                live.backlog.clear();
                live
            }
            None => match self.begin(conn, limits, st) {
                Ok(live) => match live.stage.first_wait() {
                    Some(waiting) => return self.park(live, st, waiting),
                    None => live,
                },
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
                Stage::Connect => match self.connected(conn, &mut live, st) {
                    Ok(Some(stage)) => {
                        live.backend_deadline = Instant::now() + limits.backend_timeout;
                        match enter(&mut live, stage) {
                            Some(waiting) => waiting,
                            None => continue,
                        }
                    }
                    Ok(None) => Waiting::Backend(Interest::Write),
                    Err(f) => return Progress::Failed(f),
                },
                Stage::Upload { body, moved } => {
                    let flow = upload::upload(
                        conn,
                        &mut live.backend,
                        body,
                        moved,
                        &mut live.to_backend,
                        st,
                    );
                    match flow {
                        Ok(Flow::Finished) => {
                            live.backend_deadline = Instant::now() + limits.backend_timeout;
                            match enter(&mut live, Stage::AwaitHead { retryable: false }) {
                                Some(waiting) => waiting,
                                None => continue,
                            }
                        }
                        Ok(flow) => {
                            if flow == Flow::BackendWrite {
                                live.backend_deadline = Instant::now() + limits.backend_timeout;
                            }
                            match flow.waiting() {
                                Some(waiting) => waiting,
                                None => continue,
                            }
                        }
                        Err(e) => return Progress::Failed(self.upload_failure(e)),
                    }
                }
                Stage::AwaitHead { retryable } => {
                    match head::poll_response_head(&mut live.backend, &self.req, retryable, st) {
                        Ok(Some(resp)) if resp.status == 101 => {
                            return Progress::Switched(switched(live, &resp, st));
                        }
                        Ok(Some(resp)) => {
                            let dl = Download::start(&self.req, &resp, st, closing);
                            live.stage = Stage::Download(dl);
                            continue;
                        }
                        Ok(None) => Waiting::Backend(Interest::Read),
                        Err(HeadError::Lost(lost)) if *retryable => {
                            log::debug!(
                                "{}: pooled connection failed ({lost}); retrying fresh",
                                self.addr
                            );
                            st.rbuf.clear();
                            match self.start_request(conn, st, false) {
                                Ok((be, _)) => {
                                    live.backend = be;
                                    live.backend_deadline =
                                        Instant::now() + limits.backend_connect_timeout;
                                    match enter(&mut live, Stage::Connect) {
                                        Some(waiting) => waiting,
                                        None => continue,
                                    }
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
                    match download::download(
                        conn,
                        &mut live.backend,
                        dl,
                        &mut live.pending,
                        st,
                        &self.app,
                    ) {
                        Ok(Flow::Finished) => {
                            let done = dl.done();
                            // Backend bytes past the response, read with its
                            // last ones, belong to no request: such a
                            // connection is never pooled (the pool's peek
                            // catches only what is still in the socket).
                            if dl.reusable() && st.rbuf.is_empty() {
                                st.pool.put(live.backend);
                            }
                            return Progress::Done(done);
                        }
                        Ok(Flow::BackendRead) => {
                            // The body goes on: its bytes should be acknowledged
                            // as they come (see `ack_promptly`).
                            live.backend.ack_promptly();
                            live.backend_deadline = Instant::now() + limits.backend_timeout;
                            Waiting::Backend(Interest::Read)
                        }
                        Ok(flow) => match flow.waiting() {
                            Some(waiting) => waiting,
                            None => continue,
                        },
                        Err(f) => return Progress::Failed(f),
                    }
                }
            };
            return self.park(live, st, waiting);
        }
        Progress::Failed(Failure::Abort {
            cause: Cause::NoProgress,
            status: None,
            body_bytes: 0,
        })
    }

    /// Keeps what the exchange needs to go on when `waiting` is ready: the
    /// backend bytes not used yet move from the worker's buffer into its own.
    fn park(&mut self, mut live: Live, st: &mut Scratch, waiting: Waiting) -> Progress {
        live.backlog.extend_from_slice(st.rbuf.data());
        st.rbuf.clear();
        self.live = Some(live);
        self.waiting = Some(waiting);
        Progress::Blocked(waiting)
    }

    /// The backend did not answer before its deadline while parked.
    fn timeout_failure(&self, live: &Live, limits: &Limits, st: &mut Scratch) -> Failure {
        match &live.stage {
            Stage::Download(dl) => dl.backend_failed(BackendFault::BodyTimeout, st, &self.app),
            Stage::Upload { .. } => self.backend_io(BackendFault::RequestBodyTimeout, false),
            Stage::Connect => Failure::Answer {
                error: ProxyError::ConnectTimeout {
                    app: self.app.clone(),
                    addr: self.addr,
                },
                body_read: !self.req.has_body(),
            },
            Stage::AwaitHead { .. } => Failure::Answer {
                error: ProxyError::BackendTimeout {
                    app: self.app.clone(),
                    timeout: limits.backend_timeout,
                },
                body_read: true,
            },
        }
    }

    /// A 502 for what the backend did.
    fn backend_io(&self, fault: BackendFault, body_read: bool) -> Failure {
        Failure::Answer {
            error: ProxyError::BackendIo {
                app: self.app.clone(),
                fault,
            },
            body_read,
        }
    }

    /// What a failed request body upload comes to.
    fn upload_failure(&self, e: UploadError) -> Failure {
        match e {
            UploadError::Client(e) => client_failed(e, ClientPart::Upload),
            UploadError::BadBody(e) => Failure::Answer {
                error: ProxyError::RequestBody(e),
                body_read: false,
            },
            UploadError::Backend(e) => self.backend_io(BackendFault::RequestBody(e), false),
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
        if self.req.upgrade.is_some() {
            http1::write_backend_upgrade_request(&mut st.out, &self.req, conn.peer.ip());
        } else {
            http1::write_backend_request(&mut st.out, &self.req, conn.peer.ip());
        }
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
        let rest = self
            .write_head(conn, &mut live.backend, st)
            .map_err(|e| self.backend_io(BackendFault::RequestHead(e), !has_body))?;
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
                .map_err(|e| client_failed(e, ClientPart::Continue))?;
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
            upload::precheck_chunked(&conn.buf).map_err(|e| Failure::Answer {
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
        match e {
            HeadError::Lost(lost) => self.backend_io(BackendFault::NoHead { lost, reused }, true),
            HeadError::Invalid(source) => Failure::Answer {
                error: ProxyError::BackendInvalid {
                    app: self.app.clone(),
                    source,
                },
                body_read: true,
            },
        }
    }
}

/// Ends an exchange whose app agreed to the upgrade its request asked for
/// (`resp`, a 101 at the start of `st.rbuf`): the backend connection, the
/// head for the client and the bytes the app sent behind its 101.
fn switched(live: Live, resp: &http1::Response, st: &mut Scratch) -> Switch {
    let mut head = Vec::with_capacity(resp.head_len + 64);
    if let Some(upgrade) = resp.upgrade {
        http1::write_client_switch_head(&mut head, resp, upgrade);
    }
    let from_backend = st.rbuf.data()[resp.head_len..].to_vec();
    st.rbuf.clear();
    Switch {
        backend: live.backend,
        head,
        status: resp.status,
        from_backend,
    }
}

/// Moves the exchange into `stage`, just entered: what it waits for first, if
/// anything (see [`Stage::first_wait`]).
fn enter(live: &mut Live, stage: Stage) -> Option<Waiting> {
    live.stage = stage;
    live.stage.first_wait()
}

#[cfg(test)]
mod tests;
