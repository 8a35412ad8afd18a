//! The properties nexushub's parsers must keep on any input: one plain function per
//! fuzz target, taking the fuzzer's raw bytes and panicking (an `assert!`) when a
//! property breaks.
//!
//! Shared by two crates through `#[path]`: each fuzz target in `fuzz/fuzz_targets/`
//! is one line calling its function here, and `tests/fuzz_seeds.rs` replays the
//! committed seeds in `fuzz/corpus/<target>/` through the same functions in plain
//! `cargo test`. So this file depends on nothing but `nexushub` and `std`, and must
//! pass the test binary's clippy.
//!
//! "No panic" is the floor, not the aim: each function states what must hold about
//! what a parser accepts (it re-serialises to something a strict parse reads back the
//! same; nothing we write carries both `Content-Length` and `Transfer-Encoding`, or a
//! CR, LF or NUL inside a field), and about how it decides (prefixes, size caps and
//! input splits never change a verdict). The checks of our own output use a small
//! independent line scanner ([`check_wire_head`]), not the parser under test.

use std::collections::HashSet;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nexushub::config::{self, AccessLog, AppConfig, AppRun, Config, ProxyConfig};
use nexushub::host;
use nexushub::http1::{
    self, client_framing, parse_request_lenient, reason_phrase, switch_protocols,
    write_backend_request, write_backend_upgrade_request, write_chunk_header,
    write_client_response_head, write_client_switch_head, BodyFraming, ChunkError, ChunkedDecoder,
    ClientFraming, Progress, Request, RequestError, Response, ResponseBody, ResponseError, Upgrade,
    Version, CHUNK_END, LAST_CHUNK,
};
use nexushub::{time, x509};

/// Head cap for the request and response targets: below libFuzzer's default
/// `-max_len` of 4096, so both complete heads and "too large" are reachable.
pub const HEAD_CAP_BYTES: usize = 2048;

/// Trailer cap when a pipeline walk decodes a chunked body.
const PIPELINE_TRAILER_CAP_BYTES: usize = 1024;

/// Messages checked per input when walking a pipeline.
const MAX_PIPELINED_MESSAGES: usize = 8;

/// Inputs up to this long get every prefix checked; longer ones a sample.
const ALL_PREFIXES_UP_TO_BYTES: usize = 256;

/// The config path handed to `config::parse` (relative paths resolve against its directory).
const CONFIG_PATH: &str = "/etc/nexushub/fuzz.conf";

// ---------------------------------------------------------------------------
// parse_request
// ---------------------------------------------------------------------------

/// Request heads, walked as a pipeline: every message start in `data` gets
/// [`check_request`]; bodies are skipped by their framing (chunked ones decoded).
pub fn parse_request(data: &[u8]) {
    let mut rest = data;
    for _ in 0..MAX_PIPELINED_MESSAGES {
        let Some(req) = check_request(rest) else {
            return;
        };
        let after = &rest[req.head_len..];
        let body_len = match req.body {
            BodyFraming::None => 0,
            BodyFraming::Length(n) => match usize::try_from(n) {
                Ok(n) if n <= after.len() => n,
                _ => return,
            },
            BodyFraming::Chunked => match decode_whole(after, PIPELINE_TRAILER_CAP_BYTES) {
                Outcome {
                    done: true,
                    consumed,
                    ..
                } => consumed,
                _ => return,
            },
        };
        rest = &after[body_len..];
        if rest.is_empty() {
            return;
        }
    }
}

/// All request properties for the message at the start of `buf`; returns the
/// request when one was accepted.
fn check_request(buf: &[u8]) -> Option<Request> {
    let whole = http1::parse_request(buf, HEAD_CAP_BYTES);

    // A prefix is "incomplete" until it holds the verdict of the whole, then keeps it.
    check_prefixes(buf, &whole, &Ok(None), |b| {
        http1::parse_request(b, HEAD_CAP_BYTES)
    });
    if let Ok(Some(req)) = &whole {
        assert_eq!(
            http1::parse_request(&buf[..req.head_len], HEAD_CAP_BYTES),
            whole
        );
        assert_eq!(
            http1::parse_request(&buf[..req.head_len - 1], HEAD_CAP_BYTES),
            Ok(None)
        );
    }

    // The cap: a smaller one gives the same verdict while the head fits, else 431.
    let cap = small_cap(buf);
    let capped = http1::parse_request(buf, cap);
    match &whole {
        _ if buf.len() < cap => assert_eq!(capped, whole, "cap {cap}"),
        Ok(Some(req)) if req.head_len <= cap => assert_eq!(capped, whole, "cap {cap}"),
        Ok(_) => assert_eq!(capped, Err(RequestError::HeadTooLarge), "cap {cap}"),
        Err(e) => assert!(
            capped == Err(*e) || capped == Err(RequestError::HeadTooLarge),
            "cap {cap}: {capped:?} vs {e:?}"
        ),
    }

    // The whoami parser is only laxer about Host.
    let lenient = parse_request_lenient(buf, HEAD_CAP_BYTES);
    match &whole {
        Ok(None) => {
            assert!(buf.len() < HEAD_CAP_BYTES, "Ok(None) at the cap");
            assert_eq!(lenient, Ok(None));
            None
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 405 | 417 | 431), "{e:?}");
            assert!(!e.to_string().is_empty());
            if let Ok(Some(lax)) = &lenient {
                // Only a Host problem may separate the two parsers.
                assert!(
                    matches!(
                        e,
                        RequestError::MissingHost
                            | RequestError::MultipleHost
                            | RequestError::InvalidHost
                            | RequestError::HostMismatch
                            | RequestError::InvalidTarget
                    ),
                    "lenient accepted what strict refused with {e:?}: {lax:?}"
                );
            } else {
                assert!(lenient.is_err(), "{lenient:?} vs {e:?}");
            }
            None
        }
        Ok(Some(req)) => {
            assert_eq!(&lenient, &whole);
            check_accepted_request(buf, req);
            Some(req.clone())
        }
    }
}

