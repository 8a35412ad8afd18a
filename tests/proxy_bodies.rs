//! Bodies both ways: Content-Length and chunked, requests and responses, streamed and
//! checked byte for byte (100 MiB each way by FNV-1a 64, never held whole); bodies
//! that must not exist (HEAD, 204, 304); `Expect: 100-continue`; a backend that dies
//! mid-body, which must never look like a complete response to the client; and a
//! request body next to a local answer, which must never be parsed as a request.

use std::time::{Duration, Instant};

use crate::support::backend::{chunked_response, response};
use crate::support::{
    pattern, pattern_fnv, Backend, Conf, Framing, Nexus, PatternCheck, Reply, Seen, TlsClient,
    Whoami, WhoamiReport, HELLO, MIB,
};

/// Asserts the backend never got both framings, and that a chunked one was declared.
fn assert_one_framing(seen: &Seen) {
    let head = seen.head_text();
    assert!(
        !(seen.has("content-length") && seen.has("transfer-encoding")),
        "the backend got both Content-Length and Transfer-Encoding:\n{head}"
    );
    if seen.has("transfer-encoding") {
        assert!(
            seen.chunked,
            "a Transfer-Encoding other than chunked:\n{head}"
        );
    }
}

#[test]
fn content_length_request_body_reaches_the_backend_intact() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let body = pattern(300_000);
    let r = nexus.client(HELLO).request("POST", HELLO, "/upload", &body);
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "POST /upload"),
        "{}",
        r.summary()
    );
    let seen = backend.only();
    assert_one_framing(&seen);
    assert_eq!(seen.body.len(), body.len());
    assert!(seen.body == body, "the body changed on the way");
}

#[test]
fn chunked_request_body_reaches_the_backend_decoded() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    let big = pattern(70_000);
    let mut req =
        b"PUT /chunks HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    req.extend_from_slice(b"5;name=value\r\nhello\r\n");
    req.extend_from_slice(format!("{:X}\r\n", big.len()).as_bytes());
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\n1\r\n!\r\n0\r\nX-Trailer: ignored\r\n\r\n");
    c.send(&req);
    let r = c.response();
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "PUT /chunks"),
        "{}",
        r.summary()
    );
    let seen = backend.only();
    assert_one_framing(&seen);
    let mut want = b"hello".to_vec();
    want.extend_from_slice(&big);
    want.push(b'!');
    assert_eq!(seen.body.len(), want.len());
    assert!(seen.body == want, "the chunked body changed on the way");
    // The connection is still in step after the trailer.
    assert_eq!(c.get(HELLO, "/next").text(), "GET /next");
}

#[test]
fn empty_chunked_request_body_reaches_the_backend_empty() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"POST /empty HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(c.response().text(), "POST /empty");
    let seen = backend.only();
    assert_one_framing(&seen);
    assert!(seen.body.is_empty());
}

