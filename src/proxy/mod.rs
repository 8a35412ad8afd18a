//! The proxy runtime: accepting client connections, parking them while they
//! wait, and serving their exchanges with the backends on a pool of workers.
//! The picture is the crate's (`lib.rs`); this is how the files stack. A file
//! imports only from rows above its own (and from modules outside the runtime:
//! `sys`, `http1`, `error`, `routes`, `access_log`, `config`), which
//! `tests/layers.rs` holds it to:
//!
//! ```text
//! park.rs                 ParkSet<T: Parked>, Registration, Waiting: knows
//!                         nothing of what it parks
//! census.rs, readbuf.rs   connection counts and caps; the backend read buffer
//! client.rs, backend.rs   client connection + TLS I/O; backend connections + pool
//! exchange/               one exchange: the stages' order in mod.rs, a file per
//!                         stage's I/O, typed outcomes, the worker's buffers
//! tunnel.rs               a WebSocket tunnel after a 101: both ways, bounded
//! session.rs              a connection through its life: Phase (each phase with
//!                         its data), serve, answers, close, expiry; Parked
//! worker.rs, acceptor.rs  the worker threads; accepting and the deadline sweep
//! ```
//!
//! Everything here is crate-private; `server.rs` starts the runtime through
//! the names re-exported below.

mod acceptor;
mod backend;
mod census;
mod client;
mod exchange;
mod park;
mod readbuf;
mod session;
mod tunnel;
mod worker;

pub(crate) use acceptor::{Acceptor, AcceptorConfig};
pub(crate) use backend::Pool;
pub(crate) use census::Census;
pub(crate) use exchange::Limits;
pub(crate) use park::ParkSet;
pub(crate) use session::Shared;
pub(crate) use worker::{spawn as spawn_workers, useful_workers};
