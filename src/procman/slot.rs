//! One instance of an app (one generation of its config, across restarts): what
//! the snapshot calls an [`AppInstance`], plus its process and timers, and the
//! transitions that depend on the instance alone: a health result, a timer
//! due, an exit. The supervisor does the I/O around them (spawning, signals,
//! reaping) and the decisions that involve several instances.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::backoff::Backoff;
use crate::config::{AppConfig, AppRun};
use crate::routes::{AppInstance, InstanceState};
use crate::sys::{self, GroupSignal};

/// Log lines about state changes, held back by the supervisor until the
/// snapshot showing the new state is published: whoever waits for a line (a
/// person, a test) then finds the route map already on its way.
pub type Notes = Vec<(log::Level, String)>;

/// An instance that was healthy and has failed every check for this long is
/// stopped and restarted.
pub const UNHEALTHY_RESTART_AFTER: Duration = Duration::from_secs(10);

/// A stop in progress: SIGTERM to the group at `term_at`, SIGKILL at `kill_at`.
#[derive(Debug)]
pub struct StopOrder {
    term_at: Instant,
    kill_at: Instant,
    termed: bool,
    killed: bool,
    /// For a drain: what SIGTERM waits for.
    busy: Option<Drain>,
    grace: Duration,
}

/// What a draining instance's SIGTERM waits for: the requests it is still
/// answering, up to `shutdown_grace`, and the tunnels (WebSockets) open to it,
/// up to `tunnel_drain_timeout`: a tunnel lives for as long as its client
/// stays, so it gets a deadline of its own.
#[derive(Debug)]
pub struct Drain {
    /// Requests forwarded to the instance right now ...
    pub in_flight: Arc<AtomicUsize>,
    /// ... waited for until then.
    pub requests_by: Instant,
    /// Tunnels open to the instance right now ...
    pub tunnels: Arc<AtomicUsize>,
    /// ... waited for until then.
    pub tunnels_by: Instant,
}

impl Drain {
    /// When SIGTERM is held back at `now`, the latest it may be held to.
    fn holds_until(&self, now: Instant) -> Option<Instant> {
        let requests = self.in_flight.load(Ordering::SeqCst) > 0 && now < self.requests_by;
        let tunnels = self.tunnels.load(Ordering::SeqCst) > 0 && now < self.tunnels_by;
        match (requests, tunnels) {
            (false, false) => None,
            (true, false) => Some(self.requests_by),
            (false, true) => Some(self.tunnels_by),
            (true, true) => Some(self.requests_by.max(self.tunnels_by)),
        }
    }
}

impl StopOrder {
    /// SIGTERM at `term_at`, SIGKILL `grace` later.
    pub fn new(term_at: Instant, grace: Duration) -> StopOrder {
        StopOrder {
            term_at,
            kill_at: term_at + grace,
            termed: false,
            killed: false,
            busy: None,
            grace,
        }
    }

    /// A drain: SIGTERM at `term_at` or, while `drain` holds it back (requests
    /// in flight, open tunnels), as soon as it no longer does.
    pub fn draining(term_at: Instant, grace: Duration, drain: Drain) -> StopOrder {
        StopOrder {
            busy: Some(drain),
            ..StopOrder::new(term_at, grace)
        }
    }

    /// When SIGTERM is due: `Some(at)` with `at <= now` means now.
    fn term_due(&mut self, now: Instant) -> Option<Instant> {
        if self.termed {
            return None;
        }
        if now >= self.term_at {
            if let Some(until) = self.busy.as_ref().and_then(|d| d.holds_until(now)) {
                // Still answering requests or carrying tunnels: look again shortly.
                self.term_at = (now + DRAIN_POLL).min(until);
                self.kill_at = self.term_at + self.grace;
                return Some(self.term_at);
            }
        }
        Some(self.term_at)
    }

