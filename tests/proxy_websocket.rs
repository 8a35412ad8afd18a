//! WebSocket tunnels through the real binary: a real RFC 6455 client over TLS
//! (`support/websocket.rs`) against a real WebSocket backend on loopback
//! (`support/ws_backend.rs`). The handshake is relayed, messages go both ways
//! unchanged (small, 8 MiB, both sides at once, the server first, one pipelined
//! with the upgrade), closes and drops reach the other side promptly, idle
//! tunnels cost no worker, and only a WebSocket upgrade the app agreed to opens
//! a tunnel.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::backend::response;
use crate::support::procfs::rss_kib;
use crate::support::tls_client::TlsStream;
use crate::support::websocket::{accept_value, Upgrade, WebSocket, WsError};
use crate::support::ws_backend::{Behaviour, End, WsBackend};
use crate::support::ws_frame::{Close, Message};
use crate::support::{
    find, lock, pattern, pattern_block, Backend, Conf, Nexus, Reply, HELLO, START_TIMEOUT,
};

/// How soon one side's close or drop must reach the other through the tunnel.
const PROMPTLY: Duration = Duration::from_secs(1);

/// A WebSocket opened through `nexus` to `HELLO` at `path`.
fn open(nexus: &Nexus, path: &str) -> WebSocket<TlsStream> {
    open_with(nexus, Upgrade::new(HELLO, path))
}

fn open_with(nexus: &Nexus, upgrade: Upgrade) -> WebSocket<TlsStream> {
    let stream = nexus.client(HELLO).into_stream();
    let (ws, head) = upgrade
        .connect(stream)
        .unwrap_or_else(|e| panic!("upgrade through nexushub: {e}\n{}", nexus.dump()));
    assert_eq!(head.status, 101);
    ws
}

fn recv(ws: &mut WebSocket<TlsStream>) -> Message {
    ws.recv()
        .unwrap_or_else(|e| panic!("receiving through the tunnel: {e}"))
}

#[test]
fn handshake_is_relayed_and_small_messages_echo_both_ways() {
    let backend = WsBackend::echo();
    let nexus = Nexus::hello(backend.addr());
    let upgrade = Upgrade::new(HELLO, "/chat?room=1").header("Sec-WebSocket-Protocol", "chat");
    let mut ws = open_with(&nexus, upgrade.clone());
    for text in ["hello", "", "ünïcödé"] {
        ws.send_text(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recv(&mut ws), Message::text(text));
    }
    ws.send_binary(&[0, 1, 2, 255])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::Binary(vec![0, 1, 2, 255]));
    let seen = backend.seen();
    let req = &seen.requests[0];
    assert_eq!(req.header("sec-websocket-key"), Some(upgrade.key()));
    assert_eq!(req.header("sec-websocket-protocol"), Some("chat"));
    assert_eq!(req.header("upgrade"), Some("websocket"));
    let mark = nexus.log_mark();
    let answer = ws.close(1000, "done").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.map(|c| c.code), Some(1000));
    ws.expect_eof().unwrap_or_else(|e| panic!("{e}"));
    let ends = backend.wait_ends(1, START_TIMEOUT);
    assert!(matches!(ends[0].1, End::ClientClosed(_)), "{ends:?}");
    // The app's end reached the client; the client's ends the tunnel.
    drop(ws);
    // One line for the tunnel when it ends: 101, bytes each way.
    // Frames as sent: the client's masked (6 bytes of header each), the app's
    // not (2): 4 messages and a close each way.
    let (_, line) = nexus.wait_log_after(mark, "\"GET /chat?room=1\" 101 ", START_TIMEOUT);
    let (in_bytes, out_bytes) = (11 + 6 + 17 + 10 + 12, 7 + 2 + 13 + 6 + 4);
    assert!(line.contains(&format!(" 101 {out_bytes} ")), "{line}");
    assert!(line.ends_with(&format!(" hello in={in_bytes}")), "{line}");
}

