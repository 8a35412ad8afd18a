//! Every status code nexushub answers by itself (docs/wire.md), each
//! from its real cause: malformed requests (400, then close), `TRACE` (405), an
//! expectation other than 100-continue (417), an oversized head (431, then close),
//! an unknown host (404), SNI naming another host (421), an app with no healthy
//! instance (503 with Retry-After), a backend that closes, resets or babbles (502),
//! and one that stays silent past `backend_timeout` (504). The 5xx bodies say what
//! happened in the app's terms; addresses, ports, OS errors and health-check details
//! stay in the log.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::backend::response;
use crate::support::{contains_ci, Backend, Conf, Nexus, Reply, Response, TlsClient, HELLO};

/// Host names under `*.test.localhost`, covered by the fixture certificate.
const A_HOST: &str = "a.test.localhost";
const B_HOST: &str = "b.test.localhost";
const NOBODY_HOST: &str = "nobody.test.localhost";

/// Checks a response nexushub made itself: the status, a short plain-text body, and
/// that the body says `says` (case-insensitively).
fn assert_local(r: &Response, status: u16, says: &str) {
    assert_eq!(r.status(), status, "{}", r.summary());
    let ctype = r.header("content-type").unwrap_or_default();
    assert!(
        ctype.starts_with("text/plain"),
        "a local answer should be text/plain: {}",
        r.summary()
    );
    assert!(
        !r.body.is_empty() && r.body.len() < 1024,
        "a local answer should have a short body: {}",
        r.summary()
    );
    assert!(
        contains_ci(&r.text(), says),
        "expected {says:?} in {}",
        r.summary()
    );
}

/// Sends `request` alone on a fresh connection to an app whose backend would answer
/// 200, and checks the 400: a reason in the body, `Connection: close`, the connection
/// closed, and (unless the request's head was valid) nothing reached the backend.
fn assert_rejected_400(request: &[u8], head_is_valid: bool) {
    assert_rejected(request, head_is_valid, 400, "");
}

