//! The HTTP version of a parsed message: requests and responses both carry one,
//! and the writers answer in it.

/// The HTTP version of a message we parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: no chunked encoding, keep-alive only when asked for.
    Http10,
    /// `HTTP/1.1`: keep-alive by default.
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }

    /// Maps httparse's minor version; anything but 0 or 1 is not ours to speak.
    pub(crate) fn from_minor(minor: u8) -> Option<Version> {
        match minor {
            0 => Some(Version::Http10),
            1 => Some(Version::Http11),
            _ => None,
        }
    }
}