#[test]
fn an_8_mib_message_echoes_whole() {
    let backend = WsBackend::echo();
    let nexus = Nexus::hello(backend.addr());
    let mut ws = open(&nexus, "/");
    let body = pattern(8 << 20);
    // Sent while the echo comes back: a client that only sent would fill the
    // tunnel's buffers both ways and wait on itself.
    let mut got = ws
        .send_while_receiving(Message::Binary(body.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    if got.is_empty() {
        got.push(recv(&mut ws));
    }
    assert_eq!(got.len(), 1);
    assert!(got[0] == Message::Binary(body), "the echo differs");
}

// A client that sends each 1 MiB message whole and only then reads its echo
// (as benches/wsbench does) left the tunnel stalled now and then: a pump that
// ran out of rounds parked on the client's socket, edge-triggered, with the
// rest of the message already in it.
#[test]
fn regression_whole_1_mib_messages_on_four_tunnels_never_stall() {
    let backend = WsBackend::echo();
    let nexus = Nexus::hello(backend.addr());
    let body = pattern(1 << 20);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (nexus, body) = (&nexus, &body);
            s.spawn(move || {
                let mut ws = open(nexus, "/");
                for i in 0..24 {
                    ws.send_binary(body)
                        .unwrap_or_else(|e| panic!("tunnel {t}, message {i}: {e}"));
                    let got = recv(&mut ws);
                    assert!(
                        got == Message::Binary(body.clone()),
                        "tunnel {t}: echo {i} differs"
                    );
                }
            });
        }
    });
}

#[test]
fn both_sides_sending_at_once_do_not_deadlock() {
    let len = 4 << 20;
    let backend = WsBackend::start(Behaviour::SendWhileReading(len));
    let nexus = Nexus::hello(backend.addr());
    let mut ws = open(&nexus, "/");
    let mine = pattern(3 << 20);
    let mut got = ws
        .send_while_receiving(Message::Binary(mine.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    if got.is_empty() {
        got.push(recv(&mut ws));
    }
    assert!(got[0] == Message::Binary(pattern(len as usize)), "{got:?}");
    let seen = backend
        .wait(START_TIMEOUT, |s| !s.data().is_empty())
        .unwrap_or_else(|s| panic!("the backend got nothing: {s:?}"));
    assert!(*seen.data()[0] == Message::Binary(mine));
}

#[test]
fn the_server_may_speak_first_in_the_same_write_as_its_101() {
    let backend = WsBackend::start(Behaviour::Greet("welcome".into()));
    let nexus = Nexus::hello(backend.addr());
    let mut ws = open(&nexus, "/");
    assert_eq!(recv(&mut ws), Message::text("welcome"));
    ws.send_text("after").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("after"));
}

#[test]
fn a_frame_pipelined_behind_the_upgrade_request_reaches_the_app() {
    let backend = WsBackend::echo();
    let nexus = Nexus::hello(backend.addr());
    let mut ws = open_with(
        &nexus,
        Upgrade::new(HELLO, "/").pipelined(Message::text("early")),
    );
    assert_eq!(recv(&mut ws), Message::text("early"));
}

#[test]
fn ping_is_answered_by_the_app_through_the_tunnel() {
    let backend = WsBackend::echo();
    let nexus = Nexus::hello(backend.addr());
    let mut ws = open(&nexus, "/");
    ws.send(Message::Ping(b"are you there".to_vec()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::Pong(b"are you there".to_vec()));
}

#[test]
fn the_app_closing_reaches_the_client_promptly() {
    let backend = WsBackend::start(Behaviour::CloseAfter(1));
    let nexus = Nexus::hello(backend.addr());
    let mut ws = open(&nexus, "/");
    ws.send_text("one").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("one"));
    let started = Instant::now();
    // The client answers the app's close (recv does), then the app closes TCP.
    assert_eq!(recv(&mut ws), Message::Close(Some(Close::new(1000, "bye"))));
    ws.expect_eof().unwrap_or_else(|e| panic!("{e}"));
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    let ends = backend.wait_ends(1, START_TIMEOUT);
    assert!(matches!(ends[0].1, End::ServerClosed(_)), "{ends:?}");
}

#[test]
fn a_client_that_never_closes_after_the_apps_end_is_let_go_after_idle_timeout() {
    let backend = WsBackend::start(Behaviour::CloseAfter(1));
    let conf = Conf::new()
        .set("idle_timeout", "1")
        .app("hello", HELLO, backend.addr());
    let nexus = Nexus::start(&conf);
    let mut ws = open(&nexus, "/");
    ws.send_text("one").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("one"));
    assert_eq!(recv(&mut ws), Message::Close(Some(Close::new(1000, "bye"))));
    ws.expect_eof().unwrap_or_else(|e| panic!("{e}"));
    // The client keeps its socket open: the half-closed tunnel goes after
    // idle_timeout, not after tunnel_idle_timeout's ten minutes.
    let started = Instant::now();
    nexus.wait_log("idle tunnel closed", START_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    nexus.wait_log("\"GET /\" 101 ", START_TIMEOUT);
    drop(ws);
}

#[test]
fn the_app_dropping_reaches_the_client_promptly() {
    let backend = WsBackend::start(Behaviour::DropAfter(1));
    let nexus = Nexus::hello(backend.addr());
    let mut ws = open(&nexus, "/");
    ws.send_text("one").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("one"));
    let started = Instant::now();
    let end = ws.recv();
    assert!(matches!(end, Err(ref e) if e.is_close()), "{end:?}");
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
}

