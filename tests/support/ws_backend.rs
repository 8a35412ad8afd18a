//! A WebSocket server backend on 127.0.0.1:0 (the plain [`Backend`]'s listener, a
//! thread per connection), every connection run by the same [`Behaviour`]: echo, a
//! message first, a refusal, a 101 nobody asked for or for another protocol, a close
//! or a drop from its side, or sending while it reads. It records the request heads,
//! the messages and how each connection ended, and tests wait on that record.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::backend::{response, Backend, Seen};
use super::base64::is_base64_of_16_bytes;
use super::websocket::{accept_value, has_token, WebSocket, WsError};
use super::wire::owned_fields;
use super::ws_frame::{Close, Message, ProtocolError, Role};
use super::{lock, pattern};

/// How long the server waits for the client's TCP close after the close handshake.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection answered with a 101 that opens no tunnel is held.
const HOLD_TIMEOUT: Duration = Duration::from_secs(30);

/// What a [`WsBackend`] does with each connection.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Echoes every text and binary message.
    Echo,
    /// Sends this text message in the same write as its 101, then echoes.
    Greet(String),
    /// Echoes this many messages, then closes from its side (code 1000, "bye").
    CloseAfter(usize),
    /// Echoes this many messages, then drops the TCP connection without a close frame.
    DropAfter(usize),
    /// Sends one binary message of this many pattern bytes while it reads (and records)
    /// what the client sends: both directions busy at once.
    SendWhileReading(u64),
    /// Answers an upgrade request `403 Forbidden`.
    Refuse,
    /// Answers every request, upgrade or not, with a `101` to WebSocket, then holds the
    /// connection open.
    Unsolicited101,
    /// Answers an upgrade request with a `101` to `h2c`, then holds the connection open.
    OtherProtocol,
}

/// How one backend connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client started the close handshake (with this close); we answered.
    ClientClosed(Option<Close>),
    /// We started the close handshake and the client answered with this close.
    ServerClosed(Option<Close>),
    /// We dropped the connection on purpose (`DropAfter`).
    Dropped,
    /// The client went away (or timed out) without a close frame: why.
    Vanished(String),
    /// The client broke the protocol (we answered with a close carrying its code).
    Protocol(ProtocolError),
    /// No WebSocket: a refused, plain or failed upgrade, or a 101 we sent and held.
    NoTunnel,
}

/// What a [`WsBackend`] saw, in order.
#[derive(Debug, Clone, Default)]
pub struct WsSeen {
    /// Every request head, upgrade or not (health checks without a byte are not here).
    pub requests: Vec<Seen>,
    /// Every message received, with its connection number.
    pub messages: Vec<(usize, Message)>,
    /// How each connection ended, with its connection number.
    pub ends: Vec<(usize, End)>,
}

impl WsSeen {
    /// The data messages received, in order, whatever the connection.
    pub fn data(&self) -> Vec<&Message> {
        self.messages
            .iter()
            .map(|(_, m)| m)
            .filter(|m| m.is_data())
            .collect()
    }
}

#[derive(Debug, Default)]
struct Record {
    seen: Mutex<WsSeen>,
    changed: Condvar,
}

impl Record {
    fn update(&self, f: impl FnOnce(&mut WsSeen)) {
        f(&mut lock(&self.seen));
        self.changed.notify_all();
    }
}

/// A WebSocket server on 127.0.0.1:0, a thread per connection, each run by the same
/// [`Behaviour`]; it records requests, messages and how connections ended.
#[derive(Debug)]
pub struct WsBackend {
    backend: Backend,
    record: Arc<Record>,
}

impl WsBackend {
    /// Starts a backend with this behaviour.
    pub fn start(behaviour: Behaviour) -> WsBackend {
        let record: Arc<Record> = Arc::default();
        let rec = Arc::clone(&record);
        let backend = Backend::raw(move |conn, n| serve(conn, n, &behaviour, &rec));
        WsBackend { backend, record }
    }

    /// An echo backend.
    pub fn echo() -> WsBackend {
        WsBackend::start(Behaviour::Echo)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.backend.addr()
    }

    /// What it saw so far.
    pub fn seen(&self) -> WsSeen {
        lock(&self.record.seen).clone()
    }

