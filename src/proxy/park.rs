//! The parked connections: one epoll set, shared by the acceptor and the workers,
//! in which every connection that is not ready for work waits at no thread's cost.
//!
//! A connection is parked while its TLS handshake is under way, while part of a
//! request head is in, while it is idle between requests, and while an exchange
//! waits on a slow client (a request body that has not arrived, a response the
//! client has not read) or on its backend (parked on the backend socket), and
//! while a WebSocket tunnel waits for either side (parked on both sockets at
//! once, see [`Waiting::Both`]). Each phase has its deadline, which the
//! acceptor's sweep enforces.
//!
//! Idle workers wait on the epoll set themselves: when a parked connection becomes
//! ready, the kernel wakes exactly one waiting worker (`epoll_wait` waiters are
//! exclusive), which takes the connection out of the table and serves it. There is
//! no hand-off thread between readiness and work, so a parked connection costs one
//! wake-up to serve, not two.
//!
//! Each socket is registered once, edge-triggered, under a token of its own that
//! is never reused (a [`Registration`], owned with the socket: a client's by its
//! connection, a backend's by its pooled connection, so it outlives one
//! exchange). Parking is then a table insert, not a system call. The table holds,
//! per token, either the parked connection or a note that it is busy (with a
//! worker, or parked under its other socket's token); an event that finds it
//! busy is remembered in that note, and the next parking under the token
//! re-polls the socket (`EPOLL_CTL_MOD` reports readiness already there) instead
//! of waiting for an edge that has passed. So a connection belongs to at most one
//! worker at a time, and no readiness is lost while it is busy. Parked on two
//! sockets, it is in the table under the first's token, and the second's says
//! where ([`Entry::Alias`]); an event on either takes it out, and one that
//! found either token busy makes the next parking re-poll both. Only that path
//! locks two shards; parking on one socket is as it was. What the edge
//! trigger asks of the callers: park on a socket only after it said EAGAIN for
//! what you wait on, or say so through [`Parked::take_repoll`].
//!
//! The set is generic over what it parks ([`Parked`]: a client session) and
//! knows nothing else of it; a [`Registration`], owned by a socket, reaches its
//! set through [`Forget`], so the connections that own them need no type
//! parameter.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::sys::{Epoll, Interest, Watch};

/// Shards of the token table, so that parking and waking rarely meet on a lock.
const SHARDS: usize = 16;

/// What a parked thing waits for: its client's socket, or its backend's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// The client: its next bytes (`Read`: a request head or body bytes, or
    /// the rest of a handshake) or room for what we send it (`Write`).
    Client(Interest),
    /// The backend: its response head or next response body bytes (`Read`),
    /// the end of a connect or room for the request (`Write`).
    Backend(Interest),
    /// Both at once (a tunnel: either side may send next): back on the
    /// first event of either socket.
    Both {
        /// What the client's socket is waited on for.
        client: Interest,
        /// What the backend's socket is waited on for.
        backend: Interest,
    },
}

/// A socket to wait on and the registration that goes with it.
pub(crate) type Socket<'a> = (RawFd, &'a mut Option<Registration>);

/// What the park set needs of what it parks (a client session): the sockets
/// it waits on, its deadline, and how to end it. The set knows nothing else of
/// it, so it sits below everything it parks.
pub(crate) trait Parked: Send + Sized + 'static {
    /// The socket to wait on for `waiting` and the registration that goes
    /// with it; `None` when there is no such socket (the thing is aborted).
    fn socket(&mut self, waiting: Waiting) -> Option<Socket<'_>>;
    /// For [`Waiting::Both`]: the client's socket and the backend's; `None`
    /// when it has not both (it is aborted).
    fn both_sockets(&mut self) -> Option<[Socket<'_>; 2]>;
    /// When the sweep takes it out of the set.
    fn deadline(&self) -> Instant;
    /// An event for the socket registered under `token` reported the peer's
    /// end: the last bytes may have come with it, so no other event will say so.
    fn note_hangup(&mut self, token: u64);
    /// True while a request is in flight: kept parked through a shutdown.
    fn busy(&self) -> bool;
    /// Takes the flag that says it is parked without its socket having said
    /// EAGAIN for what it waits on (the parking then re-polls the socket).
    fn take_repoll(&mut self) -> bool;
    /// Ends it politely (a shutdown closes idle ones).
    fn close(self: Box<Self>);
    /// Drops it at once.
    fn abort(self: Box<Self>);
    /// The peer, for log lines.
    fn peer(&self) -> SocketAddr;
}

