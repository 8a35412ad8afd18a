//! A worker's reusable buffers for the exchanges it runs: none of them is kept
//! by a parked exchange, so their cost is per worker, not per connection.

use std::sync::Arc;

use crate::proxy::backend::Pool;
use crate::proxy::readbuf::ReadBuf;

/// Size of each read from a backend while streaming a response.
pub(crate) const BACKEND_READ_BYTES: usize = 64 * 1024;

/// One worker's buffers (and a handle on the shared backend pool), reused
/// across the exchanges it runs; a parked exchange keeps none of them.
#[derive(Debug)]
pub(crate) struct Scratch {
    /// Idle backend connections (shared).
    pub(crate) pool: Arc<Pool>,
    /// Bytes read from the backend.
    pub(crate) rbuf: ReadBuf,
    /// Bytes on their way out (to the backend or the client).
    pub(crate) out: Vec<u8>,
}

impl Scratch {
    /// Fresh buffers around a handle on the shared pool.
    pub(crate) fn new(pool: Arc<Pool>) -> Scratch {
        Scratch {
            pool,
            rbuf: ReadBuf::new(BACKEND_READ_BYTES),
            out: Vec::with_capacity(BACKEND_READ_BYTES * 2),
        }
    }
}
