//! What crosses the proxy and what does not: the backend gets HTTP/1.1 with `Host`
//! unchanged (an absolute-form target's authority in its place), without hop-by-hop
//! fields (and without the fields `Connection` names), without the client's
//! `X-Forwarded-*`/`Forwarded`/`X-Real-IP`, `Proxy-Authorization` or any field whose
//! name has `_`, and with nexushub's own `X-Forwarded-For/Proto/Host` and
//! `X-Real-IP`; values pass byte for byte, obs-text included; the response comes
//! back without its hop-by-hop fields; everything end-to-end passes in order.

use std::time::Duration;

use crate::support::backend::response;
use crate::support::{
    find, Backend, Conf, Nexus, Reply, Seen, TlsClient, Whoami, WhoamiReport, HELLO,
};

/// Request fields that must never reach a backend as the client sent them.
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Asserts the backend's head carries nothing the client meant hop-by-hop, allowing
/// nexushub its own `Connection` field as long as it names none of the client's tokens.
fn assert_no_client_hop_by_hop(seen: &Seen, named_by_connection: &[&str]) {
    for name in HOP_BY_HOP.iter().chain(named_by_connection) {
        assert!(
            !seen.has(name),
            "{name} reached the backend:\n{}",
            seen.head_text()
        );
    }
    for value in seen.headers_named("connection") {
        for token in named_by_connection {
            assert!(
                !value.to_ascii_lowercase().contains(token),
                "Connection at the backend still names {token}:\n{}",
                seen.head_text()
            );
        }
    }
}

#[test]
fn backend_gets_http11_with_host_unchanged() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    // Routing ignores case and port; forwarding keeps the value as sent.
    let r = c.get("Hello.LOCALHOST:443", "/some/path?q=1&r=%20");
    assert_eq!(r.status(), 200, "{}", r.summary());
    let seen = backend.only();
    assert_eq!(seen.minor_version, 1);
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/some/path?q=1&r=%20")
    );
    assert_eq!(seen.headers_named("host"), ["Hello.LOCALHOST:443"]);
}

#[test]
fn forwarding_headers_are_added() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::hello(backend.addr());
    let r = nexus.client(HELLO).get(HELLO, "/");
    assert_eq!(r.status(), 200, "{}", r.summary());
    let seen = backend.only();
    assert_eq!(
        seen.headers_named("x-forwarded-for"),
        ["127.0.0.1"],
        "{}",
        seen.head_text()
    );
    assert_eq!(seen.headers_named("x-forwarded-proto"), ["https"]);
    assert_eq!(seen.headers_named("x-forwarded-host"), [HELLO]);
}

#[test]
fn client_forwarding_headers_are_replaced_by_nexushubs_own() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(
        b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\
          X-Forwarded-For: 203.0.113.9\r\n\
          X-Forwarded-For: 198.51.100.1, 10.0.0.1\r\n\
          X-Forwarded-Proto: http\r\n\
          X-Forwarded-Host: evil.example\r\n\
          X-Forwarded-Port: 80\r\n\
          X-Forwarded-Prefix: /evil\r\n\
          Forwarded: for=203.0.113.9;proto=http\r\n\r\n",
    );
    assert_eq!(c.response().status(), 200);
    let seen = backend.only();
    let head = seen.head_text();
    assert_eq!(
        seen.headers_named("x-forwarded-for"),
        ["127.0.0.1"],
        "{head}"
    );
    assert_eq!(seen.headers_named("x-forwarded-proto"), ["https"], "{head}");
    assert_eq!(seen.headers_named("x-forwarded-host"), [HELLO], "{head}");
    for dropped in ["x-forwarded-port", "x-forwarded-prefix", "forwarded"] {
        assert!(!seen.has(dropped), "{dropped} reached the backend:\n{head}");
    }
    assert!(
        !head.contains("203.0.113.9") && !head.contains("evil"),
        "{head}"
    );
}

#[test]
fn hop_by_hop_request_headers_are_removed() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(
        b"GET /hop HTTP/1.1\r\nHost: hello.localhost\r\n\
          Connection: keep-alive, X-Hop-Custom\r\n\
          X-Hop-Custom: secret\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\n\
          TE: trailers\r\n\
          Trailer: X-Checksum\r\n\
          Upgrade: example/1\r\n\
          X-End-To-End: kept\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let seen = backend.only();
    assert_no_client_hop_by_hop(&seen, &["x-hop-custom"]);
    assert!(!seen.head_text().contains("secret"), "{}", seen.head_text());
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    // The client connection is still keep-alive.
    assert_eq!(c.get(HELLO, "/after").status(), 200);
}