/// What a [`Registration`] tells its park set when its socket closes: the
/// park set seen without its type, so that a registration need not be generic.
pub(crate) trait Forget: Send + Sync {
    /// A registration's socket is closing: its token leaves the table.
    fn forget(&self, token: u64);
}

/// A socket's place in the park set: its token and what its registration
/// watches. Dropped with the socket, it takes the token out of the table (the
/// kernel drops the registration itself when the socket closes).
pub(crate) struct Registration {
    token: u64,
    watch: Watch,
    set: Weak<dyn Forget>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("token", &self.token)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// The token events for this socket carry.
    pub(crate) fn token(&self) -> u64 {
        self.token
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(set) = self.set.upgrade() {
            set.forget(self.token);
        }
    }
}

/// What the table knows of a token.
#[derive(Debug)]
enum Entry<T> {
    /// Parked, waiting on this token's socket.
    Parked(Box<T>),
    /// Parked waiting on this token's socket and on the one registered under
    /// `alias` (which holds an [`Entry::Alias`] to this token meanwhile).
    Both(Box<T>, u64),
    /// What waits on this token's socket is parked under the token `primary`.
    Alias { primary: u64 },
    /// Not parked on this socket (with a worker, parked under another token, or
    /// a backend connection in the pool). `ready`: an event came meanwhile.
    Busy { ready: bool },
}

/// How a parking arms its socket.
enum Arm {
    /// Nothing to do: the registration watches what we wait on, and no event
    /// was missed.
    Nothing,
    /// First parking of this socket.
    Add,
    /// Watch for more, or re-poll readiness an event reported while busy.
    Modify,
}

/// The shared epoll set and what is parked in it, by token.
#[derive(Debug)]
pub(crate) struct ParkSet<T> {
    epoll: Epoll,
    // Boxed: a connection is about 1.3 KiB (most of it rustls state), and it
    // moves between the acceptor, this table and the workers on every request;
    // a box makes each move a pointer's (docs/performance.md has the figure).
    shards: Vec<Mutex<HashMap<u64, Entry<T>>>>,
    next_token: AtomicU64,
    parked: AtomicUsize,
    closing: AtomicBool,
}

impl<T: Parked> ParkSet<T> {
    /// An empty set.
    pub(crate) fn new() -> std::io::Result<ParkSet<T>> {
        Ok(ParkSet {
            epoll: Epoll::new()?,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_token: AtomicU64::new(1),
            parked: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        })
    }

    fn shard(&self, token: u64) -> &Mutex<HashMap<u64, Entry<T>>> {
        &self.shards[(token as usize) % SHARDS]
    }

    /// Parks `conn` until its client's socket is ready for `interest` (or its
    /// deadline passes). While shutting down, one with no request in flight is
    /// closed instead.
    pub(crate) fn park(self: &Arc<Self>, conn: Box<T>, interest: Interest) {
        self.park_on(conn, Waiting::Client(interest));
    }

