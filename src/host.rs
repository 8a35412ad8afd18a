//! Host names: the one place that decides what a `Host` header, an absolute-form
//! authority, an SNI name or a config `hosts =` entry means as a routing key.
//!
//! A host is matched case-insensitively, without its port and without a trailing
//! dot (docs/config.md). Everything here is pure and allocation-light so that
//! the request parser, the config parser and the fuzz targets share one definition.

use std::fmt;

/// Longest host name we accept, in bytes (RFC 1035's 253 plus a trailing dot and
/// room for an IPv6 literal with brackets).
pub const MAX_HOST_BYTES: usize = 255;

/// Why a host value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// The value is empty (or only a port).
    Empty,
    /// Longer than [`MAX_HOST_BYTES`].
    TooLong,
    /// A byte that may not appear in a host name.
    BadByte,
    /// The part after `:` is not a port number.
    BadPort,
    /// A `[...]` literal that is not a valid IPv6 address.
    BadIpv6,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostError::Empty => "empty host",
            HostError::TooLong => "host name too long",
            HostError::BadByte => "invalid character in host",
            HostError::BadPort => "invalid port in host",
            HostError::BadIpv6 => "invalid IPv6 literal in host",
        })
    }
}

impl std::error::Error for HostError {}

/// A host split into its name and optional port, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority<'a> {
    /// The name part (with brackets for an IPv6 literal), not yet normalised.
    pub name: &'a str,
    /// The port, when one was given and non-empty.
    pub port: Option<u16>,
}

/// Splits `host[:port]` or `[v6]:port` and validates both parts.
pub fn split(raw: &str) -> Result<Authority<'_>, HostError> {
    if raw.len() > MAX_HOST_BYTES + 6 {
        return Err(HostError::TooLong);
    }
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        let end = rest.find(']').ok_or(HostError::BadIpv6)?;
        let inner = &rest[..end];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::BadIpv6);
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => p,
            None if after.is_empty() => "",
            None => return Err(HostError::BadByte),
        };
        (&raw[..end + 2], port)
    } else {
        match raw.find(':') {
            Some(i) => (&raw[..i], &raw[i + 1..]),
            None => (raw, ""),
        }
    };
    let port = if port.is_empty() {
        None
    } else {
        if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HostError::BadPort);
        }
        Some(port.parse::<u16>().map_err(|_| HostError::BadPort)?)
    };
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > MAX_HOST_BYTES {
        return Err(HostError::TooLong);
    }
    if !name.starts_with('[') && !name.bytes().all(is_name_byte) {
        return Err(HostError::BadByte);
    }
    Ok(Authority { name, port })
}

/// Bytes allowed in a registered name: letters, digits, `-`, `.`, `_`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// The routing key for a `Host` value, authority or SNI name: the name without
/// its port, lowercased, without one trailing dot.
pub fn normalize(raw: &str) -> Result<String, HostError> {
    let auth = split(raw)?;
    let name = auth.name.strip_suffix('.').unwrap_or(auth.name);
    // Checked after stripping one dot: "a.." must not become the key "a.".
    if name.is_empty() || name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(if name.is_empty() {
            HostError::Empty
        } else {
            HostError::BadByte
        });
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_name() {
        assert_eq!(normalize("Example.COM").as_deref(), Ok("example.com"));
    }
    #[test]
    fn port_and_trailing_dot() {
        assert_eq!(normalize("example.com.:8443").as_deref(), Ok("example.com"));
    }
    #[test]
    fn empty_port_allowed() {
        assert_eq!(normalize("example.com:").as_deref(), Ok("example.com"));
    }
    #[test]
    fn ipv6_literal() {
        assert_eq!(normalize("[::1]:443").as_deref(), Ok("[::1]"));
        assert_eq!(split("[::1]:443").map(|a| a.port), Ok(Some(443)));
    }
    #[test]
    fn bad_ipv6() {
        assert_eq!(normalize("[zz]"), Err(HostError::BadIpv6));
        assert_eq!(normalize("[::1]x"), Err(HostError::BadByte));
    }
    /// Found by the normalize_host fuzz target: "a.." normalised to "a.", a
    /// routing key with a trailing dot, and not idempotent.
    #[test]
    fn regression_trailing_double_dot() {
        assert_eq!(normalize("a.."), Err(HostError::BadByte));
        assert_eq!(normalize("a.example..:443"), Err(HostError::BadByte));
        assert_eq!(normalize("a.").as_deref(), Ok("a"));
    }

    #[test]
    fn rejects() {
        assert_eq!(normalize(""), Err(HostError::Empty));
        assert_eq!(normalize(":80"), Err(HostError::Empty));
        assert_eq!(normalize("."), Err(HostError::Empty));
        assert_eq!(normalize("a b"), Err(HostError::BadByte));
        assert_eq!(normalize("a..b"), Err(HostError::BadByte));
        assert_eq!(normalize("a/b"), Err(HostError::BadByte));
        assert_eq!(normalize("a@b"), Err(HostError::BadByte));
        assert_eq!(normalize("a:99999"), Err(HostError::BadPort));
        assert_eq!(normalize("a:+1"), Err(HostError::BadPort));
        assert_eq!(normalize("a:1:2"), Err(HostError::BadPort));
        assert_eq!(normalize(&"a".repeat(300)), Err(HostError::TooLong));
    }
}
