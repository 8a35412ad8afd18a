//! Client request heads: parsing with our strict policy, and the HTTP/1.1 request we
//! send the backend in their place.
//!
//! A [`Request`] is already the forwarding decision: `target` is what the backend
//! gets, `headers` are exactly the end-to-end fields to pass on, `host` is the routing
//! key and `body` the framing the worker must read and re-frame. Everything the client
//! sent that only concerns this hop (Connection and what it names, framing, Expect,
//! Upgrade, TE, `Proxy-Authorization`), that the edge owns (`X-Forwarded-*`,
//! `Forwarded`, `X-Real-IP`) or that could pass for either (a name with `_`) is gone.
//! A WebSocket upgrade is the one exception, recorded in `upgrade` rather than kept:
//! [`write_backend_upgrade_request`] writes its two fields back (see `upgrade.rs`).

use std::fmt;
use std::net::IpAddr;

use super::head::{self, HeadError, MAX_HEADERS};
use super::headers::{self, FieldError};
use super::upgrade::{self, Upgrade};
use super::version::Version;
use crate::host;

/// How the request body is framed on the client side (and so towards the backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither `Content-Length` nor `Transfer-Encoding` was sent.
    None,
    /// `Content-Length: n` (also 0, which is forwarded as such).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed, validated request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method as sent (a token, case-sensitive).
    pub method: String,
    /// What the backend gets: origin-form path and query (`/` for an absolute-form
    /// target without a path), or `*` for `OPTIONS *`.
    pub target: String,
    /// The client's HTTP version.
    pub version: Version,
    /// The routing key: [`host::normalize`] of `Host` (empty only from
    /// [`parse_request_lenient`] without a usable Host).
    pub host: String,
    /// The `Host` to forward: as sent (OWS trimmed), or for an absolute-form target
    /// that target's authority (RFC 9112 §3.2.2).
    pub host_header: String,
    /// End-to-end fields to forward, in order, names as sent; values are bytes as
    /// sent (OWS trimmed), obs-text included.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Request body framing.
    pub body: BodyFraming,
    /// Whether the client connection may stay open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request that has a body: send
    /// `100 Continue` before reading it. (Without a body there is nothing to wait for,
    /// and HTTP/1.0 expectations are ignored, RFC 9110 §10.1.1.)
    pub expect_continue: bool,
    /// The protocol the request may switch to: set only for a bodiless HTTP/1.1
    /// `GET` whose `Upgrade` lists `websocket` and whose `Connection` lists
    /// `upgrade`. Its `Upgrade` and `Connection` are dropped like any hop-by-hop
    /// field either way; [`write_backend_upgrade_request`] writes them back.
    pub upgrade: Option<Upgrade>,
    /// Bytes of the buffer the head used, leading empty lines and final CRLF CRLF included.
    pub head_len: usize,
}

impl Request {
    /// `HEAD`: the response has no body whatever it declares.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Whether the method is idempotent (RFC 9110 §9.2.2): sending it twice has
    /// the effect of once. Only such a request, and only without a body, is
    /// retried on a fresh backend connection; `POST`, `PATCH` and methods we do
    /// not know never are (the app may have acted on the first). Case-sensitive:
    /// `get` is not `GET`.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method.as_str(),
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        )
    }

    /// Whether a body follows the head (a `Content-Length: 0` counts as none).
    pub fn has_body(&self) -> bool {
        match self.body {
            BodyFraming::None | BodyFraming::Length(0) => false,
            BodyFraming::Length(_) | BodyFraming::Chunked => true,
        }
    }
}

