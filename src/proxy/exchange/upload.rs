//! The request body's stage: from the client to the backend as far as either
//! lets it go now, `Content-Length` bodies as they are, chunked ones decoded
//! and re-encoded by us.

use std::io;

use crate::http1;
use crate::proxy::backend::BackendConn;
use crate::proxy::client::{ClientConn, ConnError, Fill, READ_CHUNK_BYTES};

use super::limits::MAX_TRAILER_BYTES;
use super::outcome::Flow;
use super::scratch::Scratch;

/// What is left of the request body to read from the client.
#[derive(Debug)]
pub(super) enum Upload {
    /// A `Content-Length` body (or none: `left` 0, when only the rest of the
    /// head is to go).
    Length { left: u64 },
    /// A chunked body, decoded as it comes.
    Chunked(http1::ChunkedDecoder),
}

/// Why the request body could not go out.
#[derive(Debug)]
pub(super) enum UploadError {
    /// The client failed or closed.
    Client(ConnError),
    /// The backend's socket failed.
    Backend(io::Error),
    /// The chunked framing is malformed (a 400, or a cut request for the app).
    BadBody(http1::ChunkError),
}

/// Streams the request body from the client to the backend as far as the client
/// has sent it: `Content-Length` bodies as they are, chunked bodies decoded and
/// re-encoded.
pub(super) fn upload(
    conn: &mut ClientConn,
    be: &mut BackendConn,
    body: &mut Upload,
    moved: &mut u64,
    to_backend: &mut Vec<u8>,
    st: &mut Scratch,
) -> Result<Flow, UploadError> {
    let client_err = UploadError::Client;
    let backend_err = UploadError::Backend;
    // A `100 Continue` the client had no room for goes out first.
    if conn.tls.wants_write() && !conn.flush_nonblocking().map_err(client_err)? {
        return Ok(Flow::ClientWrite);
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
                return Ok(Flow::BackendWrite);
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
                        return Ok(Flow::BackendWrite);
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
                    let p = decoder
                        .feed(&conn.buf[pos..])
                        .map_err(UploadError::BadBody)?;
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
                        return Ok(Flow::BackendWrite);
                    }
                }
                if done {
                    return Ok(Flow::Finished);
                }
                // Cap what a malicious chunk line can make us buffer.
                if conn.buf.len() > http1::MAX_CHUNK_LINE_BYTES + READ_CHUNK_BYTES {
                    return Err(UploadError::BadBody(http1::ChunkError::LineTooLong));
                }
                conn.buf.len() + READ_CHUNK_BYTES
            }
        };
        match conn.fill_nonblocking(cap).map_err(client_err)? {
            Fill::Progress => {}
            Fill::WouldBlock => return Ok(Flow::ClientRead),
            Fill::Eof => return Err(client_err(ConnError::Closed)),
        }
    }
}

/// Runs a throwaway decoder over the buffered start of a chunked body.
pub(super) fn precheck_chunked(buf: &[u8]) -> Result<(), http1::ChunkError> {
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