/// What an accepted request must look like, and its trip through the backend writer.
fn check_accepted_request(buf: &[u8], req: &Request) {
    assert!(req.head_len > 0 && req.head_len <= buf.len().min(HEAD_CAP_BYTES));
    assert!(is_token(&req.method), "method {:?}", req.method);
    assert!(
        req.target.starts_with('/') || (req.target == "*" && req.method == "OPTIONS"),
        "target {:?}",
        req.target
    );
    // RFC 3986's characters only, and never a fragment.
    assert!(
        req.target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?[]@!$&'()*+,;=%".contains(&b)),
        "target {:?}",
        req.target
    );
    assert!(req.method != "TRACE", "TRACE accepted");
    assert_eq!(host::normalize(&req.host_header).as_ref(), Ok(&req.host));
    assert_eq!(host::normalize(&req.host).as_ref(), Ok(&req.host));
    let head = &buf[..req.head_len];
    for (name, value) in &req.headers {
        assert!(is_token(name), "field name {name:?}");
        assert!(!is_dropped_request_field(name), "kept {name:?}");
        assert_value_clean(value);
        // Kept byte for byte, obs-text included: the value is in the head as sent.
        assert!(
            value.is_empty() || head.windows(value.len()).any(|w| w == value.as_slice()),
            "{name}: {value:?} is not what was sent"
        );
    }
    assert_value_clean(&req.host_header);
    if req.body == BodyFraming::Chunked {
        assert_eq!(req.version, Version::Http11, "chunked on HTTP/1.0");
    }
    if req.expect_continue {
        assert!(req.version == Version::Http11 && req.has_body());
    }

    // Re-serialised for the backend: a clean head, our framing field alone...
    let ip = client_ip(buf);
    let mut out = Vec::new();
    write_backend_request(&mut out, req, ip);
    let wire = check_wire_head(&out);
    assert_eq!(
        wire.start_line,
        format!("{} {} HTTP/1.1", req.method, req.target)
    );
    assert_eq!(wire.all("host"), [req.host_header.as_str()]);
    let forwarded_for = ip.to_canonical().to_string();
    assert_eq!(wire.all("x-forwarded-for"), [forwarded_for.as_str()]);
    assert_eq!(wire.all("x-real-ip"), [forwarded_for.as_str()]);
    for (name, _) in &wire.fields {
        assert!(!name.contains('_'), "forwarded a name with '_': {name}");
        assert!(
            !name.eq_ignore_ascii_case("proxy-authorization"),
            "forwarded Proxy-Authorization"
        );
    }
    assert_eq!(wire.all("x-forwarded-proto"), ["https"]);
    assert_eq!(wire.all("x-forwarded-host"), [req.host_header.as_str()]);
    assert_framing_fields(&wire, req.body);
    // Exactly Host, the kept fields in order, our four, and the framing field: an
    // injected line would show up here even if it were well-formed.
    let kept = &wire.fields[1..wire.fields.len().min(1 + req.headers.len())];
    assert!(same_fields(kept, &req.headers), "{:?}", wire.fields);
    let framing_fields = usize::from(req.body != BodyFraming::None);
    assert_eq!(
        wire.fields.len(),
        1 + req.headers.len() + 4 + framing_fields,
        "{:?}",
        wire.fields
    );

    // ... that a strict parse reads back to the same forwarding decision ...
    let again = match http1::parse_request(&out, out.len()) {
        Ok(Some(again)) => again,
        other => panic!("re-parse of {:?}: {other:?}", String::from_utf8_lossy(&out)),
    };
    assert_eq!(again.head_len, out.len());
    assert_eq!(
        (
            &again.method,
            &again.target,
            &again.host,
            &again.host_header
        ),
        (&req.method, &req.target, &req.host, &req.host_header)
    );
    assert_eq!((&again.headers, again.body), (&req.headers, req.body));
    assert_eq!(again.version, Version::Http11);
    assert!(again.keep_alive && !again.expect_continue);

    // ... and is a fixed point: writing it again gives the same bytes.
    let mut twice = Vec::new();
    write_backend_request(&mut twice, &again, ip);
    assert_eq!(twice, out);

    // A forwarded plain request never carries Upgrade (nor Connection).
    assert!(wire.all("upgrade").is_empty(), "{:?}", wire.fields);
    assert!(wire.all("connection").is_empty(), "{:?}", wire.fields);
    assert_eq!(again.upgrade, None);
    check_upgrade_request(head, req, &out, ip);
}

/// A request is an upgrade exactly when all the conditions hold, read here from the
/// input head on their own: `GET`, HTTP/1.1, no body, `Connection` lists `upgrade`,
/// `Upgrade` a well-formed list naming `websocket`. Only websocket is ever
/// tunnelled: the upgrade writer adds `Upgrade: websocket` and `Connection: upgrade`
/// to the plain request and nothing else, and the plain bytes when no upgrade.
fn check_upgrade_request(head: &[u8], req: &Request, plain: &[u8], ip: IpAddr) {
    let (start_line, fields) = input_head(head);
    let asks = start_line.starts_with("GET ")
        && start_line.ends_with(" HTTP/1.1")
        && !req.has_body()
        && lists(&fields, "connection", "upgrade")
        && protocols(&fields)
            .is_some_and(|list| list.iter().any(|p| p.eq_ignore_ascii_case("websocket")));
    let expected = asks.then_some(Upgrade::WebSocket);
    assert_eq!(req.upgrade, expected, "{start_line:?} {fields:?}");

    let mut out = Vec::new();
    write_backend_upgrade_request(&mut out, req, ip);
    if req.upgrade.is_none() {
        assert_eq!(out, plain, "the upgrade writer changed a plain request");
        return;
    }
    let wire = check_wire_head(&out);
    assert_eq!(wire.all("upgrade"), ["websocket"]);
    assert_eq!(wire.all("connection"), ["upgrade"]);
    let others: Vec<_> = wire
        .fields
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("upgrade") && !n.eq_ignore_ascii_case("connection")
        })
        .copied()
        .collect();
    assert_eq!(others, check_wire_head(plain).fields);
    let again = match http1::parse_request(&out, out.len()) {
        Ok(Some(again)) => again,
        other => panic!("re-parse of {:?}: {other:?}", String::from_utf8_lossy(&out)),
    };
    assert_eq!(
        (&again.headers, again.body, again.upgrade),
        (&req.headers, req.body, req.upgrade)
    );
    let mut twice = Vec::new();
    write_backend_upgrade_request(&mut twice, &again, ip);
    assert_eq!(twice, out);
}

/// Fields the parser must never keep for the backend: hop-by-hop, framing,
/// edge-owned, Host and Expect, a proxy's credentials, and any name with `_`
/// (which CGI-style apps read as the `-` name it mimics).
fn is_dropped_request_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    is_hop_by_hop_or_framing(&lower)
        || lower == "host"
        || lower == "expect"
        || lower == "forwarded"
        || lower == "x-real-ip"
        || lower == "proxy-authorization"
        || lower.contains('_')
        || lower.starts_with("x-forwarded-")
}

