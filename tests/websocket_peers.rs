//! The WebSocket peers of `support/websocket.rs` against each other over loopback TCP,
//! without nexushub: if the client and the server backend do not agree with each
//! other (and with RFC 6455), the tunnel tests' verdicts mean nothing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use crate::support::tls_client::{tcp_connect, PlainClient};
use crate::support::websocket::{accept_value, Upgrade, WebSocket, WsError};
use crate::support::ws_backend::{Behaviour, End, WsBackend};
use crate::support::ws_frame::{Close, Frame, Message, Opcode, ProtocolError, Role};
use crate::support::{fnv1a64, pattern, pattern_fnv, MIB};

/// How long a test waits for the backend to record something.
const WAIT: Duration = Duration::from_secs(10);

fn open(backend: &WsBackend) -> WebSocket<TcpStream> {
    open_with(backend, Upgrade::new("app.localhost", "/socket"))
}

fn open_with(backend: &WsBackend, upgrade: Upgrade) -> WebSocket<TcpStream> {
    let sock = tcp_connect(backend.addr().port());
    upgrade
        .connect(sock)
        .unwrap_or_else(|e| panic!("upgrade: {e}"))
        .0
}

fn recv(ws: &mut WebSocket<TcpStream>) -> Message {
    ws.recv().unwrap_or_else(|e| panic!("recv: {e}"))
}

#[test]
fn ws_peers_handshake_sends_and_checks_the_rfc_fields() {
    let backend = WsBackend::echo();
    // Over a stream taken from the HTTP client, as a test through nexushub would.
    let sock = PlainClient::connect_plain(backend.addr().port()).into_stream();
    let upgrade =
        Upgrade::new("app.localhost", "/cable?x=1").header("Sec-WebSocket-Protocol", "chat");
    let (mut ws, head) = upgrade
        .connect(sock)
        .unwrap_or_else(|e| panic!("upgrade: {e}"));
    assert_eq!(head.status, 101);
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(accept_value(upgrade.key()).as_str())
    );
    let seen = backend
        .wait(WAIT, |s| !s.requests.is_empty())
        .unwrap_or_else(|s| panic!("no request: {s:?}"));
    let request = &seen.requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/cable?x=1")
    );
    assert_eq!(request.header("upgrade"), Some("websocket"));
    assert_eq!(request.header("connection"), Some("Upgrade"));
    assert_eq!(request.header("sec-websocket-version"), Some("13"));
    assert_eq!(request.header("sec-websocket-key"), Some(upgrade.key()));
    assert_eq!(request.header("sec-websocket-protocol"), Some("chat"));
    assert!(ws.close(1000, "").is_ok());
    assert!(Upgrade::new("a", "/").key() != upgrade.key(), "keys repeat");
}

#[test]
fn ws_peers_echo_small_and_8_mib_messages() {
    let backend = WsBackend::echo();
    let mut ws = open(&backend);
    ws.send_text("héllo").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("héllo"));
    ws.send_binary(&[0, 1, 2, 255])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::Binary(vec![0, 1, 2, 255]));
    ws.send_text("").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text(""));
    let len = 8 * MIB;
    ws.send(Message::Binary(pattern(len as usize)))
        .unwrap_or_else(|e| panic!("{e}"));
    match recv(&mut ws) {
        Message::Binary(b) => assert_eq!((b.len() as u64, fnv1a64(&b)), (len, pattern_fnv(len))),
        other => panic!("got {other:?}"),
    }
    let seen = backend
        .wait(WAIT, |s| s.data().len() == 4)
        .unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(seen.data()[0], &Message::text("héllo"));
}