    /// Waits until `done(&seen)` holds; after `within`, what it saw instead.
    pub fn wait(&self, within: Duration, done: impl Fn(&WsSeen) -> bool) -> Result<WsSeen, WsSeen> {
        let deadline = Instant::now() + within;
        let mut seen = lock(&self.record.seen);
        while !done(&seen) {
            let now = Instant::now();
            if now >= deadline {
                return Err(seen.clone());
            }
            seen = self
                .record
                .changed
                .wait_timeout(seen, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(seen.clone())
    }

    /// Waits until `n` connections have ended and returns how (panics after `within`).
    pub fn wait_ends(&self, n: usize, within: Duration) -> Vec<(usize, End)> {
        match self.wait(within, |s| s.ends.len() >= n) {
            Ok(s) => s.ends,
            Err(s) => panic!(
                "waited {within:?} for {n} connection ends at the WebSocket backend; saw {s:?}"
            ),
        }
    }
}

/// Runs one backend connection: requests until an upgrade, then the behaviour.
fn serve(conn: TcpStream, n: usize, behaviour: &Behaviour, record: &Record) {
    let mut ws = WebSocket::new(conn, Role::Server, Vec::new());
    let end = loop {
        let raw = match ws.read_head() {
            Ok(raw) => raw,
            // A health check's connect-and-close, or a client that gave up.
            Err(_) => return,
        };
        let Some(req) = parse_request(&raw, n) else {
            let _ = ws.send_raw(&response(400, &[("Connection", "close")], b"bad request\n"));
            break End::NoTunnel;
        };
        record.update(|s| s.requests.push(req.clone()));
        let upgrade = has_token(&req.headers, "upgrade", "websocket");
        let key = req.header("sec-websocket-key").map(str::to_string);
        match behaviour {
            Behaviour::Unsolicited101 => {
                let accept = key.as_deref().map(accept_value).unwrap_or_default();
                let _ = ws.send_raw(switching("websocket", &accept).as_bytes());
                break hold(ws);
            }
            _ if !upgrade => {
                let ok = response(200, &[("Content-Type", "text/plain")], b"plain\n");
                if ws.send_raw(&ok).is_err() {
                    return;
                }
                continue;
            }
            Behaviour::Refuse => {
                let no = response(403, &[("Connection", "close")], b"upgrade refused\n");
                let _ = ws.send_raw(&no);
                break End::NoTunnel;
            }
            _ => {}
        }
        let valid = req.method == "GET"
            && req.minor_version == 1
            && has_token(&req.headers, "connection", "upgrade")
            && req.header("sec-websocket-version") == Some("13")
            && key.as_deref().is_some_and(is_base64_of_16_bytes);
        let Some(key) = key.filter(|_| valid) else {
            let _ = ws.send_raw(&response(400, &[("Connection", "close")], b"bad upgrade\n"));
            break End::NoTunnel;
        };
        if let Behaviour::OtherProtocol = behaviour {
            let _ = ws.send_raw(switching("h2c", "").as_bytes());
            break hold(ws);
        }
        let mut open = switching("websocket", &accept_value(&key)).into_bytes();
        if let Behaviour::Greet(text) = behaviour {
            open.extend_from_slice(&Message::text(text).into_frame().encode());
        }
        if ws.send_raw(&open).is_err() {
            return;
        }
        break match behaviour {
            Behaviour::SendWhileReading(len) => send_while_reading(ws, n, *len, record),
            Behaviour::CloseAfter(k) => echo(&mut ws, n, Some(*k), record)
                .unwrap_or_else(|| close_from_server(&mut ws, n, record)),
            Behaviour::DropAfter(k) => echo(&mut ws, n, Some(*k), record).unwrap_or_else(|| {
                ws.drop_tcp();
                End::Dropped
            }),
            _ => echo(&mut ws, n, None, record).unwrap_or(End::Dropped),
        };
    };
    record.update(|s| s.ends.push((n, end)));
}

/// A `101 Switching Protocols` head to `protocol`, with an accept value if not empty.
fn switching(protocol: &str, accept: &str) -> String {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {protocol}\r\nConnection: Upgrade\r\n"
    );
    if !accept.is_empty() {
        head.push_str(&format!("Sec-WebSocket-Accept: {accept}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Holds a connection open, discarding what comes, until the peer closes (or
/// `HOLD_TIMEOUT`).
fn hold(ws: WebSocket<TcpStream>) -> End {
    let (mut sock, _) = ws.into_parts();
    let deadline = Instant::now() + HOLD_TIMEOUT;
    let mut sink = [0u8; 16 * 1024];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            break;
        }
        if matches!(sock.read(&mut sink), Ok(0) | Err(_)) {
            break;
        }
    }
    End::NoTunnel
}

/// Echoes data messages, `limit` of them if set: `None` when the limit is reached
/// (the caller decides what comes next), else how the connection ended.
fn echo(
    ws: &mut WebSocket<TcpStream>,
    n: usize,
    limit: Option<usize>,
    record: &Record,
) -> Option<End> {
    let mut echoed = 0;
    loop {
        if limit.is_some_and(|k| echoed >= k) {
            return None;
        }
        let msg = match ws.recv() {
            Ok(m) => m,
            Err(WsError::Protocol(e)) => return Some(End::Protocol(e)),
            Err(e) => return Some(End::Vanished(e.to_string())),
        };
        record.update(|s| s.messages.push((n, msg.clone())));
        match msg {
            Message::Close(c) => {
                linger(ws);
                return Some(End::ClientClosed(c));
            }
            Message::Text(_) | Message::Binary(_) => {
                if let Err(e) = ws.send(msg) {
                    return Some(End::Vanished(e.to_string()));
                }
                echoed += 1;
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

/// The server's side of a close it starts: Close, then the client's Close, then the
/// TCP close (the server closes first, RFC 6455 section 7.1.1).
fn close_from_server(ws: &mut WebSocket<TcpStream>, n: usize, record: &Record) -> End {
    match ws.close(1000, "bye") {
        Ok(c) => {
            record.update(|s| s.messages.push((n, Message::Close(c.clone()))));
            linger(ws);
            End::ServerClosed(c)
        }
        Err(WsError::Protocol(e)) => End::Protocol(e),
        Err(e) => End::Vanished(e.to_string()),
    }
}

/// Closes our side and waits briefly for the client's FIN, so the close is orderly.
fn linger(ws: &mut WebSocket<TcpStream>) {
    ws.shutdown_write();
    ws.set_read_timeout(LINGER_TIMEOUT);
    let _ = ws.expect_eof();
}

/// `SendWhileReading`: a writer thread sends the big message while this thread reads.
fn send_while_reading(ws: WebSocket<TcpStream>, n: usize, len: u64, record: &Record) -> End {
    let (mut reader, mut writer) = match ws.split() {
        Ok(halves) => halves,
        Err(e) => return End::Vanished(e.to_string()),
    };
    let sender = thread::spawn(move || {
        let r = writer.send(Message::Binary(pattern(len as usize)));
        (writer, r)
    });
    let end = loop {
        match reader.recv() {
            Ok(Message::Close(c)) => {
                record.update(|s| s.messages.push((n, Message::Close(c.clone()))));
                break End::ClientClosed(c);
            }
            Ok(m) => record.update(|s| s.messages.push((n, m))),
            Err(WsError::Protocol(e)) => break End::Protocol(e),
            Err(e) => break End::Vanished(e.to_string()),
        }
    };
    let Ok((mut writer, sent)) = sender.join() else {
        return End::Vanished("the sending thread panicked".into());
    };
    if let Err(e) = sent {
        return End::Vanished(format!("sending: {e}"));
    }
    if let End::ClientClosed(c) = &end {
        let code = c.as_ref().map(|c| Close::new(c.code, ""));
        let _ = writer.send(Message::Close(code));
        linger(&mut reader);
    }
    end
}

fn parse_request(raw: &[u8], conn: usize) -> Option<Seen> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    Some(Seen {
        conn,
        raw_head: raw.to_vec(),
        method: req.method?.to_string(),
        path: req.path?.to_string(),
        minor_version: req.version?,
        headers: owned_fields(req.headers),
        body: Vec::new(),
        chunked: false,
    })
}
