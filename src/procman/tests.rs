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
