//! The response's stage: its head (framed for the client when the backend's
//! head is in) and its body, read from the backend and re-framed for the client
//! as far as the client takes it now.
//!
//! Once a byte of the response reached the client, a backend failure can no
//! longer be a 502: the client's connection is dropped without the last chunk
//! or short of its `Content-Length`, so it cannot take a cut response for a
//! whole one.

use std::sync::Arc;

use crate::error::{BackendFault, ProxyError};
use crate::http1::{self, ClientFraming, Request, ResponseBody};
use crate::proxy::backend::BackendConn;
use crate::proxy::client::{ClientConn, ConnError};

use super::limits::MAX_TRAILER_BYTES;
use super::outcome::{Cause, ClientPart, Done, Failure, Flow};
use super::scratch::Scratch;

/// Plaintext gathered before one push into rustls and one flush.
const OUT_FLUSH_BYTES: usize = 32 * 1024;

/// A response on its way to the client.
#[derive(Debug)]
pub(super) struct Download {
    body: BodyLeft,
    framing: ClientFraming,
    status: u16,
    /// The client's connection may carry another request after this one.
    keep_alive: bool,
    /// Whether the backend connection goes back to the pool at the end.
    reuse: Reuse,
    /// How far the response has reached the client.
    delivery: Delivery,
    /// Body bytes framed for the client so far.
    sent: u64,
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

/// The backend connection's fate at the response's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reuse {
    /// Back to the pool (if nothing of the backend's is left unread then).
    Pool,
    /// Closed: the app said so, or sent more than the response (bytes that
    /// belong to no request).
    Close,
}

/// How far the response has reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Nothing handed to the client yet: a backend failure is still a 502.
    NotStarted,
    /// Bytes went to the client: a backend failure is a cut from now on.
    Started,
}

impl Download {
    /// Prepares the response to `req` for the client: its head into `st.out`,
    /// the body bytes read with it left in `st.rbuf`.
    pub(super) fn start(
        req: &Request,
        resp: &http1::Response,
        st: &mut Scratch,
        closing: bool,
    ) -> Download {
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
        // A body-less response followed by bytes: not reusable.
        let clean = !matches!(body, BodyLeft::Finished) || st.rbuf.is_empty();
        Download {
            body,
            framing,
            status: resp.status,
            keep_alive,
            reuse: if resp.keep_alive && clean {
                Reuse::Pool
            } else {
                Reuse::Close
            },
            delivery: Delivery::NotStarted,
            sent: 0,
        }
    }

    /// Body bytes framed for the client so far.
    pub(super) fn sent(&self) -> u64 {
        self.sent
    }

    /// The status and body bytes sent, once the response started for the client.
    pub(super) fn delivered(&self) -> Option<(u16, u64)> {
        (self.delivery == Delivery::Started).then_some((self.status, self.sent))
    }

    /// The exchange's end, the response out whole.
    pub(super) fn done(&self) -> Done {
        Done {
            status: self.status,
            body_bytes: self.sent,
            keep_alive: self.keep_alive,
        }
    }

    /// True when the backend connection may carry another request: the app
    /// keeps it open and sent nothing past the response. (The caller checks
    /// that nothing of the backend's is left in its read buffer either.)
    pub(super) fn reusable(&self) -> bool {
        self.reuse == Reuse::Pool
    }

    /// The backend failed: a 502 if nothing was sent yet, else a cut.
    pub(super) fn backend_failed(
        &self,
        fault: BackendFault,
        st: &mut Scratch,
        app: &Arc<str>,
    ) -> Failure {
        match self.delivery {
            Delivery::Started => Failure::Abort {
                cause: Cause::Backend(fault),
                status: Some(self.status),
                body_bytes: self.sent,
            },
            Delivery::NotStarted => {
                st.out.clear();
                Failure::Answer {
                    error: ProxyError::BackendIo {
                        app: app.clone(),
                        fault,
                    },
                    body_read: true,
                }
            }
        }
    }

    fn client_failed(&self, error: ConnError) -> Failure {
        Failure::Abort {
            cause: Cause::Client {
                error,
                during: ClientPart::Download,
            },
            status: Some(self.status),
            body_bytes: self.sent,
        }
    }

    /// Hands `data` to the client: the response has started from here on.
    fn push(
        &mut self,
        conn: &mut ClientConn,
        data: &[u8],
        pending: &mut Vec<u8>,
    ) -> Result<bool, Failure> {
        self.delivery = Delivery::Started;
        push(conn, data, pending).map_err(|e| self.client_failed(e))
    }
}

