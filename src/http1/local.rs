//! Responses nexushub makes itself (400, 404, 421, 431, 502, 503, 504 ...): a short
//! plain-text body saying what happened, and the standard reason phrases.

use super::digits::push_decimal;
use super::headers::{self, write_content_length};

/// The standard reason phrase for `status`, or the name of its class when the code
/// has none of its own (so a status line never has an empty reason).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Unknown",
        },
    }
}

/// Writes a complete local response: status line, `Content-Type: text/plain;
/// charset=utf-8`, `Content-Length`, `Connection: close` when `!keep_alive`, the
/// `extra` fields (such as `Retry-After`), then `body_text` plus a newline.
///
/// With `head_only` the body is left out but `Content-Length` still describes it
/// (the answer to a HEAD request). 1xx, 204 and 304 never carry a body or a
/// `Content-Length` (RFC 9110 §8.6), whatever `body_text` is.
///
/// # Panics
/// If an `extra` field would inject a line (see [`super::write_header`]).
pub fn write_local_response(
    out: &mut Vec<u8>,
    status: u16,
    body_text: &str,
    extra: &[(&str, &str)],
    keep_alive: bool,
    head_only: bool,
) {
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
        write_content_length(out, body_text.len() as u64 + 1);
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    for (name, value) in extra {
        headers::write_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless && !head_only {
        out.extend_from_slice(body_text.as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(
        status: u16,
        body: &str,
        extra: &[(&str, &str)],
        keep_alive: bool,
        head_only: bool,
    ) -> String {
        let mut out = Vec::new();
        write_local_response(&mut out, status, body, extra, keep_alive, head_only);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn not_found_keep_alive() {
        assert_eq!(
            local(404, "no app for host a.example", &[], true, false),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 26\r\n\r\nno app for host a.example\n"
        );
    }

    #[test]
    fn bad_request_close() {
        assert_eq!(
            local(400, "missing Host", &[], false, false),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 13\r\nConnection: close\r\n\r\nmissing Host\n"
        );
    }

    #[test]
    fn unavailable_with_retry_after() {
        assert_eq!(
            local(
                503,
                "blog is starting",
                &[("Retry-After", "2")],
                true,
                false
            ),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 17\r\nRetry-After: 2\r\n\r\nblog is starting\n"
        );
    }

    #[test]
    fn head_only_keeps_length() {
        assert_eq!(
            local(421, "wrong host", &[], true, true),
            "HTTP/1.1 421 Misdirected Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 11\r\n\r\n"
        );
    }

    #[test]
    fn no_content_has_no_body() {
        assert_eq!(
            local(204, "ignored", &[], true, false),
            "HTTP/1.1 204 No Content\r\n\r\n"
        );
        assert_eq!(
            local(304, "ignored", &[], false, false),
            "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn utf8_body_length_in_bytes() {
        assert!(local(404, "café", &[], true, false).contains("Content-Length: 6\r\n"));
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(504), "Gateway Timeout");
        assert_eq!(reason_phrase(299), "Success");
        assert_eq!(reason_phrase(999), "Unknown");
    }

    #[test]
    #[should_panic(expected = "CR, LF or NUL")]
    fn extra_injection_panics() {
        local(503, "x", &[("Retry-After", "1\r\nX: y")], true, false);
    }
}