#[test]
fn the_client_dropping_reaches_the_app_promptly() {
    let backend = WsBackend::echo();
    let nexus = Nexus::hello(backend.addr());
    let mut ws = open(&nexus, "/");
    ws.send_text("one").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("one"));
    let started = Instant::now();
    ws.drop_tcp();
    let ends = backend.wait_ends(1, START_TIMEOUT);
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    assert!(matches!(ends[0].1, End::Vanished(_)), "{ends:?}");
}

#[test]
fn a_tunnel_outlives_idle_timeout() {
    let backend = WsBackend::echo();
    let conf = Conf::new()
        .set("idle_timeout", "1")
        .app("hello", HELLO, backend.addr());
    let nexus = Nexus::start(&conf);
    let mut ws = open(&nexus, "/");
    // Quiet for twice idle_timeout: nothing comes, not even a close.
    let quiet = ws.recv_within(Duration::from_millis(2500));
    assert!(matches!(quiet, Ok(None)), "{quiet:?}");
    ws.send_text("still here").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("still here"));
}

#[test]
fn tunnel_idle_timeout_closes_a_silent_tunnel() {
    let backend = WsBackend::echo();
    let conf = Conf::new()
        .set("tunnel_idle_timeout", "1")
        .app("hello", HELLO, backend.addr());
    let nexus = Nexus::start(&conf);
    let mut ws = open(&nexus, "/");
    ws.send_text("one").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("one"));
    let started = Instant::now();
    let end = ws.recv();
    assert!(matches!(end, Err(ref e) if e.is_close()), "{end:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let ends = backend.wait_ends(1, START_TIMEOUT);
    assert!(matches!(ends[0].1, End::Vanished(_)), "{ends:?}");
    nexus.wait_log("idle tunnel closed", START_TIMEOUT);
}

#[test]
fn an_app_refusing_the_upgrade_answers_as_usual() {
    let backend = WsBackend::start(Behaviour::Refuse);
    let nexus = Nexus::hello(backend.addr());
    assert_eq!(refused_upgrade_status(&nexus), 403);
}

/// The status of an upgrade through `nexus` that must not open a tunnel.
fn refused_upgrade_status(nexus: &Nexus) -> u16 {
    let stream = nexus.client(HELLO).into_stream();
    match Upgrade::new(HELLO, "/").connect(stream) {
        Err(WsError::Handshake {
            head: Some(head), ..
        }) => head.status,
        other => panic!("expected a refusal, got {:?}", other.map(|(_, h)| h)),
    }
}

#[test]
fn a_101_nobody_asked_for_is_a_502() {
    let backend = WsBackend::start(Behaviour::Unsolicited101);
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    let r = c.get(HELLO, "/plain");
    assert_eq!(r.status(), 502, "{}", r.summary());
}

#[test]
fn a_101_to_another_protocol_is_a_502() {
    let backend = WsBackend::start(Behaviour::OtherProtocol);
    let nexus = Nexus::hello(backend.addr());
    assert_eq!(refused_upgrade_status(&nexus), 502);
}

