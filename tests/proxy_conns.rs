//! Connections over time: TLS versions and ALPN, keep-alive, pipelining, HTTP/1.0,
//! backend connection reuse, plain HTTP on the TLS port, the deadlines that close
//! silent and idle connections, the workers that silent and idle connections must not
//! pin, the access log, and SIGTERM.

use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ProtocolVersion;

use crate::support::backend::{chunked_response, response};
use crate::support::tls_client::{client_config, tcp_connect, PlainClient};
use crate::support::{lock, Backend, Conf, Framing, Nexus, Reply, TlsClient, HELLO};

/// How soon a new client must be served while others sit parked.
const SERVED_WITHIN: Duration = Duration::from_secs(5);

#[test]
fn tls12_and_tls13_clients_are_served_with_http11_alpn() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::hello(backend.addr());
    for (version, want) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let name = ServerName::try_from(HELLO).unwrap_or_else(|e| panic!("{e}"));
        let mut c = TlsClient::connect_with(nexus.port(), name, client_config(&[version]))
            .unwrap_or_else(|e| panic!("{want:?} handshake: {e}"));
        assert_eq!(c.tls().protocol_version(), Some(want));
        assert_eq!(c.tls().alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(c.get(HELLO, "/").status(), 200);
    }
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    for i in 0..5 {
        let r = c.get(HELLO, &format!("/req/{i}"));
        assert_eq!(
            (r.status(), r.text()),
            (200, format!("GET /req/{i}")),
            "{}",
            r.summary()
        );
        assert!(!r.head.says_close());
        assert_eq!(r.head.minor_version, 1, "{}", r.summary());
    }
    assert_eq!(backend.seen().len(), 5);
}

#[test]
fn idle_backend_connection_is_reused() {
    let backend = Backend::echo_target();
    // One worker: the idle pool may be per worker, and this is about reuse, not about
    // which worker picks the next request up.
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "1")
            .app("hello", HELLO, backend.addr()),
    );
    let mut c = nexus.client(HELLO);
    for i in 0..5 {
        assert_eq!(c.get(HELLO, &format!("/{i}")).status(), 200);
    }
    let conns: std::collections::BTreeSet<usize> = backend.seen().iter().map(|s| s.conn).collect();
    assert_eq!(
        conns.len(),
        1,
        "sequential requests used backend connections {conns:?}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(
        b"GET /one HTTP/1.1\r\nHost: hello.localhost\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 3\r\n\r\nabc\
          GET /three HTTP/1.1\r\nHost: hello.localhost\r\n\r\n",
    );
    for want in ["GET /one", "POST /two", "GET /three"] {
        let r = c.response();
        assert_eq!(
            (r.status(), r.text().as_str()),
            (200, want),
            "{}",
            r.summary()
        );
    }
    let seen = backend.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/one", "/two", "/three"]);
    assert_eq!(seen[1].body, b"abc");
}

#[test]
fn client_that_closes_its_side_after_a_request_is_answered_then_closed_at_once() {
    let backend = Backend::echo_target();
    let nexus = Nexus::start(&Conf::new().set("idle_timeout", "60").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    // The request and the client's end arrive together (often in one event:
    // the end must not be missed because the bytes before it were read).
    c.send(b"GET /last HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    c.shutdown_write();
    let r = c.response();
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "GET /last"),
        "{}",
        r.summary()
    );
    // Closed when the end is read, not after idle_timeout.
    c.set_read_timeout(SERVED_WITHIN);
    c.expect_closed();
}

#[test]
fn http10_request_without_keep_alive_is_answered_then_closed() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET /ten HTTP/1.0\r\nHost: hello.localhost\r\n\r\n");
    let r = c.response();
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "GET /ten"),
        "{}",
        r.summary()
    );
    c.expect_closed();
    let seen = backend.only();
    assert_eq!(seen.minor_version, 1, "the backend should get HTTP/1.1");
}

