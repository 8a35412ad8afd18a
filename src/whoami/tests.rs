//! `whoami` over loopback: what it echoes, the special paths, bodies and framing.

use super::*;
use nexushub::http1::{Response, ResponseBody};

/// FNV-1a 64 of `bytes` (what the `body:` line reports, as 16 hex digits).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a64::new();
    h.update(bytes);
    h.finish()
}

fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || serve(listener));
    addr
}

/// A test client that reads whole responses, keeping what follows for the next one.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads more; false at end of stream.
    fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    fn response(&mut self, head_request: bool) -> (Response, Vec<u8>) {
        let resp = loop {
            match http1::parse_response(&self.buf, 65536, head_request) {
                Ok(Some(r)) => break r,
                Ok(None) => assert!(self.read_more(), "eof in head"),
                Err(e) => panic!("bad response: {e}"),
            }
        };
        self.buf.drain(..resp.head_len);
        let body = match resp.body {
            ResponseBody::None => Vec::new(),
            ResponseBody::Length(n) => {
                while (self.buf.len() as u64) < n {
                    assert!(self.read_more(), "eof in body");
                }
                self.buf.drain(..n as usize).collect()
            }
            ResponseBody::Chunked => {
                let mut dec = ChunkedDecoder::new(1024);
                let mut body = Vec::new();
                loop {
                    let p = dec.feed(&self.buf).expect("chunked");
                    body.extend_from_slice(&self.buf[p.data.clone()]);
                    self.buf.drain(..p.consumed);
                    if p.done {
                        break body;
                    }
                    if p.consumed == 0 {
                        assert!(self.read_more(), "eof in chunked body");
                    }
                }
            }
            ResponseBody::UntilClose => {
                while self.read_more() {}
                std::mem::take(&mut self.buf)
            }
        };
        (resp, body)
    }

    fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
        resp.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn at_eof(&mut self) -> bool {
        !self.read_more() && self.buf.is_empty()
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

fn is_pattern(body: &[u8]) -> bool {
    body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8)
}

#[test]
fn fnv_known_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn pattern_is_continuous() {
    assert!(is_pattern(&PATTERN));
    assert_eq!(PATTERN_LEN % 251, 0);
}

#[test]
fn routes() {
    assert_eq!(Route::parse("/hello"), Route::Hello);
    assert_eq!(Route::parse("/hello/"), Route::Echo);
    assert_eq!(Route::parse("/bytes/0"), Route::Bytes(0));
    assert_eq!(Route::parse("/bytes/1073741824"), Route::Bytes(1 << 30));
    assert!(matches!(Route::parse("/bytes/1073741825"), Route::Bad(_)));
    assert!(matches!(Route::parse("/bytes/-1"), Route::Bad(_)));
    assert!(matches!(
        Route::parse("/bytes/99999999999999999999999"),
        Route::Bad(_)
    ));
    assert_eq!(Route::parse("/chunked/7"), Route::Chunked(7));
    assert_eq!(Route::parse("/status/404"), Route::Status(404));
    assert!(matches!(Route::parse("/status/100"), Route::Bad(_)));
    assert!(matches!(Route::parse("/status/1000"), Route::Bad(_)));
    assert_eq!(Route::parse("/sleep/999999"), Route::Sleep(MAX_SLEEP_MS));
    assert_eq!(Route::parse("/"), Route::Echo);
}

#[test]
fn keep_alive_twice() {
    let addr = start();
    let mut c = Client::connect(addr);
    for path in ["/a?x=1", "/b"] {
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: h.example\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
                .as_bytes(),
        );
        let (resp, body) = c.response(false);
        assert_eq!(resp.status, 200);
        assert!(resp.keep_alive);
        let body = text(&body);
        let local = c.stream.local_addr().expect("local addr");
        assert_eq!(
            body,
            format!(
                "GET {path} HTTP/1.1\nHost: h.example\nX-Forwarded-For: 1.2.3.4\npeer: {local}\n\
                     body: 0 bytes fnv1a64=cbf29ce484222325\n"
            )
        );
    }
}

#[test]
fn chunked_upload_checksum() {
    let addr = start();
    let mut c = Client::connect(addr);
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut req = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in payload.chunks(30_000) {
        http1::write_chunk_header(&mut req, piece.len());
        req.extend_from_slice(piece);
        req.extend_from_slice(http1::CHUNK_END);
    }
    req.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    c.send(&req);
    let (resp, body) = c.response(false);
    assert_eq!(resp.status, 200);
    let want = format!("body: 100000 bytes fnv1a64={:016x}\n", fnv1a64(&payload));
    assert!(text(&body).ends_with(&want), "{}", text(&body));
    assert!(text(&body).contains("Transfer-Encoding: chunked\n"));
}