#[test]
fn ws_peers_both_sides_send_8_mib_at_once() {
    let len = 8 * MIB;
    let backend = WsBackend::start(Behaviour::SendWhileReading(len));
    let ws = open(&backend);
    let (mut reader, mut writer) = ws.split().unwrap_or_else(|e| panic!("split: {e}"));
    let receiving = thread::spawn(move || reader.recv().map(|m| (m, reader)));
    writer
        .send(Message::Binary(pattern(len as usize)))
        .unwrap_or_else(|e| panic!("sending while the server sends: {e}"));
    let (got, mut reader) = receiving
        .join()
        .unwrap_or_else(|_| panic!("reader panicked"))
        .unwrap_or_else(|e| panic!("receiving while sending: {e}"));
    match got {
        Message::Binary(b) => assert_eq!((b.len() as u64, fnv1a64(&b)), (len, pattern_fnv(len))),
        other => panic!("got {other:?}"),
    }
    writer
        .send(Message::Close(Some(Close::new(1000, ""))))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        recv(&mut reader),
        Message::Close(Some(Close::new(1000, "")))
    );
    assert!(reader.expect_eof().is_ok());
    drop((reader, writer));
    let ends = backend.wait_ends(1, WAIT);
    assert_eq!(ends[0].1, End::ClientClosed(Some(Close::new(1000, ""))));
    let seen = backend.seen();
    assert!(
        matches!(seen.data()[..], [Message::Binary(b)] if fnv1a64(b) == pattern_fnv(len)),
        "{seen:?}"
    );
}

#[test]
fn ws_peers_one_thread_sends_and_receives_8_mib_at_once() {
    // As over TLS, where the stream cannot be split between two threads.
    let len = 8 * MIB;
    let backend = WsBackend::start(Behaviour::SendWhileReading(len));
    let mut ws = open(&backend);
    let mut got = ws
        .send_while_receiving(Message::Binary(pattern(len as usize)))
        .unwrap_or_else(|e| panic!("sending while the server sends: {e}"));
    if got.is_empty() {
        got.push(recv(&mut ws));
    }
    match &got[..] {
        [Message::Binary(b)] => {
            assert_eq!((b.len() as u64, fnv1a64(b)), (len, pattern_fnv(len)))
        }
        other => panic!("got {other:?}"),
    }
    let seen = backend
        .wait(WAIT, |s| !s.data().is_empty())
        .unwrap_or_else(|s| panic!("{s:?}"));
    assert!(matches!(seen.data()[..], [Message::Binary(b)] if fnv1a64(b) == pattern_fnv(len)));
}