/// RFC 9110 §7.6.1 hop-by-hop fields plus the two framing fields (lowercase `name`).
fn is_hop_by_hop_or_framing(lower: &str) -> bool {
    matches!(
        lower,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// A client address derived from the input, so every shape gets written.
fn client_ip(buf: &[u8]) -> IpAddr {
    let h = fnv1a64(buf);
    match h % 4 {
        0 => IpAddr::V4(Ipv4Addr::from((h >> 8) as u32)),
        1 => IpAddr::V6(Ipv6Addr::from((u128::from(h) << 64) | u128::from(!h))),
        2 => IpAddr::V6(Ipv4Addr::from((h >> 8) as u32).to_ipv6_mapped()),
        _ => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

// ---------------------------------------------------------------------------
// parse_response
// ---------------------------------------------------------------------------

/// Response heads, walked as a pipeline (1xx then final, keep-alive sequences):
/// every message start gets [`check_response`] for both a HEAD and a GET request.
pub fn parse_response(data: &[u8]) {
    let mut rest = data;
    for _ in 0..MAX_PIPELINED_MESSAGES {
        let Some(resp) = check_response(rest) else {
            return;
        };
        let after = &rest[resp.head_len..];
        let body_len = match resp.body {
            ResponseBody::None => 0,
            ResponseBody::Length(n) => match usize::try_from(n) {
                Ok(n) if n <= after.len() => n,
                _ => return,
            },
            ResponseBody::Chunked => match decode_whole(after, PIPELINE_TRAILER_CAP_BYTES) {
                Outcome {
                    done: true,
                    consumed,
                    ..
                } => consumed,
                _ => return,
            },
            ResponseBody::UntilClose => return,
        };
        rest = &after[body_len..];
        if rest.is_empty() {
            return;
        }
    }
}

/// All response properties for the message at the start of `buf`; returns the
/// response (as an answer to GET) when one was accepted.
fn check_response(buf: &[u8]) -> Option<Response> {
    let whole = http1::parse_response(buf, HEAD_CAP_BYTES, false);
    check_prefixes(buf, &whole, &Ok(None), |b| {
        http1::parse_response(b, HEAD_CAP_BYTES, false)
    });

    let cap = small_cap(buf);
    let capped = http1::parse_response(buf, cap, false);
    match &whole {
        _ if buf.len() < cap => assert_eq!(capped, whole, "cap {cap}"),
        Ok(Some(resp)) if resp.head_len <= cap => assert_eq!(capped, whole, "cap {cap}"),
        Ok(_) => assert_eq!(capped, Err(ResponseError::HeadTooLarge), "cap {cap}"),
        Err(e) => assert!(
            capped == Err(*e) || capped == Err(ResponseError::HeadTooLarge),
            "cap {cap}: {capped:?} vs {e:?}"
        ),
    }

    // The answer to HEAD differs only in having no body.
    let to_head = http1::parse_response(buf, HEAD_CAP_BYTES, true);
    match (&whole, &to_head) {
        (Ok(Some(get)), Ok(Some(head))) => {
            assert_eq!(head.body, ResponseBody::None);
            let persistent = head.keep_alive;
            assert_eq!(
                get.keep_alive,
                persistent && get.body != ResponseBody::UntilClose
            );
            let mut expected = get.clone();
            expected.body = ResponseBody::None;
            expected.keep_alive = persistent;
            assert_eq!(head, &expected);
        }
        (get, head) => assert_eq!(get, head),
    }

    match whole {
        Ok(None) => {
            assert!(buf.len() < HEAD_CAP_BYTES, "Ok(None) at the cap");
            None
        }
        Err(e) => {
            assert_eq!(e.status(), 502);
            assert!(!e.to_string().is_empty());
            None
        }
        Ok(Some(resp)) => {
            assert!(resp.head_len > 0 && resp.head_len <= buf.len().min(HEAD_CAP_BYTES));
            check_switch(&buf[..resp.head_len], &resp);
            check_accepted_response(&resp, false);
            if let Ok(Some(head)) = &to_head {
                check_accepted_response(head, true);
            }
            Some(resp)
        }
    }
}

/// What an accepted response must look like, and its trip through the client writer
/// for each client version and keep-alive choice.
fn check_accepted_response(resp: &Response, request_was_head: bool) {
    assert!((100..=999).contains(&resp.status), "status {}", resp.status);
    for (name, value) in &resp.headers {
        assert!(is_token(name), "field name {name:?}");
        let lower = name.to_ascii_lowercase();
        assert!(!is_hop_by_hop_or_framing(&lower), "kept {name:?}");
        assert_value_clean(value);
    }
    match resp.body {
        ResponseBody::Chunked => {
            assert_eq!(resp.version, Version::Http11, "chunked on HTTP/1.0");
            assert_eq!(resp.content_length, None);
        }
        ResponseBody::Length(n) => assert_eq!(resp.content_length, Some(n)),
        ResponseBody::UntilClose => assert!(!resp.keep_alive),
        ResponseBody::None => {
            let bodiless = resp.is_informational() || resp.status == 204 || resp.status == 304;
            assert!(bodiless || request_was_head, "no body on {}", resp.status);
        }
    }

    for client in [Version::Http10, Version::Http11] {
        let framing = client_framing(resp, client);
        let expected_framing = match (resp.body, client) {
            (ResponseBody::None, _) => ClientFraming::None,
            (ResponseBody::Length(n), _) => ClientFraming::Length(n),
            (_, Version::Http11) => ClientFraming::Chunked,
            (_, Version::Http10) => ClientFraming::Close,
        };
        assert_eq!(framing, expected_framing);
        for keep_alive in [false, true] {
            check_client_head(resp, framing, client, keep_alive, request_was_head);
        }
    }
}

/// Requests a response is checked against: plain, WebSocket, and h2c (never tunnelled).
const SWITCH_REQUESTS: [&[u8]; 3] = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
];

/// A 101 opens a tunnel only when the request asked for websocket and the response
/// agrees (read here from the input head on its own: HTTP/1.1, `Connection` lists
/// `upgrade`, `Upgrade` is `websocket` alone); any other 101 is an error, anything
/// but a 101 an ordinary response. The 101 written for a tunnel is clean, carries
/// the app's fields, `Upgrade: websocket` and `Connection: upgrade`, and no framing.
fn check_switch(head: &[u8], resp: &Response) {
    let (start_line, fields) = input_head(head);
    let agrees = resp.status == 101
        && start_line.starts_with("HTTP/1.1 ")
        && lists(&fields, "connection", "upgrade")
        && protocols(&fields).is_some_and(
            |list| matches!(list.as_slice(), [one] if one.eq_ignore_ascii_case("websocket")),
        );
    assert_eq!(resp.upgrade.is_some(), agrees, "{start_line:?} {fields:?}");
    for raw in SWITCH_REQUESTS {
        let Ok(Some(req)) = http1::parse_request(raw, HEAD_CAP_BYTES) else {
            panic!("switch request {:?} refused", String::from_utf8_lossy(raw));
        };
        let verdict = switch_protocols(&req, resp);
        let expected = match (resp.status, req.upgrade) {
            (101, None) => Err(ResponseError::UnexpectedUpgrade),
            (101, Some(Upgrade::WebSocket)) if agrees => Ok(Some(Upgrade::WebSocket)),
            (101, Some(_)) => Err(ResponseError::UpgradeMismatch),
            _ => Ok(None),
        };
        assert_eq!(verdict, expected, "{:?}", String::from_utf8_lossy(raw));
        let Ok(Some(upgrade)) = verdict else {
            continue;
        };
        let mut out = Vec::new();
        write_client_switch_head(&mut out, resp, upgrade);
        let wire = check_wire_head(&out);
        let reason = if resp.reason.is_empty() {
            reason_phrase(101)
        } else {
            resp.reason.as_str()
        };
        assert_eq!(wire.start_line, format!("HTTP/1.1 101 {reason}"));
        let n = resp.headers.len();
        assert_eq!(wire.fields.len(), n + 2, "{:?}", wire.fields);
        assert!(
            same_fields(&wire.fields[..n], &resp.headers),
            "{:?}",
            wire.fields
        );
        assert_eq!(
            wire.fields[n..],
            [
                ("Upgrade", &b"websocket"[..]),
                ("Connection", &b"upgrade"[..])
            ]
        );
    }
}

/// One written client head: clean, framed once, and read back the same.
fn check_client_head(
    resp: &Response,
    framing: ClientFraming,
    client: Version,
    keep_alive: bool,
    request_was_head: bool,
) {
    let mut out = Vec::new();
    write_client_response_head(&mut out, resp, framing, client, keep_alive);
    let wire = check_wire_head(&out);
    let reason = if resp.reason.is_empty() {
        reason_phrase(resp.status)
    } else {
        resp.reason.as_str()
    };
    assert_eq!(
        wire.start_line,
        format!("HTTP/1.1 {} {reason}", resp.status)
    );

    let persistent = keep_alive && framing != ClientFraming::Close;
    let connection = match (persistent, client) {
        (false, _) => vec!["close"],
        (true, Version::Http10) => vec!["keep-alive"],
        (true, Version::Http11) => vec![],
    };
    assert_eq!(wire.all("connection"), connection);

    // The framing field we chose, alone; on a bodiless answer the declared length.
    let may_declare = !resp.is_informational() && resp.status != 204;
    let declared = match framing {
        ClientFraming::Length(n) => Some(n),
        ClientFraming::None if may_declare => resp.content_length,
        ClientFraming::None | ClientFraming::Chunked | ClientFraming::Close => None,
    };
    let declared_text = declared.map(|n| n.to_string());
    assert_eq!(
        wire.all("content-length"),
        declared_text.as_deref().into_iter().collect::<Vec<_>>()
    );
    let chunked = if framing == ClientFraming::Chunked {
        vec!["chunked"]
    } else {
        vec![]
    };
    assert_eq!(wire.all("transfer-encoding"), chunked);
    // Exactly the kept fields in order, then ours: the framing field and Connection.
    let kept = &wire.fields[..wire.fields.len().min(resp.headers.len())];
    assert!(same_fields(kept, &resp.headers), "{:?}", wire.fields);
    let ours = usize::from(declared.is_some()) + chunked.len() + connection.len();
    assert_eq!(
        wire.fields.len(),
        resp.headers.len() + ours,
        "{:?}",
        wire.fields
    );

    let again = match http1::parse_response(&out, out.len(), request_was_head) {
        Ok(Some(again)) => again,
        other => panic!("re-parse of {:?}: {other:?}", String::from_utf8_lossy(&out)),
    };
    assert_eq!(again.head_len, out.len());
    assert_eq!(
        (again.status, again.reason.as_str(), &again.headers),
        (resp.status, reason, &resp.headers)
    );
    let body = match framing {
        ClientFraming::None => ResponseBody::None,
        ClientFraming::Length(n) => ResponseBody::Length(n),
        ClientFraming::Chunked => ResponseBody::Chunked,
        ClientFraming::Close => ResponseBody::UntilClose,
    };
    assert_eq!(again.body, body);
    assert_eq!(again.content_length, declared);
    assert_eq!(again.keep_alive, persistent);

    // A fixed point: the re-parsed head writes the same bytes.
    let mut twice = Vec::new();
    let framing_again = client_framing(&again, client);
    write_client_response_head(&mut twice, &again, framing_again, client, keep_alive);
    assert_eq!(
        String::from_utf8_lossy(&twice),
        String::from_utf8_lossy(&out)
    );
}

// ---------------------------------------------------------------------------
// decode_chunked
// ---------------------------------------------------------------------------

/// The chunked decoder: the same outcome whatever the splits of the input, never
/// a stall on non-empty input, never a byte past the end of the body, and what it
/// decodes survives our own encoder.
pub fn decode_chunked(data: &[u8]) {
    let h = fnv1a64(data);
    let trailer_cap = [0, 64, 1024][(h % 3) as usize];

    let whole = decode_with(data, trailer_cap, || usize::MAX);
    let mut schedules = vec![("byte by byte", decode_with(data, trailer_cap, || 1))];
    for seed in [h, h.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15] {
        let mut rng = Prng::new(seed);
        let outcome = decode_with(data, trailer_cap, || {
            // Mostly short pieces, now and then a long one.
            if rng.next() & 7 == 0 {
                (rng.next() % 4096) as usize
            } else {
                (rng.next() % 16) as usize
            }
        });
        schedules.push(("random splits", outcome));
    }
    for (how, split) in &schedules {
        assert_same_outcome(&whole, split, how);
    }

    match &whole {
        Outcome { error: Some(_), .. } => {}
        Outcome {
            done: false,
            consumed,
            ..
        } => assert_eq!(*consumed, data.len(), "unfinished body left input unread"),
        Outcome {
            done: true,
            consumed,
            body,
            ..
        } => {
            // The body ends where the decoder said: what follows changes nothing.
            let exact = decode_with(&data[..*consumed], trailer_cap, || usize::MAX);
            assert_eq!(exact, whole);
            assert!(body.len() <= *consumed);
        }
    }

    if whole.error.is_none() {
        check_reencoding(&whole.body, h);
    }
}

/// Encodes `body` with our chunk writer (chunk sizes from `seed`) and decodes it back.
fn check_reencoding(body: &[u8], seed: u64) {
    let mut rng = Prng::new(seed ^ 0x5eed);
    let mut encoded = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let n = ((rng.next() % 64) as usize + 1).min(body.len() - at);
        write_chunk_header(&mut encoded, n);
        encoded.extend_from_slice(&body[at..at + n]);
        encoded.extend_from_slice(CHUNK_END);
        at += n;
    }
    encoded.extend_from_slice(LAST_CHUNK);
    let expected = Outcome {
        body: body.to_vec(),
        consumed: encoded.len(),
        done: true,
        error: None,
    };
    assert_eq!(decode_with(&encoded, 0, || usize::MAX), expected);
    assert_eq!(
        decode_with(&encoded, 0, || (rng.next() % 7) as usize),
        expected
    );
}

/// What decoding one input came to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    /// The payload handed out before the end (or the error).
    body: Vec<u8>,
    /// Input bytes consumed.
    consumed: usize,
    /// The last chunk and trailers were read.
    done: bool,
    /// Why decoding stopped, if it failed.
    error: Option<ChunkError>,
}

/// Decodes all of `input` in one piece.
fn decode_whole(input: &[u8], trailer_cap: usize) -> Outcome {
    decode_with(input, trailer_cap, || usize::MAX)
}

/// Decodes `input` as if it arrived in pieces of `next_size()` bytes (0 counts as
/// 1), checking the decoder's contract on every call.
fn decode_with(input: &[u8], trailer_cap: usize, mut next_size: impl FnMut() -> usize) -> Outcome {
    let mut decoder = ChunkedDecoder::new(trailer_cap);
    let mut body = Vec::new();
    let mut delivered = 0; // input[..delivered] has "arrived"
    let mut pos = 0;
    loop {
        let available = &input[pos..delivered];
        let progress = match decoder.feed(available) {
            Ok(progress) => progress,
            Err(e) => {
                assert!(!e.reason().is_empty());
                return Outcome {
                    body,
                    consumed: pos,
                    done: false,
                    error: Some(e),
                };
            }
        };
        assert!(
            progress.data.start <= progress.data.end
                && progress.data.end <= progress.consumed
                && progress.consumed <= available.len(),
            "{progress:?} of {} bytes",
            available.len()
        );
        assert_eq!(progress.done, decoder.is_done());
        assert!(
            progress.consumed > 0 || progress.done || available.is_empty(),
            "no progress on {} bytes",
            available.len()
        );
        body.extend_from_slice(&available[progress.data.clone()]);
        pos += progress.consumed;
        if progress.done {
            // Done is final: nothing more is consumed, whatever follows.
            let idle = Progress {
                consumed: 0,
                data: 0..0,
                done: true,
            };
            assert_eq!(decoder.feed(&input[pos..]), Ok(idle));
            return Outcome {
                body,
                consumed: pos,
                done: true,
                error: None,
            };
        }
        if progress.consumed == 0 {
            if delivered == input.len() {
                return Outcome {
                    body,
                    consumed: pos,
                    done: false,
                    error: None,
                };
            }
            delivered = delivered
                .saturating_add(next_size().max(1))
                .min(input.len());
        }
    }
}

/// Two decodings of one input agree on everything but, after an error, the error's
/// name and the payload handed out before it.
///
/// Why the name may differ: a line that holds a stray CR and is also too long is
/// `InvalidLineEnding` when the CR arrives first in its own piece, and
/// `LineTooLong` / `TrailersTooLarge` when the whole line is seen at once. Both
/// refuse the body, which is what matters. The payload differs because a `feed` that
/// fails returns no `Progress` for the data it had already found in that call.
fn assert_same_outcome(whole: &Outcome, split: &Outcome, how: &str) {
    match (whole.error, split.error) {
        (None, None) => assert_eq!(whole, split, "{how}"),
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => {
            let too_long = |e| matches!(e, ChunkError::LineTooLong | ChunkError::TrailersTooLarge);
            let bad_end = |e| e == ChunkError::InvalidLineEnding;
            assert!(
                (too_long(a) && bad_end(b)) || (bad_end(a) && too_long(b)),
                "{how}: {a:?} vs {b:?}"
            );
        }
        (a, b) => panic!("{how}: whole {a:?} vs split {b:?} ({whole:?} vs {split:?})"),
    }
}

// ---------------------------------------------------------------------------
// normalize_host
// ---------------------------------------------------------------------------

/// Host normalisation: the routing key is idempotent, lowercase, portless, without
/// a trailing dot, and blind to case, a port or one trailing dot in the input.
pub fn normalize_host(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let raw = raw.as_ref();
    let split = host::split(raw);
    if let Ok(authority) = &split {
        assert!(raw.starts_with(authority.name), "{authority:?}");
        assert!(!authority.name.is_empty() && authority.name.len() <= host::MAX_HOST_BYTES);
    }
    let upper = host::normalize(&raw.to_ascii_uppercase());
    let key = match host::normalize(raw) {
        Ok(key) => key,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(
                upper.is_err(),
                "{raw:?} refused, its uppercase not: {upper:?}"
            );
            return;
        }
    };
    assert!(split.is_ok(), "normalised but did not split: {raw:?}");
    assert!(
        !key.is_empty() && key.len() <= host::MAX_HOST_BYTES,
        "{key:?}"
    );
    assert!(!key.bytes().any(|b| b.is_ascii_uppercase()), "{key:?}");
    assert!(!key.ends_with('.'), "trailing dot in {key:?} from {raw:?}");
    assert_eq!(
        host::normalize(&key).as_ref(),
        Ok(&key),
        "not idempotent: {raw:?}"
    );
    assert_eq!(
        host::split(&key).map(|a| (a.name, a.port)),
        Ok((key.as_str(), None)),
        "port left in {key:?}"
    );
    if let Some(inner) = key.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or("");
        assert!(inner.parse::<Ipv6Addr>().is_ok(), "{key:?}");
    } else {
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')),
            "{key:?}"
        );
        assert!(!key.starts_with('.') && !key.contains(".."), "{key:?}");
    }
    assert_eq!(upper.as_ref(), Ok(&key), "case changed the key of {raw:?}");

    // A port does not change the key (unless the input already had one).
    let has_port = split.is_ok_and(|a| a.name.len() != raw.len());
    if !has_port {
        assert_eq!(
            host::normalize(&format!("{raw}:8443")).as_ref(),
            Ok(&key),
            "{raw:?} with a port"
        );
    }
    // Nor does one trailing dot on the key.
    if !key.starts_with('[') && key.len() < host::MAX_HOST_BYTES {
        assert_eq!(host::normalize(&format!("{key}.")).as_ref(), Ok(&key));
    }
}

