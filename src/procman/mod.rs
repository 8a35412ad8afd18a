//! The process manager: runs the `command` apps, health-checks every app, keeps
//! them alive, follows config reloads, stops them all at shutdown, and publishes
//! a [`Snapshot`] of its instances whenever one changes (the resolver thread
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
mod tests {
    //! The manager with real processes: `sh -c` commands, and for apps that must
    //! listen, this very test binary re-run as a tiny server
    //! ([`listen_on_port_helper`]). Each test waits on snapshots, not sleeps.
    use super::*;
    use crate::routes::{AppInstance, InstanceState};
    use crate::sys::{self, GroupSignal};
    use crossbeam_channel::Receiver;
    use std::net::TcpListener;
    use std::path::Path;
    use std::time::Instant;

    const HELPER_ENV: &str = "NEXUSHUB_PROCMAN_TEST_HELPER";

    /// Not a test: run as a child by other tests (with `HELPER_ENV` set), it
    /// listens on `$PORT` until killed.
    #[test]
    #[ignore = "a helper process for the process manager's tests"]
    fn listen_on_port_helper() {
        if std::env::var_os(HELPER_ENV).is_none() {
            return;
        }
        let port: u16 = std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .expect("PORT");
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind $PORT");
        println!("listening on {port}");
        for conn in listener.incoming() {
            drop(conn);
        }
    }

    /// A command line that runs [`listen_on_port_helper`].
    fn listener_command() -> String {
        let exe = std::env::current_exe().expect("test binary");
        format!(
            "exec '{}' --ignored --exact procman::tests::listen_on_port_helper --test-threads 1",
            exe.display()
        )
    }

    fn config(apps: &str) -> Config {
        let text = format!("[proxy]\ncert = c.pem\nkey = k.pem\nshutdown_grace = 2\n{apps}");
        crate::config::parse(&text, Path::new("/tmp/nexushub-procman-test.conf")).expect("config")
    }

    fn listening_app(name: &str, extra: &str) -> String {
        format!(
            "[app {name}]\nhosts = {name}.test\ncommand = {}\nenv = {HELPER_ENV}=1\n{extra}\n",
            listener_command()
        )
    }

