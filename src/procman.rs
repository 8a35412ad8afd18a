//! The process manager's seam: it owns the app instances and publishes a
//! [`Snapshot`] of them whenever one changes; the resolver thread turns that into
//! the route map.
//!
//! This first version runs no child processes yet: `upstream` apps (services run
//! elsewhere) are health-checked, and `command` apps are reported as not started.
//! Each app gets one checker thread, so a hanging health check of one app never
//! delays another's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::config::{AppConfig, AppRun, Config};
use crate::routes::{AppInstance, InstanceState, Snapshot};

/// How often an instance that is not healthy is checked.
pub const CHECK_INTERVAL_STARTING: Duration = Duration::from_millis(200);
/// How often a healthy instance is checked.
pub const CHECK_INTERVAL_HEALTHY: Duration = Duration::from_secs(1);
/// Deadline of one health check (connect, request and response head).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest health-check response head read.
const CHECK_HEAD_BYTES: usize = 8192;

/// The running process manager; dropping [`Manager::stop`]'s result ends it.
#[derive(Debug)]
pub struct Manager {
    stop: Sender<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Manager {
    /// Stops the checker threads and waits for them.
    pub fn stop(self) {
        drop(self.stop);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts managing the apps of `config`, publishing snapshots to `publish`.
pub fn start(config: &Config, publish: Sender<Snapshot>) -> std::io::Result<Manager> {
    let instances: Vec<AppInstance> = config
        .apps
        .iter()
        .map(|app| AppInstance {
            app: app.name.as_str().into(),
            hosts: app.hosts.clone(),
            addr: match &app.run {
                AppRun::Upstream { addr } => *addr,
                AppRun::Command { port, .. } => {
                    SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)))
                }
            },
            state: match &app.run {
                AppRun::Upstream { .. } => InstanceState::Starting,
                AppRun::Command { .. } => {
                    InstanceState::Stopped("command apps are not run by this version".into())
                }
            },
            pid: None,
            restarts: 0,
            last_exit: None,
            generation: 1,
        })
        .collect();
    let shared = Arc::new(Mutex::new(instances));
    let _ = publish.send(Snapshot {
        instances: shared.lock().clone(),
    });
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let mut threads = Vec::new();
    for (index, app) in config.apps.iter().enumerate() {
        if let AppRun::Upstream { addr } = app.run {
            let checker = Checker {
                index,
                app: app.clone(),
                addr,
                shared: shared.clone(),
                publish: publish.clone(),
                stop: stop_rx.clone(),
            };
            threads.push(
                thread::Builder::new()
                    .name(format!("health-{}", app.name))
                    .spawn(move || checker.run())?,
            );
        }
    }
    Ok(Manager {
        stop: stop_tx,
        threads,
    })
}

struct Checker {
    index: usize,
    app: AppConfig,
    addr: SocketAddr,
    shared: Arc<Mutex<Vec<AppInstance>>>,
    publish: Sender<Snapshot>,
    stop: Receiver<()>,
}

impl Checker {
    fn run(self) {
        let name = &self.app.name;
        loop {
            let result = check(self.addr, self.app.health.as_deref(), &self.app.hosts);
            let new_state = match &result {
                Ok(()) => InstanceState::Healthy,
                Err(why) => InstanceState::Unhealthy(why.clone()),
            };
            let changed = {
                let mut all = self.shared.lock();
                let Some(inst) = all.get_mut(self.index) else {
                    return;
                };
                let was = std::mem::replace(&mut inst.state, new_state.clone());
                let changed = std::mem::discriminant(&was) != std::mem::discriminant(&new_state);
                if changed {
                    Some(all.clone())
                } else {
                    None
                }
            };
            if let Some(instances) = changed {
                match &result {
                    Ok(()) => log::info!("app {name}: health check passed at {}", self.addr),
                    Err(why) => log::warn!("app {name}: unhealthy at {}: {why}", self.addr),
                }
                let _ = self.publish.send(Snapshot { instances });
            }
            let wait = if result.is_ok() {
                CHECK_INTERVAL_HEALTHY
            } else {
                CHECK_INTERVAL_STARTING
            };
            match self.stop.recv_timeout(wait) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    }
}

/// One health check: a TCP connect, or a `GET` of `path` answered 2xx or 3xx.
pub fn check(addr: SocketAddr, path: Option<&str>, hosts: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let mut sock = TcpStream::connect_timeout(&addr, CHECK_TIMEOUT).map_err(|e| e.to_string())?;
    let Some(path) = path else { return Ok(()) };
    let host = hosts.first().map_or("localhost", |h| h.as_str());
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    sock.set_write_timeout(Some(remaining()))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nexushub-health-check\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes())
        .map_err(|e| format!("health check request failed: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match crate::http1::parse_response(&buf, CHECK_HEAD_BYTES, false) {
            Ok(Some(resp)) if (200..400).contains(&resp.status) => return Ok(()),
            Ok(Some(resp)) => return Err(format!("health check {path} answered {}", resp.status)),
            Ok(None) => {}
            Err(e) => {
                return Err(format!(
                    "health check {path}: invalid answer: {}",
                    e.reason()
                ))
            }
        }
        if buf.len() > CHECK_HEAD_BYTES || Instant::now() >= deadline {
            return Err(format!("health check {path} got no valid answer"));
        }
        sock.set_read_timeout(Some(remaining()))
            .map_err(|e| e.to_string())?;
        match sock.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "health check {path}: connection closed without an answer"
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("health check {path} failed: {e}")),
        }
    }
}
