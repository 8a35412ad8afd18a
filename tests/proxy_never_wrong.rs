//! What a proxy must never do with the exchange between a client and its app: send
//! a request the app may have acted on a second time (only idempotent, bodiless
//! requests are retried, and only when not one byte of the answer came), give one
//! client bytes an app sent on a pooled connection after its response (a body after
//! a `HEAD` answer, more than its `Content-Length`), or lose a response head behind
//! TLS bytes rustls already holds for the client (a key update's answer).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nexushub::proxy::backend::Pool;
use nexushub::proxy::census::{Census, Slot};
use nexushub::proxy::client::{ClientConn, Fill, MinRate};
use nexushub::proxy::exchange::{Exchange, InFlight, Limits, Progress, Scratch};
use nexushub::proxy::park::Waiting;
use nexushub::sys::{self, Interest};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};

use crate::support::backend::response;
use crate::support::tls_client::{client_config, tcp_connect, Head};
use crate::support::wire::Wire;
use crate::support::{fixture, lock, Backend, Conf, Nexus, TlsClient, HELLO};

/// How long a test waits for something the other side does at once.
const WITHIN: Duration = Duration::from_secs(10);

/// Bytes an app sends after its response: a whole response of their own, so
/// that a client given them would see a plausible answer that is not its own.
const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen";

/// One request as the scripted backend read it.
#[derive(Debug, Clone)]
struct Got {
    /// The accepted connection it came on (health checks count too).
    conn: usize,
    /// Requests read on that connection before this one.
    nth: usize,
    method: String,
    path: String,
}

/// What the script does after a request: keep the connection for the next one,
/// or close it.
type Act = dyn Fn(&Got, &mut TcpStream) -> bool + Send + Sync;

/// A backend reading bodiless requests on keep-alive connections and handing
/// each to `act`, which writes what it likes (or nothing) and says whether to
/// keep the connection; every request is recorded.
fn scripted(
    act: impl Fn(&Got, &mut TcpStream) -> bool + Send + Sync + 'static,
) -> (Backend, Arc<Mutex<Vec<Got>>>) {
    let record: Arc<Mutex<Vec<Got>>> = Arc::default();
    let rec = Arc::clone(&record);
    let act: Arc<Act> = Arc::new(act);
    let backend = Backend::raw(move |sock, conn| {
        let Ok(mut writer) = sock.try_clone() else {
            return;
        };
        let mut wire = Wire::new(sock);
        // Bounded: a test sends a handful of requests per connection.
        for nth in 0..64 {
            let Ok(raw) = wire.read_head(64 * 1024) else {
                return;
            };
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            if !matches!(req.parse(&raw), Ok(httparse::Status::Complete(_))) {
                return;
            }
            let got = Got {
                conn,
                nth,
                method: req.method.unwrap_or("").to_string(),
                path: req.path.unwrap_or("").to_string(),
            };
            lock(&rec).push(got.clone());
            if !act(&got, &mut writer) {
                let _ = writer.shutdown(Shutdown::Write);
                // Read until nexushub closes too, so the close is a FIN, not a reset.
                let mut sink = [0u8; 1024];
                while matches!(wire.get_mut().read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
        }
    });
    (backend, record)
}

/// The standard answer: `200` with the method and target as body.
fn echo(got: &Got, sock: &mut TcpStream) -> bool {
    let body = format!("{} {}", got.method, got.path);
    sock.write_all(&response(200, &[], body.as_bytes())).is_ok()
}

/// The requests recorded for `path`.
fn requests_for(record: &Mutex<Vec<Got>>, path: &str) -> Vec<Got> {
    lock(record)
        .iter()
        .filter(|g| g.path == path)
        .cloned()
        .collect()
}

/// One worker, so that the pooled connection the first request leaves is the
/// one the next request is offered.
fn one_worker(backend: &Backend) -> Nexus {
    Nexus::start(
        &Conf::new()
            .set("workers", "1")
            .app("hello", HELLO, backend.addr()),
    )
}

/// A first request leaves the backend connection in the pool (the second
/// request on it is the `nth == 1` one in the scripts).
fn warm_up(c: &mut TlsClient) {
    let r = c.get(HELLO, "/warm");
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "GET /warm"),
        "{}",
        r.summary()
    );
}

#[test]
fn post_on_a_pooled_connection_closed_unanswered_is_sent_once_and_gets_502() {
    // The app reads the POST on the reused connection, then closes it without
    // a word: it may have acted on it, so it must not see it again.
    let (backend, record) = scripted(|got, sock| got.nth == 0 && echo(got, sock));
    let nexus = one_worker(&backend);
    let mut c = nexus.client(HELLO);
    warm_up(&mut c);
    let r = c.request("POST", HELLO, "/once", b"");
    assert_eq!(r.status(), 502, "{}", r.summary());
    let posts = requests_for(&record, "/once");
    assert_eq!(posts.len(), 1, "the app saw the POST {} times", posts.len());
    assert_eq!(posts[0].nth, 1, "not sent on the pooled connection");
}

