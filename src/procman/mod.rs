//! The process manager: runs the `command` apps, health-checks every app, keeps
//! them alive, follows config reloads, stops them all at shutdown, and publishes
//! a snapshot of its instances (`routes::Snapshot`) whenever one changes (the resolver thread
//! turns it into the route map).
//!
//! # Shape
//!
//! One manager thread runs a reconciliation loop (`supervisor.rs`): desired
//! state (the config) against actual state (instances, `slot.rs`), converged
//! step by step. It sleeps on one channel of events (a child exited, a health
//! result, a reload, shutdown) with a deadline for its next timer. Helper
//! threads only report: per instance a health checker (`health.rs`); per process
//! an exit waiter and two output readers (`lines.rs`). Every child is spawned
//! (`child.rs`) and reaped by the manager thread.
//!
//! # An instance's life
//!
//! ```text
//!  spawn ─> Starting ── a check passes ──> Healthy ── a check fails ──> Unhealthy
//!             │                              ▲                           │   │
//!             │ no pass within               └──── a check passes ───────┘   │ failing
//!             │ start_timeout: NeverReady{port},                             │ for 10 s:
//!             │ stopped                                                      │ stopped
//!             ▼                                                              ▼
//!  the process exits, in any state ──> BackingOff{until} ──> spawn again (new port)
//!     delays 1 s, 2, 4 … 60 s, back to 1 s once a process ran healthy for 30 s;
//!     after a NeverReady the next start shows NeverReady{new port} until it passes.
//!
//!  removed, replaced, shutdown ──> Stopping: out of the route map at once, SIGTERM
//!  to its group after the drain (1 s, longer while requests forwarded to it are
//!  still being answered, up to shutdown_grace; none at shutdown), SIGKILL
//!  shutdown_grace after the SIGTERM.
//!  ("stopped" above: SIGTERM to the group now, SIGKILL shutdown_grace later.)
//! ```
//!
//! Only `Healthy` takes traffic; every state change is published at once. When
//! an instance's main process exits, whatever is left of its process group is
//! SIGKILLed: the main process *is* the app (an app that daemonises out of its
//! group cannot be followed without cgroups). Nothing ever gives up: a
//! crash-looping app keeps restarting every 60 s and stays visible as such.
//!
//! `upstream` apps are instances without a process: checked the same way
//! (`Starting`, `Healthy`, `Unhealthy`), never restarted.
//!
//! # Log lines
//!
//! Each state change is logged once, *after* the snapshot showing it was handed
//! to the resolver (`app web: ...`; `N` seconds, `P` a port, `G` a generation):
//! - `started pid PID on port P` (` (generation G)` from the second generation on)
//! - `health check passed at ADDR` (the resolver then logs `healthy at ADDR` once
//!   the route map has switched: that is the line to wait for)
//! - `unhealthy at ADDR: WHY` (warn); `unhealthy for 10 s; restarting` (warn)
//! - `never became ready on port P within N s (does it listen on $PORT?)` (warn)
//! - `exited (exit status 1); restarting in N s` (warn), also `killed by signal 9`
//! - `cannot start: WHY; retrying in N s` (warn)
//! - `stopped pid PID (STATUS)`; `pid PID still running N s after SIGTERM; sending SIGKILL` (warn)
//! - reload: `added`, `removed; stopping after a 1 s drain`, `changed; starting
//!   generation G (...)`, `generation G is healthy; draining generation G' for 1 s`,
//!   and `reload: A added, C changed, U unchanged, R removed`
//! - output: `[web] LINE`, from stdout and stderr alike, at info.
//!
//! # Reload
//!
//! [`Manager::reload`] hands over a config that parsed; `plan::diff` compares it
//! app by app with the newest generation running. New apps start. Removed apps
//! leave the route map at once and are stopped after the drain. A changed app
//! (any setting but its line) is replaced blue-green: a new instance with the
//! next generation on a new port; the old one keeps serving until the new one
//! is healthy (the resolver prefers the newest healthy generation), then it is
//! drained and stopped. An old instance that is not healthy is stopped at once,
//! and never restarted. A fixed `port` cannot be shared, so there the old
//! instance is stopped first and the new one starts on its exit: a short gap
//! of 503s, logged. Unchanged apps are left alone.
//!
//! # Children
//!
//! `/bin/sh -c COMMAND` in `dir` (default: the config file's directory), with
//! `env` and then `PORT`, stdin from `/dev/null`, stdout and stderr each drained
//! by a thread into the log as `[app] line` (lines capped at
//! [`MAX_LINE_BYTES`], longer ones split; never a blocked child).
//! Each child leads its own process group; signals go to the group.
//!
//! `PORT` is the app's `port`, else a free port: nexushub binds 127.0.0.1:0 and
//! holds that socket until just before the fork. The remaining race: from then
//! until the app binds, another process could take the port. The kernel spreads
//! port-0 binds and outgoing source ports over the whole ephemeral range, so
//! only a process asking for that very number is a real risk; the app then fails
//! to bind, exits, and is restarted on a fresh port. (Passing the socket to the
//! app would close the race, but apps bind `$PORT` themselves.)
//!
//! # No child outlives nexushub
//!
//! Even when nexushub dies by SIGKILL, and including grandchildren of `sh -c`:
//! - In the child before exec (`sys::set_child_setup`, async-signal-safe code
//!   only): `prctl(PR_SET_PDEATHSIG, SIGKILL)`, then `getppid()` against the pid
//!   taken before the fork (exit if the parent already died: the fork race),
//!   then every signal unblocked (nexushub blocks SIGTERM/SIGINT/SIGHUP in all
//!   threads, and a blocked mask survives exec).
//! - The watchdog: at start nexushub creates one pipe, both ends close-on-exec;
//!   only nexushub holds the write end and it never writes. It also opens its
//!   own binary (`/proc/self/exe`, `O_PATH`), so that an upgrade of the file on
//!   disk never changes what the watchdogs run. Before exec each child forks once
//!   more, and that process execs the binary as `nexushub __watchdog APP_PID` (a
//!   subcommand kept out of `--help`, `watchdog.rs`): no environment, the pipe's
//!   read end as fd 0 and every other fd closed by the exec (then /dev/null on
//!   its stdout and stderr, from std's start-up: it holds no socket or output
//!   pipe open, and no copy of nexushub's memory: TLS key,
//!   ticket keys, requests), every signal blocked (a normal stop's SIGTERM leaves
//!   it watching). The app's exec waits for the watchdog's: a watchdog that
//!   cannot exec fails the spawn (logged, retried with the backoff), so no app
//!   runs unwatched. Named `nexushub-watch`, non-dumpable, a child of the app in
//!   the app's group, it waits in `poll` for EOF on the pipe (nexushub is gone,
//!   however it died) or a parent-death signal via signalfd (the app's main
//!   process is gone). Either way it does `kill(0, SIGKILL)` on its own group and
//!   exits; it refuses to start unless its group is the app's and fd 0 a pipe.
//! - nexushub itself is non-dumpable (`PR_SET_DUMPABLE` 0, at start): no core
//!   file, and no process of its user may ptrace it or read its memory or most of
//!   `/proc/PID`. The apps' exec resets that: they are ordinary processes.
//! - The parent-death signal follows the spawning *thread*: children are spawned
//!   by the manager thread, which lives until they are all reaped.
//!
//! Exits are seen without reaping (`waitid(WNOWAIT)`): a zombie pins its pid and
//! so its group id, which makes signalling the group safe until the manager
//! reaps it.
//!
//! # Shutdown
//!
//! [`Manager::shutdown`]: SIGTERM to every group, wait until all main processes
//! exited or the grace passed, SIGKILL the rest, reap (no zombies), stop the
//! checkers and readers (bounded waits throughout), return.

