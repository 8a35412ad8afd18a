//! The process manager end to end: `nexushub run` with `command` apps (real
//! children running `nexushub whoami` on `$PORT`), real signals, and a real TLS
//! client on loopback. What the process manager promises: an app takes traffic only once
//! healthy; a killed app answers 503 (never a hang) and comes back; a crash loop
//! backs off 1, 2, 4 s while another app keeps serving; SIGHUP adds, removes and
//! replaces apps without a failed request, and refuses a bad config whole; SIGTERM
//! lets a slow request finish and leaves no child; SIGKILL of nexushub leaves no
//! child; an app's watchdog is a small, non-dumpable exec of nexushub (not a
//! fork carrying its memory); an app that ignores `$PORT` is reported; app output
//! is logged with its name.
//!
//! Every wait is on a log line, a response or `/proc`, with a deadline; the client
//! loops are paced and bounded. "No child left" is checked in `/proc` by process
//! group (each app leads its own, watchdog included), zombies counting as gone.
//! The measured numbers (crash to serving again, requests and failures during a
//! replace) are printed: run with `--nocapture` to see them.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::procfs::{self, established_on, group_members, wait_groups_gone};
use crate::support::tls_client::TlsClient;
use crate::support::{lock, Conf, Nexus, Response, WhoamiReport, READ_TIMEOUT, START_TIMEOUT};

/// The app most tests run: whoami on `$PORT`, as the process itself (`exec`), so
/// the pid nexushub logs is whoami's.
const WHOAMI: &str = r#"exec "$NEXUSHUB" whoami"#;

/// How long a test waits for a state change it caused (a restart, a reload).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Pause between two requests of a paced client loop.
const PACE: Duration = Duration::from_millis(25);

/// The read timeout of a client that must never hang on a down app: well under
/// the first restart delay (1 s), so a request parked until the app is back fails.
const PROMPT: Duration = Duration::from_millis(500);

/// The host name of app `name` (covered by the fixture's `*.test.localhost`).
fn host(name: &str) -> String {
    format!("{name}.test.localhost")
}

/// The pid and port in an `app NAME: started pid PID on port P ...` line.
fn parse_started(line: &str, app: &str) -> Option<(u32, u16)> {
    let needle = format!("app {app}: started pid ");
    let rest = &line[line.find(&needle)? + needle.len()..];
    let mut words = rest.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let port = words.nth(2)?.parse().ok()?;
    Some((pid, port))
}

/// The pid and port of the app's newest start logged so far.
fn started(nexus: &Nexus, app: &str) -> (u32, u16) {
    nexus
        .lines()
        .iter()
        .rev()
        .find_map(|l| parse_started(l, app))
        .unwrap_or_else(|| panic!("no start of app {app} logged\n{}", nexus.dump()))
}

/// Waits for the app's next start logged from line `mark` on: (line index, pid, port).
fn wait_started(nexus: &Nexus, mark: usize, app: &str) -> (usize, u32, u16) {
    let (i, line) = nexus.wait_log_after(mark, &format!("app {app}: started pid "), CHANGE_TIMEOUT);
    let (pid, port) = parse_started(&line, app)
        .unwrap_or_else(|| panic!("cannot parse {line:?}\n{}", nexus.dump()));
    (i, pid, port)
}

