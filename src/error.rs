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
    /// The backend failed before a response could start: it closed or reset
    /// the connection, or let a body time out (502).
    BackendIo {
        /// The app's name.
        app: Arc<str>,
        /// What happened.
        fault: BackendFault,
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

/// What a backend did wrong during an exchange, as the log line tells it
/// (after "502 app NAME " when the client gets a 502, after "backend " when
/// its response is cut).
#[derive(Debug)]
pub enum BackendFault {
    /// No whole response head came. `reused`: on a pooled connection, and not
    /// retried (the app may have acted on the request).
    NoHead {
        /// How the head was lost.
        lost: HeadLost,
        /// The connection came from the pool.
        reused: bool,
    },
    /// Writing the request head failed.
    RequestHead(io::Error),
    /// Writing the request body failed.
    RequestBody(io::Error),
    /// The app took no more of the request body within `backend_timeout`.
    RequestBodyTimeout,
    /// The chunked response body is malformed.
    BadChunk(ChunkError),
    /// A chunk line of the response body is longer than we read.
    OverlongChunkLine,
    /// The connection closed before the response body's end.
    BodyClosed,
    /// The connection failed before the response body's end.
    BodyIo(io::Error),
    /// No more of the response body came within `backend_timeout`.
    BodyTimeout,
}

/// How a backend connection ended before a whole response head.
#[derive(Debug)]
pub enum HeadLost {
    /// Closed before a single byte.
    Unanswered,
    /// Closed after part of the head.
    PartHead,
    /// A socket error (a reset) before a single byte.
    Io(io::Error),
}

impl fmt::Display for HeadLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadLost::Unanswered => f.write_str("closed the connection without answering"),
            HeadLost::PartHead => {
                f.write_str("closed the connection in the middle of the response head")
            }
            HeadLost::Io(e) => write!(f, "failed before answering: {e}"),
        }
    }
}