#[test]
fn ws_peers_fragments_reassemble_around_a_control_frame() {
    let backend = WsBackend::echo();
    let mut ws = open(&backend);
    ws.send_fragmented(true, &[b"frag", b"men", b"ted"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("fragmented"));
    // A ping may come between the fragments of a message (RFC 6455 section 5.4).
    let frames = [
        Frame::new(false, Opcode::Binary, &b"ab"[..]),
        Frame::new(true, Opcode::Ping, &b"in between"[..]),
        Frame::new(true, Opcode::Continuation, &b"cd"[..]),
    ];
    for f in frames {
        ws.send_frame(f).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(recv(&mut ws), Message::Pong(b"in between".to_vec()));
    assert_eq!(recv(&mut ws), Message::Binary(b"abcd".to_vec()));
    let seen = backend
        .wait(WAIT, |s| s.messages.len() == 3)
        .unwrap_or_else(|s| panic!("{s:?}"));
    let kinds: Vec<_> = seen.messages.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(
        kinds,
        [
            Message::text("fragmented"),
            Message::Ping(b"in between".to_vec()),
            Message::Binary(b"abcd".to_vec())
        ]
    );
}

#[test]
fn ws_peers_ping_is_answered_with_its_payload() {
    let backend = WsBackend::echo();
    let mut ws = open(&backend);
    ws.send(Message::Ping(b"are you there".to_vec()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::Pong(b"are you there".to_vec()));
    // An unsolicited pong is a heartbeat: recorded, not answered.
    ws.send(Message::Pong(b"beat".to_vec()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        ws.recv_within(Duration::from_millis(200)),
        Ok(None)
    ));
    backend
        .wait(WAIT, |s| {
            s.messages
                .iter()
                .any(|(_, m)| *m == Message::Pong(b"beat".to_vec()))
        })
        .unwrap_or_else(|s| panic!("{s:?}"));
}

#[test]
fn ws_peers_close_handshake_started_by_the_client() {
    let backend = WsBackend::echo();
    let mut ws = open(&backend);
    let answer = ws
        .close(1001, "going away")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer, Some(Close::new(1001, "")));
    assert!(ws.close_sent() && ws.close_received());
    assert!(ws.expect_eof().is_ok(), "the server closes TCP first");
    drop(ws);
    let ends = backend.wait_ends(1, WAIT);
    assert_eq!(
        ends[0].1,
        End::ClientClosed(Some(Close::new(1001, "going away")))
    );
}

#[test]
fn ws_peers_close_handshake_started_by_the_server() {
    let backend = WsBackend::start(Behaviour::CloseAfter(1));
    let mut ws = open(&backend);
    ws.send_text("last").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("last"));
    assert_eq!(recv(&mut ws), Message::Close(Some(Close::new(1000, "bye"))));
    assert!(ws.close_sent(), "the client answers a close");
    assert!(ws.expect_eof().is_ok());
    drop(ws);
    let ends = backend.wait_ends(1, WAIT);
    assert_eq!(ends[0].1, End::ServerClosed(Some(Close::new(1000, ""))));
}

#[test]
fn ws_peers_server_first_message_comes_with_the_101() {
    let backend = WsBackend::start(Behaviour::Greet("welcome".into()));
    let sock = tcp_connect(backend.addr().port());
    let (ws, _) = Upgrade::new("app.localhost", "/")
        .connect(sock)
        .unwrap_or_else(|e| panic!("{e}"));
    // Sent in the same write, so read with the 101: kept, not lost.
    let (sock, early) = ws.into_parts();
    assert_eq!(
        early,
        Frame::new(true, Opcode::Text, &b"welcome"[..]).encode()
    );
    let mut ws = WebSocket::new(sock, Role::Client, early);
    assert_eq!(recv(&mut ws), Message::text("welcome"));
    ws.send_text("thanks").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("thanks"));
}

#[test]
fn ws_peers_frame_pipelined_with_the_upgrade_request() {
    let backend = WsBackend::echo();
    let upgrade = Upgrade::new("app.localhost", "/").pipelined(Message::text("early"));
    let mut ws = open_with(&backend, upgrade);
    assert_eq!(recv(&mut ws), Message::text("early"));
    let seen = backend
        .wait(WAIT, |s| !s.data().is_empty())
        .unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(seen.data(), [&Message::text("early")]);
}

#[test]
fn ws_peers_server_rejects_an_unmasked_client_frame() {
    let backend = WsBackend::echo();
    let mut ws = open(&backend);
    ws.send_raw(&Frame::new(true, Opcode::Text, &b"bare"[..]).encode())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::Close(Some(Close::new(1002, ""))));
    let ends = backend.wait_ends(1, WAIT);
    assert_eq!(ends[0].1, End::Protocol(ProtocolError::Unmasked));
}

#[test]
fn ws_peers_server_rejects_bad_messages_with_the_right_close_code() {
    let backend = WsBackend::echo();
    let cases = [
        (
            vec![Frame::new(true, Opcode::Text, vec![b'a', 0xff])],
            ProtocolError::InvalidUtf8,
        ),
        (
            vec![Frame::new(true, Opcode::Continuation, &b"orphan"[..])],
            ProtocolError::UnexpectedContinuation,
        ),
        (
            vec![
                Frame::new(false, Opcode::Text, &b"one"[..]),
                Frame::new(true, Opcode::Text, &b"two"[..]),
            ],
            ProtocolError::InterleavedMessage,
        ),
    ];
    for (i, (frames, error)) in cases.into_iter().enumerate() {
        let mut ws = open(&backend);
        for f in frames {
            ws.send_frame(f).unwrap_or_else(|e| panic!("{e}"));
        }
        let want = Close::new(error.close_code(), "");
        assert_eq!(recv(&mut ws), Message::Close(Some(want)), "{error}");
        let ends = backend.wait_ends(i + 1, WAIT);
        assert_eq!(ends[i].1, End::Protocol(error));
    }
}

