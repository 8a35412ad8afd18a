//! Tests of the test helpers themselves, without nexushub: the TLS client against an
//! in-test rustls server speaking scripted bytes, and the backend against a plain TCP
//! client. If these fail, the proxy tests' verdicts mean nothing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::support::backend::{chunked_body, response};
use crate::support::tls_client::PlainClient;
use crate::support::websocket::{accept_value, Upgrade};
use crate::support::wire::{Framing, Wire, WireError};
use crate::support::ws_frame::{decode, Frame, Message, Opcode, Role};
use crate::support::{
    fixture, fnv1a64, pattern, pattern_fnv, Backend, PatternCheck, TlsClient, MIB,
};

type ServerStream = StreamOwned<ServerConnection, TcpStream>;

/// A one-connection TLS server with the fixture certificate, running `script`.
fn tls_server(
    script: impl FnOnce(&mut Wire<ServerStream>) + Send + 'static,
) -> (u16, JoinHandle<()>) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("localhost.pem"))
            .and_then(|it| it.collect::<Result<_, _>>())
            .unwrap_or_else(|e| panic!("fixture localhost.pem: {e}"));
    let key = PrivateKeyDer::from_pem_file(fixture("localhost.key"))
        .unwrap_or_else(|e| panic!("fixture localhost.key: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .unwrap_or_else(|e| panic!("server config: {e}"));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let t = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap_or_else(|e| panic!("accept: {e}"));
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("{e}"));
        let conn = ServerConnection::new(config).unwrap_or_else(|e| panic!("{e}"));
        let mut wire = Wire::new(StreamOwned::new(conn, sock));
        script(&mut wire);
    });
    (port, t)
}

fn send(wire: &mut Wire<ServerStream>, bytes: &[u8]) {
    let s = wire.get_mut();
    s.write_all(bytes)
        .unwrap_or_else(|e| panic!("server write: {e}"));
    s.flush().unwrap_or_else(|e| panic!("server flush: {e}"));
}

fn close_notify(wire: &mut Wire<ServerStream>) {
    let s = wire.get_mut();
    s.conn.send_close_notify();
    let _ = s.flush();
}

