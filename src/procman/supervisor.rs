//! The manager thread: the reconciliation loop that owns every app instance.
//!
//! It sleeps on one channel of [`Event`]s (a child exited, a health result, a
//! reload, shutdown) with a deadline for its next timer (a restart due, a start
//! timeout, a SIGTERM or SIGKILL due), and after each wake-up converges: starts
//! what should run, stops what should not, switches generations, and publishes
//! a [`Snapshot`] when anything visible changed. Every child is spawned and
//! reaped here; helper threads (a health checker per instance, an exit waiter
//! and two output readers per process) only report.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::child::{self, Launch, PortHold, Watchdog};
use super::health::{self, Target, CHECK_TIMEOUT};
use super::lines::{self, MAX_LINE_BYTES};
use super::plan::{self, Change};
use super::slot::{secs, Notes, Proc, Slot};
use crate::config::{AppConfig, AppRun, Config};
use crate::routes::{InstanceState, Snapshot};
use crate::sys::{self, GroupSignal};

/// How long a removed or replaced instance keeps running after it stopped
/// taking new requests, so that requests already sent to it can finish.
pub const DRAIN_DELAY: Duration = Duration::from_secs(1);
/// The loop wakes at least this often even with nothing due (a safety net:
/// every timer is also computed exactly).
const MAX_TICK: Duration = Duration::from_secs(1);
/// The loop never wakes sooner than this after its last turn without an event,
/// so a timer bug cannot become a busy loop.
const MIN_TICK: Duration = Duration::from_millis(10);
/// After SIGKILL at shutdown, how long to wait for the processes to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);
/// At the end, how long to wait for helper threads (a health check in flight
/// takes up to [`CHECK_TIMEOUT`]).
const HELPER_WAIT: Duration = Duration::from_secs(CHECK_TIMEOUT.as_secs() + 1);
/// Events handled per turn before timers get a look.
const MAX_EVENTS_PER_TURN: usize = 256;

/// What wakes the manager thread.
#[derive(Debug)]
pub enum Event {
    /// A new desired state (a re-read config that parsed).
    Reload(Box<Config>),
    /// Stop everything: SIGTERM now, SIGKILL after the grace period (`None`:
    /// the config's `shutdown_grace`).
    Shutdown(Option<Duration>),
    /// A health check of (`slot`, `run`) finished.
    Health {
        /// The instance.
        slot: u64,
        /// Which of its processes (or checkers) it was about.
        run: u64,
        /// Passed, or why not.
        result: Result<(), String>,
    },
    /// The process of (`slot`, `run`) exited; it is not reaped yet.
    Exited {
        /// The instance.
        slot: u64,
        /// Which of its processes.
        run: u64,
    },
}

/// The state of the manager thread.
pub struct Supervisor {
    config: Config,
    slots: Vec<Slot>,
    next_id: u64,
    /// The last generation handed out per app name (a re-added app continues).
    generations: HashMap<String, u64>,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    publish: Sender<Snapshot>,
    watchdog: Watchdog,
    helpers: Vec<JoinHandle<()>>,
    /// Cloned into every helper thread; disconnected once all have ended.
    alive_tx: Option<Sender<()>>,
    alive_rx: Receiver<()>,
    dirty: bool,
    /// Log lines waiting for the next publish (see [`Notes`]).
    notes: Notes,
    /// Shutting down: the SIGKILL deadline.
    closing: Option<Instant>,
}

impl Supervisor {
    /// A supervisor for `config`; `events_tx` must be the sender of `events`.
    pub fn new(
        config: Config,
        publish: Sender<Snapshot>,
        events_tx: Sender<Event>,
        events: Receiver<Event>,
        watchdog: Watchdog,
    ) -> Supervisor {
        let (alive_tx, alive_rx) = crossbeam_channel::bounded(0);
        Supervisor {
            config,
            slots: Vec::new(),
            next_id: 0,
            generations: HashMap::new(),
            events_tx,
            events,
            publish,
            watchdog,
            helpers: Vec::new(),
            alive_tx: Some(alive_tx),
            alive_rx,
            dirty: true,
            notes: Notes::new(),
            closing: None,
        }
    }

