//! Request smuggling and ambiguous framing: each case sends its raw
//! bytes over TLS in one write, followed by a would-be smuggled request, and
//! checks the 4xx, the `Connection: close`, the close itself, and that
//! the backend received not one byte: the framing decision happens before
//! anything is forwarded, and the second request is never parsed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::backend::Backend;
use crate::support::nexus::{Nexus, HELLO};

/// Appended to every case: what a desynchronised proxy would forward next.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";

/// A backend that records every byte each connection sends it, and answers only
/// a `GET /sentinel` (with 200), so a test can wait for a round trip that is
/// ordered after anything a bad request could have made nexushub forward.
struct Sink {
    backend: Backend,
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn sink() -> Sink {
    let conns: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let record = conns.clone();
    let backend = Backend::raw(move |mut sock, _| {
        use std::io::{Read, Write};
        let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
        let slot = {
            let mut all = record.lock().unwrap_or_else(|e| e.into_inner());
            all.push(Vec::new());
            all.len() - 1
        };
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while let Ok(n) = sock.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            record.lock().unwrap_or_else(|e| e.into_inner())[slot] = seen.clone();
            if seen.starts_with(b"GET /sentinel ") && seen.ends_with(b"\r\n\r\n") {
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                seen.clear();
            }
        }
    });
    Sink { backend, conns }
}

fn assert_refused(request: &[u8], status: u16) {
    let sink = sink();
    let nexus = Nexus::hello(sink.backend.addr());
    let mut c = nexus.client(HELLO);
    let mut wire = request.to_vec();
    wire.extend_from_slice(SMUGGLED);
    c.send(&wire);
    let r = c.response();
    assert_eq!(r.status(), status, "{}\n{}", r.summary(), nexus.dump());
    assert!(r.head.says_close(), "no Connection: close: {}", r.summary());
    let rest = c.expect_closed();
    assert!(
        rest.is_empty(),
        "bytes after the {status}: {:?}",
        String::from_utf8_lossy(&rest)
    );
    // A round trip through the same backend, after the refusal.
    let mut probe = nexus.client(HELLO);
    assert_eq!(
        probe.get(HELLO, "/sentinel").status(),
        200,
        "{}",
        nexus.dump()
    );
    let conns = sink.conns.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for bytes in conns {
        assert!(
            bytes.is_empty() || bytes.starts_with(b"GET /sentinel "),
            "the backend received {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

macro_rules! refused {
    ($($name:ident: $status:expr, $raw:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_refused($raw, $status);
            }
        )*
    };
}

refused! {
    // Both framing headers, in either order.
    cl_then_te: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    te_then_cl: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n";
    cl_zero_with_te: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    // Several or malformed Content-Length values.
    two_cl_different: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    two_cl_equal: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    cl_list: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5, 5\r\n\r\nhello";
    cl_plus_sign: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: +5\r\n\r\nhello";
    cl_negative: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: -1\r\n\r\n";
    cl_hex: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 0x5\r\n\r\nhello";
    cl_inner_space: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 1 2\r\n\r\n";
    cl_overflow: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 99999999999999999999\r\n\r\n";
    cl_empty: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length:\r\n\r\n";
    // Transfer-Encoding other than exactly `chunked`.
    te_gzip_chunked: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    te_chunked_twice: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n";
    te_two_fields: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    te_identity: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: identity\r\n\r\n";
    te_xchunked: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n";
    te_on_http10: 400, b"POST / HTTP/1.0\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    te_with_vertical_tab: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n";
    // Header syntax that parsers disagree on.
    te_obs_fold: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n";
    te_space_before_colon: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n";
    cl_space_before_colon: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length : 5\r\n\r\nhello";
    header_bare_lf: 400, b"GET / HTTP/1.1\nHost: hello.localhost\n\n";
    header_bare_cr: 400, b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-A: b\rc\r\n\r\n";
    header_nul: 400, b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-A: b\x00c\r\n\r\n";
    header_obs_fold: 400, b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-A: b\r\n c\r\n\r\n";
    header_control_byte: 400, b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-A: b\x01c\r\n\r\n";
    // Chunk lines.
    chunk_size_empty: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n";
    chunk_size_plus: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n";
    chunk_size_minus: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n";
    chunk_size_0x: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n";
    chunk_size_overflow: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n";
    chunk_size_overlong: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000005\r\nhello\r\n0\r\n\r\n";
    chunk_size_space: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\nhello\r\n0\r\n\r\n";
    chunk_line_bare_lf: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n";
    chunk_ext_bare_cr: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\rc\r\nhello\r\n0\r\n\r\n";
    chunk_ext_control: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01\r\nhello\r\n0\r\n\r\n";
    chunk_data_longer_than_size: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n";
    chunk_data_without_crlf: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n";
    last_chunk_bare_lf: 400, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\n\n";
    // Host.
    host_missing: 400, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n";
    host_repeated: 400, b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nHost: other.test.localhost\r\n\r\n";
    host_with_space: 400, b"GET / HTTP/1.1\r\nHost: hello localhost\r\n\r\n";
    host_with_userinfo: 400, b"GET / HTTP/1.1\r\nHost: user@hello.localhost\r\n\r\n";
    host_bad_port: 400, b"GET / HTTP/1.1\r\nHost: hello.localhost:99999\r\n\r\n";
    absolute_form_disagrees_with_host: 400, b"GET https://other.test.localhost/ HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    absolute_form_without_host: 400, b"GET https://hello.localhost/ HTTP/1.1\r\n\r\n";
    // Request lines.
    request_line_double_space: 400, b"GET  / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    request_line_lowercase_version: 400, b"GET / http/1.1\r\nHost: hello.localhost\r\n\r\n";
    request_line_http2: 400, b"GET / HTTP/2.0\r\nHost: hello.localhost\r\n\r\n";
    request_line_no_version: 400, b"GET /\r\nHost: hello.localhost\r\n\r\n";
    connect_method: 400, b"CONNECT hello.localhost:443 HTTP/1.1\r\nHost: hello.localhost:443\r\n\r\n";
    asterisk_with_get: 400, b"GET * HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    h2c_preface: 400, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // Targets an app could split differently from us.
    target_fragment: 400, b"GET /a#b HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    target_raw_utf8: 400, b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    target_raw_quote: 400, b"GET /a\"b HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    absolute_form_other_port: 400, b"GET https://hello.localhost:8443/ HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    // Answered by nexushub, never forwarded.
    trace_method: 405, b"TRACE / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n";
    unknown_expectation: 417, b"POST / HTTP/1.1\r\nHost: hello.localhost\r\nExpect: 100-continue2\r\nContent-Length: 5\r\n\r\nhello";
}

#[test]
fn underscore_framing_names_are_dropped_not_obeyed() {
    // `Transfer_Encoding` is no framing field to us, and an app that reads `_` as
    // `-` never sees it: the body is framed by Content-Length alone, both sides.
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"POST /u HTTP/1.1\r\nHost: hello.localhost\r\nTransfer_Encoding: chunked\r\nContent_Length: 0\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let seen = backend.only();
    let head = seen.head_text();
    assert!(!head.contains('_'), "{head}");
    assert_eq!(seen.headers_named("content-length"), ["5"], "{head}");
    assert_eq!((seen.body.as_slice(), seen.chunked), (&b"hello"[..], false));
    assert_eq!(c.get(HELLO, "/next").status(), 200);
}

#[test]
fn h2c_upgrade_request_is_served_as_http11_without_upgrade() {
    // `Upgrade: h2c` is never honoured: the request is forwarded as plain
    // HTTP/1.1 with Upgrade (and HTTP2-Settings, named by Connection) removed.
    let backend = Backend::echo_target();
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET /h2c HTTP/1.1\r\nHost: hello.localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status(), 200, "{}", r.summary());
    let seen = backend.only();
    assert!(
        !seen.has("upgrade") && !seen.has("http2-settings"),
        "{}",
        seen.head_text()
    );
}

/// A backend answering `raw` (then closing) must give the client a 502 and no
/// byte of the backend's answer.
fn assert_bad_gateway(raw: &'static [u8]) {
    let backend = Backend::http(move |_| crate::support::Reply::close(raw.to_vec()));
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    let r = c.get(HELLO, "/");
    assert_eq!(r.status(), 502, "{}\n{}", r.summary(), nexus.dump());
    assert!(
        r.text().contains("bad gateway"),
        "not nexushub's own 502: {}",
        r.summary()
    );
}

macro_rules! bad_gateway {
    ($($name:ident: $raw:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_bad_gateway($raw);
            }
        )*
    };
}