#[test]
fn content_length_response_body_reaches_the_client_intact() {
    let len = 3 * MIB + 5;
    let backend = Backend::pattern(len);
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET /big HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_eq!(head.framing("GET"), Framing::Length(len), "{}", head.raw);
    let mut check = PatternCheck::default();
    c.body(&head, "GET", &mut |b| check.feed(b))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((check.len, check.first_mismatch), (len, None));
    // Keep-alive after a big body.
    c.send(b"GET /again HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let head = c.final_head();
    let n = c
        .body(&head, "GET", &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, len);
}

#[test]
fn chunked_response_body_reaches_the_client_intact() {
    let big = pattern(100_000);
    let body = big.clone();
    let backend = Backend::http(move |_| {
        Reply::keep(chunked_response(
            200,
            &[("X-Kind", "chunked")],
            &[b"first,", &body, b",last"],
        ))
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    let r = c.get(HELLO, "/");
    assert_eq!(r.status(), 200, "{}", r.summary());
    assert_ne!(
        r.framing,
        Framing::UntilClose,
        "a keep-alive response cannot be close-delimited"
    );
    let mut want = b"first,".to_vec();
    want.extend_from_slice(&big);
    want.extend_from_slice(b",last");
    assert!(r.body == want, "the chunked body changed on the way");
    assert_eq!(r.header("x-kind"), Some("chunked"));
    assert_eq!(c.get(HELLO, "/again").status(), 200);
}

#[test]
fn close_delimited_backend_response_reaches_the_client_whole() {
    let backend = Backend::http(|_| {
        Reply::close(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nno length, ends at close".to_vec(),
        )
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let mut body = Vec::new();
    let end = c.body(&head, "GET", &mut |b| body.extend_from_slice(b));
    assert!(end.is_ok(), "{end:?}");
    assert_eq!(body, b"no length, ends at close");
}

#[test]
fn head_response_has_no_body_and_keeps_the_connection() {
    let backend = Backend::http(|req| {
        if req.method == "HEAD" {
            Reply::keep(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n"
                    .to_vec(),
            )
        } else {
            Reply::keep(response(200, &[], b"after head"))
        }
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"HEAD / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let r = c.response_to("HEAD");
    assert_eq!(r.status(), 200, "{}", r.summary());
    assert_eq!(r.header("content-length"), Some("1234"));
    assert!(r.body.is_empty());
    let r = c.get(HELLO, "/");
    assert_eq!(
        r.text(),
        "after head",
        "a HEAD response left bytes behind: {}",
        r.summary()
    );
}

#[test]
fn no_content_and_not_modified_responses_have_no_body() {
    let backend = Backend::http(|req| {
        Reply::keep(match req.path.as_str() {
            "/204" => b"HTTP/1.1 204 No Content\r\nX-S: 204\r\n\r\n".to_vec(),
            "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n".to_vec(),
            _ => response(200, &[], b"third"),
        })
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    let r = c.get(HELLO, "/204");
    assert_eq!((r.status(), r.body.len()), (204, 0), "{}", r.summary());
    let r = c.get(HELLO, "/304");
    assert_eq!((r.status(), r.body.len()), (304, 0), "{}", r.summary());
    assert_eq!(r.header("etag"), Some("\"x\""));
    assert_eq!(c.get(HELLO, "/3").text(), "third");
}

#[test]
fn expect_100_continue_is_answered_by_nexushub() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.set_read_timeout(Duration::from_secs(5));
    c.send(b"POST /expect HTTP/1.1\r\nHost: hello.localhost\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n");
    // The body is held back until the interim answer comes.
    let interim = c.head();
    assert_eq!(interim.status, 100, "{}", interim.raw);
    assert!(interim.raw.starts_with("HTTP/1.1 100"), "{}", interim.raw);
    c.send(b"hello world");
    let r = c.response();
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "POST /expect"),
        "{}",
        r.summary()
    );
    let seen = backend.only();
    assert!(
        !seen.has("expect"),
        "Expect reached the backend:\n{}",
        seen.head_text()
    );
    assert_eq!(seen.body, b"hello world");
    assert_eq!(c.get(HELLO, "/after").text(), "GET /after");
}

#[test]
fn local_answer_never_parses_the_request_body_as_a_request() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    // No SNI, so that only Host routes: the outer request goes to an unknown host
    // (404); its body is a request for the configured one.
    let mut c = TlsClient::connect_without_sni(nexus.port());
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: nobody.test.localhost\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    req.extend_from_slice(smuggled);
    c.send(&req);
    let r = c.response();
    assert_eq!(r.status(), 404, "{}", r.summary());
    // Either the connection is closed now, or it answers the next request as itself.
    if c.try_send(b"GET /real HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        .is_ok()
    {
        c.set_read_timeout(Duration::from_secs(5));
        if let Ok(head) = c.try_head() {
            let mut body = Vec::new();
            let _ = c.body(&head, "GET", &mut |b| body.extend_from_slice(b));
            assert_eq!(String::from_utf8_lossy(&body), "GET /real", "{}", head.raw);
        }
    }
    let paths: Vec<String> = backend.seen().into_iter().map(|s| s.path).collect();
    assert!(
        !paths.iter().any(|p| p == "/smuggled"),
        "the body was parsed as a request: {paths:?}"
    );
}

#[test]
fn upload_of_100_mib_reaches_the_backend_intact() {
    let len = 100 * MIB;
    let whoami = Whoami::start();
    let nexus = Nexus::hello(whoami.addr());
    let mut c = nexus.client(HELLO);
    c.send(
        format!("POST /upload HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: {len}\r\n\r\n")
            .as_bytes(),
    );
    c.send_pattern(len);
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let report = WhoamiReport::parse(&r.text());
    assert_eq!(report.body_len, len);
    assert_eq!(
        report.body_fnv,
        pattern_fnv(len),
        "the upload changed on the way"
    );
}

#[test]
fn download_of_100_mib_reaches_the_client_intact() {
    let len = 100 * MIB;
    let backend = Backend::pattern(len);
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET /download HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let mut check = PatternCheck::default();
    let started = Instant::now();
    c.body(&head, "GET", &mut |b| check.feed(b))
        .unwrap_or_else(|e| panic!("after {:?}: {e}", started.elapsed()));
    assert_eq!(check.len, len);
    assert_eq!(
        check.hash.value(),
        pattern_fnv(len),
        "the download changed on the way"
    );
    assert_eq!(check.first_mismatch, None);
}

#[test]
fn chunked_upload_of_several_mib_reaches_the_backend_intact() {
    let len = 4 * MIB + 3;
    let whoami = Whoami::start();
    let nexus = Nexus::hello(whoami.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"POST /chunked-upload HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n");
    // Uneven chunk sizes, continuing the pattern across chunk boundaries.
    let body = pattern(len as usize);
    let mut at = 0;
    let mut size = 1;
    while at < body.len() {
        let n = size.min(body.len() - at);
        let mut chunk = format!("{n:x}\r\n").into_bytes();
        chunk.extend_from_slice(&body[at..at + n]);
        chunk.extend_from_slice(b"\r\n");
        c.send(&chunk);
        at += n;
        size = size * 3 + 7;
    }
    c.send(b"0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let report = WhoamiReport::parse(&r.text());
    assert_eq!((report.body_len, report.body_fnv), (len, pattern_fnv(len)));
}

#[test]
fn chunked_download_of_several_mib_reaches_the_client_intact() {
    let len = 4 * MIB + 3;
    let whoami = Whoami::start();
    let nexus = Nexus::hello(whoami.addr());
    let mut c = nexus.client(HELLO);
    c.send(format!("GET /chunked/{len} HTTP/1.1\r\nHost: hello.localhost\r\n\r\n").as_bytes());
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_ne!(head.framing("GET"), Framing::UntilClose, "{}", head.raw);
    let mut check = PatternCheck::default();
    c.body(&head, "GET", &mut |b| check.feed(b))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((check.len, check.first_mismatch), (len, None));
    assert_eq!(check.hash.value(), pattern_fnv(len));
}

#[test]
fn truncated_content_length_response_closes_the_client_connection_short() {
    let declared = 1_000_000;
    let sent = 300_000;
    let backend = Backend::truncated_length(declared, sent);
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_eq!(
        head.framing("GET"),
        Framing::Length(declared),
        "{}",
        head.raw
    );
    let mut check = PatternCheck::default();
    match c.body(&head, "GET", &mut |b| check.feed(b)) {
        Ok(n) => panic!("a truncated body arrived as complete ({n} bytes)"),
        Err(e) => {
            assert!(
                e.cause.is_close(),
                "expected a close short of the length, got {e}"
            );
            assert!(e.got <= sent, "{e}");
        }
    }
    assert_eq!(check.first_mismatch, None);
}

#[test]
fn backend_stalled_mid_body_past_backend_timeout_cuts_the_response_and_logs_it() {
    // The exchange is parked on the backend socket while the app stalls; the
    // sweep's expiry must reach the client as a cut, not a hang or a whole body.
    let declared = 1_000_000;
    let sent = 300_000;
    let backend = Backend::http(move |_| {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n");
        Reply::hang(head).with_pattern(sent)
    });
    let nexus = Nexus::start(&Conf::new().set("backend_timeout", "1").app(
        "hello",
        HELLO,
        backend.addr(),
    ));
    let mut c = nexus.client(HELLO);
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    let mut check = PatternCheck::default();
    match c.body(&head, "GET", &mut |b| check.feed(b)) {
        Ok(n) => panic!("a stalled body arrived as complete ({n} bytes)"),
        Err(e) => {
            assert!(e.cause.is_close(), "expected a cut, got {e}");
            assert_eq!(e.got, sent, "{e}");
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "cut after {took:?} with backend_timeout = 1"
    );
    assert_eq!(check.first_mismatch, None);
    nexus.wait_log(
        "timed out in the middle of the response body",
        Duration::from_secs(5),
    );
}

#[test]
fn truncated_chunked_response_closes_without_the_last_chunk() {
    let backend = Backend::truncated_chunked(4, 10_000);
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let head = c.final_head();
    assert_eq!(head.status, 200, "{}", head.raw);
    // Close-delimiting it would make the truncation look like a complete body.
    assert_eq!(head.framing("GET"), Framing::Chunked, "{}", head.raw);
    match c.body(&head, "GET", &mut |_| {}) {
        Ok(n) => panic!("a truncated chunked body arrived with its last chunk ({n} bytes)"),
        Err(e) => {
            assert!(
                e.cause.is_close(),
                "expected a close before the last chunk, got {e}"
            );
            assert!(e.got <= 40_000, "{e}");
        }
    }
}