    /// Parks `conn` until the socket `waiting` names is ready: the client's,
    /// or its backend connection's.
    pub(crate) fn park_on(self: &Arc<Self>, mut conn: Box<T>, waiting: Waiting) {
        if self.closing.load(Ordering::SeqCst) && !conn.busy() {
            return conn.close();
        }
        let repoll = conn.take_repoll();
        let interest = match waiting {
            Waiting::Client(interest) | Waiting::Backend(interest) => interest,
            Waiting::Both { client, backend } => {
                return self.park_both(conn, client, backend, repoll)
            }
        };
        let Some((fd, reg)) = conn.socket(waiting) else {
            log::error!("{}: no backend connection to wait on", conn.peer());
            return conn.abort();
        };
        let (token, watch, mut arm) = self.arming(reg, interest, repoll);
        // In the table before it is armed: the event may fire at once.
        let refused = {
            let mut map = self.shard(token).lock();
            match map.get_mut(&token) {
                Some(Entry::Parked(_) | Entry::Both(..)) => Some(conn),
                Some(entry) => {
                    if !matches!(entry, Entry::Busy { ready: false }) && matches!(arm, Arm::Nothing)
                    {
                        arm = Arm::Modify;
                    }
                    *entry = Entry::Parked(conn);
                    None
                }
                None => {
                    if matches!(arm, Arm::Nothing) {
                        // Not expected (the entry lives as long as the
                        // registration); re-polling covers any event missed.
                        arm = Arm::Modify;
                    }
                    map.insert(token, Entry::Parked(conn));
                    None
                }
            }
        };
        if let Some(conn) = refused {
            log::error!("{}: parked twice on one socket; dropped", conn.peer());
            return conn.abort();
        }
        self.parked.fetch_add(1, Ordering::SeqCst);
        let armed = match arm {
            Arm::Nothing => Ok(()),
            Arm::Add => self.epoll.add(fd, token, watch),
            Arm::Modify => self.epoll.modify(fd, token, watch),
        };
        if let Err(e) = armed {
            if let Some(conn) = self.take(token) {
                log::warn!("{}: cannot park connection: {e}", conn.peer());
            }
            return;
        }
        // A shutdown that began while we parked must not miss this connection.
        // Checked under the shard lock, so an armed connection is never out of
        // the table while its event may fire.
        if self.closing.load(Ordering::SeqCst) {
            let idle = {
                let mut map = self.shard(token).lock();
                match map.get_mut(&token) {
                    Some(entry) if is_idle(entry) => unpark(entry),
                    _ => None,
                }
            };
            if let Some((conn, _)) = idle {
                self.parked.fetch_sub(1, Ordering::SeqCst);
                conn.close();
            }
        }
    }

    /// What a parking under `reg` for `interest` must do to its socket (its
    /// registration made, or widened, here).
    fn arming(
        self: &Arc<Self>,
        reg: &mut Option<Registration>,
        interest: Interest,
        repoll: bool,
    ) -> (u64, Watch, Arm) {
        match reg {
            Some(r) if r.watch.covers(interest) => (
                r.token,
                r.watch,
                if repoll { Arm::Modify } else { Arm::Nothing },
            ),
            Some(r) => {
                r.watch = r.watch.with(interest);
                (r.token, r.watch, Arm::Modify)
            }
            None => {
                let token = self.next_token.fetch_add(1, Ordering::Relaxed);
                let watch = Watch::of(interest);
                let set: Weak<dyn Forget> = Arc::downgrade(self) as Weak<dyn Forget>;
                *reg = Some(Registration { token, watch, set });
                (token, watch, Arm::Add)
            }
        }
    }