/// Why a request head was refused. Each maps to 400, 405, 417 or 431, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The head did not end within the size cap (431).
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields (431).
    TooManyHeaders,
    /// An LF not preceded by CR.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// A control byte other than HTAB in the head.
    ControlByte,
    /// A header line starting with whitespace (obsolete line folding).
    ObsFold,
    /// Whitespace before the request line.
    LeadingWhitespace,
    /// Too many empty lines before the request line.
    TooManyEmptyLines,
    /// Whitespace between a field name and its colon.
    WhitespaceBeforeColon,
    /// The method is not a token.
    InvalidMethod,
    /// The target is not origin-, absolute- (http/https) or asterisk-form, or has a
    /// byte RFC 3986 does not allow (a raw `#`, space, `"`, `<`, `{`, a byte >= 0x80 ...).
    InvalidTarget,
    /// `*` as the target of a method other than OPTIONS.
    AsteriskNotOptions,
    /// `CONNECT` (authority-form): we are not a forward proxy.
    ConnectUnsupported,
    /// `TRACE` (405): the app would echo the request, cookies and credentials
    /// included, to a script that could not read them otherwise (cross-site tracing).
    TraceNotAllowed,
    /// Not HTTP/1.0 or HTTP/1.1.
    InvalidVersion,
    /// The request line is malformed in some other way.
    InvalidRequestLine,
    /// A field name that is not a token, or a line without a colon.
    InvalidHeaderName,
    /// A field value httparse refuses.
    InvalidHeaderValue,
    /// No `Host` field.
    MissingHost,
    /// More than one `Host` field.
    MultipleHost,
    /// `Host` is not a valid host name.
    InvalidHost,
    /// An absolute-form target whose authority is another host or port than `Host`.
    HostMismatch,
    /// `Content-Length` that is not 1 to 18 digits.
    InvalidContentLength,
    /// More than one `Content-Length` field (even with equal values).
    MultipleContentLength,
    /// `Transfer-Encoding` other than exactly `chunked`.
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request.
    TransferEncodingHttp10,
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthAndTransferEncoding,
    /// `Expect` with anything but `100-continue` (417).
    UnsupportedExpect,
    /// A `Connection` list element that is not a token.
    InvalidConnection,
}

impl RequestError {
    /// The status nexushub answers with (then it closes the connection).
    pub fn status(&self) -> u16 {
        match self {
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::TraceNotAllowed => 405,
            RequestError::UnsupportedExpect => 417,
            _ => 400,
        }
    }

    /// Short lowercase text for the plain-text answer body and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::HeadTooLarge => "request head too large",
            RequestError::TooManyHeaders => "too many header fields",
            RequestError::BareLf => "bare LF in request head",
            RequestError::BareCr => "bare CR in request head",
            RequestError::ControlByte => "control character in request head",
            RequestError::ObsFold => "obsolete line folding",
            RequestError::LeadingWhitespace => "whitespace before request line",
            RequestError::TooManyEmptyLines => "too many empty lines before request line",
            RequestError::WhitespaceBeforeColon => "whitespace before colon in header field",
            RequestError::InvalidMethod => "invalid method",
            RequestError::InvalidTarget => "invalid request target",
            RequestError::AsteriskNotOptions => "* target is only allowed with OPTIONS",
            RequestError::ConnectUnsupported => "CONNECT is not supported",
            RequestError::TraceNotAllowed => {
                "TRACE is not forwarded (it would echo credentials back)"
            }
            RequestError::InvalidVersion => "unsupported HTTP version",
            RequestError::InvalidRequestLine => "malformed request line",
            RequestError::InvalidHeaderName => "invalid header field name",
            RequestError::InvalidHeaderValue => "invalid header field value",
            RequestError::MissingHost => "missing Host",
            RequestError::MultipleHost => "more than one Host",
            RequestError::InvalidHost => "invalid Host",
            RequestError::HostMismatch => "Host does not match the request target",
            RequestError::InvalidContentLength => "invalid Content-Length",
            RequestError::MultipleContentLength => "more than one Content-Length",
            RequestError::UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
            RequestError::TransferEncodingHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            RequestError::ContentLengthAndTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            RequestError::UnsupportedExpect => "only the 100-continue expectation is supported",
            RequestError::InvalidConnection => "invalid Connection",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for RequestError {}

impl From<HeadError> for RequestError {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::TooLarge => RequestError::HeadTooLarge,
            HeadError::BareLf => RequestError::BareLf,
            HeadError::BareCr => RequestError::BareCr,
            HeadError::ControlByte => RequestError::ControlByte,
            HeadError::ObsFold => RequestError::ObsFold,
            HeadError::LeadingWhitespace => RequestError::LeadingWhitespace,
            HeadError::TooManyEmptyLines => RequestError::TooManyEmptyLines,
            HeadError::WhitespaceBeforeColon => RequestError::WhitespaceBeforeColon,
        }
    }
}

