//! The worker pool: a fixed number of threads that wait on the shared epoll set
//! of parked sessions (`park.rs`) and serve each one that becomes ready
//! (`session.rs`: the handshake, request heads, exchanges, closes) as far as it
//! goes without waiting, which parks it again when a peer is not ready: slow or
//! silent peers never pin a worker. A panic while serving one session is
//! caught here; the session is dropped (its slot given back by `Slot`'s
//! `Drop`), the worker's buffers replaced, and the worker goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::proxy::exchange::Scratch;
use crate::proxy::session::{self, Shared};

/// Worker thread stack size.
const WORKER_STACK_BYTES: usize = 256 * 1024;
/// How long an idle worker waits on the park set before looking after the
/// backend pool and the shutdown flag.
const WAIT_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a worker closes the pool's expired idle backend connections.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The most workers that help: one per core (at least the default's 2). A
/// worker never waits on a client, a backend or a file, so it is busy whenever
/// it runs; more of them than cores only take turns on the same cores, and all
/// wait on one epoll set, where each event wakes the one asleep longest
/// (cache-cold): more cost throughput and CPU (docs/performance.md, "Workers
/// above the core count").
pub(crate) fn useful_workers() -> usize {
    let cores = thread::available_parallelism().map_or(usize::MAX, |n| n.get());
    cores.max(crate::config::DEFAULT_WORKERS_RANGE.0)
}

/// Starts `n` workers serving the connections parked in `shared.parked`.
pub(crate) fn spawn(n: usize, shared: Arc<Shared>) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..n)
        .map(|i| {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || run(shared))
        })
        .collect()
}

/// A worker's loop. It ends once shutdown has begun and nothing is parked (the
/// last exchanges finished).
fn run(shared: Arc<Shared>) {
    let mut state = Scratch::new(Arc::clone(&shared.pool));
    let mut last_sweep = Instant::now();
    loop {
        match shared.parked.wait(WAIT_TIMEOUT) {
            Some(s) => {
                let peer = s.conn.peer;
                let res = catch_unwind(AssertUnwindSafe(|| session::serve(s, &shared, &mut state)));
                if res.is_err() {
                    log::error!(
                        "{peer}: worker panicked while serving this connection; it was closed"
                    );
                    state = Scratch::new(Arc::clone(&shared.pool));
                }
            }
            None => {
                if shared.parked.is_closing() && shared.parked.is_empty() {
                    return;
                }
            }
        }
        if last_sweep.elapsed() >= POOL_SWEEP_INTERVAL {
            state.pool.sweep();
            last_sweep = Instant::now();
        }
    }
}