/// The `N` of a `... restarting in N s` line.
fn restart_delay(line: &str) -> Option<u64> {
    let at = line.find("restarting in ")? + "restarting in ".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// Seconds since midnight of a log line's RFC 3339 time stamp
/// (`2026-01-02T03:04:05.123456Z [INFO] ...`).
fn log_secs(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split_once('T')?.1;
    let time = time.split(['Z', '+']).next()?;
    let mut hms = time.split(':');
    let h: f64 = hms.next()?.parse().ok()?;
    let m: f64 = hms.next()?.parse().ok()?;
    let s: f64 = hms.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Seconds from log line `a` to log line `b`, by their time stamps.
fn log_gap(a: &str, b: &str) -> f64 {
    match (log_secs(a), log_secs(b)) {
        // Across midnight the clock starts again.
        (Some(x), Some(y)) if y < x => y + 86_400.0 - x,
        (Some(x), Some(y)) => y - x,
        _ => panic!("no time stamp in {a:?} or {b:?}"),
    }
}

/// Sends a signal by name to any process (an app, not nexushub).
fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A TLS connection to nexushub for `host` (panics with nexushub's log if the
/// handshake fails).
fn connect(nexus: &Nexus, host: &str) -> TlsClient {
    TlsClient::try_connect(nexus.port(), host, READ_TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting as {host}: {e}\n{}", nexus.dump()))
}

/// `GET path` on a fresh connection to the host (panics with nexushub's log on a
/// transport error).
fn get_fresh(nexus: &Nexus, host: &str, path: &str) -> Response {
    connect(nexus, host)
        .try_get(host, path)
        .unwrap_or_else(|e| panic!("GET {path} for {host}: {e}\n{}", nexus.dump()))
}

/// Asserts a 503 from nexushub for `app`, with a `Retry-After`, and returns the
/// state its body names.
fn assert_unavailable(r: &Response, app: &str) -> String {
    assert_eq!(r.status(), 503, "{}", r.summary());
    let retry = r.header("retry-after").unwrap_or_default();
    assert!(
        retry.trim().parse::<u64>().is_ok_and(|s| s >= 1),
        "503 without a usable Retry-After: {}",
        r.summary()
    );
    let prefix = format!("app {app} is not available: ");
    let text = r.text();
    let Some(state) = text.trim_end().strip_prefix(&prefix) else {
        panic!("503 body does not say {prefix:?}: {}", r.summary());
    };
    state.to_string()
}

/// Polls `host` on fresh connections (paced, bounded) until it answers `want`;
/// returns every status seen before, with its body.
fn poll_until_status(nexus: &Nexus, host: &str, want: u16) -> Vec<(u16, String)> {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    let mut before = Vec::new();
    loop {
        let r = get_fresh(nexus, host, "/");
        if r.status() == want {
            return before;
        }
        before.push((r.status(), r.text().trim_end().to_string()));
        assert!(
            Instant::now() < deadline,
            "{host} never answered {want}; saw {before:?}\n{}",
            nexus.dump()
        );
        thread::sleep(PACE);
    }
}

/// Waits until no process is left in these groups (an app's pid is its group).
fn assert_groups_gone(nexus: &Nexus, groups: &[u32], within: Duration) -> Duration {
    wait_groups_gone(groups, within).unwrap_or_else(|left| {
        panic!(
            "processes left in groups {groups:?} after {within:?}: {left:#?}\n{}",
            nexus.dump()
        )
    })
}

/// Waits (bounded) until the app on `port` holds a connection from nexushub: a
/// proxied request is in flight. Seen twice in a row, 50 ms apart, so that a
/// passing health-check connection does not count.
fn wait_request_reached_app(nexus: &Nexus, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while seen < 2 {
        seen = if established_on(port) > 0 {
            seen + 1
        } else {
            0
        };
        assert!(
            Instant::now() < deadline,
            "the request never reached the app on port {port}\n{}",
            nexus.dump()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn app_takes_traffic_only_once_its_health_check_passes() {
    let h = host("slow");
    // Listens only 1.5 s after it starts: "starting" until then.
    let conf = Conf::new()
        .command_app("slow", &h, &format!("sleep 1.5; {WHOAMI}"))
        .unwaited();
    let nexus = Nexus::start(&conf);
    let mut c = connect(&nexus, &h);
    let r = c.get(&h, "/");
    assert_eq!(
        assert_unavailable(&r, "slow"),
        "starting",
        "{}",
        nexus.dump()
    );

    // Every answer is "starting" until one is the app's own.
    let deadline = Instant::now() + START_TIMEOUT;
    let mut starting = 1;
    let served = loop {
        thread::sleep(PACE);
        let r = c.get(&h, "/");
        if r.status() == 200 {
            break r;
        }
        assert_eq!(assert_unavailable(&r, "slow"), "starting");
        starting += 1;
        assert!(Instant::now() < deadline, "never served\n{}", nexus.dump());
    };
    let report = WhoamiReport::parse(&served.text());
    assert_eq!(report.request_line, "GET / HTTP/1.1");
    // Both were logged: the check passed, and the route map switched to it
    // (either line may come first: each is logged once the snapshot left).
    nexus.wait_log(
        "app slow: health check passed at 127.0.0.1:",
        Duration::from_secs(2),
    );
    nexus.wait_log("app slow: healthy at 127.0.0.1:", Duration::from_secs(2));
    println!(
        "app_takes_traffic_only_once_healthy: {starting} answer(s) 503 \"starting\", then 200"
    );
}

#[test]
fn killed_app_answers_503_promptly_then_serves_again_after_its_restart() {
    let h = host("web");
    let nexus = Nexus::start(&Conf::new().command_app("web", &h, WHOAMI));
    let (pid, _) = started(&nexus, "web");
    let mut c = connect(&nexus, &h);
    assert_eq!(c.get(&h, "/").status(), 200);
    c.set_read_timeout(PROMPT);

    let mark = nexus.log_mark();
    let killed = Instant::now();
    kill(pid, "KILL");
    nexus.wait_log_after(mark, "app web: stopped taking traffic at", CHANGE_TIMEOUT);
    let out_of_routes = killed.elapsed();

    // From here every answer comes at once: a 503 while it backs off and
    // restarts, then the new process's 200.
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    let mut states = Vec::new();
    let back = loop {
        let sent = Instant::now();
        let r = c.try_get(&h, "/").unwrap_or_else(|e| {
            panic!(
                "no answer within {PROMPT:?} while the app is down ({:?} after the kill): {e}\n{}",
                sent.duration_since(killed),
                nexus.dump()
            )
        });
        if r.status() == 200 {
            break killed.elapsed();
        }
        let state = assert_unavailable(&r, "web");
        assert!(
            state.starts_with("restarting in ") || state == "starting",
            "unexpected state {state:?}"
        );
        if states.last() != Some(&state) {
            states.push(state);
        }
        assert!(
            Instant::now() < deadline,
            "never served again\n{}",
            nexus.dump()
        );
        thread::sleep(PACE);
    };
    assert!(
        !states.is_empty(),
        "no 503 seen between the kill and the restart"
    );
    nexus.wait_log_after(
        mark,
        "app web: exited (killed by signal 9); restarting in 1 s",
        Duration::from_secs(2),
    );
    let (_, new_pid, _) = wait_started(&nexus, mark, "web");
    assert_ne!(new_pid, pid);
    assert_groups_gone(&nexus, &[pid], Duration::from_secs(2));
    println!(
        "crash to serving again: {back:?} (out of the route map after {out_of_routes:?}; \
         503 states seen: {states:?})"
    );
}

#[test]
fn crash_looping_app_backs_off_1_2_4_s_while_another_app_keeps_serving() {
    let steady = host("steady");
    let conf = Conf::new()
        .command_app("steady", &steady, WHOAMI)
        .command_app("crash", &host("crash"), "exit 3")
        .unwaited();
    let nexus = Nexus::start(&conf);

    // A paced keep-alive client on the other app for the whole crash loop.
    let stop = Arc::new(AtomicBool::new(false));
    let port = nexus.port();
    let client = {
        let stop = stop.clone();
        let steady = steady.clone();
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut c = TlsClient::try_connect(port, &steady, Duration::from_secs(5))
                .map_err(|e| vec![format!("connect: {e}")])?;
            let mut ok = 0usize;
            let mut failed = Vec::new();
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match c.try_get(&steady, "/") {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.summary()),
                    Err(e) => {
                        failed.push(e);
                        match TlsClient::try_connect(port, &steady, Duration::from_secs(5)) {
                            Ok(fresh) => c = fresh,
                            Err(e) => failed.push(format!("reconnect: {e}")),
                        }
                    }
                }
                thread::sleep(PACE);
            }
            if failed.is_empty() {
                Ok(ok)
            } else {
                Err(failed)
            }
        })
    };

    let mut from = 0;
    let mut exits = Vec::new();
    for _ in 0..3 {
        let (i, line) = nexus.wait_log_after(
            from,
            "app crash: exited (exit status 3); restarting in ",
            CHANGE_TIMEOUT,
        );
        exits.push((i, line));
        from = i + 1;
    }
    let delays: Vec<Option<u64>> = exits.iter().map(|(_, l)| restart_delay(l)).collect();
    assert_eq!(delays, [Some(1), Some(2), Some(4)], "{}", nexus.dump());
    // The delays are kept: each restart comes that long after the exit before it.
    let lines = nexus.lines();
    let mut measured = Vec::new();
    for (i, exit) in &exits[..2] {
        let next = lines[*i..]
            .iter()
            .find(|l| l.contains("app crash: started pid "))
            .unwrap_or_else(|| panic!("no restart after {exit:?}\n{}", nexus.dump()));
        measured.push(log_gap(exit, next));
    }
    assert!(
        measured[0] >= 0.95 && measured[1] >= 1.95 && measured[1] > measured[0],
        "restart delays measured {measured:?}\n{}",
        nexus.dump()
    );

    // Its own host says it is down, and when to try again.
    let r = get_fresh(&nexus, &host("crash"), "/");
    let state = assert_unavailable(&r, "crash");
    assert!(
        state.starts_with("restarting in ") || state == "starting",
        "{state:?}"
    );

    stop.store(true, Ordering::SeqCst);
    let served = client
        .join()
        .unwrap_or_else(|_| panic!("the client thread panicked"))
        .unwrap_or_else(|failed| {
            panic!(
                "the other app failed during the crash loop: {failed:#?}\n{}",
                nexus.dump()
            )
        });
    assert!(
        served >= 20,
        "only {served} requests served to the other app"
    );
    println!(
        "crash loop: delays {delays:?} s announced, {measured:.2?} s measured; \
         the other app served {served} requests, 0 failed"
    );
}

/// What one client loop saw during a reload.
#[derive(Debug, Default)]
struct LoopTally {
    ok: usize,
    ok_after_stop: usize,
    failures: Vec<String>,
}

/// Runs requests to `host` (paced) until `end` is set and passed, or 30 s: on one
/// keep-alive connection (reconnecting when the server says close) or on a fresh
/// TLS connection each time. Sends one message once the first request succeeded.
fn client_loop(
    port: u16,
    host: String,
    keep_alive: bool,
    end: Arc<Mutex<Option<Instant>>>,
    old_stopped: Arc<Mutex<Option<Instant>>>,
    ready: mpsc::Sender<()>,
) -> thread::JoinHandle<LoopTally> {
    thread::spawn(move || {
        let hard_end = Instant::now() + Duration::from_secs(30);
        let mut tally = LoopTally::default();
        let mut conn: Option<TlsClient> = None;
        let mut announced = false;
        loop {
            let now = Instant::now();
            if now >= hard_end || lock(&end).is_some_and(|e| now >= e) {
                break;
            }
            let client = match conn.take() {
                Some(c) => Ok(c),
                None => TlsClient::try_connect(port, &host, Duration::from_secs(5)),
            };
            let result = client
                .map_err(|e| format!("connect: {e}"))
                .and_then(|mut c| c.try_get(&host, "/").map(|r| (c, r)));
            match result {
                Ok((c, r)) if r.status() == 200 => {
                    tally.ok += 1;
                    if lock(&old_stopped).is_some_and(|t| Instant::now() > t) {
                        tally.ok_after_stop += 1;
                    }
                    if keep_alive && !r.head.says_close() {
                        conn = Some(c);
                    }
                    if !announced {
                        announced = true;
                        let _ = ready.send(());
                    }
                }
                Ok((_, r)) => tally.failures.push(r.summary()),
                Err(e) => tally.failures.push(e),
            }
            thread::sleep(PACE);
        }
        tally
    })
}

#[test]
fn sighup_adds_removes_and_replaces_apps_without_a_failed_request() {
    let (keep, gone, swap, new) = (host("keep"), host("gone"), host("swap"), host("new"));
    let swap_cmd = format!("echo color=$COLOR; {WHOAMI}");
    let before = Conf::new()
        .command_app("keep", &keep, WHOAMI)
        .command_app("gone", &gone, WHOAMI)
        .command_app("swap", &swap, &swap_cmd)
        .app_key("env", "COLOR=blue");
    let nexus = Nexus::start(&before);
    let (keep_pid, _) = started(&nexus, "keep");
    let (gone_pid, _) = started(&nexus, "gone");
    let (old_pid, old_port) = started(&nexus, "swap");
    nexus.wait_log("[swap] color=blue", START_TIMEOUT);
    assert_eq!(get_fresh(&nexus, &new, "/").status(), 404);
    assert_eq!(get_fresh(&nexus, &gone, "/").status(), 200);

    // Two paced clients on the app being replaced: fresh TLS connections, and
    // one keep-alive connection.
    let end = Arc::new(Mutex::new(None));
    let old_stopped = Arc::new(Mutex::new(None));
    let (ready_tx, ready_rx) = mpsc::channel();
    let loops: Vec<_> = [false, true]
        .into_iter()
        .map(|keep_alive| {
            client_loop(
                nexus.port(),
                swap.clone(),
                keep_alive,
                end.clone(),
                old_stopped.clone(),
                ready_tx.clone(),
            )
        })
        .collect();
    for _ in 0..loops.len() {
        ready_rx
            .recv_timeout(CHANGE_TIMEOUT)
            .unwrap_or_else(|_| panic!("a client loop never got a 200\n{}", nexus.dump()));
    }

    let after = Conf::new()
        .command_app("keep", &keep, WHOAMI)
        .command_app("swap", &swap, &swap_cmd)
        .app_key("env", "COLOR=green")
        .command_app("new", &new, WHOAMI);
    nexus.write_config(&after);
    let mark = nexus.log_mark();
    nexus.sighup();
    nexus.wait_log_after(mark, "SIGHUP: reloading ", CHANGE_TIMEOUT);
    nexus.wait_log_after(
        mark,
        "reload: 1 added, 1 changed, 1 unchanged, 1 removed",
        CHANGE_TIMEOUT,
    );
    // Removed: its host leaves the route map at once (the app is drained of
    // what it was already serving, then stopped, below). A 200 can only be a
    // request that beat the route map's switch.
    let on_the_way_out = poll_until_status(&nexus, &gone, 404);
    assert!(
        on_the_way_out.iter().all(|(status, _)| *status == 200),
        "the removed host answered {on_the_way_out:?} before its 404"
    );

    // Replaced: generation 2 on a new port, healthy, then generation 1 drained and stopped.
    nexus.wait_log_after(
        mark,
        "app swap: changed; starting generation 2",
        CHANGE_TIMEOUT,
    );
    let (i, new_pid, new_port) = wait_started(&nexus, mark, "swap");
    assert!(
        nexus.lines()[i].ends_with(" (generation 2)"),
        "{}",
        nexus.lines()[i]
    );
    assert_ne!((new_pid, new_port), (old_pid, old_port));
    nexus.wait_log_after(mark, "[swap] color=green", CHANGE_TIMEOUT);
    nexus.wait_log_after(
        mark,
        &format!("app swap: healthy at 127.0.0.1:{new_port}"),
        CHANGE_TIMEOUT,
    );
    let (_, draining) = nexus.wait_log_after(
        mark,
        "app swap: generation 2 is healthy; draining generation 1 for 1 s",
        CHANGE_TIMEOUT,
    );
    nexus.wait_log_after(
        mark,
        &format!("app swap: stopped pid {old_pid} ("),
        CHANGE_TIMEOUT,
    );
    *lock(&old_stopped) = Some(Instant::now());
    assert_groups_gone(&nexus, &[old_pid], Duration::from_secs(5));
    // The loops go on for a second against generation 2 alone, then stop.
    *lock(&end) = Some(Instant::now() + Duration::from_secs(1));
    let tallies: Vec<LoopTally> = loops
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| panic!("a client loop panicked"))
        })
        .collect();

    // Added: its host goes from 404 to the app.
    nexus.wait_log_after(mark, "app new: healthy at", CHANGE_TIMEOUT);
    let r = get_fresh(&nexus, &new, "/");
    assert_eq!(r.status(), 200, "{}", r.summary());
    WhoamiReport::parse(&r.text());

    // Removed: drained, stopped, its group gone, its host unknown.
    nexus.wait_log_after(
        mark,
        "app gone: removed; stopping after a 1 s drain",
        CHANGE_TIMEOUT,
    );
    nexus.wait_log_after(
        mark,
        &format!("app gone: stopped pid {gone_pid} ("),
        CHANGE_TIMEOUT,
    );
    assert_eq!(get_fresh(&nexus, &gone, "/").status(), 404);
    assert_groups_gone(&nexus, &[gone_pid], Duration::from_secs(5));

    // Unchanged: the same process, never restarted.
    let restarted = nexus.lines()[mark..]
        .iter()
        .any(|l| l.contains("app keep: started pid"));
    assert!(!restarted, "keep was restarted\n{}", nexus.dump());
    assert!(procfs::alive(keep_pid), "keep's pid {keep_pid} is gone");
    assert_eq!(get_fresh(&nexus, &keep, "/").status(), 200);

    let (fresh, kept) = (&tallies[0], &tallies[1]);
    let total = fresh.ok + kept.ok + fresh.failures.len() + kept.failures.len();
    let failed = fresh.failures.len() + kept.failures.len();
    println!(
        "replace under load: {total} requests ({} on fresh TLS connections, {} keep-alive), \
         {failed} failed; {} and {} served after generation 1 stopped; {draining:?}; \
         the removed host answered {on_the_way_out:?} before its 404",
        fresh.ok + fresh.failures.len(),
        kept.ok + kept.failures.len(),
        fresh.ok_after_stop,
        kept.ok_after_stop,
    );
    assert_eq!(
        failed,
        0,
        "failed requests during the replace: fresh {:#?} keep-alive {:#?}\n{}",
        fresh.failures,
        kept.failures,
        nexus.dump()
    );
    assert!(
        fresh.ok_after_stop > 0 && kept.ok_after_stop > 0,
        "a loop served nothing after generation 1 stopped: {tallies:?}"
    );
}

