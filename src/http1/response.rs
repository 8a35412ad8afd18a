//! Backend response heads: parsing with the same strictness as requests, deciding how
//! long the body is (RFC 9112 §6.3), and the head we send the client in their place.
//!
//! The backend is trusted to run the app, not to speak perfect HTTP: anything two
//! parsers could read differently is a 502 rather than something we pass on. The
//! client side is re-framed from scratch: `Content-Length` is re-added by the writer,
//! a chunked or close-delimited body becomes chunked for HTTP/1.1 clients (so their
//! connection survives) and close-delimited for HTTP/1.0 ones. A `101 Switching
//! Protocols` that opens a tunnel gets a head of its own,
//! [`write_client_switch_head`].

use std::fmt;

use super::digits::push_decimal;
use super::head::{self, HeadError, MAX_HEADERS};
use super::headers::{self, FieldError};
use super::local::reason_phrase;
use super::request::Request;
use super::upgrade::{self, Upgrade};
use super::version::Version;

/// How the response body is framed on the backend side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: a HEAD request, 1xx, 204 or 304.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs until the backend closes the connection.
    UntilClose,
}

/// A parsed, validated response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The backend's HTTP version.
    pub version: Version,
    /// Status code, 100..=999.
    pub status: u16,
    /// Reason phrase as sent (empty if it was empty or not valid UTF-8).
    pub reason: String,
    /// End-to-end fields to pass to the client, in order: hop-by-hop fields, those
    /// named in `Connection`, and `Content-Length` removed. Values are bytes as sent
    /// (OWS trimmed), obs-text included (a Latin-1 `Content-Disposition` filename).
    pub headers: Vec<(String, Vec<u8>)>,
    /// `Content-Length` as declared (echoed on HEAD and 304 answers).
    pub content_length: Option<u64>,
    /// How to read the body from the backend.
    pub body: ResponseBody,
    /// Whether the backend connection may be reused after this response.
    pub keep_alive: bool,
    /// What a `101` switches to: set only for an HTTP/1.1 101 whose `Upgrade` names
    /// exactly `websocket` and whose `Connection` lists `upgrade` (both dropped from
    /// `headers` like any hop-by-hop field). Whether that opens a tunnel depends on
    /// the request too: [`switch_protocols`].
    pub upgrade: Option<Upgrade>,
    /// Bytes of the buffer the head used, final CRLF CRLF included.
    pub head_len: usize,
}

impl Response {
    /// A 1xx interim response: the caller skips it, but for a 101, which either
    /// opens a tunnel or is an error ([`switch_protocols`]).
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// Why a backend response head was refused. Every one is a 502 for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The head did not end within the size cap.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    TooManyHeaders,
    /// An LF not preceded by CR.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// A control byte other than HTAB in the head.
    ControlByte,
    /// A header line starting with whitespace (obsolete line folding).
    ObsFold,
    /// Whitespace before the status line.
    LeadingWhitespace,
    /// Too many empty lines before the status line.
    TooManyEmptyLines,
    /// Whitespace between a field name and its colon.
    WhitespaceBeforeColon,
    /// Not HTTP/1.0 or HTTP/1.1.
    InvalidVersion,
    /// A status code outside 100..=999.
    InvalidStatus,
    /// The status line is malformed in some other way.
    InvalidStatusLine,
    /// A field name that is not a token, or a line without a colon.
    InvalidHeaderName,
    /// A field value httparse refuses.
    InvalidHeaderValue,
    /// `Content-Length` that is not 1 to 18 digits.
    InvalidContentLength,
    /// More than one `Content-Length` field.
    MultipleContentLength,
    /// `Transfer-Encoding` other than exactly `chunked`.
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 response.
    TransferEncodingHttp10,
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthAndTransferEncoding,
    /// A `Connection` list element that is not a token.
    InvalidConnection,
    /// A `101 Switching Protocols` to a request that did not ask to switch (or
    /// was forwarded without `Upgrade`): the backend had no business switching.
    UnexpectedUpgrade,
    /// A `101 Switching Protocols` to a WebSocket request that does not switch to
    /// WebSocket: another protocol, several, or no `Connection: upgrade`.
    UpgradeMismatch,
}

impl ResponseError {
    /// The status the client gets.
    pub fn status(&self) -> u16 {
        502
    }

