//! A strict, streaming decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1), and
//! the few constants needed to write the encoding.
//!
//! httparse's `parse_chunk_size` accepts sizes up to `u64::MAX`, bare LF and
//! whitespace in places where a backend might read something else, so this is our
//! own. The decoder owns no payload: it reports which part of the caller's input is
//! body data, so the body streams through the caller's buffer. What it does buffer
//! is bounded: one chunk line (at most [`MAX_CHUNK_LINE_BYTES`]) or one trailer
//! line (within the trailer cap). Trailer fields are checked and discarded.
//!
//! ```text
//!  SizeLine ──size>0──> Data ──> DataCr ──> DataLf ──> SizeLine
//!     └──size=0──> Trailers ──empty line──> Done
//! ```

use std::fmt;
use std::ops::Range;

use super::digits::push_hex;
use super::headers::is_tchar;

/// Longest chunk-size line, extensions and CRLF included.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// Largest chunk size we accept (2^63 - 1): no length arithmetic can overflow.
pub const MAX_CHUNK_SIZE: u64 = i64::MAX as u64;

/// Most hex digits in a chunk size (leading zeros count).
const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// The CRLF that ends each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk and the end of the (empty) trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends the chunk-size line for a chunk of `len` bytes: `{len:x}\r\n`.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    push_hex(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// Why a chunked body was refused (400 from a client, 502 from a backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk size is missing or not hexadecimal.
    InvalidSize,
    /// More than 16 hex digits, or above [`MAX_CHUNK_SIZE`].
    SizeTooLarge,
    /// A chunk extension that is not `;name[=token|quoted-string]`.
    InvalidExtension,
    /// A chunk-size line longer than [`MAX_CHUNK_LINE_BYTES`].
    LineTooLong,
    /// A line ending in a bare LF, or a CR inside a line.
    InvalidLineEnding,
    /// Chunk data not followed by CRLF.
    MissingDataCrlf,
    /// A trailer line that is not a valid header field.
    InvalidTrailer,
    /// The trailer section exceeds its cap.
    TrailersTooLarge,
}

impl ChunkError {
    /// Short lowercase text for the log and an error body.
    pub fn reason(&self) -> &'static str {
        match self {
            ChunkError::InvalidSize => "invalid chunk size",
            ChunkError::SizeTooLarge => "chunk size too large",
            ChunkError::InvalidExtension => "invalid chunk extension",
            ChunkError::LineTooLong => "chunk size line too long",
            ChunkError::InvalidLineEnding => "invalid line ending in chunked body",
            ChunkError::MissingDataCrlf => "missing CRLF after chunk data",
            ChunkError::InvalidTrailer => "invalid trailer field",
            ChunkError::TrailersTooLarge => "trailers too large",
        }
    }
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChunkError {}

/// What one [`ChunkedDecoder::feed`] call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used (framing and data); continue from `input[consumed..]`.
    pub consumed: usize,
    /// The body payload found in this input (within `0..consumed`), possibly empty.
    pub data: Range<usize>,
    /// The last chunk and trailers are in: the body is complete.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SizeLine,
    Data { remaining: u64 },
    DataCr,
    DataLf,
    Trailers,
    Done,
}

/// Streaming chunked-body decoder. Feed it input as it arrives; it never needs the
/// same bytes twice.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// A chunk or trailer line that straddles two `feed` calls.
    line: Vec<u8>,
    max_trailer_bytes: usize,
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    /// A decoder that accepts at most `max_trailer_bytes` of trailer fields
    /// (their lines with CRLFs, not counting the final empty line).
    pub fn new(max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::SizeLine,
            line: Vec::new(),
            max_trailer_bytes,
            trailer_bytes: 0,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes a prefix of `input`; `data` (within `0..consumed`) is body payload
    /// found in it (possibly empty). Call again with `input[consumed..]`;
    /// `consumed == 0 && !done` means "need more input". Once done, nothing more is
    /// consumed: what follows the body (a pipelined message) stays with the caller.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, ChunkError> {
        let mut pos = 0;
        let mut data = 0..0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => break,
                // One data range per call: stop before a second chunk's data.
                State::Data { .. } if !data.is_empty() => break,
                State::Data { remaining } => {
                    if rest.is_empty() {
                        break;
                    }
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    data = pos..pos + n;
                    pos += n;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                }
                State::DataCr | State::DataLf => {
                    let Some(&b) = rest.first() else { break };
                    let (want, next) = if self.state == State::DataCr {
                        (b'\r', State::DataLf)
                    } else {
                        (b'\n', State::SizeLine)
                    };
                    if b != want {
                        return Err(ChunkError::MissingDataCrlf);
                    }
                    pos += 1;
                    self.state = next;
                }
                State::SizeLine | State::Trailers => {
                    if rest.is_empty() {
                        break;
                    }
                    pos += self.take_line(rest)?;
                }
            }
        }
        Ok(Progress {
            consumed: pos,
            data,
            done: self.state == State::Done,
        })
    }

    /// Consumes bytes of a size or trailer line from `rest` (non-empty); handles the
    /// line once its LF is in. Returns the bytes consumed.
    fn take_line(&mut self, rest: &[u8]) -> Result<usize, ChunkError> {
        let cap = if self.state == State::Trailers {
            // +2: the final empty line always fits; fields are checked against the
            // cap once complete.
            (self.max_trailer_bytes - self.trailer_bytes.min(self.max_trailer_bytes))
                .saturating_add(2)
        } else {
            MAX_CHUNK_LINE_BYTES
        };
        let too_long = if self.state == State::Trailers {
            ChunkError::TrailersTooLarge
        } else {
            ChunkError::LineTooLong
        };
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            // Without its LF the line is at least one byte longer than what we have.
            if self.line.len() + rest.len() >= cap {
                return Err(too_long);
            }
            // A CR may only be the last byte so far (its LF still to come).
            let cr_inside =
                self.line.last() == Some(&b'\r') || rest[..rest.len() - 1].contains(&b'\r');
            if cr_inside {
                return Err(ChunkError::InvalidLineEnding);
            }
            self.line.extend_from_slice(rest);
            return Ok(rest.len());
        };
        let used = lf + 1;
        if self.line.len() + used > cap {
            return Err(too_long);
        }
        if self.line.is_empty() {
            self.on_line(&rest[..used])?;
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(&rest[..used]);
            let result = self.on_line(&line);
            line.clear();
            self.line = line; // keep the allocation for the next straddling line
            result?;
        }
        Ok(used)
    }

    /// Handles one complete line (ending in LF) in state SizeLine or Trailers.
    fn on_line(&mut self, line: &[u8]) -> Result<(), ChunkError> {
        let content = line
            .strip_suffix(b"\r\n")
            .ok_or(ChunkError::InvalidLineEnding)?;
        if content.contains(&b'\r') {
            return Err(ChunkError::InvalidLineEnding);
        }
        if self.state == State::Trailers {
            if content.is_empty() {
                self.state = State::Done;
                return Ok(());
            }
            self.trailer_bytes += line.len();
            if self.trailer_bytes > self.max_trailer_bytes {
                return Err(ChunkError::TrailersTooLarge);
            }
            return check_trailer(content);
        }
        let size = parse_size_line(content)?;
        self.state = if size == 0 {
            State::Trailers
        } else {
            State::Data { remaining: size }
        };
        Ok(())
    }
}

