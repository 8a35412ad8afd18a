//! Protocol upgrades (RFC 9110 §7.8): which client requests may open a tunnel, and
//! which backend `101 Switching Protocols` agree to one (the verdict on a pair is
//! [`super::switch_protocols`], next to the response parser).
//!
//! Only WebSocket (RFC 6455) is ever tunnelled. [`Upgrade`] has that one variant, so
//! no other protocol can be switched to by accident: `h2c` above all, which would
//! hand the app an HTTP/2 connection whose later requests nexushub never routes.
//!
//! ```text
//!  request:  GET, HTTP/1.1, Upgrade lists `websocket`, Connection lists `upgrade`,
//!            no body                       -> Request::upgrade = Some(WebSocket)
//!            anything else                 -> None: Upgrade dropped like every
//!                                             hop-by-hop field, forwarded plain
//!  response: not 101                       -> an ordinary response, no tunnel
//!            101, request asked for X, response switches to X -> tunnel
//!            101 nobody asked for          -> ResponseError::UnexpectedUpgrade (502)
//!            101 to something else         -> ResponseError::UpgradeMismatch (502)
//! ```
//!
//! A request that names `websocket` but misses a condition is not refused: it goes
//! on as a plain request without `Upgrade`, as a proxy that does not tunnel would
//! send it, and the app answers it as such (usually 400 or 426).

use super::headers::{self, FieldSummary};
use super::version::Version;

/// A protocol nexushub tunnels after a `101 Switching Protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// WebSocket (RFC 6455): `Upgrade: websocket`.
    WebSocket,
}

impl Upgrade {
    /// The protocol name as written in `Upgrade` (lowercase, as RFC 6455 spells it).
    pub fn token(self) -> &'static str {
        match self {
            Upgrade::WebSocket => "websocket",
        }
    }

    /// The protocol a `protocol-name` (compared case-insensitively, RFC 9110 §7.8)
    /// stands for, among those we tunnel. `websocket/13` is another protocol.
    fn from_token(name: &str) -> Option<Upgrade> {
        name.eq_ignore_ascii_case("websocket")
            .then_some(Upgrade::WebSocket)
    }
}

/// The elements of every `Upgrade` field of a head, in order (RFC 9110 §5.3: several
/// fields are one list), or `None` when there is no `Upgrade` or one element is not
/// `protocol-name ["/" protocol-version]` of tokens: a list we cannot read names
/// nothing we would tunnel.
fn protocols<'a>(fields: &[(&'a str, &'a [u8])]) -> Option<Vec<&'a str>> {
    let mut list = Vec::new();
    let mut seen = false;
    for &(name, value) in fields {
        if !name.eq_ignore_ascii_case("upgrade") {
            continue;
        }
        seen = true;
        let value = std::str::from_utf8(value).ok()?;
        for element in value.split(',') {
            let element = element.trim_matches([' ', '\t']);
            if element.is_empty() {
                continue; // RFC 9110 §5.6.1: empty list elements are allowed.
            }
            let well_formed = match element.split_once('/') {
                Some((name, version)) => headers::is_token(name) && headers::is_token(version),
                None => headers::is_token(element),
            };
            if !well_formed {
                return None;
            }
            list.push(element);
        }
    }
    seen.then_some(list)
}

/// The upgrade a request head asks for and may get: `GET` on HTTP/1.1, `Upgrade`
/// listing `websocket` (among others if it likes: the client offers, the app picks
/// one, and `websocket` is all it can pick through us), `Connection` listing
/// `upgrade`, and no body (a `Content-Length: 0` is none).
pub(crate) fn requested(
    method: &str,
    version: Version,
    fields: &[(&str, &[u8])],
    summary: &FieldSummary<'_>,
    has_body: bool,
) -> Option<Upgrade> {
    if method != "GET" || version != Version::Http11 || has_body || !summary.names("upgrade") {
        return None;
    }
    protocols(fields)?.into_iter().find_map(Upgrade::from_token)
}

/// The protocol a response head switches to: a `101` on HTTP/1.1 whose `Upgrade`
/// names exactly one protocol we tunnel (a 101 lists every layer it switches to, so
/// `websocket, foo` is a stack we do not speak) and whose `Connection` lists
/// `upgrade`. `None` for every other response.
pub(crate) fn offered(
    status: u16,
    version: Version,
    fields: &[(&str, &[u8])],
    summary: &FieldSummary<'_>,
) -> Option<Upgrade> {
    if status != 101 || version != Version::Http11 || !summary.names("upgrade") {
        return None;
    }
    match protocols(fields)?.as_slice() {
        [one] => Upgrade::from_token(one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(values: &[&'static str]) -> Option<Vec<&'static str>> {
        let fields: Vec<(&str, &[u8])> = values.iter().map(|v| ("Upgrade", v.as_bytes())).collect();
        protocols(&fields)
    }

    #[test]
    fn protocol_lists() {
        let cases: [(&[&str], Option<&[&str]>); 10] = [
            (&["websocket"], Some(&["websocket"])),
            (&["WebSocket, foo/2"], Some(&["WebSocket", "foo/2"])),
            (&[" h2c ,, websocket\t"], Some(&["h2c", "websocket"])),
            (&["h2c", "websocket"], Some(&["h2c", "websocket"])),
            (&[""], Some(&[])),
            (&["websocket, a b"], None),
            (&["websocket, /1"], None),
            (&["websocket, a/"], None),
            (&["websocket, a/b/c"], None),
            (&["\"websocket\""], None),
        ];
        for (values, want) in cases {
            assert_eq!(list(values).as_deref(), want, "{values:?}");
        }
        assert_eq!(protocols(&[("Connection", b"upgrade")]), None);
        assert_eq!(protocols(&[("Upgrade", b"websocket\xff")]), None);
    }

    #[test]
    fn tokens() {
        assert_eq!(Upgrade::from_token("WEBSOCKET"), Some(Upgrade::WebSocket));
        for other in ["websocket/13", "h2c", "web-socket", "websockets", ""] {
            assert_eq!(Upgrade::from_token(other), None, "{other:?}");
        }
        assert_eq!(Upgrade::WebSocket.token(), "websocket");
    }
}
