//! Request head tests, one per input: what parses, what is refused and why, and
//! what we write to the backend.

use super::*;

const MAX: usize = 8192;

fn ok(buf: &[u8]) -> Request {
    match parse_request(buf, MAX) {
        Ok(Some(r)) => r,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn err(buf: &[u8]) -> RequestError {
    match parse_request(buf, MAX) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn fields(r: &Request) -> Vec<(&str, &str)> {
    r.headers
        .iter()
        .map(|(n, v)| (n.as_str(), std::str::from_utf8(v).unwrap_or("<not UTF-8>")))
        .collect()
}

// ---- valid requests of each shape ----

#[test]
fn simple_get() {
    let buf = b"GET /index.html?q=1 HTTP/1.1\r\nHost: Example.COM\r\nAccept: */*\r\n\r\n";
    let r = ok(buf);
    assert_eq!(r.method, "GET");
    assert_eq!(r.target, "/index.html?q=1");
    assert_eq!(r.version, Version::Http11);
    assert_eq!(r.host, "example.com");
    assert_eq!(r.host_header, "Example.COM");
    assert_eq!(fields(&r), [("Accept", "*/*")]);
    assert_eq!(r.body, BodyFraming::None);
    assert!(r.keep_alive && !r.expect_continue && !r.is_head() && r.is_idempotent());
    assert_eq!(r.head_len, buf.len());
}

#[test]
fn post_with_content_length() {
    let r = ok(b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(r.body, BodyFraming::Length(11));
    assert_eq!(r.head_len, 49);
    assert!(r.has_body() && !r.is_idempotent());
}

#[test]
fn only_idempotent_methods_count_as_idempotent() {
    for (method, idempotent) in [
        ("GET", true),
        ("HEAD", true),
        ("OPTIONS", true),
        ("PUT", true),
        ("DELETE", true),
        ("POST", false),
        ("PATCH", false),
        ("PROPFIND", false),
        ("MKCOL", false),
    ] {
        let r = ok(format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        assert_eq!(r.is_idempotent(), idempotent, "{method}");
    }
}

#[test]
fn get_with_content_length_zero_kept() {
    let r = ok(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.body, BodyFraming::Length(0));
    assert!(!r.has_body());
}

#[test]
fn chunked_post() {
    let r = ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_eq!(r.body, BodyFraming::Chunked);
    assert!(r.headers.is_empty());
}

#[test]
fn head_method() {
    assert!(ok(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").is_head());
}

#[test]
fn extension_method() {
    let r = ok(b"PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.method, "PROPFIND");
}

#[test]
fn options_asterisk() {
    let r = ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.target, "*");
}

#[test]
fn absolute_form_http() {
    let r = ok(b"GET http://A.example:8080/p?q HTTP/1.1\r\nHost: a.example:8080\r\n\r\n");
    assert_eq!(r.target, "/p?q");
    assert_eq!(r.host, "a.example");
    assert_eq!(r.host_header, "A.example:8080");
}

/// Absolute-form: the target's port (or its scheme's default) must be Host's
/// (or the same default); the forwarded Host is the target's authority.
#[test]
fn absolute_form_ports() {
    let accepted: [(&[u8], &str); 6] = [
        (b"GET https://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "a"),
        (b"GET https://a/ HTTP/1.1\r\nHost: a:443\r\n\r\n", "a"),
        (b"GET https://a:443/ HTTP/1.1\r\nHost: A\r\n\r\n", "a:443"),
        (b"GET http://a/ HTTP/1.1\r\nHost: a:80\r\n\r\n", "a"),
        (b"GET http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n", "a:80"),
        (
            b"GET https://[::1]:8443/ HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
            "[::1]:8443",
        ),
    ];
    for (buf, host_header) in accepted {
        assert_eq!(ok(buf).host_header, host_header, "{buf:?}");
    }
    for buf in [
        &b"GET https://a:8443/ HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET https://a/ HTTP/1.1\r\nHost: a:8443\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a:443\r\n\r\n",
        b"GET http://a:443/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET https://a:1/ HTTP/1.1\r\nHost: a:2\r\n\r\n",
    ] {
        assert_eq!(err(buf), RequestError::HostMismatch, "{buf:?}");
    }
}

#[test]
fn absolute_form_https_uppercase_scheme_no_path() {
    let r = ok(b"GET HTTPS://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert_eq!(r.target, "/");
}

#[test]
fn absolute_form_query_only() {
    let r = ok(b"GET https://a.example?x=1 HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert_eq!(r.target, "/?x=1");
}

#[test]
fn http10_defaults_to_close() {
    let r = ok(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n");
    assert_eq!(r.version, Version::Http10);
    assert!(!r.keep_alive);
}

#[test]
fn http10_keep_alive() {
    assert!(ok(b"GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
}

#[test]
fn http11_connection_close() {
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
}

#[test]
fn expect_continue() {
    let r = ok(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
    assert!(r.expect_continue);
    assert!(r.headers.is_empty());
}

#[test]
fn expect_continue_without_body_ignored() {
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    let r = ok(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n");
    assert!(!r.expect_continue);
    let r = ok(
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert!(r.expect_continue);
}

#[test]
fn expect_continue_ignored_on_http10() {
    let r = ok(b"PUT / HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert!(!r.expect_continue);
}

#[test]
fn leading_empty_lines_counted_in_head_len() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(ok(buf).head_len, buf.len());
}

#[test]
fn values_trimmed_and_tab_kept() {
    let r = ok(b"GET / HTTP/1.1\r\nHost:a\r\nX-A: \t one\ttwo \t\r\nX-Empty:\r\n\r\n");
    assert_eq!(fields(&r), [("X-A", "one\ttwo"), ("X-Empty", "")]);
}

#[test]
fn utf8_value_accepted() {
    let r = ok("GET / HTTP/1.1\r\nHost: a\r\nX-Name: Zoë\r\n\r\n".as_bytes());
    assert_eq!(fields(&r), [("X-Name", "Zoë")]);
}

/// obs-text is opaque data (RFC 9110 §5.5): kept byte for byte, UTF-8 or not.
#[test]
fn obs_text_values_kept_byte_exact() {
    for value in [
        &b"caf\xe9"[..],
        b"\xff\xfe",
        b"\x80",
        b"a\xa0\tb",
        b"\xc3\xa9t\xc3",
    ] {
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: ".to_vec();
        buf.extend_from_slice(value);
        buf.extend_from_slice(b"\r\n\r\n");
        let r = ok(&buf);
        assert_eq!(r.headers, [("X-Name".to_owned(), value.to_vec())]);
        let mut out = Vec::new();
        write_backend_request(&mut out, &r, IpAddr::from([127, 0, 0, 1]));
        let mut line = b"\r\nX-Name: ".to_vec();
        line.extend_from_slice(value);
        line.extend_from_slice(b"\r\n");
        assert!(out.windows(line.len()).any(|w| w == line), "{out:?}");
    }
}

/// Where obs-text is not opaque: a routing key, framing, the target.
#[test]
fn obs_text_refused_where_it_has_meaning() {
    let cases: [(&[u8], RequestError); 4] = [
        (
            b"GET / HTTP/1.1\r\nHost: caf\xe9\r\n\r\n",
            RequestError::InvalidHost,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\xb9\r\n\r\n",
            RequestError::InvalidContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\xa0\r\n\r\n",
            RequestError::UnsupportedTransferEncoding,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: \xe9\r\n\r\n",
            RequestError::InvalidConnection,
        ),
    ];
    for (buf, want) in cases {
        assert_eq!(err(buf), want, "{buf:?}");
    }
}

/// RFC 3986's characters only, `#` aside: the forwarded target is printable
/// ASCII and has no fragment.
#[test]
fn target_bytes() {
    for target in [
        "/a-b._~:@!$&'()*+,;=%20/?q=[1]&r=/?",
        "/%E2%82%AC",
        "/?a[]=1",
        "https://a/p?q=%7B%7D",
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        ok(buf.as_bytes());
    }
    for target in [
        &b"/a#frag"[..],
        b"/#",
        b"http://a/p#f",
        b"/caf\xc3\xa9",
        b"/\x80",
        b"/a\"b",
        b"/<script>",
        b"/a\\b",
        b"/a^b",
        b"/a`b",
        b"/a{b}",
        b"/a|b",
    ] {
        let mut buf = b"GET ".to_vec();
        buf.extend_from_slice(target);
        buf.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(err(&buf), RequestError::InvalidTarget, "{buf:?}");
    }
}

#[test]
fn host_ipv6_with_port() {
    let r = ok(b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
    assert_eq!(r.host, "[::1]");
    assert_eq!(r.host_header, "[::1]:8443");
}

#[test]
fn hundred_headers_is_the_limit() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..99 {
        buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    assert_eq!(ok(&buf).headers.len(), 99);
}

// ---- hop-by-hop and edge-owned fields ----

#[test]
fn hop_by_hop_removed() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, Upgrade\r\n\
            Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
            Trailer: X-T\r\nUpgrade: websocket\r\nx-secret: 1\r\nX-Kept: 2\r\n\r\n";
    assert_eq!(fields(&ok(buf)), [("X-Kept", "2")]);
}

#[test]
fn connection_named_before_connection() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-Early: 1\r\nConnection: x-early\r\n\r\n";
    assert!(ok(buf).headers.is_empty());
}

#[test]
fn connection_naming_framing_does_not_unframe() {
    let buf =
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(ok(buf).body, BodyFraming::Length(3));
}

#[test]
fn forwarded_headers_dropped() {
    let buf =
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nx-forwarded-proto: http\r\n\
            X-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\
            X-Real: 1\r\n\r\n";
    assert_eq!(fields(&ok(buf)), [("X-Real", "1")]);
}

/// Names with `_` could pass for the edge's own fields in CGI-style apps;
/// Proxy-Authorization is a proxy's credential. Neither reaches the app.
#[test]
fn underscores_and_proxy_credentials_dropped() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\n\
            X_Real_IP: 6.6.6.6\r\nTransfer_Encoding: chunked\r\nContent_Length: 5\r\n\
            x_a: 1\r\nProxy-Authorization: Basic dTpw\r\nproxy-authorization: x\r\n\
            Authorization: Basic dTpw\r\nX-A: 2\r\n\r\n";
    let r = ok(buf);
    assert_eq!(fields(&r), [("Authorization", "Basic dTpw"), ("X-A", "2")]);
    assert_eq!(r.body, BodyFraming::None);
}

#[test]
fn trace_refused_with_405() {
    for buf in [
        &b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"TRACE * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"TRACE / HTTP/1.0\r\n\r\n",
    ] {
        assert_eq!(err(buf), RequestError::TraceNotAllowed, "{buf:?}");
    }
    assert_eq!(RequestError::TraceNotAllowed.status(), 405);
    // Methods are case-sensitive (RFC 9110 §9.1): `trace` is an unknown method.
    assert_eq!(ok(b"trace / HTTP/1.1\r\nHost: a\r\n\r\n").method, "trace");
}

#[test]
fn order_and_names_preserved() {
    let buf = b"GET / HTTP/1.1\r\ncookie: a=1\r\nHost: a\r\nACCEPT: x\r\nCookie: b=2\r\n\r\n";
    assert_eq!(
        fields(&ok(buf)),
        [("cookie", "a=1"), ("ACCEPT", "x"), ("Cookie", "b=2")]
    );
}

// ---- pipelining and incomplete heads ----

#[test]
fn pipelined_requests() {
    let buf = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    let first = ok(buf);
    assert_eq!((first.target.as_str(), first.head_len), ("/1", 28));
    let rest = &buf[first.head_len..];
    let second = ok(rest);
    assert_eq!(second.target, "/2");
    let after_body = &rest[second.head_len + 2..];
    assert_eq!(ok(after_body).target, "/3");
    assert_eq!(ok(after_body).head_len, after_body.len());
}

#[test]
fn incomplete_heads() {
    let full = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
    for n in 0..full.len() {
        assert_eq!(parse_request(&full[..n], MAX), Ok(None), "prefix {n}");
    }
}

// ---- 431 ----

#[test]
fn head_too_large_complete() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(
        parse_request(buf, buf.len() - 1),
        Err(RequestError::HeadTooLarge)
    );
    assert!(matches!(parse_request(buf, buf.len()), Ok(Some(_))));
}

#[test]
fn head_too_large_incomplete() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    buf.resize(MAX, b'a');
    assert_eq!(parse_request(&buf, MAX), Err(RequestError::HeadTooLarge));
    assert_eq!(parse_request(&buf[..MAX - 1], MAX), Ok(None));
    assert_eq!(err(&buf).status(), 431);
}

#[test]
fn too_many_headers() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..100 {
        buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    assert_eq!(err(&buf), RequestError::TooManyHeaders);
    assert_eq!(err(&buf).status(), 431);
}

// ---- rejections: line ends and bytes ----

#[test]
fn reject_bare_lf() {
    assert_eq!(err(b"GET / HTTP/1.1\nHost: a\n\n"), RequestError::BareLf);
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\n\r\n"),
        RequestError::BareLf
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\n\n"),
        RequestError::BareLf
    );
    assert_eq!(
        err(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::BareLf
    );
}

#[test]
fn reject_bare_cr() {
    assert_eq!(
        err(b"GET / HTTP/1.1\rHost: a\r\n\r\n"),
        RequestError::BareCr
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n"),
        RequestError::BareCr
    );
    assert_eq!(err(b"GET /\r HTTP/1.1\r\n\r\n"), RequestError::BareCr);
}

#[test]
fn reject_control_bytes() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
        RequestError::ControlByte
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n"),
        RequestError::ControlByte
    );
    assert_eq!(
        err(b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::ControlByte
    );
}

#[test]
fn reject_obs_fold() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
        RequestError::ObsFold
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\n\tX: a\r\n\r\n"),
        RequestError::ObsFold
    );
}

#[test]
fn reject_whitespace_before_colon() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        RequestError::WhitespaceBeforeColon
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 1\r\n\r\n"),
        RequestError::WhitespaceBeforeColon
    );
}

#[test]
fn reject_leading_whitespace() {
    assert_eq!(
        err(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::LeadingWhitespace
    );
    assert_eq!(
        err(b"\r\n\tGET / HTTP/1.1\r\n\r\n"),
        RequestError::LeadingWhitespace
    );
}

#[test]
fn reject_too_many_empty_lines() {
    let buf = b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(err(buf), RequestError::TooManyEmptyLines);
}

// ---- rejections: request line ----

#[test]
fn reject_bad_method() {
    assert_eq!(
        err(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::InvalidMethod
    );
    assert_eq!(
        err(b"\xc3\xa9 / HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::InvalidMethod
    );
}

#[test]
fn reject_double_space() {
    assert_eq!(
        err(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::InvalidTarget
    );
    assert!(matches!(
        err(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::InvalidVersion
    ));
}

#[test]
fn reject_bad_version() {
    for buf in [
        &b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"[..],
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        b"GET / http/1.1\r\nHost: a\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        assert_eq!(err(buf), RequestError::InvalidVersion, "{buf:?}");
    }
}

#[test]
fn reject_http09_style_line() {
    assert_eq!(
        err(b"GET /\r\nHost: a\r\n\r\n"),
        RequestError::InvalidRequestLine
    );
    assert_eq!(
        err(b"GET\r\nHost: a\r\n\r\n"),
        RequestError::InvalidRequestLine
    );
}

#[test]
fn reject_connect() {
    assert_eq!(
        err(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        RequestError::ConnectUnsupported
    );
    assert_eq!(
        err(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::ConnectUnsupported
    );
}

#[test]
fn reject_asterisk_without_options() {
    assert_eq!(
        err(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::AsteriskNotOptions
    );
}

#[test]
fn reject_other_targets() {
    for buf in [
        &b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http:/a HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://user@a/p HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET ** HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(err(buf), RequestError::InvalidTarget, "{buf:?}");
    }
}

// ---- rejections: Host ----

#[test]
fn reject_missing_host() {
    assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), RequestError::MissingHost);
    assert_eq!(err(b"GET / HTTP/1.0\r\n\r\n"), RequestError::MissingHost);
    assert_eq!(
        err(b"GET http://a/ HTTP/1.1\r\n\r\n"),
        RequestError::MissingHost
    );
}

#[test]
fn reject_multiple_host() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        RequestError::MultipleHost
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
        RequestError::MultipleHost
    );
}

#[test]
fn reject_invalid_host() {
    for buf in [
        &b"GET / HTTP/1.1\r\nHost:\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
    ] {
        assert_eq!(err(buf), RequestError::InvalidHost, "{buf:?}");
    }
}

#[test]
fn reject_host_mismatch() {
    assert_eq!(
        err(b"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::HostMismatch
    );
    assert_eq!(
        err(b"GET https://a.evil/ HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::HostMismatch
    );
}

// ---- rejections: framing ----

#[test]
fn reject_invalid_content_length() {
    for value in [
        "",
        "-1",
        "+1",
        "1.0",
        "0x1",
        "1 2",
        "1,1",
        "5, 5",
        "1234567890123456789",
        "abc",
    ] {
        let buf = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n");
        assert_eq!(
            err(buf.as_bytes()),
            RequestError::InvalidContentLength,
            "{value:?}"
        );
    }
}

#[test]
fn reject_multiple_content_length() {
    let buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(err(buf), RequestError::MultipleContentLength);
    let buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n";
    assert_eq!(err(buf), RequestError::MultipleContentLength);
}

#[test]
fn reject_unsupported_transfer_encoding() {
    for value in [
        "gzip",
        "gzip, chunked",
        "chunked, gzip",
        "chunked,",
        "identity",
        "xchunked",
        "chunked\t;x",
    ] {
        let buf = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {value}\r\n\r\n");
        assert_eq!(
            err(buf.as_bytes()),
            RequestError::UnsupportedTransferEncoding,
            "{value:?}"
        );
    }
    let buf = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(buf), RequestError::UnsupportedTransferEncoding);
}

#[test]
fn reject_transfer_encoding_http10() {
    let buf = b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(buf), RequestError::TransferEncodingHttp10);
}

#[test]
fn reject_content_length_and_transfer_encoding() {
    let buf =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(buf), RequestError::ContentLengthAndTransferEncoding);
    let buf =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(err(buf), RequestError::ContentLengthAndTransferEncoding);
}

#[test]
fn reject_unsupported_expect() {
    for value in [
        "",
        "100-continue, foo",
        "200-ok",
        "100-continue;x",
        "100-continue2",
        "foo",
    ] {
        let buf = format!("PUT / HTTP/1.1\r\nHost: a\r\nExpect: {value}\r\n\r\n");
        assert_eq!(
            err(buf.as_bytes()),
            RequestError::UnsupportedExpect,
            "{value:?}"
        );
    }
}

#[test]
fn reject_invalid_connection() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n"),
        RequestError::InvalidConnection
    );
}

#[test]
fn reject_bad_header_names() {
    for buf in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX(Y: 1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: 1\r\n\r\n",
    ] {
        assert_eq!(err(buf), RequestError::InvalidHeaderName, "{buf:?}");
    }
}

#[test]
fn error_statuses_and_reasons() {
    assert_eq!(RequestError::MissingHost.status(), 400);
    assert_eq!(
        RequestError::ConnectUnsupported.reason(),
        "CONNECT is not supported"
    );
    assert_eq!(RequestError::UnsupportedExpect.status(), 417);
    assert_eq!(
        RequestError::UnsupportedExpect.to_string(),
        "only the 100-continue expectation is supported"
    );
}

// ---- lenient parsing (whoami) ----

#[test]
fn lenient_without_host() {
    let r = parse_request_lenient(b"GET / HTTP/1.0\r\n\r\n", MAX);
    let r = r.ok().flatten().map(|r| (r.host, r.host_header));
    assert_eq!(r, Some((String::new(), String::new())));
}

#[test]
fn lenient_still_strict_on_framing() {
    let buf = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
    assert_eq!(
        parse_request_lenient(buf, MAX),
        Err(RequestError::MultipleContentLength)
    );
}

// ---- serialisation ----

fn backend_bytes(buf: &[u8], ip: &str) -> String {
    let req = ok(buf);
    let mut out = Vec::new();
    write_backend_request(
        &mut out,
        &req,
        ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
    );
    String::from_utf8(out).unwrap_or_default()
}

#[test]
fn backend_golden_get() {
    let got = backend_bytes(
            b"GET /a?b HTTP/1.1\r\nHost: Ex.com:443\r\nUser-Agent: t\r\nConnection: close\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
            "192.0.2.7",
        );
    assert_eq!(
        got,
        "GET /a?b HTTP/1.1\r\nHost: Ex.com:443\r\nUser-Agent: t\r\nX-Forwarded-For: 192.0.2.7\r\n\
             X-Real-IP: 192.0.2.7\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-Host: Ex.com:443\r\n\r\n"
    );
}

#[test]
fn backend_golden_content_length_zero() {
    let got = backend_bytes(
        b"POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        "::1",
    );
    assert_eq!(
            got,
            "POST / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: ::1\r\nX-Real-IP: ::1\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: a\r\nContent-Length: 0\r\n\r\n"
        );
}

#[test]
fn backend_golden_chunked_absolute_form() {
    let got = backend_bytes(
            b"PUT http://a/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            "::ffff:10.0.0.1",
        );
    assert_eq!(
            got,
            "PUT /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
}

#[test]
#[should_panic(expected = "CR, LF or NUL")]
fn backend_refuses_injected_value() {
    let mut req = ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    req.headers.push(("X".into(), "1\r\nHost: evil".into()));
    write_backend_request(&mut Vec::new(), &req, IpAddr::from([127, 0, 0, 1]));
}

#[test]
#[should_panic(expected = "request target")]
fn backend_refuses_injected_target() {
    let mut req = ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    req.target = "/ HTTP/1.1\r\nX: y".into();
    write_backend_request(&mut Vec::new(), &req, IpAddr::from([127, 0, 0, 1]));
}

// ---- upgrades ----

#[test]
fn upgrade_decision_table() {
    const WS: Option<Upgrade> = Some(Upgrade::WebSocket);
    // One row per request: (head after the Host line, what `upgrade` must be).
    let rows: [(&str, &str, Option<Upgrade>); 20] = [
        ("GET", "Upgrade: websocket\r\nConnection: Upgrade\r\n", WS),
        (
            "GET",
            "upgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n",
            WS,
        ),
        (
            "GET",
            "Connection: upgrade\r\nUpgrade: websocket, foo/2\r\n",
            WS,
        ),
        (
            "GET",
            "Upgrade: h2c\r\nUpgrade: websocket\r\nConnection: upgrade\r\n",
            WS,
        ),
        ("GET", "Upgrade: ,websocket,\r\nConnection: upgrade\r\n", WS),
        (
            "GET",
            "Upgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 0\r\n",
            WS,
        ),
        (
            "GET",
            "Upgrade: websocket\r\nConnection: upgrade, close\r\n",
            WS,
        ),
        ("GET", "Upgrade: websocket\r\n", None),
        (
            "GET",
            "Upgrade: websocket\r\nConnection: keep-alive\r\n",
            None,
        ),
        ("GET", "Connection: upgrade\r\n", None),
        (
            "GET",
            "Upgrade: h2c\r\nConnection: upgrade, HTTP2-Settings\r\n",
            None,
        ),
        (
            "GET",
            "Upgrade: websocket/13\r\nConnection: upgrade\r\n",
            None,
        ),
        (
            "GET",
            "Upgrade: websocket, a b\r\nConnection: upgrade\r\n",
            None,
        ),
        (
            "GET",
            "Upgrade: websocketé\r\nConnection: upgrade\r\n",
            None,
        ),
        (
            "GET",
            "Upgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 3\r\n",
            None,
        ),
        (
            "GET",
            "Upgrade: websocket\r\nConnection: upgrade\r\nTransfer-Encoding: chunked\r\n",
            None,
        ),
        (
            "POST",
            "Upgrade: websocket\r\nConnection: upgrade\r\n",
            None,
        ),
        (
            "HEAD",
            "Upgrade: websocket\r\nConnection: upgrade\r\n",
            None,
        ),
        ("get", "Upgrade: websocket\r\nConnection: upgrade\r\n", None),
        (
            "OPTIONS",
            "Upgrade: websocket\r\nConnection: upgrade\r\n",
            None,
        ),
    ];
    for (method, fields, want) in rows {
        let buf = format!("{method} /chat HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        assert_eq!(ok(buf.as_bytes()).upgrade, want, "{buf:?}");
    }
}

#[test]
fn upgrade_needs_http11() {
    let r = ok(b"GET / HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
    assert_eq!(r.upgrade, None);
}

#[test]
fn upgrade_fields_dropped_either_way() {
    for hop in [
        "Upgrade: websocket\r\nConnection: upgrade\r\n",
        "Upgrade: h2c\r\nConnection: upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAA\r\n",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: a\r\n{hop}Sec-WebSocket-Key: k\r\n\r\n");
        assert_eq!(
            fields(&ok(buf.as_bytes())),
            [("Sec-WebSocket-Key", "k")],
            "{buf:?}"
        );
    }
}

fn backend_upgrade_bytes(buf: &[u8]) -> String {
    let mut out = Vec::new();
    write_backend_upgrade_request(&mut out, &ok(buf), IpAddr::from([192, 0, 2, 7]));
    String::from_utf8(out).unwrap_or_default()
}

#[test]
fn backend_golden_websocket() {
    let got = backend_upgrade_bytes(
        b"GET /cable HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket, foo\r\nConnection: keep-alive, Upgrade\r\n\
          Keep-Alive: 5\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(
        got,
        "GET /cable HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nX-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nUpgrade: websocket\r\n\
         Connection: upgrade\r\n\r\n"
    );
}

#[test]
fn backend_plain_writer_never_upgrades() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    assert_eq!(ok(buf).upgrade, Some(Upgrade::WebSocket));
    let plain = backend_bytes(buf, "192.0.2.7");
    assert!(
        !plain.contains("Upgrade") && !plain.contains("Connection"),
        "{plain}"
    );
}

#[test]
fn backend_upgrade_writer_on_a_plain_request_is_the_plain_writer() {
    for buf in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 1\r\n\r\n",
    ] {
        assert_eq!(backend_upgrade_bytes(buf), backend_bytes(buf, "192.0.2.7"));
    }
}