    /// The loop; returns once shutdown is complete.
    pub fn run(mut self) {
        let now = Instant::now();
        let apps = self.config.apps.clone();
        for app in &apps {
            self.add_slot(app, now);
        }
        loop {
            let now = Instant::now();
            self.converge(now);
            self.join_finished_helpers();
            if self.dirty {
                self.publish_snapshot();
            }
            for (level, line) in self.notes.drain(..) {
                log::log!(level, "{line}");
            }
            if let Some(kill_at) = self.closing {
                if self.slots.is_empty() {
                    break;
                }
                if now >= kill_at + REAP_WAIT {
                    self.abandon();
                    break;
                }
            }
            // Our own sender keeps the channel connected: only timeouts and events.
            if let Ok(event) = self.events.recv_deadline(self.next_wake(now)) {
                self.handle(event);
                let more: Vec<Event> = self.events.try_iter().take(MAX_EVENTS_PER_TURN).collect();
                for event in more {
                    self.handle(event);
                }
            }
        }
        self.finish_helpers();
        log::info!("process manager stopped");
    }

    fn grace(&self) -> Duration {
        self.config.proxy.shutdown_grace
    }

    /// The working directory of a `command` app without `dir`: the config file's.
    fn default_dir(&self) -> Option<PathBuf> {
        self.config
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
    }

    fn add_slot(&mut self, app: &AppConfig, now: Instant) -> u64 {
        let last = self.generations.entry(app.name.clone()).or_insert(0);
        *last += 1;
        let generation = *last;
        self.next_id += 1;
        self.slots
            .push(Slot::new(self.next_id, app, generation, now));
        self.dirty = true;
        generation
    }