impl fmt::Display for BackendFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendFault::NoHead { lost, reused } => {
                write!(f, "{lost}")?;
                if *reused {
                    f.write_str(" (reused connection, not retried: the app may have acted)")?;
                }
                Ok(())
            }
            BackendFault::RequestHead(e) => write!(f, "failed while receiving the request: {e}"),
            BackendFault::RequestBody(e) => {
                write!(f, "failed while receiving the request body: {e}")
            }
            BackendFault::RequestBodyTimeout => {
                f.write_str("failed while receiving the request body: timed out")
            }
            BackendFault::BadChunk(e) => write!(f, "sent a bad chunked body: {e}"),
            BackendFault::OverlongChunkLine => f.write_str("sent an overlong chunk line"),
            BackendFault::BodyClosed => f.write_str("closed in the middle of the response body"),
            BackendFault::BodyIo(e) => write!(f, "{e} in the middle of the response body"),
            BackendFault::BodyTimeout => {
                f.write_str("timed out in the middle of the response body")
            }
        }
    }
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
    ///
    /// The body is for whoever sent the request, so it names the app and what went
    /// wrong in its terms (an app's state, "not reachable") but never a backend
    /// address, port, health path or OS error: those are for the operator, in the
    /// log line ([`fmt::Display`]).
    pub fn answer(&self) -> Answer {
        let (status, text, close) = match self {
            ProxyError::Request(e) => {
                let what = match e.status() {
                    405 => "method not allowed",
                    417 => "expectation failed",
                    _ => "bad request",
                };
                (e.status(), format!("{what}: {}", e.reason()), true)
            }
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
            ProxyError::Unavailable { app, state, .. } => (
                503,
                format!("app {app} is not available: {}", public_state(state)),
                false,
            ),
            ProxyError::Connect { app, .. } => (
                502,
                format!("bad gateway: cannot connect to app {app}"),
                false,
            ),
            ProxyError::ConnectTimeout { app, .. } => (
                504,
                format!("gateway timeout: connecting to app {app} timed out"),
                false,
            ),
            ProxyError::BackendIo { app, .. } => (
                502,
                format!("bad gateway: app {app} closed the connection without a response"),
                false,
            ),
            ProxyError::BackendInvalid { app, .. } => (
                502,
                format!("bad gateway: app {app} sent an invalid response"),
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

/// The part of an app's state a client may read: the state's name, and a
/// countdown ("restarting in 4 s"), without the details the state carries for the
/// log: why a health check failed (its path, an OS error), the port an instance
/// never answered on, why it stopped.
fn public_state(state: &str) -> &str {
    let end = [" (", " on port "]
        .iter()
        .filter_map(|cut| state.find(cut))
        .min()
        .unwrap_or(state.len());
    &state[..end]
}

/// The log line's text: the client's answer plus what it leaves out.
impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Unavailable { app, state, .. } => {
                write!(f, "503 app {app} is not available: {state}")
            }
            ProxyError::Connect { app, addr, source } => {
                write!(f, "502 cannot connect to app {app} at {addr}: {source}")
            }
            ProxyError::ConnectTimeout { app, addr } => {
                write!(f, "504 connecting to app {app} at {addr} timed out")
            }
            ProxyError::BackendIo { app, fault } => write!(f, "502 app {app} {fault}"),
            ProxyError::BackendInvalid { app, source } => write!(
                f,
                "502 app {app} sent an invalid response: {}",
                source.reason()
            ),
            _ => {
                let a = self.answer();
                write!(f, "{} {}", a.status, a.text)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::InstanceState;
    use std::time::Instant;

    fn app() -> Arc<str> {
        Arc::from("shop")
    }

    /// What must never reach a client, and what must: (error, leaked, kept).
    #[test]
    fn gateway_bodies_keep_internals_for_the_log() {
        let addr: SocketAddr = ([127, 0, 0, 1], 8123).into();
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let os_text = refused.to_string();
        let cases: Vec<(ProxyError, Vec<&str>, &str)> = vec![
            (
                ProxyError::Connect {
                    app: app(),
                    addr,
                    source: refused,
                },
                vec!["127.0.0.1", "8123", &os_text],
                "cannot connect to app shop",
            ),
            (
                ProxyError::ConnectTimeout { app: app(), addr },
                vec!["127.0.0.1", "8123"],
                "connecting to app shop timed out",
            ),
            (
                ProxyError::BackendIo {
                    app: app(),
                    fault: BackendFault::NoHead {
                        lost: HeadLost::Io(io::Error::from_raw_os_error(libc::ECONNRESET)),
                        reused: false,
                    },
                },
                vec!["os error", "reset by peer"],
                "app shop closed the connection",
            ),
            (
                ProxyError::BackendInvalid {
                    app: app(),
                    source: ResponseError::InvalidContentLength,
                },
                vec!["Content-Length"],
                "app shop sent an invalid response",
            ),
        ];
        for (error, leaked, kept) in cases {
            let a = error.answer();
            let log = error.to_string();
            for secret in leaked {
                assert!(!a.text.contains(secret), "{secret:?} in {:?}", a.text);
                assert!(log.contains(secret), "{secret:?} not in the log: {log:?}");
            }
            assert!(a.text.contains(kept), "{:?}", a.text);
        }
    }

    /// Every state an app can be in, as a 503 body: the state's name stays, the
    /// details (health path, OS error, port) go to the log only.
    #[test]
    fn unavailable_body_keeps_the_state_only() {
        let now = Instant::now();
        let cases = [
            (InstanceState::Starting, "starting"),
            (
                InstanceState::BackingOff {
                    until: now + Duration::from_millis(3500),
                },
                "restarting in 4 s",
            ),
            (
                InstanceState::Unhealthy(
                    "health check /internal/healthz failed: Connection refused (os error 111)"
                        .into(),
                ),
                "unhealthy",
            ),
            (
                InstanceState::NeverReady { port: 8123 },
                "never became ready",
            ),
            (InstanceState::Stopping, "stopping"),
            (
                InstanceState::Stopped("exited (exit status 1)".into()),
                "stopped",
            ),
        ];
        for (state, public) in cases {
            let state = state.describe(now);
            let error = ProxyError::Unavailable {
                app: app(),
                state: state.clone(),
                retry_after_secs: 4,
            };
            let a = error.answer();
            assert_eq!(a.text, format!("app shop is not available: {public}"));
            assert_eq!((a.status, a.retry_after_secs), (503, Some(4)));
            assert!(error.to_string().ends_with(&state), "{error}");
        }
    }
}
