//! The deadlines and caps an exchange (and the session around it) applies.

use std::time::Duration;

use crate::config::ProxyConfig;
use crate::proxy::client::MinRate;

/// Largest response head accepted from a backend.
pub(crate) const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// Largest chunked trailer section accepted (and discarded), either direction.
pub(crate) const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Every deadline and cap a worker applies, from `[proxy]`.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Whole request head, from its first byte.
    pub(crate) head_timeout: Duration,
    /// Keep-alive wait for the next request.
    pub(crate) idle_timeout: Duration,
    /// Connecting to a backend.
    pub(crate) backend_connect_timeout: Duration,
    /// Waiting for the backend's response head, and between its reads and writes.
    pub(crate) backend_timeout: Duration,
    /// Waiting for the client between reads of a request body and between writes of a response.
    pub(crate) client_timeout: Duration,
    /// Largest request head.
    pub(crate) max_head_bytes: usize,
    /// The slowest a client may be while we wait on it.
    pub(crate) min_rate: MinRate,
    /// A tunnel with no bytes either way for this long is closed (`None`: never).
    pub(crate) tunnel_idle_timeout: Option<Duration>,
}

impl Limits {
    /// The limits of a `[proxy]` section.
    pub(crate) fn from_config(p: &ProxyConfig) -> Limits {
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
            tunnel_idle_timeout: p.tunnel_idle_timeout,
        }
    }
}