#[test]
fn get_on_a_pooled_connection_closed_unanswered_is_retried_and_answered() {
    let (backend, record) = scripted(|got, sock| got.nth == 0 && echo(got, sock));
    let nexus = one_worker(&backend);
    let mut c = nexus.client(HELLO);
    warm_up(&mut c);
    let r = c.get(HELLO, "/again");
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "GET /again"),
        "{}",
        r.summary()
    );
    let seen: Vec<usize> = requests_for(&record, "/again")
        .iter()
        .map(|g| g.nth)
        .collect();
    assert_eq!(seen, [1, 0], "once on the pooled connection, once fresh");
}

#[test]
fn get_whose_pooled_connection_closed_after_part_of_a_head_gets_502_unretried() {
    // Part of an answer came: the app handled the request, so it is not sent again.
    let (backend, record) = scripted(|got, sock| {
        if got.nth == 0 {
            return echo(got, sock);
        }
        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
        false
    });
    let nexus = one_worker(&backend);
    let mut c = nexus.client(HELLO);
    warm_up(&mut c);
    let r = c.get(HELLO, "/partial");
    assert_eq!(r.status(), 502, "{}", r.summary());
    assert_eq!(requests_for(&record, "/partial").len(), 1, "retried");
}

/// When the stray bytes go out: with the response, or once the client has it.
#[derive(Debug, Clone, Copy)]
enum Stray {
    SameWrite,
    Later,
}

/// Starts a backend whose answer to `/stray` (`answer`) is followed by
/// [`STRAY`], sends `method /stray` through nexushub and checks its own answer,
/// then has a second client `GET /next` and checks that it gets its own
/// answer, from another backend connection than the one that misbehaved.
fn stray_bytes_never_reach_the_next_client(method: &'static str, answer: Vec<u8>, when: Stray) {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let sent_tx = Mutex::new(sent_tx);
    let (backend, record) = scripted(move |got, sock| {
        if got.path != "/stray" {
            return echo(got, sock);
        }
        match when {
            Stray::SameWrite => {
                let mut bytes = answer.clone();
                bytes.extend_from_slice(STRAY);
                let ok = sock.write_all(&bytes).is_ok();
                let _ = lock(&sent_tx).send(());
                ok
            }
            Stray::Later => {
                if sock.write_all(&answer).is_err() {
                    return false;
                }
                // Once nexushub has pooled the connection (the client has its answer).
                if lock(&go_rx).recv_timeout(WITHIN).is_err() {
                    return false;
                }
                let ok = sock.write_all(STRAY).is_ok();
                let _ = lock(&sent_tx).send(());
                ok
            }
        }
    });
    let nexus = one_worker(&backend);
    let mut first = nexus.client(HELLO);
    first.send(format!("{method} /stray HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes());
    let r = first.response_to(method);
    assert_eq!(r.status(), 200, "{}", r.summary());
    let _ = go_tx.send(());
    // On loopback the bytes are in nexushub's socket once the write returned.
    sent_rx
        .recv_timeout(WITHIN)
        .unwrap_or_else(|e| panic!("the backend did not send its stray bytes: {e}"));
    let mut next = nexus.client(HELLO);
    let r = next.get(HELLO, "/next");
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "GET /next"),
        "the next client got another's bytes: {}",
        r.summary()
    );
    let stray_conn = requests_for(&record, "/stray")[0].conn;
    let next_conn = requests_for(&record, "/next")[0].conn;
    assert_ne!(
        stray_conn, next_conn,
        "the connection with stray bytes was reused"
    );
}

/// A `HEAD` answer declaring a body of [`STRAY`]'s length, which the app then sends.
fn head_answer() -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", STRAY.len()).into_bytes()
}

#[test]
fn body_sent_with_a_head_answer_never_reaches_the_next_client() {
    stray_bytes_never_reach_the_next_client("HEAD", head_answer(), Stray::SameWrite);
}

#[test]
fn body_sent_after_a_head_answer_never_reaches_the_next_client() {
    stray_bytes_never_reach_the_next_client("HEAD", head_answer(), Stray::Later);
}

#[test]
fn bytes_past_content_length_in_the_same_write_never_reach_the_next_client() {
    let answer = response(200, &[], b"ok");
    stray_bytes_never_reach_the_next_client("GET", answer, Stray::SameWrite);
}

#[test]
fn bytes_past_content_length_sent_later_never_reach_the_next_client() {
    let answer = response(200, &[], b"ok");
    stray_bytes_never_reach_the_next_client("GET", answer, Stray::Later);
}

