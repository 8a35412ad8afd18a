//! Header policy in one place: which fields frame the body, which are hop-by-hop and
//! dropped, and the one writer every serialised header goes through.
//!
//! Framing headers (`Content-Length`, `Transfer-Encoding`) are validated here and never
//! copied through: the writers regenerate them from the parsed framing, so a message
//! we forward can never carry both, or one that disagrees with the body we send.
//! [`write_header`] asserts that nothing it writes could end a line or the head: a
//! failure there is a bug in nexushub, not bad input, because every parsed value has
//! already been checked byte by byte.

use super::digits::{push_decimal, push_ip};
use super::version::Version;

/// Longest `Content-Length` we accept, in digits: 18 digits cannot overflow a u64.
pub(crate) const MAX_CONTENT_LENGTH_DIGITS: usize = 18;

/// Why a header field's meaning was refused (shared by requests and responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldError {
    /// `Content-Length` that is not 1 to 18 digits (lists included).
    InvalidContentLength,
    /// More than one `Content-Length` field.
    MultipleContentLength,
    /// `Transfer-Encoding` other than exactly one `chunked`.
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 message.
    TransferEncodingHttp10,
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthAndTransferEncoding,
    /// A `Connection` list element that is not a token.
    InvalidConnection,
}

/// What the fields of one head say about framing and the connection.
#[derive(Debug, Default)]
pub(crate) struct FieldSummary<'a> {
    /// The `Content-Length`, if one was sent.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked` was sent.
    pub chunked: bool,
    /// `Connection` lists `close`.
    pub close: bool,
    /// `Connection` lists `keep-alive`.
    pub keep_alive: bool,
    /// Every other option `Connection` lists: fields to drop as hop-by-hop.
    pub connection_names: Vec<&'a str>,
}

impl FieldSummary<'_> {
    /// Whether `name` was named in `Connection` (and so is hop-by-hop).
    pub fn names(&self, name: &str) -> bool {
        self.connection_names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Trims OWS from httparse's raw fields, keeping values as bytes: obs-text
/// (0x80-0xFF) is opaque data (RFC 9110 §5.5), passed on as it came. The head scan
/// has already refused every control byte but HTAB.
pub(crate) fn field_bytes<'a>(raw: &[httparse::Header<'a>]) -> Vec<(&'a str, &'a [u8])> {
    raw.iter().map(|h| (h.name, trim_ows(h.value))).collect()
}

/// Reads framing and `Connection` from the fields of one head. Values are bytes
/// (a request's may carry obs-text); the fields read here must be ASCII, so a byte
/// >= 0x80 in one of them is that field's error.
pub(crate) fn summarize<'a>(
    fields: &[(&'a str, &'a [u8])],
    version: Version,
) -> Result<FieldSummary<'a>, FieldError> {
    let mut summary = FieldSummary::default();
    let mut transfer_encodings = 0usize;
    for &(name, value) in fields {
        let ascii = |error| {
            std::str::from_utf8(value)
                .ok()
                .filter(|v| v.is_ascii())
                .ok_or(error)
        };
        if name.eq_ignore_ascii_case("content-length") {
            let value = ascii(FieldError::InvalidContentLength)?;
            if summary.content_length.is_some() {
                return Err(FieldError::MultipleContentLength);
            }
            summary.content_length =
                Some(parse_content_length(value).ok_or(FieldError::InvalidContentLength)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let value = ascii(FieldError::UnsupportedTransferEncoding)?;
            transfer_encodings += 1;
            // Only a lone `chunked`: a list ("gzip, chunked") or a second field is a
            // coding we would have to undo, and the classic smuggling vector.
            if transfer_encodings > 1 || !value.eq_ignore_ascii_case("chunked") {
                return Err(FieldError::UnsupportedTransferEncoding);
            }
            summary.chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            let value = ascii(FieldError::InvalidConnection)?;
            for option in value.split(',') {
                let option = option.trim_matches([' ', '\t']);
                if option.is_empty() {
                    continue; // RFC 9110 §5.6.1: empty list elements are allowed.
                }
                if !is_token(option) {
                    return Err(FieldError::InvalidConnection);
                }
                if option.eq_ignore_ascii_case("close") {
                    summary.close = true;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    summary.keep_alive = true;
                } else {
                    summary.connection_names.push(option);
                }
            }
        }
    }
    if summary.chunked && version == Version::Http10 {
        return Err(FieldError::TransferEncodingHttp10);
    }
    if summary.chunked && summary.content_length.is_some() {
        return Err(FieldError::ContentLengthAndTransferEncoding);
    }
    Ok(summary)
}

