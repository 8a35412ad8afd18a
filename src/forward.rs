//! One request/response exchange with a backend, on deadline-bounded I/O: the
//! request head and body go to the app, the response head and body stream back.
//!
//! Bodies are streamed through fixed per-worker buffers, never held whole, so a
//! 1 GiB upload or download costs the same memory as a 1 KiB one. Chunked bodies
//! are decoded by our own strict decoder and re-encoded by us in both directions;
//! nothing of the peer's raw framing is passed through. A backend that dies
//! mid-body makes us drop the client connection without the last chunk or short of
//! its `Content-Length`, so the client cannot take a cut response for a whole one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::conn::{ClientConn, ConnError, READ_CHUNK_BYTES};
use crate::deadline::{self, Wait};
use crate::error::ProxyError;
use crate::http1::{self, BodyFraming, ClientFraming, Request, ResponseBody, Version};
use crate::upstream::{self, BackendConn, ConnectError};
use crate::worker::{Limits, WorkerState};

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

/// What went wrong while the request went out.
enum SendError {
    Backend(String),
    Client(String),
    BadBody(http1::ChunkError),
}

/// Forwards `req` (whose head is already consumed from `conn.buf`) to `addr`.
pub fn exchange(
    conn: &mut ClientConn,
    req: &Request,
    app: &Arc<str>,
    addr: SocketAddr,
    limits: &Limits,
    st: &mut WorkerState,
    closing: bool,
) -> Result<Done, Failure> {
    let has_body = !matches!(req.body, BodyFraming::None | BodyFraming::Length(0));
    if req.body == BodyFraming::Chunked {
        // Whatever of the body came with the head (an attack usually does) is
        // checked before the backend sees a byte, so a framing error there is a
        // 400 that never reaches the app. Errors further into a streamed body are
        // still caught by the decoder below; the app then sees a cut request.
        precheck_chunked(&conn.buf).map_err(|e| Failure::Answer {
            error: ProxyError::RequestBody(e),
            body_read: false,
        })?;
    }
    let mut body_sent = false;
    let mut continue_sent = false;
    let mut fresh_only = false;
    // At most two attempts: the second only on a fresh connection, after a pooled
    // one failed before any response byte, and only while the request can be
    // replayed whole (no body byte taken from the client yet).
    let (mut backend, resp) = loop {
        let mut be = match (!fresh_only).then(|| st.pool.take(addr)).flatten() {
            Some(be) => be,
            None => upstream::connect(addr, limits.backend_connect_timeout).map_err(|e| {
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
            })?,
        };
        let retryable = be.reused && !body_sent;
        st.out.clear();
        http1::write_backend_request(&mut st.out, req, conn.peer.ip());
        let deadline = Instant::now() + limits.backend_timeout;
        if let Err(e) = deadline::write_all(&mut be.sock, &st.out, deadline) {
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
        if has_body {
            if req.expect_continue && req.version == Version::Http11 && !continue_sent {
                let deadline = Instant::now() + limits.client_timeout;
                conn.write_all(CONTINUE, deadline)
                    .and_then(|_| conn.flush(deadline))
                    .map_err(|e| abort(format!("client: {e}"), None, 0))?;
                continue_sent = true;
            }
            body_sent = true;
            match send_body(conn, &mut be, req.body, limits, st) {
                Ok(()) => {}
                Err(SendError::Client(reason)) => return Err(abort(reason, None, 0)),
                Err(SendError::BadBody(e)) => {
                    return Err(Failure::Answer {
                        error: ProxyError::RequestBody(e),
                        body_read: false,
                    })
                }
                Err(SendError::Backend(detail)) => {
                    return Err(backend_io(app, detail, false));
                }
            }
        }
        match read_response_head(&mut be, req.is_head(), limits, st) {
            Ok(resp) => break (be, resp),
            Err(HeadError::Closed(detail)) if retryable => {
                log::debug!("{addr}: pooled connection failed ({detail}); retrying fresh");
                fresh_only = true;
                continue;
            }
            Err(HeadError::Closed(detail)) => {
                return Err(backend_io(app, detail, true));
            }
            Err(HeadError::TimedOut) => {
                return Err(Failure::Answer {
                    error: ProxyError::BackendTimeout {
                        app: app.clone(),
                        timeout: limits.backend_timeout,
                    },
                    body_read: true,
                })
            }
            Err(HeadError::Invalid(source)) => {
                return Err(Failure::Answer {
                    error: ProxyError::BackendInvalid {
                        app: app.clone(),
                        source,
                    },
                    body_read: true,
                })
            }
        }
    };

    // The response head is st.rbuf.data()[..resp.head_len]; body bytes may follow.
    let framing = http1::client_framing(&resp, req.version);
    let keep_alive = req.keep_alive && framing != ClientFraming::Close && !closing;
    st.out.clear();
    http1::write_client_response_head(&mut st.out, &resp, framing, req.version, keep_alive);
    let status = resp.status;
    st.rbuf.consume(resp.head_len);
    let body = resp.body;
    let backend_reusable = resp.keep_alive;
    let mut sent = 0u64;
    let clean = stream_body(
        conn,
        &mut backend,
        body,
        framing,
        limits,
        st,
        status,
        &mut sent,
        app,
    )?;
    if backend_reusable && clean {
        st.pool.put(backend);
    }
    Ok(Done {
        status,
        body_bytes: sent,
        keep_alive,
    })
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

/// Streams the request body from the client to the backend: `Content-Length`
/// bodies as they are, chunked bodies decoded and re-encoded.
fn send_body(
    conn: &mut ClientConn,
    be: &mut BackendConn,
    framing: BodyFraming,
    limits: &Limits,
    st: &mut WorkerState,
) -> Result<(), SendError> {
    let client_err =
        |e: ConnError| SendError::Client(format!("client: {e} while sending the request body"));
    let backend_err =
        |e: Wait| SendError::Backend(format!("failed while receiving the request body: {e}"));
    match framing {
        BodyFraming::None => Ok(()),
        BodyFraming::Length(total) => {
            let mut left = total;
            loop {
                let take = (left.min(conn.buf.len() as u64)) as usize;
                if take > 0 {
                    let deadline = Instant::now() + limits.backend_timeout;
                    deadline::write_all(&mut be.sock, &conn.buf[..take], deadline)
                        .map_err(backend_err)?;
                    conn.buf.drain(..take);
                    left -= take as u64;
                }
                if left == 0 {
                    return Ok(());
                }
                let deadline =
                    conn.client_deadline(limits.client_timeout, limits.min_rate, total - left);
                if !conn
                    .fill_until(READ_CHUNK_BYTES, deadline)
                    .map_err(client_err)?
                {
                    return Err(client_err(ConnError::Closed));
                }
            }
        }
        BodyFraming::Chunked => {
            let mut decoder = http1::ChunkedDecoder::new(MAX_TRAILER_BYTES);
            let mut received = 0u64;
            loop {
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
                received += pos as u64;
                if done {
                    st.out.extend_from_slice(http1::LAST_CHUNK);
                }
                if !st.out.is_empty() {
                    let deadline = Instant::now() + limits.backend_timeout;
                    deadline::write_all(&mut be.sock, &st.out, deadline).map_err(backend_err)?;
                }
                if done {
                    return Ok(());
                }
                // Cap what a malicious chunk line can make us buffer.
                if conn.buf.len() > http1::MAX_CHUNK_LINE_BYTES + READ_CHUNK_BYTES {
                    return Err(SendError::BadBody(http1::ChunkError::LineTooLong));
                }
                let deadline =
                    conn.client_deadline(limits.client_timeout, limits.min_rate, received);
                let cap = conn.buf.len() + READ_CHUNK_BYTES;
                if !conn.fill_until(cap, deadline).map_err(client_err)? {
                    return Err(client_err(ConnError::Closed));
                }
            }
        }
    }
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
        match st.rbuf.read_from(&mut be.sock, deadline) {
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

/// Streams the response body to the client. `st.out` holds the response head,
/// `st.rbuf` the body bytes read with it. Returns whether the backend
/// connection ended cleanly at the end of the body (reusable).
// `push!(true)` at the end of a body also sets `pushed`, never read after it.
#[allow(clippy::too_many_arguments, unused_assignments)]
fn stream_body(
    conn: &mut ClientConn,
    be: &mut BackendConn,
    body: ResponseBody,
    framing: ClientFraming,
    limits: &Limits,
    st: &mut WorkerState,
    status: u16,
    sent: &mut u64,
    app: &Arc<str>,
) -> Result<bool, Failure> {
    let client_err = |e: ConnError, sent: u64| {
        abort(
            format!("client: {e} while receiving the response"),
            Some(status),
            sent,
        )
    };
    // Until the first push, nothing has reached the client, and a backend failure
    // can still be answered with a 502; after it, the only honest answer is a cut.
    let mut pushed = false;
    // Push st.out to the client when it is large enough (or `force`).
    macro_rules! push {
        ($force:expr) => {
            if $force || st.out.len() >= OUT_FLUSH_BYTES {
                pushed = true;
                let deadline = conn.client_deadline(limits.client_timeout, limits.min_rate, *sent);
                conn.write_all(&st.out, deadline)
                    .and_then(|_| conn.flush(deadline))
                    .map_err(|e| client_err(e, *sent))?;
                st.out.clear();
            }
        };
    }
    // The backend failed: a 502 if nothing was sent yet, else a cut.
    macro_rules! backend_failed {
        ($detail:expr) => {{
            let detail: String = $detail;
            if pushed {
                abort(format!("backend {detail}"), Some(status), *sent)
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
        }};
    }

    match body {
        ResponseBody::None => {
            let clean = st.rbuf.is_empty();
            push!(true);
            Ok(clean)
        }
        ResponseBody::Length(total) => {
            let mut left = total;
            let mut clean = true;
            loop {
                let avail = st.rbuf.len();
                let take = (left.min(avail as u64)) as usize;
                st.out.extend_from_slice(&st.rbuf.data()[..take]);
                st.rbuf.consume(take);
                *sent += take as u64;
                left -= take as u64;
                if avail > take {
                    // More bytes than declared: the rest is not ours to forward.
                    clean = false;
                }
                if left == 0 {
                    push!(true);
                    return Ok(clean);
                }
                push!(false);
                read_more(be, st, limits).map_err(|w| {
                    backend_failed!(format!("{w} in the middle of the response body"))
                })?;
            }
        }
        ResponseBody::Chunked => {
            let mut decoder = http1::ChunkedDecoder::new(MAX_TRAILER_BYTES);
            loop {
                while !st.rbuf.is_empty() {
                    let p = match decoder.feed(st.rbuf.data()) {
                        Ok(p) => p,
                        Err(e) => {
                            return Err(backend_failed!(format!("sent a bad chunked body: {e}")))
                        }
                    };
                    // Split borrow: rbuf is read, out is written.
                    let (rbuf, out) = (&st.rbuf, &mut st.out);
                    emit(out, &rbuf.data()[p.data.clone()], framing);
                    *sent += p.data.len() as u64;
                    st.rbuf.consume(p.consumed);
                    if p.done {
                        if framing == ClientFraming::Chunked {
                            st.out.extend_from_slice(http1::LAST_CHUNK);
                        }
                        let clean = st.rbuf.is_empty();
                        push!(true);
                        return Ok(clean);
                    }
                    if p.consumed == 0 {
                        break;
                    }
                }
                push!(false);
                if st.rbuf.len() > http1::MAX_CHUNK_LINE_BYTES + MAX_TRAILER_BYTES
                    || st.rbuf.is_full()
                {
                    return Err(backend_failed!("sent an overlong chunk line".to_string()));
                }
                // The undecoded tail (a partial chunk line) stays; read after it.
                read_more(be, st, limits).map_err(|w| {
                    backend_failed!(format!("{w} in the middle of the response body"))
                })?;
            }
        }
        ResponseBody::UntilClose => loop {
            let (rbuf, out) = (&st.rbuf, &mut st.out);
            emit(out, rbuf.data(), framing);
            *sent += st.rbuf.len() as u64;
            st.rbuf.clear();
            push!(false);
            match read_more(be, st, limits) {
                Ok(()) => {}
                Err(w) if w == "closed" => {
                    if framing == ClientFraming::Chunked {
                        st.out.extend_from_slice(http1::LAST_CHUNK);
                    }
                    push!(true);
                    return Ok(false);
                }
                Err(w) => {
                    return Err(backend_failed!(format!(
                        "{w} in the middle of the response body"
                    )))
                }
            }
        },
    }
}

/// Reads more bytes from the backend into `st.rbuf` (at least one), after the
/// unconsumed ones. Errors are "closed", "timed out", or the socket error text.
fn read_more(be: &mut BackendConn, st: &mut WorkerState, limits: &Limits) -> Result<(), String> {
    let deadline = Instant::now() + limits.backend_timeout;
    match st.rbuf.read_from(&mut be.sock, deadline) {
        Ok(0) => Err("closed".to_string()),
        Ok(_) => Ok(()),
        Err(Wait::TimedOut) => Err("timed out".to_string()),
        Err(Wait::Io(e)) => Err(e.to_string()),
    }
}