// ---------------------------------------------------------------------------
// parse_config
// ---------------------------------------------------------------------------

/// The config parser: errors name a line of the text; an accepted config has
/// normalised hosts unique across apps, and written back out parses to itself.
pub fn parse_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new(CONFIG_PATH);
    let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let line_count = body.lines().count();
    match config::parse(&text, path) {
        Err(e) => {
            assert_eq!(e.file, path);
            if let Some(line) = e.line {
                assert!(
                    (1..=line_count).contains(&line),
                    "line {line} of {line_count}: {e}"
                );
            }
            assert!(!e.message.is_empty());
            assert!(
                !e.message.chars().any(|c| c.is_control() && c != '\t'),
                "control character in {:?}",
                e.message
            );
        }
        Ok(cfg) => check_config(&cfg, path, line_count),
    }
}

/// What an accepted config must hold, and its round trip through [`write_config`].
fn check_config(cfg: &Config, path: &Path, line_count: usize) {
    assert_eq!(cfg.path, path);
    let mut names = HashSet::new();
    let mut hosts = HashSet::new();
    for app in &cfg.apps {
        assert!(names.insert(app.name.as_str()), "app {} twice", app.name);
        assert!((1..=line_count).contains(&app.line), "line {}", app.line);
        assert!(!app.hosts.is_empty(), "app {} without hosts", app.name);
        for h in &app.hosts {
            assert_eq!(
                host::normalize(h).as_ref(),
                Ok(h),
                "host {h:?} not normalised"
            );
            assert!(hosts.insert(h.as_str()), "host {h:?} claimed twice");
            let found = cfg.app_for_host(h).map(|a| a.name.as_str());
            assert_eq!(found, Some(app.name.as_str()));
            let with_port = format!("{}:443", h.to_ascii_uppercase());
            assert_eq!(cfg.app_for_host(&with_port).map(|a| a.name.as_str()), found);
        }
    }

    let text = write_config(cfg);
    let again = match config::parse(&text, path) {
        Ok(again) => again,
        Err(e) => panic!("written config refused: {e}\n{text}"),
    };
    assert_eq!(without_lines(again), without_lines(cfg.clone()), "\n{text}");
}

