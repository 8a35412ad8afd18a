//! What running an exchange ends with: done, failed (and why, typed), or
//! waiting on one peer; and what one step of a stage ends with.

use std::fmt;

use crate::error::{BackendFault, ProxyError};
use crate::proxy::backend::BackendConn;
use crate::proxy::client::ConnError;
use crate::proxy::park::Waiting;
use crate::sys::Interest;

/// A finished exchange.
#[derive(Debug)]
pub(crate) struct Done {
    /// The status sent.
    pub(crate) status: u16,
    /// Response body bytes sent.
    pub(crate) body_bytes: u64,
    /// True when the client connection can carry another request.
    pub(crate) keep_alive: bool,
}

/// An exchange that did not finish.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nothing was sent to the client yet: answer with this error.
    Answer {
        /// What went wrong.
        error: ProxyError,
        /// True when the request body was read whole (the connection may go on).
        body_read: bool,
    },
    /// The client failed, or a response was under way: drop the connection.
    Abort {
        /// Why, for the log.
        cause: Cause,
        /// The status already sent, if any.
        status: Option<u16>,
        /// Body bytes already sent.
        body_bytes: u64,
    },
}

/// Why an exchange is dropped rather than answered.
#[derive(Debug)]
pub(crate) enum Cause {
    /// The client's connection failed or closed.
    Client {
        /// How.
        error: ConnError,
        /// What it was doing.
        during: ClientPart,
    },
    /// The backend failed after part of the response reached the client: a cut.
    Backend(BackendFault),
    /// The stages went round without getting anywhere (a bug, not a peer).
    NoProgress,
}

/// What the client was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientPart {
    /// Taking the `100 Continue` we sent it.
    Continue,
    /// Sending the request body.
    Upload,
    /// Receiving the response.
    Download,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Client { error, during } => match during {
                ClientPart::Continue => write!(f, "client: {error}"),
                ClientPart::Upload => {
                    write!(f, "client: {error} while sending the request body")
                }
                ClientPart::Download => write!(f, "client: {error} while receiving the response"),
            },
            Cause::Backend(fault) => write!(f, "backend {fault}"),
            Cause::NoProgress => f.write_str("exchange did not progress"),
        }
    }
}

/// A drop of the exchange with nothing of the response sent.
pub(super) fn client_failed(error: ConnError, during: ClientPart) -> Failure {
    Failure::Abort {
        cause: Cause::Client { error, during },
        status: None,
        body_bytes: 0,
    }
}

/// Where [`Exchange::run`](super::Exchange::run) stopped.
#[derive(Debug)]
pub(crate) enum Progress {
    /// The response went out whole.
    Done(Done),
    /// It cannot finish.
    Failed(Failure),
    /// A peer is not ready: park the connection, with the exchange, until it is.
    Blocked(Waiting),
    /// The app agreed to the upgrade: the exchange is over and a tunnel
    /// takes its place.
    Switched(Switch),
}

/// What an exchange that ended in a `101 Switching Protocols` hands to the
/// tunnel that follows it.
#[derive(Debug)]
pub(crate) struct Switch {
    /// The backend connection, never pooled after a switch.
    pub(crate) backend: BackendConn,
    /// The 101 head for the client (not sent yet).
    pub(crate) head: Vec<u8>,
    /// The status line's code, for the log.
    pub(crate) status: u16,
    /// Bytes the app sent right behind its 101: the tunnel's first for the client.
    pub(crate) from_backend: Vec<u8>,
}

/// How far one step of a stage got: finished, or stopped on exactly one wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// The stage is over.
    Finished,
    /// The client has not sent the next bytes.
    ClientRead,
    /// The client's socket has no room for what we send it.
    ClientWrite,
    /// The backend has not sent the next bytes.
    BackendRead,
    /// The backend's socket has no room (it is not reading the request).
    BackendWrite,
}

impl Flow {
    /// The wait this step stopped on; `None` when it finished.
    pub(super) fn waiting(self) -> Option<Waiting> {
        match self {
            Flow::Finished => None,
            Flow::ClientRead => Some(Waiting::Client(Interest::Read)),
            Flow::ClientWrite => Some(Waiting::Client(Interest::Write)),
            Flow::BackendRead => Some(Waiting::Backend(Interest::Read)),
            Flow::BackendWrite => Some(Waiting::Backend(Interest::Write)),
        }
    }
}