/// Streams the response to the client as far as the client takes it: first what
/// is pending from before, then `st.out` (the head, on the first call) and the
/// body, re-framed for the client, reading the backend as needed.
pub(super) fn download(
    conn: &mut ClientConn,
    be: &mut BackendConn,
    dl: &mut Download,
    pending: &mut Vec<u8>,
    st: &mut Scratch,
    app: &Arc<str>,
) -> Result<Flow, Failure> {
    // What the client did not take last time goes first, and so does any TLS
    // record rustls still holds for it. When they do not all go out, what is
    // framed in `st.out` (on the first call, the response head) waits behind
    // them in `pending`: `st.out` does not outlive this call.
    if !pending.is_empty() || conn.tls.wants_write() {
        let (taken, flushed) = conn
            .send_nonblocking(pending)
            .map_err(|e| dl.client_failed(e))?;
        pending.drain(..taken);
        if !flushed || !pending.is_empty() {
            if !st.out.is_empty() {
                dl.delivery = Delivery::Started;
                pending.append(&mut st.out);
            }
            return Ok(Flow::ClientWrite);
        }
    }
    loop {
        // Set when a run sent straight from the read buffer filled the socket.
        let mut blocked = false;
        // Frame what the backend sent into st.out.
        match &mut dl.body {
            BodyLeft::Finished => {}
            BodyLeft::Length(left) => {
                let left = *left;
                let avail = st.rbuf.len();
                let take = left.min(avail as u64) as usize;
                if st.out.is_empty() && take >= OUT_FLUSH_BYTES {
                    // A large run of body bytes with nothing framed before it
                    // goes to rustls straight from the read buffer: one copy
                    // fewer per byte than through st.out.
                    blocked = !dl.push(conn, &st.rbuf.data()[..take], pending)?;
                } else {
                    st.out.extend_from_slice(&st.rbuf.data()[..take]);
                }
                st.rbuf.consume(take);
                dl.sent += take as u64;
                if avail > take {
                    // More bytes than declared: the rest is not ours to forward.
                    dl.reuse = Reuse::Close;
                }
                dl.body = match left - take as u64 {
                    0 => BodyLeft::Finished,
                    rest => BodyLeft::Length(rest),
                };
            }
            BodyLeft::Chunked(decoder) => {
                let mut finished = false;
                while !st.rbuf.is_empty() {
                    let p = match decoder.feed(st.rbuf.data()) {
                        Ok(p) => p,
                        Err(e) => {
                            return Err(dl.backend_failed(BackendFault::BadChunk(e), st, app))
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
                        if !st.rbuf.is_empty() {
                            dl.reuse = Reuse::Close;
                        }
                        finished = true;
                        break;
                    }
                    if p.consumed == 0 {
                        break;
                    }
                }
                if finished {
                    dl.body = BodyLeft::Finished;
                } else if st.rbuf.len() > http1::MAX_CHUNK_LINE_BYTES + MAX_TRAILER_BYTES
                    || st.rbuf.is_full()
                {
                    return Err(dl.backend_failed(BackendFault::OverlongChunkLine, st, app));
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
            return Ok(Flow::ClientWrite);
        }
        let finished = matches!(dl.body, BodyLeft::Finished);
        // Push st.out to the client when it is large enough, or at the end.
        if finished || st.out.len() >= OUT_FLUSH_BYTES {
            let flushed = dl.push(conn, &st.out, pending)?;
            st.out.clear();
            if !flushed {
                return Ok(Flow::ClientWrite);
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
                    let flushed = dl.push(conn, &st.out, pending)?;
                    st.out.clear();
                    if !flushed {
                        return Ok(Flow::ClientWrite);
                    }
                }
                return Ok(Flow::BackendRead);
            }
            Ok(More::Closed) if matches!(dl.body, BodyLeft::UntilClose) => {
                if dl.framing == ClientFraming::Chunked {
                    st.out.extend_from_slice(http1::LAST_CHUNK);
                }
                dl.reuse = Reuse::Close;
                dl.body = BodyLeft::Finished;
            }
            Ok(More::Closed) => return Err(dl.backend_failed(BackendFault::BodyClosed, st, app)),
            Err(e) => return Err(dl.backend_failed(BackendFault::BodyIo(e), st, app)),
        }
    }
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

/// Appends body bytes to `out` in the client's framing.
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