/// `cfg` with the apps' header lines zeroed: a written config has its own layout.
fn without_lines(mut cfg: Config) -> Config {
    for app in &mut cfg.apps {
        app.line = 0;
    }
    cfg
}

/// Writes `cfg` back as config text, every key explicit. The destructuring is
/// exhaustive on purpose: a new config field does not compile here until it is
/// written out, so the round trip keeps covering every key.
fn write_config(cfg: &Config) -> String {
    use std::fmt::Write as _;
    let ProxyConfig {
        listen,
        cert,
        key,
        workers,
        handshake_timeout,
        head_timeout,
        idle_timeout,
        backend_connect_timeout,
        backend_timeout,
        backend_idle_timeout,
        client_timeout,
        tunnel_idle_timeout,
        tunnel_drain_timeout,
        shutdown_grace,
        max_head_bytes,
        max_connections,
        max_connections_per_ip,
        min_data_rate,
        min_data_rate_grace,
        access_log,
        log_level,
    } = &cfg.proxy;
    let mut text = String::from("[proxy]\n");
    let mut put = |key: &str, value: &dyn std::fmt::Display| put_key(&mut text, key, value);
    put("listen", listen);
    put("cert", &cert.display());
    put("key", &key.display());
    put("workers", workers);
    put("handshake_timeout", &secs(*handshake_timeout));
    put("head_timeout", &secs(*head_timeout));
    put("idle_timeout", &secs(*idle_timeout));
    put("backend_connect_timeout", &secs(*backend_connect_timeout));
    put("backend_timeout", &secs(*backend_timeout));
    put("backend_idle_timeout", &secs(*backend_idle_timeout));
    put("client_timeout", &secs(*client_timeout));
    match tunnel_idle_timeout {
        Some(d) => put("tunnel_idle_timeout", &secs(*d)),
        None => put("tunnel_idle_timeout", &"0"),
    }
    put("tunnel_drain_timeout", &secs(*tunnel_drain_timeout));
    put("shutdown_grace", &secs(*shutdown_grace));
    put("max_head_bytes", max_head_bytes);
    put("max_connections", max_connections);
    put("max_connections_per_ip", max_connections_per_ip);
    put("min_data_rate", min_data_rate);
    put("min_data_rate_grace", &secs(*min_data_rate_grace));
    match access_log {
        AccessLog::Stderr => put("access_log", &"stderr"),
        AccessLog::Off => put("access_log", &"off"),
        AccessLog::File(file) => put("access_log", &file.display()),
    }
    put("log_level", &log_level.to_string().to_ascii_lowercase());

    for app in &cfg.apps {
        let AppConfig {
            name,
            line: _,
            hosts,
            run,
            health,
            start_timeout,
        } = app;
        let _ = writeln!(text, "\n[app {name}]");
        let mut put = |key: &str, value: &dyn std::fmt::Display| put_key(&mut text, key, value);
        put("hosts", &hosts.join(", "));
        match run {
            AppRun::Command {
                command,
                dir,
                env,
                port,
            } => {
                put("command", command);
                if let Some(dir) = dir {
                    put("dir", &dir.display());
                }
                for (name, value) in env {
                    put("env", &format!("{name}={value}"));
                }
                if let Some(port) = port {
                    put("port", port);
                }
            }
            AppRun::Upstream { addr } => put("upstream", addr),
        }
        if let Some(health) = health {
            put("health", health);
        }
        put("start_timeout", &secs(*start_timeout));
    }
    text
}

