//! The one module that talks to libc directly: epoll, poll, socket calls, signals and
//! resource limits, each wrapped in a small safe function.
//!
//! Every `unsafe` block in nexushub lives here and carries a `// SAFETY:` comment;
//! the rest of the crate is `#![forbid(unsafe_code)]` and sees only these wrappers.
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, TcpStream};
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

/// What an edge-triggered registration reports: readability (with the peer's
/// hang-up), writability, or both. Errors and hang-ups are always reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    read: bool,
    write: bool,
}

impl Watch {
    /// Watching for `interest` only.
    pub fn of(interest: Interest) -> Watch {
        Watch {
            read: interest == Interest::Read,
            write: interest == Interest::Write,
        }
    }

    /// True when this watch reports `interest`.
    pub fn covers(self, interest: Interest) -> bool {
        match interest {
            Interest::Read => self.read,
            Interest::Write => self.write,
        }
    }

    /// This watch and `interest` too.
    pub fn with(self, interest: Interest) -> Watch {
        let more = Watch::of(interest);
        Watch {
            read: self.read || more.read,
            write: self.write || more.write,
        }
    }

    fn bits(self) -> u32 {
        let mut bits = libc::EPOLLET as u32;
        if self.read {
            bits |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if self.write {
            bits |= libc::EPOLLOUT as u32;
        }
        bits
    }
}

/// A ready event returned by [`Epoll::wait_one`]: the registration's token.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// The token given at registration.
    pub token: u64,
    /// The raw epoll event bits (readable, writable, hang-up, error).
    pub bits: u32,
}

impl Event {
    /// True when the peer closed its side or the socket failed: reading will
    /// find the end (after any data still queued), with no further event.
    pub fn hangup(&self) -> bool {
        self.bits & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
    }
}

/// An epoll set. Registrations are edge-triggered and persistent: a socket is
/// added once and reports each new readiness (data arrived, room to write, a
/// hang-up) as one event, to one waiting thread. Whoever waits must therefore
/// have read (or written) until the socket said EAGAIN, or re-poll it with
/// [`Epoll::modify`], which reports readiness that is already there.
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

    /// Adds `fd` to the set under `token`; readiness already there is reported
    /// at once.
    pub fn add(&self, fd: RawFd, token: u64, watch: Watch) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, watch.bits(), token)
    }

    /// Changes what a registration watches, and re-polls it: readiness already
    /// there is reported at once, as on [`Epoll::add`].
    pub fn modify(&self, fd: RawFd, token: u64, watch: Watch) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, watch.bits(), token)
    }

    /// Waits up to `timeout` for one event; `Ok(None)` on timeout or a signal.
    /// Several threads may wait on one set: the kernel wakes one per event.
    pub fn wait_one(&self, timeout: Duration) -> io::Result<Option<Event>> {
        let mut raw = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `raw` is one writable epoll_event; the kernel writes at most one.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), &mut raw, 1, timeout_ms(timeout)) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(err);
        }
        if n == 0 {
            return Ok(None);
        }
        // Copy out of the (packed on x86_64) struct before use.
        let (bits, token) = (raw.events, raw.u64);
        Ok(Some(Event { token, bits }))
    }
}

