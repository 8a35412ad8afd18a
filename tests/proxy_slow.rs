//! Slow peers in the middle of an exchange: a request body that trickles in, a
//! response that is not read, a backend that takes its time to answer. Their
//! exchanges are parked (no worker waits on them), so as many of them as there
//! are workers, and more, leave the workers free for everyone else; each still
//! completes when its peer catches up, and is cut off when its client lets
//! `client_timeout` pass.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::support::backend::response;
use crate::support::{
    pattern_fnv, Backend, Conf, Nexus, PatternCheck, Reply, TlsClient, HELLO, MIB,
};

/// How soon a new client must be served while slow ones hold exchanges open.
const SERVED_WITHIN: Duration = Duration::from_secs(5);
/// Bigger than every socket buffer between nexushub and a client that does not
/// read (loopback autotuning grows them to a few MiB each way).
const BIG: u64 = 64 * MIB;

/// A fresh client's GET is answered (its response head arrives) within `within`,
/// and its body then arrives whole. Only the head is timed: with a 64 MiB pattern
/// backend the body's transfer time measures the machine's load, not whether a
/// worker was free.
fn assert_fresh_client_served(nexus: &Nexus, path: &str, within: Duration) {
    let started = Instant::now();
    let mut fresh = nexus.client(HELLO);
    fresh.set_read_timeout(SERVED_WITHIN);
    fresh.send(format!("GET {path} HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes());
    let head = fresh.final_head();
    let took = started.elapsed();
    assert_eq!(head.status, 200, "{}\n{}", head.raw, nexus.dump());
    assert!(
        took < within,
        "a new client waited {took:?}\n{}",
        nexus.dump()
    );
    fresh
        .body(&head, "GET", &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}\n{}", nexus.dump()));
}

/// `n` clients, each with `GET {prefix}/{i}` sent and its answer not read yet.
fn send_gets(nexus: &Nexus, prefix: &str, n: usize) -> Vec<TlsClient> {
    (0..n)
        .map(|i| {
            let mut c = nexus.client(HELLO);
            c.send(format!("GET {prefix}/{i} HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes());
            c
        })
        .collect()
}

/// Starts an upload of `len` bytes with `Expect: 100-continue` and sends only
/// `sent` of them: once the `100 Continue` is in, nexushub has sent the head to
/// the backend and waits for the body.
fn start_upload(nexus: &Nexus, path: &str, len: u64, sent: u64) -> TlsClient {
    let mut c = nexus.client(HELLO);
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {HELLO}\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    let interim = c.head();
    assert_eq!(interim.status, 100, "{}", interim.raw);
    c.send_pattern(sent);
    c
}

/// A gate backend handlers wait at until the test opens it (or `within` passes).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut open = crate::support::lock(&self.open);
        while !*open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            open = match self.opened.wait_timeout(open, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn open(&self) {
        *crate::support::lock(&self.open) = true;
        self.opened.notify_all();
    }
}

/// A backend that answers each request with its path; those to the paths
/// `held` picks wait for `gate` first (20 s at most).
fn gated_backend(gate: &Arc<Gate>, held: fn(&str) -> bool) -> Backend {
    let gate = Arc::clone(gate);
    Backend::http(move |seen| {
        if held(&seen.path) {
            gate.wait(Duration::from_secs(20));
        }
        crate::support::Reply::keep(crate::support::backend::response(
            200,
            &[],
            seen.path.as_bytes(),
        ))
    })
}

#[test]
fn slow_backend_answers_do_not_hold_the_workers() {
    let gate = Arc::new(Gate::default());
    let backend = gated_backend(&gate, |path| path.starts_with("/slow/"));
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            .app("hello", HELLO, backend.addr()),
    );
    // Three times as many requests waiting on the backend as workers: all of
    // them reach it (with workers blocked on it, only two would).
    let mut slow = send_gets(&nexus, "/slow", 6);
    if let Err(n) = backend.wait_seen(6, SERVED_WITHIN) {
        panic!(
            "{n} of 6 slow requests reached the backend\n{}",
            nexus.dump()
        );
    }
    assert_fresh_client_served(&nexus, "/fresh", SERVED_WITHIN);
    gate.open();
    for (i, c) in slow.iter_mut().enumerate() {
        let r = c.response();
        assert_eq!(
            (r.status(), r.text()),
            (200, format!("/slow/{i}")),
            "{}",
            r.summary()
        );
    }
}

#[test]
fn request_sent_while_the_previous_waits_on_its_backend_is_answered() {
    let gate = Arc::new(Gate::default());
    let backend = gated_backend(&gate, |path| path == "/slow");
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "1")
            .set("idle_timeout", "60")
            .app("hello", HELLO, backend.addr()),
    );
    let mut c = nexus.client(HELLO);
    c.set_read_timeout(SERVED_WITHIN);
    c.send(format!("GET /slow HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes());
    if let Err(n) = backend.wait_seen(1, SERVED_WITHIN) {
        panic!("{n} requests reached the backend\n{}", nexus.dump());
    }
    // The next request comes while the first is parked on its backend: its
    // readiness reaches the one worker while the connection is not parked on
    // its own socket. A fresh client served after it means that event was
    // taken (one worker, events in order) before the first answer went out.
    c.send(format!("GET /next HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes());
    assert_fresh_client_served(&nexus, "/fresh", SERVED_WITHIN);
    gate.open();
    for want in ["/slow", "/next"] {
        let r = c.response();
        assert_eq!(
            (r.status(), r.text().as_str()),
            (200, want),
            "{}\n{}",
            r.summary(),
            nexus.dump()
        );
    }
}

/// How soon a new client must be served while clients that nexushub answered
/// itself sit on their connections: far less than they could hold a worker
/// for (a linger of 500 ms each, or `head_timeout` for a held-back body).
const SERVED_BESIDE_WITHIN: Duration = Duration::from_millis(1500);

#[test]
fn bad_requests_from_clients_that_then_stay_silent_do_not_hold_the_workers() {
    let backend = Backend::ok("fresh");
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            .app("hello", HELLO, backend.addr()),
    );
    // Each gets its 400, and nexushub then reads away what the client may still
    // send, so that its answer is not destroyed by a reset: twenty of them
    // waiting on a silent client with two workers would hold both for seconds.
    let mut bad: Vec<TlsClient> = (0..20).map(|_| nexus.client(HELLO)).collect();
    for c in &mut bad {
        c.send(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nBad Header: x\r\n\r\n");
    }
    assert_fresh_client_served(&nexus, "/fresh", SERVED_BESIDE_WITHIN);
    for c in &mut bad {
        c.set_read_timeout(SERVED_WITHIN);
        let r = c.response();
        assert_eq!(r.status(), 400, "{}", r.summary());
        // Closed once the linger is over, not left open.
        c.expect_closed();
    }
}

#[test]
fn local_answers_to_requests_whose_body_is_held_back_do_not_hold_the_workers() {
    let backend = Backend::ok("fresh");
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            .set("head_timeout", "20")
            .app("hello", HELLO, backend.addr()),
    );
    // Unknown hosts (404) with a small body that never comes: nexushub answers
    // them itself, and must not wait for the body to keep the connection.
    let mut held: Vec<TlsClient> = (0..4)
        .map(|_| TlsClient::connect_without_sni(nexus.port()))
        .collect();
    for c in &mut held {
        c.send(b"POST / HTTP/1.1\r\nHost: nobody.test.localhost\r\nContent-Length: 1000\r\n\r\n");
    }
    for c in &mut held {
        c.set_read_timeout(SERVED_WITHIN);
        let r = c.response();
        assert_eq!(r.status(), 404, "{}", r.summary());
        assert_eq!(r.header("connection"), Some("close"), "{}", r.summary());
    }
    assert_fresh_client_served(&nexus, "/fresh", SERVED_BESIDE_WITHIN);
}

/// A host routed to an app whose connects hang (see the test below).
const STUCK: &str = "a.test.localhost";

#[test]
fn backend_connects_that_hang_do_not_hold_the_workers() {
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    // A listener that never accepts: once its accept queue is full the kernel
    // drops further SYNs, so a connect to it hangs. It passes its health check
    // (a TCP connect) first, while the queue has room.
    let stuck = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("bind: {e}"));
    let stuck_addr = stuck
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    let backend = Backend::ok("fresh");
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            .set("backend_connect_timeout", "3")
            .app("hello", HELLO, backend.addr())
            .app("stuck", STUCK, stuck_addr),
    );
    let mut queued = Vec::new();
    let mut full = false;
    for _ in 0..2000 {
        match TcpStream::connect_timeout(&stuck_addr, Duration::from_millis(200)) {
            Ok(s) => queued.push(s),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(
        full,
        "the accept queue never filled ({} connections)",
        queued.len()
    );
    // Every client's handshake done first, while the workers are free.
    let mut waiting: Vec<TlsClient> = (0..4).map(|_| nexus.client(STUCK)).collect();
    let mut fresh = nexus.client(HELLO);
    fresh.set_read_timeout(SERVED_WITHIN);
    // Twice as many requests as workers, each waiting on a connect that hangs.
    for (i, c) in waiting.iter_mut().enumerate() {
        c.send(format!("GET /stuck/{i} HTTP/1.1\r\nHost: {STUCK}\r\n\r\n").as_bytes());
    }
    // With the workers blocked in connect, this would wait the 3 s out.
    let started = Instant::now();
    let r = fresh.get(HELLO, "/fresh");
    let took = started.elapsed();
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "fresh"),
        "{}",
        r.summary()
    );
    assert!(
        took < Duration::from_millis(1500),
        "a new client waited {took:?}"
    );
    for c in waiting.iter_mut() {
        let r = c.response();
        assert_eq!(r.status(), 504, "{}\n{}", r.summary(), nexus.dump());
        assert!(
            r.text().contains("connecting to app stuck"),
            "{}",
            r.summary()
        );
    }
    drop(queued);
}

#[test]
fn backends_slow_to_read_uploads_do_not_hold_the_workers() {
    use std::io::{Read, Write};
    // Bigger than the socket buffers between nexushub and the app, so that the
    // app's socket fills while the app does not read.
    const LEN: u64 = 32 * MIB;
    let gate = Arc::new(Gate::default());
    let heads = Arc::new((Mutex::new(0usize), Condvar::new()));
    let (held, seen) = (Arc::clone(&gate), Arc::clone(&heads));
    let backend = Backend::raw(move |mut conn, _| {
        // A GET is answered at once; an upload's head is read, then nothing
        // until the gate opens, then its body.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if text.starts_with("get ") {
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            return;
        }
        let len: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        {
            let (count, changed) = &*seen;
            *crate::support::lock(count) += 1;
            changed.notify_all();
        }
        held.wait(Duration::from_secs(20));
        let got = std::io::copy(&mut (&mut conn).take(len), &mut std::io::sink()).unwrap_or(0);
        let body = got.to_string();
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            .app("hello", HELLO, backend.addr()),
    );
    // More uploads than workers, each into an app that does not read it.
    let uploads: Vec<_> = (0..3)
        .map(|i| {
            let mut c = nexus.client(HELLO);
            std::thread::spawn(move || {
                c.send(
                    format!(
                        "POST /up/{i} HTTP/1.1\r\nHost: {HELLO}\r\nContent-Length: {LEN}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                c.send_pattern(LEN);
                let r = c.response();
                (r.status(), r.text())
            })
        })
        .collect();
    {
        let (count, changed) = &*heads;
        let deadline = Instant::now() + SERVED_WITHIN;
        let mut n = crate::support::lock(count);
        while *n < 3 && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            n = match changed.wait_timeout(n, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        assert_eq!(*n, 3, "heads the app received\n{}", nexus.dump());
    }
    assert_fresh_client_served(&nexus, "/fresh", SERVED_WITHIN);
    gate.open();
    for u in uploads {
        let (status, text) = u.join().unwrap_or_else(|_| panic!("an uploader panicked"));
        assert_eq!((status, text), (200, LEN.to_string()));
    }
}

#[test]
fn slow_uploads_do_not_hold_the_workers() {
    let backend = Backend::http(|seen| {
        let body = format!("{} bytes", seen.body.len());
        crate::support::Reply::keep(crate::support::backend::response(200, &[], body.as_bytes()))
    });
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            .app("hello", HELLO, backend.addr()),
    );
    // Three times as many stalled uploads as workers.
    let mut slow: Vec<TlsClient> = (0..6)
        .map(|i| start_upload(&nexus, &format!("/up/{i}"), 100_000, 10))
        .collect();
    assert_fresh_client_served(&nexus, "/fresh", SERVED_WITHIN);
    // A stalled upload that resumes is forwarded whole and answered.
    let c = &mut slow[0];
    c.send_pattern(100_000 - 10);
    let r = c.response();
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "100000 bytes"),
        "{}",
        r.summary()
    );
}

#[test]
fn slow_readers_do_not_hold_the_workers() {
    // Only `/big` is big: the fresh client's answer is small, so the bound on
    // it times whether a worker was free, not a 64 MiB transfer.
    let backend = Backend::http(|seen| {
        if seen.path.starts_with("/big") {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BIG}\r\n\r\n"
            );
            Reply::keep(head).with_pattern(BIG)
        } else {
            Reply::keep(response(200, &[], b"small"))
        }
    });
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            .app("hello", HELLO, backend.addr()),
    );
    // Four clients ask for 64 MiB each and read none of it.
    let mut slow = send_gets(&nexus, "/big", 4);
    if let Err(n) = backend.wait_seen(4, Duration::from_secs(10)) {
        panic!("the backend saw {n} of 4 requests\n{}", nexus.dump());
    }
    assert_fresh_client_served(&nexus, "/fresh", SERVED_WITHIN);
    // A slow reader that starts reading gets every byte, unchanged.
    let c = &mut slow[0];
    c.set_read_timeout(Duration::from_secs(20));
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let mut check = PatternCheck::default();
    c.body(&head, "GET", &mut |b| check.feed(b))
        .unwrap_or_else(|e| panic!("{e}\n{}", nexus.dump()));
    assert_eq!(check.len, BIG);
    assert_eq!(check.hash.value(), pattern_fnv(BIG));
    // And the connection goes on.
    c.send(format!("GET /small HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes());
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
}

#[test]
fn reader_stalled_past_client_timeout_is_cut_off_and_logged() {
    let backend = Backend::pattern(BIG);
    let nexus = Nexus::start(
        &Conf::new()
            .set("client_timeout", "1")
            .set("min_data_rate", "0")
            .app("hello", HELLO, backend.addr()),
    );
    let mut c = nexus.client(HELLO);
    c.send(format!("GET /stalled HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes());
    nexus.wait_log(
        "client: timed out while receiving the response",
        Duration::from_secs(10),
    );
    // What the client reads now ends short of the 64 MiB it was promised.
    c.set_read_timeout(Duration::from_secs(10));
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let mut got = 0u64;
    let res = c.body(&head, "GET", &mut |b| got += b.len() as u64);
    assert!(res.is_err(), "a cut response read as whole ({got} bytes)");
    assert!(got < BIG, "read {got} bytes");
    // The access log has the line, with the status that was sent.
    let line = nexus.wait_log("GET /stalled", Duration::from_secs(5));
    assert!(line.contains(" 200 "), "{line}");
}

#[test]
fn upload_stalled_past_client_timeout_is_cut_off_and_logged() {
    let backend = Backend::ok("served");
    let nexus = Nexus::start(
        &Conf::new()
            .set("client_timeout", "1")
            .set("min_data_rate", "0")
            .app("hello", HELLO, backend.addr()),
    );
    let mut c = start_upload(&nexus, "/stalled-up", 100_000, 10);
    nexus.wait_log(
        "client: timed out while sending the request body",
        Duration::from_secs(10),
    );
    c.set_read_timeout(Duration::from_secs(5));
    let rest = c.expect_closed();
    assert!(rest.is_empty(), "got bytes after the cut: {rest:?}");
    // The backend never got a whole request.
    assert!(backend.seen().is_empty(), "{:?}", backend.seen());
}

#[test]
fn sigterm_lets_a_parked_slow_reader_finish_then_exits_0() {
    let backend = Backend::pattern(BIG);
    let mut nexus = Nexus::start(&Conf::new().set("shutdown_grace", "20").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    c.send(format!("GET /big HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes());
    if let Err(n) = backend.wait_seen(1, Duration::from_secs(10)) {
        panic!("the backend saw {n} requests\n{}", nexus.dump());
    }
    // An idle keep-alive connection, to be closed at once by the shutdown.
    let mut idle = nexus.client(HELLO);
    assert_eq!(idle.get(HELLO, "/idle").status(), 200);
    nexus.sigterm();
    nexus.wait_log("shutting down: no new connections", Duration::from_secs(3));
    let rest = idle.expect_closed();
    assert!(rest.is_empty(), "the idle connection got {rest:?}");
    // The reader that was not reading gets its whole response (its head went
    // out before the signal, so it said keep-alive), then the close.
    c.set_read_timeout(Duration::from_secs(20));
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let mut check = PatternCheck::default();
    c.body(&head, "GET", &mut |b| check.feed(b))
        .unwrap_or_else(|e| panic!("{e}\n{}", nexus.dump()));
    assert_eq!((check.len, check.hash.value()), (BIG, pattern_fnv(BIG)));
    let rest = c.expect_closed();
    assert!(rest.is_empty(), "got {rest:?} after the response");
    let status = nexus.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", nexus.dump());
}