#[test]
fn upload_with_a_client_key_update_midway_gets_its_whole_response() {
    // TLS 1.3: half the body, a KeyUpdate asking for ours, the other half. Our
    // key update goes out before the response head, which must follow whole.
    let backend = Backend::http(|req| {
        let body = format!("{} bytes", req.body.len());
        crate::support::Reply::keep(response(200, &[], body.as_bytes()))
    });
    let nexus = Nexus::hello(backend.addr());
    let name = ServerName::try_from(HELLO).unwrap_or_else(|e| panic!("{e}"));
    let conn = ClientConnection::new(client_config(&[&rustls::version::TLS13]), name)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tls = StreamOwned::new(conn, tcp_connect(nexus.port()));
    // Bounded: a handshake takes a few flights.
    for _ in 0..16 {
        if !tls.conn.is_handshaking() {
            break;
        }
        tls.conn
            .complete_io(&mut tls.sock)
            .unwrap_or_else(|e| panic!("handshake: {e}"));
    }
    let half = vec![b'u'; 64 * 1024];
    let send = |tls: &mut StreamOwned<ClientConnection, TcpStream>, bytes: &[u8]| {
        tls.write_all(bytes)
            .and_then(|()| tls.flush())
            .unwrap_or_else(|e| panic!("sending: {e}"));
    };
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: {HELLO}\r\nContent-Length: {}\r\n\r\n",
        half.len() * 2
    );
    send(&mut tls, head.as_bytes());
    send(&mut tls, &half);
    tls.conn
        .refresh_traffic_keys()
        .unwrap_or_else(|e| panic!("key update: {e}"));
    send(&mut tls, &half);
    let mut wire = Wire::new(tls);
    let raw = wire
        .read_head(64 * 1024)
        .unwrap_or_else(|e| panic!("reading the response head: {e}"));
    let head = Head::parse(&raw).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(head.status, 200, "{}", head.raw);
    let mut body = Vec::new();
    wire.read_body(head.framing("POST"), &mut |b| body.extend_from_slice(b))
        .unwrap_or_else(|e| panic!("reading the body: {e}"));
    assert_eq!(String::from_utf8_lossy(&body), "131072 bytes");
}

