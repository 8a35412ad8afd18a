//! The one module that talks to libc directly: epoll, eventfd, poll, signals and
//! resource limits, each wrapped in a small safe function.
//!
//! Every `unsafe` block in nexushub lives here and carries a `// SAFETY:` comment;
//! the rest of the crate is `#![forbid(unsafe_code)]` and sees only these wrappers.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Interest flags for [`Epoll`] registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Wake when the socket is readable (or closed).
    Read,
    /// Wake when the socket is writable.
    Write,
}

impl Interest {
    fn bits(self) -> u32 {
        let base = match self {
            Interest::Read => libc::EPOLLIN | libc::EPOLLRDHUP,
            Interest::Write => libc::EPOLLOUT,
        };
        base as u32
    }
}

/// A ready event returned by [`Epoll::wait`]: the registration's token.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// The token given at registration.
    pub token: u64,
    /// The raw epoll event bits (readable, writable, hang-up, error).
    pub bits: u32,
}

/// An epoll set. Registrations are one-shot: after an event fires, the fd stays in
/// the set but is disarmed until [`Epoll::rearm`], which is exactly the hand-off
/// the acceptor needs (a worker owns the connection meanwhile).
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// Creates a close-on-exec epoll set.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by the kernel and is owned by nobody else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, bits: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: bits,
            u64: token,
        };
        // SAFETY: `ev` is a valid, initialised epoll_event living for the call; the kernel
        // copies it. Both fds are open (the caller holds the socket, we hold the epoll fd).
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Adds `fd` with a level-triggered (not one-shot) registration; for the
    /// listening socket and the wake-up eventfd.
    pub fn add_persistent(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest.bits(), token)
    }

    /// Adds `fd` armed once for `interest`.
    pub fn add_oneshot(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd,
            interest.bits() | libc::EPOLLONESHOT as u32,
            token,
        )
    }

    /// Re-arms a one-shot registration, possibly with a new token and interest.
    pub fn rearm(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_MOD,
            fd,
            interest.bits() | libc::EPOLLONESHOT as u32,
            token,
        )
    }

    /// Removes `fd` from the set (closing the fd also does this).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeout` for events, filling `out` (cleared first).
    pub fn wait(&self, out: &mut Vec<Event>, max: usize, timeout: Duration) -> io::Result<()> {
        out.clear();
        let max = max.clamp(1, 4096);
        let mut raw = [libc::epoll_event { events: 0, u64: 0 }; 256];
        let cap = max.min(raw.len());
        let ms = timeout_ms(timeout);
        // SAFETY: `raw` is a writable array of at least `cap` epoll_events; the kernel
        // writes at most `cap` entries and returns how many.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                raw.as_mut_ptr(),
                cap as libc::c_int,
                ms,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(err);
        }
        for ev in raw.iter().take(n as usize) {
            // Copy out of the (packed on x86_64) struct before use.
            let bits = ev.events;
            let token = ev.u64;
            out.push(Event { token, bits });
        }
        Ok(())
    }
}

/// True when the event bits say the peer hung up or the socket errored.
pub fn is_hangup(bits: u32) -> bool {
    bits & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
}

fn timeout_ms(timeout: Duration) -> libc::c_int {
    // Round up so that a 0.4 ms remainder does not become a busy 0 ms wait.
    let ms = timeout.as_micros().div_ceil(1000);
    ms.min(i32::MAX as u128) as libc::c_int
}

/// A non-blocking eventfd used to wake the acceptor's `epoll_wait`.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// Creates a non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by the kernel and is owned by nobody else.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the eventfd readable (wakes a waiter). Never blocks.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our own open eventfd. A full
        // counter (EAGAIN) already means "wake up", so the result is ignored.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast::<libc::c_void>(),
                8,
            );
        }
    }

    /// Resets the counter so the eventfd is no longer readable.
    pub fn drain(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads at most 8 bytes into a valid u64 from our own open eventfd;
        // EAGAIN (already drained) is fine and ignored.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut buf as *mut u64).cast::<libc::c_void>(),
                8,
            );
        }
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until `fd` is readable (`Interest::Read`) or writable, or `timeout`
/// passes. Returns `Ok(true)` when ready (including hang-up and error, which the
/// next read or write will report), `Ok(false)` on timeout.
pub fn poll_one(fd: RawFd, interest: Interest, timeout: Duration) -> io::Result<bool> {
    let events = match interest {
        Interest::Read => libc::POLLIN,
        Interest::Write => libc::POLLOUT,
    };
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms(timeout)) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        return Ok(n > 0);
    }
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads one valid rlimit struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// The signals nexushub handles itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: graceful shutdown.
    Term,
    /// SIGINT: graceful shutdown (Ctrl-C).
    Int,
    /// SIGHUP: reload.
    Hup,
}

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before sigaddset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it
/// spawns afterwards, so that [`wait_signal`] receives them synchronously. Call it
/// first in `main`, before any thread starts. Children must undo it with
/// [`unblock_signals`] (a blocked mask survives exec).
pub fn block_signals() -> io::Result<()> {
    let set = handled_set();
    // SAFETY: `set` is an initialised sigset_t; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Unblocks every signal in the calling thread (for a child before exec).
/// Async-signal-safe.
pub fn unblock_signals() -> io::Result<()> {
    // SAFETY: sigemptyset initialises `set`; pthread_sigmask reads it. Both are
    // async-signal-safe, so this may run between fork and exec.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits up to `timeout` for one of the blocked signals.
pub fn wait_signal(timeout: Duration) -> Option<Signal> {
    let set = handled_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; siginfo is not requested.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match sig {
        libc::SIGTERM => Some(Signal::Term),
        libc::SIGINT => Some(Signal::Int),
        libc::SIGHUP => Some(Signal::Hup),
        _ => None,
    }
}

/// Sends `SIGTERM` to this very process (used by tests of the library and by a
/// fatal error path to start the ordinary shutdown).
pub fn signal_self_term() {
    // SAFETY: kill with our own pid and a valid signal number has no memory effects.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGTERM);
    }
}

/// Connects to `remote` from the local IPv4 address `local` (port 0: any port).
/// std cannot bind before connecting; the tests use this to be "another client
/// address" on loopback (127.0.0.2), and nexushub itself never needs it.
pub fn connect_from(
    local: std::net::Ipv4Addr,
    remote: std::net::SocketAddrV4,
) -> io::Result<std::net::TcpStream> {
    fn sockaddr(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip.octets()),
            },
            sin_zero: [0; 8],
        }
    }
    // SAFETY: socket takes no pointers; a non-negative result is a new fd we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else; the
    // OwnedFd closes it on every early return below.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let from = sockaddr(local, 0);
    // SAFETY: `from` is a valid sockaddr_in for the call and `len` is its size.
    let rc = unsafe { libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let to = sockaddr(*remote.ip(), remote.port());
    // SAFETY: `to` is a valid sockaddr_in for the call and `len` is its size.
    let rc = unsafe { libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::TcpStream::from(owned))
}
