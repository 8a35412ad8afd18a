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
mod tests;