/// Appends `key = value`, or `key =value` when the value starts with `#`: after
/// whitespace a `#` would open a comment.
fn put_key(text: &mut String, key: &str, value: &dyn std::fmt::Display) {
    use std::fmt::Write as _;
    let value = value.to_string();
    let gap = if value.starts_with('#') { "" } else { " " };
    let _ = writeln!(text, "{key} ={gap}{value}");
}

/// A duration as config seconds, exact to the nanosecond.
fn secs(d: Duration) -> String {
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

// ---------------------------------------------------------------------------
// parse_certificate
// ---------------------------------------------------------------------------

/// The DER certificate reader: total, strict about where the certificate ends,
/// and its validity times round-trip through RFC 3339.
pub fn parse_certificate(data: &[u8]) {
    let cert = match x509::parse_certificate(data) {
        Ok(cert) => cert,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(x509::looks_like_der(data));
    assert!(cert.dns_names.len() + cert.ip_addresses.len() <= x509::MAX_SAN_ENTRIES);
    for name in &cert.dns_names {
        assert!(
            !name.is_empty() && name.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{name:?}"
        );
    }
    if let Some(cn) = &cert.subject_cn {
        assert!(!cn.chars().any(char::is_control), "{cn:?}");
    }
    for t in [cert.not_before, cert.not_after] {
        let text = time::format_rfc3339(t);
        assert_eq!(time::parse_rfc3339(&text), Some(t), "{text}");
    }
    // Definite DER lengths: no proper prefix is a certificate, nor is one with more after it.
    for n in prefix_lengths(data.len()) {
        if n < data.len() {
            assert!(x509::parse_certificate(&data[..n]).is_err(), "prefix {n}");
        }
    }
    let mut longer = data.to_vec();
    longer.push(0);
    assert!(x509::parse_certificate(&longer).is_err());
}

// ---------------------------------------------------------------------------
// parse_time
// ---------------------------------------------------------------------------

/// UTCTime is tag 0x17 in DER.
const TAG_UTC_TIME: u8 = 0x17;
/// GeneralizedTime is tag 0x18 in DER.
const TAG_GENERALIZED_TIME: u8 = 0x18;
/// 0000-01-01T00:00:00Z, in seconds from the epoch.
const YEAR_0_SECS: i64 = -62_167_219_200;
/// 9999-12-31T23:59:59Z, in seconds from the epoch.
const YEAR_9999_END_SECS: i64 = 253_402_300_799;

/// Certificate times and RFC 3339 text. `data` is read three ways: as a DER time
/// (first byte the tag, the rest the value), as RFC 3339 text, and as an instant.
pub fn parse_time(data: &[u8]) {
    // A DER time reads as the calendar fields it spells.
    if let Some((&tag, value)) = data.split_first() {
        if let Ok(t) = x509::parse_time(tag, value) {
            let text = time::format_rfc3339(t);
            assert_eq!(time::parse_rfc3339(&text), Some(t), "{text}");
            let digits = match tag {
                TAG_UTC_TIME => {
                    let century = if value[0] >= b'5' { "19" } else { "20" };
                    format!("{century}{}", String::from_utf8_lossy(&value[..12]))
                }
                TAG_GENERALIZED_TIME => String::from_utf8_lossy(&value[..14]).into_owned(),
                _ => panic!("time from tag {tag:#x}"),
            };
            let d = |r: std::ops::Range<usize>| &digits[r];
            let spelled = format!(
                "{}-{}-{}T{}:{}:{}Z",
                d(0..4),
                d(4..6),
                d(6..8),
                d(8..10),
                d(10..12),
                d(12..14)
            );
            assert_eq!(text, spelled, "{value:?}");
        }
    }

    // RFC 3339 text that parses is already in the one form we write.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(t) = time::parse_rfc3339(text) {
            assert_eq!(time::format_rfc3339(t), text);
        }
    }

    // Any instant in years 0..=9999 formats to text that reads back, to the second.
    if let Some(bytes) = data.get(..12) {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[..8]);
        let raw = u64::from_le_bytes(raw);
        let nanos = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) % 1_000_000_000;
        let span = (YEAR_9999_END_SECS - YEAR_0_SECS + 1) as u64;
        let secs = YEAR_0_SECS + (raw % span) as i64;
        let whole = epoch_offset(secs);
        let t = whole + Duration::from_nanos(u64::from(nanos));
        let text = time::format_rfc3339(t);
        assert_eq!(
            time::parse_rfc3339(&text),
            Some(whole),
            "{text} from {secs}"
        );

        // Far outside that range: still no panic, and nothing that reads back wrong.
        for far in [
            UNIX_EPOCH.checked_add(Duration::from_secs(raw)),
            UNIX_EPOCH.checked_sub(Duration::from_secs(raw)),
        ]
        .into_iter()
        .flatten()
        {
            let text = time::format_rfc3339(far);
            if let Some(back) = time::parse_rfc3339(&text) {
                assert!(back <= far, "{text}");
                assert!(far
                    .duration_since(back)
                    .is_ok_and(|d| d < Duration::from_secs(1)));
            }
        }
    }
}

