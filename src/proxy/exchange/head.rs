//! The response head's stage: what the backend has sent of it, read without
//! waiting, interim (1xx) responses skipped, and a `101 Switching Protocols`
//! told apart: the start of a tunnel for an upgrade request that asked for
//! it, a protocol error otherwise.

use crate::error::HeadLost;
use crate::http1;
use crate::proxy::backend::BackendConn;

use super::limits::MAX_RESPONSE_HEAD_BYTES;
use super::scratch::Scratch;

/// Why no response head came.
#[derive(Debug)]
pub(super) enum HeadError {
    /// Closed or reset before a whole head (nothing usable arrived): retried
    /// when nothing arrived and the request allows it.
    Lost(HeadLost),
    /// What came is not a response head we forward.
    Invalid(http1::ResponseError),
}

/// Reads what the backend has sent of the final response head into `st.rbuf`
/// (after what is there from before), without blocking, skipping 1xx interim
/// responses. `Ok(None)`: not all of it yet. On success the head is
/// `st.rbuf.data()[..head_len]`; a 101 returned is one that agrees to the
/// upgrade `req` asked for (the tunnel's bytes follow it). `retryable` is
/// cleared by any byte read: the app has seen the request then.
pub(super) fn poll_response_head(
    be: &mut BackendConn,
    req: &http1::Request,
    retryable: &mut bool,
    st: &mut Scratch,
) -> Result<Option<http1::Response>, HeadError> {
    // Bounded: each round consumes an interim head or reads bytes, or returns.
    for _ in 0..1024 {
        match http1::parse_response(st.rbuf.data(), MAX_RESPONSE_HEAD_BYTES, req.is_head()) {
            Ok(Some(resp)) if resp.status == 101 => {
                // A request forwarded without `Upgrade` asked for no switch.
                return match http1::switch_protocols(req, &resp) {
                    Ok(Some(_)) => Ok(Some(resp)),
                    Ok(None) => Err(HeadError::Invalid(http1::ResponseError::UnexpectedUpgrade)),
                    Err(e) => Err(HeadError::Invalid(e)),
                };
            }
            Ok(Some(resp)) if (100..200).contains(&resp.status) => {
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
                return Err(HeadError::Lost(if had == 0 {
                    HeadLost::Unanswered
                } else {
                    HeadLost::PartHead
                }));
            }
            Ok(_) => *retryable = false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HeadError::Lost(HeadLost::Io(e))),
        }
    }
    Err(HeadError::Invalid(http1::ResponseError::HeadTooLarge))
}