bad_gateway! {
    response_cl_and_te: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    response_two_cl: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    response_cl_list: b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello";
    response_te_gzip: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello";
    response_te_on_http10: b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    response_bare_lf: b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok";
    response_obs_fold: b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 2\r\n\r\nok";
    response_space_before_colon: b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok";
    response_nul_in_header: b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok";
    response_bad_status: b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok";
    response_switching_protocols: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    response_http2: b"HTTP/2 200\r\nContent-Length: 2\r\n\r\nok";
}

#[test]
fn response_bad_chunk_framing_before_any_byte_is_sent_gets_502() {
    assert_bad_gateway(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n+5\r\nworld\r\n0\r\n\r\n",
    );
}

#[test]
fn response_bad_chunk_framing_after_bytes_were_sent_cuts_the_client_connection() {
    // 256 KiB of good chunks reach the client first; then the framing breaks. The
    // head is already out, so the client must see a cut, never a last chunk.
    let backend = Backend::http(|_| {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..16 {
            out.extend_from_slice(b"4000\r\n");
            out.extend_from_slice(&[b'a'; 0x4000]);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"+5\r\nworld\r\n0\r\n\r\n");
        crate::support::Reply::close(out)
    });
    let nexus = Nexus::hello(backend.addr());
    let mut c = nexus.client(HELLO);
    c.send(b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n");
    let head = c.head();
    assert_eq!(head.status, 200, "{}", head.raw);
    match c.body(&head, "GET", &mut |_| {}) {
        Ok(n) => panic!("a broken chunked body arrived complete ({n} bytes)"),
        Err(e) => assert!(e.cause.is_close(), "expected a cut, got {e}"),
    }
}