#[test]
fn h2c_is_never_tunnelled() {
    let backend = Backend::http(|_| Reply::keep(response(200, &[], b"plain")));
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(
        format!("GET / HTTP/1.1\r\nHost: {HELLO}\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
            .as_bytes(),
    );
    let r = c.response();
    assert_eq!((r.status(), r.text()), (200, "plain".to_string()));
    let seen = backend.only();
    assert!(!seen.has("upgrade"), "{}", seen.head_text());
    assert!(!seen.has("http2-settings"), "{}", seen.head_text());
}

#[test]
fn idle_tunnels_hold_no_worker() {
    let ws_backend = WsBackend::echo();
    let plain = Backend::ok("plain");
    let conf = Conf::new()
        .set("workers", "2")
        .app("hello", HELLO, ws_backend.addr())
        .app("plain", "plain.test.localhost", plain.addr());
    let nexus = Nexus::start(&conf);
    let mut tunnels: Vec<_> = (0..20).map(|_| open(&nexus, "/")).collect();
    let started = Instant::now();
    for i in 0..10 {
        let mut c = nexus.client("plain.test.localhost");
        let r = c.get("plain.test.localhost", &format!("/{i}"));
        assert_eq!((r.status(), r.text()), (200, "plain".to_string()));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // And every tunnel still works.
    for (i, ws) in tunnels.iter_mut().enumerate() {
        let text = format!("tunnel {i}");
        ws.send_text(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recv(ws), Message::Text(text));
    }
}

#[test]
fn sigterm_closes_open_tunnels_and_exits() {
    let backend = WsBackend::echo();
    let mut nexus = Nexus::start(&Conf::new().set("shutdown_grace", "5").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut ws = open(&nexus, "/");
    ws.send_text("one").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("one"));
    let started = Instant::now();
    nexus.sigterm();
    let end = ws.recv();
    assert!(matches!(end, Err(ref e) if e.is_close()), "{end:?}");
    let status = nexus.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", nexus.dump());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not within shutdown_grace: {:?}",
        started.elapsed()
    );
    let ends = backend.wait_ends(1, START_TIMEOUT);
    assert!(matches!(ends[0].1, End::Vanished(_)), "{ends:?}");
}

/// Events of the SSE test, and their spacing.
const EVENTS: usize = 10;
const EVENT_EVERY: Duration = Duration::from_millis(50);

#[test]
fn server_sent_events_reach_the_client_as_they_are_sent() {
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let record = Arc::clone(&sent);
    let backend = Backend::raw(move |mut conn, _| {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded by the socket's read timeout; a health check sends nothing.
        while find(&head, b"\r\n\r\n").is_none() {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let start = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
        if conn.write_all(start).is_err() {
            return;
        }
        for i in 0..EVENTS {
            // The app's pace: one event every EVENT_EVERY.
            std::thread::sleep(EVENT_EVERY);
            let event = format!("data: {i}\n\n");
            let chunk = format!("{:x}\r\n{event}\r\n", event.len());
            lock(&record).push(Instant::now());
            if conn.write_all(chunk.as_bytes()).is_err() {
                return;
            }
        }
        let _ = conn.write_all(b"0\r\n\r\n");
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(
        format!("GET /events HTTP/1.1\r\nHost: {HELLO}\r\nAccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    );
    let head = c.final_head();
    assert_eq!(head.status, 200);
    let mut arrived = Vec::new();
    let mut body = Vec::new();
    c.body(&head, "GET", &mut |b| {
        body.extend_from_slice(b);
        let events = body.windows(2).filter(|w| w == b"\n\n").count();
        while arrived.len() < events {
            arrived.push(Instant::now());
        }
    })
    .unwrap_or_else(|e| panic!("reading the event stream: {e}"));
    let sent = lock(&sent).clone();
    assert_eq!((sent.len(), arrived.len()), (EVENTS, EVENTS));
    let mut delays: Vec<Duration> = sent.iter().zip(&arrived).map(|(s, a)| *a - *s).collect();
    delays.sort();
    // Within a few milliseconds as a rule; a loaded test machine may hold one
    // event back now and then, never a buffer's worth.
    assert!(delays[EVENTS / 2] < Duration::from_millis(10), "{delays:?}");
    assert!(delays[EVENTS - 1] < EVENT_EVERY, "{delays:?}");
}

/// The 101 a raw backend sends: the proxy checks `Upgrade` and `Connection`,
/// not the WebSocket accept value (that is the client's to check).
const RAW_101: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

#[test]
fn a_half_close_is_passed_on_and_the_other_way_goes_on() {
    // The app reads until the client's end, then answers and closes.
    let backend = Backend::raw(|mut conn, _| {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded by the socket's read timeout; a health check sends nothing.
        let head_end = loop {
            if let Some(at) = find(&got, b"\r\n\r\n") {
                break at + 4;
            }
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        };
        if conn.write_all(RAW_101).is_err() {
            return;
        }
        let mut tunnel = got.split_off(head_end);
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => tunnel.extend_from_slice(&buf[..n]),
                Err(_) => return,
            }
        }
        let _ = conn.write_all(format!("got {:?}", String::from_utf8_lossy(&tunnel)).as_bytes());
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    let mut req = Upgrade::new(HELLO, "/half").request();
    req.extend_from_slice(b"hello");
    c.send(&req);
    let head = c.head();
    assert_eq!(head.status, 101, "{:?}", head.raw);
    c.send(b" world");
    let mark = nexus.log_mark();
    // A FIN, no close_notify: the client is done sending, and still reads.
    c.shutdown_write();
    let (rest, closed) = c.read_until_close();
    assert_eq!(String::from_utf8_lossy(&rest), "got \"hello world\"");
    assert!(closed.is_ok(), "{closed:?}");
    let (_, line) = nexus.wait_log_after(mark, "\"GET /half\" 101 ", START_TIMEOUT);
    assert!(
        line.contains(" 101 17 ") && line.ends_with(" in=11"),
        "{line}"
    );
}

/// What the backpressure test has the app send: far more than every buffer
/// on the way holds.
const FLOOD_BYTES: u64 = 64 << 20;

#[test]
fn a_client_that_does_not_read_slows_the_app_and_memory_stays_bounded() {
    let written = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&written);
    // After its 101, the app sends one binary message of FLOOD_BYTES as fast
    // as the tunnel takes it, counting what its socket took.
    let backend = Backend::raw(move |mut conn, _| {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded by the socket's read timeout; a health check sends nothing.
        while find(&head, b"\r\n\r\n").is_none() {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let Some(key) = text.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        }) else {
            return;
        };
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_value(&key)
        )
        .into_bytes();
        out.extend_from_slice(&[0x82, 127]);
        out.extend_from_slice(&FLOOD_BYTES.to_be_bytes());
        if conn.write_all(&out).is_err() {
            return;
        }
        let block = pattern_block();
        let mut left = FLOOD_BYTES as usize;
        while left > 0 {
            // From where the last write stopped, so the pattern runs on.
            let at = (FLOOD_BYTES as usize - left) % block.len();
            let n = left.min(block.len() - at);
            match conn.write(&block[at..at + n]) {
                Ok(k) => {
                    left -= k;
                    counter.fetch_add(k as u64, Ordering::SeqCst);
                }
                Err(_) => return,
            }
        }
    });
    let nexus = Nexus::hello(backend.addr());
    let before = rss_kib(nexus.pid()).unwrap_or_else(|| panic!("no RSS for nexushub"));
    let mut ws = open(&nexus, "/flood");
    // The client reads nothing: the app must stall once the buffers on the
    // way are full (no progress for 300 ms), far short of the whole message.
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = (written.load(Ordering::SeqCst), Instant::now());
    while last.1.elapsed() < Duration::from_millis(300) {
        assert!(Instant::now() < deadline, "the app never stalled");
        std::thread::sleep(Duration::from_millis(20));
        let now = written.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let stalled_at = last.0;
    assert!(
        stalled_at < FLOOD_BYTES / 4,
        "the app sent {stalled_at} bytes"
    );
    let during = rss_kib(nexus.pid()).unwrap_or_else(|| panic!("no RSS for nexushub"));
    assert!(
        during < before + 8 * 1024,
        "nexushub grew from {before} KiB to {during} KiB with {stalled_at} bytes in flight"
    );
    // Reading, the client gets it all, unchanged.
    let got = recv(&mut ws);
    assert!(
        got == Message::Binary(pattern(FLOOD_BYTES as usize)),
        "the message differs"
    );
}

// ---- tunnels across reloads ----

/// How long a test waits for a reload or a process's stop it caused.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// An app process for the reload tests: a TCP relay on `$PORT` to the
/// WebSocket backend whose port is its argument, so that the tunnel passes
/// through a real child process nexushub replaces (the WebSocket peer itself
/// stays in the test).
const RELAY_PY: &str = r#"
import os, socket, sys, threading
target = ("127.0.0.1", int(sys.argv[1]))
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(os.environ["PORT"])))
srv.listen(64)
def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
while True:
    client, _ = srv.accept()
    try:
        upstream = socket.create_connection(target)
    except OSError:
        client.close()
        continue
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
"#;

/// The config of the reload tests: app `relay` (for `HELLO`) run as the relay
/// to `backend`, in generation `version` (a changed `env` replaces it).
fn relay_conf(script: &std::path::Path, backend: &WsBackend, version: u32) -> Conf {
    Conf::new()
        .command_app(
            "relay",
            HELLO,
            &format!(
                "exec python3 {} {}",
                script.display(),
                backend.addr().port()
            ),
        )
        .app_key("env", &format!("VERSION={version}"))
}

/// The pid in the log's first `app relay: started pid PID on port P` line.
fn first_relay_pid(nexus: &Nexus) -> u32 {
    let line = nexus.wait_log("app relay: started pid ", RELOAD_TIMEOUT);
    let rest = &line[line.find("started pid ").unwrap_or(0) + "started pid ".len()..];
    rest.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

fn echo_once(ws: &mut WebSocket<TlsStream>, text: &str) {
    ws.send_text(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(ws), Message::text(text));
}

#[test]
fn a_tunnel_is_untouched_by_a_reload_that_adds_an_app() {
    let backend = WsBackend::echo();
    let other = Backend::ok("other");
    let conf = Conf::new().app("hello", HELLO, backend.addr());
    let nexus = Nexus::start(&conf);
    let mut ws = open(&nexus, "/live");
    echo_once(&mut ws, "before");
    nexus.write_config(&conf.clone().app("other", "other.localhost", other.addr()));
    let mark = nexus.log_mark();
    nexus.sighup();
    nexus.wait_log_after(
        mark,
        "reload: 1 added, 0 changed, 1 unchanged, 0 removed",
        RELOAD_TIMEOUT,
    );
    echo_once(&mut ws, "after");
    assert!(
        ws.close(1000, "done")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some(),
        "the app answers the close"
    );
}

#[test]
fn a_tunnel_to_a_replaced_app_keeps_its_old_process_until_it_closes() {
    let backend = WsBackend::echo();
    let dir = crate::support::TestDir::new("relay");
    let script = dir.write("relay.py", RELAY_PY);
    let nexus = Nexus::start(&relay_conf(&script, &backend, 1));
    let old_pid = first_relay_pid(&nexus);
    let mut ws = open(&nexus, "/live");
    echo_once(&mut ws, "generation 1");
    nexus.write_config(&relay_conf(&script, &backend, 2));
    let mark = nexus.log_mark();
    nexus.sighup();
    let (healthy_at, _) = nexus.wait_log_after(
        mark,
        "app relay: generation 2 is healthy; draining generation 1",
        RELOAD_TIMEOUT,
    );
    // The drain delay is 1 s; well past it, the old process still carries the
    // tunnel, and the tunnel still works.
    let stopped = format!("app relay: stopped pid {old_pid} (");
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            !nexus.lines()[healthy_at..]
                .iter()
                .any(|l| l.contains(&stopped)),
            "the old process was stopped under an open tunnel\n{}",
            nexus.dump()
        );
        echo_once(&mut ws, "still generation 1");
    }
    // New tunnels go to the new generation meanwhile.
    let mut fresh = open(&nexus, "/fresh");
    echo_once(&mut fresh, "generation 2");
    // The last tunnel to the old process closes (the close handshake, then
    // the client's end, as a browser's): it is stopped right after.
    let closed = Instant::now();
    ws.close(1000, "done").unwrap_or_else(|e| panic!("{e}"));
    drop(ws);
    nexus.wait_log_after(healthy_at, &stopped, RELOAD_TIMEOUT);
    assert!(
        closed.elapsed() < Duration::from_secs(3),
        "stopped {:?} after its last tunnel closed",
        closed.elapsed()
    );
    echo_once(&mut fresh, "generation 2 goes on");
}

#[test]
fn a_tunnel_past_tunnel_drain_timeout_is_cut_when_its_old_process_stops() {
    let backend = WsBackend::echo();
    let dir = crate::support::TestDir::new("relay");
    let script = dir.write("relay.py", RELAY_PY);
    let conf = |version| relay_conf(&script, &backend, version).set("tunnel_drain_timeout", "1");
    let nexus = Nexus::start(&conf(1));
    let old_pid = first_relay_pid(&nexus);
    let mut ws = open(&nexus, "/live");
    echo_once(&mut ws, "generation 1");
    nexus.write_config(&conf(2));
    let mark = nexus.log_mark();
    nexus.sighup();
    let (healthy_at, _) = nexus.wait_log_after(
        mark,
        "app relay: generation 2 is healthy; draining generation 1",
        RELOAD_TIMEOUT,
    );
    nexus.wait_log_after(
        healthy_at,
        &format!("app relay: stopped pid {old_pid} ("),
        RELOAD_TIMEOUT,
    );
    // Its process gone, the tunnel through it ends: the client sees the end.
    ws.set_read_timeout(RELOAD_TIMEOUT);
    let end = ws.recv();
    assert!(matches!(end, Err(_) | Ok(Message::Close(_))), "{end:?}");
}