/// `1*DIGIT`, at most [`MAX_CONTENT_LENGTH_DIGITS`]; no sign, space or list.
pub(crate) fn parse_content_length(value: &str) -> Option<u64> {
    if value.is_empty()
        || value.len() > MAX_CONTENT_LENGTH_DIGITS
        || !value.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    value.parse().ok()
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) plus the framing fields our writers regenerate.
/// Dropped from requests and responses alike.
pub(crate) fn is_hop_by_hop_or_framing(name: &str) -> bool {
    const NAMES: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Request fields nexushub owns as the edge: the client may not set them for the app.
/// `X-Forwarded-For`, `-Proto`, `-Host` and `X-Real-IP` are written by
/// [`super::write_backend_request`]; any other `X-Forwarded-*` and `Forwarded` are
/// dropped so that an app never reads a client's claim as the edge's.
pub(crate) fn is_edge_owned(name: &str) -> bool {
    name.eq_ignore_ascii_case("forwarded")
        || name.eq_ignore_ascii_case("x-real-ip")
        || name
            .as_bytes()
            .get(..12)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"x-forwarded-"))
}

/// Request fields never passed to an app, whatever the app would do with them:
/// - a name with `_`: CGI, WSGI, Rack and others map `_` and `-` to the same
///   variable, so `X_Forwarded_For` or `X_Real_IP` would pass for what the edge
///   sets (nginx drops these by default too);
/// - `Proxy-Authorization`: credentials for a proxy, not for the app behind it.
pub(crate) fn is_never_forwarded(name: &str) -> bool {
    name.contains('_') || name.eq_ignore_ascii_case("proxy-authorization")
}

/// RFC 9110 `token`: one or more tchar.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Strips leading and trailing SP / HTAB.
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Appends `Name: value\r\n`.
///
/// # Panics
/// If `name` is not a token or `value` contains CR, LF or NUL: writing either would
/// let a value start a new header or end the head (injection). Parsed input cannot
/// get here unchecked, so a panic means a bug in nexushub.
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    write_header_bytes(out, name, value.as_bytes());
}