/// A one-connection server that reads an upgrade request and answers `answer(key)`.
fn scripted_server(answer: impl FnOnce(&str) -> Vec<u8> + Send + 'static) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap_or_else(|e| panic!("accept: {e}"));
        s.set_read_timeout(Some(WAIT))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            s.read_exact(&mut byte).unwrap_or_else(|e| panic!("{e}"));
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap_or_default()
            .to_string();
        s.write_all(&answer(&key)).unwrap_or_else(|e| panic!("{e}"));
        // Hold the connection until the client is done with it.
        let _ = s.read(&mut byte);
    });
    port
}

#[test]
fn ws_peers_client_rejects_a_masked_server_frame() {
    let port = scripted_server(|key| {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_value(key)
        )
        .into_bytes();
        out.extend_from_slice(
            &Frame::new(true, Opcode::Text, &b"hidden"[..])
                .masked([9, 8, 7, 6])
                .encode(),
        );
        out
    });
    let (mut ws, _) = Upgrade::new("a", "/")
        .connect(tcp_connect(port))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(ws.recv(), Err(WsError::Protocol(ProtocolError::Masked))),
        "a masked server frame accepted"
    );
}

#[test]
fn ws_peers_client_rejects_a_wrong_accept_value() {
    // The accept value of another key (the RFC's example one).
    let port = scripted_server(|_| {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_value("dGhlIHNhbXBsZSBub25jZQ==")
        )
        .into_bytes()
    });
    match Upgrade::new("a", "/").connect(tcp_connect(port)) {
        Err(WsError::Handshake { why, head: Some(h) }) => {
            assert_eq!(
                (h.status, why.as_str()),
                (101, "wrong Sec-WebSocket-Accept")
            );
        }
        other => panic!("got {:?}", other.map(|(_, h)| h)),
    }
}

#[test]
fn ws_peers_refusing_other_protocol_and_unsolicited_101_backends() {
    let refusing = WsBackend::start(Behaviour::Refuse);
    match Upgrade::new("a", "/").connect(tcp_connect(refusing.addr().port())) {
        Err(WsError::Handshake { head: Some(h), .. }) => assert_eq!(h.status, 403),
        other => panic!("got {:?}", other.map(|(_, h)| h)),
    }
    assert_eq!(refusing.wait_ends(1, WAIT)[0].1, End::NoTunnel);

    let h2c = WsBackend::start(Behaviour::OtherProtocol);
    match Upgrade::new("a", "/").connect(tcp_connect(h2c.addr().port())) {
        Err(WsError::Handshake { head: Some(h), why }) => {
            assert_eq!((h.status, h.header("upgrade")), (101, Some("h2c")), "{why}")
        }
        other => panic!("got {:?}", other.map(|(_, h)| h)),
    }

    let unsolicited = WsBackend::start(Behaviour::Unsolicited101);
    let mut c = PlainClient::connect_plain(unsolicited.addr().port());
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = c.head();
    assert_eq!(
        (head.status, head.header("upgrade")),
        (101, Some("websocket"))
    );

    // Without an Upgrade, the other backends answer plain requests (keep-alive).
    let plain = WsBackend::echo();
    let mut c = PlainClient::connect_plain(plain.addr().port());
    for _ in 0..2 {
        assert_eq!(c.get("a", "/").text(), "plain\n");
    }
}

#[test]
fn ws_peers_either_side_dropping_is_seen_by_the_other() {
    let backend = WsBackend::start(Behaviour::DropAfter(1));
    let mut ws = open(&backend);
    ws.send_text("one").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recv(&mut ws), Message::text("one"));
    let r = ws.recv();
    assert!(matches!(r, Err(ref e) if e.is_close()), "{r:?}");
    assert_eq!(backend.wait_ends(1, WAIT)[0].1, End::Dropped);

    let backend = WsBackend::echo();
    let ws = open(&backend);
    ws.drop_tcp();
    let ends = backend.wait_ends(1, WAIT);
    assert!(matches!(ends[0].1, End::Vanished(_)), "{ends:?}");
}
