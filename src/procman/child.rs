//! One app process: the port it is given, how it is spawned (shell, directory,
//! environment, process group, pre-exec set-up and watchdog, see the module doc
//! of [`crate::procman`]), and how its end is described.
//!
//! No supervision here: the supervisor decides when to spawn and stop; this file
//! knows how.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::sys;

/// What every app's watchdog needs from nexushub (see the module doc): the
/// watchdog pipe, of which nexushub holds both ends for as long as it may have
/// children (dropping this after the last child is reaped is fine), and the
/// program the watchdogs exec.
#[derive(Debug)]
pub struct Watchdog {
    read: OwnedFd,
    _write: OwnedFd,
    program: OwnedFd,
}

impl Watchdog {
    /// Creates the pipe and opens nexushub's own binary for the watchdogs.
    pub fn new() -> io::Result<Watchdog> {
        Watchdog::open(Path::new("/proc/self/exe"))
    }

    /// As [`Watchdog::new`], with the watchdogs running `program` (a nexushub
    /// binary: the unit tests run inside another one).
    fn open(program: &Path) -> io::Result<Watchdog> {
        let (read, write) = sys::watchdog_pipe()?;
        Ok(Watchdog {
            read,
            _write: write,
            program: sys::open_program(program)?,
        })
    }
}

/// A free loopback port, held (bound, not listening) until the spawn.
#[derive(Debug)]
pub struct PortHold {
    listener: TcpListener,
    port: u16,
}

impl PortHold {
    /// Asks the kernel for a free port on 127.0.0.1 and keeps it bound.
    pub fn new() -> io::Result<PortHold> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        Ok(PortHold { listener, port })
    }

    /// The port held.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Lets the port go (just before the child that will bind it is spawned).
    fn release(self) {
        drop(self.listener);
    }
}

/// What to run for one app instance.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The shell command line, run with `/bin/sh -c`.
    pub command: &'a str,
    /// Working directory; `None` keeps ours.
    pub dir: Option<&'a Path>,
    /// Extra environment, in order; `PORT` is set after it and wins.
    pub env: &'a [(String, String)],
    /// The value of `PORT`.
    pub port: u16,
}

/// Spawns `launch` in its own process group with stdin from `/dev/null` and
/// stdout and stderr piped (the caller must drain both), with the pre-exec
/// set-up and watchdog of [`sys::set_child_setup`] (a watchdog that cannot exec
/// fails the spawn). `hold`, if given, is
/// released just before the fork. Call from the long-lived thread that will
/// supervise the child: the child is SIGKILLed when that thread ends.
pub fn spawn(
    launch: &Launch<'_>,
    watchdog: &Watchdog,
    hold: Option<PortHold>,
) -> io::Result<Child> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(launch.command);
    if let Some(dir) = launch.dir {
        cmd.current_dir(dir);
    }
    // How an app's command finds this very binary (`$NEXUSHUB whoami` in the
    // demo); an `env = NEXUSHUB=...` line in the config overrides it.
    if let Ok(exe) = std::env::current_exe() {
        cmd.env("NEXUSHUB", exe);
    }
    for (key, value) in launch.env {
        cmd.env(key, value);
    }
    cmd.env("PORT", launch.port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    sys::set_child_setup(
        &mut cmd,
        watchdog.read.as_raw_fd(),
        watchdog.program.as_raw_fd(),
    );
    if let Some(hold) = hold {
        hold.release();
    }
    cmd.spawn()
}

/// How a process ended, for logs and `last_exit`: "exit status 3",
/// "killed by signal 9", "killed by signal 11 (core dumped)".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(sig) = status.signal() {
        if status.core_dumped() {
            format!("killed by signal {sig} (core dumped)")
        } else {
            format!("killed by signal {sig}")
        }
    } else {
        format!("ended ({status})")
    }
}

#[cfg(test)]
mod tests;
