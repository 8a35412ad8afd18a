//! The byte-level gate every message head passes before httparse sees it.
//!
//! httparse gets the grammar right but is lenient where a proxy must not be: it takes
//! a bare LF as a line end, skips any number of empty lines and has no size limit.
//! If we and the backend disagreed about where a line or the head ends, a client
//! could smuggle a second request past us. So this scan decides, alone and strictly,
//! where the head ends (the first CRLF CRLF) and refuses anything two parsers could
//! read differently: bare CR, bare LF, control bytes, obs-fold, whitespace before a
//! field's colon. It runs over at most `max_head_bytes` bytes.

/// Header fields parsed per head; one more is a 431 (request) or 502 (response).
pub const MAX_HEADERS: usize = 100;

/// Empty lines (CRLF) skipped before a start line. RFC 9112 §2.2 asks a server to
/// ignore at least one (some clients send a CRLF after a POST body); a few more
/// are harmless, an endless stream of them is not.
pub const MAX_LEADING_EMPTY_LINES: usize = 4;

/// Why the scan refused a head; mapped into the request and response errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// The head is not complete within the size cap.
    TooLarge,
    /// An LF not preceded by CR.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// A control byte other than HTAB, or DEL.
    ControlByte,
    /// A line starting with SP or HTAB (obsolete line folding).
    ObsFold,
    /// SP or HTAB before the start line.
    LeadingWhitespace,
    /// More than [`MAX_LEADING_EMPTY_LINES`] empty lines before the start line.
    TooManyEmptyLines,
    /// SP or HTAB between a field name and its colon.
    WhitespaceBeforeColon,
}

/// Where the head sits in the buffer: `buf[start..end]` is the start line through
/// the final CRLF CRLF; `end` is what the head used in total (leading CRLFs too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadSpan {
    /// First byte of the start line (after any skipped empty lines).
    pub start: usize,
    /// One past the final LF of the head.
    pub end: usize,
}

