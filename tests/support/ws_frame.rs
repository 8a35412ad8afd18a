//! The WebSocket wire format (RFC 6455 section 5), sans IO: frames to bytes and back,
//! and the messages they make up. The peers in `websocket.rs` and `ws_backend.rs` run
//! it over sockets; here it works on byte slices, so that it is table-tested.
//!
//! Strict on purpose, as the proxy must not make a well-behaved peer see anything
//! else: reserved bits, unknown opcodes, fragmented or long control frames, non-minimal
//! lengths, bad close payloads and a frame masked the wrong way for its sender (a
//! client masks every frame, a server none) are all errors, and so is any payload over
//! [`MAX_MESSAGE_BYTES`].

use std::fmt;

/// Largest message (and so frame payload) either peer accepts.
pub const MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Which end of a WebSocket connection a peer is: it decides the masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Masks every frame it sends.
    Client,
    /// Masks none.
    Server,
}

impl Role {
    /// The role of the peer.
    pub fn other(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

/// A frame's opcode (RFC 6455 section 5.2); the reserved ones are protocol errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// A further fragment of a text or binary message.
    Continuation = 0x0,
    /// The first (or only) frame of a UTF-8 message.
    Text = 0x1,
    /// The first (or only) frame of a binary message.
    Binary = 0x2,
    /// Starts or answers the close handshake.
    Close = 0x8,
    /// Asks for a pong.
    Ping = 0x9,
    /// Answers a ping (or is a heartbeat).
    Pong = 0xA,
}

impl Opcode {
    /// The opcode with these four bits, if it is not reserved.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// Whether it is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// Why bytes are not a valid frame or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 set, with no extension negotiated.
    ReservedBits,
    /// An opcode RFC 6455 reserves.
    UnknownOpcode(u8),
    /// A client frame without a mask.
    Unmasked,
    /// A server frame with a mask.
    Masked,
    /// A control frame without FIN.
    FragmentedControl,
    /// A control frame with more than 125 payload bytes.
    ControlTooLong,
    /// A length in a longer form than it needs.
    NonMinimalLength,
    /// A payload or message longer than [`MAX_MESSAGE_BYTES`] (or than 2^63).
    TooBig(u64),
    /// A close payload of one byte.
    CloseTooShort,
    /// A close code that may not be sent.
    BadCloseCode(u16),
    /// A close reason or text message that is not UTF-8.
    InvalidUtf8,
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A new text or binary frame inside a fragmented message.
    InterleavedMessage,
}

impl ProtocolError {
    /// The close code that reports this error to the peer (RFC 6455 section 7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 => 1007,
            ProtocolError::TooBig(_) => 1009,
            _ => 1002,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits => f.write_str("reserved bits set"),
            ProtocolError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            ProtocolError::Unmasked => f.write_str("unmasked client frame"),
            ProtocolError::Masked => f.write_str("masked server frame"),
            ProtocolError::FragmentedControl => f.write_str("fragmented control frame"),
            ProtocolError::ControlTooLong => f.write_str("control frame over 125 bytes"),
            ProtocolError::NonMinimalLength => f.write_str("non-minimal payload length"),
            ProtocolError::TooBig(n) => write!(f, "{n}-byte payload or message too big"),
            ProtocolError::CloseTooShort => f.write_str("one-byte close payload"),
            ProtocolError::BadCloseCode(c) => write!(f, "close code {c} may not be sent"),
            ProtocolError::InvalidUtf8 => f.write_str("invalid utf-8"),
            ProtocolError::UnexpectedContinuation => f.write_str("continuation with no message"),
            ProtocolError::InterleavedMessage => f.write_str("new message inside a fragmented one"),
        }
    }
}

/// A close frame's status code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The status code (1000 normal, 1001 going away, 1002 protocol error, ...).
    pub code: u16,
    /// The reason, UTF-8, at most 123 bytes.
    pub reason: String,
}

impl Close {
    /// A close with this code and reason.
    pub fn new(code: u16, reason: &str) -> Close {
        Close {
            code,
            reason: reason.to_string(),
        }
    }