    /// Sends the signals that are due to the group of `pid`.
    pub fn drive(&mut self, name: &str, pid: u32, now: Instant) {
        if self.term_due(now).is_some_and(|at| at <= now) {
            self.termed = true;
            if let Err(e) = sys::signal_group(pid, GroupSignal::Term) {
                log::debug!("app {name}: SIGTERM to group {pid}: {e}");
            }
        }
        if !self.killed && now >= self.kill_at {
            self.killed = true;
            log::warn!(
                "app {name}: pid {pid} still running {} s after SIGTERM; sending SIGKILL",
                secs(self.kill_at.saturating_duration_since(self.term_at))
            );
            if let Err(e) = sys::signal_group(pid, GroupSignal::Kill) {
                log::debug!("app {name}: SIGKILL to group {pid}: {e}");
            }
        }
    }

    /// The next signal due, if any is left.
    fn next_due(&self) -> Option<Instant> {
        match (self.termed, self.killed) {
            (false, _) => Some(self.term_at),
            (true, false) => Some(self.kill_at),
            (true, true) => None,
        }
    }
}

/// How often a draining instance's in-flight count is looked at.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// A running process of an instance.
#[derive(Debug)]
pub struct Proc {
    /// The `sh -c` child; reaped only by the supervisor.
    pub child: Child,
    /// Its pid, which is also its process group id.
    pub pid: u32,
    /// When it was spawned.
    pub started: Instant,
    /// It has passed a health check since it started.
    pub ready: bool,
    /// Its stop, once ordered.
    pub stop: Option<StopOrder>,
}

/// One instance of an app.
#[derive(Debug)]
pub struct Slot {
    /// Unique within the manager; events name it.
    pub id: u64,
    /// The config it runs.
    pub app: AppConfig,
    /// The app's name.
    pub name: Arc<str>,
    /// Its generation (1, then +1 per replacement).
    pub generation: u64,
    /// Where it listens (for `command` apps: the port of its current process).
    pub addr: SocketAddr,
    /// Its published state.
    pub state: InstanceState,
    /// Start attempts so far (restarts are attempts - 1).
    pub attempts: u32,
    /// How its last process ended (or why its last start failed).
    pub last_exit: Option<String>,
    /// Its restart schedule.
    pub backoff: Backoff,
    /// A newer generation exists: this one serves only while it is healthy and
    /// the newer one is not, and is never restarted.
    pub superseded: bool,
    /// Removed, replaced or shutting down: out of the snapshot, being stopped.
    pub retiring: bool,
    /// Its last process never became ready: the next one says so until ready.
    pub never_ready: bool,
    /// When the next process (command) or checker (upstream) may start.
    pub next_start: Instant,
    /// Counts processes (or checkers): events of an older one are ignored.
    pub run: u64,
    /// Its process, while it has one.
    pub proc: Option<Proc>,
    /// Dropping it stops the health checker.
    pub checker: Option<Sender<()>>,
    /// Requests being forwarded to it (counted by the workers through the route).
    pub in_flight: Arc<AtomicUsize>,
    /// Tunnels open to it (counted by the workers through the route).
    pub tunnels: Arc<AtomicUsize>,
    /// Healthy without a break since.
    pub healthy_since: Option<Instant>,
    /// Unhealthy without a break since.
    pub unhealthy_since: Option<Instant>,
}