#[test]
fn http10_request_with_keep_alive_keeps_the_connection() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    for path in ["/first", "/second"] {
        c.send(
            format!(
                "GET {path} HTTP/1.0\r\nHost: hello.localhost\r\nConnection: keep-alive\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = c.response();
        assert_eq!(r.text(), format!("GET {path}"), "{}", r.summary());
        assert!(
            matches!(r.framing, Framing::Length(_)),
            "a kept-alive HTTP/1.0 answer needs a Content-Length: {}",
            r.summary()
        );
    }
    assert_eq!(backend.seen().len(), 2);
}

#[test]
fn http10_client_gets_a_chunked_backend_response_close_delimited() {
    let backend = Backend::http(|_| Reply::keep(chunked_response(200, &[], &[b"abc", b"def"])));
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET / HTTP/1.0\r\nHost: hello.localhost\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    assert!(
        !r.head.has("transfer-encoding"),
        "chunked sent to an HTTP/1.0 client: {}",
        r.summary()
    );
    assert_eq!(r.text(), "abcdef");
    assert_eq!(r.framing, Framing::UntilClose, "{}", r.summary());
}

#[test]
fn plain_http_on_the_tls_port_gets_no_http_answer() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::hello(backend.addr());
    let mut c = PlainClient::connect_plain(nexus.port());
    c.set_read_timeout(Duration::from_secs(3));
    c.send(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    // A TLS alert, a close, or silence until the timeout: anything but HTTP.
    let (bytes, _end) = c.read_until_close();
    assert!(
        !bytes.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(backend.seen().is_empty());
    // And the port still serves TLS.
    assert_eq!(nexus.client(HELLO).get(HELLO, "/").status(), 200);
}

#[test]
fn silent_connections_and_idle_keep_alive_connections_do_not_starve_the_workers() {
    let backend = Backend::ok("served");
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            .app("hello", HELLO, backend.addr()),
    );
    // Twenty connections that send nothing, not even a ClientHello.
    let silent: Vec<TcpStream> = (0..20).map(|_| tcp_connect(nexus.port())).collect();
    // Twenty that finish a request and then sit idle, keep-alive.
    let mut idle: Vec<TlsClient> = (0..20)
        .map(|i| {
            let mut c = nexus.client(HELLO);
            let r = c.get(HELLO, &format!("/idle/{i}"));
            assert_eq!(r.status(), 200, "idle client {i}: {}", r.summary());
            c
        })
        .collect();
    let started = Instant::now();
    let mut fresh = nexus.client(HELLO);
    fresh.set_read_timeout(SERVED_WITHIN);
    let r = fresh.get(HELLO, "/fresh");
    let took = started.elapsed();
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "served"),
        "{}",
        r.summary()
    );
    assert!(took < SERVED_WITHIN, "a new client waited {took:?}");
    // The parked connections are still alive and served when they speak again.
    for c in idle.iter_mut().take(3) {
        assert_eq!(c.get(HELLO, "/again").status(), 200);
    }
    drop(silent);
}

#[test]
fn partial_handshakes_and_partial_heads_do_not_starve_the_workers() {
    let backend = Backend::ok("served");
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            .app("hello", HELLO, backend.addr()),
    );
    // Ten connections that stop half-way through their ClientHello.
    let hello = client_hello_bytes();
    let half: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = tcp_connect(nexus.port());
            std::io::Write::write_all(&mut s, &hello[..hello.len() / 2])
                .unwrap_or_else(|e| panic!("{e}"));
            s
        })
        .collect();
    // Ten that finish the handshake and stop half-way through a request head.
    let partial: Vec<TlsClient> = (0..10)
        .map(|_| {
            let mut c = nexus.client(HELLO);
            c.send(b"GET /never-finished HTTP/1.1\r\nHost: hel");
            c
        })
        .collect();
    let started = Instant::now();
    let mut fresh = nexus.client(HELLO);
    fresh.set_read_timeout(SERVED_WITHIN);
    let r = fresh.get(HELLO, "/fresh");
    let took = started.elapsed();
    assert_eq!(r.status(), 200, "{}", r.summary());
    assert!(took < SERVED_WITHIN, "a new client waited {took:?}");
    assert!(backend.seen().iter().all(|s| s.path == "/fresh"));
    drop((half, partial));
}

