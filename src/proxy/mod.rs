//! The proxy runtime: accepting client connections, parking them while they
//! wait, and serving their exchanges with the backends on a pool of workers.
//!
//! - [`acceptor`]: the accepting thread (and the deadline sweep); [`park`]: the
//!   shared epoll set where connections wait and idle workers wait for them;
//!   [`client`]: a client connection and its TLS I/O; [`worker`]: the pool;
//!   [`exchange`]: one exchange; [`backend`]: backend connections and their
//!   shared pool; [`readbuf`]: the workers' backend read buffer.

pub mod acceptor;
pub mod backend;
pub mod census;
pub mod client;
pub mod exchange;
pub mod park;
pub mod readbuf;
pub mod session;
pub mod worker;