/// The client side of [`response_head_is_not_lost_behind_tls_bytes_rustls_holds`]:
/// handshakes, sends its request, then reads nothing until told how many filler
/// bytes come first; returns the response that follows them (status and body).
fn reading_client(
    port: u16,
    told: Receiver<usize>,
    ready: Sender<()>,
) -> Result<(u16, Vec<u8>), String> {
    let name = ServerName::try_from(HELLO).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(client_config(&[&rustls::version::TLS13]), name)
        .map_err(|e| e.to_string())?;
    let sock = tcp_connect(port);
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    for _ in 0..16 {
        if !tls.conn.is_handshaking() {
            break;
        }
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    tls.write_all(format!("GET /x HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes())
        .and_then(|()| tls.flush())
        .map_err(|e| format!("sending the request: {e}"))?;
    let _ = ready.send(());
    let filler = told
        .recv_timeout(WITHIN)
        .map_err(|e| format!("never told to read: {e}"))?;
    let mut left = filler;
    let mut chunk = vec![0u8; 64 * 1024];
    // Bounded: every round reads bytes or fails.
    while left > 0 {
        let n = tls
            .read(&mut chunk[..left.min(64 * 1024)])
            .map_err(|e| format!("reading the filler, {left} bytes left: {e}"))?;
        if n == 0 {
            return Err(format!("closed with {left} filler bytes left"));
        }
        if chunk[..n].iter().any(|&b| b != b'f') {
            return Err("the filler came out of order".to_string());
        }
        left -= n;
    }
    let mut wire = Wire::new(tls);
    let raw = wire
        .read_head(64 * 1024)
        .map_err(|e| format!("no response head after the filler: {e}"))?;
    let head = Head::parse(&raw).map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    wire.read_body(head.framing("GET"), &mut |b| body.extend_from_slice(b))
        .map_err(|e| format!("reading the body: {e}"))?;
    Ok((head.status, body))
}

#[test]
fn response_head_is_not_lost_behind_tls_bytes_rustls_holds() {
    // Set up in-process (nexushub's own connection and exchange, driven as a
    // worker drives them): a rustls client cannot bring the binary there, as
    // rustls 0.23 keeps its answer to a KeyUpdate aside until our next record
    // (which it then precedes) and nexushub flushes its other records before a
    // response starts. So the test fills the client's socket until rustls
    // holds what it had no room for, then runs an exchange whose response
    // starts right then.
    let setup = nexushub::tls::load(&fixture("localhost.pem"), &fixture("localhost.key"))
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let (told_tx, told_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let client = thread::spawn(move || reading_client(port, told_rx, ready_tx));
    let (sock, peer) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
    sock.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
    let tls = ServerConnection::new(setup.config).unwrap_or_else(|e| panic!("{e}"));
    let census = Arc::new(Census::default());
    let slot = Slot::acquire(&census, IpAddr::V4(Ipv4Addr::LOCALHOST), 8, 8)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let deadline = Instant::now() + WITHIN;
    let mut conn = ClientConn::new(sock, tls, peer, deadline, slot);
    let wait = |conn: &ClientConn, interest| {
        assert!(Instant::now() < deadline, "out of time");
        let _ = sys::poll_one(conn.sock.as_raw_fd(), interest, Duration::from_millis(50));
    };
    // Bounded by the deadline.
    loop {
        match conn.drive_handshake() {
            Ok(nexushub::proxy::client::Handshake::Done) => break,
            Ok(nexushub::proxy::client::Handshake::NeedRead) => wait(&conn, Interest::Read),
            Ok(nexushub::proxy::client::Handshake::NeedWrite) => wait(&conn, Interest::Write),
            Err(e) => panic!("handshake: {e}"),
        }
    }
    ready_rx
        .recv_timeout(WITHIN)
        .unwrap_or_else(|e| panic!("the client did not send its request: {e}"));
    let req = loop {
        match nexushub::http1::parse_request(&conn.buf, 64 * 1024) {
            Ok(Some(req)) => break req,
            Ok(None) => {}
            Err(e) => panic!("{e:?}"),
        }
        match conn.fill_nonblocking(64 * 1024) {
            Ok(Fill::Progress) => {}
            Ok(Fill::WouldBlock) => wait(&conn, Interest::Read),
            other => panic!("reading the request: {other:?}"),
        }
    };
    conn.buf.drain(..req.head_len);
    // The client reads nothing yet: fill its socket until rustls keeps the rest.
    let filler = vec![b'f'; 64 * 1024];
    let mut queued = 0;
    // Bounded: loopback buffers hold a few MiB at most.
    for _ in 0..4096 {
        let (taken, flushed) = conn
            .send_nonblocking(&filler)
            .unwrap_or_else(|e| panic!("filling: {e}"));
        queued += taken;
        if !flushed {
            break;
        }
    }
    assert!(
        conn.tls.wants_write(),
        "rustls holds nothing after {queued} bytes"
    );

    let backend = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}"));
    let backend_addr: SocketAddr = backend.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let app = thread::spawn(move || {
        let (mut sock, _) = backend.accept().unwrap_or_else(|e| panic!("{e}"));
        let _ = sock.set_read_timeout(Some(WITHIN));
        let mut wire = Wire::new(sock.try_clone().unwrap_or_else(|e| panic!("{e}")));
        let head = wire.read_head(64 * 1024);
        let _ = sock.write_all(&response(200, &[], b"hello"));
        // Held open until nexushub is done with it.
        let mut sink = [0u8; 1024];
        while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
        head.map(|h| String::from_utf8_lossy(&h).into_owned())
    });
    let limits = Limits {
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
    };
    let mut st = Scratch::new(Arc::new(Pool::new(WITHIN)));
    let counter = Arc::new(AtomicUsize::new(0));
    let mut ex = Exchange::new(
        req,
        "app".into(),
        backend_addr,
        Instant::now(),
        InFlight::enter(&counter),
        InFlight::enter(&counter),
    );
    let mut told = false;
    // Bounded by the deadline (`wait`).
    let done = loop {
        match ex.run(&mut conn, &limits, &mut st, false) {
            Progress::Done(done) => break done,
            Progress::Failed(f) => panic!("the exchange failed: {f:?}"),
            Progress::Blocked(Waiting::Backend(interest)) => {
                let be = ex.backend_mut().unwrap_or_else(|| panic!("no backend"));
                assert!(Instant::now() < deadline, "out of time");
                let _ = sys::poll_one(be.sock.as_raw_fd(), interest, Duration::from_millis(50));
            }
            Progress::Blocked(Waiting::Client(interest)) => {
                // The response has started: now the client may read.
                if !told {
                    told = true;
                    let _ = told_tx.send(queued);
                }
                wait(&conn, interest);
            }
        }
    };
    assert_eq!(done.status, 200);
    assert!(told, "the client's socket was never full");
    // Whatever the exchange left in rustls goes out as a worker would send it.
    while !conn.flush_nonblocking().unwrap_or_else(|e| panic!("{e}")) {
        wait(&conn, Interest::Write);
    }
    let got = client
        .join()
        .unwrap_or_else(|_| panic!("the client panicked"));
    // The backend connection went back to the pool: closing it ends the app.
    drop((ex, st, conn));
    let _ = app.join();
    assert_eq!(
        got.map(|(status, body)| (status, String::from_utf8_lossy(&body).into_owned())),
        Ok((200, "hello".to_string()))
    );
}