    /// Parks `conn` on two sockets at once: under its client's token, with an
    /// alias under its backend's, so an event on either takes it out. An event
    /// either token had while it was busy makes this parking re-poll both (the
    /// note is per token, and which socket it was for matters not: a re-poll
    /// of both reports what is there).
    fn park_both(
        self: &Arc<Self>,
        conn: Box<T>,
        client: Interest,
        backend: Interest,
        repoll: bool,
    ) {
        let mut conn = conn;
        let Some([(cfd, creg), (bfd, breg)]) = conn.both_sockets() else {
            log::error!("{}: no backend connection to wait on", conn.peer());
            return conn.abort();
        };
        let (ctoken, cwatch, carm) = self.arming(creg, client, repoll);
        let (btoken, bwatch, barm) = self.arming(breg, backend, repoll);
        let mut arms = [(cfd, ctoken, cwatch, carm), (bfd, btoken, bwatch, barm)];
        let refused = {
            let mut two = self.lock_two(ctoken, btoken);
            let missed = [ctoken, btoken]
                .iter()
                .any(|t| !matches!(two.map(*t).get(t), Some(Entry::Busy { ready: false })));
            if matches!(
                two.map(ctoken).get(&ctoken),
                Some(Entry::Parked(_) | Entry::Both(..))
            ) {
                Some(conn)
            } else {
                if missed {
                    for arm in &mut arms {
                        if matches!(arm.3, Arm::Nothing) {
                            arm.3 = Arm::Modify;
                        }
                    }
                }
                two.map(ctoken).insert(ctoken, Entry::Both(conn, btoken));
                two.map(btoken)
                    .insert(btoken, Entry::Alias { primary: ctoken });
                None
            }
        };
        if let Some(conn) = refused {
            log::error!("{}: parked twice on one socket; dropped", conn.peer());
            return conn.abort();
        }
        self.parked.fetch_add(1, Ordering::SeqCst);
        for (fd, token, watch, arm) in arms {
            let armed = match arm {
                Arm::Nothing => Ok(()),
                Arm::Add => self.epoll.add(fd, token, watch),
                Arm::Modify => self.epoll.modify(fd, token, watch),
            };
            if let Err(e) = armed {
                if let Some(conn) = self.take(ctoken) {
                    log::warn!("{}: cannot park connection: {e}", conn.peer());
                }
                return;
            }
        }
        // As in `park_on`: a shutdown that began meanwhile must not miss it.
        if self.closing.load(Ordering::SeqCst) {
            let idle = {
                let mut map = self.shard(ctoken).lock();
                match map.get_mut(&ctoken) {
                    Some(entry) if is_idle(entry) => unpark(entry),
                    _ => None,
                }
            };
            if let Some((conn, alias)) = idle {
                self.parked.fetch_sub(1, Ordering::SeqCst);
                self.clear_alias(alias, ctoken);
                conn.close();
            }
        }
    }