/// Bytes written to a TCP socket that the peer has not acknowledged yet
/// (`SIOCOUTQ`): what a slow reader has not really taken.
pub fn unsent_bytes(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one c_int through the valid pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// Peeks one byte without blocking, whatever the socket's mode: `Ok(0)` is EOF,
/// `WouldBlock` means open and quiet.
pub fn peek_nonblocking(fd: RawFd) -> io::Result<usize> {
    let mut byte = [0u8; 1];
    recv(fd, &mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
}

/// Reads into `buf` without blocking, whatever the socket's mode
/// (`MSG_DONTWAIT`): `WouldBlock` when nothing is there yet, `Ok(0)` at EOF.
pub fn recv_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    recv(fd, buf, libc::MSG_DONTWAIT)
}

/// Writes what the socket takes of `data` without blocking, whatever its mode
/// (`MSG_DONTWAIT`, and `MSG_NOSIGNAL`: a closed peer is an error, not SIGPIPE).
pub fn send_nonblocking(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: send reads at most `data.len()` bytes from the valid `data`; `fd`
    // is an open socket the caller holds.
    let n = unsafe {
        libc::send(
            fd,
            data.as_ptr().cast::<libc::c_void>(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn recv(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: recv writes at most `buf.len()` bytes into the valid, writable
    // `buf`; `fd` is an open socket the caller holds.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
            flags,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn timeout_ms(timeout: Duration) -> libc::c_int {
    // Round up so that a 0.4 ms remainder does not become a busy 0 ms wait.
    let ms = timeout.as_micros().div_ceil(1000);
    ms.min(i32::MAX as u128) as libc::c_int
}

/// Starts a TCP connection to `addr` without waiting for it: the socket comes
/// back non-blocking (close-on-exec), connected or still connecting; it is
/// writable once connected, and [`socket_error`] then tells how it ended.
pub fn connect_nonblocking(addr: &SocketAddr) -> io::Result<TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket takes plain integers and returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns; the stream closes it.
    let sock = unsafe { TcpStream::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_storage is a valid value of the type.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: `storage` holds a valid address of `len` bytes for the socket's family.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
    }
    Ok(sock)
}

/// The pending error of a socket (`SO_ERROR`, cleared by reading it): how a
/// non-blocking connect ended. `None` when there is none.
pub fn socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let err = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// An integer socket option of `fd`.
fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes (one c_int) through the valid pointers.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(val)
}

/// Makes the kernel acknowledge what arrives on TCP socket `fd` at once
/// (`TCP_QUICKACK`), sending an acknowledgement that is due now. Linux holds
/// acknowledgements back (up to its 40 ms delayed-ACK timer) on a connection it
/// takes for interactive, as a request-response one is; the kernel turns the
/// flag off again when the connection looks interactive once more.
pub fn quickack(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from the valid pointer
    // to `one`; `fd` is an open socket the caller holds.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

// ---------------------------------------------------------------------------
// Child processes (used by `procman`): the pre-exec set-up of every app child,
// its watchdog, exit detection without reaping, and process-group signals.
// Everything that runs between fork and exec below is async-signal-safe: raw
// libc calls on stack data, no allocation, no lock, no Rust runtime.
// ---------------------------------------------------------------------------

/// Creates the watchdog pipe: both ends close-on-exec and numbered 3 or above
/// (so a child's stdio set-up can never land on them). nexushub holds the write
/// end for its whole life and never writes: the read end reports end-of-file to
/// the watchdogs exactly when nexushub is gone, however it died.
pub fn watchdog_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just returned by the kernel and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// `fd` itself when it is 3 or above, else a close-on-exec duplicate that is
/// (nexushub started with a closed stdin would otherwise get the pipe as fd 0).
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an fd we own takes no pointers and returns a new fd.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dup was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// The hidden subcommand the watchdog runs as: `nexushub __watchdog APP_PID`.
/// Not for people: it is dispatched before the command-line parser, so `--help`
/// never lists it.
pub const WATCHDOG_SUBCOMMAND: &std::ffi::CStr = c"__watchdog";

/// Opens the program the watchdogs run (nexushub's own binary, `/proc/self/exe`)
/// as a close-on-exec `O_PATH` descriptor numbered 3 or above. Exec'ing through
/// it runs this very binary even after the file on disk was replaced or removed
/// (an upgrade), so a watchdog always speaks its nexushub's protocol.
pub fn open_program(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: open reads the valid NUL-terminated path; a non-negative result is
    // a new fd we own.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Installs the pre-exec set-up of an app child on `cmd` (see `procman`'s module
/// doc): own process group, SIGKILL when the spawning thread dies (with the fork
/// race checked), a watchdog forked into the child's group that execs `program`
/// as `nexushub __watchdog APP_PID` (see [`run_watchdog`]) before the app runs,
/// and every signal unblocked. Spawn from a thread that lives as long as the
/// children: the parent-death signal follows the spawning thread, not the process.
pub fn set_child_setup(cmd: &mut std::process::Command, watch_read: RawFd, program: RawFd) {
    use std::os::unix::process::CommandExt;
    // Captured before the fork: the child compares its parent against it.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: `child_setup` and `start_watchdog`
    // make raw libc calls (setpgid, prctl, getppid, getpid, pipe2, fork,
    // pthread_sigmask, dup2, close_range/fcntl, fexecve, read, write, close,
    // _exit) on stack data, allocate nothing (`io::Error::from_raw_os_error` and
    // `last_os_error` are integers) and take no lock.
    unsafe {
        cmd.pre_exec(move || child_setup(parent, watch_read, program));
    }
}

/// The pre-exec set-up itself. The steps that can fail come before the watchdog
/// is started; a watchdog whose parent dies anyway (a failed unblock or exec)
/// sees it and kills what is left of the group, itself included.
fn child_setup(parent: libc::pid_t, watch_read: RawFd, program: RawFd) -> io::Result<()> {
    // SAFETY: setpgid, prctl, getppid, getpid and _exit take no pointers. std has
    // already put us in our own group (`process_group(0)`); doing it again here
    // makes the watchdog's `kill(0, ...)` safe whatever std's order is.
    unsafe {
        if libc::setpgid(0, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died between fork and prctl: then no signal
        // will ever come, and we were reparented.
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
    // SAFETY: getpid takes no arguments.
    let app = unsafe { libc::getpid() };
    start_watchdog(app, watch_read, program)?;
    // After the watchdog's fork, so it never runs with signals unblocked (it
    // blocks them all itself). Before exec, because a blocked mask survives
    // exec and the app would ignore our SIGTERM.
    unblock_signals()
}

/// Forks the watchdog of `app` (the calling process) and waits until it has
/// exec'd `program`: an exec that fails fails the app's spawn, so no app ever
/// runs unwatched. What the watchdog keeps across the exec: the watchdog pipe's
/// read end as fd 0, every signal blocked (a normal stop's SIGTERM to the group
/// must not end it), argv, and nothing else (no environment, no other fd).
fn start_watchdog(app: libc::pid_t, watch_read: RawFd, program: RawFd) -> io::Result<()> {
    // argv on the stack, the pid's digits written by hand: no allocation.
    let mut digits = [0u8; 24];
    let mut i = digits.len() - 1; // digits[last] stays the NUL
    let mut n = app.max(0) as u32;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let argv: [*const libc::c_char; 4] = [
        c"nexushub".as_ptr(),
        WATCHDOG_SUBCOMMAND.as_ptr(),
        digits[i..].as_ptr().cast(),
        std::ptr::null(),
    ];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let mut status = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the valid two-element array. The
    // exec-status pipe: the watchdog's exec closes its write end (close-on-exec),
    // a failed exec writes errno into it first.
    if unsafe { libc::pipe2(status.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fork in a single-threaded child is async-signal-safe; the new
    // process runs only `exec_watchdog`, which never returns.
    match unsafe { libc::fork() } {
        -1 => {
            let err = io::Error::last_os_error();
            // SAFETY: both fds are ours and used by nothing else.
            unsafe {
                libc::close(status[0]);
                libc::close(status[1]);
            }
            return Err(err);
        }
        // SAFETY: we are the freshly forked watchdog; argv and envp are
        // NUL-terminated arrays of NUL-terminated strings on our stack.
        0 => unsafe { exec_watchdog(watch_read, program, status[1], &argv, &envp) },
        _ => {}
    }
    let mut code = [0u8; 4];
    // SAFETY: close and read take fds we own and the valid 4-byte buffer.
    let n = unsafe {
        libc::close(status[1]);
        let n = loop {
            let n = libc::read(status[0], code.as_mut_ptr().cast(), code.len());
            if n >= 0 || errno() != libc::EINTR {
                break n;
            }
        };
        libc::close(status[0]);
        n
    };
    if n == code.len() as isize {
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(code)));
    }
    Ok(())
}

/// The watchdog's side of the fork: fd 0 becomes the watchdog pipe, every other
/// fd is marked close-on-exec, and `program` is exec'd. On failure, errno goes
/// down `status` and the process exits.
///
/// # Safety
/// Call only in a freshly forked process, with NUL-terminated `argv` and `envp`.
unsafe fn exec_watchdog(
    watch_read: RawFd,
    program: RawFd,
    status: RawFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: raw libc calls on initialised stack data only. We are a fresh,
    // single-threaded fork, so marking every fd close-on-exec takes nothing from
    // under another thread, and nothing here returns to Rust code.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        // fds 0-2 are the app's stdio here (std set them up before pre-exec):
        // the watchdog must hold none of them (nor the app's output pipes open).
        // (The pipe is close-on-exec: as fd 0 already, it must lose the flag.)
        let fd0 = if watch_read == 0 {
            libc::fcntl(0, libc::F_SETFD, 0)
        } else {
            libc::dup2(watch_read, 0)
        };
        if fd0 == 0 {
            cloexec_from(1);
            libc::fexecve(program, argv.as_ptr(), envp.as_ptr());
        }
        let code = errno().to_ne_bytes();
        libc::write(status, code.as_ptr().cast(), code.len());
        libc::_exit(127)
    }
}

/// The calling thread's errno. Async-signal-safe.
fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns the valid thread-local errno pointer.
    unsafe { *libc::__errno_location() }
}

/// Marks every fd from `first` up close-on-exec.
///
/// # Safety
/// Only for a process about to exec: nothing after this may rely on those fds
/// surviving the exec.
unsafe fn cloexec_from(first: libc::c_uint) {
    // SAFETY: close_range, getrlimit and fcntl take no pointers but the valid
    // rlimit struct; the caller guarantees no one needs these fds after exec.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        ) == 0
        {
            return;
        }
        // Kernels before 5.11 have no CLOSE_RANGE_CLOEXEC: one by one, up to the limit.
        let mut lim: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1 << 20)
        } else {
            1 << 16
        };
        let mut fd = libc::rlim_t::from(first);
        while fd < max {
            libc::fcntl(fd as libc::c_int, libc::F_SETFD, libc::FD_CLOEXEC);
            fd += 1;
        }
    }
}

/// Blocks until child `pid` has exited, without reaping it (`WNOWAIT`): the
/// process stays a zombie, so its pid (and process-group id) cannot be reused
/// until the owner of its `std::process::Child` waits for it. That makes
/// signalling its group between exit and reaping safe.
pub fn wait_exited(pid: u32) -> io::Result<()> {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in; the struct is
        // valid for the call.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The signals nexushub sends to an app's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSignal {
    /// SIGTERM: please stop.
    Term,
    /// SIGKILL: stop now.
    Kill,
}

/// Sends `signal` to the process group `pgid` (an app child's pid: each is the
/// leader of its own group). Refuses pgid 0 and 1 and our own group, so a bug
/// can never signal "every process" or nexushub itself. ESRCH (the group is
/// already empty) is an error the caller may ignore.
pub fn signal_group(pgid: u32, signal: GroupSignal) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad process group id"))?;
    // SAFETY: getpgrp takes no arguments.
    if pgid == unsafe { libc::getpgrp() } {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal nexushub's own process group",
        ));
    }
    let sig = match signal {
        GroupSignal::Term => libc::SIGTERM,
        GroupSignal::Kill => libc::SIGKILL,
    };
    // SAFETY: kill takes no pointers; the negative pid names the process group
    // `pgid`, which is above 1 and not ours.
    if unsafe { libc::kill(-pgid, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The open-file limit: (soft, hard).
pub fn nofile_limits() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

// ---------------------------------------------------------------------------
// Process hygiene: nexushub's own dumpable flag, and the watchdog process after
// its exec (`nexushub __watchdog APP_PID`, see `procman::watchdog`). Unlike the
// pre-exec code above, this runs in an ordinary process: std is available.
// ---------------------------------------------------------------------------

/// Marks this process non-dumpable (`PR_SET_DUMPABLE` 0): no core dump, and no
/// other process of the same user may ptrace it or read its memory and most of
/// its `/proc/PID` files. Survives fork; an exec resets it (the apps nexushub
/// starts stay ordinary processes).
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What ended a watchdog's watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchEnd {
    /// End-of-file on the watchdog pipe: nexushub is gone, however it died.
    NexushubGone,
    /// The watchdog's parent, the app's main process, is gone.
    AppGone,
}

/// The watchdog's whole job, in the process `nexushub __watchdog APP_PID` runs:
/// a member of the app's process group, a child of the app's main process `app`,
/// the watchdog pipe's read end as fd 0. Blocks every signal (so the SIGTERM of a
/// normal stop leaves it watching until the stop's own SIGKILL of the group),
/// then waits for nexushub's end (EOF on fd 0) or its parent's (a parent-death
/// signal read through a signalfd, and checked against `getppid`), and SIGKILLs
/// its whole group, itself included: it returns only when it cannot watch.
///
/// Refuses to run (`InvalidInput`) unless its process group is `app` and fd 0 is
/// a pipe, so that running it by hand cannot kill a shell's job.
pub fn run_watchdog(app: u32) -> io::Result<std::convert::Infallible> {
    let app = libc::pid_t::try_from(app)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad app pid"))?;
    // SAFETY: raw libc calls on initialised stack data; fd 0 is only fstat'ed,
    // polled and read into a one-byte buffer; the signalfd is ours.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        let mut st: libc::stat = std::mem::zeroed();
        if libc::getpgrp() != app
            || libc::fstat(0, &mut st) < 0
            || st.st_mode & libc::S_IFMT != libc::S_IFIFO
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an app's watchdog (only nexushub starts these)",
            ));
        }
        libc::prctl(
            libc::PR_SET_NAME,
            c"nexushub-watch".as_ptr() as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
        let mut usr1: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut usr1);
        libc::sigaddset(&mut usr1, libc::SIGUSR1);
        // Set here, not before the exec: an exec of a binary with file
        // capabilities (one allowed to bind port 443) would clear it.
        let deathsig = libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGUSR1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
        // Without a signalfd we still watch the pipe.
        let mut sigfd = if deathsig == 0 {
            libc::signalfd(-1, &usr1, libc::SFD_CLOEXEC)
        } else {
            -1
        };
        // The app may have died before the prctl: then no signal will come.
        let mut end = (libc::getppid() != app).then_some(WatchEnd::AppGone);
        while end.is_none() {
            let mut fds = [
                libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: sigfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let nfds: libc::nfds_t = if sigfd >= 0 { 2 } else { 1 };
            if libc::poll(fds.as_mut_ptr(), nfds, -1) < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                // Cannot watch: leave the app alone rather than kill it for our fault.
                return Err(io::Error::last_os_error());
            }
            if fds[0].revents != 0 {
                let mut byte = 0u8;
                let n = libc::read(0, (&mut byte as *mut u8).cast::<libc::c_void>(), 1);
                if n == 0 {
                    end = Some(WatchEnd::NexushubGone);
                } else if n < 0 && !matches!(errno(), libc::EINTR | libc::EAGAIN) {
                    return Err(io::Error::last_os_error());
                }
            }
            if sigfd >= 0 && fds[1].revents != 0 {
                let mut info: libc::signalfd_siginfo = std::mem::zeroed();
                let n = libc::read(
                    sigfd,
                    (&mut info as *mut libc::signalfd_siginfo).cast::<libc::c_void>(),
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                );
                // A signalfd that cannot be read would wake us forever: drop
                // it and watch the pipe alone.
                if n < 0 && !matches!(errno(), libc::EINTR | libc::EAGAIN) {
                    libc::close(sigfd);
                    sigfd = -1;
                }
                // The signal also comes when only the parent's spawning thread
                // ended, or from someone's `kill`: only a new parent means death.
                if libc::getppid() != app {
                    end = Some(WatchEnd::AppGone);
                }
            }
        }
        // Our group is `app`'s (checked above), never nexushub's or a shell's.
        libc::kill(0, libc::SIGKILL);
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// `TCP_QUICKACK` as the kernel reports it: 0 while it takes the connection
    /// for interactive and delays acknowledgements, 1 otherwise.
    fn quickack_mode(fd: RawFd) -> libc::c_int {
        getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK).expect("getsockopt")
    }

    #[test]
    fn quickack_ends_the_delayed_acks_of_a_request_response_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut proxy = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut app, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 4];
        // Requests and responses in turn, as on a pooled backend connection:
        // Linux takes the connection for interactive.
        for _ in 0..4 {
            proxy.write_all(b"ping").expect("write");
            app.read_exact(&mut buf).expect("read");
            app.write_all(b"pong").expect("write");
            proxy.read_exact(&mut buf).expect("read");
        }
        proxy.write_all(b"ping").expect("write");
        let fd = proxy.as_raw_fd();
        assert_eq!(quickack_mode(fd), 0, "not taken for interactive");
        quickack(fd).expect("quickack");
        assert_eq!(quickack_mode(fd), 1);
    }

    #[test]
    fn quickack_on_something_else_than_a_socket_is_an_error() {
        let file = std::fs::File::open("/dev/null").expect("open");
        assert!(quickack(file.as_raw_fd()).is_err());
    }
}