/// [`write_header`] for a value that may hold obs-text (bytes 0x80-0xFF), written
/// as it came.
///
/// # Panics
/// As [`write_header`].
pub(crate) fn write_header_bytes(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    assert!(is_token(name), "header name is not a token: {name:?}");
    assert!(
        !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
        "CR, LF or NUL in value of header {name}"
    );
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `Content-Length: n\r\n`.
pub(crate) fn write_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `X-Forwarded-For: IP\r\nX-Real-IP: IP\r\n`, an IPv4-mapped IPv6
/// address as IPv4. The values are digits, dots, colons and hex letters by
/// construction.
pub(crate) fn write_client_address(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    let ip = ip.to_canonical();
    out.extend_from_slice(b"X-Forwarded-For: ");
    push_ip(out, ip);
    out.extend_from_slice(b"\r\nX-Real-IP: ");
    push_ip(out, ip);
    out.extend_from_slice(b"\r\n");
}

/// Appends `Transfer-Encoding: chunked\r\n`.
pub(crate) fn write_chunked(out: &mut Vec<u8>) {
    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(
        fields: &[(&'static str, &'static str)],
    ) -> Result<FieldSummary<'static>, FieldError> {
        let fields: Vec<(&str, &[u8])> = fields.iter().map(|&(n, v)| (n, v.as_bytes())).collect();
        summarize(&fields, Version::Http11)
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length("0"), Some(0));
        assert_eq!(parse_content_length("0042"), Some(42));
        assert_eq!(
            parse_content_length("999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        for bad in [
            "",
            "+1",
            "-1",
            "1 ",
            " 1",
            "1,1",
            "1, 1",
            "0x10",
            "1e3",
            "1234567890123456789",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn two_content_lengths_even_equal() {
        let r = summary(&[("Content-Length", "5"), ("content-length", "5")]);
        assert_eq!(r.err(), Some(FieldError::MultipleContentLength));
    }

    #[test]
    fn transfer_encoding_variants() {
        assert!(summary(&[("Transfer-Encoding", "CHUNKED")]).is_ok_and(|s| s.chunked));
        for bad in [
            "gzip, chunked",
            "chunked, chunked",
            "identity",
            "",
            "chunked;q=1",
        ] {
            let r = summary(&[("Transfer-Encoding", bad)]);
            assert_eq!(
                r.err(),
                Some(FieldError::UnsupportedTransferEncoding),
                "{bad:?}"
            );
        }
        let r = summary(&[
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "chunked"),
        ]);
        assert_eq!(r.err(), Some(FieldError::UnsupportedTransferEncoding));
    }

    #[test]
    fn transfer_encoding_on_http10() {
        let r = summarize(&[("Transfer-Encoding", b"chunked")], Version::Http10);
        assert_eq!(r.err(), Some(FieldError::TransferEncodingHttp10));
    }

    #[test]
    fn content_length_with_transfer_encoding() {
        let r = summary(&[("Content-Length", "3"), ("Transfer-Encoding", "chunked")]);
        assert_eq!(r.err(), Some(FieldError::ContentLengthAndTransferEncoding));
    }

    #[test]
    fn connection_options() {
        let s = summary(&[
            ("Connection", "Close, ,X-Foo"),
            ("connection", "keep-alive,\tBar"),
        ]);
        let s = s.unwrap_or_default();
        assert!(s.close && s.keep_alive);
        assert_eq!(s.connection_names, ["X-Foo", "Bar"]);
        assert!(s.names("x-foo") && s.names("BAR") && !s.names("baz"));
    }

    #[test]
    fn connection_not_a_token() {
        for bad in ["a b", "\"close\"", "close;x", "a/b"] {
            let r = summary(&[("Connection", bad)]);
            assert_eq!(r.err(), Some(FieldError::InvalidConnection), "{bad:?}");
        }
    }

    #[test]
    fn hop_by_hop_names() {
        for name in [
            "Connection",
            "KEEP-ALIVE",
            "Proxy-Connection",
            "te",
            "Trailer",
            "Upgrade",
        ] {
            assert!(is_hop_by_hop_or_framing(name), "{name}");
        }
        for name in ["Trailers", "Content-Type", "Host", "TE2"] {
            assert!(!is_hop_by_hop_or_framing(name), "{name}");
        }
    }

    #[test]
    fn edge_owned_names() {
        for name in [
            "X-Forwarded-For",
            "x-forwarded-proto",
            "X-FORWARDED-HOST",
            "Forwarded",
            "X-Forwarded-",
        ] {
            assert!(is_edge_owned(name), "{name}");
        }
        for name in ["X-Forwarded", "Forwarded-For", "X-Real-IP-2"] {
            assert!(!is_edge_owned(name), "{name}");
        }
    }

    #[test]
    fn never_forwarded_names() {
        for name in [
            "X_Forwarded_For",
            "Transfer_Encoding",
            "x_real_ip",
            "_",
            "A_",
            "Proxy-Authorization",
            "PROXY-AUTHORIZATION",
        ] {
            assert!(is_never_forwarded(name), "{name}");
        }
        for name in ["X-Real-IP", "Authorization", "Proxy-Authenticate", "X-A"] {
            assert!(!is_never_forwarded(name), "{name}");
        }
    }

    #[test]
    fn framing_fields_with_obs_text() {
        let cases: [(&str, &[u8], FieldError); 3] = [
            ("Content-Length", b"1\xb2", FieldError::InvalidContentLength),
            (
                "Transfer-Encoding",
                b"chunked\xa0",
                FieldError::UnsupportedTransferEncoding,
            ),
            ("Connection", b"\xc3\xa9", FieldError::InvalidConnection),
        ];
        for (name, value, want) in cases {
            let r = summarize(&[(name, value)], Version::Http11);
            assert_eq!(r.err(), Some(want), "{name}");
        }
        let s = summarize(&[("X-A", b"\xff\x80")], Version::Http11);
        assert!(s.is_ok());
    }

    #[test]
    fn trims_ows() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn header_golden() {
        let mut out = Vec::new();
        write_header(&mut out, "X-A", "b\tc");
        write_header_bytes(&mut out, "X-B", b"caf\xe9");
        write_content_length(&mut out, 10);
        write_chunked(&mut out);
        write_client_address(&mut out, "::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(
            out,
            b"X-A: b\tc\r\nX-B: caf\xe9\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\
              X-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\n"
        );
    }

    #[test]
    #[should_panic(expected = "CR, LF or NUL")]
    fn header_injection_lf() {
        write_header(&mut Vec::new(), "X", "a\r\nSet-Cookie: x");
    }

    #[test]
    #[should_panic(expected = "CR, LF or NUL")]
    fn header_injection_nul() {
        write_header(&mut Vec::new(), "X", "a\0");
    }

    #[test]
    #[should_panic(expected = "not a token")]
    fn header_name_with_colon() {
        write_header(&mut Vec::new(), "X: y", "z");
    }
}