#[test]
fn harness_client_reads_length_chunked_interim_and_close_delimited_responses() {
    let (port, server) = tls_server(|wire| {
        for _ in 0..4 {
            wire.read_head(8192)
                .unwrap_or_else(|e| panic!("server read: {e}"));
        }
        let mut out = response(200, &[("X-A", "1")], b"hello");
        out.extend_from_slice(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n00A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
        );
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close");
        send(wire, &out);
        close_notify(wire);
    });
    let mut c = TlsClient::connect(port, "hello.localhost");
    assert_eq!(c.tls().alpn_protocol(), Some(&b"http/1.1"[..]));
    c.send(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\nGET /4 HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response();
    assert_eq!(
        (r.status(), r.text().as_str(), r.framing),
        (200, "hello", Framing::Length(5))
    );
    let r = c.response();
    assert_eq!(
        (r.text().as_str(), r.framing),
        ("abc0123456789", Framing::Chunked)
    );
    let interim = c.head();
    assert_eq!(interim.status, 100);
    let r = c.response();
    assert_eq!((r.status(), r.body.len()), (204, 0));
    let r = c.response();
    assert_eq!(
        (r.text().as_str(), r.framing),
        ("until close", Framing::UntilClose)
    );
    server.join().unwrap_or_else(|_| panic!("server panicked"));
}

#[test]
fn harness_client_tells_a_short_body_close_from_a_timeout() {
    let (port, server) = tls_server(|wire| {
        wire.read_head(8192).unwrap_or_else(|e| panic!("{e}"));
        send(wire, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
        // Unclean close: no close_notify.
    });
    let mut c = TlsClient::connect(port, "localhost");
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = c.head();
    let err = c.body(&head, "GET", &mut |_| {}).err();
    server.join().unwrap_or_else(|_| panic!("server panicked"));
    let err = err.unwrap_or_else(|| panic!("a short body read as complete"));
    assert_eq!(err.got, 5);
    assert!(err.cause.is_close(), "{err}");

    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (port, server) = tls_server(move |wire| {
        wire.read_head(8192).unwrap_or_else(|e| panic!("{e}"));
        send(wire, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
    });
    let mut c = TlsClient::connect(port, "localhost");
    c.set_read_timeout(Duration::from_millis(300));
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = c.head();
    let err = c.body(&head, "GET", &mut |_| {}).err();
    let _ = done_tx.send(());
    server.join().unwrap_or_else(|_| panic!("server panicked"));
    assert!(matches!(err.map(|e| e.cause), Some(WireError::TimedOut)));
}

#[test]
fn harness_client_sees_close_notify_as_close() {
    let (port, server) = tls_server(|wire| {
        wire.read_head(8192).unwrap_or_else(|e| panic!("{e}"));
        send(
            wire,
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad",
        );
        close_notify(wire);
    });
    let mut c = TlsClient::connect(port, "localhost");
    c.send(b"GET / HTTP/1.1\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status(), 400);
    assert!(r.head.says_close());
    assert!(c.expect_closed().is_empty());
    server.join().unwrap_or_else(|_| panic!("server panicked"));
}

#[test]
fn harness_websocket_client_runs_over_tls_and_keeps_half_frames_across_timeouts() {
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (port, server) = tls_server(move |wire| {
        let head = wire.read_head(8192).unwrap_or_else(|e| panic!("{e}"));
        let head = String::from_utf8_lossy(&head).into_owned();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap_or_else(|| panic!("no key in {head:?}"));
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_value(key)
        )
        .into_bytes();
        let frame = Frame::new(true, Opcode::Text, &b"over tls"[..]).encode();
        out.extend_from_slice(&frame[..5]);
        send(wire, &out);
        // The rest of the frame only once the client has timed out on the first half.
        let _ = go_rx.recv_timeout(Duration::from_secs(10));
        send(wire, &frame[5..]);
        let (echo, _) = loop {
            match decode(wire.buffered(), Role::Client) {
                Ok(Some(frame)) => break frame,
                Ok(None) => {
                    wire.fill().unwrap_or_else(|e| panic!("server read: {e}"));
                }
                Err(e) => panic!("client frame: {e}"),
            }
        };
        send(
            wire,
            &Frame::new(true, Opcode::Binary, echo.payload).encode(),
        );
        close_notify(wire);
    });
    let client = TlsClient::connect(port, "localhost");
    let (mut ws, _) = Upgrade::new("localhost", "/")
        .connect(client.into_stream())
        .unwrap_or_else(|e| panic!("upgrade over TLS: {e}"));
    let first = ws.recv_within(Duration::from_millis(300));
    assert!(matches!(first, Ok(None)), "{first:?}");
    let _ = go_tx.send(());
    assert_eq!(ws.recv().ok(), Some(Message::text("over tls")));
    let body = pattern(100_000);
    ws.send_binary(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ws.recv().ok(), Some(Message::Binary(body)));
    let end = ws.recv();
    assert!(matches!(end, Err(ref e) if e.is_close()), "{end:?}");
    server.join().unwrap_or_else(|_| panic!("server panicked"));
}

#[test]
fn harness_backend_records_length_chunked_and_pipelined_requests() {
    let backend = Backend::echo_target();
    let mut c = PlainClient::connect_plain(backend.addr().port());
    let mut reqs = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    reqs.extend_from_slice(b"PUT /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    reqs.extend_from_slice(&chunked_body(&[b"abc", b"defg"]));
    reqs.extend_from_slice(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    c.send(&reqs);
    for want in ["POST /a", "PUT /b", "GET /c"] {
        assert_eq!(c.response().text(), want);
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(
        (seen[1].body.as_slice(), seen[1].chunked),
        (&b"abcdefg"[..], true)
    );
    assert!(seen[2].body.is_empty());
    assert!(seen.iter().all(|s| s.conn == seen[0].conn));
}

#[test]
fn harness_backend_misbehaviours_look_as_intended() {
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    let closing = Backend::closing();
    let mut c = PlainClient::connect_plain(closing.addr().port());
    c.send(get);
    assert!(c.expect_closed().is_empty());

    let resetting = Backend::resetting();
    let mut c = PlainClient::connect_plain(resetting.addr().port());
    c.send(get);
    let (bytes, end) = c.read_until_close();
    assert!(bytes.is_empty());
    assert!(end.is_ok(), "reset not seen as a close: {end:?}");

    let garbage = Backend::garbage();
    let mut c = PlainClient::connect_plain(garbage.addr().port());
    c.set_read_timeout(Duration::from_millis(300));
    c.send(get);
    let (bytes, end) = c.read_until_close();
    assert!(bytes.starts_with(b"HELLO"));
    assert!(matches!(end, Err(WireError::TimedOut)), "{end:?}");

    let short = Backend::truncated_length(1000, 400);
    let mut c = PlainClient::connect_plain(short.addr().port());
    c.send(get);
    let head = c.head();
    let err = c.body(&head, "GET", &mut |_| {}).err();
    assert!(
        matches!(err, Some(ref e) if e.got == 400 && e.cause.is_close()),
        "{err:?}"
    );

    let chunked = Backend::truncated_chunked(3, 100);
    let mut c = PlainClient::connect_plain(chunked.addr().port());
    c.send(get);
    let head = c.head();
    let err = c.body(&head, "GET", &mut |_| {}).err();
    assert!(
        matches!(err, Some(ref e) if e.got == 300 && e.cause.is_close()),
        "{err:?}"
    );
}

#[test]
fn harness_backend_pattern_bytes_match_the_pattern_hash() {
    let len = 3 * MIB + 17;
    let backend = Backend::pattern(len);
    let mut c = PlainClient::connect_plain(backend.addr().port());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = c.head();
    let mut check = PatternCheck::default();
    let got = c
        .body(&head, "GET", &mut |b| check.feed(b))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((got, check.len, check.first_mismatch), (len, len, None));
    assert_eq!(check.hash.value(), pattern_fnv(len));
}

#[test]
fn harness_fnv_and_pattern_agree_with_known_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    let p = pattern(10_000);
    assert_eq!(fnv1a64(&p), pattern_fnv(10_000));
    let mut check = PatternCheck::default();
    for piece in p.chunks(333) {
        check.feed(piece);
    }
    assert_eq!((check.len, check.first_mismatch), (10_000, None));
    let mut bad = p.clone();
    bad[7777] ^= 1;
    let mut check = PatternCheck::default();
    check.feed(&bad);
    assert_eq!(check.first_mismatch, Some(7777));
}

#[test]
fn harness_plain_tcp_reads_raw_bytes() {
    // A tiny sanity check of the raw-socket path used by the plain-HTTP test.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let t = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap_or_else(|e| panic!("{e}"));
        s.write_all(&b).unwrap_or_else(|e| panic!("{e}"));
    });
    let mut c = PlainClient::connect_plain(port);
    c.send(b"ping");
    let (bytes, end) = c.read_until_close();
    assert_eq!(bytes, b"ping");
    assert!(end.is_ok());
    t.join().unwrap_or_else(|_| panic!("server panicked"));
}
