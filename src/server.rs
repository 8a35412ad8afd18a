//! `nexushub run`: wires the threads of the SPEC's picture together and runs the
//! signal loop until SIGTERM or SIGINT, then shuts down in order.
//!
//! Start-up order: TLS material (a bad certificate or key stops us here, exit 1),
//! the listening socket, the resolver, the process manager, the workers, the
//! acceptor. Shutdown order (see `src/LIFECYCLE.md`): stop accepting and close
//! parked connections, let requests in flight finish within `shutdown_grace`, stop
//! the process manager, flush the access log.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::RwLock;

use crate::acceptor::{Acceptor, AcceptorConfig};
use crate::access_log::AccessLog;
use crate::config::{AppRun, Config};
use crate::conn::Census;
use crate::procman;
use crate::routes::{self, AppInstance, InstanceState, RouteMap, SharedRoutes, Snapshot};
use crate::sys::{self, Signal};
use crate::tls;
use crate::worker::{self, Limits, Shared};

/// How often the signal loop wakes to flush the access log.
const TICK: Duration = Duration::from_secs(1);
/// How often a certificate close to expiry is warned about again.
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Every configured app as one instance in the `Starting` state.
fn starting_snapshot(config: &Config) -> Snapshot {
    let instances = config
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
            state: InstanceState::Starting,
            pid: None,
            restarts: 0,
            last_exit: None,
            generation: 0,
        })
        .collect();
    Snapshot { instances }
}

/// Runs the proxy until a shutdown signal. `Err` is a start-up failure, with the
/// one-line reason (exit 1).
pub fn run(config: Config) -> Result<(), String> {
    let p = &config.proxy;
    let tls = tls::load(&p.cert, &p.key).map_err(|e| e.to_string())?;
    for w in &tls.warnings {
        log::warn!("{w}");
    }
    match sys::raise_nofile_limit() {
        Ok(n) => log::debug!("open file limit: {n}"),
        Err(e) => log::warn!("cannot raise the open file limit: {e}"),
    }
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
    let initial = RouteMap::from_snapshot(&starting_snapshot(&config), Instant::now());
    let routes: SharedRoutes = Arc::new(RwLock::new(Arc::new(initial)));
    let (snap_tx, snap_rx) = crossbeam_channel::unbounded();
    let resolver = routes::spawn_resolver(snap_rx, routes.clone()).map_err(|e| e.to_string())?;
    let manager = procman::start(&config, snap_tx).map_err(|e| e.to_string())?;

    let (dispatch_tx, dispatch_rx) = crossbeam_channel::bounded(p.workers);
    let census = Arc::new(Census::default());
    let tls_config = Arc::new(RwLock::new(tls.config));
    let (acceptor, handle) = Acceptor::new(
        listener,
        tls_config,
        AcceptorConfig {
            handshake_timeout: p.handshake_timeout,
            max_connections: p.max_connections,
            max_connections_per_ip: p.max_connections_per_ip,
        },
        census.clone(),
        dispatch_tx,
    )
    .map_err(|e| format!("cannot set up the acceptor: {e}"))?;
    let shared = Arc::new(Shared {
        limits: Limits::from_config(p),
        routes,
        acceptor: handle.clone(),
        access: access.clone(),
        in_flight: Arc::new(AtomicUsize::new(0)),
        closing: Arc::new(AtomicBool::new(false)),
        backend_idle_timeout: p.backend_idle_timeout,
    });
    let workers = worker::spawn(p.workers, dispatch_rx, shared.clone())
        .map_err(|e| format!("cannot start workers: {e}"))?;
    let acceptor_thread = thread::Builder::new()
        .name("acceptor".into())
        .spawn(move || acceptor.run())
        .map_err(|e| format!("cannot start the acceptor: {e}"))?;
    log::info!(
        "listening on {local} ({} workers, {} app(s))",
        p.workers,
        config.apps.len()
    );

    let cert_path = p.cert.clone();
    let not_after = tls.leaf.not_after;
    let mut last_expiry_check = Instant::now();
    loop {
        if last_expiry_check.elapsed() >= EXPIRY_CHECK_INTERVAL {
            last_expiry_check = Instant::now();
            if let Some(w) = tls::expiry_warning(&cert_path, not_after, SystemTime::now()) {
                log::warn!("{w}");
            }
        }
        match sys::wait_signal(TICK) {
            Some(Signal::Term) | Some(Signal::Int) => break,
            Some(Signal::Hup) => {
                log::warn!("SIGHUP: configuration reload is not supported by this version; reopening the access log only");
                access.reopen();
            }
            None => access.flush(),
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
    handle.stop();
    let _ = acceptor_thread.join();
    // Workers end once the acceptor's dispatch channel is gone and their current
    // exchange is done; wait for that, within the grace period.
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
    manager.stop();
    drop(resolver);
    access.flush();
    log::info!("stopped");
    Ok(())
}
