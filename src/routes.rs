//! The route map: host name -> where its requests go, and the resolver thread
//! that rebuilds it from the process manager's snapshots.
//!
//! The process manager owns the truth about app instances and publishes a
//! [`Snapshot`] whenever anything changes. The resolver thread turns each one into
//! a fresh [`RouteMap`] and swaps it in under the write lock. Workers take the read
//! lock just long enough to clone one `Arc<Route>`: nothing else is shared on the
//! hot path, and a state change reaches routing as soon as it is published.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::RwLock;

/// Where an app instance is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    /// Started (or configured), no health check has passed yet.
    Starting,
    /// Its last health check passed: it takes traffic.
    Healthy,
    /// Its health check failed; the text says how.
    Unhealthy(String),
    /// Waiting to be restarted at the given time.
    BackingOff {
        /// When the next start is due.
        until: Instant,
    },
    /// Never answered on its port within the start timeout.
    NeverReady {
        /// The port it was expected to listen on.
        port: u16,
    },
    /// Being drained and stopped.
    Stopping,
    /// Not running (and not going to be started by this nexushub).
    Stopped(String),
}

impl InstanceState {
    /// Short text for logs and for the 503 body, e.g. "starting" or "restarting in 4 s".
    pub fn describe(&self, now: Instant) -> String {
        match self {
            InstanceState::Starting => "starting".to_string(),
            InstanceState::Healthy => "healthy".to_string(),
            InstanceState::Unhealthy(why) => format!("unhealthy ({why})"),
            InstanceState::BackingOff { until } => {
                let secs = until.saturating_duration_since(now).as_secs_f64().ceil();
                format!("restarting in {secs} s")
            }
            InstanceState::NeverReady { port } => {
                format!("never became ready on port {port}")
            }
            InstanceState::Stopping => "stopping".to_string(),
            InstanceState::Stopped(why) => format!("stopped ({why})"),
        }
    }

    /// Seconds a client should wait before retrying, for `Retry-After`.
    pub fn retry_after_secs(&self, now: Instant) -> u64 {
        match self {
            InstanceState::BackingOff { until } => until
                .saturating_duration_since(now)
                .as_secs()
                .clamp(1, 3600),
            InstanceState::Starting | InstanceState::Healthy => 1,
            InstanceState::Unhealthy(_) | InstanceState::Stopping => 5,
            InstanceState::NeverReady { .. } | InstanceState::Stopped(_) => 30,
        }
    }
}

/// One running (or wanted) copy of an app, as the process manager sees it.
#[derive(Debug, Clone)]
pub struct AppInstance {
    /// The app's name from its `[app NAME]` section.
    pub app: Arc<str>,
    /// The normalised host names it serves.
    pub hosts: Vec<String>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state.
    pub state: InstanceState,
    /// Its process id, for `command` apps.
    pub pid: Option<u32>,
    /// How many times it has been restarted.
    pub restarts: u32,
    /// How its last process ended, if one did.
    pub last_exit: Option<String>,
    /// Increases with every replacement; the newest healthy instance wins.
    pub generation: u64,
    /// Requests being forwarded to it right now: counted by the workers, read
    /// by the process manager to drain an instance before stopping it.
    pub in_flight: Arc<AtomicUsize>,
    /// Tunnels (WebSockets) open to it right now: counted by the workers, read
    /// by the process manager, which keeps a replaced instance alive while
    /// they last (up to `tunnel_drain_timeout`).
    pub tunnels: Arc<AtomicUsize>,
}

/// Everything the process manager knows, published as one value.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// All instances, of every app.
    pub instances: Vec<AppInstance>,
}

/// What a worker needs to answer a request for one host.
#[derive(Debug)]
pub struct Route {
    /// The app's name, for the access log and error bodies.
    pub app: Arc<str>,
    /// The backend to forward to, when an instance is healthy.
    pub backend: Option<SocketAddr>,
    /// Why there is no backend (for the 503 body), e.g. "starting".
    pub unavailable: String,
    /// `Retry-After` seconds for the 503.
    pub retry_after_secs: u64,
    /// The chosen instance's in-flight counter.
    pub in_flight: Arc<AtomicUsize>,
    /// The chosen instance's open-tunnel counter.
    pub tunnels: Arc<AtomicUsize>,
}

/// Host name -> route. Built whole by the resolver, never mutated in place.
#[derive(Debug, Default)]
pub struct RouteMap {
    hosts: HashMap<String, Arc<Route>>,
}

impl RouteMap {
    /// Builds the map from a snapshot: per host, the newest healthy instance of its
    /// app, else the most hopeful state for the 503 body.
    pub fn from_snapshot(snapshot: &Snapshot, now: Instant) -> RouteMap {
        let mut best: HashMap<&str, &AppInstance> = HashMap::new();
        for inst in &snapshot.instances {
            let entry = best.entry(&inst.app).or_insert(inst);
            if rank(inst) > rank(entry) {
                *entry = inst;
            }
        }
        let mut hosts = HashMap::new();
        for inst in best.values() {
            let healthy = inst.state == InstanceState::Healthy;
            let route = Arc::new(Route {
                app: inst.app.clone(),
                backend: healthy.then_some(inst.addr),
                unavailable: inst.state.describe(now),
                retry_after_secs: inst.state.retry_after_secs(now),
                in_flight: inst.in_flight.clone(),
                tunnels: inst.tunnels.clone(),
            });
            for host in &inst.hosts {
                hosts.insert(host.clone(), route.clone());
            }
        }
        RouteMap { hosts }
    }