impl Slot {
    /// A new instance of `app`, due to start at `now`.
    pub fn new(id: u64, app: &AppConfig, generation: u64, now: Instant) -> Slot {
        let addr = match &app.run {
            AppRun::Upstream { addr } => *addr,
            AppRun::Command { port, .. } => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, port.unwrap_or(0)))
            }
        };
        Slot {
            id,
            app: app.clone(),
            name: app.name.as_str().into(),
            generation,
            addr,
            state: InstanceState::Starting,
            attempts: 0,
            last_exit: None,
            backoff: Backoff::default(),
            superseded: false,
            retiring: false,
            never_ready: false,
            next_start: now,
            run: 0,
            proc: None,
            checker: None,
            in_flight: Arc::default(),
            tunnels: Arc::default(),
            healthy_since: None,
            unhealthy_since: None,
        }
    }

    /// True for `command` apps (instances with processes).
    pub fn is_command(&self) -> bool {
        matches!(self.app.run, AppRun::Command { .. })
    }

    /// The app's fixed `port`, if it has one.
    pub fn fixed_port(&self) -> Option<u16> {
        match self.app.run {
            AppRun::Command { port, .. } => port,
            AppRun::Upstream { .. } => None,
        }
    }

    /// What the snapshot shows of it.
    pub fn instance(&self) -> AppInstance {
        AppInstance {
            app: self.name.clone(),
            hosts: self.app.hosts.clone(),
            addr: self.addr,
            state: self.state.clone(),
            pid: self.proc.as_ref().map(|p| p.pid),
            restarts: self.attempts.saturating_sub(1),
            last_exit: self.last_exit.clone(),
            generation: self.generation,
            in_flight: self.in_flight.clone(),
            tunnels: self.tunnels.clone(),
        }
    }

    /// Takes it out of service: state `Stopping`, checker stopped, and its
    /// process's stop ordered: SIGTERM after `drain` (held back while requests
    /// are answered, up to `grace` more, and while tunnels are open, up to
    /// `tunnel_drain`), SIGKILL `grace` later. A stop already under way (a
    /// drain, a restart) is hurried, never delayed.
    pub fn retire(
        &mut self,
        now: Instant,
        drain: Duration,
        grace: Duration,
        tunnel_drain: Duration,
    ) {
        self.retiring = true;
        self.checker = None;
        self.state = InstanceState::Stopping;
        if let Some(p) = &mut self.proc {
            let order = if drain.is_zero() {
                StopOrder::new(now, grace)
            } else {
                StopOrder::draining(
                    now + drain,
                    grace,
                    Drain {
                        in_flight: self.in_flight.clone(),
                        requests_by: now + drain + grace,
                        tunnels: self.tunnels.clone(),
                        tunnels_by: now + drain + tunnel_drain,
                    },
                )
            };
            match &mut p.stop {
                Some(stop) => {
                    stop.term_at = stop.term_at.min(order.term_at);
                    stop.kill_at = stop.kill_at.min(order.kill_at);
                    if drain.is_zero() {
                        // Hurried (shutdown, restart): no more waiting for requests.
                        stop.busy = None;
                    }
                }
                None => p.stop = Some(order),
            }
        }
    }

    /// A new process runs (on `addr`, checked by `checker`, as `run`).
    pub fn started(
        &mut self,
        proc: Proc,
        run: u64,
        addr: SocketAddr,
        checker: Sender<()>,
        notes: &mut Notes,
    ) {
        let generation = match self.generation {
            1 => String::new(),
            g => format!(" (generation {g})"),
        };
        note!(
            notes,
            log::Level::Info,
            "app {}: started pid {} on port {}{generation}",
            self.name,
            proc.pid,
            addr.port()
        );
        self.run = run;
        self.addr = addr;
        self.checker = Some(checker);
        self.healthy_since = None;
        self.unhealthy_since = None;
        self.state = if self.never_ready {
            InstanceState::NeverReady { port: addr.port() }
        } else {
            InstanceState::Starting
        };
        self.proc = Some(proc);
    }

    /// A start attempt failed for `why`: back off as after an exit.
    pub fn start_failed(&mut self, why: String, now: Instant, notes: &mut Notes) {
        let delay = self.backoff.next_delay(Duration::ZERO);
        let until = now + delay;
        note!(
            notes,
            log::Level::Warn,
            "app {}: {why}; retrying in {} s",
            self.name,
            delay.as_secs()
        );
        self.last_exit = Some(why);
        self.state = InstanceState::BackingOff { until };
        self.next_start = until;
    }

    /// Applies a health result of its current run; true when the published
    /// state changed. A `command` instance being stopped ignores results.
    pub fn on_health(
        &mut self,
        result: Result<(), String>,
        now: Instant,
        notes: &mut Notes,
    ) -> bool {
        if self.retiring {
            return false;
        }
        let command = self.is_command();
        if command {
            let Some(p) = &mut self.proc else {
                return false;
            };
            if p.stop.is_some() {
                return false;
            }
            p.ready |= result.is_ok();
        }
        match result {
            Ok(()) if self.state != InstanceState::Healthy => {
                note!(
                    notes,
                    log::Level::Info,
                    "app {}: health check passed at {}",
                    self.name,
                    self.addr
                );
                self.state = InstanceState::Healthy;
                self.healthy_since = Some(now);
                self.unhealthy_since = None;
                self.never_ready = false;
                true
            }
            // An upstream's first failure is news too: nothing else will say it.
            Err(why)
                if self.state == InstanceState::Healthy
                    || (!command && self.state == InstanceState::Starting) =>
            {
                note!(
                    notes,
                    log::Level::Warn,
                    "app {}: unhealthy at {}: {why}",
                    self.name,
                    self.addr
                );
                self.state = InstanceState::Unhealthy(why);
                self.healthy_since = None;
                self.unhealthy_since = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Acts on its process's timers: a start timeout or a long unhealthy spell
    /// orders a stop (a restart follows the exit), and due signals are sent.
    /// True when the published state changed.
    pub fn check_timers(&mut self, now: Instant, grace: Duration, notes: &mut Notes) -> bool {
        let mut changed = false;
        let Some(p) = &mut self.proc else {
            return false;
        };
        if p.stop.is_none() && !self.retiring {
            if !p.ready && now >= p.started + self.app.start_timeout {
                let port = self.addr.port();
                note!(
                    notes,
                    log::Level::Warn,
                    "app {}: never became ready on port {port} within {} s (does it listen on $PORT?)",
                    self.name,
                    secs(self.app.start_timeout)
                );
                self.never_ready = true;
                self.state = InstanceState::NeverReady { port };
                self.checker = None;
                p.stop = Some(StopOrder::new(now, grace));
                changed = true;
            } else if let (InstanceState::Unhealthy(_), Some(since)) =
                (&self.state, self.unhealthy_since)
            {
                if now >= since + UNHEALTHY_RESTART_AFTER {
                    note!(
                        notes,
                        log::Level::Warn,
                        "app {}: unhealthy for {} s; restarting",
                        self.name,
                        secs(UNHEALTHY_RESTART_AFTER)
                    );
                    self.checker = None;
                    p.stop = Some(StopOrder::new(now, grace));
                }
            }
        }
        if let Some(stop) = &mut p.stop {
            stop.drive(&self.name, p.pid, now);
        }
        changed
    }

    /// The next time [`Slot::check_timers`] has something to do.
    pub fn next_timer(&self) -> Option<Instant> {
        let p = self.proc.as_ref()?;
        if let Some(stop) = &p.stop {
            return stop.next_due();
        }
        if self.retiring {
            return None;
        }
        if !p.ready {
            return Some(p.started + self.app.start_timeout);
        }
        match (&self.state, self.unhealthy_since) {
            (InstanceState::Unhealthy(_), Some(since)) => Some(since + UNHEALTHY_RESTART_AFTER),
            _ => None,
        }
    }

    /// Its process (now taken out and reaped by the caller) ended as `status`.
    /// A retiring or superseded instance (or any, when `closing`) is done: true,
    /// remove it. Otherwise it backs off and restarts later: false.
    pub fn exited(
        &mut self,
        pid: u32,
        status: String,
        now: Instant,
        closing: bool,
        notes: &mut Notes,
    ) -> bool {
        self.proc = None;
        self.checker = None;
        self.last_exit = Some(status.clone());
        if self.retiring || self.superseded || closing {
            note!(
                notes,
                log::Level::Info,
                "app {}: stopped pid {pid} ({status})",
                self.name
            );
            self.retiring = true;
            return true;
        }
        let healthy_for = self
            .healthy_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let delay = self.backoff.next_delay(healthy_for);
        let until = now + delay;
        note!(
            notes,
            log::Level::Warn,
            "app {}: exited ({status}); restarting in {} s",
            self.name,
            delay.as_secs()
        );
        self.state = InstanceState::BackingOff { until };
        self.next_start = until;
        self.healthy_since = None;
        self.unhealthy_since = None;
        false
    }
}

/// Seconds for log lines: "1", "0.5", "60".
pub fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(run: AppRun) -> AppConfig {
        AppConfig {
            name: "a".to_string(),
            line: 1,
            hosts: vec!["a.test".to_string()],
            run,
            health: None,
            start_timeout: Duration::from_secs(60),
        }
    }

    fn command() -> AppConfig {
        app(AppRun::Command {
            command: "true".to_string(),
            dir: None,
            env: Vec::new(),
            port: None,
        })
    }

    fn upstream() -> AppConfig {
        app(AppRun::Upstream {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
        })
    }

    fn backing_off_for(s: &Slot, now: Instant) -> Option<Duration> {
        match s.state {
            InstanceState::BackingOff { until } => Some(until - now),
            _ => None,
        }
    }

    #[test]
    fn upstream_goes_healthy_then_unhealthy_then_healthy() {
        let now = Instant::now();
        let mut s = Slot::new(1, &upstream(), 1, now);
        assert!(s.on_health(Ok(()), now, &mut Vec::new()));
        assert_eq!(s.state, InstanceState::Healthy);
        assert!(!s.on_health(Ok(()), now, &mut Vec::new()));
        assert!(s.on_health(Err("refused".into()), now, &mut Vec::new()));
        assert_eq!(s.state, InstanceState::Unhealthy("refused".into()));
        assert!(!s.on_health(Err("still refused".into()), now, &mut Vec::new()));
        assert!(s.on_health(Ok(()), now, &mut Vec::new()));
        assert_eq!(s.state, InstanceState::Healthy);
    }

    #[test]
    fn upstream_first_failure_is_unhealthy() {
        let now = Instant::now();
        let mut s = Slot::new(1, &upstream(), 1, now);
        assert!(s.on_health(Err("refused".into()), now, &mut Vec::new()));
        assert!(matches!(s.state, InstanceState::Unhealthy(_)));
    }

    #[test]
    fn command_without_a_process_ignores_health() {
        let now = Instant::now();
        let mut s = Slot::new(1, &command(), 1, now);
        assert!(!s.on_health(Ok(()), now, &mut Vec::new()));
        assert_eq!(s.state, InstanceState::Starting);
    }

    /// A drain from `t0`: SIGTERM due at `t0`, requests waited for 10 s,
    /// tunnels 300 s; the two counters to play with.
    fn drain_order(t0: Instant) -> (StopOrder, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (requests, tunnels) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let order = StopOrder::draining(
            t0,
            Duration::from_secs(10),
            Drain {
                in_flight: requests.clone(),
                requests_by: t0 + Duration::from_secs(10),
                tunnels: tunnels.clone(),
                tunnels_by: t0 + Duration::from_secs(300),
            },
        );
        (order, requests, tunnels)
    }

    fn at_s(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn an_idle_instance_is_termed_when_its_drain_delay_ends() {
        let t0 = Instant::now();
        let (mut order, _, _) = drain_order(t0);
        assert_eq!(order.term_due(t0), Some(t0));
    }

    #[test]
    fn requests_in_flight_hold_sigterm_back_up_to_the_grace() {
        let t0 = Instant::now();
        let (mut order, requests, _) = drain_order(t0);
        requests.store(1, Ordering::SeqCst);
        let at = order.term_due(at_s(t0, 1)).expect("due");
        assert!(at > at_s(t0, 1), "held back while a request is answered");
        // Past the grace, a request still in flight no longer holds it.
        let now = at_s(t0, 10);
        assert!(order.term_due(now).is_some_and(|at| at <= now));
    }

    #[test]
    fn open_tunnels_hold_sigterm_back_up_to_their_own_deadline() {
        let t0 = Instant::now();
        let (mut order, _, tunnels) = drain_order(t0);
        tunnels.store(2, Ordering::SeqCst);
        // Well past the requests' grace, a tunnel still holds it.
        let at = order.term_due(at_s(t0, 60)).expect("due");
        assert!(at > at_s(t0, 60) && at <= at_s(t0, 300), "{at:?}");
        // The last tunnel closes: SIGTERM at once.
        tunnels.store(0, Ordering::SeqCst);
        let now = at_s(t0, 61);
        assert!(order.term_due(now).is_some_and(|at| at <= now));
    }

    #[test]
    fn tunnels_past_their_deadline_no_longer_hold_sigterm() {
        let t0 = Instant::now();
        let (mut order, _, tunnels) = drain_order(t0);
        tunnels.store(1, Ordering::SeqCst);
        let now = at_s(t0, 300);
        assert!(order.term_due(now).is_some_and(|at| at <= now));
    }

    #[test]
    fn retiring_ignores_health() {
        let now = Instant::now();
        let mut s = Slot::new(1, &upstream(), 1, now);
        s.retire(now, Duration::ZERO, Duration::ZERO, Duration::ZERO);
        assert!(!s.on_health(Ok(()), now, &mut Vec::new()));
        assert_eq!(s.state, InstanceState::Stopping);
    }

    #[test]
    fn exits_back_off_longer_each_time() {
        let now = Instant::now();
        let mut s = Slot::new(1, &command(), 1, now);
        let mut delays = Vec::new();
        for _ in 0..4 {
            assert!(!s.exited(10, "exit status 1".into(), now, false, &mut Vec::new()));
            delays.push(backing_off_for(&s, now).map(|d| d.as_secs()));
        }
        assert_eq!(delays, [Some(1), Some(2), Some(4), Some(8)]);
        assert_eq!(s.last_exit.as_deref(), Some("exit status 1"));
        assert_eq!(s.next_start, now + Duration::from_secs(8));
    }

    #[test]
    fn a_long_healthy_run_resets_the_back_off() {
        let start = Instant::now();
        let mut s = Slot::new(1, &command(), 1, start);
        s.exited(10, "exit status 1".into(), start, false, &mut Vec::new());
        s.exited(10, "exit status 1".into(), start, false, &mut Vec::new());
        s.healthy_since = Some(start);
        let later = start + Duration::from_secs(31);
        s.exited(10, "exit status 1".into(), later, false, &mut Vec::new());
        assert_eq!(backing_off_for(&s, later), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_superseded_instance_is_not_restarted() {
        let now = Instant::now();
        let mut s = Slot::new(1, &command(), 1, now);
        s.superseded = true;
        assert!(s.exited(10, "exit status 0".into(), now, false, &mut Vec::new()));
        assert!(s.retiring);
    }

    #[test]
    fn nothing_restarts_while_closing() {
        let now = Instant::now();
        let mut s = Slot::new(1, &command(), 1, now);
        assert!(s.exited(10, "killed by signal 15".into(), now, true, &mut Vec::new()));
    }

    #[test]
    fn a_failed_start_backs_off() {
        let now = Instant::now();
        let mut s = Slot::new(1, &command(), 1, now);
        s.start_failed(
            "cannot start: no such directory".into(),
            now,
            &mut Vec::new(),
        );
        assert_eq!(backing_off_for(&s, now), Some(Duration::from_secs(1)));
        assert_eq!(
            s.last_exit.as_deref(),
            Some("cannot start: no such directory")
        );
    }

    #[test]
    fn fixed_and_chosen_ports() {
        let now = Instant::now();
        let mut fixed = command();
        if let AppRun::Command { port, .. } = &mut fixed.run {
            *port = Some(9001);
        }
        let s = Slot::new(1, &fixed, 1, now);
        assert_eq!(s.fixed_port(), Some(9001));
        assert_eq!(s.addr.port(), 9001);
        assert_eq!(Slot::new(2, &command(), 1, now).fixed_port(), None);
        assert_eq!(Slot::new(3, &upstream(), 1, now).fixed_port(), None);
    }

    #[test]
    fn secs_prints_whole_and_fractional_seconds() {
        assert_eq!(secs(Duration::from_secs(60)), "60");
        assert_eq!(secs(Duration::from_millis(300)), "0.3");
    }
}