    /// Parses a close payload: empty (no code) or a code and a UTF-8 reason.
    pub fn parse(payload: &[u8]) -> Result<Option<Close>, ProtocolError> {
        match payload {
            [] => Ok(None),
            [_] => Err(ProtocolError::CloseTooShort),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                // 1004-1006 and 1015 are reserved for reporting, never sent.
                if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                    return Err(ProtocolError::BadCloseCode(code));
                }
                let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(Close::new(code, reason)))
            }
        }
    }

    /// The payload of a close frame carrying `close`.
    pub fn payload(close: Option<&Close>) -> Vec<u8> {
        close.map_or_else(Vec::new, |c| {
            let mut p = c.code.to_be_bytes().to_vec();
            p.extend_from_slice(c.reason.as_bytes());
            p
        })
    }
}

/// One frame; the payload is always held unmasked.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Whether this is the last frame of its message.
    pub fin: bool,
    /// Its opcode.
    pub opcode: Opcode,
    /// The masking key it is (or was) sent with.
    pub mask: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("fin", &self.fin)
            .field("opcode", &self.opcode)
            .field("mask", &self.mask)
            .field("payload", &Abridged(&self.payload))
            .finish()
    }
}

impl Frame {
    /// An unmasked frame.
    pub fn new(fin: bool, opcode: Opcode, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin,
            opcode,
            mask: None,
            payload: payload.into(),
        }
    }

    /// The same frame, to be sent masked with `key`.
    pub fn masked(mut self, key: [u8; 4]) -> Frame {
        self.mask = Some(key);
        self
    }

    /// The frame's bytes on the wire, its length in the shortest form.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len() as u64;
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push(u8::from(self.fin) << 7 | self.opcode as u8);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= 0xffff {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        let start = out.len() + self.mask.map_or(0, |k| k.len());
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
        out.extend_from_slice(&self.payload);
        if let Some(key) = self.mask {
            apply_mask(&mut out[start..], key);
        }
        out
    }
}

/// XORs `data` with the masking key, which masks and unmasks alike (section 5.3).
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    // Four bytes per step: the tests build unoptimised, and 8 MiB messages go by.
    let mut words = data.chunks_exact_mut(4);
    for w in &mut words {
        w[0] ^= key[0];
        w[1] ^= key[1];
        w[2] ^= key[2];
        w[3] ^= key[3];
    }
    for (b, k) in words.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// Decodes one frame sent by `sender` from the front of `buf`: `Ok(None)` while the
/// frame is incomplete, else the frame and the bytes it took. Header errors show as
/// soon as the header is in, before the payload arrives.
pub fn decode(buf: &[u8], sender: Role) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(ProtocolError::UnknownOpcode(b0 & 0x0f))?;
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    match (sender, masked) {
        (Role::Client, false) => return Err(ProtocolError::Unmasked),
        (Role::Server, true) => return Err(ProtocolError::Masked),
        _ => {}
    }
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControl);
    }
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes([b[0], b[1]]));
            if len < 126 {
                return Err(ProtocolError::NonMinimalLength);
            }
            (len, 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(b);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(ProtocolError::TooBig(len));
            }
            if len <= 0xffff {
                return Err(ProtocolError::NonMinimalLength);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && len > 125 {
        return Err(ProtocolError::ControlTooLong);
    }
    if len > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooBig(len));
    }
    let mask = if masked {
        let Some(k) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    let end = at + len as usize;
    let Some(payload) = buf.get(at..end) else {
        return Ok(None);
    };
    let mut payload = payload.to_vec();
    if let Some(key) = mask {
        apply_mask(&mut payload, key);
    }
    if opcode == Opcode::Close {
        Close::parse(&payload)?;
    }
    let frame = Frame {
        fin,
        opcode,
        mask,
        payload,
    };
    Ok(Some((frame, end)))
}

/// A whole message, or a control frame.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A close, with its code and reason if it had one.
    Close(Option<Close>),
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Text(t) => write!(f, "Text({:?})", Abridged(t.as_bytes())),
            Message::Binary(b) => write!(f, "Binary({:?})", Abridged(b)),
            Message::Ping(b) => write!(f, "Ping({:?})", Abridged(b)),
            Message::Pong(b) => write!(f, "Pong({:?})", Abridged(b)),
            Message::Close(c) => write!(f, "Close({c:?})"),
        }
    }
}

/// Bytes shown in a failure message: the length and the first few only, since an
/// 8 MiB message in a panic helps nobody.
struct Abridged<'a>(&'a [u8]);

