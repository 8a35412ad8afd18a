//! The exchange driven the way a worker drives it, with both peers scripted
//! byte by byte: a rustls client on a loopback socket, pumped by hand on this
//! thread, and a backend on a thread of its own that plays one script per
//! connection it accepts. Each test names the rule it holds.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

use super::outcome::Done;
use super::*;
use crate::error::{BackendFault, HeadLost};
use crate::http1::Request;
use crate::proxy::backend::Pool;
use crate::proxy::census::{Census, Slot};
use crate::proxy::client::{Fill, Handshake, MinRate};
use crate::proxy::park::Waiting;
use crate::sys::{self, Interest};

/// How long anything the other side does at once may take.
const WITHIN: Duration = Duration::from_secs(10);
/// One wait on a socket before looking again.
const POLL: Duration = Duration::from_millis(20);

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The client's end: rustls over a non-blocking socket, driven by [`Client::pump`].
struct Client {
    tls: ClientConnection,
    sock: TcpStream,
    /// Plaintext received so far.
    got: Vec<u8>,
}

impl Client {
    /// Queues `bytes` and sends what the socket takes.
    fn send(&mut self, bytes: &[u8]) {
        self.tls.writer().write_all(bytes).expect("client write");
        self.pump();
    }

    /// Sends what rustls holds and reads what has come, without waiting.
    fn pump(&mut self) {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("client write_tls: {e}"),
            }
        }
        // Bounded: each round reads bytes or stops.
        for _ in 0..10_000 {
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => break,
                Ok(_) => {
                    self.tls.process_new_packets().expect("client TLS");
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match self.tls.reader().read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => self.got.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            // A cut without close_notify: what came stays in `got`.
                            Err(_) => break,
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
    }
}

/// A handshaken client connection (our side and the client's) and a worker's
/// buffers, as a worker has them when an exchange starts.
struct Harness {
    conn: ClientConn,
    client: Client,
    st: Scratch,
    limits: Limits,
    counter: Arc<AtomicUsize>,
    deadline: Instant,
}