/// A changed app is replaced without a failed request (... then the old
/// one is drained and stopped). A request the old generation is still serving
/// when the drain delay (1 s) is over holds its SIGTERM back (up to
/// shutdown_grace). Regression: the drain used to be a fixed 1 s, and a 2.5 s
/// request got a 502.
#[test]
fn replace_lets_a_slow_request_on_the_old_generation_finish() {
    let h = host("swap");
    let conf = |version: &str| {
        Conf::new()
            .set("shutdown_grace", "5")
            .command_app("swap", &h, WHOAMI)
            .app_key("env", &format!("VERSION={version}"))
    };
    let nexus = Nexus::start(&conf("1"));
    let (old_pid, old_port) = started(&nexus, "swap");
    let mut c = connect(&nexus, &h);
    c.send(format!("GET /sleep/2500 HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes());
    wait_request_reached_app(&nexus, old_port);
    nexus.write_config(&conf("2"));
    let mark = nexus.log_mark();
    nexus.sighup();
    nexus.wait_log_after(
        mark,
        "app swap: generation 2 is healthy; draining generation 1",
        CHANGE_TIMEOUT,
    );
    let r = c.response();
    assert_eq!(r.status(), 200, "{}\n{}", r.summary(), nexus.dump());
    nexus.wait_log_after(
        mark,
        &format!("app swap: stopped pid {old_pid} ("),
        CHANGE_TIMEOUT,
    );
}

#[test]
fn sighup_with_a_bad_config_changes_nothing() {
    let h = host("web");
    let conf = Conf::new().command_app("web", &h, WHOAMI);
    let nexus = Nexus::start(&conf);
    let (pid, _) = started(&nexus, "web");
    let mut c = connect(&nexus, &h);
    assert_eq!(c.get(&h, "/").status(), 200);

    let bad_configs = [
        // Does not parse.
        format!("{}\nthis line has no equals sign\n", conf.render()),
        // Parses, but its certificate does not load.
        conf.clone()
            .set("cert", "/nonexistent/nexushub-test.pem")
            .render(),
        // Each line parses, but two apps claim one host.
        conf.clone().command_app("web2", &h, WHOAMI).render(),
    ];
    let mark = nexus.log_mark();
    let mut reasons = Vec::new();
    let mut from = mark;
    for text in &bad_configs {
        nexus.write_config_text(text);
        nexus.sighup();
        let (i, line) = nexus.wait_log_after(
            from,
            "reload refused, running configuration kept: ",
            CHANGE_TIMEOUT,
        );
        reasons.push(line);
        from = i + 1;
        // Still served, by the same process, on the same connection and on a new one.
        assert_eq!(c.get(&h, "/").status(), 200);
        assert_eq!(get_fresh(&nexus, &h, "/").status(), 200);
    }
    let since: Vec<String> = nexus.lines()[mark..].to_vec();
    assert!(
        !since
            .iter()
            .any(|l| l.contains("app web: started pid") || l.contains("reload: ")),
        "a refused reload changed something\n{}",
        nexus.dump()
    );
    assert!(procfs::alive(pid), "the app's pid {pid} is gone");
    assert_eq!(started(&nexus, "web").0, pid);
    let bad_line = format!("nexushub.conf:{}: ", bad_configs[0].lines().count());
    assert!(
        reasons[0].contains(&bad_line),
        "the refusal does not name the file and the line ({bad_line:?}): {:?}",
        reasons[0]
    );

    // The running configuration really is the first one: putting it back
    // changes nothing either.
    nexus.write_config(&conf);
    nexus.sighup();
    nexus.wait_log_after(
        from,
        "reload: 0 added, 0 changed, 1 unchanged, 0 removed",
        CHANGE_TIMEOUT,
    );
    assert_eq!(started(&nexus, "web").0, pid);
    println!("bad configs refused: {reasons:#?}");
}

#[test]
fn sigterm_lets_a_slow_request_finish_exits_0_and_leaves_no_child() {
    let h = host("web");
    let mut nexus = Nexus::start(
        &Conf::new()
            .set("shutdown_grace", "5")
            .command_app("web", &h, WHOAMI),
    );
    let (pid, port) = started(&nexus, "web");
    assert!(
        !group_members(pid).is_empty(),
        "the app's group {pid} is not in /proc"
    );
    let mut c = connect(&nexus, &h);
    let sent = Instant::now();
    c.send(format!("GET /sleep/1500 HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes());
    wait_request_reached_app(&nexus, port);
    nexus.sigterm();
    let r = c.response();
    assert_eq!(r.status(), 200, "{}\n{}", r.summary(), nexus.dump());
    assert_eq!(
        WhoamiReport::parse(&r.text()).request_line,
        "GET /sleep/1500 HTTP/1.1"
    );
    assert!(sent.elapsed() >= Duration::from_millis(1500));
    let status = nexus.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", nexus.dump());
    nexus.wait_log("1 request(s) in flight", Duration::from_secs(1));
    nexus.wait_log(
        &format!("app web: stopped pid {pid} ("),
        Duration::from_secs(1),
    );
    assert_groups_gone(&nexus, &[pid], Duration::from_secs(2));
}

#[test]
fn sigkill_of_nexushub_leaves_no_child_within_2_s() {
    let conf = Conf::new()
        .command_app("web", &host("web"), WHOAMI)
        // A grandchild too: `sleep` forked by the shell before it becomes whoami.
        .command_app("family", &host("family"), &format!("sleep 60 & {WHOAMI}"));
    let mut nexus = Nexus::start(&conf);
    let groups = [started(&nexus, "web").0, started(&nexus, "family").0];
    for g in groups {
        watchdog_of(&nexus, g);
    }
    assert!(
        group_members(groups[1]).iter().any(|p| p.comm == "sleep"),
        "no grandchild in group {}",
        groups[1]
    );

    let killed = Instant::now();
    nexus.signal("KILL");
    let status = nexus.wait_exit(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status:?}"
    );
    let left = Duration::from_secs(2).saturating_sub(killed.elapsed());
    assert_groups_gone(&nexus, &groups, left);
    println!(
        "SIGKILL of nexushub: every app group gone {:?} after the kill",
        killed.elapsed()
    );
}

/// A field of `/proc/PID/status` (`VmRSS`, `RssAnon`, `Uid`, ...): its first
/// number (kB for sizes, the real id for `Uid`).
fn status_field(pid: u32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status:\n{text}"))
}

/// The owner of `/proc/PID/status`: the process's own user while it is
/// dumpable, root once it is not (the kernel hides a non-dumpable process's
/// files from other processes of its user).
fn status_owner(pid: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"))
        .uid()
}

/// What `/proc/PID/fd` of `pid` leads to, in fd order.
fn fd_targets(pid: u32) -> Vec<String> {
    let mut fds: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(e.path()).ok()?.display().to_string()))
        })
        .collect();
    fds.sort();
    fds.into_iter().map(|(_, t)| t).collect()
}