impl From<FieldError> for RequestError {
    fn from(e: FieldError) -> Self {
        match e {
            FieldError::InvalidContentLength => RequestError::InvalidContentLength,
            FieldError::MultipleContentLength => RequestError::MultipleContentLength,
            FieldError::UnsupportedTransferEncoding => RequestError::UnsupportedTransferEncoding,
            FieldError::TransferEncodingHttp10 => RequestError::TransferEncodingHttp10,
            FieldError::ContentLengthAndTransferEncoding => {
                RequestError::ContentLengthAndTransferEncoding
            }
            FieldError::InvalidConnection => RequestError::InvalidConnection,
        }
    }
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: incomplete, read more (only while `buf.len() < max_head_bytes`).
/// A head that does not end within `max_head_bytes` bytes, or has more than
/// [`MAX_HEADERS`] fields, is a 431 error. The body, if any, starts at
/// `buf[request.head_len..]`.
pub fn parse_request(buf: &[u8], max_head_bytes: usize) -> Result<Option<Request>, RequestError> {
    parse(buf, max_head_bytes, HostPolicy::Required)
}

/// [`parse_request`] for `nexushub whoami`, which answers whatever it gets: a missing,
/// repeated or invalid `Host` (or one that disagrees with an absolute-form target) is
/// accepted; `host` is then the normalised first Host value or empty. Every other
/// check, framing above all, stays as strict. Never use this on the proxy path.
pub fn parse_request_lenient(
    buf: &[u8],
    max_head_bytes: usize,
) -> Result<Option<Request>, RequestError> {
    parse(buf, max_head_bytes, HostPolicy::Optional)
}

/// Whether a routable Host is required (the proxy) or merely reported (whoami).
#[derive(Clone, Copy, PartialEq, Eq)]
enum HostPolicy {
    Required,
    Optional,
}

/// The three target forms we accept, borrowed from the request line.
enum Target<'a> {
    /// `/path?query`
    Origin(&'a str),
    /// `*`
    Asterisk,
    /// `http://authority/path?query`; `path` is `""`, `"/..."` or `"?..."`.
    Absolute {
        /// The scheme's default port: 80 for http, 443 for https.
        default_port: u16,
        authority: &'a str,
        path: &'a str,
    },
}

/// The one request parser behind [`parse_request`] and [`parse_request_lenient`].
fn parse(
    buf: &[u8],
    max_head_bytes: usize,
    host_policy: HostPolicy,
) -> Result<Option<Request>, RequestError> {
    let Some(span) = head::scan(buf, max_head_bytes)? else {
        return Ok(None);
    };
    let head = &buf[span.start..span.end];
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut raw);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        // The scan found the end of the head, so httparse must too; if it does not,
        // the two disagree about the grammar and the head is not ours to guess at.
        Ok(_) => return Err(RequestError::InvalidRequestLine),
        Err(e) => return Err(map_httparse_error(e, head)),
    }
    let (Some(method), Some(raw_target), Some(minor)) =
        (parsed.method, parsed.path, parsed.version)
    else {
        return Err(RequestError::InvalidRequestLine);
    };
    let version = Version::from_minor(minor).ok_or(RequestError::InvalidVersion)?;

    if method == "CONNECT" {
        return Err(RequestError::ConnectUnsupported);
    }
    if method == "TRACE" {
        return Err(RequestError::TraceNotAllowed);
    }
    // httparse lets through bytes RFC 3986 has no place for; a raw `#` would start a
    // fragment (never sent, never forwarded) and a raw byte >= 0x80 or `"`, `<`,
    // `\`, `{` ... is read differently by different apps, and would reach our logs.
    if !raw_target.bytes().all(is_target_byte) {
        return Err(RequestError::InvalidTarget);
    }
    let target = classify_target(raw_target)?;
    if matches!(target, Target::Asterisk) && method != "OPTIONS" {
        return Err(RequestError::AsteriskNotOptions);
    }

    let fields = headers::field_bytes(parsed.headers);
    let summary = headers::summarize(&fields, version)?;

    let mut host_values = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|&(_, v)| std::str::from_utf8(v).ok());
    let first_host = host_values.next();
    let another_host = host_values.next().is_some();
    let (host, host_header) = match host_policy {
        HostPolicy::Required => {
            let value = first_host
                .ok_or(RequestError::MissingHost)?
                .ok_or(RequestError::InvalidHost)?;
            if another_host {
                return Err(RequestError::MultipleHost);
            }
            let host = host::normalize(value).map_err(|_| RequestError::InvalidHost)?;
            match target {
                Target::Absolute {
                    default_port,
                    authority,
                    ..
                } => {
                    check_authority(authority, default_port, &host, value)?;
                    // RFC 9112 §3.2.2: the target's authority is what the app is asked
                    // for; Host agrees with it, but may differ in case or default port.
                    (host, authority.to_owned())
                }
                _ => (host, value.to_owned()),
            }
        }
        HostPolicy::Optional => {
            let value = match target {
                Target::Absolute { authority, .. } if host::normalize(authority).is_ok() => {
                    authority
                }
                _ => first_host.flatten().unwrap_or(""),
            };
            let host = host::normalize(value).unwrap_or_default();
            (host, value.to_owned())
        }
    };

    let mut expect_continue = false;
    for &(_, value) in fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("expect"))
    {
        if !value.eq_ignore_ascii_case(b"100-continue") {
            return Err(RequestError::UnsupportedExpect);
        }
        // RFC 9110 §10.1.1: a 100-continue expectation on HTTP/1.0 is ignored.
        expect_continue = version == Version::Http11;
    }

    let kept = fields
        .iter()
        .filter(|&&(name, _)| {
            !(headers::is_hop_by_hop_or_framing(name)
                || headers::is_edge_owned(name)
                || headers::is_never_forwarded(name)
                || name.eq_ignore_ascii_case("host")
                || name.eq_ignore_ascii_case("expect")
                || summary.names(name))
        })
        .map(|&(n, v)| (n.to_owned(), v.to_vec()))
        .collect();

    let body = match (summary.chunked, summary.content_length) {
        (true, _) => BodyFraming::Chunked,
        (false, Some(n)) => BodyFraming::Length(n),
        (false, None) => BodyFraming::None,
    };
    let keep_alive = match version {
        Version::Http11 => !summary.close,
        Version::Http10 => summary.keep_alive && !summary.close,
    };
    let target = match target {
        Target::Origin(path) => path.to_owned(),
        Target::Asterisk => "*".to_owned(),
        Target::Absolute { path: "", .. } => "/".to_owned(),
        Target::Absolute { path, .. } if path.starts_with('?') => format!("/{path}"),
        Target::Absolute { path, .. } => path.to_owned(),
    };

    let has_body = !matches!(body, BodyFraming::None | BodyFraming::Length(0));
    let expect_continue = expect_continue && has_body;
    let upgrade = upgrade::requested(method, version, &fields, &summary, has_body);

    Ok(Some(Request {
        method: method.to_owned(),
        target,
        version,
        host,
        host_header,
        headers: kept,
        body,
        keep_alive,
        expect_continue,
        upgrade,
        head_len: span.end,
    }))
}

