//! Response head tests, one per input: what parses, what is refused, and the
//! framing and head we write to the client.

use super::*;

const MAX: usize = 8192;

fn ok(buf: &[u8]) -> Response {
    ok_for(buf, false)
}

fn ok_for(buf: &[u8], head: bool) -> Response {
    match parse_response(buf, MAX, head) {
        Ok(Some(r)) => r,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn err(buf: &[u8]) -> ResponseError {
    match parse_response(buf, MAX, false) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn fields(r: &Response) -> Vec<(&str, &str)> {
    r.headers
        .iter()
        .map(|(n, v)| (n.as_str(), std::str::from_utf8(v).unwrap_or("<not UTF-8>")))
        .collect()
}

fn head_bytes(
    resp: &Response,
    framing: ClientFraming,
    client: Version,
    keep_alive: bool,
) -> String {
    let mut out = Vec::new();
    write_client_response_head(&mut out, resp, framing, client, keep_alive);
    String::from_utf8(out).unwrap_or_default()
}

// ---- parsing ----

#[test]
fn ok_with_length() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    let r = ok(buf);
    assert_eq!(
        (r.version, r.status, r.reason.as_str()),
        (Version::Http11, 200, "OK")
    );
    assert_eq!(fields(&r), [("Content-Type", "text/plain")]);
    assert_eq!(
        (r.content_length, r.body),
        (Some(5), ResponseBody::Length(5))
    );
    assert!(r.keep_alive);
    assert_eq!(r.head_len, buf.len() - 5);
}

#[test]
fn chunked_body() {
    let r = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(r.body, ResponseBody::Chunked);
    assert!(r.keep_alive && r.headers.is_empty());
}

#[test]
fn until_close_body() {
    let r = ok(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(r.body, ResponseBody::UntilClose);
    assert!(!r.keep_alive);
}

#[test]
fn connection_close() {
    let r = ok(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    assert!(!r.keep_alive);
}

#[test]
fn http10_backend() {
    assert!(!ok(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").keep_alive);
    assert!(
        ok(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n").keep_alive
    );
}

#[test]
fn no_reason_phrase() {
    assert_eq!(ok(b"HTTP/1.1 204\r\n\r\n").reason, "");
    assert_eq!(ok(b"HTTP/1.1 204 \r\n\r\n").reason, "");
}

#[test]
fn non_utf8_reason_becomes_empty() {
    assert_eq!(ok(b"HTTP/1.1 200 Tr\xe8s bien\r\n\r\n").reason, "");
}

#[test]
fn informational_responses() {
    for status in [100u16, 101, 102, 103] {
        let buf = format!("HTTP/1.1 {status} X\r\nLink: </a>\r\n\r\n");
        let r = ok(buf.as_bytes());
        assert!(r.is_informational());
        assert_eq!(r.body, ResponseBody::None, "{status}");
    }
}

#[test]
fn continue_then_final_pipelined() {
    let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    let first = ok(buf);
    assert_eq!((first.status, first.head_len), (100, 25));
    assert_eq!(ok(&buf[first.head_len..]).status, 201);
}

#[test]
fn body_none_for_204_and_304() {
    for status in [204u16, 304] {
        let buf = format!("HTTP/1.1 {status} X\r\nContent-Length: 42\r\n\r\n");
        let r = ok(buf.as_bytes());
        assert_eq!((r.body, r.content_length), (ResponseBody::None, Some(42)));
        assert!(r.keep_alive);
        let buf = format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(ok(buf.as_bytes()).body, ResponseBody::None);
        let buf = format!("HTTP/1.1 {status} X\r\n\r\n");
        assert_eq!(ok(buf.as_bytes()).body, ResponseBody::None);
        assert!(ok(buf.as_bytes()).keep_alive);
    }
}

#[test]
fn body_none_for_head_request() {
    for buf in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n",
    ] {
        let r = ok_for(buf, true);
        assert_eq!(r.body, ResponseBody::None, "{buf:?}");
        assert!(r.keep_alive);
    }
}

#[test]
fn body_for_error_statuses() {
    assert_eq!(
        ok(b"HTTP/1.1 500 X\r\nContent-Length: 3\r\n\r\n").body,
        ResponseBody::Length(3)
    );
    assert_eq!(ok(b"HTTP/1.1 404 X\r\n\r\n").body, ResponseBody::UntilClose);
    assert_eq!(
        ok(b"HTTP/1.1 205 X\r\nContent-Length: 0\r\n\r\n").body,
        ResponseBody::Length(0)
    );
}

#[test]
fn hop_by_hop_removed() {
    let buf = b"HTTP/1.1 200 OK\r\nConnection: X-Internal, keep-alive\r\nKeep-Alive: timeout=5\r\n\
            Proxy-Connection: x\r\nTE: trailers\r\nTrailer: Expires\r\nUpgrade: h2c\r\nx-internal: 1\r\n\
            Set-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n";
    let r = ok(buf);
    assert_eq!(fields(&r), [("Set-Cookie", "a=1"), ("set-cookie", "b=2")]);
}

#[test]
fn forwarded_headers_kept_in_responses() {
    let r = ok(b"HTTP/1.1 200 OK\r\nX-Forwarded-For: 1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(fields(&r), [("X-Forwarded-For", "1")]);
}

#[test]
fn incomplete_heads() {
    let full = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for n in 0..full.len() {
        assert_eq!(
            parse_response(&full[..n], MAX, false),
            Ok(None),
            "prefix {n}"
        );
    }
}

#[test]
fn head_too_large() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        parse_response(buf, buf.len() - 1, false),
        Err(ResponseError::HeadTooLarge)
    );
    assert_eq!(ResponseError::HeadTooLarge.status(), 502);
}

#[test]
fn too_many_headers() {
    let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..101 {
        buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    assert_eq!(err(&buf), ResponseError::TooManyHeaders);
}

// ---- rejections ----

#[test]
fn reject_line_ends() {
    assert_eq!(
        err(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
        ResponseError::BareLf
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"),
        ResponseError::BareCr
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n"),
        ResponseError::ControlByte
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
        ResponseError::ObsFold
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n"),
        ResponseError::WhitespaceBeforeColon
    );
    assert_eq!(
        err(b" HTTP/1.1 200 OK\r\n\r\n"),
        ResponseError::LeadingWhitespace
    );
}

#[test]
fn reject_status() {
    for buf in [
        &b"HTTP/1.1 099 Low\r\n\r\n"[..],
        b"HTTP/1.1 000 Zero\r\n\r\n",
        b"HTTP/1.1 20 Short\r\n\r\n",
        b"HTTP/1.1 2000 Long\r\n\r\n",
        b"HTTP/1.1 abc X\r\n\r\n",
    ] {
        assert_eq!(err(buf), ResponseError::InvalidStatus, "{buf:?}");
    }
    assert_eq!(ok(b"HTTP/1.1 999 Max\r\n\r\n").status, 999);
}

#[test]
fn reject_version() {
    for buf in [
        &b"HTTP/2 200 OK\r\n\r\n"[..],
        b"HTTP/1.2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ] {
        assert_eq!(err(buf), ResponseError::InvalidVersion, "{buf:?}");
    }
}

#[test]
fn reject_framing() {
    let cases: [(&[u8], ResponseError); 7] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            ResponseError::MultipleContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            ResponseError::UnsupportedTransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
            ResponseError::ContentLengthAndTransferEncoding,
        ),
        (
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            ResponseError::TransferEncodingHttp10,
        ),
        (
            b"HTTP/1.1 304 OK\r\nContent-Length: x\r\n\r\n",
            ResponseError::InvalidContentLength,
        ),
    ];
    for (buf, want) in cases {
        assert_eq!(err(buf), want, "{buf:?}");
    }
}

/// obs-text passes to the client byte for byte (a Latin-1 filename from an old
/// app); framing fields must still be ASCII.
#[test]
fn obs_text_values_kept_byte_exact() {
    let r = ok(
        b"HTTP/1.1 200 OK\r\nContent-Disposition: a; filename=caf\xe9\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        r.headers,
        [(
            "Content-Disposition".to_owned(),
            b"a; filename=caf\xe9".to_vec()
        )]
    );
    let mut out = Vec::new();
    write_client_response_head(
        &mut out,
        &r,
        ClientFraming::Length(0),
        Version::Http11,
        true,
    );
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nContent-Disposition: a; filename=caf\xe9\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\xb9\r\n\r\n"),
        ResponseError::InvalidContentLength
    );
}

// ---- client framing ----

#[test]
fn framing_table() {
    let cases = [
        (ResponseBody::None, Version::Http11, ClientFraming::None),
        (ResponseBody::None, Version::Http10, ClientFraming::None),
        (
            ResponseBody::Length(7),
            Version::Http11,
            ClientFraming::Length(7),
        ),
        (
            ResponseBody::Length(7),
            Version::Http10,
            ClientFraming::Length(7),
        ),
        (
            ResponseBody::Chunked,
            Version::Http11,
            ClientFraming::Chunked,
        ),
        (ResponseBody::Chunked, Version::Http10, ClientFraming::Close),
        (
            ResponseBody::UntilClose,
            Version::Http11,
            ClientFraming::Chunked,
        ),
        (
            ResponseBody::UntilClose,
            Version::Http10,
            ClientFraming::Close,
        ),
    ];
    let mut resp = ok(b"HTTP/1.1 200 OK\r\n\r\n");
    for (body, client, want) in cases {
        resp.body = body;
        assert_eq!(client_framing(&resp, client), want, "{body:?} {client:?}");
    }
}

// ---- serialisation ----

#[test]
fn golden_length() {
    let r = ok(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\n\r\n");
    assert_eq!(
        head_bytes(&r, ClientFraming::Length(12), Version::Http11, true),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\n\r\n"
    );
}

#[test]
fn golden_rechunked_from_until_close() {
    let r = ok(b"HTTP/1.0 200 Fine\r\nX-A: 1\r\n\r\n");
    let f = client_framing(&r, Version::Http11);
    assert_eq!(
        head_bytes(&r, f, Version::Http11, true),
        "HTTP/1.1 200 Fine\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
}

#[test]
fn golden_close_for_http10_client() {
    let r = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    let f = client_framing(&r, Version::Http10);
    assert_eq!(
        head_bytes(&r, f, Version::Http10, true),
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn golden_http10_keep_alive() {
    let r = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(
        head_bytes(&r, ClientFraming::Length(2), Version::Http10, true),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
    );
}

#[test]
fn golden_head_echoes_length() {
    let r = ok_for(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true);
    assert_eq!(
        head_bytes(
            &r,
            client_framing(&r, Version::Http11),
            Version::Http11,
            false
        ),
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn golden_304_echoes_length() {
    let r = ok(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n");
    assert_eq!(
        head_bytes(
            &r,
            client_framing(&r, Version::Http11),
            Version::Http11,
            true
        ),
        "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n"
    );
}

#[test]
fn golden_204_drops_length() {
    let r = ok(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        head_bytes(
            &r,
            client_framing(&r, Version::Http11),
            Version::Http11,
            true
        ),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
}

#[test]
fn golden_empty_reason_filled_in() {
    let r = ok(b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        head_bytes(&r, ClientFraming::Length(0), Version::Http11, true),
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn golden_injected_reason_replaced() {
    let mut r = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    r.reason = "OK\r\nSet-Cookie: x".into();
    assert_eq!(
        head_bytes(&r, ClientFraming::Length(0), Version::Http11, true),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
#[should_panic(expected = "CR, LF or NUL")]
fn injected_value_panics() {
    let mut r = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    r.headers.push(("X".into(), "a\nb".into()));
    head_bytes(&r, ClientFraming::Length(0), Version::Http11, true);
}

// ---- 101 Switching Protocols ----

use crate::http1::{Request, Upgrade};

/// What [`crate::http1::switch_protocols`] makes of a response.
type Verdict = Result<Option<Upgrade>, ResponseError>;

fn request(buf: &[u8]) -> Request {
    match crate::http1::parse_request(buf, MAX) {
        Ok(Some(r)) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn switch_decision_table() {
    use crate::http1::switch_protocols;
    let ws =
        request(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
    let plain = request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let h2c = request(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n");
    const TUNNEL: Verdict = Ok(Some(Upgrade::WebSocket));
    const UNEXPECTED: Verdict = Err(ResponseError::UnexpectedUpgrade);
    const MISMATCH: Verdict = Err(ResponseError::UpgradeMismatch);
    // One row per (request, response head): what the 101 means.
    let rows: [(&Request, &str, Verdict); 16] = [
        (&ws, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", TUNNEL),
        (&ws, "HTTP/1.1 101 \r\nupgrade: WEBSOCKET\r\nconnection: upgrade\r\nSec-WebSocket-Accept: x\r\n", TUNNEL),
        (&ws, "HTTP/1.1 101 OK\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n", TUNNEL),
        (&ws, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n", MISMATCH),
        (&ws, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket, foo\r\nConnection: upgrade\r\n", MISMATCH),
        (&ws, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nUpgrade: websocket\r\nConnection: upgrade\r\n", MISMATCH),
        (&ws, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", MISMATCH),
        (&ws, "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n", MISMATCH),
        (&ws, "HTTP/1.1 101 Switching Protocols\r\n", MISMATCH),
        (&ws, "HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n", MISMATCH),
        (&plain, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n", UNEXPECTED),
        (&h2c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n", UNEXPECTED),
        (&ws, "HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 0\r\n", Ok(None)),
        (&ws, "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 0\r\n", Ok(None)),
        (&ws, "HTTP/1.1 100 Continue\r\n", Ok(None)),
        (&plain, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", Ok(None)),
    ];
    for (req, head, want) in rows {
        let resp = ok(format!("{head}\r\n").as_bytes());
        assert_eq!(switch_protocols(req, &resp), want, "{head:?}");
    }
}

#[test]
fn upgrade_recorded_on_101_only() {
    let r = ok(b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.upgrade, None);
    assert!(r.headers.is_empty());
}

#[test]
fn golden_switch_head() {
    let r = ok(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Hop\r\n\
          X-Hop: 1\r\nKeep-Alive: 5\r\nContent-Length: 0\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
          Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n");
    let mut out = Vec::new();
    write_client_switch_head(&mut out, &r, Upgrade::WebSocket);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Sec-WebSocket-Protocol: actioncable-v1-json\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    );
}

#[test]
fn golden_switch_head_empty_reason_filled_in() {
    let r = ok(b"HTTP/1.1 101 \r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
    let mut out = Vec::new();
    write_client_switch_head(&mut out, &r, Upgrade::WebSocket);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    );
}