    /// Waits up to `limit` for a snapshot satisfying `pred`.
    fn wait_for(
        rx: &Receiver<Snapshot>,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Snapshot) -> bool,
    ) -> Snapshot {
        let end = Instant::now() + limit;
        loop {
            match rx.recv_deadline(end) {
                Ok(s) if pred(&s) => return s,
                Ok(_) => {}
                Err(_) => panic!("no snapshot with {what} within {limit:?}"),
            }
        }
    }

    fn only<'a>(s: &'a Snapshot, app: &str) -> Vec<&'a AppInstance> {
        s.instances.iter().filter(|i| &*i.app == app).collect()
    }

    fn one(s: &Snapshot, app: &str, pred: impl Fn(&AppInstance) -> bool) -> bool {
        let all = only(s, app);
        all.len() == 1 && pred(all[0])
    }

    /// True once `pid` is gone (reaped) or never existed.
    fn gone(pid: u32) -> bool {
        !Path::new(&format!("/proc/{pid}")).exists()
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn a_crashing_app_backs_off_longer_each_time() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let cfg = config("[app crash]\nhosts = crash.test\ncommand = exit 3\n");
        let m = start(&cfg, tx).expect("start");
        let first = wait_for(&rx, WAIT, "a first back-off", |s| {
            one(s, "crash", |i| {
                matches!(i.state, InstanceState::BackingOff { .. })
            })
        });
        let i = only(&first, "crash")[0];
        assert_eq!(i.last_exit.as_deref(), Some("exit status 3"));
        assert_eq!(i.restarts, 0);
        let second = wait_for(&rx, WAIT, "a second back-off", |s| {
            one(s, "crash", |i| {
                i.restarts == 1 && matches!(i.state, InstanceState::BackingOff { .. })
            })
        });
        let InstanceState::BackingOff { until } = only(&second, "crash")[0].state else {
            unreachable!()
        };
        // The second delay is 2 s (the first was 1 s).
        assert!(until.saturating_duration_since(Instant::now()) > Duration::from_millis(1500));
        m.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn an_app_that_never_listens_is_reported_and_restarted() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let cfg =
            config("[app deaf]\nhosts = deaf.test\ncommand = exec sleep 30\nstart_timeout = 0.3\n");
        let m = start(&cfg, tx).expect("start");
        let s = wait_for(&rx, WAIT, "never ready", |s| {
            one(
                s,
                "deaf",
                |i| matches!(i.state, InstanceState::NeverReady { port } if port != 0),
            )
        });
        let i = only(&s, "deaf")[0];
        assert_eq!(
            i.state.describe(Instant::now()),
            format!("never became ready on port {}", i.addr.port())
        );
        let s = wait_for(&rx, WAIT, "a back-off", |s| {
            one(s, "deaf", |i| {
                matches!(i.state, InstanceState::BackingOff { .. })
            })
        });
        assert_eq!(
            only(&s, "deaf")[0].last_exit.as_deref(),
            Some("killed by signal 15")
        );
        // The next attempt says it has not become ready yet.
        wait_for(&rx, WAIT, "never ready again", |s| {
            one(s, "deaf", |i| {
                i.restarts == 1 && matches!(i.state, InstanceState::NeverReady { .. })
            })
        });
        m.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_killed_app_stops_serving_and_comes_back() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let m = start(&config(&listening_app("web", "")), tx).expect("start");
        let s = wait_for(&rx, WAIT, "healthy", |s| {
            one(s, "web", |i| i.state == InstanceState::Healthy)
        });
        let first = only(&s, "web")[0].clone();
        let pid = first.pid.expect("pid");
        sys::signal_group(pid, GroupSignal::Kill).expect("kill");
        let s = wait_for(&rx, WAIT, "a back-off", |s| {
            one(s, "web", |i| {
                matches!(i.state, InstanceState::BackingOff { .. })
            })
        });
        assert_eq!(
            only(&s, "web")[0].last_exit.as_deref(),
            Some("killed by signal 9")
        );
        assert!(gone(pid), "pid {pid} was not reaped");
        let s = wait_for(&rx, WAIT, "healthy again", |s| {
            one(s, "web", |i| i.state == InstanceState::Healthy)
        });
        let again = only(&s, "web")[0];
        assert_eq!(again.restarts, 1);
        assert_ne!(again.pid, Some(pid));
        assert_eq!(again.generation, 1);
        m.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn shutdown_stops_and_reaps_every_child() {
        let (tx, rx) = crossbeam_channel::unbounded();
        // The marker file says the trap is in place: a SIGTERM before that would
        // end `stubborn` at once and make the grace unobservable.
        let marker =
            std::env::temp_dir().join(format!("nexushub-procman-stubborn-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let apps = format!(
            "{}[app stubborn]\nhosts = stubborn.test\ncommand = trap '' TERM; touch {}; while :; do sleep 1; done\n",
            listening_app("web", ""),
            marker.display()
        );
        let m = start(&config(&apps), tx).expect("start");
        let s = wait_for(&rx, WAIT, "both running", |s| {
            one(s, "web", |i| i.state == InstanceState::Healthy)
                && one(s, "stubborn", |i| i.pid.is_some())
        });
        let end = Instant::now() + WAIT;
        while !marker.exists() {
            assert!(Instant::now() < end, "stubborn never set its trap");
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&marker);
        let pids: Vec<u32> = s.instances.iter().filter_map(|i| i.pid).collect();
        assert_eq!(pids.len(), 2);
        let started = Instant::now();
        // `stubborn` ignores SIGTERM: only the SIGKILL after the grace ends it.
        m.shutdown(Duration::from_millis(300));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "took {took:?}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        for pid in pids {
            assert!(gone(pid), "pid {pid} left behind");
        }
    }

    #[test]
    fn reload_adds_removes_and_replaces_upstream_apps() {
        let listeners: Vec<TcpListener> = (0..4)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let addr = |n: usize| listeners[n].local_addr().expect("addr");
        let app = |name: &str, n: usize| {
            format!(
                "[app {name}]\nhosts = {name}.test\nupstream = {}\n",
                addr(n)
            )
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let m = start(&config(&(app("a", 0) + &app("b", 1))), tx).expect("start");
        wait_for(&rx, WAIT, "a and b healthy", |s| {
            one(s, "a", |i| i.state == InstanceState::Healthy)
                && one(s, "b", |i| i.state == InstanceState::Healthy)
        });
        m.reload(&config(&(app("a", 2) + &app("c", 3))));
        let s = wait_for(&rx, WAIT, "a replaced, b removed, c added", |s| {
            one(s, "a", |i| {
                i.state == InstanceState::Healthy && i.generation == 2
            }) && only(s, "b").is_empty()
                && one(s, "c", |i| i.state == InstanceState::Healthy)
        });
        assert_eq!(only(&s, "a")[0].addr, addr(2));
        // A re-read of the same config changes nothing.
        m.reload(&config(&(app("a", 2) + &app("c", 3))));
        m.shutdown(Duration::from_secs(1));
        let tail: Vec<Snapshot> = rx.try_iter().collect();
        assert!(tail
            .iter()
            .flat_map(|s| &s.instances)
            .all(|i| !(i.app.as_ref() == "a" && i.generation > 2)));
    }

    #[test]
    fn a_changed_app_is_replaced_without_a_gap() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let m = start(&config(&listening_app("web", "")), tx).expect("start");
        let s = wait_for(&rx, WAIT, "healthy", |s| {
            one(s, "web", |i| i.state == InstanceState::Healthy)
        });
        let old = only(&s, "web")[0].clone();
        m.reload(&config(&listening_app("web", "env = VERSION=2")));
        // From now until the old one is gone, some instance is healthy in every snapshot.
        let end = Instant::now() + WAIT;
        let last = loop {
            let s = rx.recv_deadline(end).expect("the replace did not finish");
            let web = only(&s, "web");
            assert!(
                web.iter().any(|i| i.state == InstanceState::Healthy),
                "a snapshot without a healthy instance: {web:?}"
            );
            if web.len() == 1 && web[0].generation == 2 {
                break s;
            }
        };
        let new = only(&last, "web")[0];
        assert_ne!(new.addr.port(), old.addr.port());
        // The old one is drained, then stopped and reaped.
        let pid = old.pid.expect("pid");
        let end = Instant::now() + WAIT;
        while !gone(pid) {
            assert!(Instant::now() < end, "old pid {pid} still there");
            std::thread::sleep(Duration::from_millis(20));
        }
        m.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn a_changed_app_on_a_fixed_port_is_stopped_then_started() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let (tx, rx) = crossbeam_channel::unbounded();
        let m = start(
            &config(&listening_app("web", &format!("port = {port}"))),
            tx,
        )
        .expect("start");
        let s = wait_for(&rx, WAIT, "healthy", |s| {
            one(s, "web", |i| i.state == InstanceState::Healthy)
        });
        let old_pid = only(&s, "web")[0].pid.expect("pid");
        m.reload(&config(&listening_app(
            "web",
            &format!("port = {port}\nenv = VERSION=2"),
        )));
        let s = wait_for(&rx, WAIT, "generation 2 healthy", |s| {
            one(s, "web", |i| {
                i.state == InstanceState::Healthy && i.generation == 2
            })
        });
        let new = only(&s, "web")[0];
        assert_eq!(new.addr.port(), port);
        assert_ne!(new.pid, Some(old_pid));
        assert!(gone(old_pid), "old pid {old_pid} still there");
        m.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn an_upstream_app_follows_its_service() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = crossbeam_channel::unbounded();
        let cfg = config(&format!("[app up]\nhosts = up.test\nupstream = {addr}\n"));
        let m = start(&cfg, tx).expect("start");
        wait_for(&rx, WAIT, "healthy", |s| {
            one(s, "up", |i| i.state == InstanceState::Healthy)
        });
        drop(listener);
        wait_for(&rx, WAIT, "unhealthy", |s| {
            one(s, "up", |i| matches!(i.state, InstanceState::Unhealthy(_)))
        });
        m.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn dropping_the_manager_stops_its_children() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let m = start(
            &config("[app s]\nhosts = s.test\ncommand = exec sleep 30\n"),
            tx,
        )
        .expect("start");
        let s = wait_for(&rx, WAIT, "a pid", |s| one(s, "s", |i| i.pid.is_some()));
        let pid = only(&s, "s")[0].pid.expect("pid");
        drop(m);
        assert!(gone(pid), "pid {pid} left behind");
    }
}