/// The instant `secs` seconds from the epoch (negative: before it).
fn epoch_offset(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// A head we wrote, split by an independent scanner.
struct WireHead<'a> {
    /// The first line, without its CRLF.
    start_line: &'a str,
    /// The fields, value without the one SP after the colon (bytes: a forwarded
    /// value may carry obs-text).
    fields: Vec<(&'a str, &'a [u8])>,
}

impl WireHead<'_> {
    /// Every value of the field `name` (case-insensitive), in order; for the fields
    /// nexushub writes itself, which are ASCII.
    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| std::str::from_utf8(v).unwrap_or("<not UTF-8>"))
            .collect()
    }
}

/// Checks a head nexushub wrote, byte by byte: CRLF line ends only and the one
/// empty line at the very end; no control byte but HTAB; no obs-fold; every field
/// `token: value`; at most one `Content-Length`, at most one `Transfer-Encoding`,
/// never both.
fn check_wire_head(out: &[u8]) -> WireHead<'_> {
    let text = String::from_utf8_lossy(out);
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR at {i}: {text:?}"),
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}: {text:?}"),
            b'\t' => {}
            0..=0x1f | 0x7f => panic!("control byte {b:#x} at {i}: {text:?}"),
            _ => {}
        }
    }
    let Some(lines) = out.strip_suffix(b"\r\n\r\n") else {
        panic!("head does not end in CRLF CRLF: {text:?}");
    };
    // CR only ever comes before LF (checked above), so splitting at CR finds lines.
    let mut lines = lines.split(|&b| b == b'\r').enumerate().map(|(i, line)| {
        if i == 0 {
            line
        } else {
            &line[1..] // the LF of the CRLF before
        }
    });
    let start_line = match std::str::from_utf8(lines.next().unwrap_or_default()) {
        Ok(line) => line,
        Err(e) => panic!("start line not UTF-8 ({e}): {text:?}"),
    };
    let mut fields = Vec::new();
    for line in lines {
        assert!(!line.is_empty(), "empty line inside the head: {text:?}");
        assert!(
            !line.starts_with(b" ") && !line.starts_with(b"\t"),
            "obs-fold in our head: {text:?}"
        );
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            panic!("field without a colon: {:?}", String::from_utf8_lossy(line));
        };
        let name = std::str::from_utf8(&line[..colon]).unwrap_or("<not UTF-8>");
        assert!(is_token(name), "field name {name:?}");
        let Some(value) = line[colon + 1..].strip_prefix(b" ") else {
            panic!("no SP after the colon: {:?}", String::from_utf8_lossy(line));
        };
        fields.push((name, value));
    }
    let head = WireHead { start_line, fields };
    let lengths = head.all("content-length").len();
    let codings = head.all("transfer-encoding").len();
    assert!(lengths <= 1, "{lengths} Content-Length fields: {text:?}");
    assert!(codings <= 1, "{codings} Transfer-Encoding fields: {text:?}");
    assert!(
        lengths == 0 || codings == 0,
        "both Content-Length and Transfer-Encoding: {text:?}"
    );
    head
}