/// [`assert_rejected_400`] for any status, whose body says `says`.
fn assert_rejected(request: &[u8], head_is_valid: bool, status: u16, says: &str) {
    let backend = Backend::ok("backend reached");
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(request);
    let r = c.response();
    assert_eq!(r.status(), status, "{}\n{}", r.summary(), nexus.dump());
    assert_local(&r, status, says);
    assert!(
        r.head.says_close(),
        "{status} should say Connection: close: {}",
        r.summary()
    );
    c.expect_closed();
    if !head_is_valid {
        assert!(
            backend.seen().is_empty(),
            "a malformed request reached the backend: {:?}",
            backend
                .seen()
                .iter()
                .map(|s| s.head_text())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn malformed_request_line_gets_400_and_close() {
    assert_rejected_400(b"GE\"T / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n", false);
}

#[test]
fn malformed_header_line_gets_400_and_close() {
    assert_rejected_400(
        b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nBad Header: x\r\n\r\n",
        false,
    );
}

#[test]
fn missing_host_gets_400_and_close() {
    assert_rejected_400(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", false);
}

#[test]
fn two_host_headers_get_400_and_close() {
    assert_rejected_400(
        b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nHost: hello.localhost\r\n\r\n",
        false,
    );
}

#[test]
fn invalid_host_value_gets_400_and_close() {
    assert_rejected_400(b"GET / HTTP/1.1\r\nHost: hello localhost\r\n\r\n", false);
}

#[test]
fn invalid_content_length_gets_400_and_close() {
    assert_rejected_400(
        b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5x\r\n\r\nhello",
        false,
    );
}

#[test]
fn conflicting_content_lengths_get_400_and_close() {
    assert_rejected_400(
        b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        false,
    );
}

#[test]
fn content_length_with_transfer_encoding_gets_400_and_close() {
    assert_rejected_400(
        b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
    );
}

#[test]
fn transfer_encoding_other_than_chunked_gets_400_and_close() {
    assert_rejected_400(
        b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        false,
    );
}

#[test]
fn trace_gets_405_and_never_reaches_the_app() {
    // TRACE echoes the request, cookies and credentials included (cross-site tracing).
    assert_rejected(
        b"TRACE / HTTP/1.1\r\nHost: hello.localhost\r\nCookie: session=secret\r\n\r\n",
        false,
        405,
        "TRACE",
    );
}

#[test]
fn unknown_expectation_gets_417_not_400() {
    for expect in ["200-ok", "100-continue, x-other", "Foo"] {
        let request = format!(
            "PUT / HTTP/1.1\r\nHost: hello.localhost\r\nExpect: {expect}\r\nContent-Length: 5\r\n\r\nhello"
        );
        assert_rejected(request.as_bytes(), false, 417, "100-continue");
    }
}

#[test]
fn expect_100_continue_in_any_case_is_honoured() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"PUT / HTTP/1.1\r\nHost: hello.localhost\r\nExpect: 100-CONTINUE\r\nContent-Length: 5\r\n\r\n");
    let interim = c.head();
    assert_eq!(interim.status, 100, "{}", interim.raw);
    c.send(b"hello");
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    assert_eq!(backend.only().body, b"hello");
}

#[test]
fn target_with_bytes_outside_rfc3986_gets_400_and_close() {
    for target in [
        &b"/page#fragment"[..],
        b"https://hello.localhost/p#f",
        b"/caf\xc3\xa9",
        b"/\xff",
        b"/a\"b",
        b"/a<b>",
        b"/a{b}",
        b"/a\\b",
    ] {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
        assert_rejected(&request, false, 400, "invalid request target");
    }
}

#[test]
fn absolute_form_port_other_than_hosts_gets_400_and_close() {
    for (target, host) in [
        ("https://hello.localhost:8443/", "hello.localhost"),
        ("https://hello.localhost/", "hello.localhost:8443"),
        ("http://hello.localhost/", "hello.localhost:443"),
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_rejected(request.as_bytes(), false, 400, "does not match");
    }
}

#[test]
fn bad_chunk_size_gets_400_and_close() {
    assert_rejected_400(
        b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        true,
    );
}

#[test]
fn chunk_longer_than_its_size_gets_400_and_close() {
    assert_rejected_400(
        b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello, world\r\n0\r\n\r\n",
        true,
    );
}

#[test]
fn oversized_request_head_gets_431_and_close() {
    let backend = Backend::ok("backend reached");
    let nexus = Nexus::start(&Conf::new().set("max_head_bytes", "4096").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    let big = "a".repeat(6000);
    c.send(format!("GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.response();
    assert_local(&r, 431, "too large");
    c.expect_closed();
    assert!(backend.seen().is_empty());
}

#[test]
fn request_head_just_under_the_limit_is_served() {
    let backend = Backend::ok("served");
    let nexus = Nexus::start(&Conf::new().set("max_head_bytes", "4096").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    let big = "a".repeat(3000);
    c.send(format!("GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "served"),
        "{}",
        r.summary()
    );
    assert_eq!(backend.only().header("x-big"), Some(big.as_str()));
}

#[test]
fn local_answer_to_a_large_body_still_coming_reaches_the_client_whole() {
    let backend = Backend::ok("backend reached");
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(NOBODY_HOST);
    // Too large to read away for a keep-alive: nexushub answers, closes, and
    // reads away what came (closing with it unread would send a reset that can
    // destroy the answer before the client reads it).
    c.send(
        format!(
            "POST / HTTP/1.1\r\nHost: {NOBODY_HOST}\r\nContent-Length: {}\r\n\r\n",
            8 * crate::support::MIB
        )
        .as_bytes(),
    );
    c.send_pattern(128 * 1024);
    let r = c.response();
    assert_local(&r, 404, "no app");
    assert_eq!(r.header("connection"), Some("close"), "{}", r.summary());
    c.expect_closed();
    assert!(backend.seen().is_empty());
}

#[test]
fn unconfigured_host_gets_404_and_keeps_the_connection() {
    let backend = Backend::ok("backend reached");
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(NOBODY_HOST);
    let r = c.get(NOBODY_HOST, "/");
    assert_local(&r, 404, "no app");
    // A 404 is an ordinary answer: the connection stays usable.
    let r = c.get(NOBODY_HOST, "/again");
    assert_local(&r, 404, "no app");
    assert!(backend.seen().is_empty());
}

#[test]
fn sni_naming_another_configured_host_gets_421() {
    let a = Backend::ok("a");
    let b = Backend::ok("b");
    let nexus = Nexus::start(
        &Conf::new()
            .app("a", A_HOST, a.addr())
            .app("b", B_HOST, b.addr()),
    );
    let mut c = nexus.client(A_HOST);
    let r = c.get(B_HOST, "/");
    assert_local(&r, 421, "misdirected");
    assert!(b.seen().is_empty() && a.seen().is_empty());
    // The same connection still serves its own host.
    let r = c.get(A_HOST, "/");
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "a"),
        "{}",
        r.summary()
    );
}

#[test]
fn request_without_sni_is_routed_by_host() {
    let backend = Backend::ok("routed by host");
    let nexus = Nexus::hello(backend.addr());
    let mut c = TlsClient::connect_without_sni(nexus.port());
    let r = c.get(HELLO, "/");
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "routed by host"),
        "{}",
        r.summary()
    );
}

#[test]
fn host_with_no_healthy_instance_gets_503_with_retry_after() {
    // Port 1: never handed out as an ephemeral port, so no parallel test can start
    // listening on it (a closed port 0 listener's port can be reused at once).
    let dead = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    assert!(
        TcpStream::connect_timeout(&dead, Duration::from_secs(1)).is_err(),
        "something listens on {dead}; this test needs it closed"
    );
    let nexus = Nexus::start(&Conf::new().down_app("hello", HELLO, dead));
    let mut c = nexus.client(HELLO);
    let r = c.get(HELLO, "/");
    assert_local(&r, 503, "not available");
    let retry = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {}", r.summary()));
    assert!(
        retry.trim().parse::<u64>().is_ok(),
        "Retry-After should be seconds: {retry:?}"
    );
    // The connection stays usable.
    assert_eq!(c.get(HELLO, "/again").status(), 503);
}

#[test]
fn backend_closing_without_an_answer_gets_502() {
    let backend = Backend::closing();
    let nexus = Nexus::hello(backend.addr());
    let r = nexus.client(HELLO).get(HELLO, "/");
    assert_local(&r, 502, "bad gateway");
    assert_eq!(
        backend.seen().len(),
        1,
        "the request should have reached the backend"
    );
}

#[test]
fn backend_resetting_the_connection_gets_502() {
    let backend = Backend::resetting();
    let nexus = Nexus::hello(backend.addr());
    let r = nexus.client(HELLO).get(HELLO, "/");
    assert_local(&r, 502, "bad gateway");
}

/// Asserts a 5xx body names none of `internals`, and the log has each of them.
fn assert_internals_logged_not_sent(nexus: &Nexus, r: &Response, internals: &[&str]) {
    for detail in internals {
        assert!(
            !contains_ci(&r.text(), detail),
            "{detail:?} sent to the client: {}",
            r.summary()
        );
        nexus.wait_log(detail, Duration::from_secs(5));
    }
}

#[test]
fn gateway_errors_keep_os_errors_and_addresses_in_the_log() {
    let backend = Backend::resetting();
    let port = backend.addr().port().to_string();
    let nexus = Nexus::hello(backend.addr());
    let r = nexus.client(HELLO).get(HELLO, "/");
    assert_local(&r, 502, "app hello");
    // The reset's OS error, in the log line only.
    assert_internals_logged_not_sent(&nexus, &r, &["os error", "reset"]);
    assert!(!r.text().contains(&port), "{}", r.summary());

    let backend = Backend::garbage();
    let nexus = Nexus::hello(backend.addr());
    let r = nexus.client(HELLO).get(HELLO, "/");
    assert_local(&r, 502, "invalid response");
    let line = nexus.wait_log("sent an invalid response", Duration::from_secs(5));
    let why = line.rsplit(": ").next().unwrap_or_default().trim();
    assert!(!why.is_empty(), "no reason in the log: {line}");
    assert!(
        !contains_ci(&r.text(), why),
        "{why:?} sent: {}",
        r.summary()
    );
}

#[test]
fn unavailable_app_503_says_its_state_not_its_health_check() {
    // Answers, but never healthily: the health check's path and what it got stay
    // in the log; the state's name reaches the client.
    let backend = Backend::http(|_| Reply::keep(response(500, &[], b"sick")));
    let port = backend.addr().port().to_string();
    let nexus = Nexus::start(
        &Conf::new()
            .down_app("hello", HELLO, backend.addr())
            .app_key("health", "/internal-health-probe"),
    );
    nexus.wait_log("unhealthy at", Duration::from_secs(10));
    let mut c = nexus.client(HELLO);
    // The route is published just after the state's log line: a few tries at most.
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = c.get(HELLO, "/");
        if r.text().contains("unhealthy") || Instant::now() > deadline {
            break r;
        }
    };
    assert_local(&r, 503, "app hello is not available: unhealthy");
    assert!(r.header("retry-after").is_some(), "{}", r.summary());
    assert_internals_logged_not_sent(&nexus, &r, &["internal-health-probe", &port]);
}

#[test]
fn backend_answering_garbage_gets_502() {
    let backend = Backend::garbage();
    let nexus = Nexus::hello(backend.addr());
    let started = Instant::now();
    let r = nexus.client(HELLO).get(HELLO, "/");
    assert_local(&r, 502, "bad gateway");
    // The garbage itself is the cause: the backend keeps its connection open, and
    // the default backend_timeout is a minute.
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn backend_silent_past_backend_timeout_gets_504() {
    let backend = Backend::hanging();
    let nexus = Nexus::start(&Conf::new().set("backend_timeout", "1").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    let started = Instant::now();
    let r = c.get(HELLO, "/");
    let took = started.elapsed();
    assert_local(&r, 504, "gateway timeout");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "504 after {took:?} with backend_timeout = 1"
    );
    assert_eq!(backend.seen().len(), 1);
}

#[test]
fn backend_error_status_is_passed_through_not_replaced() {
    let backend = Backend::http(|_| Reply::keep(response(500, &[("X-From", "app")], b"app broke")));
    let nexus = Nexus::hello(backend.addr());
    let r = nexus.client(HELLO).get(HELLO, "/");
    assert_eq!(r.status(), 500, "{}", r.summary());
    assert_eq!(
        (r.header("x-from"), r.text().as_str()),
        (Some("app"), "app broke")
    );
}