/// The pid of the watchdog in app group `group`, waited for (bounded): it takes
/// its name `nexushub-watch` a moment after its exec.
fn watchdog_of(nexus: &Nexus, group: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let members = group_members(group);
        if let Some(dog) = members.iter().find(|p| p.comm == "nexushub-watch") {
            return dog.pid;
        }
        assert!(
            Instant::now() < deadline,
            "no watchdog in group {group}: {members:#?}\n{}",
            nexus.dump()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether this process may read any process's `/proc/PID/fd` and `exe`
/// (`CAP_SYS_PTRACE` in effect), a non-dumpable one's included.
fn can_ptrace() -> bool {
    const CAP_SYS_PTRACE: u32 = 19;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0)
}

/// The bound on a watchdog's private anonymous memory (`RssAnon`): measured at
/// 248 kB for a debug build; a fork of nexushub would carry nexushub's own
/// (checked to be at least twice this bound below).
const WATCHDOG_MAX_ANON_KB: u64 = 512;

/// The bound on a watchdog's whole resident memory (`VmRSS`): measured at 3.3
/// to 3.7 MiB for a debug build, nearly all of it pages of the binary and libc
/// shared with every other nexushub process (a fork maps fewer of those at
/// first, so this alone cannot tell one).
const WATCHDOG_MAX_RSS_KB: u64 = 6 * 1024;

#[test]
fn watchdog_is_a_small_non_dumpable_exec_of_nexushub_not_a_fork() {
    use std::os::unix::fs::MetadataExt;
    // Dumpability shows in /proc only to another user than the process's: run
    // nexushub as `nobody` when the tests run as root.
    let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    let h = host("web");
    let conf = Conf::new().command_app("web", &h, WHOAMI);
    let nexus = if me == 0 {
        Nexus::start_as(&conf, 65534)
    } else {
        Nexus::start(&conf)
    };
    let (first, _) = started(&nexus, "web");
    let pid = nexus.pid();
    let user = status_field(pid, "Uid");
    assert_ne!(user, 0, "nexushub runs as root: dumpability cannot show");

    // Traffic first, and connections held open, so that nexushub's heap is
    // well above what a watchdog needs when the app is restarted: a watchdog
    // forked then would carry it.
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut c = connect(&nexus, &h);
        let r = c.request("POST", &h, "/", &[b'x'; 64 * 1024]);
        assert_eq!(r.status(), 200, "{}", r.summary());
        held.push(c);
    }
    let mark = nexus.log_mark();
    kill(first, "KILL");
    let (_, app, _) = wait_started(&nexus, mark, "web");
    let nexus_anon = status_field(pid, "RssAnon");

    let watch = watchdog_of(&nexus, app);
    let cmdline = std::fs::read(format!("/proc/{watch}/cmdline")).expect("cmdline");
    assert_eq!(
        String::from_utf8_lossy(&cmdline),
        format!("nexushub\0__watchdog\0{app}\0"),
        "the watchdog is not an exec of the hidden subcommand"
    );
    let (watch_anon, watch_rss) = (status_field(watch, "RssAnon"), status_field(watch, "VmRSS"));
    println!(
        "RssAnon: watchdog {watch_anon} kB (VmRSS {watch_rss} kB, mostly the binary's \
         shared pages), nexushub {nexus_anon} kB (VmRSS {} kB)",
        status_field(pid, "VmRSS")
    );
    assert!(
        nexus_anon >= 2 * WATCHDOG_MAX_ANON_KB,
        "nexushub's heap ({nexus_anon} kB) too small for this test to tell a fork"
    );
    assert!(
        watch_anon < WATCHDOG_MAX_ANON_KB,
        "watchdog RssAnon {watch_anon} kB, nexushub {nexus_anon} kB"
    );
    assert!(
        watch_rss < WATCHDOG_MAX_RSS_KB,
        "watchdog VmRSS {watch_rss} kB"
    );

    // Non-dumpable: nexushub and its watchdog (root-owned /proc files though
    // they run as `user`); the app stays an ordinary, dumpable process.
    assert_eq!(status_field(watch, "Uid"), user);
    assert_eq!(status_owner(pid), 0, "nexushub is dumpable");
    assert_eq!(status_owner(watch), 0, "the watchdog is dumpable");
    assert_eq!(status_owner(app), user as u32, "the app is not dumpable");

    if can_ptrace() {
        // What only a privileged reader may see of a non-dumpable process.
        let exe = std::fs::read_link(format!("/proc/{watch}/exe")).expect("exe");
        let bin = crate::support::nexushub_bin()
            .canonicalize()
            .expect("binary");
        assert_eq!(exe, bin);
        let targets = fd_targets(watch);
        let [pipe, null1, null2, signalfd] = targets.as_slice() else {
            panic!("watchdog fds: {targets:?}");
        };
        assert!(pipe.starts_with("pipe:["), "fd 0: {pipe}");
        assert!(
            fd_targets(pid).contains(pipe),
            "fd 0 is not nexushub's watchdog pipe"
        );
        assert_eq!([null1, null2], ["/dev/null", "/dev/null"]);
        assert_eq!(signalfd, "anon_inode:[signalfd]");
        let environ = std::fs::read(format!("/proc/{watch}/environ")).expect("environ");
        assert!(environ.is_empty(), "{}", String::from_utf8_lossy(&environ));
    }
    drop(held);
}