#[test]
fn content_length_upload_with_expect() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    let (interim, _) = c.response(false);
    assert_eq!(interim.status, 100);
    c.send(b"hello world");
    let (resp, body) = c.response(false);
    assert_eq!(resp.status, 200);
    let want = format!("body: 11 bytes fnv1a64={:016x}\n", fnv1a64(b"hello world"));
    assert!(text(&body).ends_with(&want));
}

#[test]
fn bytes_one_million() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"GET /bytes/1000000 HTTP/1.1\r\nHost: h\r\n\r\n");
    let (resp, body) = c.response(false);
    assert_eq!(resp.content_length, Some(1_000_000));
    assert_eq!(Client::header(&resp, "content-type"), Some(BINARY));
    assert_eq!(body.len(), 1_000_000);
    assert!(is_pattern(&body));
}

#[test]
fn chunked_download() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"GET /chunked/300001 HTTP/1.1\r\nHost: h\r\n\r\n");
    let (resp, body) = c.response(false);
    assert_eq!(resp.body, ResponseBody::Chunked);
    assert_eq!(body.len(), 300_001);
    assert!(is_pattern(&body));
    c.send(b"GET /chunked/0 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response(false).1, b"");
}

#[test]
fn chunked_download_http10_closes() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"GET /chunked/1000 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n");
    let (resp, body) = c.response(false);
    assert_eq!(resp.body, ResponseBody::UntilClose);
    assert!(is_pattern(&body) && body.len() == 1000);
}

#[test]
fn pipelined_requests_in_one_write() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\nPOST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcHEAD /bytes/10 HTTP/1.1\r\nHost: h\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let (_, body) = c.response(false);
    assert_eq!(body, b"Hello, world!");
    let (_, body) = c.response(false);
    assert!(text(&body).starts_with("POST /p HTTP/1.1\n"));
    assert!(text(&body).contains("body: 3 bytes"));
    let (resp, body) = c.response(true);
    assert_eq!((resp.content_length, body.len()), (Some(10), 0));
    let (resp, _) = c.response(false);
    assert_eq!(resp.status, 204);
    assert!(!resp.keep_alive);
    assert!(c.at_eof());
}

#[test]
fn status_route() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"GET /status/503?x HTTP/1.1\r\nHost: h\r\n\r\n");
    let (resp, body) = c.response(false);
    assert_eq!(
        (resp.status, resp.reason.as_str()),
        (503, "Service Unavailable")
    );
    assert_eq!(body, b"503 Service Unavailable\n");
}

#[test]
fn http10_keep_alive_and_missing_host() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let (resp, body) = c.response(false);
    assert_eq!(Client::header(&resp, "connection"), None); // hop-by-hop: parsed, not kept
    assert!(resp.keep_alive);
    assert_eq!(body, b"Hello, world!");
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let (resp, body) = c.response(false);
    assert!(!resp.keep_alive);
    assert!(text(&body).starts_with("GET / HTTP/1.0\npeer: "));
    assert!(c.at_eof());
}

#[test]
fn sleep_waits() {
    let addr = start();
    let mut c = Client::connect(addr);
    let started = std::time::Instant::now();
    c.send(b"GET /sleep/50 HTTP/1.1\r\nHost: h\r\n\r\n");
    let (resp, body) = c.response(false);
    assert_eq!(resp.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(text(&body).starts_with("GET /sleep/50 HTTP/1.1\n"));
}

#[test]
fn malformed_request_gets_400_and_close() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n");
    let (resp, body) = c.response(false);
    assert_eq!(resp.status, 400);
    assert_eq!(body, b"more than one Content-Length\n");
    assert!(c.at_eof());
}

#[test]
fn bad_chunked_upload_gets_400() {
    let addr = start();
    let mut c = Client::connect(addr);
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    let (resp, body) = c.response(false);
    assert_eq!(resp.status, 400);
    assert_eq!(body, b"invalid chunk size\n");
}

#[test]
fn oversized_head_gets_431() {
    let addr = start();
    let mut c = Client::connect(addr);
    let mut req = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    req.resize(READ_BUF_BYTES + 10, b'a');
    // The server may answer and close before reading everything: ignore write errors.
    let _ = c.stream.write_all(&req);
    let (resp, _) = c.response(false);
    assert_eq!(resp.status, 431);
}
