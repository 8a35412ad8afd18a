//! Chunked decoder tests: inputs fed whole, byte by byte and in random splits;
//! what is refused; the caps.

use super::*;

const TRAILER_CAP: usize = 1024;

/// Decodes `input` fed in pieces of the given sizes (the rest in one go); returns
/// the body and the bytes consumed in total.
fn decode_split(
    input: &[u8],
    mut sizes: impl FnMut() -> usize,
) -> Result<(Vec<u8>, usize), ChunkError> {
    let mut dec = ChunkedDecoder::new(TRAILER_CAP);
    let mut body = Vec::new();
    let mut delivered = 0; // input[..delivered] has "arrived from the network"
    let mut pos = 0;
    loop {
        let p = dec.feed(&input[pos..delivered])?;
        assert!(p.data.end <= p.consumed);
        assert_eq!(p.done, dec.is_done());
        body.extend_from_slice(&input[pos..delivered][p.data.clone()]);
        pos += p.consumed;
        if p.done {
            return Ok((body, pos));
        }
        if p.consumed == 0 {
            if delivered == input.len() {
                return Ok((body, pos)); // truncated input
            }
            delivered = (delivered + sizes().max(1)).min(input.len());
        }
    }
}

fn decode(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
    decode_split(input, || usize::MAX / 2)
}

fn decoded_body(input: &[u8]) -> Vec<u8> {
    match decode(input) {
        Ok((body, _)) => body,
        Err(e) => panic!("{:?}: {e}", String::from_utf8_lossy(input)),
    }
}

fn err(input: &[u8]) -> ChunkError {
    match decode(input) {
        Err(e) => e,
        Ok(r) => panic!("{:?}: {r:?}", String::from_utf8_lossy(input)),
    }
}

/// xorshift64*: tiny, deterministic, good enough to pick split points.
struct Prng(u64);
impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const SAMPLE: &[u8] =
    b"4\r\nWiki\r\n5;name=val;q=\"a \\\" b\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n\
        000\r\nExpires: never\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n";

fn sample_len() -> usize {
    SAMPLE.len() - b"GET / HTTP/1.1\r\n".len()
}

#[test]
fn sample_whole() {
    let (body, used) = decode(SAMPLE).unwrap_or_default();
    assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
    assert_eq!(used, sample_len());
}

#[test]
fn sample_byte_by_byte() {
    let (body, used) = decode_split(SAMPLE, || 1).unwrap_or_default();
    assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
    assert_eq!(used, sample_len());
}

#[test]
fn sample_random_splits() {
    let mut rng = Prng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..500 {
        let mut split = Prng(rng.next() | 1);
        let (body, used) = decode_split(SAMPLE, || (split.next() % 9) as usize).unwrap_or_default();
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(used, sample_len());
    }
}

#[test]
fn large_random_body_random_splits() {
    let mut rng = Prng(42);
    let payload: Vec<u8> = (0..20_000).map(|_| rng.next() as u8).collect();
    let mut encoded = Vec::new();
    let mut i = 0;
    while i < payload.len() {
        let n = ((rng.next() % 3000) as usize + 1).min(payload.len() - i);
        write_chunk_header(&mut encoded, n);
        encoded.extend_from_slice(&payload[i..i + n]);
        encoded.extend_from_slice(CHUNK_END);
        i += n;
    }
    encoded.extend_from_slice(LAST_CHUNK);
    for seed in 1..50u64 {
        let mut split = Prng(seed);
        let (body, used) =
            decode_split(&encoded, || (split.next() % 4000) as usize).unwrap_or_default();
        assert!(body == payload, "seed {seed}");
        assert_eq!(used, encoded.len());
    }
}

#[test]
fn empty_body() {
    assert_eq!(decode(b"0\r\n\r\n"), Ok((Vec::new(), 5)));
}

#[test]
fn feed_reports_need_more() {
    let mut dec = ChunkedDecoder::new(0);
    assert_eq!(
        dec.feed(b""),
        Ok(Progress {
            consumed: 0,
            data: 0..0,
            done: false
        })
    );
    assert_eq!(
        dec.feed(b"5\r"),
        Ok(Progress {
            consumed: 2,
            data: 0..0,
            done: false
        })
    );
    assert_eq!(
        dec.feed(b"\nab"),
        Ok(Progress {
            consumed: 3,
            data: 1..3,
            done: false
        })
    );
    assert_eq!(
        dec.feed(b""),
        Ok(Progress {
            consumed: 0,
            data: 0..0,
            done: false
        })
    );
    assert_eq!(
        dec.feed(b"cde\r\n0\r\n\r\nX"),
        Ok(Progress {
            consumed: 10,
            data: 0..3,
            done: true
        })
    );
    assert_eq!(
        dec.feed(b"X"),
        Ok(Progress {
            consumed: 0,
            data: 0..0,
            done: true
        })
    );
}

#[test]
fn one_data_range_per_call() {
    let mut dec = ChunkedDecoder::new(0);
    let input = b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n";
    let p = dec.feed(input);
    assert_eq!(
        p,
        Ok(Progress {
            consumed: 9,
            data: 3..4,
            done: false
        })
    );
    let p = dec.feed(&input[9..]);
    assert_eq!(
        p,
        Ok(Progress {
            consumed: 8,
            data: 0..1,
            done: true
        })
    );
}

#[test]
fn uppercase_hex_and_leading_zeros() {
    assert_eq!(
        decoded_body(b"0000000000000A\r\n0123456789\r\n0\r\n\r\n"),
        b"0123456789"
    );
}

