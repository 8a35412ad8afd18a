//! Mutation tests across the whole core: what one part parses, another writes,
//! and the first parses back the same.

use super::*;

/// xorshift64*: a tiny deterministic PRNG for the mutation tests below.
struct Prng(u64);
impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const SEED_REQUESTS: [&[u8]; 4] = [
    b"GET /a?b HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\nConnection: x, close\r\nx: 1\r\n\r\n",
    b"POST http://a.example:8/p HTTP/1.1\r\nHost: a.example:8\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    b"PUT / HTTP/1.0\r\nHost: [::1]:9\r\nContent-Length: 12\r\nX-Forwarded-For: 1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: b\r\nTE: trailers\r\nUpgrade: h2c\r\nCookie: a=\xc3\xa9\r\n\r\n",
];

/// Applies a few random byte edits, biased toward the bytes parsers care about.
fn mutate(rng: &mut Prng, seed: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"\r\n\0\t :;,/?*\"\\\x7f\x80\xff0aF";
    let mut buf = seed.to_vec();
    for _ in 0..(rng.next() % 4 + 1) {
        let at = (rng.next() as usize) % (buf.len() + 1);
        let byte = if rng.next() % 2 == 0 {
            INTERESTING[(rng.next() as usize) % INTERESTING.len()]
        } else {
            rng.next() as u8
        };
        match rng.next() % 3 {
            0 if at < buf.len() => buf[at] = byte,
            1 if at < buf.len() => {
                buf.remove(at);
            }
            _ => buf.insert(at, byte),
        }
    }
    buf
}

/// Every parsed request can be written (no injection assertion fires), and what
/// we write parses back to the same forwarding decision.
#[test]
fn mutated_requests_round_trip() {
    let mut rng = Prng(0x5eed);
    let ip = std::net::IpAddr::from([192, 0, 2, 1]);
    let mut parsed_count = 0;
    for i in 0..20_000 {
        let buf = mutate(&mut rng, SEED_REQUESTS[i % SEED_REQUESTS.len()]);
        let max = 64 + (rng.next() as usize % 256);
        let Ok(Some(req)) = parse_request(&buf, max) else {
            continue;
        };
        parsed_count += 1;
        assert!(req.head_len <= buf.len() && req.head_len <= max);
        let mut out = Vec::new();
        write_backend_request(&mut out, &req, ip);
        let again = match parse_request(&out, out.len()) {
            Ok(Some(r)) => r,
            other => panic!(
                "{:?} -> {:?}: {other:?}",
                String::from_utf8_lossy(&buf),
                String::from_utf8_lossy(&out)
            ),
        };
        assert_eq!(again.head_len, out.len());
        assert_eq!(
            (&again.method, &again.target, &again.host),
            (&req.method, &req.target, &req.host)
        );
        assert_eq!(
            (&again.host_header, &again.headers, again.body),
            (&req.host_header, &req.headers, req.body)
        );
    }
    assert!(
        parsed_count > 1000,
        "mutations too destructive: {parsed_count}"
    );
}

/// Prefixes of any input are never a different complete parse than the whole.
#[test]
fn mutated_request_prefixes_consistent() {
    let mut rng = Prng(0xfeed);
    for i in 0..2_000 {
        let buf = mutate(&mut rng, SEED_REQUESTS[i % SEED_REQUESTS.len()]);
        let whole = parse_request(&buf, 4096);
        for n in 0..buf.len() {
            match parse_request(&buf[..n], 4096) {
                Ok(None) => {}
                Ok(Some(r)) => assert_eq!(whole, Ok(Some(r))),
                Err(e) => assert_eq!(whole, Err(e)),
            }
        }
    }
}

/// Responses: total, and the written head parses back to the same framing.
#[test]
fn mutated_responses_round_trip() {
    const SEEDS: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: x\r\nx: 1\r\nSet-Cookie: a\r\n\r\n",
        b"HTTP/1.0 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 404 \r\nTransfer-Encoding: chunked\r\nKeep-Alive: 5\r\n\r\n",
    ];
    let mut rng = Prng(0xbeef);
    for i in 0..20_000 {
        let buf = mutate(&mut rng, SEEDS[i % SEEDS.len()]);
        let head_req = rng.next() % 4 == 0;
        let Ok(Some(resp)) = parse_response(&buf, 4096, head_req) else {
            continue;
        };
        for client in [Version::Http10, Version::Http11] {
            let framing = client_framing(&resp, client);
            let mut out = Vec::new();
            write_client_response_head(&mut out, &resp, framing, client, true);
            let again = match parse_response(&out, out.len(), head_req) {
                Ok(Some(r)) => r,
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&out)),
            };
            assert_eq!((again.status, &again.headers), (resp.status, &resp.headers));
            let want = match framing {
                ClientFraming::None
                    if head_req
                        || again.status == 204
                        || again.status == 304
                        || again.status < 200 =>
                {
                    ResponseBody::None
                }
                ClientFraming::None => again.body, // echoed length on a bodiless status
                ClientFraming::Length(n) => ResponseBody::Length(n),
                ClientFraming::Chunked => ResponseBody::Chunked,
                ClientFraming::Close => ResponseBody::UntilClose,
            };
            assert_eq!(again.body, want);
        }
    }
}

/// The chunked decoder is total over junk and never reports data past `consumed`.
#[test]
fn chunked_decoder_total_over_junk() {
    let mut rng = Prng(0xc0ffee);
    let seed: &[u8] = b"5;a=\"b\"\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n";
    for _ in 0..20_000 {
        let buf = mutate(&mut rng, seed);
        let mut dec = ChunkedDecoder::new(16);
        let mut pos = 0;
        while let Ok(p) = dec.feed(&buf[pos..]) {
            assert!(p.data.start <= p.data.end && p.data.end <= p.consumed);
            assert!(pos + p.consumed <= buf.len());
            pos += p.consumed;
            if p.done || p.consumed == 0 {
                break;
            }
        }
    }
}