    /// Locks the shards of two tokens (one lock when they share one), in
    /// shard order so that two lockers never wait on each other.
    fn lock_two(&self, a: u64, b: u64) -> Two<'_, T> {
        let (ia, ib) = ((a as usize) % SHARDS, (b as usize) % SHARDS);
        let (lo, hi) = (ia.min(ib), ia.max(ib));
        let first = self.shards[lo].lock();
        let second = (hi != lo).then(|| self.shards[hi].lock());
        Two {
            first,
            second,
            first_index: lo,
        }
    }

    /// Turns `alias`'s entry back into a plain busy one, if it still points
    /// at `primary`.
    fn clear_alias(&self, alias: Option<u64>, primary: u64) {
        let Some(alias) = alias else { return };
        let mut map = self.shard(alias).lock();
        if let Some(entry @ Entry::Alias { .. }) = map.get_mut(&alias) {
            if matches!(entry, Entry::Alias { primary: p } if *p == primary) {
                *entry = Entry::Busy { ready: false };
            }
        }
    }

    /// An event for an alias token: takes what is parked under its primary,
    /// or notes the event there when that is busy.
    fn take_by_alias(&self, alias: u64) -> Option<Box<T>> {
        let primary = match self.shard(alias).lock().get(&alias) {
            Some(Entry::Alias { primary }) => *primary,
            _ => return None,
        };
        let mut two = self.lock_two(alias, primary);
        if !matches!(two.map(alias).get(&alias), Some(Entry::Alias { primary: p }) if *p == primary)
        {
            // Changed since: taken by an event on the other socket, or gone.
            if let Some(Entry::Busy { ready }) = two.map(alias).get_mut(&alias) {
                *ready = true;
            }
            return None;
        }
        two.map(alias).insert(alias, Entry::Busy { ready: false });
        match two.map(primary).get_mut(&primary) {
            Some(entry @ Entry::Both(..)) => unpark(entry).map(|(conn, _)| conn),
            Some(Entry::Busy { ready }) => {
                *ready = true;
                None
            }
            _ => None,
        }
    }

    /// Takes what is parked under `token`, if anything is.
    fn take(&self, token: u64) -> Option<Box<T>> {
        let (conn, alias) = self.shard(token).lock().get_mut(&token).and_then(unpark)?;
        self.parked.fetch_sub(1, Ordering::SeqCst);
        self.clear_alias(alias, token);
        Some(conn)
    }

    /// Waits up to `timeout` for something parked to become ready and takes it.
    /// Called by idle workers. `None` also when the event was for one that is
    /// busy (noted for its next parking) or gone.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<Box<T>> {
        match self.epoll.wait_one(timeout) {
            Ok(Some(ev)) => {
                let taken = {
                    let mut map = self.shard(ev.token).lock();
                    match map.get_mut(&ev.token) {
                        Some(entry @ (Entry::Parked(_) | Entry::Both(..))) => Some(unpark(entry)),
                        Some(Entry::Busy { ready }) => {
                            *ready = true;
                            None
                        }
                        Some(Entry::Alias { .. }) => None,
                        None => None,
                    }
                };
                let mut conn = match taken {
                    Some(unparked) => {
                        let (conn, alias) = unparked?;
                        self.clear_alias(alias, ev.token);
                        conn
                    }
                    // Only the two-socket path gets here.
                    None => self.take_by_alias(ev.token)?,
                };
                self.parked.fetch_sub(1, Ordering::SeqCst);
                if ev.hangup() {
                    conn.note_hangup(ev.token);
                }
                Some(conn)
            }
            Ok(None) => None,
            Err(e) => {
                log::error!("epoll_wait failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                None
            }
        }
    }

    /// How many are parked now.
    pub(crate) fn len(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    /// True when nothing is parked.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes everything whose deadline is at or before `now`.
    pub(crate) fn take_expired(&self, now: Instant) -> Vec<Box<T>> {
        self.take_where(|c| c.deadline() <= now)
    }

    /// Begins the shutdown: from now on only what has a request in flight is
    /// parked; the others parked now are taken out and returned.
    pub(crate) fn close_idle(&self) -> Vec<Box<T>> {
        self.closing.store(true, Ordering::SeqCst);
        self.take_where(|c| !c.busy())
    }

    /// Takes everything parked for which `pick` is true.
    // Parked things stay boxed wherever they go (see `shards`).
    #[allow(clippy::vec_box)]
    fn take_where(&self, pick: impl Fn(&T) -> bool) -> Vec<Box<T>> {
        let mut out = Vec::new();
        let mut aliases = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock();
            for (token, entry) in map.iter_mut() {
                if matches!(entry, Entry::Parked(c) | Entry::Both(c, _) if pick(c)) {
                    if let Some((conn, alias)) = unpark(entry) {
                        out.push(conn);
                        aliases.extend(alias.map(|a| (a, *token)));
                    }
                }
            }
        }
        self.parked.fetch_sub(out.len(), Ordering::SeqCst);
        for (alias, primary) in aliases {
            self.clear_alias(Some(alias), primary);
        }
        out
    }

    /// True once [`ParkSet::close_idle`] was called.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}

impl<T: Parked> Forget for ParkSet<T> {
    fn forget(&self, token: u64) {
        // Dropped outside the lock: a connection's drop forgets its own tokens.
        let gone = self.shard(token).lock().remove(&token);
        match gone {
            Some(Entry::Parked(conn)) => {
                self.parked.fetch_sub(1, Ordering::SeqCst);
                log::error!("{}: parked on a socket that closed; dropped", conn.peer());
            }
            Some(Entry::Both(conn, alias)) => {
                self.parked.fetch_sub(1, Ordering::SeqCst);
                self.clear_alias(Some(alias), token);
                log::error!("{}: parked on a socket that closed; dropped", conn.peer());
            }
            // The primary entry still holds it: an event there brings it back.
            _ => {}
        }
    }
}