/// `chunk-size [ chunk-ext ]` (without CRLF) -> the size.
fn parse_size_line(content: &[u8]) -> Result<u64, ChunkError> {
    let digits = content
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(content.len());
    if digits == 0 {
        return Err(ChunkError::InvalidSize);
    }
    if digits > MAX_CHUNK_SIZE_DIGITS {
        return Err(ChunkError::SizeTooLarge);
    }
    // At most 16 hex digits: fits a u64 without overflow.
    let size = content[..digits].iter().fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        (acc << 4) | u64::from(d)
    });
    if size > MAX_CHUNK_SIZE {
        return Err(ChunkError::SizeTooLarge);
    }
    let rest = &content[digits..];
    if rest
        .first()
        .is_some_and(|b| !matches!(b, b';' | b' ' | b'\t'))
    {
        return Err(ChunkError::InvalidSize); // "0x1", "1g": not a hex number
    }
    check_extensions(rest)?;
    Ok(size)
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, ext-val = token / quoted-string.
/// Whitespace is only allowed where BWS is, so a line may not end in whitespace.
fn check_extensions(mut s: &[u8]) -> Result<(), ChunkError> {
    let bad = ChunkError::InvalidExtension;
    loop {
        let (ws, after) = skip_bws(s);
        if after.is_empty() {
            // "1 " (trailing whitespace, nothing after it) is not in the grammar.
            return if ws { Err(bad) } else { Ok(()) };
        }
        let after = after.strip_prefix(b";").ok_or(bad)?;
        let (_, after) = skip_bws(after);
        let name_len = after.iter().take_while(|&&b| is_tchar(b)).count();
        if name_len == 0 {
            return Err(bad);
        }
        s = &after[name_len..];
        let (_, after_ws) = skip_bws(s);
        if let Some(value) = after_ws.strip_prefix(b"=") {
            let (_, value) = skip_bws(value);
            s = if let Some(quoted) = value.strip_prefix(b"\"") {
                skip_quoted_rest(quoted).ok_or(bad)?
            } else {
                let n = value.iter().take_while(|&&b| is_tchar(b)).count();
                if n == 0 {
                    return Err(bad);
                }
                &value[n..]
            };
        }
    }
}

/// Skips SP / HTAB; says whether there was any.
fn skip_bws(s: &[u8]) -> (bool, &[u8]) {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    (n > 0, &s[n..])
}

/// After an opening quote: skips `*( qdtext / quoted-pair ) DQUOTE`, returns the rest.
fn skip_quoted_rest(s: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    loop {
        match *s.get(i)? {
            b'"' => return Some(&s[i + 1..]),
            b'\\' => {
                let next = *s.get(i + 1)?;
                if !is_field_vchar_or_ws(next) {
                    return None;
                }
                i += 2;
            }
            b if is_field_vchar_or_ws(b) => i += 1,
            _ => return None,
        }
    }
}

/// HTAB / SP / VCHAR / obs-text: what a field value or quoted string may hold.
fn is_field_vchar_or_ws(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// A trailer line must be a well-formed header field (then it is dropped).
fn check_trailer(content: &[u8]) -> Result<(), ChunkError> {
    let colon = content
        .iter()
        .position(|&b| b == b':')
        .ok_or(ChunkError::InvalidTrailer)?;
    let (name, value) = (&content[..colon], &content[colon + 1..]);
    // A leading SP/HTAB (obs-fold) or whitespace before the colon fails here.
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(ChunkError::InvalidTrailer);
    }
    if !value.iter().all(|&b| is_field_vchar_or_ws(b)) {
        return Err(ChunkError::InvalidTrailer);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
            let (body, used) =
                decode_split(SAMPLE, || (split.next() % 9) as usize).unwrap_or_default();
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
}