impl fmt::Debug for Abridged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= 32 {
            write!(f, "{:?}", String::from_utf8_lossy(self.0))
        } else {
            write!(
                f,
                "{} bytes: {:?}...",
                self.0.len(),
                String::from_utf8_lossy(&self.0[..32])
            )
        }
    }
}

impl Message {
    /// A text message.
    pub fn text(t: &str) -> Message {
        Message::Text(t.to_string())
    }

    /// The message as a single frame (unmasked).
    pub fn into_frame(self) -> Frame {
        match self {
            Message::Text(t) => Frame::new(true, Opcode::Text, t.into_bytes()),
            Message::Binary(b) => Frame::new(true, Opcode::Binary, b),
            Message::Ping(b) => Frame::new(true, Opcode::Ping, b),
            Message::Pong(b) => Frame::new(true, Opcode::Pong, b),
            Message::Close(c) => Frame::new(true, Opcode::Close, Close::payload(c.as_ref())),
        }
    }

    /// Whether it is a text or binary message.
    pub fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8], sender: Role) -> Frame {
        match decode(bytes, sender) {
            Ok(Some((f, n))) if n == bytes.len() => f,
            other => panic!("{bytes:02x?} from {sender:?}: {other:?}"),
        }
    }

    // The section 5.7 examples: decoded as the RFC says, re-encoded to the same bytes,
    // and incomplete (not an error) at every shorter prefix.
    #[test]
    fn websocket_decode_rfc_examples() {
        let hello = b"Hello".to_vec();
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let masked_hello = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let mut long16 = vec![0x82, 0x7e, 0x01, 0x00];
        long16.extend_from_slice(&[7; 256]);
        let mut long64 = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        long64.extend_from_slice(&[9; 65536]);
        let cases: Vec<(Vec<u8>, Role, Frame)> = vec![
            (
                [&[0x81, 0x05][..], &hello].concat(),
                Role::Server,
                Frame::new(true, Opcode::Text, hello.clone()),
            ),
            (
                [&[0x81, 0x85][..], &key, &masked_hello].concat(),
                Role::Client,
                Frame::new(true, Opcode::Text, hello.clone()).masked(key),
            ),
            (
                vec![0x01, 0x03, b'H', b'e', b'l'],
                Role::Server,
                Frame::new(false, Opcode::Text, &b"Hel"[..]),
            ),
            (
                vec![0x80, 0x02, b'l', b'o'],
                Role::Server,
                Frame::new(true, Opcode::Continuation, &b"lo"[..]),
            ),
            (
                [&[0x89, 0x05][..], &hello].concat(),
                Role::Server,
                Frame::new(true, Opcode::Ping, hello.clone()),
            ),
            (
                [&[0x8a, 0x85][..], &key, &masked_hello].concat(),
                Role::Client,
                Frame::new(true, Opcode::Pong, hello.clone()).masked(key),
            ),
            (
                long16,
                Role::Server,
                Frame::new(true, Opcode::Binary, vec![7; 256]),
            ),
            (
                long64,
                Role::Server,
                Frame::new(true, Opcode::Binary, vec![9; 65536]),
            ),
            (
                vec![0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2],
                Role::Client,
                Frame::new(true, Opcode::Close, vec![0x03, 0xe8]).masked([1, 2, 3, 4]),
            ),
        ];
        for (bytes, sender, want) in cases {
            assert_eq!(decoded(&bytes, sender), want, "{:02x?}", &bytes[..2]);
            assert_eq!(want.encode(), bytes, "{want:?}");
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut], sender), Ok(None), "{cut} bytes");
            }
        }
    }

    #[test]
    fn websocket_decode_takes_one_frame_of_several() {
        let mut two = Frame::new(true, Opcode::Text, &b"one"[..]).encode();
        two.extend_from_slice(&Frame::new(true, Opcode::Text, &b"two"[..]).encode());
        let (f, n) = decode(&two, Role::Server)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no frame"));
        assert_eq!((f.payload.as_slice(), n), (&b"one"[..], 5));
    }

    // Protocol errors, each from the first bytes that show it.
    #[test]
    fn websocket_decode_rejects_protocol_errors() {
        let too_big = (MAX_MESSAGE_BYTES + 1).to_be_bytes();
        let cases: Vec<(&str, Vec<u8>, Role, ProtocolError)> = vec![
            (
                "rsv1",
                vec![0xc1, 0x00],
                Role::Server,
                ProtocolError::ReservedBits,
            ),
            (
                "rsv3",
                vec![0x91, 0x00],
                Role::Server,
                ProtocolError::ReservedBits,
            ),
            (
                "opcode 3",
                vec![0x83, 0x00],
                Role::Server,
                ProtocolError::UnknownOpcode(3),
            ),
            (
                "opcode b",
                vec![0x8b, 0x00],
                Role::Server,
                ProtocolError::UnknownOpcode(0xb),
            ),
            (
                "unmasked client",
                vec![0x81, 0x05],
                Role::Client,
                ProtocolError::Unmasked,
            ),
            (
                "masked server",
                vec![0x81, 0x85],
                Role::Server,
                ProtocolError::Masked,
            ),
            (
                "ping without fin",
                vec![0x09, 0x00],
                Role::Server,
                ProtocolError::FragmentedControl,
            ),
            (
                "long ping",
                vec![0x89, 0x7e, 0x00, 0x7e],
                Role::Server,
                ProtocolError::ControlTooLong,
            ),
            (
                "16-bit 125",
                vec![0x82, 0x7e, 0x00, 0x7d],
                Role::Server,
                ProtocolError::NonMinimalLength,
            ),
            (
                "64-bit 65535",
                vec![0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
                Role::Server,
                ProtocolError::NonMinimalLength,
            ),
            (
                "64-bit msb",
                vec![0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0],
                Role::Server,
                ProtocolError::TooBig(1 << 63),
            ),
            (
                "over the cap",
                [&[0x82, 0x7f][..], &too_big].concat(),
                Role::Server,
                ProtocolError::TooBig(MAX_MESSAGE_BYTES + 1),
            ),
            (
                "close of one byte",
                vec![0x88, 0x01, 0x03],
                Role::Server,
                ProtocolError::CloseTooShort,
            ),
            (
                "close 999",
                vec![0x88, 0x02, 0x03, 0xe7],
                Role::Server,
                ProtocolError::BadCloseCode(999),
            ),
            (
                "close 1005",
                vec![0x88, 0x02, 0x03, 0xed],
                Role::Server,
                ProtocolError::BadCloseCode(1005),
            ),
            (
                "close 2000",
                vec![0x88, 0x02, 0x07, 0xd0],
                Role::Server,
                ProtocolError::BadCloseCode(2000),
            ),
            (
                "close reason",
                vec![0x88, 0x03, 0x03, 0xe8, 0xff],
                Role::Server,
                ProtocolError::InvalidUtf8,
            ),
        ];
        for (name, bytes, sender, want) in cases {
            assert_eq!(decode(&bytes, sender), Err(want), "{name}");
        }
    }

    #[test]
    fn websocket_close_payloads() {
        assert_eq!(Close::parse(&[]), Ok(None));
        for code in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            let p = Close::payload(Some(&Close::new(code, "why")));
            assert_eq!(
                Close::parse(&p),
                Ok(Some(Close::new(code, "why"))),
                "{code}"
            );
        }
        for code in [0, 1004, 1006, 1015, 1016, 2999, 5000] {
            let p = Close::payload(Some(&Close::new(code, "")));
            assert_eq!(Close::parse(&p), Err(ProtocolError::BadCloseCode(code)));
        }
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(ProtocolError::TooBig(0).close_code(), 1009);
        assert_eq!(ProtocolError::Unmasked.close_code(), 1002);
    }

    #[test]
    fn websocket_mask_is_its_own_inverse() {
        let data: Vec<u8> = (0..=255).collect();
        for len in [0, 1, 3, 4, 5, 255] {
            let mut d = data[..len].to_vec();
            apply_mask(&mut d, [1, 2, 3, 4]);
            let want: Vec<u8> = data[..len]
                .iter()
                .zip([1, 2, 3, 4].iter().cycle())
                .map(|(b, k)| b ^ k)
                .collect();
            assert_eq!(d, want);
            apply_mask(&mut d, [1, 2, 3, 4]);
            assert_eq!(d, &data[..len]);
        }
    }
}