/// The first flight of a real TLS client, to send in part.
fn client_hello_bytes() -> Vec<u8> {
    let name = ServerName::try_from(HELLO).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = rustls::ClientConnection::new(client_config(rustls::ALL_VERSIONS), name)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(out.len() > 100);
    out
}

#[test]
fn silent_connection_is_closed_after_the_handshake_timeout() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::start(&Conf::new().set("handshake_timeout", "1").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = PlainClient::connect_plain(nexus.port());
    c.set_read_timeout(Duration::from_secs(8));
    let started = Instant::now();
    let bytes = c.expect_closed();
    assert!(!bytes.starts_with(b"HTTP/"));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn unfinished_request_head_is_closed_after_the_head_timeout() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::start(&Conf::new().set("head_timeout", "1").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    c.set_read_timeout(Duration::from_secs(8));
    c.send(b"GET / HTTP/1.1\r\nHost: hel");
    let started = Instant::now();
    // A 408 before the close is fine; a hang is not.
    let (bytes, end) = c.read_until_close();
    assert!(
        end.is_ok(),
        "still open after {:?}: {end:?}",
        started.elapsed()
    );
    assert!(
        !bytes.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(backend.seen().is_empty());
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::start(&Conf::new().set("idle_timeout", "1").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    assert_eq!(c.get(HELLO, "/").status(), 200);
    c.set_read_timeout(Duration::from_secs(8));
    let started = Instant::now();
    let bytes = c.expect_closed();
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn access_log_line_is_written_for_each_request() {
    let backend = Backend::ok("logged");
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    assert_eq!(c.get(HELLO, "/logged?x=1").status(), 200);
    let needle = r#"hello.localhost "GET /logged?x=1" 200 "#;
    let line = nexus.wait_log(needle, Duration::from_secs(5));
    assert!(line.contains("127.0.0.1:"), "no client address in {line:?}");
    let after = line.split(needle).nth(1).unwrap_or_default();
    assert!(
        after.split_whitespace().any(|w| w == "hello"),
        "no app name after the status in {line:?}"
    );
    let mut other = nexus.client("nobody.test.localhost");
    assert_eq!(other.get("nobody.test.localhost", "/nope").status(), 404);
    nexus.wait_log(
        r#"nobody.test.localhost "GET /nope" 404 "#,
        Duration::from_secs(5),
    );
}

#[test]
fn sigterm_exits_0() {
    let backend = Backend::ok("ok");
    let mut nexus = Nexus::hello(backend.addr());
    // An idle keep-alive connection is open while it shuts down.
    let mut c = nexus.client(HELLO);
    assert_eq!(c.get(HELLO, "/").status(), 200);
    nexus.sigterm();
    let status = nexus.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", nexus.dump());
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_then_exits_0() {
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let backend = Backend::http(move |_| {
        let _ = lock(&gate).recv_timeout(Duration::from_secs(10));
        Reply::keep(response(200, &[], b"finished"))
    });
    let mut nexus = Nexus::start(&Conf::new().set("shutdown_grace", "5").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    c.send(b"GET /slow HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    if backend.wait_seen(1, Duration::from_secs(10)).is_err() {
        panic!(
            "the request never reached the backend; nexushub answered {}",
            c.response().summary()
        );
    }
    nexus.sigterm();
    nexus.wait_log("shutting down: no new connections", Duration::from_secs(3));
    let _ = release.send(());
    let r = c.response();
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "finished"),
        "{}",
        r.summary()
    );
    let status = nexus.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", nexus.dump());
}

#[test]
fn access_log_file_has_the_lines_after_exit() {
    let backend = Backend::ok("ok");
    // A relative path: resolved against the config file's directory.
    let mut nexus = Nexus::start(&Conf::new().set("access_log", "access.log").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    assert_eq!(c.get(HELLO, "/to-file").status(), 200);
    drop(c);
    nexus.sigterm();
    let status = nexus.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", nexus.dump());
    let path = nexus.dir().path().join("access.log");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path:?}: {e}\n{}", nexus.dump()));
    assert!(
        text.contains(r#"hello.localhost "GET /to-file" 200 "#),
        "{text:?}"
    );
    assert!(
        !nexus.dump().contains(r#""GET /to-file""#),
        "the access line also went to stderr"
    );
}

/// How long each pipelining client of the test below keeps sending.
const PIPELINE_FLOOD: Duration = Duration::from_secs(6);

/// Requests per write of the pipelining clients: large records make sending
/// far cheaper than answering, so the client stays ahead of nexushub and its
/// socket never runs dry (which would let the worker go without a bound).
const PIPELINE_BATCH: usize = 512;

/// New clients served one after another during the floods.
const FRESH_CLIENTS: usize = 5;

/// How soon each must be served.
const FRESH_WITHIN: Duration = Duration::from_millis(800);

/// The value of a response head's `Content-Length`.
fn content_length(head: &[u8]) -> Option<usize> {
    let name = b"\r\ncontent-length:";
    let at = head
        .windows(name.len())
        .position(|w| w.eq_ignore_ascii_case(name))?;
    let rest = &head[at + name.len()..];
    let end = crate::support::find(rest, b"\r\n")?;
    std::str::from_utf8(&rest[..end]).ok()?.trim().parse().ok()
}

/// The `N` of `host rN.localhost` in a 421 body: which request it answers.
fn host_index(body: &[u8]) -> Option<usize> {
    let at = crate::support::find(body, b"host r")? + 6;
    let end = crate::support::find(&body[at..], b".localhost")?;
    std::str::from_utf8(&body[at..at + end]).ok()?.parse().ok()
}

/// A client that pipelines requests nexushub answers itself (421: its Host is
/// not its TLS server name) on one thread, without waiting for the answers,
/// while another thread reads them. Returns the statuses and bodies read and
/// how many requests were sent.
fn pipeline_flood(port: u16, warm: mpsc::Sender<()>) -> (Vec<(u16, Option<usize>)>, usize) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let name = ServerName::try_from(HELLO).unwrap_or_else(|e| panic!("{e}"));
    let mut tls = rustls::ClientConnection::new(client_config(rustls::ALL_VERSIONS), name)
        .unwrap_or_else(|e| panic!("client: {e}"));
    let mut sock = tcp_connect(port);
    while tls.is_handshaking() {
        tls.complete_io(&mut sock)
            .unwrap_or_else(|e| panic!("handshake: {e}"));
    }
    let tls = Arc::new(Mutex::new(tls));
    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (tls, sent, done) = (tls.clone(), sent.clone(), done.clone());
        let mut sock = sock.try_clone().unwrap_or_else(|e| panic!("{e}"));
        std::thread::spawn(move || {
            let until = Instant::now() + PIPELINE_FLOOD;
            let mut n = 0;
            while Instant::now() < until {
                let mut batch = Vec::new();
                for i in n..n + PIPELINE_BATCH {
                    batch.extend_from_slice(
                        format!("GET /p HTTP/1.1\r\nHost: r{i}.localhost\r\n\r\n").as_bytes(),
                    );
                }
                // Encrypted under the lock, sent without it: the reader must
                // not wait on a send that waits on nexushub reading.
                let mut wire = Vec::new();
                {
                    let mut tls = lock(&tls);
                    tls.writer()
                        .write_all(&batch)
                        .unwrap_or_else(|e| panic!("{e}"));
                    while tls.wants_write() {
                        tls.write_tls(&mut wire).unwrap_or_else(|e| panic!("{e}"));
                    }
                }
                if sock.write_all(&wire).is_err() {
                    break;
                }
                n += PIPELINE_BATCH;
                sent.store(n, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut plain = Vec::new();
    let mut answers = Vec::new();
    let mut raw = vec![0u8; 64 * 1024];
    let mut warm = Some(warm);
    // Bounded by the flood's length and the socket's read timeout.
    while !(done.load(Ordering::SeqCst) && answers.len() >= sent.load(Ordering::SeqCst)) {
        let n = match sock.read(&mut raw) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut tls = lock(&tls);
            let mut rd = &raw[..n];
            while !rd.is_empty() {
                tls.read_tls(&mut rd).unwrap_or_else(|e| panic!("{e}"));
                tls.process_new_packets()
                    .unwrap_or_else(|e| panic!("tls: {e}"));
                let _ = tls.reader().read_to_end(&mut plain);
            }
        }
        // Whole responses off the front: a head, then its Content-Length
        // body. Kept cheap (no allocation per answer) so that the client reads
        // its answers faster than nexushub writes them.
        let mut at = 0;
        while let Some(end) = crate::support::find(&plain[at..], b"\r\n\r\n") {
            let head_end = at + end + 4;
            let head = &plain[at..head_end];
            let status = std::str::from_utf8(head.get(9..12).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(0);
            let len = content_length(head)
                .unwrap_or_else(|| panic!("no length: {}", String::from_utf8_lossy(head)));
            if plain.len() < head_end + len {
                break;
            }
            answers.push((status, host_index(&plain[head_end..head_end + len])));
            at = head_end + len;
        }
        plain.drain(..at);
        if answers.len() >= 100 {
            if let Some(w) = warm.take() {
                let _ = w.send(());
            }
        }
    }
    let _ = writer.join();
    (answers, sent.load(Ordering::SeqCst))
}

#[test]
fn a_client_pipelining_requests_nexushub_answers_itself_cannot_hold_a_worker() {
    let backend = Backend::ok("served");
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "2")
            // Hundreds of thousands of answers: their log lines would only
            // load the machine the test measures on.
            .set("access_log", "off")
            .app("hello", HELLO, backend.addr()),
    );
    // As many flooding clients as workers.
    let (warm_tx, warm_rx) = mpsc::channel();
    let port = nexus.port();
    let floods: Vec<_> = (0..2)
        .map(|_| {
            let warm = warm_tx.clone();
            std::thread::spawn(move || pipeline_flood(port, warm))
        })
        .collect();
    for _ in 0..2 {
        warm_rx
            .recv_timeout(SERVED_WITHIN)
            .unwrap_or_else(|e| panic!("the flood did not start: {e}\n{}", nexus.dump()));
    }
    // Several new clients one after another, each served while both floods
    // go on.
    for n in 0..FRESH_CLIENTS {
        let started = Instant::now();
        let mut fresh = nexus.client(HELLO);
        fresh.set_read_timeout(PIPELINE_FLOOD * 2);
        let r = fresh.get(HELLO, "/fresh");
        let took = started.elapsed();
        assert_eq!(
            (r.status(), r.text().as_str()),
            (200, "served"),
            "{}",
            r.summary()
        );
        assert!(
            took < FRESH_WITHIN,
            "new client {n} waited {took:?} behind two pipelining clients"
        );
    }
    for (k, flood) in floods.into_iter().enumerate() {
        let (answers, sent) = flood
            .join()
            .unwrap_or_else(|_| panic!("flood {k} panicked"));
        assert!(
            sent > 0 && answers.len() == sent,
            "flood {k}: {} answers to {sent} requests\n{}",
            answers.len(),
            nexus.dump()
        );
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(
                *answer,
                (421, Some(i)),
                "flood {k}, answer {i}: not the 421 for r{i}.localhost"
            );
        }
    }
}

#[test]
fn workers_above_the_cores_are_capped_with_a_note() {
    let useful = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(2);
    if useful >= 64 {
        eprintln!("skipped: {useful} cores, 64 workers are not above them");
        return;
    }
    let backend = Backend::ok("served");
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "64")
            .app("hello", HELLO, backend.addr()),
    );
    nexus.wait_log(
        &format!("workers = 64 capped at {useful}, one per core"),
        SERVED_WITHIN,
    );
    nexus.wait_log(&format!("({useful} workers, 1 app(s))"), SERVED_WITHIN);
    assert_eq!(nexus.client(HELLO).get(HELLO, "/").status(), 200);
}