/// True for an entry parked with no request in flight.
fn is_idle<T: Parked>(entry: &Entry<T>) -> bool {
    matches!(entry, Entry::Parked(c) | Entry::Both(c, _) if !c.busy())
}

/// Takes what is parked out of its entry, leaving the token busy; with the
/// alias token it was parked under too, if any (whose entry the caller
/// clears).
fn unpark<T>(entry: &mut Entry<T>) -> Option<(Box<T>, Option<u64>)> {
    match std::mem::replace(entry, Entry::Busy { ready: false }) {
        Entry::Parked(conn) => Some((conn, None)),
        Entry::Both(conn, alias) => Some((conn, Some(alias))),
        busy => {
            *entry = busy;
            None
        }
    }
}

/// The shards of two tokens, locked (see [`ParkSet::lock_two`]).
struct Two<'a, T> {
    first: MutexGuard<'a, HashMap<u64, Entry<T>>>,
    second: Option<MutexGuard<'a, HashMap<u64, Entry<T>>>>,
    first_index: usize,
}

impl<T> Two<'_, T> {
    /// The locked table `token` belongs to.
    fn map(&mut self, token: u64) -> &mut HashMap<u64, Entry<T>> {
        match &mut self.second {
            Some(second) if (token as usize) % SHARDS != self.first_index => second,
            _ => &mut self.first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// The least a parked thing is: a socket and its registration.
    #[derive(Debug)]
    struct Conn {
        sock: TcpStream,
        peer: SocketAddr,
        registration: Option<Registration>,
        deadline: Instant,
        hangup: bool,
        /// A second socket (a tunnel's backend), for two-socket parking.
        other: Option<TcpStream>,
        other_registration: Option<Registration>,
        other_hangup: bool,
    }

    impl Parked for Conn {
        fn socket(&mut self, waiting: Waiting) -> Option<Socket<'_>> {
            match waiting {
                Waiting::Client(_) => Some((self.sock.as_raw_fd(), &mut self.registration)),
                Waiting::Backend(_) => Some((
                    self.other.as_ref()?.as_raw_fd(),
                    &mut self.other_registration,
                )),
                Waiting::Both { .. } => None,
            }
        }
        fn both_sockets(&mut self) -> Option<[Socket<'_>; 2]> {
            Some([
                (self.sock.as_raw_fd(), &mut self.registration),
                (
                    self.other.as_ref()?.as_raw_fd(),
                    &mut self.other_registration,
                ),
            ])
        }
        fn deadline(&self) -> Instant {
            self.deadline
        }
        fn note_hangup(&mut self, token: u64) {
            if self.registration.as_ref().is_some_and(|r| r.token == token) {
                self.hangup = true;
            }
            if self
                .other_registration
                .as_ref()
                .is_some_and(|r| r.token == token)
            {
                self.other_hangup = true;
            }
        }
        fn busy(&self) -> bool {
            false
        }
        fn take_repoll(&mut self) -> bool {
            false
        }
        fn close(self: Box<Self>) {}
        fn abort(self: Box<Self>) {
            let _ = self.sock.shutdown(Shutdown::Both);
        }
        fn peer(&self) -> SocketAddr {
            self.peer
        }
    }

    type ParkSet = super::ParkSet<Conn>;

    /// The server side of a loopback pair, parkable, and the client side.
    fn pair() -> (Box<Conn>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (sock, peer) = listener.accept().expect("accept");
        sock.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + Duration::from_secs(60);
        let conn = Conn {
            sock,
            peer,
            registration: None,
            deadline,
            hangup: false,
            other: None,
            other_registration: None,
            other_hangup: false,
        };
        (Box::new(conn), client)
    }

    /// A parkable pair with a second socket (as a tunnel has), and the far
    /// ends of both: (conn, client side, backend side).
    fn tunnel() -> (Box<Conn>, TcpStream, TcpStream) {
        let (mut conn, client) = pair();
        let (other, backend) = pair();
        let other = *other;
        conn.other = Some(other.sock);
        (conn, client, backend)
    }

    /// Reads the second socket until it says EAGAIN; the bytes read.
    fn drain_other(conn: &Conn) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 4096];
        for _ in 0..1000 {
            match conn.other.as_ref().expect("a second socket").read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        total
    }

    const BOTH_READ: Waiting = Waiting::Both {
        client: Interest::Read,
        backend: Interest::Read,
    };

    /// Waits for the parked connection to come back, up to a second.
    fn ready(set: &ParkSet) -> Option<Box<Conn>> {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Some(conn) = set.wait(Duration::from_millis(50)) {
                return Some(conn);
            }
        }
        None
    }

    /// Reads the socket until it says EAGAIN; the bytes read.
    fn drain(conn: &Conn) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 4096];
        for _ in 0..1000 {
            match (&conn.sock).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        total
    }

    fn entries(set: &ParkSet) -> usize {
        set.shards.iter().map(|s| s.lock().len()).sum()
    }

    #[test]
    fn a_parked_connection_comes_back_when_its_socket_is_ready() {
        let set = Arc::new(ParkSet::new().expect("epoll"));
        let (conn, mut client) = pair();
        set.park(conn, Interest::Read);
        assert_eq!(set.len(), 1);
        assert!(
            set.wait(Duration::from_millis(50)).is_none(),
            "nothing sent yet"
        );
        client.write_all(b"hello").expect("write");
        let conn = ready(&set).expect("ready after the client wrote");
        assert_eq!(set.len(), 0);
        assert_eq!(drain(&conn), 5);
        // Parked again after EAGAIN: quiet until the next bytes.
        set.park(conn, Interest::Read);
        assert!(
            set.wait(Duration::from_millis(50)).is_none(),
            "no new bytes"
        );
        client.write_all(b"again").expect("write");
        let conn = ready(&set).expect("ready after more bytes");
        assert_eq!(drain(&conn), 5);
    }

    #[test]
    fn bytes_that_come_while_the_connection_is_busy_are_not_lost() {
        let set = Arc::new(ParkSet::new().expect("epoll"));
        let (conn, mut client) = pair();
        set.park(conn, Interest::Read);
        client.write_all(b"one").expect("write");
        let conn = ready(&set).expect("ready");
        assert_eq!(drain(&conn), 3);
        // While a worker has it, more bytes: their event finds it busy.
        client.write_all(b"two").expect("write");
        assert!(
            ready(&set).is_none(),
            "a busy connection must not be handed out"
        );
        // Parked without reading again (as after a response): the event that
        // came meanwhile makes the parking re-poll, so it comes back at once.
        set.park(conn, Interest::Read);
        let conn = ready(&set).expect("the bytes that came while busy wake it");
        assert_eq!(drain(&conn), 3);
    }

    #[test]
    fn a_hangup_in_the_same_event_as_the_last_bytes_is_noted() {
        let set = Arc::new(ParkSet::new().expect("epoll"));
        let (conn, mut client) = pair();
        set.park(conn, Interest::Read);
        client.write_all(b"last").expect("write");
        client.shutdown(Shutdown::Write).expect("shutdown");
        // On loopback both are queued by the time shutdown returns, before the
        // event is taken: one event brings the bytes and the end.
        let conn = ready(&set).expect("ready");
        assert!(conn.hangup, "the client's end came with its bytes");
        assert_eq!(drain(&conn), 4);
    }

    #[test]
    fn closing_a_connection_takes_its_token_out_of_the_table() {
        let set = Arc::new(ParkSet::new().expect("epoll"));
        let (conn, mut client) = pair();
        set.park(conn, Interest::Read);
        client.write_all(b"x").expect("write");
        let conn = ready(&set).expect("ready");
        assert_eq!(entries(&set), 1, "busy, still known");
        conn.abort();
        assert_eq!(entries(&set), 0);
        assert!(set.is_empty());
    }

    #[test]
    fn the_sweep_takes_connections_past_their_deadline_only() {
        let set = Arc::new(ParkSet::new().expect("epoll"));
        let (mut late, _c1) = pair();
        let (on_time, _c2) = pair();
        late.deadline = Instant::now();
        set.park(late, Interest::Read);
        set.park(on_time, Interest::Read);
        let taken = set.take_expired(Instant::now());
        assert_eq!(taken.len(), 1);
        assert_eq!(set.len(), 1);
        drop(taken);
        assert_eq!(entries(&set), 1, "the late one's token went with it");
    }

    #[test]
    fn a_connection_parked_on_two_sockets_comes_back_for_either() {
        let set = Arc::new(ParkSet::new().expect("epoll"));
        let (conn, mut client, mut backend) = tunnel();
        set.park_on(conn, BOTH_READ);
        assert_eq!(set.len(), 1);
        assert_eq!(entries(&set), 2, "its own token and the alias");
        assert!(set.wait(Duration::from_millis(50)).is_none(), "quiet");
        backend.write_all(b"from backend").expect("write");
        let conn = ready(&set).expect("back for the backend's bytes");
        assert_eq!(set.len(), 0);
        assert_eq!(drain_other(&conn), 12);
        assert_eq!(drain(&conn), 0);
        set.park_on(conn, BOTH_READ);
        assert!(set.wait(Duration::from_millis(50)).is_none(), "quiet again");
        client.write_all(b"from client").expect("write");
        let conn = ready(&set).expect("back for the client's bytes");
        assert_eq!(drain(&conn), 11);
        // Taken once: the other socket's token says busy, not parked.
        backend.write_all(b"x").expect("write");
        assert!(ready(&set).is_none(), "a busy connection is not handed out");
        assert_eq!(drain_other(&conn), 1);
    }

    #[test]
    fn an_event_on_either_socket_while_busy_makes_the_next_parking_repoll_both() {
        let set = Arc::new(ParkSet::new().expect("epoll"));
        let (conn, mut client, mut backend) = tunnel();
        set.park_on(conn, BOTH_READ);
        client.write_all(b"one").expect("write");
        let conn = ready(&set).expect("ready");
        assert_eq!(drain(&conn), 3);
        // While busy, the backend sends: its event finds the token busy.
        backend.write_all(b"two").expect("write");
        assert!(ready(&set).is_none(), "busy");
        set.park_on(conn, BOTH_READ);
        let conn = ready(&set).expect("the missed backend bytes wake it");
        assert_eq!(drain_other(&conn), 3);
    }

    #[test]
    fn a_hangup_on_the_second_socket_is_noted_for_it() {
        let set = Arc::new(ParkSet::new().expect("epoll"));
        let (conn, _client, backend) = tunnel();
        set.park_on(conn, BOTH_READ);
        backend.shutdown(Shutdown::Write).expect("shutdown");
        let conn = ready(&set).expect("ready");
        assert!(conn.other_hangup && !conn.hangup);
    }

    #[test]
    fn the_sweep_and_a_close_take_a_two_socket_parking_and_its_alias() {
        let set = Arc::new(ParkSet::new().expect("epoll"));
        let (mut conn, _client, mut backend) = tunnel();
        conn.deadline = Instant::now();
        set.park_on(conn, BOTH_READ);
        let taken = set.take_expired(Instant::now());
        assert_eq!(taken.len(), 1);
        assert!(set.is_empty());
        // The alias no longer leads anywhere: an event on it takes nothing.
        backend.write_all(b"late").expect("write");
        assert!(ready(&set).is_none());
        drop(taken);
        assert_eq!(entries(&set), 0, "both tokens went with it");
    }
}