#[test]
fn extensions_accepted() {
    for line in [
        &b"3;a"[..],
        b"3;a=b",
        b"3 ;a",
        b"3\t; a = b",
        b"3;a=\"\"",
        b"3;a=\"x\\\"y\";b;c=d",
        b"3;a=\"tab\there\"",
    ] {
        let mut input = line.to_vec();
        input.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
        assert_eq!(decoded_body(&input), b"abc", "{line:?}");
    }
}

#[test]
fn max_chunk_size_accepted_as_a_size() {
    let mut dec = ChunkedDecoder::new(0);
    let p = dec.feed(b"7fffffffffffffff\r\nab");
    assert_eq!(
        p,
        Ok(Progress {
            consumed: 20,
            data: 18..20,
            done: false
        })
    );
}

// ---- rejections ----

#[test]
fn reject_invalid_size() {
    for input in [
        &b"\r\n"[..],
        b"g\r\n",
        b" 1\r\n",
        b"+1\r\n",
        b"-1\r\n",
        b"0x1\r\n",
        b"1g\r\n",
        b";a\r\n",
    ] {
        assert_eq!(err(input), ChunkError::InvalidSize, "{input:?}");
    }
}

#[test]
fn reject_size_too_large() {
    for input in [
        &b"8000000000000000\r\n"[..],
        b"ffffffffffffffff\r\n",
        b"00000000000000001\r\n",
        b"10000000000000000\r\n",
    ] {
        assert_eq!(err(input), ChunkError::SizeTooLarge, "{input:?}");
    }
}

#[test]
fn reject_invalid_extension() {
    for input in [
        &b"1 \r\n"[..],
        b"1\t\r\n",
        b"1;\r\n",
        b"1;a \r\n",
        b"1;a=\r\n",
        b"1;a=b c\r\n",
        b"1;a=\"unterminated\r\n",
        b"1;a=\"x\"y\r\n",
        b"1 x\r\n",
        b"1 =a\r\n",
        b"1;a=b;\r\n",
        b"1;(\r\n",
        b"1;a=\"\x01\"\r\n",
    ] {
        assert_eq!(err(input), ChunkError::InvalidExtension, "{input:?}");
    }
}

#[test]
fn reject_line_too_long() {
    let mut input = b"1;a=".to_vec();
    input.resize(MAX_CHUNK_LINE_BYTES - 2, b'b');
    input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(decoded_body(&input), b"x"); // exactly at the cap
    let mut input = b"1;a=".to_vec();
    input.resize(MAX_CHUNK_LINE_BYTES - 1, b'b');
    input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(err(&input), ChunkError::LineTooLong);
    let endless = vec![b'0'; 10_000];
    assert_eq!(err(&endless), ChunkError::LineTooLong);
    assert_eq!(decode_split(&endless, || 7), Err(ChunkError::LineTooLong));
}

#[test]
fn reject_bad_line_endings() {
    for input in [
        &b"1\nx\r\n0\r\n\r\n"[..],
        b"1\r\rx",
        b"1\rx",
        b"1;a\r\r\n",
        b"0\r\n\n",
        b"0\r\nX: 1\n\r\n",
        b"0\r\nX: 1\rY",
    ] {
        assert_eq!(err(input), ChunkError::InvalidLineEnding, "{input:?}");
    }
}

#[test]
fn bare_cr_caught_across_splits() {
    assert_eq!(
        decode_split(b"1;a\rb\r\n", || 1),
        Err(ChunkError::InvalidLineEnding)
    );
}

#[test]
fn reject_missing_data_crlf() {
    for input in [
        &b"1\r\nxy\r\n"[..],
        b"1\r\nx\n",
        b"1\r\nx\r\r",
        b"1\r\nx\rx",
    ] {
        assert_eq!(err(input), ChunkError::MissingDataCrlf, "{input:?}");
    }
}

#[test]
fn reject_invalid_trailers() {
    for input in [
        &b"0\r\nNoColon\r\n\r\n"[..],
        b"0\r\n: v\r\n\r\n",
        b"0\r\nX : v\r\n\r\n",
        b"0\r\n X: v\r\n\r\n",
        b"0\r\nX: a\x00b\r\n\r\n",
        b"0\r\nX(: v\r\n\r\n",
    ] {
        assert_eq!(err(input), ChunkError::InvalidTrailer, "{input:?}");
    }
}

#[test]
fn trailers_cap() {
    let mut dec = ChunkedDecoder::new(10);
    assert!(dec.feed(b"0\r\nX: 12345\r\n\r\n").is_ok_and(|p| p.done)); // 10 bytes
    let mut dec = ChunkedDecoder::new(10);
    assert_eq!(
        dec.feed(b"0\r\nX: 123456\r\n\r\n"),
        Err(ChunkError::TrailersTooLarge)
    );
    let mut dec = ChunkedDecoder::new(10);
    assert_eq!(
        dec.feed(b"0\r\nX: 1\r\nY: 2\r\n\r\n"),
        Err(ChunkError::TrailersTooLarge)
    );
    let mut dec = ChunkedDecoder::new(0);
    assert!(dec.feed(b"0\r\n\r\n").is_ok_and(|p| p.done));
}

#[test]
fn trailers_cap_without_lf() {
    let mut dec = ChunkedDecoder::new(16);
    let mut input = b"0\r\nX: ".to_vec();
    input.resize(100, b'a');
    assert_eq!(dec.feed(&input), Err(ChunkError::TrailersTooLarge));
}

#[test]
fn chunk_header_golden() {
    let mut out = Vec::new();
    write_chunk_header(&mut out, 0);
    write_chunk_header(&mut out, 10);
    write_chunk_header(&mut out, 65536);
    assert_eq!(out, b"0\r\na\r\n10000\r\n");
}