/// Appends a formatted line to `notes` at `level`.
macro_rules! note {
    ($notes:expr, $level:expr, $($arg:tt)+) => {
        $notes.push(($level, format!($($arg)+)))
    };
}

mod backoff;
mod child;
mod health;
mod lines;
mod plan;
mod slot;
mod supervisor;
pub mod watchdog;

use std::io;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::config::Config;
use crate::routes::Snapshot;

pub use backoff::{BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET_AFTER};
pub use health::{check, CHECK_INTERVAL_HEALTHY, CHECK_INTERVAL_STARTING, CHECK_TIMEOUT};
pub use lines::MAX_LINE_BYTES;
pub use slot::UNHEALTHY_RESTART_AFTER;
pub use supervisor::DRAIN_DELAY;

use supervisor::{Event, Supervisor};

/// Every configured app as one instance in the `Starting` state: the route map
/// to serve with before the manager's first snapshot arrives (a configured host
/// is then a 503 "starting", never a 404).
pub fn starting_snapshot(config: &Config) -> Snapshot {
    let now = std::time::Instant::now();
    let instances = config
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| slot::Slot::new(i as u64, app, 1, now).instance())
        .collect();
    Snapshot { instances }
}

/// The running process manager. Dropping it shuts it down with the config's
/// `shutdown_grace`, like [`Manager::stop`].
#[derive(Debug)]
pub struct Manager {
    events: Sender<Event>,
    thread: Option<JoinHandle<()>>,
}

/// Starts managing the apps of `config`, publishing snapshots to `publish`.
/// Children are started by the manager thread, in the background; `Err` is only
/// for what nexushub itself could not set up (the watchdog pipe, the thread).
pub fn start(config: &Config, publish: Sender<Snapshot>) -> io::Result<Manager> {
    let watchdog = child::Watchdog::new()?;
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let supervisor = Supervisor::new(
        config.clone(),
        publish,
        events_tx.clone(),
        events_rx,
        watchdog,
    );
    let thread = thread::Builder::new()
        .name("procman".into())
        .spawn(move || supervisor.run())?;
    Ok(Manager {
        events: events_tx,
        thread: Some(thread),
    })
}

impl Manager {
    /// Hands a new desired state (a re-read config that parsed) to the manager
    /// thread; returns at once.
    pub fn reload(&self, config: &Config) {
        if self
            .events
            .send(Event::Reload(Box::new(config.clone())))
            .is_err()
        {
            log::error!("the process manager is not running; reload ignored");
        }
    }

    /// SIGTERM every child's process group, wait up to `grace` for them to exit,
    /// SIGKILL what is left, reap, join threads.
    pub fn shutdown(mut self, grace: Duration) {
        self.finish(Some(grace));
    }

    /// [`Manager::shutdown`] with the `shutdown_grace` of the current config.
    pub fn stop(mut self) {
        self.finish(None);
    }

    fn finish(&mut self, grace: Option<Duration>) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // A send error means the thread is already gone; join tells how.
        let _ = self.events.send(Event::Shutdown(grace));
        if thread.join().is_err() {
            log::error!("the process manager thread panicked");
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests;