/// The start line and fields of an accepted input head (CRLF line ends, no obs-fold,
/// maybe empty lines first), values trimmed of SP and HTAB: read without the parser
/// under test.
fn input_head(head: &[u8]) -> (String, Vec<(String, Vec<u8>)>) {
    let mut head = head.strip_suffix(b"\r\n\r\n").unwrap_or(head);
    while let Some(rest) = head.strip_prefix(b"\r\n") {
        head = rest;
    }
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let fields = lines
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let mut value = &line[colon + 1..];
            while value.first().is_some_and(ows) {
                value = &value[1..];
            }
            while value.last().is_some_and(ows) {
                value = &value[..value.len() - 1];
            }
            Some((
                String::from_utf8_lossy(&line[..colon]).into_owned(),
                value.to_vec(),
            ))
        })
        .collect();
    (start_line, fields)
}

/// The comma-separated elements of every field `name`, trimmed, empty ones skipped.
fn elements<'a>(
    fields: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|e| e.trim_matches([' ', '\t']).to_owned())
                .filter(|e| !e.is_empty())
                .collect::<Vec<_>>()
        })
}

/// Whether a list field `name` has the element `element` (case-insensitive).
fn lists(fields: &[(String, Vec<u8>)], name: &str, element: &str) -> bool {
    elements(fields, name).any(|e| e.eq_ignore_ascii_case(element))
}

/// The `Upgrade` list, if there is one and every element is `token["/"token]`
/// (a value that is not UTF-8 is never such a list).
fn protocols(fields: &[(String, Vec<u8>)]) -> Option<Vec<String>> {
    let upgrade: Vec<&Vec<u8>> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
        .map(|(_, v)| v)
        .collect();
    if upgrade.is_empty() || upgrade.iter().any(|v| std::str::from_utf8(v).is_err()) {
        return None;
    }
    let list: Vec<String> = elements(fields, "upgrade").collect();
    let well_formed = |p: &String| match p.split_once('/') {
        Some((name, version)) => is_token(name) && is_token(version),
        None => is_token(p),
    };
    list.iter().all(well_formed).then_some(list)
}

/// Whether the fields seen on the wire are `expected`, names and values (byte for
/// byte), in order.
fn same_fields<V: AsRef<[u8]>>(seen: &[(&str, &[u8])], expected: &[(String, V)]) -> bool {
    seen.len() == expected.len()
        && seen
            .iter()
            .zip(expected)
            .all(|(&(n, v), (en, ev))| n == en && v == ev.as_ref())
}

/// The written request carries exactly the framing field its body calls for.
fn assert_framing_fields(wire: &WireHead<'_>, body: BodyFraming) {
    let length_text;
    let (lengths, codings): (Vec<&str>, Vec<&str>) = match body {
        BodyFraming::None => (vec![], vec![]),
        BodyFraming::Length(n) => {
            length_text = n.to_string();
            (vec![length_text.as_str()], vec![])
        }
        BodyFraming::Chunked => (vec![], vec!["chunked"]),
    };
    assert_eq!(wire.all("content-length"), lengths);
    assert_eq!(wire.all("transfer-encoding"), codings);
}

/// A field value we hold may go into a header: no CR, LF or NUL, no edge whitespace.
fn assert_value_clean(value: impl AsRef<[u8]>) {
    let value = value.as_ref();
    assert!(
        !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
        "CR, LF or NUL in {value:?}"
    );
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    assert!(
        !value.first().is_some_and(ows) && !value.last().is_some_and(ows),
        "untrimmed {value:?}"
    );
}

/// Checks that parsing grows monotonically with the input: every prefix is either
/// still `pending` or already has the whole input's verdict, and once a prefix has
/// the verdict every longer one keeps it. Inputs longer than
/// [`ALL_PREFIXES_UP_TO_BYTES`] are sampled.
fn check_prefixes<T: PartialEq + Debug>(
    buf: &[u8],
    whole: &T,
    pending: &T,
    parse: impl Fn(&[u8]) -> T,
) {
    let mut decided_at = None;
    for n in prefix_lengths(buf.len()) {
        let got = parse(&buf[..n]);
        if &got == pending {
            assert!(
                decided_at.is_none(),
                "prefix {n} pending after prefix {decided_at:?} decided"
            );
        } else {
            assert_eq!(&got, whole, "prefix {n} of {}", buf.len());
            decided_at.get_or_insert(n);
        }
    }
}

/// Prefix lengths to try, ascending, `buf.len()` included: all of them for short
/// inputs, else both ends densely and the middle on a stride.
fn prefix_lengths(len: usize) -> Vec<usize> {
    if len <= ALL_PREFIXES_UP_TO_BYTES {
        return (0..=len).collect();
    }
    let stride = (len / 128).max(1);
    let mut lengths: Vec<usize> = (0..64).collect();
    lengths.extend((64..len - 64).step_by(stride));
    lengths.extend(len - 64..=len);
    lengths
}

/// A head cap between 1 and `buf.len() + 1`, at most [`HEAD_CAP_BYTES`], derived
/// from the input.
fn small_cap(buf: &[u8]) -> usize {
    1 + (fnv1a64(buf) as usize) % (buf.len() + 1).min(HEAD_CAP_BYTES)
}

/// RFC 9110 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// FNV-1a, 64 bits: a cheap, stable hash to derive choices from the input.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// xorshift64*: a tiny deterministic PRNG for split points and chunk sizes.
struct Prng(u64);

impl Prng {
    /// A generator from any seed (zero is mapped away: xorshift would stay at 0).
    fn new(seed: u64) -> Prng {
        Prng(seed | 1)
    }

    /// The next value.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
