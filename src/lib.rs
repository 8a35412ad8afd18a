//! nexushub: an HTTPS reverse proxy with a built-in process manager, for one small
//! host. Synchronous (no async runtime), few dependencies, fuzzed where it parses
//! untrusted bytes.
//!
//! ```text
//!                       ┌── acceptor.rs ──────┐   ┌── park.rs: ParkSet<Session> ─────┐
//!  client ──TCP/TLS──>  │ accept, caps, TLS   │──>│ handshaking, partial head, idle, │
//!                       │ state; deadline     │   │ exchange waiting on a peer,      │
//!                       │ sweep               │   │ tunnel waiting on both           │
//!                       │                     │   └────┬─────────────────────▲───────┘
//!                       └─────────────────────┘ ready: │ one idle worker     │ would block:
//!                                                woken ▼ per event           │ park again
//!              worker.rs (N threads): session.rs ── head complete ──> exchange/
//!                         │ read lock                          HTTP/1.1 ──> app on 127.0.0.1:PORT
//!                  route map  RwLock<host -> route>            (backend.rs: idle connections reused)
//!                         ▲ write lock on change
//!         resolver thread <── snapshots ── process manager
//! ```
//!
//! Where each part lives:
//! - [`config`]: the config file parser; [`tls`] and [`x509`]: certificates and keys;
//!   [`time`]: UTC calendar time and RFC 3339 text.
//! - `proxy/` (crate-private; `server` starts it): the proxy runtime, in layers:
//!   `park.rs` the shared epoll set, generic over what it parks; `census.rs`
//!   the connection caps; `readbuf.rs` the backend read buffer; `client.rs` a
//!   client connection and its TLS I/O; `backend.rs` backend connections and
//!   their shared pool; `exchange/` one exchange, a file per stage;
//!   `tunnel.rs` a WebSocket tunnel after the app's 101; `session.rs` a client connection through its life (its phases, serving
//!   it); `worker.rs` the pool; `acceptor.rs` the accepting thread and the
//!   deadline sweep.
//! - [`http1`]: the sans-IO HTTP/1.1 parsing, framing and header rewriting;
//!   [`host`]: host-name normalisation.
//! - `routes.rs`: the route map and the resolver thread; [`procman`]: the process
//!   manager (children, health checks, restarts, reloads, the watchdog).
//! - `error.rs` (crate-private): errors and the one function that turns them
//!   into statuses; `access_log.rs`: one line per request; [`logger`]: the
//!   error and event log; `log_sink.rs`: the buffer and writer thread behind
//!   both, so that nothing that logs waits on a disk or a pipe; `escape.rs`:
//!   what keeps control characters out of every log line; [`server`]:
//!   `nexushub run`; [`sys`]: the only module with `unsafe`.
//! - `whoami.rs`, the demo backend, belongs to the binary: `main.rs` declares it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

// The library's API: what the binary (`main.rs`, `whoami.rs`) and the fuzz
// targets use.
pub mod config;
pub mod host;
pub mod http1;
pub mod logger;
pub mod procman;
pub mod server;
pub mod sys;
pub mod time;
pub mod tls;
pub mod x509;

// Crate-private: the proxy runtime (`server::run` is its one door) and the
// parts only the library itself uses.
mod access_log;
mod error;
mod escape;
mod log_sink;
mod proxy;
mod routes;
