//! `nexushub whoami` on its own, over plain HTTP: it is the backend of the upload and
//! chunked-download tests and of the benchmark, so what it reports is checked here
//! first (request line, fields, peer, body length and hash; `/bytes/N`,
//! `/chunked/N`, `/status/CODE`, `/sleep/MS`; keep-alive).

use std::time::{Duration, Instant};

use crate::support::tls_client::PlainClient;
use crate::support::{fnv1a64, Framing, PatternCheck, Whoami, WhoamiReport};

#[test]
fn whoami_reports_request_line_headers_peer_and_body_hash() {
    let whoami = Whoami::start();
    let mut c = PlainClient::connect_plain(whoami.addr().port());
    c.send(b"POST /echo?x=1 HTTP/1.1\r\nHost: whoami.test\r\nX-Test: yes\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.response();
    assert_eq!(r.status(), 200, "{}\n{}", r.summary(), whoami.dump());
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    let report = WhoamiReport::parse(&r.text());
    assert_eq!(report.request_line, "POST /echo?x=1 HTTP/1.1");
    assert_eq!(report.header("host"), Some("whoami.test"));
    assert_eq!(report.header("x-test"), Some("yes"));
    assert!(report.peer.starts_with("127.0.0.1:"), "{}", report.peer);
    assert_eq!((report.body_len, report.body_fnv), (5, fnv1a64(b"hello")));
}

#[test]
fn whoami_serves_bytes_chunked_and_status_on_one_connection() {
    let whoami = Whoami::start();
    let mut c = PlainClient::connect_plain(whoami.addr().port());

    let r = c.get("whoami.test", "/bytes/1000");
    assert_eq!(
        (r.status(), r.framing),
        (200, Framing::Length(1000)),
        "{}",
        r.summary()
    );
    let mut check = PatternCheck::default();
    check.feed(&r.body);
    assert_eq!((check.len, check.first_mismatch), (1000, None));

    let r = c.get("whoami.test", "/chunked/70000");
    assert_eq!(
        (r.status(), r.framing),
        (200, Framing::Chunked),
        "{}",
        r.head.raw
    );
    let mut check = PatternCheck::default();
    check.feed(&r.body);
    assert_eq!((check.len, check.first_mismatch), (70_000, None));

    let r = c.get("whoami.test", "/status/418");
    assert_eq!(r.status(), 418, "{}", r.summary());

    let r = c.get("whoami.test", "/bytes/0");
    assert_eq!((r.status(), r.body.len()), (200, 0));
}

#[test]
fn whoami_sleep_delays_the_answer() {
    let whoami = Whoami::start();
    let mut c = PlainClient::connect_plain(whoami.addr().port());
    let started = Instant::now();
    let r = c.get("whoami.test", "/sleep/300");
    assert_eq!(r.status(), 200, "{}", r.summary());
    assert!(started.elapsed() >= Duration::from_millis(300));
}
