//! The parked connections: one epoll set, shared by the acceptor and the workers,
//! in which every connection that is not ready for work waits at no thread's cost.
//!
//! A connection is parked while its TLS handshake is under way, while part of a
//! request head is in, while it is idle between requests, and while an exchange
//! waits on a slow client (a request body that has not arrived, a response the
//! client has not read) or on its backend (parked on the backend socket, which
//! stays in the set, disarmed, while pooled). Each phase has its deadline, which
//! the acceptor's sweep enforces.
//!
//! Idle workers wait on the epoll set themselves: when a parked connection becomes
//! ready, the kernel wakes exactly one waiting worker (`epoll_wait` waiters are
//! exclusive), which takes the connection out of the table and serves it. There is
//! no hand-off thread between readiness and work, so a parked connection costs one
//! wake-up to serve, not two. Registrations are one-shot, so a connection belongs
//! to at most one worker at a time, and each parking gets a fresh token, so a
//! stale event can never reach a connection parked later under the same fd.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::conn::ClientConn;
use crate::forward::Waiting;
use crate::sys::{Epoll, Interest};

/// Shards of the token table, so that parking and waking rarely meet on a lock.
const SHARDS: usize = 16;

/// The shared epoll set and the connections parked in it, by token.
#[derive(Debug)]
pub struct ParkSet {
    epoll: Epoll,
    // Boxed: a connection is about 1.3 KiB (most of it rustls state), and it
    // moves between the acceptor, this table and the workers on every request;
    // a box makes each move a pointer's (measured: 1 to 6% more requests/s).
    shards: Vec<Mutex<HashMap<u64, Box<ClientConn>>>>,
    next_token: AtomicU64,
    parked: AtomicUsize,
    closing: AtomicBool,
}

impl ParkSet {
    /// An empty set.
    pub fn new() -> std::io::Result<ParkSet> {
        Ok(ParkSet {
            epoll: Epoll::new()?,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_token: AtomicU64::new(1),
            parked: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        })
    }

    fn shard(&self, token: u64) -> &Mutex<HashMap<u64, Box<ClientConn>>> {
        &self.shards[(token as usize) % SHARDS]
    }

    /// Parks `conn` until it is ready for `interest` (or its deadline passes).
    /// While shutting down, a connection with no exchange in progress is closed
    /// instead: it has no request in flight.
    pub fn park(&self, conn: Box<ClientConn>, interest: Interest) {
        self.park_exchange(conn, Waiting::Client(interest));
    }

    /// Parks a connection whose exchange (in `conn.exchange`) waits for
    /// `waiting`: the client's socket, or its backend connection's.
    pub fn park_exchange(&self, mut conn: Box<ClientConn>, waiting: Waiting) {
        if self.closing.load(Ordering::SeqCst) && conn.exchange.is_none() {
            return conn.close(false);
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (fd, first, interest) = match waiting {
            Waiting::Client(interest) => {
                let first = !conn.registered;
                conn.registered = true;
                (conn.sock.as_raw_fd(), first, interest)
            }
            Waiting::Backend(interest) => {
                let Some((fd, registered)) = conn
                    .exchange
                    .as_mut()
                    .and_then(|ex| ex.backend_registration())
                else {
                    log::error!("{}: no backend connection to wait on", conn.peer);
                    return conn.abort();
                };
                let first = !*registered;
                *registered = true;
                (fd, first, interest)
            }
        };
        // In the table before it is armed: the event may fire at once.
        self.shard(token).lock().insert(token, conn);
        self.parked.fetch_add(1, Ordering::SeqCst);
        let armed = if first {
            self.epoll.add_oneshot(fd, token, interest)
        } else {
            self.epoll.rearm(fd, token, interest)
        };
        if let Err(e) = armed {
            if let Some(conn) = self.take(token) {
                log::warn!("{}: cannot park connection: {e}", conn.peer);
            }
            return;
        }
        // A shutdown that began while we parked must not miss this connection.
        // Checked under the shard lock, so an armed connection is never out of
        // the table while its event may fire.
        if self.closing.load(Ordering::SeqCst) {
            let idle = {
                let mut map = self.shard(token).lock();
                if map.get(&token).is_some_and(|c| c.exchange.is_none()) {
                    map.remove(&token)
                } else {
                    None
                }
            };
            if let Some(conn) = idle {
                self.parked.fetch_sub(1, Ordering::SeqCst);
                conn.close(false);
            }
        }
    }

    fn take(&self, token: u64) -> Option<Box<ClientConn>> {
        let conn = self.shard(token).lock().remove(&token);
        if conn.is_some() {
            self.parked.fetch_sub(1, Ordering::SeqCst);
        }
        conn
    }

    /// Waits up to `timeout` for a parked connection to become ready and takes it.
    /// Called by idle workers.
    pub fn wait(&self, timeout: Duration) -> Option<Box<ClientConn>> {
        match self.epoll.wait_one(timeout) {
            Ok(Some(ev)) => self.take(ev.token),
            Ok(None) => None,
            Err(e) => {
                log::error!("epoll_wait failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                None
            }
        }
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    /// True when nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every connection whose deadline is at or before `now`.
    pub fn take_expired(&self, now: Instant) -> Vec<Box<ClientConn>> {
        self.take_where(|c| c.deadline <= now)
    }

    /// Begins the shutdown: from now on only connections with an exchange in
    /// progress are parked; the others parked now are taken out and returned.
    pub fn close_idle(&self) -> Vec<Box<ClientConn>> {
        self.closing.store(true, Ordering::SeqCst);
        self.take_where(|c| c.exchange.is_none())
    }

    /// Takes every parked connection for which `pick` is true.
    // Connections stay boxed wherever they go (see `shards`).
    #[allow(clippy::vec_box)]
    fn take_where(&self, pick: impl Fn(&ClientConn) -> bool) -> Vec<Box<ClientConn>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock();
            let picked: Vec<u64> = map
                .iter()
                .filter(|(_, c)| pick(c))
                .map(|(t, _)| *t)
                .collect();
            for t in picked {
                if let Some(c) = map.remove(&t) {
                    out.push(c);
                }
            }
        }
        self.parked.fetch_sub(out.len(), Ordering::SeqCst);
        out
    }

    /// True once [`ParkSet::close_idle`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}