    fn handle(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Reload(config) => self.reload(*config, now),
            Event::Shutdown(grace) => self.begin_shutdown(grace, now),
            Event::Health { slot, run, result } => self.on_health(slot, run, result, now),
            Event::Exited { slot, run } => self.on_exit(slot, run, now),
        }
    }

    // ---- reconciliation ----------------------------------------------------

    fn converge(&mut self, now: Instant) {
        self.switch_generations(now);
        for i in 0..self.slots.len() {
            self.drive(i, now);
        }
        let before = self.slots.len();
        self.slots.retain(|s| !(s.retiring && s.proc.is_none()));
        if self.slots.len() != before {
            self.dirty = true;
        }
    }

    /// Blue-green: retires superseded instances once the newest generation of
    /// their app is healthy (after a drain), at once when they themselves are
    /// not healthy, and at once when they hold the fixed port the newest needs.
    fn switch_generations(&mut self, now: Instant) {
        let mut newest: HashMap<Arc<str>, usize> = HashMap::new();
        for (i, s) in self.slots.iter().enumerate() {
            if s.retiring {
                continue;
            }
            let entry = newest.entry(s.name.clone()).or_insert(i);
            if s.generation > self.slots[*entry].generation {
                *entry = i;
            }
        }
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.retiring || !s.superseded {
                continue;
            }
            let Some(&n) = newest.get(&s.name) else {
                continue;
            };
            let new = &self.slots[n];
            let drain = if new.state == InstanceState::Healthy {
                note!(
                    self.notes,
                    log::Level::Info,
                    "app {}: generation {} is healthy; draining generation {} for {} s (longer while it still answers requests, up to shutdown_grace)",
                    s.name,
                    new.generation,
                    s.generation,
                    secs(DRAIN_DELAY)
                );
                Some(DRAIN_DELAY)
            } else if s.state != InstanceState::Healthy {
                note!(
                    self.notes,
                    log::Level::Info,
                    "app {}: stopping generation {} (replaced, and not healthy)",
                    s.name,
                    s.generation
                );
                Some(Duration::ZERO)
            } else if s.proc.is_some()
                && new.proc.is_none()
                && new.fixed_port().is_some_and(|p| p == s.addr.port())
            {
                note!(
                    self.notes,
                    log::Level::Warn,
                    "app {}: port {} is fixed: stopping generation {} before generation {} \
                     starts (503 until it is healthy)",
                    s.name,
                    s.addr.port(),
                    s.generation,
                    new.generation
                );
                Some(Duration::ZERO)
            } else {
                None
            };
            if let Some(drain) = drain {
                self.retire(i, now, drain);
            }
        }
    }

    /// Takes slot `i` out of the snapshot and orders its stop: SIGTERM after
    /// `drain`, SIGKILL `shutdown_grace` later.
    fn retire(&mut self, i: usize, now: Instant, drain: Duration) {
        let grace = self.grace();
        let tunnel_drain = self.config.proxy.tunnel_drain_timeout;
        self.slots[i].retire(now, drain, grace, tunnel_drain);
        self.dirty = true;
    }

    /// Moves slot `i` one step towards where it should be.
    fn drive(&mut self, i: usize, now: Instant) {
        let grace = self.grace();
        let s = &mut self.slots[i];
        if s.proc.is_some() {
            self.dirty |= s.check_timers(now, grace, &mut self.notes);
            return;
        }
        if s.retiring || now < s.next_start {
            return;
        }
        if s.is_command() {
            if self.fixed_port_free(i) {
                self.start_process(i, now);
            }
        } else if s.checker.is_none() {
            self.start_upstream_checker(i, now);
        }
    }

    /// False while a retiring or superseded process holds the fixed port slot
    /// `i` needs (its start waits for that exit).
    fn fixed_port_free(&self, i: usize) -> bool {
        let Some(port) = self.slots[i].fixed_port() else {
            return true;
        };
        !self.slots.iter().enumerate().any(|(j, s)| {
            j != i && (s.retiring || s.superseded) && s.proc.is_some() && s.addr.port() == port
        })
    }

    fn start_process(&mut self, i: usize, now: Instant) {
        let app = self.slots[i].app.clone();
        let AppRun::Command {
            command,
            dir,
            env,
            port,
        } = &app.run
        else {
            return;
        };
        self.slots[i].attempts = self.slots[i].attempts.saturating_add(1);
        let (port, hold) = match port {
            Some(p) => (*p, None),
            None => match PortHold::new() {
                Ok(h) => (h.port(), Some(h)),
                Err(e) => return self.start_failed(i, now, format!("no free port: {e}")),
            },
        };
        let dir = dir.clone().or_else(|| self.default_dir());
        let launch = Launch {
            command,
            dir: dir.as_deref(),
            env,
            port,
        };
        let (id, run) = (self.slots[i].id, self.slots[i].run + 1);
        let mut child = match child::spawn(&launch, &self.watchdog, hold) {
            Ok(c) => c,
            Err(e) => return self.start_failed(i, now, format!("cannot start: {e}")),
        };
        let pid = child.id();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let target = Target {
            addr,
            path: app.health.clone(),
            hosts: app.hosts.clone(),
            upstream: false,
        };
        let watched = self
            .watch_process(&app.name, id, run, &mut child)
            .and_then(|()| self.spawn_checker(target, id, run, &app.name));
        let checker = match watched {
            Ok(checker) => checker,
            Err(e) => {
                let _ = sys::signal_group(pid, GroupSignal::Kill);
                let _ = child.wait();
                return self.start_failed(i, now, format!("cannot watch pid {pid}: {e}"));
            }
        };
        let proc = Proc {
            child,
            pid,
            started: now,
            ready: false,
            stop: None,
        };
        self.slots[i].started(proc, run, addr, checker, &mut self.notes);
        self.dirty = true;
    }

    /// A start attempt of slot `i` failed: back off as after an exit.
    fn start_failed(&mut self, i: usize, now: Instant, why: String) {
        self.slots[i].start_failed(why, now, &mut self.notes);
        self.dirty = true;
    }

    fn start_upstream_checker(&mut self, i: usize, now: Instant) {
        let s = &self.slots[i];
        let target = Target {
            addr: s.addr,
            path: s.app.health.clone(),
            hosts: s.app.hosts.clone(),
            upstream: true,
        };
        let (id, run, name) = (s.id, s.run + 1, s.name.clone());
        match self.spawn_checker(target, id, run, &name) {
            Ok(checker) => {
                let s = &mut self.slots[i];
                s.run = run;
                s.checker = Some(checker);
            }
            Err(e) => {
                log::error!("app {name}: cannot start its health checker: {e}");
                self.slots[i].next_start = now + MAX_TICK;
            }
        }
    }

    /// Starts the threads that drain the child's stdout and stderr into the log
    /// and report its exit.
    fn watch_process(
        &mut self,
        name: &str,
        slot: u64,
        run: u64,
        child: &mut Child,
    ) -> io::Result<()> {
        let pid = child.id();
        let app: Arc<str> = name.into();
        if let Some(out) = child.stdout.take() {
            let app = app.clone();
            self.spawn_helper(format!("out-{name}"), move || log_lines(&app, out))?;
        }
        if let Some(err) = child.stderr.take() {
            let app = app.clone();
            self.spawn_helper(format!("err-{name}"), move || log_lines(&app, err))?;
        }
        let events = self.events_tx.clone();
        self.spawn_helper(format!("wait-{name}"), move || {
            if let Err(e) = sys::wait_exited(pid) {
                log::error!("app {app}: waiting for pid {pid} failed: {e}");
            }
            let _ = events.send(Event::Exited { slot, run });
        })
    }

    fn spawn_checker(
        &mut self,
        target: Target,
        slot: u64,
        run: u64,
        name: &str,
    ) -> io::Result<Sender<()>> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let events = self.events_tx.clone();
        self.spawn_helper(format!("health-{name}"), move || {
            let report = |result| events.send(Event::Health { slot, run, result }).is_ok();
            health::run_checker(target, report, stop_rx)
        })?;
        Ok(stop_tx)
    }

    fn spawn_helper(
        &mut self,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        let alive = self.alive_tx.clone();
        let handle = thread::Builder::new().name(name).spawn(move || {
            let _alive = alive;
            body();
        })?;
        self.helpers.push(handle);
        Ok(())
    }

    // ---- events --------------------------------------------------------------

    fn on_health(&mut self, id: u64, run: u64, result: Result<(), String>, now: Instant) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.id == id && s.run == run) {
            self.dirty |= s.on_health(result, now, &mut self.notes);
        }
    }

    fn on_exit(&mut self, id: u64, run: u64, now: Instant) {
        let closing = self.closing.is_some();
        let Some(s) = self.slots.iter_mut().find(|s| s.id == id && s.run == run) else {
            return;
        };
        let Some(mut p) = s.proc.take() else { return };
        // Whatever is left of the group (background children, the watchdog)
        // goes with its main process; the unreaped pid still pins the group id.
        let _ = sys::signal_group(p.pid, GroupSignal::Kill);
        let status = match p.child.wait() {
            Ok(status) => child::describe_exit(status),
            Err(e) => format!("unknown end ({e})"),
        };
        // A finished slot is retiring now, and `converge` removes it.
        s.exited(p.pid, status, now, closing, &mut self.notes);
        self.dirty = true;
    }

    fn reload(&mut self, config: Config, now: Instant) {
        if self.closing.is_some() {
            log::warn!("reload ignored: shutting down");
            return;
        }
        let mut heads: Vec<&Slot> = Vec::new();
        for s in self.slots.iter().filter(|s| !s.retiring) {
            match heads.iter_mut().find(|h| h.name == s.name) {
                Some(h) if h.generation < s.generation => *h = s,
                Some(_) => {}
                None => heads.push(s),
            }
        }
        let current: Vec<&AppConfig> = heads.iter().map(|s| &s.app).collect();
        let changes = plan::diff(&current, &config.apps);
        let mut counts = [0usize; 4];
        for change in &changes {
            match change {
                Change::Add(name) => {
                    if let Some(app) = config.apps.iter().find(|a| &a.name == name) {
                        self.add_slot(app, now);
                        self.notes
                            .push((log::Level::Info, format!("app {name}: added")));
                        counts[0] += 1;
                    }
                }
                Change::Replace(name) => {
                    if let Some(app) = config.apps.iter().find(|a| &a.name == name) {
                        for s in self
                            .slots
                            .iter_mut()
                            .filter(|s| !s.retiring && s.name.as_ref() == name)
                        {
                            s.superseded = true;
                        }
                        let generation = self.add_slot(app, now);
                        note!(
                            self.notes,
                            log::Level::Info,
                            "app {name}: changed; starting generation {generation} \
                             (the running one serves until it is healthy)"
                        );
                        counts[1] += 1;
                    }
                }
                Change::Keep(name) => {
                    if let Some(app) = config.apps.iter().find(|a| &a.name == name) {
                        // Only its line can differ: keep the newest one's current.
                        for s in self
                            .slots
                            .iter_mut()
                            .filter(|s| !s.retiring && s.name.as_ref() == name)
                        {
                            if plan::same_app(&s.app, app) {
                                s.app.line = app.line;
                            }
                        }
                    }
                    counts[2] += 1;
                }
                Change::Remove(name) => {
                    for i in 0..self.slots.len() {
                        if !self.slots[i].retiring && self.slots[i].name.as_ref() == name {
                            self.retire(i, now, DRAIN_DELAY);
                        }
                    }
                    note!(
                        self.notes,
                        log::Level::Info,
                        "app {name}: removed; stopping after a {} s drain",
                        secs(DRAIN_DELAY)
                    );
                    counts[3] += 1;
                }
            }
        }
        self.config = config;
        note!(
            self.notes,
            log::Level::Info,
            "reload: {} added, {} changed, {} unchanged, {} removed",
            counts[0],
            counts[1],
            counts[2],
            counts[3]
        );
    }

    fn begin_shutdown(&mut self, grace: Option<Duration>, now: Instant) {
        if self.closing.is_some() {
            return;
        }
        let grace = grace.unwrap_or(self.grace());
        self.closing = Some(now + grace);
        let running = self.slots.iter().filter(|s| s.proc.is_some()).count();
        note!(
            self.notes,
            log::Level::Info,
            "stopping {running} app process(es): SIGTERM now, SIGKILL after {} s",
            secs(grace)
        );
        for s in &mut self.slots {
            s.retire(now, Duration::ZERO, grace, Duration::ZERO);
        }
        self.dirty = true;
    }

    /// Shutdown ran out of time even after SIGKILL: reap what can be, report the rest.
    fn abandon(&mut self) {
        for s in &mut self.slots {
            if let Some(mut p) = s.proc.take() {
                match p.child.try_wait() {
                    Ok(Some(status)) => log::info!(
                        "app {}: stopped pid {} ({})",
                        s.name,
                        p.pid,
                        child::describe_exit(status)
                    ),
                    _ => log::error!(
                        "app {}: pid {} did not end after SIGKILL; leaving it",
                        s.name,
                        p.pid
                    ),
                }
            }
        }
        self.slots.clear();
    }

    // ---- helpers and publishing ----------------------------------------------

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + MAX_TICK;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(t) = s.next_timer() {
                wake = wake.min(t);
            }
            // A start waiting for a fixed port is woken by the exit of its holder.
            let waiting = s.proc.is_none()
                && !s.retiring
                && (s.is_command() || s.checker.is_none())
                && self.fixed_port_free(i);
            if waiting {
                wake = wake.min(s.next_start);
            }
        }
        if let Some(kill_at) = self.closing {
            wake = wake.min(kill_at + REAP_WAIT);
        }
        wake.max(now + MIN_TICK)
    }

    fn publish_snapshot(&mut self) {
        self.dirty = false;
        let closing = self.closing.is_some();
        let instances = self
            .slots
            .iter()
            .filter(|s| !s.retiring || closing)
            .map(Slot::instance)
            .collect();
        // The resolver may be gone at shutdown: nothing to tell then.
        let _ = self.publish.send(Snapshot { instances });
    }

    fn join_finished_helpers(&mut self) {
        if !self.helpers.iter().any(JoinHandle::is_finished) {
            return;
        }
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.helpers)
            .into_iter()
            .partition(JoinHandle::is_finished);
        self.helpers = running;
        for h in done {
            if h.join().is_err() {
                log::error!("a process-manager helper thread panicked");
            }
        }
    }

    /// Waits (bounded) for every helper thread to end and joins them.
    fn finish_helpers(&mut self) {
        self.alive_tx = None;
        let all_ended = matches!(
            self.alive_rx.recv_deadline(Instant::now() + HELPER_WAIT),
            Err(RecvTimeoutError::Disconnected)
        );
        let helpers = std::mem::take(&mut self.helpers);
        let mut stuck = 0;
        for h in helpers {
            // Once `alive` is disconnected every helper is past its work.
            if all_ended || h.is_finished() {
                if h.join().is_err() {
                    log::error!("a process-manager helper thread panicked");
                }
            } else {
                stuck += 1;
            }
        }
        if stuck > 0 {
            log::warn!(
                "{stuck} helper thread(s) still running (an app's output pipe held open by a process outside its group?)"
            );
        }
    }
}

/// Logs each line of an app's output stream as `[app] line` until its end.
fn log_lines(app: &str, stream: impl Read) {
    let result = lines::pump(stream, MAX_LINE_BYTES, |line| {
        crate::logger::app_line(app, line);
    });
    if let Err(e) = result {
        log::debug!("app {app}: output pipe: {e}");
    }
}
