//! The proxy's errors and the one function that turns them into HTTP answers.
//!
//! Every status nexushub makes itself comes from [`ProxyError::answer`]; nothing
//! else in the crate picks a status code for an error.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::http1::{ChunkError, RequestError, ResponseError};

/// Why a request could not be forwarded, when nothing was sent to the client yet.
#[derive(Debug)]
pub enum ProxyError {
    /// The request head is malformed or too large (400 or 431).
    Request(RequestError),
    /// The request body's chunked framing is malformed (400).
    RequestBody(ChunkError),
    /// No app serves this host (404).
    NoRoute {
        /// The normalised host asked for.
        host: String,
    },
    /// The TLS server name and the request's host differ (421).
    Misdirected {
        /// The SNI name.
        sni: String,
        /// The request's host.
        host: String,
    },
    /// The app has no healthy instance (503).
    Unavailable {
        /// The app's name.
        app: Arc<str>,
        /// Its state, e.g. "starting".
        state: String,
        /// Seconds for `Retry-After`.
        retry_after_secs: u64,
    },
    /// Connecting to the backend failed (502).
    Connect {
        /// The app's name.
        app: Arc<str>,
        /// The backend address.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// Connecting to the backend took longer than `backend_connect_timeout` (504).
    ConnectTimeout {
        /// The app's name.
        app: Arc<str>,
        /// The backend address.
        addr: SocketAddr,
    },
    /// The backend reset or closed the connection before a whole response head (502).
    BackendIo {
        /// The app's name.
        app: Arc<str>,
        /// What happened.
        detail: String,
    },
    /// The backend's response head is invalid (502).
    BackendInvalid {
        /// The app's name.
        app: Arc<str>,
        /// What was wrong.
        source: ResponseError,
    },
    /// The backend did not answer within `backend_timeout` (504).
    BackendTimeout {
        /// The app's name.
        app: Arc<str>,
        /// The timeout that ran out.
        timeout: Duration,
    },
}

/// An HTTP answer made by nexushub itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The plain-text body (one line, without the newline).
    pub text: String,
    /// `Retry-After` seconds, for 503.
    pub retry_after_secs: Option<u64>,
    /// True when the connection must be closed after the answer.
    pub close: bool,
}

impl ProxyError {
    /// The one place an error becomes a status code and a body.
    pub fn answer(&self) -> Answer {
        let (status, text, close) = match self {
            ProxyError::Request(e) => (e.status(), format!("bad request: {}", e.reason()), true),
            ProxyError::RequestBody(e) => (400, format!("bad request: {e}"), true),
            ProxyError::NoRoute { host } => {
                (404, format!("no app is configured for host {host}"), false)
            }
            ProxyError::Misdirected { sni, host } => (
                421,
                format!(
                    "misdirected request: the TLS server name {sni} does not match host {host}"
                ),
                false,
            ),
            ProxyError::Unavailable { app, state, .. } => {
                (503, format!("app {app} is not available: {state}"), false)
            }
            ProxyError::Connect { app, addr, source } => (
                502,
                format!("bad gateway: cannot connect to app {app} at {addr}: {source}"),
                false,
            ),
            ProxyError::ConnectTimeout { app, addr } => (
                504,
                format!("gateway timeout: connecting to app {app} at {addr} timed out"),
                false,
            ),
            ProxyError::BackendIo { app, detail } => {
                (502, format!("bad gateway: app {app} {detail}"), false)
            }
            ProxyError::BackendInvalid { app, source } => (
                502,
                format!(
                    "bad gateway: app {app} sent an invalid response: {}",
                    source.reason()
                ),
                false,
            ),
            ProxyError::BackendTimeout { app, timeout } => (
                504,
                format!(
                    "gateway timeout: app {app} did not answer within {} s",
                    timeout.as_secs_f64()
                ),
                false,
            ),
        };
        let retry_after_secs = match self {
            ProxyError::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        Answer {
            status,
            text,
            retry_after_secs,
            close,
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.answer();
        write!(f, "{} {}", a.status, a.text)
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}