fn client_config() -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("ca.pem")).expect("ca.pem") {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn harness() -> Harness {
    let deadline = Instant::now() + WITHIN;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let sock = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (ours, peer) = listener.accept().expect("accept");
    sock.set_nonblocking(true).expect("nonblocking");
    ours.set_nonblocking(true).expect("nonblocking");
    let setup =
        crate::tls::load(&fixture("localhost.pem"), &fixture("localhost.key")).expect("fixtures");
    let tls = ServerConnection::new(setup.config).expect("server TLS");
    let census = Arc::new(Census::default());
    let slot = Slot::acquire(&census, peer.ip(), 8, 8).expect("slot");
    let mut conn = ClientConn::new(ours, tls, peer, deadline, slot);
    let name = ServerName::try_from("hello.localhost").expect("name");
    let tls = ClientConnection::new(client_config(), name).expect("client TLS");
    let mut client = Client {
        tls,
        sock,
        got: Vec::new(),
    };
    loop {
        assert!(Instant::now() < deadline, "handshake out of time");
        client.pump();
        match conn.drive_handshake().expect("handshake") {
            Handshake::Done if !client.tls.is_handshaking() => break,
            _ => {
                let _ = sys::poll_one(conn.sock.as_raw_fd(), Interest::Read, POLL);
            }
        }
    }
    Harness {
        conn,
        client,
        st: Scratch::new(Arc::new(Pool::new(WITHIN))),
        limits: Limits {
            head_timeout: WITHIN,
            idle_timeout: WITHIN,
            backend_connect_timeout: WITHIN,
            backend_timeout: WITHIN,
            client_timeout: WITHIN,
            max_head_bytes: 64 * 1024,
            min_rate: MinRate {
                bytes_per_sec: 0,
                grace: WITHIN,
            },
            tunnel_idle_timeout: None,
        },
        counter: Arc::new(AtomicUsize::new(0)),
        deadline,
    }
}

impl Harness {
    fn check_time(&self) {
        assert!(Instant::now() < self.deadline, "out of time");
    }

    /// The next request head the client sent, read as a session reads it.
    fn request(&mut self) -> Request {
        loop {
            self.check_time();
            if let Some(req) = http1::parse_request(&self.conn.buf, 64 * 1024).expect("head") {
                self.conn.buf.drain(..req.head_len);
                return req;
            }
            self.client.pump();
            match self.conn.fill_nonblocking(80 * 1024).expect("fill") {
                Fill::Progress => {}
                Fill::WouldBlock => {
                    let _ = sys::poll_one(self.conn.sock.as_raw_fd(), Interest::Read, POLL);
                }
                Fill::Eof => panic!("the client closed"),
            }
        }
    }

    fn exchange(&self, req: Request, addr: SocketAddr) -> Exchange {
        Exchange::new(
            req,
            "app".into(),
            addr,
            Instant::now(),
            InFlight::enter(&self.counter),
            InFlight::enter(&self.counter),
        )
    }

    /// Runs `ex` to its end as a worker would, waiting where the worker would
    /// park; `on_backend_wait` sees the exchange each time it waits on its
    /// backend (a script's cue).
    fn finish(
        &mut self,
        ex: &mut Exchange,
        on_backend_wait: &mut dyn FnMut(&Exchange),
    ) -> Result<Done, Failure> {
        loop {
            self.check_time();
            match ex.run(&mut self.conn, &self.limits, &mut self.st, false) {
                Progress::Done(done) => return Ok(done),
                Progress::Failed(f) => return Err(f),
                Progress::Switched(sw) => panic!("switched: {sw:?}"),
                Progress::Blocked(w @ Waiting::Both { .. }) => {
                    panic!("an exchange waited on {w:?}")
                }
                Progress::Blocked(Waiting::Client(interest)) => {
                    self.client.pump();
                    let _ = sys::poll_one(self.conn.sock.as_raw_fd(), interest, POLL);
                }
                Progress::Blocked(Waiting::Backend(interest)) => {
                    on_backend_wait(ex);
                    self.client.pump();
                    let be = ex.backend_mut().expect("a backend to wait on");
                    let _ = sys::poll_one(be.sock.as_raw_fd(), interest, POLL);
                }
            }
        }
    }

    /// Runs `ex` as [`Harness::finish`] does, to the switch a 101 ends it with.
    fn switch(&mut self, ex: &mut Exchange) -> Switch {
        loop {
            self.check_time();
            match ex.run(&mut self.conn, &self.limits, &mut self.st, false) {
                Progress::Switched(sw) => return sw,
                Progress::Blocked(Waiting::Client(interest)) => {
                    self.client.pump();
                    let _ = sys::poll_one(self.conn.sock.as_raw_fd(), interest, POLL);
                }
                Progress::Blocked(Waiting::Backend(interest)) => {
                    self.client.pump();
                    let be = ex.backend_mut().expect("a backend to wait on");
                    let _ = sys::poll_one(be.sock.as_raw_fd(), interest, POLL);
                }
                other => panic!("expected a switch, got {other:?}"),
            }
        }
    }

    /// Everything the client has been sent so far (waiting until it has `len`
    /// bytes at least).
    fn client_got(&mut self, len: usize) -> String {
        while self.client.got.len() < len {
            self.check_time();
            // What the exchange left in rustls goes out as a worker would send it.
            let _ = self.conn.flush_nonblocking();
            self.client.pump();
            let _ = sys::poll_one(self.client.sock.as_raw_fd(), Interest::Read, POLL);
        }
        String::from_utf8_lossy(&self.client.got).into_owned()
    }
}

/// What one backend connection does, given its socket; returns the requests
/// it read.
type Script = Box<dyn FnOnce(&mut TcpStream) -> Vec<String> + Send>;

/// A backend that accepts one connection per script, in order, and plays it.
/// Joined, it gives the requests each connection read.
fn backend(scripts: Vec<Script>) -> (SocketAddr, JoinHandle<Vec<Vec<String>>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let handle = thread::spawn(move || {
        let deadline = Instant::now() + WITHIN;
        let mut seen = Vec::new();
        for script in scripts {
            let mut sock = loop {
                assert!(Instant::now() < deadline, "no connection came");
                match listener.accept() {
                    Ok((sock, _)) => break sock,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let _ = sys::poll_one(listener.as_raw_fd(), Interest::Read, POLL);
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            sock.set_nonblocking(false).expect("blocking");
            sock.set_read_timeout(Some(WITHIN)).expect("timeout");
            seen.push(script(&mut sock));
        }
        seen
    });
    (addr, handle)
}

/// Reads one request (head, and a `Content-Length` body) off a backend socket.
fn read_request(sock: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match sock.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            other => panic!("reading a request head: {other:?}"),
        }
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().expect("length"));
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).expect("request body");
    raw.extend_from_slice(&body);
    String::from_utf8_lossy(&raw).into_owned()
}