#[test]
fn app_that_ignores_port_is_reported_in_the_log_and_the_503() {
    let h = host("deaf");
    let conf = Conf::new()
        .command_app("deaf", &h, "sleep 60")
        .app_key("start_timeout", "1")
        .unwaited();
    let nexus = Nexus::start(&conf);
    let (_, _, port) = wait_started(&nexus, 0, "deaf");
    nexus.wait_log(
        &format!(
            "app deaf: never became ready on port {port} within 1 s (does it listen on $PORT?)"
        ),
        CHANGE_TIMEOUT,
    );
    // It is restarted; the 503 says why it is down (between restarts it says
    // "restarting in N s"); the port is the operator's business, in the log only.
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    let mut states = Vec::new();
    let said = loop {
        let r = get_fresh(&nexus, &h, "/");
        let state = assert_unavailable(&r, "deaf");
        if state.starts_with("never became ready") {
            break state;
        }
        if states.last() != Some(&state) {
            states.push(state);
        }
        assert!(
            Instant::now() < deadline,
            "no 503 said it never became ready; saw {states:?}\n{}",
            nexus.dump()
        );
        thread::sleep(PACE);
    };
    assert_eq!(said, "never became ready", "the 503 names a port");
    println!("app ignoring PORT: 503 said {said:?} (before: {states:?})");
}