/// Whether `b` may appear in a request target: RFC 3986's characters (unreserved,
/// reserved, `%`) but `#`, which only starts a fragment. `[` and `]` are allowed
/// throughout: browsers send them raw in queries (`?a[]=1`).
fn is_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?[]@!$&'()*+,;=%".contains(&b)
}

/// Checks an absolute-form target's authority against `Host` (`host` is its
/// normalised name, `host_value` the field as sent): the same name, and the same
/// port once each missing port is read as the target scheme's default (RFC 9110
/// §4.2: `Host: a` next to `https://a:443/` is the same origin; next to
/// `http://a/` port 80 is meant, whatever the connection).
fn check_authority(
    authority: &str,
    default_port: u16,
    host: &str,
    host_value: &str,
) -> Result<(), RequestError> {
    let name = host::normalize(authority).map_err(|_| RequestError::InvalidTarget)?;
    let target_port = host::split(authority)
        .map_err(|_| RequestError::InvalidTarget)?
        .port
        .unwrap_or(default_port);
    let host_port = host::split(host_value)
        .map_err(|_| RequestError::InvalidHost)?
        .port
        .unwrap_or(default_port);
    if name != host || target_port != host_port {
        return Err(RequestError::HostMismatch);
    }
    Ok(())
}

/// Sorts a request target into the forms an origin server's proxy may receive.
fn classify_target(raw: &str) -> Result<Target<'_>, RequestError> {
    if raw.starts_with('/') {
        return Ok(Target::Origin(raw));
    }
    if raw == "*" {
        return Ok(Target::Asterisk);
    }
    let bytes = raw.as_bytes();
    let (scheme_len, default_port) = if bytes
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"http://"))
    {
        (7, 80)
    } else if bytes
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"https://"))
    {
        (8, 443)
    } else {
        return Err(RequestError::InvalidTarget);
    };
    // The scheme prefix is ASCII, so `scheme_len` is a char boundary.
    let rest = &raw[scheme_len..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(RequestError::InvalidTarget);
    }
    Ok(Target::Absolute {
        default_port,
        authority,
        path,
    })
}