/// The first line of each request.
fn lines(requests: &[String]) -> Vec<&str> {
    requests
        .iter()
        .map(|r| r.lines().next().unwrap_or(""))
        .collect()
}

const OK_HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/// A first GET answered on a connection that then goes to the pool; the
/// second request on it is `then`'s.
fn pooled_then(then: impl FnOnce(&mut TcpStream) -> Vec<String> + Send + 'static) -> Script {
    Box::new(move |sock| {
        let mut seen = vec![read_request(sock)];
        sock.write_all(OK_HELLO).expect("answer");
        seen.extend(then(sock));
        seen
    })
}

/// Runs the first GET of a [`pooled_then`] script, so its connection is pooled.
fn first_get(h: &mut Harness, addr: SocketAddr) {
    h.client
        .send(b"GET /first HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let req = h.request();
    let mut ex = h.exchange(req, addr);
    let done = h.finish(&mut ex, &mut |_| {}).expect("first exchange");
    assert_eq!(done.status, 200);
}

/// A request on a pooled connection that the app closes having read it, and
/// not a byte of answer: a 502, never a second sending.
fn closed_unanswered_is_a_502_sent_once(request: &'static [u8], first_line: &str) {
    let (addr, app) = backend(vec![pooled_then(|sock| {
        // Reads the request whole, then closes without a byte of answer.
        vec![read_request(sock)]
    })]);
    let mut h = harness();
    first_get(&mut h, addr);
    h.client.send(request);
    let req = h.request();
    let mut ex = h.exchange(req, addr);
    let failure = h.finish(&mut ex, &mut |_| {}).expect_err("no answer came");
    match failure {
        Failure::Answer {
            error:
                ProxyError::BackendIo {
                    fault:
                        BackendFault::NoHead {
                            lost: HeadLost::Unanswered | HeadLost::Io(_),
                            reused: true,
                        },
                    ..
                },
            body_read: true,
        } => {}
        other => panic!("expected a 502 for the pooled connection, got {other:?}"),
    }
    let seen = app.join().expect("backend");
    assert_eq!(seen.len(), 1, "a second connection: {seen:?}");
    assert_eq!(lines(&seen[0]), ["GET /first HTTP/1.1", first_line]);
}

#[test]
fn a_post_on_a_reused_connection_closed_unanswered_is_a_502_sent_once() {
    closed_unanswered_is_a_502_sent_once(
        b"POST /pay HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\n\r\nhello",
        "POST /pay HTTP/1.1",
    );
}

#[test]
fn a_bodiless_post_on_a_reused_connection_closed_unanswered_is_a_502_sent_once() {
    closed_unanswered_is_a_502_sent_once(
        b"POST /pay HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 0\r\n\r\n",
        "POST /pay HTTP/1.1",
    );
}

#[test]
fn a_get_on_a_reused_connection_closed_unanswered_is_retried_fresh() {
    let (addr, app) = backend(vec![
        pooled_then(|sock| vec![read_request(sock)]),
        Box::new(|sock: &mut TcpStream| {
            let seen = vec![read_request(sock)];
            sock.write_all(OK_HELLO).expect("answer");
            seen
        }),
    ]);
    let mut h = harness();
    first_get(&mut h, addr);
    h.client
        .send(b"GET /again HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let req = h.request();
    let mut ex = h.exchange(req, addr);
    let done = h.finish(&mut ex, &mut |_| {}).expect("retried");
    assert_eq!((done.status, done.body_bytes), (200, 5));
    let seen = app.join().expect("backend");
    assert_eq!(
        lines(&seen[0]),
        ["GET /first HTTP/1.1", "GET /again HTTP/1.1"]
    );
    assert_eq!(lines(&seen[1]), ["GET /again HTTP/1.1"]);
    let got = h.client_got(2 * OK_HELLO.len());
    assert_eq!(got.matches("\r\n\r\nhello").count(), 2, "{got}");
}

#[test]
fn a_get_whose_reused_connection_closes_in_the_head_is_a_502_not_retried() {
    let (addr, app) = backend(vec![pooled_then(|sock| {
        let seen = vec![read_request(sock)];
        sock.write_all(b"HTTP/1.1 200 O").expect("part of a head");
        seen
    })]);
    let mut h = harness();
    first_get(&mut h, addr);
    h.client
        .send(b"GET /partial HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let req = h.request();
    let mut ex = h.exchange(req, addr);
    let failure = h.finish(&mut ex, &mut |_| {}).expect_err("a cut head");
    match failure {
        Failure::Answer {
            error:
                ProxyError::BackendIo {
                    fault:
                        BackendFault::NoHead {
                            lost: HeadLost::PartHead,
                            reused: true,
                        },
                    ..
                },
            ..
        } => {}
        other => panic!("expected a 502 for a partial head, got {other:?}"),
    }
    let seen = app.join().expect("backend");
    assert_eq!(seen.len(), 1, "retried: {seen:?}");
}

#[test]
fn a_backend_closing_mid_body_after_bytes_reached_the_client_is_a_cut() {
    let (go_tx, go_rx): (Sender<()>, Receiver<()>) = mpsc::channel();
    let (addr, app) = backend(vec![Box::new(move |sock: &mut TcpStream| {
        let seen = vec![read_request(sock)];
        sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            .expect("answer");
        // Closes only once the start of the body is out to the client.
        let _ = go_rx.recv_timeout(WITHIN);
        seen
    })]);
    let mut h = harness();
    h.client
        .send(b"GET /long HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let req = h.request();
    let mut ex = h.exchange(req, addr);
    let result = h.finish(&mut ex, &mut |ex| {
        if ex.sent() == (200, 10) {
            let _ = go_tx.send(());
        }
    });
    match result {
        Err(Failure::Abort {
            cause: Cause::Backend(BackendFault::BodyClosed),
            status: Some(200),
            body_bytes: 10,
        }) => {}
        other => panic!("expected a cut after 10 bytes, got {other:?}"),
    }
    let got = h.client_got(10);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\n0123456789"), "{got}");
    app.join().expect("backend");
}

#[test]
fn a_response_that_starts_while_tls_bytes_are_queued_goes_behind_them() {
    let (addr, app) = backend(vec![Box::new(|sock: &mut TcpStream| {
        let seen = vec![read_request(sock)];
        sock.write_all(OK_HELLO).expect("answer");
        seen
    })]);
    let mut h = harness();
    h.client
        .send(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let req = h.request();
    // The client reads nothing yet: fill its socket until rustls keeps the rest.
    let filler = vec![b'f'; 64 * 1024];
    let mut queued = 0;
    // Bounded: loopback buffers hold a few MiB at most.
    for _ in 0..4096 {
        let (taken, flushed) = h.conn.send_nonblocking(&filler).expect("filling");
        queued += taken;
        if !flushed {
            break;
        }
    }
    assert!(
        h.conn.tls.wants_write(),
        "rustls holds nothing after {queued} bytes"
    );
    let mut ex = h.exchange(req, addr);
    let done = h.finish(&mut ex, &mut |_| {}).expect("exchange");
    assert_eq!(done.status, 200);
    let got = h.client_got(queued + OK_HELLO.len());
    assert!(
        got.as_bytes()[..queued].iter().all(|&b| b == b'f'),
        "the filler came mixed with other bytes"
    );
    let answer = &got[queued..];
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer:?}");
    app.join().expect("backend");
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_backend_connection() {
    let (addr, app) = backend(vec![Box::new(|sock: &mut TcpStream| {
        let mut seen = vec![read_request(sock)];
        sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
            .expect("answer");
        seen.push(read_request(sock));
        sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
            .expect("answer");
        seen
    })]);
    let mut h = harness();
    // One write: the POST's body and the GET after it arrive together.
    h.client.send(
        b"POST /1 HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 4\r\n\r\nbody\
          GET /2 HTTP/1.1\r\nHost: hello.localhost\r\n\r\n",
    );
    for (i, path) in ["/1", "/2"].into_iter().enumerate() {
        let req = h.request();
        assert_eq!(req.target, path, "request {i}");
        let mut ex = h.exchange(req, addr);
        let done = h.finish(&mut ex, &mut |_| {}).expect("exchange");
        assert_eq!((done.status, done.body_bytes), (200, 3));
    }
    assert!(h.conn.buf.is_empty(), "bytes left: {:?}", h.conn.buf);
    let got = h.client_got(2 * (OK_HELLO.len() - 2));
    let one = got.find("one").expect("first answer");
    let two = got.find("two").expect("second answer");
    assert!(one < two, "{got}");
    let seen = app.join().expect("backend");
    assert_eq!(seen.len(), 1, "one backend connection: {seen:?}");
    assert_eq!(lines(&seen[0]), ["POST /1 HTTP/1.1", "GET /2 HTTP/1.1"]);
    assert!(seen[0][0].ends_with("\r\n\r\nbody"), "{:?}", seen[0][0]);
}

/// A WebSocket upgrade request as a client sends it.
const WS_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: hello.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// An app's 101 to it, with the first bytes of the tunnel behind it.
const WS_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nearly";

#[test]
fn an_upgrade_request_goes_with_upgrade_and_its_101_switches_with_the_bytes_behind_it() {
    let (addr, app) = backend(vec![Box::new(|sock: &mut TcpStream| {
        let seen = vec![read_request(sock)];
        sock.write_all(WS_101).expect("101");
        seen
    })]);
    let mut h = harness();
    h.client.send(WS_REQUEST);
    let req = h.request();
    let mut ex = h.exchange(req, addr);
    let sw = h.switch(&mut ex);
    assert_eq!((sw.status, &sw.from_backend[..]), (101, &b"early"[..]));
    let head = String::from_utf8_lossy(&sw.head).into_owned();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(
        head.ends_with("Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
        "{head}"
    );
    let seen = app.join().expect("backend");
    let sent = seen[0][0].to_ascii_lowercase();
    assert!(sent.contains("\r\nupgrade: websocket\r\n"), "{sent}");
    assert!(sent.contains("\r\nconnection: upgrade\r\n"), "{sent}");
    assert!(
        sent.contains("\r\nsec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n"),
        "{sent}"
    );
}

#[test]
fn a_101_to_a_request_that_asked_for_none_is_a_502() {
    let (addr, app) = backend(vec![Box::new(|sock: &mut TcpStream| {
        let seen = vec![read_request(sock)];
        sock.write_all(WS_101).expect("101");
        seen
    })]);
    let mut h = harness();
    h.client
        .send(b"GET /plain HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let req = h.request();
    let mut ex = h.exchange(req, addr);
    match h.finish(&mut ex, &mut |_| {}) {
        Err(Failure::Answer {
            error:
                ProxyError::BackendInvalid {
                    source: http1::ResponseError::UnexpectedUpgrade,
                    ..
                },
            body_read: true,
        }) => {}
        other => panic!("expected a 502 for the stray 101, got {other:?}"),
    }
    let seen = app.join().expect("backend");
    assert!(
        !seen[0][0].to_ascii_lowercase().contains("upgrade"),
        "{:?}",
        seen[0][0]
    );
    assert!(
        h.st.pool.take(addr).is_none(),
        "a connection that sent a 101 was pooled"
    );
}