#[test]
fn end_to_end_request_headers_pass_through_in_order() {
    let backend = Backend::ok("ok");
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(
        b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\
          Accept: text/plain\r\n\
          X-Multi: one\r\n\
          Authorization: Bearer token\r\n\
          X-Multi: two\r\n\
          Cookie: a=1; b=2\r\n\
          X-Empty:\r\n\
          User-Agent: nexushub-tests/1\r\n\r\n",
    );
    assert_eq!(c.response().status(), 200);
    let seen = backend.only();
    assert_eq!(
        seen.headers_named("x-multi"),
        ["one", "two"],
        "{}",
        seen.head_text()
    );
    assert_eq!(seen.header("authorization"), Some("Bearer token"));
    assert_eq!(seen.header("cookie"), Some("a=1; b=2"));
    assert_eq!(seen.header("accept"), Some("text/plain"));
    assert_eq!(seen.header("user-agent"), Some("nexushub-tests/1"));
    assert_eq!(seen.header("x-empty"), Some(""));
}

#[test]
fn hop_by_hop_response_headers_are_removed() {
    let backend = Backend::http(|_| {
        Reply::keep(
            b"HTTP/1.1 200 OK\r\n\
              Connection: X-Resp-Hop\r\n\
              X-Resp-Hop: secret\r\n\
              Keep-Alive: timeout=99\r\n\
              Proxy-Connection: keep-alive\r\n\
              Upgrade: example/1\r\n\
              Trailer: X-Sum\r\n\
              Set-Cookie: a=1\r\n\
              X-End: kept\r\n\
              Set-Cookie: b=2\r\n\
              Content-Length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    let r = c.get(HELLO, "/");
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "ok"),
        "{}",
        r.summary()
    );
    for name in ["x-resp-hop", "proxy-connection", "upgrade", "trailer"] {
        assert!(
            !r.head.has(name),
            "{name} reached the client:\n{}",
            r.head.raw
        );
    }
    assert!(!r.head.raw.contains("timeout=99"), "{}", r.head.raw);
    assert!(!r.head.raw.contains("secret"), "{}", r.head.raw);
    assert_eq!(r.header("x-end"), Some("kept"));
    assert_eq!(r.head.headers_named("set-cookie"), ["a=1", "b=2"]);
    assert!(!r.head.says_close());
    // The connection is still usable.
    assert_eq!(c.get(HELLO, "/again").status(), 200);
}

#[test]
fn backend_connection_close_does_not_close_the_client_connection() {
    let backend = Backend::http(|_| {
        Reply::close(response(
            200,
            &[("Connection", "close")],
            b"closing my side",
        ))
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    for _ in 0..3 {
        let r = c.get(HELLO, "/");
        assert_eq!(
            (r.status(), r.text().as_str()),
            (200, "closing my side"),
            "{}",
            r.summary()
        );
        assert!(
            !r.head.says_close(),
            "the backend's close leaked: {}",
            r.head.raw
        );
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[0].conn != seen[1].conn && seen[1].conn != seen[2].conn);
}

#[test]
fn whoami_behind_nexushub_reports_the_forwarded_request() {
    let whoami = Whoami::start();
    let nexus = Nexus::hello(whoami.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET /who?am=i HTTP/1.1\r\nHost: hello.localhost\r\nX-Test: 42\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status(), 200, "{}\n{}", r.summary(), whoami.dump());
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    let report = WhoamiReport::parse(&r.text());
    assert_eq!(report.request_line, "GET /who?am=i HTTP/1.1");
    assert_eq!(report.header("host"), Some(HELLO));
    assert_eq!(report.header("x-test"), Some("42"));
    assert_eq!(report.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(report.header("x-forwarded-proto"), Some("https"));
    assert_eq!(report.header("x-forwarded-host"), Some(HELLO));
    assert!(report.peer.starts_with("127.0.0.1:"), "{}", report.peer);
    assert_eq!(report.body_len, 0);
}

#[test]
fn absolute_form_target_is_forwarded_in_origin_form() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET https://hello.localhost/abs?x=1 HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let seen = backend.only();
    assert_eq!(seen.path, "/abs?x=1", "{}", seen.head_text());
    assert_eq!(seen.header("host"), Some(HELLO));
}

#[test]
fn absolute_form_authority_disagreeing_with_host_is_not_routed_by_host() {
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    // No SNI, so only the request decides. RFC 9112 3.2.2 says the target's authority
    // wins over Host; refusing the disagreement (400) is also safe. Routing by Host is not.
    let mut c = TlsClient::connect_without_sni(nexus.port());
    c.send(b"GET https://nobody.test.localhost/abs HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let r = c.response();
    assert!(matches!(r.status(), 400 | 404), "{}", r.summary());
    assert!(
        backend.seen().is_empty(),
        "routed by Host: {}",
        backend.only().head_text()
    );
}

#[test]
fn stale_pooled_backend_connection_is_retried_on_a_fresh_one() {
    // The backend answers, then silently closes the connection nexushub will pool.
    let backend = Backend::http(|req| Reply::close(response(200, &[], req.path.as_bytes())));
    let nexus = Nexus::start(
        &Conf::new()
            .set("workers", "1")
            .app("hello", HELLO, backend.addr()),
    );
    let mut c = nexus.client(HELLO);
    for path in ["/first", "/second", "/third"] {
        let r = c.get(HELLO, path);
        assert_eq!(
            (r.status(), r.text().as_str()),
            (200, path),
            "{}",
            r.summary()
        );
    }
}

#[test]
fn header_names_with_underscores_never_reach_the_app() {
    let whoami = Whoami::start();
    let nexus = Nexus::hello(whoami.addr());
    let mut c = nexus.client(HELLO);
    // CGI, WSGI and Rack read `X_Forwarded_For` as HTTP_X_FORWARDED_FOR: had it
    // passed, it would stand beside (or before) the edge's own field.
    c.send(
        b"GET /u HTTP/1.1\r\nHost: hello.localhost\r\n\
          X_Forwarded_For: 203.0.113.9\r\n\
          X_Real_IP: 203.0.113.9\r\n\
          X_Forwarded_Proto: http\r\n\
          Transfer_Encoding: chunked\r\n\
          my_header: 1\r\n\
          X-Kept: 2\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let report = WhoamiReport::parse(&r.text());
    let names: Vec<&str> = report.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.iter().any(|n| n.contains('_')), "{names:?}");
    assert!(!r.text().contains("203.0.113.9"), "{}", r.text());
    assert_eq!(report.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(report.header("x-kept"), Some("2"));
    assert_eq!(report.body_len, 0);
}

#[test]
fn client_x_real_ip_is_replaced_by_the_client_address() {
    let whoami = Whoami::start();
    let nexus = Nexus::hello(whoami.addr());
    let mut c = nexus.client(HELLO);
    c.send(
        b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\
          X-Real-IP: 203.0.113.9\r\nx-real-ip: 10.0.0.1\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let report = WhoamiReport::parse(&r.text());
    let real: Vec<&str> = report
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-real-ip"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(real, ["127.0.0.1"], "{}", r.text());
}

#[test]
fn proxy_authorization_never_reaches_the_app() {
    let whoami = Whoami::start();
    let nexus = Nexus::hello(whoami.addr());
    let mut c = nexus.client(HELLO);
    c.send(
        b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\
          Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\n\
          Authorization: Bearer app-token\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let report = WhoamiReport::parse(&r.text());
    assert_eq!(report.header("proxy-authorization"), None, "{}", r.text());
    assert!(!r.text().contains("cHJveHk6c2VjcmV0"), "{}", r.text());
    assert_eq!(report.header("authorization"), Some("Bearer app-token"));
}

#[test]
fn obs_text_header_values_reach_the_app_byte_exact() {
    let whoami = Whoami::start();
    let nexus = Nexus::hello(whoami.addr());
    let mut c = nexus.client(HELLO);
    // Latin-1 as old clients send it, a lone UTF-8 lead byte, and 0xFF: opaque data.
    c.send(
        b"GET /obs HTTP/1.1\r\nHost: hello.localhost\r\n\
          X-Name: Jos\xe9 \xff\x80\r\n\
          User-Agent: agent\xc3 \xa0\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    for field in [
        &b"\nX-Name: Jos\xe9 \xff\x80\n"[..],
        b"\nUser-Agent: agent\xc3 \xa0\n",
    ] {
        assert!(
            find(&r.body, field).is_some(),
            "{:?} not in {:?}",
            String::from_utf8_lossy(field),
            r.text()
        );
    }
    // The access log has the request, and none of those bytes raw.
    nexus.wait_log(r#""GET /obs" 200 "#, Duration::from_secs(5));
    let log = nexus.dump();
    assert!(
        !log.contains('\u{fffd}') && !log.contains("Jos"),
        "header bytes in the log: {log}"
    );
}

#[test]
fn absolute_form_authority_is_forwarded_as_host() {
    let whoami = Whoami::start();
    let nexus = Nexus::hello(whoami.addr());
    let mut c = nexus.client(HELLO);
    // Same origin (https's default port is 443), written two ways: the target's
    // authority is what the app is asked for (RFC 9112 3.2.2).
    c.send(b"GET https://Hello.localhost:443/abs HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let report = WhoamiReport::parse(&r.text());
    assert_eq!(report.request_line, "GET /abs HTTP/1.1");
    assert_eq!(report.header("host"), Some("Hello.localhost:443"));
    assert_eq!(
        report.header("x-forwarded-host"),
        Some("Hello.localhost:443")
    );
}

#[test]
fn obs_text_response_header_values_reach_the_client_byte_exact() {
    // An old app's Latin-1 filename: nginx and HAProxy pass it; a 502 would not help.
    let backend = Backend::http(|_| {
        Reply::keep(
            b"HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename=\"caf\xe9.txt\"\r\n\
              X-Raw: \xff\x80\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n");
    let (raw, _) = c.read_until_close();
    for field in [
        &b"\r\nContent-Disposition: attachment; filename=\"caf\xe9.txt\"\r\n"[..],
        b"\r\nX-Raw: \xff\x80\r\n",
    ] {
        assert!(
            find(&raw, field).is_some(),
            "{:?} not in {:?}",
            String::from_utf8_lossy(field),
            String::from_utf8_lossy(&raw)
        );
    }
    assert!(raw.starts_with(b"HTTP/1.1 200 "), "{raw:?}");
    assert!(raw.ends_with(b"\r\n\r\nok"), "{raw:?}");
}
