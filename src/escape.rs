//! The one escaping function for text that reaches a log line from outside:
//! request targets and hosts in the access log, every error and event line, and
//! the apps' output.
//!
//! A log is read on terminals and by line-oriented tools, so bytes that move the
//! cursor, end a line, recolour the screen or reorder what is shown are written
//! as text instead: an app printing `ESC [2J` or a CR must not rewrite what the
//! reader sees, a request target must not start a forged line, and bidi controls
//! must not make `/admin` look like something else. What is escaped:
//!
//! - C0 controls (0x00-0x1F, so ESC, CR and LF among them) and DEL (0x7F), as
//!   `\xNN`. TAB is kept: it only moves forward to the next stop, and the stack
//!   traces of Go and Java indent with it.
//! - C1 controls (U+0080-U+009F, NEL among them), the bidi controls (U+061C,
//!   U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and the line and paragraph
//!   separators (U+2028, U+2029), as `\u{NNNN}`.
//! - Bytes that are not UTF-8, as `\xNN` (always 80 or above, so they cannot be
//!   confused with an escaped ASCII control).
//!
//! A backslash is kept as is, so JSON log lines stay readable; text that merely
//! looks like an escape is therefore not told apart from one, which is harmless:
//! what a terminal or a line splitter acts on never gets through.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// True for a byte copied as is on the fast path: printable ASCII and TAB.
fn plain(b: u8) -> bool {
    matches!(b, 0x20..=0x7e | b'\t')
}

/// True for a character that must be written as an escape.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x08'
            | '\x0a'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

fn push_byte_escape(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 0xf)],
    ]);
}

/// Appends `bytes` to `out` with control characters, bidi controls and bytes
/// that are not UTF-8 escaped (see the module's doc). The result is UTF-8.
pub fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    // Almost every line is printable ASCII: one scan, one copy.
    if bytes.iter().all(|&b| plain(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut from = 0;
        for (at, c) in valid.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            out.extend_from_slice(&valid.as_bytes()[from..at]);
            from = at + c.len_utf8();
            match u8::try_from(c) {
                Ok(b) if b < 0x80 => push_byte_escape(out, b),
                _ => {
                    use std::io::Write;
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
            }
        }
        out.extend_from_slice(&valid.as_bytes()[from..]);
        for &b in chunk.invalid() {
            push_byte_escape(out, b);
        }
    }
}

/// [`push_escaped`] into a new `String`.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    push_escaped(&mut out, bytes);
    // Valid by construction; the lossy conversion only guards that claim.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::escaped;

    fn esc(b: &[u8]) -> String {
        escaped(b)
    }

    #[test]
    fn plain_ascii_is_unchanged() {
        assert_eq!(
            esc(b"GET /a?b=c&d=%1B HTTP/1.1"),
            "GET /a?b=c&d=%1B HTTP/1.1"
        );
    }

    #[test]
    fn tab_is_kept() {
        assert_eq!(esc(b"\tat main.go:12"), "\tat main.go:12");
    }

    #[test]
    fn esc_sequence() {
        assert_eq!(esc(b"\x1b[2Jgone"), "\\x1b[2Jgone");
    }

    #[test]
    fn cr_and_lf() {
        assert_eq!(esc(b"a\rb\nc"), "a\\x0db\\x0ac");
    }

    #[test]
    fn nul_and_bell() {
        assert_eq!(esc(b"\0\x07"), "\\x00\\x07");
    }

    #[test]
    fn del() {
        assert_eq!(esc(b"a\x7fb"), "a\\x7fb");
    }

    #[test]
    fn c1_controls() {
        assert_eq!(
            esc("\u{80}x\u{85}\u{9b}31m".as_bytes()),
            "\\u{80}x\\u{85}\\u{9b}31m"
        );
    }

    #[test]
    fn latin1_above_c1_is_kept() {
        assert_eq!(esc("\u{a0}café ©".as_bytes()), "\u{a0}café ©");
    }

    #[test]
    fn bidi_overrides_and_isolates() {
        assert_eq!(
            esc("/a\u{202e}gpj.exe\u{202c}".as_bytes()),
            "/a\\u{202e}gpj.exe\\u{202c}"
        );
        assert_eq!(
            esc("\u{2066}\u{2067}\u{2068}\u{2069}".as_bytes()),
            "\\u{2066}\\u{2067}\\u{2068}\\u{2069}"
        );
        assert_eq!(
            esc("\u{202a}\u{202b}\u{202d}".as_bytes()),
            "\\u{202a}\\u{202b}\\u{202d}"
        );
    }

    #[test]
    fn bidi_marks() {
        assert_eq!(
            esc("\u{200e}\u{200f}\u{61c}".as_bytes()),
            "\\u{200e}\\u{200f}\\u{61c}"
        );
    }

    #[test]
    fn line_and_paragraph_separators() {
        assert_eq!(esc("a\u{2028}b\u{2029}".as_bytes()), "a\\u{2028}b\\u{2029}");
    }

    #[test]
    fn neighbours_of_the_bidi_ranges_are_kept() {
        let kept = "\u{200d}\u{2030}\u{2065}\u{206a}\u{61b}";
        assert_eq!(esc(kept.as_bytes()), kept);
    }

    #[test]
    fn invalid_utf8_bytes() {
        assert_eq!(esc(b"a\xffb\xc3"), "a\\xffb\\xc3");
    }

    #[test]
    fn overlong_and_surrogate_encodings_are_bytes() {
        // An overlong `/` and an encoded surrogate are not UTF-8.
        assert_eq!(esc(b"\xc0\xaf"), "\\xc0\\xaf");
        assert_eq!(esc(b"\xed\xa0\x80"), "\\xed\\xa0\\x80");
    }

    #[test]
    fn encoded_c1_is_a_character_not_bytes() {
        assert_eq!(esc(b"\xc2\x9b"), "\\u{9b}");
    }

    #[test]
    fn backslash_and_quotes_are_kept() {
        assert_eq!(esc(br#"{"m":"a \"b\" \\x1b"}"#), r#"{"m":"a \"b\" \\x1b"}"#);
    }

    #[test]
    fn empty() {
        assert_eq!(esc(b""), "");
    }

    #[test]
    fn every_byte_alone_gives_printable_utf8() {
        for b in 0..=255u8 {
            let s = esc(&[b]);
            assert!(
                s.chars().all(|c| c == '\t' || !c.is_control()),
                "{b:#x} -> {s:?}"
            );
        }
    }
}