/// Finds the end of the head in `buf`, checking every byte before it.
///
/// `Ok(None)`: no complete head yet and `buf` is shorter than `max_head_bytes`, so
/// more bytes may still complete it. A head that cannot end within
/// `max_head_bytes` is [`HeadError::TooLarge`]. Errors are reported as soon as the
/// offending byte is in the buffer, even if the head is incomplete.
pub(crate) fn scan(buf: &[u8], max_head_bytes: usize) -> Result<Option<HeadSpan>, HeadError> {
    let limit = buf.len().min(max_head_bytes);
    let incomplete = || {
        if buf.len() >= max_head_bytes {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        }
    };

    let mut i = 0;
    let mut empty_lines = 0;
    loop {
        let Some(&b) = buf[..limit].get(i) else {
            return incomplete();
        };
        match b {
            b'\r' => {
                let Some(&next) = buf[..limit].get(i + 1) else {
                    return incomplete();
                };
                if next != b'\n' {
                    return Err(HeadError::BareCr);
                }
                empty_lines += 1;
                if empty_lines > MAX_LEADING_EMPTY_LINES {
                    return Err(HeadError::TooManyEmptyLines);
                }
                i += 2;
            }
            b'\n' => return Err(HeadError::BareLf),
            b' ' | b'\t' => return Err(HeadError::LeadingWhitespace),
            _ => break,
        }
    }

    let start = i;
    // The start line never begins with CR/SP/HTAB (the loop above saw to that), so
    // `line_start` on it cannot trigger the empty-line or obs-fold arms below.
    let mut first_line = true;
    let mut line_start = true;
    let mut colon_seen = false;
    let mut prev = b'\n';
    while let Some(&b) = buf[..limit].get(i) {
        match b {
            b'\r' => {
                let Some(&next) = buf[..limit].get(i + 1) else {
                    return incomplete();
                };
                if next != b'\n' {
                    return Err(HeadError::BareCr);
                }
                if line_start {
                    return Ok(Some(HeadSpan { start, end: i + 2 }));
                }
                first_line = false;
                line_start = true;
                colon_seen = false;
                prev = b'\n';
                i += 2;
                continue;
            }
            b'\n' => return Err(HeadError::BareLf),
            b' ' | b'\t' if line_start => return Err(HeadError::ObsFold),
            b':' if !first_line && !colon_seen => {
                if prev == b' ' || prev == b'\t' {
                    return Err(HeadError::WhitespaceBeforeColon);
                }
                colon_seen = true;
            }
            0x00..=0x08 | 0x0b..=0x1f | 0x7f => return Err(HeadError::ControlByte),
            _ => {}
        }
        prev = b;
        line_start = false;
        i += 1;
    }
    incomplete()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(buf: &[u8]) -> Result<Option<HeadSpan>, HeadError> {
        scan(buf, 1024)
    }

    #[test]
    fn complete_head() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(scan_all(buf), Ok(Some(HeadSpan { start: 0, end: 27 })));
    }

    #[test]
    fn head_without_fields() {
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\n\r\n"),
            Ok(Some(HeadSpan { start: 0, end: 18 }))
        );
    }

    #[test]
    fn leading_empty_lines_skipped() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(scan_all(buf), Ok(Some(HeadSpan { start: 4, end: 22 })));
    }

    #[test]
    fn too_many_leading_empty_lines() {
        let buf = b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(scan_all(buf), Err(HeadError::TooManyEmptyLines));
    }

    #[test]
    fn incomplete_is_none() {
        for buf in [
            &b""[..],
            b"\r",
            b"\r\n",
            b"GET",
            b"GET / HTTP/1.1\r",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r",
        ] {
            assert_eq!(scan_all(buf), Ok(None), "{buf:?}");
        }
    }

    #[test]
    fn bare_lf() {
        for buf in [
            &b"\n"[..],
            b"GET / HTTP/1.1\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        ] {
            assert_eq!(scan_all(buf), Err(HeadError::BareLf), "{buf:?}");
        }
    }

    #[test]
    fn bare_cr() {
        for buf in [
            &b"\rX"[..],
            b"GET / HTTP/1.1\rX",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\r",
        ] {
            assert_eq!(scan_all(buf), Err(HeadError::BareCr), "{buf:?}");
        }
    }

    #[test]
    fn control_bytes() {
        for buf in [
            &b"GET /\0 HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n",
            b"\x0bGET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(scan_all(buf), Err(HeadError::ControlByte), "{buf:?}");
        }
    }

    #[test]
    fn htab_in_value_allowed() {
        let buf = b"GET / HTTP/1.1\r\nX: a\tb\r\n\r\n";
        assert!(matches!(scan_all(buf), Ok(Some(_))));
    }

    #[test]
    fn obs_fold() {
        for buf in [
            &b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n",
            b"GET / HTTP/1.1\r\n X: a\r\n\r\n",
        ] {
            assert_eq!(scan_all(buf), Err(HeadError::ObsFold), "{buf:?}");
        }
    }

    #[test]
    fn leading_whitespace() {
        for buf in [&b" GET / HTTP/1.1\r\n\r\n"[..], b"\tGET", b"\r\n GET"] {
            assert_eq!(scan_all(buf), Err(HeadError::LeadingWhitespace), "{buf:?}");
        }
    }

    #[test]
    fn whitespace_before_colon() {
        for buf in [
            &b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
        ] {
            assert_eq!(
                scan_all(buf),
                Err(HeadError::WhitespaceBeforeColon),
                "{buf:?}"
            );
        }
    }

    #[test]
    fn colon_in_value_and_target_fine() {
        let buf = b"GET /a:b HTTP/1.1\r\nX: a : b\r\n\r\n";
        assert!(matches!(scan_all(buf), Ok(Some(_))));
    }

    #[test]
    fn size_cap_exact_fit() {
        let buf = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(
            scan(buf, buf.len()),
            Ok(Some(HeadSpan { start: 0, end: 18 }))
        );
        assert_eq!(scan(buf, buf.len() - 1), Err(HeadError::TooLarge));
    }

    #[test]
    fn size_cap_incomplete() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\n", 16), Err(HeadError::TooLarge));
        assert_eq!(scan(b"GET / HTTP/1.1\r\n", 17), Ok(None));
        assert_eq!(scan(b"", 0), Err(HeadError::TooLarge));
    }

    #[test]
    fn errors_past_the_cap_are_not_seen() {
        // Only the first `max` bytes are looked at: the verdict is the size.
        assert_eq!(scan(b"GET / HTTP/1.1\n", 4), Err(HeadError::TooLarge));
    }
}