    /// The route for a normalised host name.
    pub fn get(&self, host: &str) -> Option<Arc<Route>> {
        self.hosts.get(host).cloned()
    }

    /// Each app's current backend, by app name.
    pub fn backends(&self) -> HashMap<Arc<str>, Option<SocketAddr>> {
        self.hosts
            .values()
            .map(|r| (r.app.clone(), r.backend))
            .collect()
    }

    /// How many host names are routed.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }
}

/// Orders instances for routing: healthy beats anything, then newer generations.
fn rank(inst: &AppInstance) -> (bool, bool, u64) {
    let healthy = inst.state == InstanceState::Healthy;
    let live = !matches!(
        inst.state,
        InstanceState::Stopping | InstanceState::Stopped(_)
    );
    (healthy, live, inst.generation)
}

/// The shared route map: read-locked by workers, swapped by the resolver.
pub type SharedRoutes = Arc<RwLock<Arc<RouteMap>>>;

/// Looks a host up: one read lock, one `Arc` clone.
pub fn lookup(routes: &SharedRoutes, host: &str) -> Option<Arc<Route>> {
    routes.read().get(host)
}

/// Starts the resolver thread: each snapshot received becomes the new route map.
/// The thread ends when every sender of `snapshots` is gone.
pub fn spawn_resolver(
    snapshots: Receiver<Snapshot>,
    routes: SharedRoutes,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("resolver".into())
        .spawn(move || {
            // A state with a countdown ("restarting in N s") is rebuilt every second
            // so the 503 text stays true even when nothing new is published.
            let mut last: Option<Snapshot> = None;
            loop {
                match snapshots.recv_timeout(Duration::from_secs(1)) {
                    Ok(snap) => {
                        // Take the newest snapshot only; older queued ones are stale.
                        let snap = snapshots.try_iter().last().unwrap_or(snap);
                        install(&routes, &snap);
                        last = Some(snap);
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        if let Some(snap) = &last {
                            let counting = snap
                                .instances
                                .iter()
                                .any(|i| matches!(i.state, InstanceState::BackingOff { .. }));
                            if counting {
                                install(&routes, snap);
                            }
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
            }
        })
}

fn install(routes: &SharedRoutes, snap: &Snapshot) {
    let map = Arc::new(RouteMap::from_snapshot(snap, Instant::now()));
    log::debug!("route map updated: {} host(s)", map.len());
    let old = std::mem::replace(&mut *routes.write(), map.clone());
    // Logged here, after the swap, so that "healthy at" means "taking traffic now":
    // a client that waits for the line is routed to the instance.
    let before = old.backends();
    for (app, backend) in map.backends() {
        let was = before.get(&app).copied().flatten();
        match (was, backend) {
            (was, Some(addr)) if was != Some(addr) => {
                log::info!("app {app}: healthy at {addr}");
            }
            (Some(addr), None) => log::warn!("app {app}: stopped taking traffic at {addr}"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(app: &str, host: &str, port: u16, state: InstanceState, gen: u64) -> AppInstance {
        AppInstance {
            app: app.into(),
            hosts: vec![host.to_string()],
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            state,
            pid: None,
            restarts: 0,
            last_exit: None,
            generation: gen,
            in_flight: Arc::default(),
            tunnels: Arc::default(),
        }
    }

    #[test]
    fn healthy_instance_routes() {
        let snap = Snapshot {
            instances: vec![inst("a", "a.test", 1000, InstanceState::Healthy, 1)],
        };
        let map = RouteMap::from_snapshot(&snap, Instant::now());
        let route = map.get("a.test").expect("route");
        assert_eq!(
            route.backend,
            Some(SocketAddr::from(([127, 0, 0, 1], 1000)))
        );
        assert!(map.get("b.test").is_none());
    }

    #[test]
    fn starting_instance_has_no_backend() {
        let snap = Snapshot {
            instances: vec![inst("a", "a.test", 1000, InstanceState::Starting, 1)],
        };
        let map = RouteMap::from_snapshot(&snap, Instant::now());
        let route = map.get("a.test").expect("route");
        assert_eq!(route.backend, None);
        assert_eq!(route.unavailable, "starting");
    }

    #[test]
    fn old_healthy_beats_new_starting_during_replace() {
        let snap = Snapshot {
            instances: vec![
                inst("a", "a.test", 1000, InstanceState::Healthy, 1),
                inst("a", "a.test", 1001, InstanceState::Starting, 2),
            ],
        };
        let map = RouteMap::from_snapshot(&snap, Instant::now());
        assert_eq!(
            map.get("a.test").and_then(|r| r.backend.map(|a| a.port())),
            Some(1000)
        );
    }

    #[test]
    fn newest_healthy_wins() {
        let snap = Snapshot {
            instances: vec![
                inst("a", "a.test", 1000, InstanceState::Healthy, 1),
                inst("a", "a.test", 1001, InstanceState::Healthy, 2),
            ],
        };
        let map = RouteMap::from_snapshot(&snap, Instant::now());
        assert_eq!(
            map.get("a.test").and_then(|r| r.backend.map(|a| a.port())),
            Some(1001)
        );
    }

    #[test]
    fn backing_off_text_counts_down() {
        let now = Instant::now();
        let state = InstanceState::BackingOff {
            until: now + Duration::from_secs(4),
        };
        assert_eq!(state.describe(now), "restarting in 4 s");
        assert_eq!(state.retry_after_secs(now), 4);
    }
}
