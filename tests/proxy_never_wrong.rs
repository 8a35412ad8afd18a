//! What a proxy must never do with the exchange between a client and its app: send
//! a request the app may have acted on a second time (only idempotent, bodiless
//! requests are retried, and only when not one byte of the answer came), give one
//! client bytes an app sent on a pooled connection after its response (a body after
//! a `HEAD` answer, more than its `Content-Length`), or lose a response head behind
//! TLS bytes rustls already holds for the client (a key update's answer: that one
//! is held in `src/proxy/exchange/tests.rs`, where an exchange can be started
//! while rustls holds bytes, which a client of the binary cannot arrange).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::support::backend::response;
use crate::support::tls_client::{client_config, tcp_connect, Head};
use crate::support::wire::Wire;
use crate::support::{lock, Backend, Conf, Nexus, TlsClient, HELLO};

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