#[test]
fn app_output_is_logged_line_by_line_with_its_name() {
    let h = host("talky");
    let conf = Conf::new().command_app(
        "talky",
        &h,
        &format!("echo hello-from-app; echo to-stderr 1>&2; {WHOAMI}"),
    );
    let nexus = Nexus::start(&conf);
    let (_, port) = started(&nexus, "talky");
    for (needle, ends) in [
        (
            "[talky] hello-from-app",
            "] [talky] hello-from-app".to_string(),
        ),
        ("[talky] to-stderr", "] [talky] to-stderr".to_string()),
        (
            "[talky] whoami listening on",
            format!("] [talky] whoami listening on 127.0.0.1:{port}"),
        ),
    ] {
        let line = nexus.wait_log(needle, Duration::from_secs(5));
        assert!(line.ends_with(&ends), "{line:?} does not end with {ends:?}");
    }
}

#[cfg(test)]
mod parse {
    use super::*;

    #[test]
    fn started_line_gives_pid_and_port() {
        let line =
            "2026-01-01T00:00:00.5Z [INFO] app web: started pid 4242 on port 38111 (generation 2)";
        assert_eq!(parse_started(line, "web"), Some((4242, 38111)));
        assert_eq!(parse_started(line, "we"), None);
    }

    #[test]
    fn restart_delay_is_read() {
        let line = "t [WARN] app c: exited (exit status 3); restarting in 4 s";
        assert_eq!(restart_delay(line), Some(4));
    }

    #[test]
    fn log_time_stamps_subtract() {
        let a = "2026-11-25T21:46:02.01915319Z [WARN] x";
        let b = "2026-11-25T21:46:04.5Z [INFO] y";
        assert!((log_gap(a, b) - 2.480_846_81).abs() < 1e-6);
        let c = "2026-11-26T00:00:00Z [INFO] z";
        let d = "2026-11-25T23:59:59Z [INFO] z";
        assert!((log_gap(d, c) - 1.0).abs() < 1e-9);
    }
}