    /// Short lowercase text for the log and the 502 body.
    pub fn reason(&self) -> &'static str {
        match self {
            ResponseError::HeadTooLarge => "response head too large",
            ResponseError::TooManyHeaders => "too many header fields in response",
            ResponseError::BareLf => "bare LF in response head",
            ResponseError::BareCr => "bare CR in response head",
            ResponseError::ControlByte => "control character in response head",
            ResponseError::ObsFold => "obsolete line folding in response",
            ResponseError::LeadingWhitespace => "whitespace before status line",
            ResponseError::TooManyEmptyLines => "too many empty lines before status line",
            ResponseError::WhitespaceBeforeColon => {
                "whitespace before colon in response header field"
            }
            ResponseError::InvalidVersion => "unsupported HTTP version in response",
            ResponseError::InvalidStatus => "invalid response status",
            ResponseError::InvalidStatusLine => "malformed status line",
            ResponseError::InvalidHeaderName => "invalid response header field name",
            ResponseError::InvalidHeaderValue => "invalid response header field value",
            ResponseError::InvalidContentLength => "invalid Content-Length in response",
            ResponseError::MultipleContentLength => "more than one Content-Length in response",
            ResponseError::UnsupportedTransferEncoding => {
                "unsupported Transfer-Encoding in response"
            }
            ResponseError::TransferEncodingHttp10 => "Transfer-Encoding in an HTTP/1.0 response",
            ResponseError::ContentLengthAndTransferEncoding => {
                "both Content-Length and Transfer-Encoding in response"
            }
            ResponseError::InvalidConnection => "invalid Connection in response",
            ResponseError::UnexpectedUpgrade => "unexpected 101 Switching Protocols",
            ResponseError::UpgradeMismatch => {
                "101 Switching Protocols to another protocol than asked for"
            }
        }
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ResponseError {}

impl From<HeadError> for ResponseError {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::TooLarge => ResponseError::HeadTooLarge,
            HeadError::BareLf => ResponseError::BareLf,
            HeadError::BareCr => ResponseError::BareCr,
            HeadError::ControlByte => ResponseError::ControlByte,
            HeadError::ObsFold => ResponseError::ObsFold,
            HeadError::LeadingWhitespace => ResponseError::LeadingWhitespace,
            HeadError::TooManyEmptyLines => ResponseError::TooManyEmptyLines,
            HeadError::WhitespaceBeforeColon => ResponseError::WhitespaceBeforeColon,
        }
    }
}

impl From<FieldError> for ResponseError {
    fn from(e: FieldError) -> Self {
        match e {
            FieldError::InvalidContentLength => ResponseError::InvalidContentLength,
            FieldError::MultipleContentLength => ResponseError::MultipleContentLength,
            FieldError::UnsupportedTransferEncoding => ResponseError::UnsupportedTransferEncoding,
            FieldError::TransferEncodingHttp10 => ResponseError::TransferEncodingHttp10,
            FieldError::ContentLengthAndTransferEncoding => {
                ResponseError::ContentLengthAndTransferEncoding
            }
            FieldError::InvalidConnection => ResponseError::InvalidConnection,
        }
    }
}

/// Parses a response head from the start of `buf`.
///
/// `Ok(None)`: incomplete, read more. `request_was_head` decides the body of a
/// response to HEAD (none, whatever it declares). 1xx responses are returned like any
/// other (body [`ResponseBody::None`]) for the caller to skip.
pub fn parse_response(
    buf: &[u8],
    max_head_bytes: usize,
    request_was_head: bool,
) -> Result<Option<Response>, ResponseError> {
    let Some(span) = head::scan(buf, max_head_bytes)? else {
        return Ok(None);
    };
    let head = &buf[span.start..span.end];
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut raw);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(ResponseError::InvalidStatusLine),
        Err(e) => {
            return Err(match e {
                httparse::Error::Version => ResponseError::InvalidVersion,
                httparse::Error::Status => ResponseError::InvalidStatus,
                httparse::Error::HeaderName => ResponseError::InvalidHeaderName,
                httparse::Error::HeaderValue => ResponseError::InvalidHeaderValue,
                httparse::Error::TooManyHeaders => ResponseError::TooManyHeaders,
                httparse::Error::Token | httparse::Error::NewLine => {
                    ResponseError::InvalidStatusLine
                }
            })
        }
    }
    let (Some(minor), Some(status), Some(reason)) = (parsed.version, parsed.code, parsed.reason)
    else {
        return Err(ResponseError::InvalidStatusLine);
    };
    let version = Version::from_minor(minor).ok_or(ResponseError::InvalidVersion)?;
    if !(100..=999).contains(&status) {
        return Err(ResponseError::InvalidStatus);
    }

    let fields = headers::field_bytes(parsed.headers);
    let summary = headers::summarize(&fields, version)?;
    let kept = fields
        .iter()
        .filter(|&&(name, _)| !(headers::is_hop_by_hop_or_framing(name) || summary.names(name)))
        .map(|&(n, v)| (n.to_owned(), v.to_vec()))
        .collect();
    let upgrade = upgrade::offered(status, version, &fields, &summary);

    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    let body = if bodiless || request_was_head {
        ResponseBody::None
    } else if summary.chunked {
        ResponseBody::Chunked
    } else if let Some(n) = summary.content_length {
        ResponseBody::Length(n)
    } else {
        ResponseBody::UntilClose
    };
    // A 1.0 backend may keep the connection when it says so, like a 1.0 client.
    let persistent = match version {
        Version::Http11 => !summary.close,
        Version::Http10 => summary.keep_alive && !summary.close,
    };

    Ok(Some(Response {
        version,
        status,
        reason: reason.to_owned(),
        headers: kept,
        content_length: summary.content_length,
        body,
        keep_alive: persistent && body != ResponseBody::UntilClose,
        upgrade,
        head_len: span.end,
    }))
}