/// Names what httparse tripped over; its `Token` error covers both the method and
/// the target, so look at which of the two is broken.
fn map_httparse_error(e: httparse::Error, head: &[u8]) -> RequestError {
    match e {
        httparse::Error::Token => {
            let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
            let line = &head[..line_end];
            let method_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
            if method_end == 0 || !line[..method_end].iter().all(|&b| headers::is_tchar(b)) {
                RequestError::InvalidMethod
            } else if line.iter().filter(|&&b| b == b' ').count() < 2 {
                RequestError::InvalidRequestLine
            } else {
                RequestError::InvalidTarget
            }
        }
        httparse::Error::Version => RequestError::InvalidVersion,
        httparse::Error::HeaderName => RequestError::InvalidHeaderName,
        httparse::Error::HeaderValue => RequestError::InvalidHeaderValue,
        httparse::Error::TooManyHeaders => RequestError::TooManyHeaders,
        httparse::Error::NewLine | httparse::Error::Status => RequestError::InvalidRequestLine,
    }
}

/// Writes the head nexushub sends the backend for `req` (HTTP/1.1, keep-alive) as a
/// plain request: never `Upgrade`, even when `req.upgrade` is set (the app answers
/// it as a request it cannot switch, as behind a proxy that does not tunnel).
///
/// Order: request line, `Host` as the client sent it, the kept fields, then
/// `X-Forwarded-For` and `X-Real-IP` (the client address, IPv4-mapped IPv6 shown
/// as IPv4; the client's own values were dropped, not appended to: nexushub is the
/// first proxy), `X-Forwarded-Proto: https`, `X-Forwarded-Host`, then exactly one
/// framing field (none for [`BodyFraming::None`]) and the empty line.
///
/// # Panics
/// If a field would inject a line (see [`super::write_header`]), or the method or
/// target could break the request line. Parsed requests never do.
pub fn write_backend_request(out: &mut Vec<u8>, req: &Request, client_ip: IpAddr) {
    write_backend(out, req, client_ip, None);
}

/// [`write_backend_request`] for a caller ready to tunnel: when `req.upgrade` is
/// set, `Upgrade: websocket` and `Connection: upgrade` follow `X-Forwarded-Host`
/// (`Sec-WebSocket-*` are among the kept fields, as sent); otherwise the same
/// bytes as [`write_backend_request`]. The backend's answer then goes through
/// [`super::switch_protocols`].
///
/// # Panics
/// As [`write_backend_request`].
pub fn write_backend_upgrade_request(out: &mut Vec<u8>, req: &Request, client_ip: IpAddr) {
    write_backend(out, req, client_ip, req.upgrade);
}

/// The writer behind both: `upgrade` is what to ask the backend to switch to.
fn write_backend(out: &mut Vec<u8>, req: &Request, client_ip: IpAddr, upgrade: Option<Upgrade>) {
    assert!(headers::is_token(&req.method), "method is not a token");
    assert!(
        !req.target.is_empty() && req.target.bytes().all(is_target_byte),
        "request target with a byte outside RFC 3986"
    );
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    headers::write_header(out, "Host", &req.host_header);
    for (name, value) in &req.headers {
        // The parser never keeps these; skipping them here too makes "exactly one
        // framing field, ours" hold even for a hand-built Request.
        let ours = headers::is_hop_by_hop_or_framing(name)
            || headers::is_edge_owned(name)
            || headers::is_never_forwarded(name)
            || name.eq_ignore_ascii_case("host");
        debug_assert!(
            !ours,
            "framing, hop-by-hop or edge-owned field kept: {name}"
        );
        if ours {
            continue;
        }
        headers::write_header_bytes(out, name, value);
    }
    headers::write_client_address(out, client_ip);
    headers::write_header(out, "X-Forwarded-Proto", "https");
    headers::write_header(out, "X-Forwarded-Host", &req.host_header);
    if let Some(upgrade) = upgrade {
        headers::write_header(out, "Upgrade", upgrade.token());
        headers::write_header(out, "Connection", "upgrade");
    }
    match req.body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => headers::write_content_length(out, n),
        BodyFraming::Chunked => headers::write_chunked(out),
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
