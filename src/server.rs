//! `nexushub run`: wires the threads of the picture in `lib.rs` together and runs the
//! signal loop until SIGTERM or SIGINT, then shuts down in order.
//!
//! Start-up order: TLS material (a bad certificate or key stops us here, exit 1),
//! the listening socket, the resolver, the process manager, the workers, the
//! acceptor. Shutdown order (see `src/LIFECYCLE.md`): stop accepting and close
//! parked connections, let requests in flight finish within `shutdown_grace`, stop
//! the process manager, flush the access log.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::RwLock;

use crate::access_log::AccessLog;
use crate::config::{self, Config};
use crate::procman;
use crate::proxy::{
    spawn_workers, useful_workers, Acceptor, AcceptorConfig, Census, Limits, ParkSet, Pool, Shared,
};
use crate::routes::{self, RouteMap, SharedRoutes};
use crate::sys::{self, Signal};
use crate::tls;

/// How often the signal loop wakes when no signal comes, for the certificate
/// expiry check (the access log has a writer thread of its own).
const TICK: Duration = Duration::from_secs(60);
/// How often a certificate close to expiry is warned about again.
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Command-line flags that override the config file, at start and on every reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--cert`.
    pub cert: Option<PathBuf>,
    /// `--key`.
    pub key: Option<PathBuf>,
    /// `--workers`.
    pub workers: Option<usize>,
}

impl Overrides {
    /// Applies the flags to a freshly read config.
    pub fn apply(&self, config: &mut Config) {
        let p = &mut config.proxy;
        if let Some(listen) = self.listen {
            p.listen = listen;
        }
        if let Some(cert) = &self.cert {
            p.cert = cert.clone();
        }
        if let Some(key) = &self.key {
            p.key = key.clone();
        }
        if let Some(n) = self.workers {
            p.workers = n;
        }
    }
}

/// Runs the proxy until a shutdown signal. `Err` is a start-up failure, with the
/// one-line reason (exit 1). `config` already has `overrides` applied.
pub fn run(config: Config, overrides: Overrides) -> Result<(), String> {
    // Before the key is read: no core file and no same-user ptrace or /proc read
    // of a process holding the TLS key, ticket keys and clients' requests.
    if let Err(e) = sys::set_not_dumpable() {
        log::warn!("cannot mark the process non-dumpable: {e}");
    }
    let p = &config.proxy;
    let tls = tls::load(&p.cert, &p.key).map_err(|e| e.to_string())?;
    for w in &tls.warnings {
        log::warn!("{w}");
    }
    let nofile = match sys::raise_nofile_limit() {
        Ok(n) => {
            log::debug!("open file limit: {n}");
            n
        }
        Err(e) => {
            log::warn!("cannot raise the open file limit: {e}");
            sys::nofile_limits().map_or(u64::MAX, |(soft, _)| soft)
        }
    };
    if let Some(w) = config::nofile_warning(&config, nofile) {
        log::warn!("{w}");
    }
    // Clients get what the limit leaves after the apps and the reserve, so
    // that health checks and app starts never run out of descriptors.
    let max_connections = p
        .max_connections
        .min(config::connections_fitting(nofile, config.apps.len()).max(1));
    let listener =
        TcpListener::bind(p.listen).map_err(|e| format!("cannot listen on {}: {e}", p.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", p.listen))?;
    let access = Arc::new(
        AccessLog::open(&p.access_log).map_err(|e| format!("cannot open the access log: {e}"))?,
    );

    // Every configured host routes from the first request on (503 "starting" until
    // its app is healthy, never a 404 for a configured host).
    let initial = RouteMap::from_snapshot(&procman::starting_snapshot(&config), Instant::now());
    let routes: SharedRoutes = Arc::new(RwLock::new(Arc::new(initial)));
    let (snap_tx, snap_rx) = crossbeam_channel::unbounded();
    let resolver = routes::spawn_resolver(snap_rx, routes.clone()).map_err(|e| e.to_string())?;
    let manager = procman::start(&config, snap_tx).map_err(|e| e.to_string())?;

    let census = Arc::new(Census::default());
    let tls_config = Arc::new(RwLock::new(tls.config.clone()));
    let parked = Arc::new(ParkSet::new().map_err(|e| format!("cannot set up epoll: {e}"))?);
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = Acceptor::new(
        listener,
        tls_config.clone(),
        AcceptorConfig {
            handshake_timeout: p.handshake_timeout,
            max_connections,
            fd_ceiling: nofile.saturating_sub(config::FD_RESERVE / 2),
            max_connections_per_ip: p.max_connections_per_ip,
            client_timeout: p.client_timeout,
        },
        census.clone(),
        parked.clone(),
        access.clone(),
        stop.clone(),
    )
    .map_err(|e| format!("cannot set up the acceptor: {e}"))?;
    let shared = Arc::new(Shared {
        limits: Limits::from_config(p),
        routes,
        parked: parked.clone(),
        access: access.clone(),
        in_flight: Arc::new(AtomicUsize::new(0)),
        closing: Arc::new(AtomicBool::new(false)),
        pool: Arc::new(Pool::new(p.backend_idle_timeout)),
    });
    let n_workers = p.workers.min(useful_workers());
    if n_workers < p.workers {
        log::info!(
            "workers = {} capped at {n_workers}, one per core: workers never wait on I/O, so more would only take turns",
            p.workers
        );
    }
    let workers = spawn_workers(n_workers, shared.clone())
        .map_err(|e| format!("cannot start workers: {e}"))?;
    let acceptor_thread = thread::Builder::new()
        .name("acceptor".into())
        .spawn(move || acceptor.run())
        .map_err(|e| format!("cannot start the acceptor: {e}"))?;
    log::info!(
        "listening on {local} ({n_workers} workers, {} app(s))",
        config.apps.len()
    );

    let mut running = Running {
        config: config.clone(),
        not_after: tls.leaf.not_after,
    };
    let mut last_expiry_check = Instant::now();
    loop {
        if last_expiry_check.elapsed() >= EXPIRY_CHECK_INTERVAL {
            last_expiry_check = Instant::now();
            let cert = &running.config.proxy.cert;
            if let Some(w) = tls::expiry_warning(cert, running.not_after, SystemTime::now()) {
                log::warn!("{w}");
            }
        }
        match sys::wait_signal(TICK) {
            Some(Signal::Term) | Some(Signal::Int) => break,
            Some(Signal::Hup) => {
                reload(&mut running, &overrides, &tls_config, &manager);
                access.reopen();
            }
            None => {} // the tick: the expiry check above
        }
    }

    let grace = p.shutdown_grace;
    let deadline = Instant::now() + grace;
    log::info!(
        "shutting down: no new connections; {} request(s) in flight, waiting up to {} s",
        shared.in_flight.load(Ordering::SeqCst),
        grace.as_secs_f64()
    );
    shared.closing.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let _ = acceptor_thread.join();
    // Workers end once nothing is parked any more (the acceptor closed the idle
    // connections; parked exchanges finish); wait for that, within the grace period.
    for w in workers {
        while !w.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if w.is_finished() {
            let _ = w.join();
        }
    }
    let left = shared.in_flight.load(Ordering::SeqCst);
    if left > 0 {
        log::warn!("shutdown grace period over: {left} request(s) cut off");
    }
    manager.shutdown(grace);
    drop(resolver);
    access.flush();
    log::info!("stopped");
    Ok(())
}

/// What a reload compares against.
struct Running {
    config: Config,
    not_after: SystemTime,
}

/// SIGHUP: re-reads the config file and the certificate. A config or a
/// certificate that does not load is refused whole (logged) and the running
/// state kept. Otherwise the new certificate serves new connections (sessions
/// and tickets stay valid: the cache and the ticketer carry over) and the process
/// manager converges on the new apps. `[proxy]` settings other than the
/// certificate, the key and the access log need a restart, which is logged.
fn reload(
    running: &mut Running,
    overrides: &Overrides,
    tls_config: &Arc<RwLock<Arc<rustls::ServerConfig>>>,
    manager: &procman::Manager,
) {
    let path = running.config.path.clone();
    log::info!("SIGHUP: reloading {}", path.display());
    let mut new = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("reload refused, running configuration kept: {e}");
            return;
        }
    };
    overrides.apply(&mut new);
    let setup = match tls::load(&new.proxy.cert, &new.proxy.key) {
        Ok(s) => s,
        Err(e) => {
            log::error!("reload refused, running configuration kept: {e}");
            return;
        }
    };
    for w in &setup.warnings {
        log::warn!("{w}");
    }
    {
        let mut current = tls_config.write();
        let mut fresh = (*setup.config).clone();
        fresh.ticketer = current.ticketer.clone();
        fresh.session_storage = current.session_storage.clone();
        *current = Arc::new(fresh);
    }
    let (old, newp) = (&running.config.proxy, &new.proxy);
    let needs_restart: Vec<&str> = [
        ("listen", old.listen != newp.listen),
        ("workers", old.workers != newp.workers),
        (
            "handshake_timeout",
            old.handshake_timeout != newp.handshake_timeout,
        ),
        ("head_timeout", old.head_timeout != newp.head_timeout),
        ("idle_timeout", old.idle_timeout != newp.idle_timeout),
        (
            "backend_connect_timeout",
            old.backend_connect_timeout != newp.backend_connect_timeout,
        ),
        (
            "backend_timeout",
            old.backend_timeout != newp.backend_timeout,
        ),
        (
            "backend_idle_timeout",
            old.backend_idle_timeout != newp.backend_idle_timeout,
        ),
        ("client_timeout", old.client_timeout != newp.client_timeout),
        ("max_head_bytes", old.max_head_bytes != newp.max_head_bytes),
        (
            "max_connections",
            old.max_connections != newp.max_connections,
        ),
        (
            "max_connections_per_ip",
            old.max_connections_per_ip != newp.max_connections_per_ip,
        ),
        ("min_data_rate", old.min_data_rate != newp.min_data_rate),
        (
            "min_data_rate_grace",
            old.min_data_rate_grace != newp.min_data_rate_grace,
        ),
        (
            "tunnel_idle_timeout",
            old.tunnel_idle_timeout != newp.tunnel_idle_timeout,
        ),
        (
            "tunnel_drain_timeout",
            old.tunnel_drain_timeout != newp.tunnel_drain_timeout,
        ),
        ("access_log", old.access_log != newp.access_log),
        ("log_level", old.log_level != newp.log_level),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect();
    if !needs_restart.is_empty() {
        log::warn!(
            "reload: [proxy] {} changed; kept as running until a restart",
            needs_restart.join(", ")
        );
    }
    // The running values stay in force for what needs a restart.
    new.proxy.listen = old.listen;
    new.proxy.workers = old.workers;
    manager.reload(&new);
    running.not_after = setup.leaf.not_after;
    running.config = new;
    log::info!(
        "reloaded {}: certificate {} valid until {}",
        path.display(),
        running.config.proxy.cert.display(),
        crate::time::format_rfc3339(running.not_after)
    );
}