/// What a backend's response head means for `req`, which the caller forwarded with
/// [`super::write_backend_upgrade_request`]:
/// - `Ok(None)`: not a 101, an ordinary response (or a 1xx to skip); no tunnel.
/// - `Ok(Some(upgrade))`: a 101 switching to what the request asked for: send
///   [`write_client_switch_head`], then tunnel, starting with the bytes that
///   followed each head.
/// - `Err`: a 101 the request did not ask for ([`ResponseError::UnexpectedUpgrade`])
///   or to something else ([`ResponseError::UpgradeMismatch`]): a 502, and the
///   backend connection is not reused.
///
/// A request forwarded with [`super::write_backend_request`] asked for nothing,
/// whatever its `upgrade`: its caller treats any 101 as `UnexpectedUpgrade`.
pub fn switch_protocols(req: &Request, resp: &Response) -> Result<Option<Upgrade>, ResponseError> {
    if resp.status != 101 {
        return Ok(None);
    }
    match (req.upgrade, resp.upgrade) {
        (None, _) => Err(ResponseError::UnexpectedUpgrade),
        (Some(asked), Some(switched)) if asked == switched => Ok(Some(switched)),
        (Some(_), _) => Err(ResponseError::UpgradeMismatch),
    }
}

/// How the body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body.
    None,
    /// `Content-Length: n`, the body passed through as is.
    Length(u64),
    /// Re-chunked (HTTP/1.1 clients, for chunked or close-delimited backend bodies).
    Chunked,
    /// Close-delimited (HTTP/1.0 clients, same case): the connection ends the body.
    Close,
}

/// Chooses the client-side framing for `resp` given the client's version.
pub fn client_framing(resp: &Response, client: Version) -> ClientFraming {
    match resp.body {
        ResponseBody::None => ClientFraming::None,
        ResponseBody::Length(n) => ClientFraming::Length(n),
        ResponseBody::Chunked | ResponseBody::UntilClose => match client {
            Version::Http11 => ClientFraming::Chunked,
            Version::Http10 => ClientFraming::Close,
        },
    }
}

/// Writes the response head for the client.
///
/// Always `HTTP/1.1` (our version); the backend's reason phrase, or the standard one
/// when it sent none. Then the kept fields, the framing field (for
/// [`ClientFraming::None`] the declared `Content-Length` is echoed, as HEAD and 304
/// answers carry it, except on 1xx and 204 which must not have one), and
/// `Connection: close` when `!keep_alive` or `Connection: keep-alive` for a
/// keep-alive HTTP/1.0 client. [`ClientFraming::Close`] forces `keep_alive` off.
pub fn write_client_response_head(
    out: &mut Vec<u8>,
    resp: &Response,
    framing: ClientFraming,
    client: Version,
    keep_alive: bool,
) {
    let keep_alive = keep_alive && framing != ClientFraming::Close;
    write_status_line_and_fields(out, resp);
    match framing {
        ClientFraming::Length(n) => headers::write_content_length(out, n),
        ClientFraming::Chunked => headers::write_chunked(out),
        ClientFraming::None => {
            let may_declare = !(100..200).contains(&resp.status) && resp.status != 204;
            if let (Some(n), true) = (resp.content_length, may_declare) {
                headers::write_content_length(out, n);
            }
        }
        ClientFraming::Close => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the `101 Switching Protocols` head that opens a tunnel to `upgrade` (as
/// [`switch_protocols`] decided): the status line as for any response, the
/// kept fields as the app sent them (`Sec-WebSocket-*` among them), then
/// `Upgrade: websocket` and `Connection: upgrade`. No framing field: after the
/// empty line the bytes are the new protocol's.
pub fn write_client_switch_head(out: &mut Vec<u8>, resp: &Response, upgrade: Upgrade) {
    debug_assert_eq!(resp.status, 101, "a switch head for another status");
    write_status_line_and_fields(out, resp);
    headers::write_header(out, "Upgrade", upgrade.token());
    headers::write_header(out, "Connection", "upgrade");
    out.extend_from_slice(b"\r\n");
}

/// `HTTP/1.1 STATUS REASON` (the backend's reason phrase, or the standard one when
/// it sent none or one we could not write), then the kept fields.
fn write_status_line_and_fields(out: &mut Vec<u8>, resp: &Response) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(resp.status));
    out.push(b' ');
    let reason_ok = !resp
        .reason
        .bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0);
    if resp.reason.is_empty() || !reason_ok {
        out.extend_from_slice(reason_phrase(resp.status).as_bytes());
    } else {
        out.extend_from_slice(resp.reason.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers {
        // Never kept by the parser; skipped again so the framing and connection
        // fields our callers add are the only ones.
        let framing_field = headers::is_hop_by_hop_or_framing(name);
        debug_assert!(!framing_field, "hop-by-hop or framing field kept: {name}");
        if framing_field {
            continue;
        }
        headers::write_header_bytes(out, name, value);
    }
}

#[cfg(test)]
mod tests;
